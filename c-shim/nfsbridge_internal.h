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
 * granted it a lease: watch what a directory or handle lease on it needs watched. */
void nfsb_dirlease_after_create(struct vfs_handle_struct *handle, struct files_struct *fsp);

/* nfsbridge_shim.c: the end of an SMB2 CANCEL of a create the module deferred itself (grace
 * periods, delegation recalls). smbd's own cancel function for deferred creates looks at the
 * deferred open record, which the module's deferrals do not have (struct deferred_open_record
 * is private to open.c); this does the rest of what it does: forgets the deferral of message
 * `mid`, frees `wait` (the module's record of it, with its timers) and answers `req` with
 * STATUS_CANCELLED. */
void nfsb_cancel_deferred_create(struct tevent_req *req, struct smbXsrv_connection *xconn,
				 uint64_t mid, struct tevent_context *ev, void *wait);

#endif /* NFSBRIDGE_INTERNAL_H */
