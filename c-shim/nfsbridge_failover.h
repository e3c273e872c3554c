/*
 * nfsbridge_failover.h - failover controls (docs/failover.md) between the Rust module and
 * smbd: ending this smbd's client connection for `nfsbridge unlock-ip` / `unlock-fs`, and the
 * grace period check in the create path for `nfsbridge grace`.
 *
 * Copyright (C) 2026 the nfsbridge authors. GPL-3.0-or-later.
 */
#ifndef NFSBRIDGE_FAILOVER_H
#define NFSBRIDGE_FAILOVER_H

#include <stdbool.h>
#include <stdint.h>

/* What Rust provides (registered once at module load; must live for the process). */
struct nfsb_failover_ops {
	/* Milliseconds of grace left for a client that reached this server through
	 * `server_address` (plain IP text) opening on the share whose path is `share_path`, or 0
	 * when no grace period covers it. Drains the bridge's pending grace updates first. */
	uint64_t (*grace_remaining_ms)(const char *share_path, const char *server_address);
};

void nfsb_failover_register(const struct nfsb_failover_ops *ops);

/* Whether this smbd's client came in through `address` (any of its connections, as with
 * multichannel). If so, the client connection is ended the way smbd ends it when the client
 * goes away (exit_server_cleanly, from the event loop right after this call returns): durable
 * handles stay disconnected for reclaim, every other open is closed with its byte-range locks,
 * and so the bridge's table loses them. */
bool nfsb_failover_release_address(const char *address);

/* The same for a client with a tree connect on, or an open file on, the file system `dev`. */
bool nfsb_failover_release_fs(uint64_t dev);

/* The grace periods changed: every open waiting for one is run again now (and waits again if
 * a period still covers it), so that ending a period early lets them in at once. */
void nfsb_failover_grace_changed(void);

#ifdef SMB_VFS_INTERFACE_VERSION
/* create_file pre-hook (Samba types: only for the C shim). True when the open must wait for
 * the end of a grace period: *status is then the create's result (the request has been
 * deferred and is retried when the grace period ends). */
bool nfsb_failover_create_deferred(struct vfs_handle_struct *handle, struct smb_request *req,
				   const struct smb_filename *smb_fname, NTSTATUS *status);
#endif

#endif
