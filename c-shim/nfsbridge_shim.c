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
#include "smbd/globals.h"
#include "lib/util/debug.h"
#include "passdb/lookup_sid.h"
#include "libcli/security/security.h"
#include "librpc/gen_ndr/idmap.h"
#include "librpc/gen_ndr/ndr_open_files.h"
#include "locking/share_mode_lock.h"
#include "locking/leases_db.h"
#include "messages.h"
#include "lib/tsocket/tsocket.h"
#include "lib/util/tevent_ntstatus.h"
#include "lib/util/dlinklist.h"

#include <linux/capability.h>
#include <sys/syscall.h>

#include "nfsbridge_shim.h"
#include "nfsbridge_internal.h"
#include "nfsbridge_failover.h"
#include "nfsbridge_recall.h"

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

static void bridge_ensure(struct vfs_handle_struct *handle, void *state);

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
	if (rust_ops->leases_enabled(state)) {
		/* Reach the lease bridge now, so the first open does not pay for it. */
		bridge_ensure(handle, state);
	}
	if (rust_ops->directory_delegations(state)) {
		nfsb_dirlease_connect(handle->conn);
	}
	if (rust_ops->acl_bridge_enabled(state)) {
		/* Counts the loop turns the ACL state cache keeps its snapshots for. */
		nfsb_trace_install(handle->conn->sconn->ev_ctx);
	}
	return 0;
}

struct nfsb_sd_result {
	TALLOC_CTX *mem_ctx;
	struct security_descriptor **ppdesc;
	bool set;
};

static void *handle_state(struct vfs_handle_struct *handle)
{
	return handle->data;
}

/* NFSB_DELEGATE_* for nfsb_dirlease_after_create. */
static unsigned delegations(void *state)
{
	unsigned which = 0;

	if (state != NULL && rust_ops->directory_delegations(state)) {
		which |= NFSB_DELEGATE_DIRECTORY_LEASES;
		if (rust_ops->handle_lease_delegations(state)) {
			which |= NFSB_DELEGATE_HANDLE_LEASES;
		}
	}
	return which;
}

static NTSTATUS nfsb_fget_nt_acl(struct vfs_handle_struct *handle, struct files_struct *fsp,
				 uint32_t security_info, TALLOC_CTX *mem_ctx,
				 struct security_descriptor **ppdesc)
{
	void *state = handle_state(handle);
	struct nfsb_sd_result result = { .mem_ctx = mem_ctx, .ppdesc = ppdesc, .set = false };
	NTSTATUS status;

	if (state == NULL || !rust_ops->acl_bridge_enabled(state)) {
		return SMB_VFS_NEXT_FGET_NT_ACL(handle, fsp, security_info, mem_ctx, ppdesc);
	}
	status = NT_STATUS(rust_ops->fget_nt_acl(to_nfsb(handle), state, (nfsb_fsp *)fsp,
						  security_info, &result));
	if (NT_STATUS_IS_OK(status) && !result.set) {
		DBG_ERR("nfsbridge: no security descriptor produced for %s\n", fsp_str_dbg(fsp));
		return NT_STATUS_INTERNAL_ERROR;
	}
	return status;
}

static NTSTATUS fset_nt_acl_bridged(struct vfs_handle_struct *handle, struct files_struct *fsp,
				    uint32_t security_info_sent,
				    const struct security_descriptor *psd)
{
	void *state = handle_state(handle);
	uint8_t *data = NULL;
	size_t len = 0;
	NTSTATUS status;

	if (state == NULL || !rust_ops->acl_bridge_enabled(state)) {
		return SMB_VFS_NEXT_FSET_NT_ACL(handle, fsp, security_info_sent, psd);
	}
	status = marshall_sec_desc(talloc_tos(), psd, &data, &len);
	if (!NT_STATUS_IS_OK(status)) {
		DBG_ERR("nfsbridge: cannot marshall the security descriptor for %s: %s\n",
			fsp_str_dbg(fsp), nt_errstr(status));
		return status;
	}
	status = NT_STATUS(rust_ops->fset_nt_acl(to_nfsb(handle), state, (nfsb_fsp *)fsp,
						  security_info_sent, data, len));
	TALLOC_FREE(data);
	/* The mirror changed mode and maybe owner: let smbd see them. */
	(void)vfs_stat_fsp(fsp);
	return status;
}

/*
 * smbd applies the Windows ACL itself before every open, rename and delete (its NT access
 * check). The POSIX mirror that the kernel enforces is for everyone else (NFS, local users),
 * and it is narrower than the Windows ACL where POSIX cannot express a Windows right (write
 * without read, delete through DELETE on the file, execute-only ...). So when the kernel
 * refuses an SMB operation, it is retried as root: the Windows ACL has already allowed it.
 * A file created by the retry is handed to the user straight away (fchown to the user's uid
 * and to its gid, or the directory's with setgid, as the kernel would have), before smbd
 * sees the descriptor.
 */
static bool kernel_refused(void *state, int ret, int err)
{
	return ret == -1 && (err == EACCES || err == EPERM) && state != NULL &&
	       rust_ops->smb_overrides_posix_mirror(state);
}

/* The owner and group the user's own create in `dirfsp` would have given (the directory's
 * group when it has setgid). Must be asked before become_root(). */
struct creator {
	uid_t uid;
	gid_t gid;
};

static struct creator creator_of(struct vfs_handle_struct *handle,
				 const struct files_struct *dirfsp)
{
	struct creator c = {
		.uid = get_current_uid(handle->conn),
		.gid = get_current_gid(handle->conn),
	};

	if (VALID_STAT(dirfsp->fsp_name->st) && (dirfsp->fsp_name->st.st_ex_mode & S_ISGID)) {
		c.gid = dirfsp->fsp_name->st.st_ex_gid;
	}
	return c;
}

static int openat_with_root_retry(struct vfs_handle_struct *handle,
				  const struct files_struct *dirfsp,
				  const struct smb_filename *smb_fname, struct files_struct *fsp,
				  const struct vfs_open_how *how)
{
	struct vfs_open_how root_how = *how;
	struct creator creator;
	bool created = false;
	int fd, err;

	fd = SMB_VFS_NEXT_OPENAT(handle, dirfsp, smb_fname, fsp, how);
	err = errno;
	if (!kernel_refused(handle_state(handle), fd, err)) {
		errno = err;
		return fd;
	}
	creator = creator_of(handle, dirfsp);
	become_root();
	if (how->flags & O_CREAT) {
		/* Create only what does not exist yet, so that we know who made it. */
		root_how.flags |= O_EXCL;
		fd = SMB_VFS_NEXT_OPENAT(handle, dirfsp, smb_fname, fsp, &root_how);
		created = (fd != -1);
		if (fd == -1 && errno == EEXIST && !(how->flags & O_EXCL)) {
			root_how.flags &= ~(O_CREAT | O_EXCL);
			fd = SMB_VFS_NEXT_OPENAT(handle, dirfsp, smb_fname, fsp, &root_how);
		}
	} else {
		fd = SMB_VFS_NEXT_OPENAT(handle, dirfsp, smb_fname, fsp, &root_how);
	}
	int retry_err = errno;
	if (created && fchown(fd, creator.uid, creator.gid) != 0) {
		int chown_err = errno;
		DBG_ERR("nfsbridge: cannot hand %s to its creator: %s\n",
			smb_fname_str_dbg(smb_fname), strerror(chown_err));
		close(fd);
		fd = -1;
		(void)SMB_VFS_NEXT_UNLINKAT(handle, discard_const_p(struct files_struct, dirfsp),
					    smb_fname, 0);
	}
	unbecome_root();
	if (fd == -1) {
		/* A name that does not exist is reported as such (as Windows' bypass traverse
		 * would), so that smbd goes on to create it; otherwise the user's own error. */
		errno = (retry_err == ENOENT) ? ENOENT : err;
		return -1;
	}
	DBG_DEBUG("nfsbridge: %s %s as root after the kernel refused it (%s); smbd's NT access "
		  "check allowed it\n", created ? "created" : "opened",
		  smb_fname_str_dbg(smb_fname), strerror(err));
	return fd;
}

/* Runs `call` (an int VFS call: -1 and errno on failure); if the kernel refused it and the
 * share's Windows ACL governs it (kernel_refused), runs it again as root. When the retry fails
 * too, the user's own errno is kept. */
#define CALL_WITH_ROOT_RETRY(handle, call)                                  \
	({                                                                  \
		int _ret = (call);                                          \
		int _err = errno;                                           \
		if (kernel_refused(handle_state(handle), _ret, _err)) {     \
			become_root();                                      \
			_ret = (call);                                      \
			unbecome_root();                                    \
		}                                                           \
		errno = _err;                                               \
		_ret;                                                       \
	})

/* Looking a name up needs search (x) permission on every directory above it; Windows
 * grants "bypass traverse checking" to everyone by default, and smbd checks the opens that
 * follow. So a stat the kernel refuses is retried as root too. */
static int nfsb_stat(struct vfs_handle_struct *handle, struct smb_filename *smb_fname)
{
	return CALL_WITH_ROOT_RETRY(handle, SMB_VFS_NEXT_STAT(handle, smb_fname));
}

static int nfsb_lstat(struct vfs_handle_struct *handle, struct smb_filename *smb_fname)
{
	return CALL_WITH_ROOT_RETRY(handle, SMB_VFS_NEXT_LSTAT(handle, smb_fname));
}

static int nfsb_fstatat(struct vfs_handle_struct *handle, const struct files_struct *dirfsp,
			const struct smb_filename *smb_fname, SMB_STRUCT_STAT *sbuf, int flags)
{
	return CALL_WITH_ROOT_RETRY(handle,
				    SMB_VFS_NEXT_FSTATAT(handle, dirfsp, smb_fname, sbuf, flags));
}

/*
 * smbd's namespace changes (create, delete, rename, link) are announced for their duration
 * (nfsb_namespace_begin/end, nfsbridge_dirlease.c), so that an smbd holding a directory
 * delegation on the directory gives it back at once instead of breaking leases first: Samba
 * breaks directory leases for its own changes. ANNOUNCED evaluates `call` (of any type) so.
 */
#define ANNOUNCED(dir_a, dir_b, entry, call)                                  \
	({                                                                    \
		struct nfsb_namespace_change _announced;                      \
		__typeof__(call) _announced_ret;                              \
		nfsb_namespace_begin(&_announced, (dir_a), (dir_b), (entry)); \
		_announced_ret = (call);                                      \
		nfsb_namespace_end(&_announced);                              \
		_announced_ret;                                               \
	})

static int nfsb_unlinkat(struct vfs_handle_struct *handle, struct files_struct *dirfsp,
			 const struct smb_filename *smb_fname, int flags)
{
	return ANNOUNCED(dirfsp, NULL, smb_fname,
			 CALL_WITH_ROOT_RETRY(handle, SMB_VFS_NEXT_UNLINKAT(handle, dirfsp, smb_fname,
									  flags)));
}

static int nfsb_renameat(struct vfs_handle_struct *handle, struct files_struct *srcdir_fsp,
			 const struct smb_filename *smb_fname_src, struct files_struct *dstdir_fsp,
			 const struct smb_filename *smb_fname_dst, const struct vfs_rename_how *how)
{
	return ANNOUNCED(srcdir_fsp, dstdir_fsp, smb_fname_src,
			 CALL_WITH_ROOT_RETRY(handle,
					      SMB_VFS_NEXT_RENAMEAT(handle, srcdir_fsp, smb_fname_src,
								    dstdir_fsp, smb_fname_dst, how)));
}

static int nfsb_linkat(struct vfs_handle_struct *handle, struct files_struct *srcfsp,
		       const struct smb_filename *old_smb_fname, struct files_struct *dstfsp,
		       const struct smb_filename *new_smb_fname, int flags)
{
	return ANNOUNCED(dstfsp, NULL, NULL,
			 SMB_VFS_NEXT_LINKAT(handle, srcfsp, old_smb_fname, dstfsp, new_smb_fname,
					     flags));
}

static int nfsb_symlinkat(struct vfs_handle_struct *handle,
			  const struct smb_filename *link_contents, struct files_struct *dirfsp,
			  const struct smb_filename *new_smb_fname)
{
	return ANNOUNCED(dirfsp, NULL, NULL,
			 SMB_VFS_NEXT_SYMLINKAT(handle, link_contents, dirfsp, new_smb_fname));
}

static int nfsb_mknodat(struct vfs_handle_struct *handle, struct files_struct *dirfsp,
			const struct smb_filename *smb_fname, mode_t mode, SMB_DEV_T dev)
{
	return ANNOUNCED(dirfsp, NULL, NULL,
			 SMB_VFS_NEXT_MKNODAT(handle, dirfsp, smb_fname, mode, dev));
}

/*
 * A change of a directory's own attributes, timestamps, xattrs (DOS attributes) or ACL breaks a
 * delegation on it too (checked on Linux 7.3: chmod, utimes, setxattr, setfacl of the
 * directory; nothing done to a file inside it does, but its delete, rename or creation): smbd's
 * own are announced as well. Files need nothing (delegations are held on directories only).
 */
#define ANNOUNCED_IF_DIRECTORY(fsp, call) \
	((fsp)->fsp_flags.is_directory ? ANNOUNCED((fsp), NULL, NULL, (call)) : (call))

static int nfsb_fntimes(struct vfs_handle_struct *handle, struct files_struct *fsp,
			struct smb_file_time *ft)
{
	return ANNOUNCED_IF_DIRECTORY(fsp, SMB_VFS_NEXT_FNTIMES(handle, fsp, ft));
}

static int nfsb_fchmod(struct vfs_handle_struct *handle, struct files_struct *fsp, mode_t mode)
{
	return ANNOUNCED_IF_DIRECTORY(fsp, SMB_VFS_NEXT_FCHMOD(handle, fsp, mode));
}

static int nfsb_fchown(struct vfs_handle_struct *handle, struct files_struct *fsp, uid_t uid,
		       gid_t gid)
{
	return ANNOUNCED_IF_DIRECTORY(fsp, SMB_VFS_NEXT_FCHOWN(handle, fsp, uid, gid));
}

/* An xattr or POSIX ACL write that did not come through the ACL bridge: the ACL state cache
 * forgets the file, since within one loop turn it trusts a read whose ctime a write in the
 * same clock tick may keep (nfsbridge::acl::statecache). */
#define ACL_STATE_CHANGED(fsp, call)                                                      \
	({                                                                                \
		__typeof__(call) _changed_ret = (call);                                   \
		rust_ops->acl_state_changed((fsp)->fsp_name->st.st_ex_dev,                \
					    (fsp)->fsp_name->st.st_ex_ino);               \
		_changed_ret;                                                             \
	})

static int nfsb_fsetxattr(struct vfs_handle_struct *handle, struct files_struct *fsp,
			  const char *name, const void *value, size_t size, int flags)
{
	return ACL_STATE_CHANGED(fsp, ANNOUNCED_IF_DIRECTORY(fsp, SMB_VFS_NEXT_FSETXATTR(
						     handle, fsp, name, value, size, flags)));
}

static int nfsb_fremovexattr(struct vfs_handle_struct *handle, struct files_struct *fsp,
			     const char *name)
{
	return ACL_STATE_CHANGED(fsp, ANNOUNCED_IF_DIRECTORY(fsp, SMB_VFS_NEXT_FREMOVEXATTR(
						     handle, fsp, name)));
}

static int nfsb_sys_acl_set_fd(struct vfs_handle_struct *handle, struct files_struct *fsp,
			       SMB_ACL_TYPE_T type, SMB_ACL_T theacl)
{
	return ACL_STATE_CHANGED(fsp, ANNOUNCED_IF_DIRECTORY(fsp, SMB_VFS_NEXT_SYS_ACL_SET_FD(
						     handle, fsp, type, theacl)));
}

static int nfsb_sys_acl_delete_def_fd(struct vfs_handle_struct *handle, struct files_struct *fsp)
{
	return ACL_STATE_CHANGED(fsp, ANNOUNCED_IF_DIRECTORY(fsp,
							     SMB_VFS_NEXT_SYS_ACL_DELETE_DEF_FD(
								     handle, fsp)));
}

/* The ACL bridge writes through the next module: a directory's new ACL is announced here (the
 * wrappers above do not see those writes). */
static NTSTATUS nfsb_fset_nt_acl(struct vfs_handle_struct *handle, struct files_struct *fsp,
				 uint32_t security_info_sent,
				 const struct security_descriptor *psd)
{
	return ANNOUNCED_IF_DIRECTORY(fsp,
				      fset_nt_acl_bridged(handle, fsp, security_info_sent, psd));
}

/* A directory the Windows ACL lets the user create (ADD_SUBDIRECTORY, checked by smbd) but the
 * POSIX mirror of its parent does not (no w+x there): created as root and handed to the user
 * at once, as openat_bridged does for files. EEXIST and other errors of the retry are not
 * reported over the user's own. */
static int mkdirat_with_root_retry(struct vfs_handle_struct *handle, struct files_struct *dirfsp,
				   const struct smb_filename *smb_fname, mode_t mode)
{
	int ret = SMB_VFS_NEXT_MKDIRAT(handle, dirfsp, smb_fname, mode);
	int err = errno;
	struct creator creator;

	if (!kernel_refused(handle_state(handle), ret, err)) {
		errno = err;
		return ret;
	}
	creator = creator_of(handle, dirfsp);
	become_root();
	ret = SMB_VFS_NEXT_MKDIRAT(handle, dirfsp, smb_fname, mode);
	if (ret == 0) {
		if (fchownat(fsp_get_pathref_fd(dirfsp), smb_fname->base_name, creator.uid,
			     creator.gid, AT_SYMLINK_NOFOLLOW) != 0) {
			DBG_ERR("nfsbridge: cannot hand directory %s to its creator: %s\n",
				smb_fname_str_dbg(smb_fname), strerror(errno));
			(void)SMB_VFS_NEXT_UNLINKAT(handle, dirfsp, smb_fname, AT_REMOVEDIR);
			ret = -1;
		}
	}
	unbecome_root();
	if (ret != 0) {
		errno = err;
	}
	return ret;
}

static int nfsb_mkdirat(struct vfs_handle_struct *handle, struct files_struct *dirfsp,
			const struct smb_filename *smb_fname, mode_t mode)
{
	return ANNOUNCED(dirfsp, NULL, NULL,
			 mkdirat_with_root_retry(handle, dirfsp, smb_fname, mode));
}

/*
 * The lease bridge (docs/lease-bridge.md). SMB opens of regular files do not open the file
 * themselves: the bridge daemon holds one open file description per inode and hands each open
 * a dup of it, so that SMB opens never break each other's kernel lease and only non-SMB
 * openers (local processes, nfsd, Ganesha) do. What smbd grants is then backed by a kernel
 * lease the daemon takes on that description; the daemon's break requests become
 * MSG_SMB_BREAK_REQUEST messages smbd sends to itself, so smbd's own oplock and lease break
 * code does the SMB side exactly as for a break between two SMB clients.
 */

/* The one event context and server connection of this smbd process (set at tree connect):
 * the bridge socket is per process. */
static struct smbd_server_connection *bridge_sconn;
static struct tevent_fd *bridge_fde;
static int bridge_watched_fd = -1;
/* The client's and the server's address of this process's connection, for the bridge's
 * table: the same for every open, so made once. */
static const char *bridge_client_address = "";
static const char *bridge_server_address = "";

/* The address without the port ("127.0.0.1"), or "" */
static const char *peer_address(TALLOC_CTX *mem_ctx, const struct tsocket_address *addr)
{
	char *text = (addr == NULL) ? NULL : tsocket_address_inet_addr_string(addr, mem_ctx);
	return text == NULL ? "" : text;
}


static bool leases_on(void *state)
{
	return state != NULL && rust_ops->leases_enabled(state);
}

static struct tevent_immediate *bridge_queued_im;

static void bridge_take_requests(void)
{
	if (!rust_ops->bridge_readable()) {
		/* The daemon is gone: stop watching before Rust closes the socket. */
		TALLOC_FREE(bridge_fde);
		bridge_watched_fd = -1;
		rust_ops->bridge_disconnect();
	}
}

static void bridge_socket_readable(struct tevent_context *ev, struct tevent_fd *fde,
				   uint16_t flags, void *private_data)
{
	bridge_take_requests();
}

static void bridge_queued_requests(struct tevent_context *ev, struct tevent_immediate *im,
				   void *private_data)
{
	bridge_take_requests();
}

/* Break requests that arrived while a request (open, grant) waited for its reply were read
 * off the socket, so its readability will not announce them: take them from the main loop,
 * after the current request (never inside an open, where smbd holds the share-mode lock). */
static void bridge_schedule_queued(void)
{
	if (bridge_sconn == NULL || !rust_ops->bridge_has_queued_requests()) {
		return;
	}
	if (bridge_queued_im == NULL) {
		bridge_queued_im = tevent_create_immediate(bridge_sconn);
		if (bridge_queued_im == NULL) {
			DBG_ERR("nfsbridge: cannot schedule the lease bridge's queued requests\n");
			return;
		}
	}
	tevent_schedule_immediate(bridge_queued_im, bridge_sconn->ev_ctx, bridge_queued_requests,
				  NULL);
}

/*
 * The lease bridge may point the kernel's break signal of a file that only this process's
 * clients cache on at this process (F_SETOWN), so that the SMB break starts without waiting
 * for the bridge to wake up (docs/lease-bridge.md, "Direct breaks"). Both signals stay handled
 * for the rest of the process's life: the default action of a realtime signal, and of the
 * SIGIO the kernel sends when the realtime queue overflows, would end smbd. Each is set to
 * SIG_IGN first, which is what tevent restores if its handler ever goes.
 */
static bool bridge_signals_tried;

static void bridge_break_signal_arrived(struct tevent_context *ev, struct tevent_signal *se,
					int signum, int count, void *siginfo, void *private_data)
{
	if (signum == SIGIO || siginfo == NULL) {
		rust_ops->bridge_break_signals_lost();
		return;
	}
	rust_ops->bridge_break_signalled(((siginfo_t *)siginfo)->si_fd);
}

static void bridge_handle_signals(struct tevent_context *ev)
{
	int signo;

	if (bridge_signals_tried) {
		return;
	}
	bridge_signals_tried = true;
	signo = rust_ops->bridge_break_signal();
	if (signo <= 0 || signal(signo, SIG_IGN) == SIG_ERR || signal(SIGIO, SIG_IGN) == SIG_ERR ||
	    tevent_add_signal(ev, ev, signo, SA_SIGINFO, bridge_break_signal_arrived, NULL) == NULL ||
	    tevent_add_signal(ev, ev, SIGIO, 0, bridge_break_signal_arrived, NULL) == NULL) {
		DBG_ERR("nfsbridge: cannot handle the lease break signals; every break goes through "
			"the lease bridge\n");
		return;
	}
	rust_ops->bridge_signals_handled();
}

/* Connects to the bridge if needed (Rust rate-limits attempts) and watches its socket. */
static void bridge_ensure(struct vfs_handle_struct *handle, void *state)
{
	int fd;

	if (bridge_sconn == NULL) {
		bridge_sconn = handle->conn->sconn;
		bridge_client_address = peer_address(bridge_sconn, bridge_sconn->remote_address);
		bridge_server_address = peer_address(bridge_sconn, bridge_sconn->local_address);
		bridge_handle_signals(bridge_sconn->ev_ctx);
	}
	if (rust_ops->bridge_broken()) {
		TALLOC_FREE(bridge_fde);
		bridge_watched_fd = -1;
		rust_ops->bridge_disconnect();
	}
	fd = rust_ops->bridge_socket(state, false);
	if (fd < 0) {
		become_root(); /* the daemon admits root peers (SO_PEERCRED of connect()) */
		fd = rust_ops->bridge_socket(state, true);
		unbecome_root();
	}
	if (fd == bridge_watched_fd) {
		return;
	}
	TALLOC_FREE(bridge_fde);
	bridge_watched_fd = -1;
	if (fd < 0) {
		return;
	}
	bridge_fde = tevent_add_fd(bridge_sconn->ev_ctx, bridge_sconn, fd, TEVENT_FD_READ,
				   bridge_socket_readable, NULL);
	if (bridge_fde == NULL) {
		DBG_ERR("nfsbridge: cannot watch the lease bridge socket\n");
		rust_ops->bridge_disconnect();
		return;
	}
	bridge_watched_fd = fd;
}

/* Whether this open goes through the bridge: a data open (not O_PATH) of something that is
 * not a directory or a named stream (streams have no description of their own). Whether it is
 * a regular file is checked on the reference descriptor. */
static bool bridge_applies(void *state, const struct smb_filename *smb_fname,
			   const struct files_struct *fsp, const struct vfs_open_how *how)
{
	return leases_on(state) && !fsp->fsp_flags.is_pathref &&
	       !(how->flags & (O_PATH | O_DIRECTORY)) && !is_named_stream(smb_fname);
}

/* smbd reopens a path reference through /proc/self/fd/N (reopen_from_fsp). */
static bool is_proc_reopen(const struct files_struct *dirfsp,
			   const struct smb_filename *smb_fname, const struct files_struct *fsp)
{
	return dirfsp == fsp->conn->cwd_fsp &&
	       strncmp(smb_fname->base_name, "/proc/self/fd/", 14) == 0 &&
	       fsp_get_pathref_fd(fsp) != -1;
}

/* An O_PATH descriptor of the name (no open of the file itself, so no lease is broken). */
static int open_path_reference(struct vfs_handle_struct *handle,
			       const struct files_struct *dirfsp,
			       const struct smb_filename *smb_fname, struct files_struct *fsp,
			       const struct vfs_open_how *how)
{
	struct vfs_open_how path_how = {
		.flags = O_PATH | O_CLOEXEC | (how->flags & O_NOFOLLOW),
		.resolve = how->resolve,
	};
	return openat_with_root_retry(handle, dirfsp, smb_fname, fsp, &path_how);
}

/* An O_PATH descriptor of the file the data descriptor `fd` (of a file just created) has open,
 * which replaces it (closed); `fd` itself if that cannot be had. The kernel refuses a write
 * lease while another description of the file is open for reading or writing, so the bridge
 * could not grant with the open if the create's own descriptor stayed open meanwhile (and the
 * grant would cost a second round trip after the create). O_PATH descriptors do not count. */
static int path_reference_instead(int fd)
{
	struct sys_proc_fd_path_buf buf;
	int path_fd = open(sys_proc_fd_path(fd, &buf), O_PATH | O_CLOEXEC);

	if (path_fd == -1) {
		return fd;
	}
	close(fd);
	return path_fd;
}

static bool wants_write(const struct vfs_open_how *how)
{
	return (how->flags & O_ACCMODE) != O_RDONLY || (how->flags & O_TRUNC);
}

/* The user's own permission for the open, checked without opening (the bridge's description
 * is opened by root). Refused, it is allowed only where an open would have been retried as
 * root (kernel_refused). Returns 0 or an errno value. */
static int check_open_permission(void *state, int reference, const struct vfs_open_how *how)
{
	int mode = R_OK;
	int ret;

	switch (how->flags & O_ACCMODE) {
	case O_WRONLY:
		mode = W_OK;
		break;
	case O_RDWR:
		mode = R_OK | W_OK;
		break;
	}
	if (how->flags & O_TRUNC) {
		mode |= W_OK;
	}
	ret = faccessat(reference, "", mode, AT_EACCESS | AT_EMPTY_PATH);
	if (ret == 0 || kernel_refused(state, ret, errno)) {
		return 0;
	}
	return errno;
}

/* What the SMB create in progress asks to cache (set by nfsb_create_file around the next
 * module's create, taken by the first bridged open it makes). */
static struct {
	bool pending;
	uint32_t requested;
	bool is_lease;
	struct smb2_lease_key key;
} create_request;

/* The file whose bridged open in the SMB create in progress met a lease or delegation of
 * someone else (EWOULDBLOCK), for create_file's post-hook. */
static struct {
	bool seen;
	uint64_t dev, ino;
} bridge_conflict;

/* Gives up, on a timer, the descriptions that closed opens left parked in the module. */
static struct tevent_timer *bridge_park_timer;

static void bridge_park_timer_arm(uint32_t ms);

static void bridge_park_expired(struct tevent_context *ev, struct tevent_timer *te,
				struct timeval now, void *private_data)
{
	bridge_park_timer = NULL;
	bridge_park_timer_arm(rust_ops->bridge_expire_parked());
}

static void bridge_park_timer_arm(uint32_t ms)
{
	if (ms == 0 || bridge_park_timer != NULL || bridge_sconn == NULL) {
		return;
	}
	bridge_park_timer = tevent_add_timer(bridge_sconn->ev_ctx, bridge_sconn,
					     timeval_current_ofs_msec(ms), bridge_park_expired, NULL);
	if (bridge_park_timer == NULL) {
		DBG_ERR("nfsbridge: cannot schedule giving up parked descriptions\n");
	}
}

/* The open whose descriptor is `fd` is closing. */
static void bridge_closing(int fd)
{
	bridge_park_timer_arm(rust_ops->bridge_close(fd));
}

/* Hands `reference` to the bridge; the shared description's dup, or -1 and errno. Sets
 * *unreachable when the bridge could not be asked (the caller opens without it). */
static int bridge_open(struct vfs_handle_struct *handle, void *state, int reference,
		       const struct stat *st, const struct vfs_open_how *how, bool *unreachable)
{
	struct nfsb_create_request request = { .requested = 0 };
	int fd;

	bridge_ensure(handle, state);
	if (create_request.pending) {
		create_request.pending = false;
		request = (struct nfsb_create_request){
			.requested = create_request.requested,
			.lease_key = create_request.is_lease ?
					     (const uint8_t *)&create_request.key : NULL,
			.client_address = bridge_client_address,
			.server_address = bridge_server_address,
		};
	}
	fd = rust_ops->bridge_open(state, reference, (uint64_t)st->st_dev, (uint64_t)st->st_ino,
				   wants_write(how), (how->flags & O_NONBLOCK) != 0, &request);
	bridge_schedule_queued();
	*unreachable = (fd == NFSB_BRIDGE_UNREACHABLE);
	if (fd < 0) {
		errno = *unreachable ? EIO : -fd;
		return -1;
	}
	if (how->flags & O_TRUNC) {
		/* Through the shared description: does not break our own kernel lease. */
		if (ftruncate(fd, 0) != 0) {
			int err = errno;
			bridge_closing(fd);
			close(fd);
			errno = err;
			return -1;
		}
	}
	return fd;
}

static int openat_bridged(struct vfs_handle_struct *handle, const struct files_struct *dirfsp,
			  const struct smb_filename *smb_fname, struct files_struct *fsp,
			  const struct vfs_open_how *how)
{
	void *state = handle_state(handle);
	struct stat st;
	bool own_reference = false, unreachable = false, created = false;
	int reference, fd, err;

	if (!bridge_applies(state, smb_fname, fsp, how)) {
		return openat_with_root_retry(handle, dirfsp, smb_fname, fsp, how);
	}
	if (is_proc_reopen(dirfsp, smb_fname, fsp)) {
		reference = fsp_get_pathref_fd(fsp);
	} else {
		reference = open_path_reference(handle, dirfsp, smb_fname, fsp, how);
		own_reference = true;
		if (reference == -1 && errno == ENOENT && (how->flags & O_CREAT)) {
			/* A new file: create it (as smbd always does, O_EXCL), then share it. */
			struct vfs_open_how create_how = *how;
			create_how.flags = (how->flags | O_EXCL) & ~O_TRUNC;
			reference = openat_with_root_retry(handle, dirfsp, smb_fname, fsp,
							   &create_how);
			created = (reference != -1);
			if (created) {
				reference = path_reference_instead(reference);
			}
		} else if (reference != -1 && (how->flags & O_CREAT) && (how->flags & O_EXCL)) {
			close(reference);
			errno = EEXIST;
			return -1;
		}
		if (reference == -1) {
			return -1;
		}
	}
	if (fstat(reference, &st) != 0 || !S_ISREG(st.st_mode)) {
		if (own_reference) {
			close(reference);
		}
		return openat_with_root_retry(handle, dirfsp, smb_fname, fsp, how);
	}
	/* The creator of a new file gets the access it asked for, whatever its mode says. */
	err = created ? 0 : check_open_permission(state, reference, how);
	if (err != 0) {
		if (own_reference) {
			close(reference);
		}
		errno = err;
		return -1;
	}
	fd = bridge_open(handle, state, reference, &st, how, &unreachable);
	err = errno;
	if (fd == -1 && err == EWOULDBLOCK) {
		bridge_conflict.seen = true;
		bridge_conflict.dev = (uint64_t)st.st_dev;
		bridge_conflict.ino = (uint64_t)st.st_ino;
	}
	if (own_reference) {
		close(reference);
	}
	if (fd == -1 && (unreachable || created)) {
		/* Serve the open without the bridge (for a file this open created, whatever the
		 * bridge answered: smbd must get the file it created); create_file then takes back
		 * any caching granted on it (nothing backs it). */
		struct vfs_open_how plain_how = *how;
		plain_how.flags &= ~(O_CREAT | O_EXCL);
		return openat_with_root_retry(handle, dirfsp, smb_fname, fsp, &plain_how);
	}
	errno = err;
	return fd;
}

static int nfsb_openat(struct vfs_handle_struct *handle, const struct files_struct *dirfsp,
		       const struct smb_filename *smb_fname, struct files_struct *fsp,
		       const struct vfs_open_how *how)
{
	if (!(how->flags & O_CREAT)) {
		return openat_bridged(handle, dirfsp, smb_fname, fsp, how);
	}
	/* May create the file. */
	return ANNOUNCED(dirfsp, NULL, NULL, openat_bridged(handle, dirfsp, smb_fname, fsp, how));
}

static int nfsb_close(struct vfs_handle_struct *handle, struct files_struct *fsp)
{
	int fd = fsp_get_pathref_fd(fsp);

	if (fd != -1 && leases_on(handle_state(handle))) {
		bridge_closing(fd);
	}
	return SMB_VFS_NEXT_CLOSE(handle, fsp);
}

/*
 * A break smbd is carrying out for the bridge; freed with its fsp. The module learns that the
 * client answered by looking at the fsp's lease or oplock after every event the main loop
 * handles (smbd processes an acknowledgement, or a break that needs none, within one event,
 * and updates the fsp's copy of the lease there), and on a backing-off timer for the rare
 * change made by another process (an acknowledgement on another connection of the client).
 *
 * Not a share-mode watch: dbwrap wakes only the first watcher of a record, and a watcher that
 * waits on the main event context cannot run while this process waits for the same record's
 * lock in a nested one (process_oplock_break_message does, when another smbd holds the
 * record), so every waiter behind it slept until g_lock's 5-9 s retry.
 */
struct bridge_break {
	struct bridge_break *prev, *next;
	struct files_struct *fsp;
	uint32_t break_to;
	uint64_t token;
	bool answered;
};

static struct bridge_break *bridge_breaks;
static struct tevent_timer *bridge_breaks_timer;
static uint32_t bridge_breaks_poll_ms;
static tevent_trace_callback_t bridge_chained_trace;
static void *bridge_chained_trace_private;

/* The caching the fsp's client has now, and whether a break is still in flight. `reread`:
 * refresh a lease from leases.tdb first (otherwise the fsp's copy, which this process keeps
 * current for its own changes). */
static bool bridge_break_finished(struct bridge_break *b, bool reread, uint32_t *state)
{
	struct files_struct *fsp = b->fsp;

	if (fsp->oplock_type == LEASE_OPLOCK) {
		if (reread) {
			(void)fsp_lease_update(fsp);
		}
		*state = fsp->lease->lease.lease_state;
		if (fsp->lease->lease.lease_flags & SMB2_LEASE_FLAG_BREAK_IN_PROGRESS) {
			return false;
		}
	} else {
		*state = fsp_lease_type(fsp); /* oplocks: no database access */
		if (fsp->sent_oplock_break != NO_BREAK_SENT) {
			return false;
		}
	}
	return (*state & ~b->break_to) == 0;
}

/* Answers the bridge if the break is over; frees b then. An answer is always confirmed against
 * leases.tdb: another process may have changed the lease since this one last looked. */
static void bridge_break_check(struct bridge_break *b, bool reread)
{
	uint32_t state;

	if (!bridge_break_finished(b, reread, &state)) {
		return;
	}
	if (!reread && !bridge_break_finished(b, true, &state)) {
		return;
	}
	b->answered = true;
	if (b->token != 0) {
		rust_ops->break_answered(b->token, state);
	}
	TALLOC_FREE(b);
}

static void bridge_breaks_check_all(bool reread)
{
	struct bridge_break *b, *next;

	for (b = bridge_breaks; b != NULL; b = next) {
		next = b->next; /* the check may free b (and only b) */
		bridge_break_check(b, reread);
	}
}

/* Counted by nfsb_trace on the event context it is installed on (nfsb_loop_turn). */
static uint64_t loop_turn = 1;
static struct tevent_context *loop_turn_ev;

/* The module's one trace callback: the loop turns (the ACL state cache's snapshots), the lease
 * bridge's break checks after each turn, and the directory delegations' idle flag around each
 * wait. */
static void nfsb_trace(enum tevent_trace_point point, void *private_data)
{
	if (point == TEVENT_TRACE_BEFORE_LOOP_ONCE || point == TEVENT_TRACE_AFTER_LOOP_ONCE) {
		loop_turn++; /* also at the end: what runs between two turns is a turn of its own */
	}
	if (bridge_chained_trace != NULL) {
		bridge_chained_trace(point, bridge_chained_trace_private);
	}
	nfsb_dirlease_trace(point);
	if (point == TEVENT_TRACE_AFTER_LOOP_ONCE && bridge_breaks != NULL) {
		bridge_breaks_check_all(false);
	}
}

/* Chains onto smbd's own trace callback (its idle-time profiling); checked again by the
 * callers' timers, in case smbd set another one since. */
void nfsb_trace_install(struct tevent_context *ev)
{
	tevent_trace_callback_t current;
	void *current_private;

	tevent_get_trace_callback(ev, &current, &current_private);
	if (current == nfsb_trace) {
		return;
	}
	bridge_chained_trace = current;
	bridge_chained_trace_private = current_private;
	tevent_set_trace_callback(ev, nfsb_trace, NULL);
	loop_turn_ev = ev;
	loop_turn++;
}

uint64_t nfsb_loop_turn(void)
{
	tevent_trace_callback_t current;
	void *current_private;

	if (loop_turn_ev == NULL) {
		return 0;
	}
	/* Someone may have set another callback since: then the turns are not counted. */
	tevent_get_trace_callback(loop_turn_ev, &current, &current_private);
	return current == nfsb_trace ? loop_turn : 0;
}

static void bridge_breaks_poll(struct tevent_context *ev);

static void bridge_breaks_timer_fired(struct tevent_context *ev, struct tevent_timer *te,
				      struct timeval now, void *private_data)
{
	bridge_breaks_timer = NULL;
	bridge_breaks_check_all(true);
	if (bridge_breaks != NULL) {
		nfsb_trace_install(ev);
		bridge_breaks_poll(ev);
	}
}

static void bridge_breaks_poll(struct tevent_context *ev)
{
	bridge_breaks_timer = tevent_add_timer(ev, bridge_sconn, timeval_current_ofs_msec(
						       bridge_breaks_poll_ms),
					       bridge_breaks_timer_fired, NULL);
	bridge_breaks_poll_ms = MIN(bridge_breaks_poll_ms * 2, 250);
}

static int bridge_break_destructor(struct bridge_break *b)
{
	DLIST_REMOVE(bridge_breaks, b);
	if (bridge_breaks == NULL) {
		TALLOC_FREE(bridge_breaks_timer);
	}
	if (!b->answered && b->token != 0) {
		/* The open closed before its client answered: Rust hands the break to another
		 * open of the same lease, or lets the close end it. */
		rust_ops->break_answered(b->token, NFSB_BREAK_ABANDONED);
	}
	return 0;
}

/* Asks this smbd to break the client caching of `fsp` down to `break_to` (SMB2 lease bits),
 * through the same message another smbd would send. */
bool send_break_request(struct files_struct *fsp, uint32_t break_to)
{
	struct messaging_context *msg_ctx = fsp->conn->sconn->msg_ctx;
	struct oplock_break_message msg = {
		.id = fsp->file_id,
		.share_file_id = fh_get_gen_id(fsp->fh),
		.break_to = (uint8_t)break_to,
	};
	DATA_BLOB blob;
	enum ndr_err_code ndr_err;
	NTSTATUS status;

	ndr_err = ndr_push_struct_blob(&blob, talloc_tos(), &msg,
				       (ndr_push_flags_fn_t)ndr_push_oplock_break_message);
	if (!NDR_ERR_CODE_IS_SUCCESS(ndr_err)) {
		DBG_ERR("nfsbridge: cannot encode a break message: %s\n", ndr_errstr(ndr_err));
		return false;
	}
	status = messaging_send(msg_ctx, messaging_server_id(msg_ctx), MSG_SMB_BREAK_REQUEST,
				&blob);
	TALLOC_FREE(blob.data);
	if (!NT_STATUS_IS_OK(status)) {
		DBG_ERR("nfsbridge: cannot send a break request for %s: %s\n", fsp_str_dbg(fsp),
			nt_errstr(status));
		return false;
	}
	return true;
}

/* The fsp whose descriptor is `fd` (and, for a lease, with that lease key). */
static struct files_struct *bridge_find_fsp(int fd, const uint8_t *lease_key)
{
	struct files_struct *fsp;

	if (bridge_sconn == NULL) {
		return NULL;
	}
	fsp = file_find_fd(bridge_sconn, fd);
	if (fsp == NULL) {
		return NULL;
	}
	if (lease_key != NULL) {
		if (fsp->oplock_type != LEASE_OPLOCK || fsp->lease == NULL ||
		    memcmp(&fsp->lease->lease.lease_key, lease_key, 16) != 0) {
			return NULL;
		}
	} else if (fsp->oplock_type == LEASE_OPLOCK) {
		return NULL;
	}
	return fsp;
}

bool nfsb_request_break(int fd, const uint8_t *lease_key, uint32_t break_to, uint64_t token)
{
	struct files_struct *fsp = bridge_find_fsp(fd, lease_key);
	struct tevent_context *ev;
	struct bridge_break *b;

	if (fsp == NULL) {
		return false;
	}
	b = talloc_zero(fsp, struct bridge_break);
	if (b == NULL) {
		return false;
	}
	*b = (struct bridge_break){ .fsp = fsp, .break_to = break_to, .token = token };
	DLIST_ADD_END(bridge_breaks, b);
	talloc_set_destructor(b, bridge_break_destructor);
	if (!send_break_request(fsp, break_to)) {
		b->answered = true; /* the caller learns from the return value */
		TALLOC_FREE(b);
		return false;
	}
	ev = fsp->conn->sconn->ev_ctx;
	nfsb_trace_install(ev);
	/* A new break restarts the poll from its shortest interval. */
	TALLOC_FREE(bridge_breaks_timer);
	bridge_breaks_poll_ms = 2;
	bridge_breaks_poll(ev);
	return true;
}

/* Takes back, before the create response is sent, the part of what smbd just granted that no
 * kernel lease backs, so that the client never caches what a local or NFS opener would not
 * break. Leases: the lease record (leases.tdb) and the fsp's copy, which the create response
 * is built from; a lease without R is no lease. Oplocks: smbd's own downgrade. False when
 * that cannot be done here (a break of the lease is already under way). */
static bool reduce_grant(struct files_struct *fsp, uint32_t backed)
{
	const struct GUID *client_guid;
	struct share_mode_lock *lck;
	uint32_t current_state, breaking_to_requested, breaking_to_required, reduced;
	uint16_t lease_version, epoch;
	bool breaking;
	NTSTATUS status;

	if (fsp->oplock_type != LEASE_OPLOCK) {
		if (!(backed & SMB2_LEASE_READ) || !lp_level2_oplocks(SNUM(fsp->conn))) {
			return remove_oplock(fsp);
		}
		return fsp->oplock_type == LEVEL_II_OPLOCK || downgrade_oplock(fsp);
	}
	client_guid = fsp_client_guid(fsp);
	lck = get_existing_share_mode_lock(talloc_tos(), fsp->file_id);
	if (lck == NULL) {
		return false;
	}
	status = leases_db_get(client_guid, &fsp->lease->lease.lease_key, &fsp->file_id,
			       &current_state, &breaking, &breaking_to_requested,
			       &breaking_to_required, &lease_version, &epoch);
	if (!NT_STATUS_IS_OK(status) || breaking) {
		TALLOC_FREE(lck);
		return false;
	}
	reduced = current_state & backed;
	if (!(reduced & SMB2_LEASE_READ)) {
		reduced = SMB2_LEASE_NONE;
	}
	status = leases_db_set(client_guid, &fsp->lease->lease.lease_key, reduced, false, 0, 0,
			       lease_version, epoch);
	if (NT_STATUS_IS_OK(status)) {
		(void)fsp_lease_update(fsp);
	}
	TALLOC_FREE(lck);
	return NT_STATUS_IS_OK(status);
}

/* smbd has granted caching on a regular file: have the bridge back it with a kernel lease,
 * and break at once whatever the kernel lease cannot back. */
static void bridge_back_grant(struct vfs_handle_struct *handle, void *state,
			      struct files_struct *fsp)
{
	uint32_t granted, backed;
	const uint8_t *lease_key = NULL;
	int fd = fsp_get_pathref_fd(fsp);

	if (fsp->fsp_flags.is_directory || fsp_is_alternate_stream(fsp) || fd == -1 ||
	    !VALID_STAT(fsp->fsp_name->st) || !S_ISREG(fsp->fsp_name->st.st_ex_mode)) {
		return;
	}
	if (fsp->oplock_type == LEASE_OPLOCK && fsp->lease != NULL) {
		/* Just granted: the fsp's copy is current (fsp_lease_type would re-read
		 * leases.tdb). */
		granted = fsp->lease->lease.lease_state;
		lease_key = (const uint8_t *)&fsp->lease->lease.lease_key;
	} else {
		granted = fsp_lease_type(fsp); /* oplocks: no database access */
	}
	/* Nothing granted still goes to Rust: a grant made with the open is taken back. */
	bridge_ensure(handle, state);
	backed = rust_ops->bridge_grant(state, fd, lease_key, granted, bridge_client_address,
					bridge_server_address);
	bridge_schedule_queued();
	if ((granted & ~backed) != 0) {
		DBG_INFO("nfsbridge: %s: caching 0x%x granted, 0x%x backed by a kernel lease\n",
			 fsp_str_dbg(fsp), granted, backed);
		if (!reduce_grant(fsp, backed)) {
			/* Already breaking (or the lease record is gone): let smbd's break code take
			 * it down, as soon as this request is answered. */
			(void)send_break_request(fsp, backed);
		}
	}
}

void nfsb_cancel_deferred_create(struct tevent_req *req, struct smbXsrv_connection *xconn,
				 uint64_t mid, struct tevent_context *ev, void *wait)
{
	remove_deferred_open_message_smb(xconn, mid);
	tevent_req_defer_callback(req, ev);
	TALLOC_FREE(wait);
	tevent_req_nterror(req, NT_STATUS_CANCELLED);
}

static NTSTATUS nfsb_create_file(struct vfs_handle_struct *handle, struct smb_request *req,
				 struct files_struct *dirfsp, struct smb_filename *smb_fname,
				 uint32_t access_mask, uint32_t share_access,
				 uint32_t create_disposition, uint32_t create_options,
				 uint32_t file_attributes, uint32_t oplock_request,
				 const struct smb2_lease *lease, uint64_t allocation_size,
				 uint32_t private_flags, struct security_descriptor *sd,
				 struct ea_list *ea_list, files_struct **result, int *pinfo,
				 const struct smb2_create_blobs *in_context_blobs,
				 struct smb2_create_blobs *out_context_blobs)
{
	void *state = handle_state(handle);
	uint32_t oplock = oplock_request & ~SAMBA_PRIVATE_OPLOCK_MASK;
	NTSTATUS status;

	if (leases_on(state) && nfsb_failover_create_deferred(handle, req, smb_fname, &status)) {
		return status; /* waits for the end of a grace period (nfsbridge_failover.c) */
	}
	if (nfsb_recall_create_deferred(handle, state, req, dirfsp, smb_fname, access_mask,
					create_disposition, leases_on(state), &status)) {
		return status; /* waits for a delegation recall (nfsbridge_recall.c) */
	}
	if (leases_on(state)) {
		create_request.pending = false;
		if (oplock == LEASE_OPLOCK && lease != NULL) {
			create_request.requested = lease->lease_state &
				(SMB2_LEASE_READ | SMB2_LEASE_HANDLE | SMB2_LEASE_WRITE);
			create_request.is_lease = true;
			create_request.key = lease->lease_key;
		} else {
			create_request.requested = map_oplock_to_lease_type(oplock);
			create_request.is_lease = false;
		}
		create_request.pending = (create_request.requested != 0);
	}
	bridge_conflict.seen = false;
	status = SMB_VFS_NEXT_CREATE_FILE(
		handle, req, dirfsp, smb_fname, access_mask, share_access, create_disposition,
		create_options, file_attributes, oplock_request, lease, allocation_size,
		private_flags, sd, ea_list, result, pinfo, in_context_blobs, out_context_blobs);
	create_request.pending = false;
	if (!NT_STATUS_IS_OK(status) && bridge_conflict.seen) {
		/* smbd deferred it (poll-open): retry as soon as the file is free. */
		nfsb_recall_watch_deferred(req, bridge_conflict.dev, bridge_conflict.ino);
	}
	bridge_conflict.seen = false;

	if (NT_STATUS_IS_OK(status) && *result != NULL && leases_on(state)) {
		bridge_back_grant(handle, state, *result);
	}
	nfsb_dirlease_after_create(handle, NT_STATUS_IS_OK(status) ? *result : NULL,
				   delegations(state));
	return status;
}

static NTSTATUS nfsb_durable_reconnect(struct vfs_handle_struct *handle,
				       struct smb_request *smb1req, struct smbXsrv_open *op,
				       const DATA_BLOB old_cookie, TALLOC_CTX *mem_ctx,
				       struct files_struct **fsp, DATA_BLOB *new_cookie)
{
	void *state = handle_state(handle);
	NTSTATUS status = SMB_VFS_NEXT_DURABLE_RECONNECT(handle, smb1req, op, old_cookie,
							 mem_ctx, fsp, new_cookie);

	if (NT_STATUS_IS_OK(status) && *fsp != NULL && leases_on(state)) {
		bridge_back_grant(handle, state, *fsp);
	}
	nfsb_dirlease_after_create(handle, NT_STATUS_IS_OK(status) ? *fsp : NULL,
				   delegations(state));
	return status;
}

static struct vfs_fn_pointers nfsb_fns = {
	.mkdirat_fn = nfsb_mkdirat,
	.openat_fn = nfsb_openat,
	.close_fn = nfsb_close,
	.create_file_fn = nfsb_create_file,
	.durable_reconnect_fn = nfsb_durable_reconnect,
	.stat_fn = nfsb_stat,
	.lstat_fn = nfsb_lstat,
	.fstatat_fn = nfsb_fstatat,
	.unlinkat_fn = nfsb_unlinkat,
	.renameat_fn = nfsb_renameat,
	.linkat_fn = nfsb_linkat,
	.symlinkat_fn = nfsb_symlinkat,
	.mknodat_fn = nfsb_mknodat,
	.connect_fn = nfsb_connect,
	.fget_nt_acl_fn = nfsb_fget_nt_acl,
	.fset_nt_acl_fn = nfsb_fset_nt_acl,
	.fntimes_fn = nfsb_fntimes,
	.fchmod_fn = nfsb_fchmod,
	.fchown_fn = nfsb_fchown,
	.fsetxattr_fn = nfsb_fsetxattr,
	.fremovexattr_fn = nfsb_fremovexattr,
	.sys_acl_set_fd_fn = nfsb_sys_acl_set_fd,
	.sys_acl_delete_def_fd_fn = nfsb_sys_acl_delete_def_fd,
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

bool nfsb_handle_next_is_default(const nfsb_handle *handle)
{
	/* smbd_vfs_init() puts vfs_default's handle at the end of the list and every module of
	 * `vfs objects` (and vfs_widelinks) above it, in order. */
	const struct vfs_handle_struct *next = to_vfs(handle)->next;

	return next != NULL && next->next == NULL;
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

static struct files_struct *to_fsp(const nfsb_fsp *fsp)
{
	return (struct files_struct *)fsp;
}

bool nfsb_fsp_info(const nfsb_fsp *nfsp, struct nfsb_file_info *info)
{
	struct files_struct *fsp = to_fsp(nfsp);
	const SMB_STRUCT_STAT *st = &fsp->fsp_name->st;

	/* smbd's cached stat can predate a chmod/chown (ours, or one over NFS): the ACL bridge
	 * compares the mode with the stored ACL's mirror, so it needs the current one. */
	(void)vfs_stat_fsp(fsp);
	if (!VALID_STAT(*st)) {
		return false;
	}
	info->uid = st->st_ex_uid;
	info->gid = st->st_ex_gid;
	info->mode = st->st_ex_mode;
	info->is_dir = S_ISDIR(st->st_ex_mode);
	info->dev = (uint64_t)st->st_ex_dev;
	info->ino = (uint64_t)st->st_ex_ino;
	info->ctime_sec = (int64_t)st->st_ex_ctime.tv_sec;
	info->ctime_nsec = (uint32_t)st->st_ex_ctime.tv_nsec;
	return true;
}

const char *nfsb_fsp_name(const nfsb_fsp *fsp)
{
	return fsp_str_dbg(to_fsp(fsp));
}

int64_t nfsb_next_fgetxattr(nfsb_handle *h, nfsb_fsp *fsp, const char *name, uint8_t *buf,
			    size_t size)
{
	ssize_t ret = SMB_VFS_NEXT_FGETXATTR(to_vfs(h), to_fsp(fsp), name, buf, size);
	return ret < 0 ? -(int64_t)errno : (int64_t)ret;
}

/* Evaluates `call` (an int VFS call returning 0 or -1/errno), as root when `as_root`;
 * yields 0 or the errno value. */
#define ERRNO_OF_CALL(as_root, call)                                \
	({                                                          \
		int _ret, _err = 0;                                 \
		if (as_root) {                                      \
			become_root();                              \
		}                                                   \
		_ret = (call);                                      \
		if (_ret != 0) {                                    \
			_err = errno;                               \
		}                                                   \
		if (as_root) {                                      \
			unbecome_root();                            \
		}                                                   \
		_err;                                               \
	})

int nfsb_next_fsetxattr(nfsb_handle *h, nfsb_fsp *fsp, const char *name, const uint8_t *data,
			size_t len, bool as_root)
{
	return ERRNO_OF_CALL(as_root,
			     SMB_VFS_NEXT_FSETXATTR(to_vfs(h), to_fsp(fsp), name, data, len, 0));
}

int nfsb_next_fremovexattr(nfsb_handle *h, nfsb_fsp *fsp, const char *name, bool as_root)
{
	return ERRNO_OF_CALL(as_root, SMB_VFS_NEXT_FREMOVEXATTR(to_vfs(h), to_fsp(fsp), name));
}

int nfsb_next_fchmod(nfsb_handle *h, nfsb_fsp *fsp, uint32_t mode, bool as_root)
{
	return ERRNO_OF_CALL(as_root,
			     SMB_VFS_NEXT_FCHMOD(to_vfs(h), to_fsp(fsp), (mode_t)(mode & 07777)));
}

int nfsb_next_fchown(nfsb_handle *h, nfsb_fsp *fsp, uint32_t uid, uint32_t gid, bool as_root)
{
	return ERRNO_OF_CALL(as_root, SMB_VFS_NEXT_FCHOWN(to_vfs(h), to_fsp(fsp), (uid_t)uid,
							  (gid_t)gid));
}

/*
 * The ACL bridge's writes (security.* xattrs; the POSIX ACLs and mode of a file the user may
 * not own) need root's capabilities, not root's uid. become_root() switches uid, gid and
 * groups there and back, copies the security token, and makes smbd chdir into the share
 * again on the next request. Like Samba's set_effective_capability(), which raises
 * CAP_DAC_OVERRIDE this way, the thread's permitted capabilities are made effective instead:
 * exactly the set become_root() would make effective (the kernel sets effective = permitted
 * when the euid becomes 0), without changing the ids. The previous effective set is restored
 * after; become_root() is the fallback when the kernel refuses capget/capset.
 */
static struct {
	bool active;
	bool by_capabilities;
	struct __user_cap_data_struct saved[_LINUX_CAPABILITY_U32S_3];
} privilege;

void nfsb_privilege_raise(void)
{
	struct __user_cap_header_struct header = { .version = _LINUX_CAPABILITY_VERSION_3 };
	struct __user_cap_data_struct caps[_LINUX_CAPABILITY_U32S_3];
	size_t i;

	if (privilege.active) {
		DBG_ERR("nfsbridge: nested privilege raise\n");
		abort();
	}
	privilege.active = true;
	privilege.by_capabilities = false;
	if (syscall(SYS_capget, &header, caps) == 0) {
		memcpy(privilege.saved, caps, sizeof(caps));
		for (i = 0; i < ARRAY_SIZE(caps); i++) {
			caps[i].effective = caps[i].permitted;
		}
		privilege.by_capabilities = (syscall(SYS_capset, &header, caps) == 0);
	}
	if (!privilege.by_capabilities) {
		become_root();
	}
}

void nfsb_privilege_drop(void)
{
	struct __user_cap_header_struct header = { .version = _LINUX_CAPABILITY_VERSION_3 };

	if (!privilege.active) {
		DBG_ERR("nfsbridge: privilege drop without a raise\n");
		abort();
	}
	if (!privilege.by_capabilities) {
		unbecome_root();
	} else if (syscall(SYS_capset, &header, privilege.saved) != 0) {
		/* Going on with root's capabilities as the user would be far worse (smbd's own
		 * set_sec_ctx panics when it cannot switch ids). */
		DBG_ERR("nfsbridge: cannot drop the capabilities raised for an ACL write: %s\n",
			strerror(errno));
		abort();
	}
	privilege.active = false;
}

uint32_t nfsb_handle_current_uid(const nfsb_handle *h)
{
	return get_current_uid(to_vfs(h)->conn);
}

uint32_t nfsb_sd_result_set(nfsb_sd_result *result, const uint8_t *sd, size_t len)
{
	NTSTATUS status = unmarshall_sec_desc(result->mem_ctx, discard_const_p(uint8_t, sd), len,
					      result->ppdesc);
	if (NT_STATUS_IS_OK(status)) {
		result->set = true;
	}
	return NT_STATUS_V(status);
}

/* struct nfsb_sid is struct dom_sid field for field; copied member by member all the same,
 * so that neither layout is assumed. */
_Static_assert(NFSB_SID_MAX_SUB_AUTHS == ARRAY_SIZE(((struct dom_sid *)NULL)->sub_auths),
	       "struct nfsb_sid and struct dom_sid disagree on the number of sub-authorities");

static void sid_to_nfsb(const struct dom_sid *in, struct nfsb_sid *out)
{
	*out = (struct nfsb_sid){ .sid_rev_num = in->sid_rev_num, .num_auths = in->num_auths };
	memcpy(out->id_auth, in->id_auth, sizeof(out->id_auth));
	memcpy(out->sub_auths, in->sub_auths, sizeof(out->sub_auths));
}

static bool sid_from_nfsb(const struct nfsb_sid *in, struct dom_sid *out)
{
	if (in->num_auths < 0 || in->num_auths > NFSB_SID_MAX_SUB_AUTHS) {
		return false;
	}
	*out = (struct dom_sid){ .sid_rev_num = in->sid_rev_num, .num_auths = in->num_auths };
	memcpy(out->id_auth, in->id_auth, sizeof(out->id_auth));
	memcpy(out->sub_auths, in->sub_auths, sizeof(out->sub_auths));
	return true;
}

void nfsb_uid_to_sid(uint32_t uid, struct nfsb_sid *out)
{
	struct dom_sid sid;

	uid_to_sid(&sid, (uid_t)uid);
	sid_to_nfsb(&sid, out);
}

void nfsb_gid_to_sid(uint32_t gid, struct nfsb_sid *out)
{
	struct dom_sid sid;

	gid_to_sid(&sid, (gid_t)gid);
	sid_to_nfsb(&sid, out);
}

int nfsb_sid_to_unixid(const struct nfsb_sid *in, uint32_t *id)
{
	struct dom_sid sid;
	struct unixid unix_id = { .type = ID_TYPE_NOT_SPECIFIED };

	if (!sid_from_nfsb(in, &sid)) {
		return NFSB_ID_TYPE_NOT_SPECIFIED;
	}
	if (!sids_to_unixids(&sid, 1, &unix_id)) {
		return NFSB_ID_TYPE_NOT_SPECIFIED;
	}
	switch (unix_id.type) {
	case ID_TYPE_UID:
		*id = unix_id.id;
		return NFSB_ID_TYPE_UID;
	case ID_TYPE_GID:
		*id = unix_id.id;
		return NFSB_ID_TYPE_GID;
	case ID_TYPE_BOTH:
		*id = unix_id.id;
		return NFSB_ID_TYPE_BOTH;
	default:
		return NFSB_ID_TYPE_NOT_SPECIFIED;
	}
}

uint32_t nfsb_idmap_negative_cache_time(void)
{
	int seconds = lp_idmap_negative_cache_time();

	return seconds > 0 ? (uint32_t)seconds : 0;
}

bool nfsb_handle_set_parameter(nfsb_handle *h, const char *name, const char *value)
{
	return lp_do_parameter(SNUM(to_vfs(h)->conn), name, value);
}

uint32_t nfsb_ntstatus_from_errno(int err)
{
	return NT_STATUS_V(map_nt_error_from_unix_common(err));
}
