/*
 * nfsbridge_shim.h - the one boundary between nfsbridge's Rust code and Samba.
 *
 * This header is plain C with no Samba includes: bindgen turns it into the Rust side
 * (module/src/ffi.rs). Everything that touches Samba structs, macros or talloc stays in
 * nfsbridge_shim.c behind these functions.
 *
 * Copyright (C) 2026 the nfsbridge authors. GPL-3.0-or-later.
 */
#ifndef NFSBRIDGE_SHIM_H
#define NFSBRIDGE_SHIM_H

#include <stdbool.h>
#include <stdint.h>

/* The Samba VFS interface this module is written for (Samba 4.22). The shim refuses to
 * compile against headers that declare another one; NFSB_REGISTER_VFS_VERSION below can only
 * be overridden to test smbd's own refusal of a mismatched module. */
#define NFSB_VFS_INTERFACE_VERSION 50

/* Opaque to Rust: one share's vfs_handle_struct. */
typedef struct nfsb_handle nfsb_handle;

/* Samba debug levels, as the DBG_* macros use them. */
#define NFSB_DBGLVL_ERR 0
#define NFSB_DBGLVL_WARNING 1
#define NFSB_DBGLVL_NOTICE 3
#define NFSB_DBGLVL_INFO 5
#define NFSB_DBGLVL_DEBUG 10

/*
 * Rust's half of the VFS operations the shim implements. Each entry is called by the shim's
 * own callback after (or instead of) the matching SMB_VFS_NEXT_* call, and must not unwind.
 */
struct nfsb_rust_ops {
	/* After the next module's connect succeeded. Returns 0 and sets *state (owned by Rust,
	 * released through free_state) to accept, or an errno value to refuse the tree connect. */
	int (*connect)(nfsb_handle *handle, const char *service, const char *user,
		       void **state);
	/* Releases what connect stored in *state; called once when the share is disconnected. */
	void (*free_state)(void *state);
};

/* Registers the "nfsbridge" VFS module with smbd. `ops` must live for the process.
 * Returns an NTSTATUS value (0 on success). */
uint32_t nfsb_register(const struct nfsb_rust_ops *ops);

/* The raw smb.conf value of "nfsbridge:<option>" for the handle's share (falling back to
 * [global]), or NULL when unset. Valid until the configuration is reloaded. */
const char *nfsb_handle_option(const nfsb_handle *handle, const char *option);

/* The share's path after substitutions (conn->connectpath). */
const char *nfsb_handle_connectpath(const nfsb_handle *handle);

/* Whether a message at `level` of nfsbridge's debug class would be logged. */
bool nfsb_debug_enabled(int level);

/* Logs one message through Samba's debug system, class "nfsbridge", with the Rust source
 * location and function in the header line. */
void nfsb_debug(int level, const char *location, const char *function, const char *message);

#endif /* NFSBRIDGE_SHIM_H */
