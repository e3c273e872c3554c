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

#endif /* NFSBRIDGE_INTERNAL_H */
