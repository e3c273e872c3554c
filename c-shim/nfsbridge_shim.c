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
#include "passdb/lookup_sid.h"
#include "libcli/security/security.h"
#include "librpc/gen_ndr/idmap.h"

#include <linux/capability.h>
#include <sys/syscall.h>

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

struct nfsb_sd_result {
	TALLOC_CTX *mem_ctx;
	struct security_descriptor **ppdesc;
	bool set;
};

static void *handle_state(struct vfs_handle_struct *handle)
{
	return handle->data;
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

static NTSTATUS nfsb_fset_nt_acl(struct vfs_handle_struct *handle, struct files_struct *fsp,
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

static int nfsb_openat(struct vfs_handle_struct *handle, const struct files_struct *dirfsp,
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

static int nfsb_unlinkat(struct vfs_handle_struct *handle, struct files_struct *dirfsp,
			 const struct smb_filename *smb_fname, int flags)
{
	return CALL_WITH_ROOT_RETRY(handle,
				    SMB_VFS_NEXT_UNLINKAT(handle, dirfsp, smb_fname, flags));
}

static int nfsb_renameat(struct vfs_handle_struct *handle, struct files_struct *srcdir_fsp,
			 const struct smb_filename *smb_fname_src, struct files_struct *dstdir_fsp,
			 const struct smb_filename *smb_fname_dst, const struct vfs_rename_how *how)
{
	return CALL_WITH_ROOT_RETRY(handle,
				    SMB_VFS_NEXT_RENAMEAT(handle, srcdir_fsp, smb_fname_src,
							  dstdir_fsp, smb_fname_dst, how));
}

/* A directory the Windows ACL lets the user create (ADD_SUBDIRECTORY, checked by smbd) but the
 * POSIX mirror of its parent does not (no w+x there): created as root and handed to the user
 * at once, as nfsb_openat does for files. EEXIST and other errors of the retry are not
 * reported over the user's own. */
static int nfsb_mkdirat(struct vfs_handle_struct *handle, struct files_struct *dirfsp,
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

static struct vfs_fn_pointers nfsb_fns = {
	.mkdirat_fn = nfsb_mkdirat,
	.openat_fn = nfsb_openat,
	.stat_fn = nfsb_stat,
	.lstat_fn = nfsb_lstat,
	.fstatat_fn = nfsb_fstatat,
	.unlinkat_fn = nfsb_unlinkat,
	.renameat_fn = nfsb_renameat,
	.connect_fn = nfsb_connect,
	.fget_nt_acl_fn = nfsb_fget_nt_acl,
	.fset_nt_acl_fn = nfsb_fset_nt_acl,
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

void nfsb_become_root(void)
{
	become_root();
}

void nfsb_unbecome_root(void)
{
	unbecome_root();
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

bool nfsb_handle_set_parameter(nfsb_handle *h, const char *name, const char *value)
{
	return lp_do_parameter(SNUM(to_vfs(h)->conn), name, value);
}

uint32_t nfsb_ntstatus_from_errno(int err)
{
	return NT_STATUS_V(map_nt_error_from_unix_common(err));
}
