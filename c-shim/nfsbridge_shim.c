/*
 * nfsbridge_shim.c - the C side of nfsbridge: Samba's VFS table, macros and talloc.
 *
 * Policy lives in Rust. This file only translates between smbd's structs and the narrow
 * interface of nfsbridge_shim.h, and calls the next module in the VFS stack.
 *
 * Copyright (C) 2026 the nfsbridge authors. GPL-3.0-or-later.
 */
#include "includes.h"
#include "smbd/smbd.h"
#include "smbd/proto.h"
#include "lib/util/debug.h"

#include "nfsbridge_shim.h"

_Static_assert(SMB_VFS_INTERFACE_VERSION == NFSB_VFS_INTERFACE_VERSION,
	       "nfsbridge is written for another SMB_VFS_INTERFACE_VERSION than these Samba headers "
	       "declare; update c-shim and module/ for the new interface");

/* What the module announces to smb_register_vfs(). Only a test build overrides it, to check
 * that smbd refuses a module built for another interface version. */
#ifndef NFSB_REGISTER_VFS_VERSION
#define NFSB_REGISTER_VFS_VERSION SMB_VFS_INTERFACE_VERSION
#endif

#define MODULE_NAME "nfsbridge"

static const struct nfsb_rust_ops *rust_ops;
static int nfsb_debug_class = DBGC_VFS;

#undef DBGC_CLASS
#define DBGC_CLASS nfsb_debug_class

/* nfsb_handle is vfs_handle_struct seen from Rust. */
static struct vfs_handle_struct *to_vfs(const nfsb_handle *h)
{
	return (struct vfs_handle_struct *)h;
}

static nfsb_handle *to_nfsb(struct vfs_handle_struct *h)
{
	return (nfsb_handle *)h;
}

static void nfsb_free_handle_state(void **data)
{
	if (*data != NULL) {
		rust_ops->free_state(*data);
		*data = NULL;
	}
}

static int nfsb_connect(struct vfs_handle_struct *handle, const char *service, const char *user)
{
	void *state = NULL;
	int ret = SMB_VFS_NEXT_CONNECT(handle, service, user);
	if (ret < 0) {
		return ret;
	}
	ret = rust_ops->connect(to_nfsb(handle), service, user, &state);
	if (ret != 0) {
		/* Rust has logged why; undo the next module's connect. */
		SMB_VFS_NEXT_DISCONNECT(handle);
		errno = ret;
		return -1;
	}
	SMB_VFS_HANDLE_SET_DATA(handle, state, nfsb_free_handle_state, void, {
		rust_ops->free_state(state);
		SMB_VFS_NEXT_DISCONNECT(handle);
		errno = ENOMEM;
		return -1;
	});
	return 0;
}

static struct vfs_fn_pointers nfsb_fns = {
	.connect_fn = nfsb_connect,
	/* Every slot left NULL passes straight to the next module. */
};

uint32_t nfsb_register(const struct nfsb_rust_ops *ops)
{
	int cls;

	rust_ops = ops;
	cls = debug_add_class(MODULE_NAME);
	if (cls != -1) {
		nfsb_debug_class = cls;
	}
	return NT_STATUS_V(smb_register_vfs(NFSB_REGISTER_VFS_VERSION, MODULE_NAME, &nfsb_fns));
}

const char *nfsb_handle_option(const nfsb_handle *handle, const char *option)
{
	return lp_parm_const_string(SNUM(to_vfs(handle)->conn), MODULE_NAME, option, NULL);
}

const char *nfsb_handle_connectpath(const nfsb_handle *handle)
{
	return to_vfs(handle)->conn->connectpath;
}

bool nfsb_debug_enabled(int level)
{
	return CHECK_DEBUGLVLC(nfsb_debug_class, level);
}

void nfsb_debug(int level, const char *location, const char *function, const char *message)
{
	if (CHECK_DEBUGLVLC(nfsb_debug_class, level) &&
	    dbghdrclass(level, nfsb_debug_class, location, function)) {
		dbgtext("%s\n", message);
	}
}
