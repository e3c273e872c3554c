/*
 * nfsbridge_recall.h - SMB changes to a delegated file recall the delegation first, without
 * blocking smbd (issue 7 item 3; docs/lease-bridge.md, "Delegations held by others").
 *
 * An unlink, rename, link, chmod, utimes, truncate or setxattr of a file or directory that nfsd
 * (or a local F_SETDELEG holder) has delegated waits inside the kernel until the delegation is
 * given back; done by smbd, that wait stalls every client of the smbd process. The SMB create
 * that precedes each such change (it asks for DELETE, write or attribute access) is where the
 * module looks: a file with a delegation gets its recall started by a non-blocking open for
 * writing, a directory by a thread that waits for it (recall_directory), and the create is
 * deferred (STATUS_PENDING) until the delegation is gone, then retried.
 *
 * Copyright (C) 2026 the nfsbridge authors. GPL-3.0-or-later.
 */
#ifndef NFSBRIDGE_RECALL_H
#define NFSBRIDGE_RECALL_H

#include <stdbool.h>
#include <stdint.h>

/* What holders_on() reports. */
#define NFSB_DELEG_NONE 0u
#define NFSB_DELEG_HELD 1u     /* at least one delegation */
#define NFSB_DELEG_BREAKING 4u /* every one of them is being recalled already */
#define NFSB_LEASE_HELD 8u     /* a plain lease (F_SETLEASE: a local holder, or the bridge) */

/* What Rust provides (registered once at module load; must live for the process). */
struct nfsb_recall_ops {
	/* The delegations and leases on the file (st_dev, st_ino), from /proc/locks:
	 * NFSB_DELEG_* and NFSB_LEASE_HELD bits.
	 * NFSB_DELEG_NONE when /proc/locks cannot be read (logged once). */
	uint32_t (*holders_on)(uint64_t dev, uint64_t ino);
	/* The share's 'nfsbridge:recall timeout' in seconds (0: the module does not recall). */
	uint32_t (*timeout_secs)(void *share_state);
	/* Starts the recall of the delegations on the directory `fd` refers to without blocking
	 * (a thread of its own makes a change that alters nothing but the ctime and waits for
	 * them). 0, or an errno value. */
	int (*recall_directory)(int fd);
};

void nfsb_recall_register(const struct nfsb_recall_ops *ops);

#ifdef SMB_VFS_INTERFACE_VERSION
/* create_file pre-hook (Samba types: only for the C shim). True when the create must wait
 * for a delegation recall: *status is then the create's result (the request has been deferred
 * and is retried when the delegation is gone), or its final error after the timeout.
 * `bridged`: data opens go through the lease bridge, whose open (O_RDWR|O_NONBLOCK) finds
 * delegations and leases itself and starts their recall (EWOULDBLOCK: see below), so only
 * creates without data access are looked at here. */
bool nfsb_recall_create_deferred(struct vfs_handle_struct *handle, void *share_state,
				 struct smb_request *req, struct files_struct *dirfsp,
				 const struct smb_filename *smb_fname, uint32_t access_mask,
				 uint32_t create_disposition, bool bridged, NTSTATUS *status);

/* create_file post-hook: the lease bridge refused this create's data open of (dev, ino) with
 * EWOULDBLOCK (a lease or delegation of someone else is being recalled) and smbd deferred the
 * create (its poll-open retries once a second). The module watches /proc/locks and has smbd
 * retry the moment the file has no lease or delegation left. */
void nfsb_recall_watch_deferred(struct smb_request *req, uint64_t dev, uint64_t ino);
#endif

#endif
