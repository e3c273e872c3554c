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
#include <stddef.h>
#include <stdint.h>

/* The Samba VFS interface this module is written for (Samba 4.22). The shim refuses to
 * compile against headers that declare another one; NFSB_REGISTER_VFS_VERSION below can only
 * be overridden to test smbd's own refusal of a mismatched module. */
#define NFSB_VFS_INTERFACE_VERSION 50

/* Opaque to Rust: one share's vfs_handle_struct. */
typedef struct nfsb_handle nfsb_handle;
/* Opaque to Rust: a files_struct (an open file or a path reference). */
typedef struct nfsb_fsp nfsb_fsp;
/* Opaque to Rust: where fget_nt_acl's security descriptor goes. */
typedef struct nfsb_sd_result nfsb_sd_result;

/* What the ACL bridge needs to know of a file (from a fresh stat). */
struct nfsb_file_info {
	uint32_t uid;
	uint32_t gid;
	uint32_t mode; /* st_mode: type and permission bits */
	bool is_dir;
	/* Which file, and when its inode last changed (for the ACL state cache). */
	uint64_t dev;
	uint64_t ino;
	int64_t ctime_sec;
	uint32_t ctime_nsec;
};

/* Samba's id types (enum id_type). */
#define NFSB_ID_TYPE_NOT_SPECIFIED 0
#define NFSB_ID_TYPE_UID 1
#define NFSB_ID_TYPE_GID 2
#define NFSB_ID_TYPE_BOTH 3

/* A SID in binary form, field for field Samba's struct dom_sid (MS-DTYP 2.4.2): revision 1,
 * num_auths sub-authorities (at most NFSB_SID_MAX_SUB_AUTHS), the 48-bit identifier authority
 * big-endian. Plain data, so that no SID is printed and parsed again on either side. */
#define NFSB_SID_MAX_SUB_AUTHS 15
struct nfsb_sid {
	uint8_t sid_rev_num;
	int8_t num_auths;
	uint8_t id_auth[6];
	uint32_t sub_auths[NFSB_SID_MAX_SUB_AUTHS];
};

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
	/* Whether this share's ACL bridge is on (fget/fset_nt_acl go to Rust); read once after
	 * connect. When false the shim passes the ACL calls to the next module. */
	bool (*acl_bridge_enabled)(void *state);
	/* Whether an open, rename or delete that the kernel refuses (EACCES/EPERM) after smbd's
	 * own Windows access check is retried as root (see nfsb_openat in the shim). */
	bool (*smb_overrides_posix_mirror)(void *state);
	/* SMB_VFS_FGET_NT_ACL: the file's security descriptor (the parts in security_info),
	 * delivered with nfsb_sd_result_set. Returns an NTSTATUS value. */
	uint32_t (*fget_nt_acl)(nfsb_handle *handle, void *state, nfsb_fsp *fsp,
				uint32_t security_info, nfsb_sd_result *result);
	/* SMB_VFS_FSET_NT_ACL: sd is the self-relative (MS-DTYP) form of what the client sent.
	 * smbd has already checked WRITE_DAC / WRITE_OWNER. Returns an NTSTATUS value. */
	uint32_t (*fset_nt_acl)(nfsb_handle *handle, void *state, nfsb_fsp *fsp,
				uint32_t security_info_sent, const uint8_t *sd, size_t sd_len);

	/* The lease bridge (docs/lease-bridge.md). One connection to the bridge daemon per smbd
	 * process; the calls below without `state` act on it. SMB2 lease bits: R 1, H 2, W 4
	 * (oplocks as smbd maps them: batch RWH, exclusive RW, level II R). */

	/* Whether this share's lease bridge is on (nfsbridge:leases). */
	bool (*leases_enabled)(void *state);
	/* Whether this share backs directory leases with directory delegations where the kernel
	 * has them (nfsbridge:directory delegations; nfsbridge_dirlease.h). */
	bool (*directory_delegations)(void *state);
	/* ... and backs the H of leases with a delegation on the directory holding their name
	 * (nfsbridge:handle lease delegations). */
	bool (*handle_lease_delegations)(void *state);
	/* The bridge socket, or -1 when not connected. With `connect`, connects first if needed
	 * (called as root; attempts are rate-limited). */
	int (*bridge_socket)(void *state, bool connect);
	/* A dup of the shared open file description of the regular file `reference` (any
	 * descriptor of it, O_PATH included; its inode is dev/ino) refers to: >= 0, or -errno
	 * (the bridge's or the kernel's refusal, EWOULDBLOCK when a non-SMB lease holder must be
	 * broken first), or NFSB_BRIDGE_UNREACHABLE. `request` (NULL or requested 0: none) is
	 * granted with it. May be the descriptor a closed open of the same file left parked. */
	int (*bridge_open)(void *state, int reference, uint64_t dev, uint64_t ino, bool want_write,
			   bool nonblocking, const struct nfsb_create_request *request);
	/* smbd granted `lease_state` on the open whose descriptor is `fd` (a bridge dup, or a
	 * stat open's O_PATH descriptor); lease_key is the 16-byte SMB2 lease key or NULL for an
	 * oplock. Returns the part a kernel lease backs. */
	uint32_t (*bridge_grant)(void *state, int fd, const uint8_t *lease_key, uint32_t lease_state,
				 const char *client_address, const char *server_address);
	/* The descriptor `fd` of an open is about to be closed (the last open of a file may
	 * leave a dup of it parked for the next open). Returns the milliseconds after which
	 * bridge_expire_parked must run, 0 when nothing is parked. */
	uint32_t (*bridge_close)(int fd);
	/* Gives up parked descriptors that lingered long enough; the next delay as above. */
	uint32_t (*bridge_expire_parked)(void);
	/* The bridge socket is readable: handle the daemon's requests (nfsb_request_break).
	 * False when the daemon is gone; the shim then stops watching and calls
	 * bridge_disconnect. */
	bool (*bridge_readable)(void);
	/* Whether a request found the connection broken (timeout, reset): the shim stops
	 * watching the socket and calls bridge_disconnect, which closes it. */
	bool (*bridge_broken)(void);
	/* Whether break requests arrived while a request waited for its reply: the socket does
	 * not read as ready for them, so the shim schedules bridge_readable itself. */
	bool (*bridge_has_queued_requests)(void);
	void (*bridge_disconnect)(void);
	/* The signal the lease bridge asks the kernel to send on a lease break (F_SETSIG). Once
	 * the shim handles it (and SIGIO, its queue-overflow fallback) for good, it calls
	 * bridge_signals_handled; connections made after that let the bridge point the break
	 * signal of files only this process's clients cache on at this process. */
	int (*bridge_break_signal)(void);
	void (*bridge_signals_handled)(void);
	/* A lease break signal arrived: si_fd is the bridge's descriptor of the description
	 * (nfsb_request_break starts the break). */
	void (*bridge_break_signalled)(int bridge_fd);
	/* SIGIO: break signals were lost (queue overflow); every lease is checked. */
	void (*bridge_break_signals_lost)(void);
	/* The break nfsb_request_break started with `token` ended: the client now caches
	 * `lease_state` (or NFSB_BREAK_ABANDONED: its open closed first). */
	void (*break_answered)(uint64_t token, uint32_t lease_state);
	/* smbd (or a module above nfsbridge) wrote an xattr or POSIX ACL of the file `dev`:`ino`
	 * itself (not through the ACL bridge): what the ACL state cache holds for it goes. */
	void (*acl_state_changed)(uint64_t dev, uint64_t ino);
};

/* What the SMB create being processed asks to cache, handed to bridge_open so that the bridge
 * grants it with the open (one round trip instead of two); bridge_grant then only lowers it. */
struct nfsb_create_request {
	/* SMB2 lease bits asked for; 0: no caching asked (the other fields are unset). */
	uint32_t requested;
	/* The 16-byte lease key, or NULL for an oplock. */
	const uint8_t *lease_key;
	const char *client_address;
	const char *server_address;
};

/* bridge_open's answer when the lease bridge cannot be asked (not running, not answering). */
#define NFSB_BRIDGE_UNREACHABLE (-100000)
/* break_answered's state when the open closed before its client answered. */
#define NFSB_BREAK_ABANDONED UINT32_MAX

/* Registers the "nfsbridge" VFS module with smbd. `ops` must live for the process.
 * Returns an NTSTATUS value (0 on success). */
uint32_t nfsb_register(const struct nfsb_rust_ops *ops);

/* The raw smb.conf value of "nfsbridge:<option>" for the handle's share (falling back to
 * [global]), or NULL when unset. Valid until the configuration is reloaded. */
const char *nfsb_handle_option(const nfsb_handle *handle, const char *option);

/* Whether the module below this one is smbd's own file system access (vfs_default): nothing
 * stacked below nfsbridge keeps xattrs somewhere else (vfs_xattr_tdb, a cluster file system's
 * module), so a change of the ACL xattrs is a change of the file's ctime. */
bool nfsb_handle_next_is_default(const nfsb_handle *handle);

/* The share's path after substitutions (conn->connectpath). */
const char *nfsb_handle_connectpath(const nfsb_handle *handle);

/* Re-stats the file (smbd's cached stat is updated) and returns it. False if smbd has no
 * valid stat for it. */
bool nfsb_fsp_info(const nfsb_fsp *fsp, struct nfsb_file_info *info);

/* The file's name for log lines (share-relative). */
const char *nfsb_fsp_name(const nfsb_fsp *fsp);

/* Reads extended attribute `name` through the next module. Returns its size (which may be
 * larger than `size`: call again with a buffer that large; size 0 only asks for the size), or
 * -errno (-ENODATA when it does not exist). */
int64_t nfsb_next_fgetxattr(nfsb_handle *handle, nfsb_fsp *fsp, const char *name,
			    uint8_t *buf, size_t size);

/* Writes / removes an extended attribute through the next module; as root when `as_root`
 * (security.* and POSIX ACL xattrs need privilege; smbd has checked the client's rights).
 * Return 0 or an errno value. */
int nfsb_next_fsetxattr(nfsb_handle *handle, nfsb_fsp *fsp, const char *name,
			const uint8_t *data, size_t len, bool as_root);
int nfsb_next_fremovexattr(nfsb_handle *handle, nfsb_fsp *fsp, const char *name, bool as_root);

/* chmod through the next module (permission bits only; as root when `as_root`). 0 or errno. */
int nfsb_next_fchmod(nfsb_handle *handle, nfsb_fsp *fsp, uint32_t mode, bool as_root);

/* chown through the next module (UINT32_MAX leaves an id unchanged); as root when
 * `as_root`. 0 or errno. */
int nfsb_next_fchown(nfsb_handle *handle, nfsb_fsp *fsp, uint32_t uid, uint32_t gid,
		     bool as_root);

/* Root's privileges for the calls made in between (with as_root false): the thread's
 * permitted capabilities are made effective, the user's ids stay (as Samba's own
 * set_effective_capability() does); smbd's become_root() if the kernel refuses that. Always
 * paired, never nested. */
void nfsb_privilege_raise(void);
void nfsb_privilege_drop(void);

/* The turn of smbd's event loop this call runs in: one request (or compound chain) is handled
 * within one turn, and every turn has a new number. 0 when it cannot be told (the module's
 * tevent trace callback, which counts the turns, is not the one installed). */
uint64_t nfsb_loop_turn(void);

/* The uid smbd is acting as for this connection's current request. */
uint32_t nfsb_handle_current_uid(const nfsb_handle *handle);

/* Hands fget_nt_acl's answer (self-relative bytes) to smbd. Returns an NTSTATUS value. */
uint32_t nfsb_sd_result_set(nfsb_sd_result *result, const uint8_t *sd, size_t len);

/* Samba's own identity mapping (passdb / idmap / winbind). The *_to_sid calls always succeed
 * in Samba (it falls back to S-1-22-1-uid / S-1-22-2-gid). */
void nfsb_uid_to_sid(uint32_t uid, struct nfsb_sid *sid);
void nfsb_gid_to_sid(uint32_t gid, struct nfsb_sid *sid);
/* Returns an NFSB_ID_TYPE_*; *id is set unless NOT_SPECIFIED (unmappable or malformed). */
int nfsb_sid_to_unixid(const struct nfsb_sid *sid, uint32_t *id);
/* Samba's `idmap negative cache time` (seconds). */
uint32_t nfsb_idmap_negative_cache_time(void);

/* The NTSTATUS smbd uses for a Unix errno value. */
uint32_t nfsb_ntstatus_from_errno(int err);

/* Sets a share parameter for this connection (lp_do_parameter), e.g. "inherit acls". */
bool nfsb_handle_set_parameter(nfsb_handle *handle, const char *name, const char *value);

/* Breaks the client caching of the open whose descriptor is `fd` (with `lease_key`, or NULL
 * for an oplock) down to `break_to`, through smbd's own break code (MSG_SMB_BREAK_REQUEST to
 * this process). When the client has answered or smbd gave up on it, calls
 * break_answered(token, ...) unless token is 0. False when there is no such open. */
bool nfsb_request_break(int fd, const uint8_t *lease_key, uint32_t break_to, uint64_t token);

/* Whether a message at `level` of nfsbridge's debug class would be logged. */
bool nfsb_debug_enabled(int level);

/* Logs one message through Samba's debug system, class "nfsbridge", with the Rust source
 * location and function in the header line. */
void nfsb_debug(int level, const char *location, const char *function, const char *message);

#endif /* NFSBRIDGE_SHIM_H */
