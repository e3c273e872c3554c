/*
 * nfsbridge_internal.h - what the C files of the shim share among themselves (with Samba's
 * types; never read by bindgen).
 *
 * Copyright (C) 2026 the nfsbridge authors. GPL-3.0-or-later.
 */
#ifndef NFSBRIDGE_INTERNAL_H
#define NFSBRIDGE_INTERNAL_H

/* nfsbridge_shim.c: asks this smbd to break the client caching of `fsp` down to `break_to`
 * (SMB2 lease bits) with MSG_SMB_BREAK_REQUEST, as another smbd would. */
bool send_break_request(struct files_struct *fsp, uint32_t break_to);

/* nfsbridge_dirlease.c: smbd opened `fsp` (create_file or a durable reconnect) and may have
 * granted it a lease: watch what a directory or handle lease on it needs watched; where the
 * kernel has directory delegations, a directory lease is also backed by one on its directory
 * with NFSB_DELEGATE_DIRECTORY_LEASES (nfsbridge:directory delegations), and the H of a lease
 * by one on the directory holding its name with NFSB_DELEGATE_HANDLE_LEASES (nfsbridge:handle
 * lease delegations). */
#define NFSB_DELEGATE_DIRECTORY_LEASES 0x1
#define NFSB_DELEGATE_HANDLE_LEASES 0x2
void nfsb_dirlease_after_create(struct vfs_handle_struct *handle, struct files_struct *fsp,
				unsigned delegations);

/* nfsbridge_dirlease.c: a tree connect of a share with nfsbridge:directory delegations = yes:
 * from now on this process announces its namespace changes to the smbds holding delegations. */
void nfsb_dirlease_connect(struct connection_struct *conn);

/* nfsbridge_dirlease.c: one of smbd's namespace changes (create, delete, rename, link) in the
 * directories `dir_a` and `dir_b` (either may be NULL) of the entry `entry` (may be NULL), or
 * a change of a directory's own attributes, timestamps, xattrs or ACL (`dir_a` the directory;
 * these break delegations on it too), announced for its duration (nfsb_namespace_begin ...
 * nfsb_namespace_end) so that an smbd holding a delegation on one of them gives it back at
 * once. */
struct nfsb_namespace_change {
	uint64_t keys[6];
	size_t count;
	bool announced;
};
void nfsb_namespace_begin(struct nfsb_namespace_change *change, const struct files_struct *dir_a,
			  const struct files_struct *dir_b, const struct smb_filename *entry);
void nfsb_namespace_end(struct nfsb_namespace_change *change);

/* nfsbridge_dirlease.c: called by the module's tevent trace callback (nfsb_trace_install). */
void nfsb_dirlease_trace(enum tevent_trace_point point);

/* nfsbridge_shim.c: chains the module's trace callback onto smbd's (once; again if smbd set
 * another since). */
void nfsb_trace_install(struct tevent_context *ev);

/* nfsbridge_shim.c: the end of an SMB2 CANCEL of a create the module deferred itself (grace
 * periods, delegation recalls). smbd's own cancel function for deferred creates looks at the
 * deferred open record, which the module's deferrals do not have (struct deferred_open_record
 * is private to open.c); this does the rest of what it does: forgets the deferral of message
 * `mid`, frees `wait` (the module's record of it, with its timers) and answers `req` with
 * STATUS_CANCELLED. */
void nfsb_cancel_deferred_create(struct tevent_req *req, struct smbXsrv_connection *xconn,
				 uint64_t mid, struct tevent_context *ev, void *wait);

#endif /* NFSBRIDGE_INTERNAL_H */
