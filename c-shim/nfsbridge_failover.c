/*
 * nfsbridge_failover.c - the smbd side of the failover controls (docs/failover.md).
 *
 * unlock-ip / unlock-fs: an smbd whose client is in scope ends its client connection the way
 * Samba itself does when ctdb releases a public address (smb2_process.c release_ip()) or
 * `smbcontrol smbd ip-dropped` names the server address (msg_kill_client_with_server_ip()):
 * exit_server_cleanly() from the event loop. That closes every open with SHUTDOWN_CLOSE, so
 * durable handles are disconnected and kept for the client's reclaim, everything else is
 * closed with its byte-range locks, and each close tells the lease bridge (the kernel leases
 * go when nothing caches any more); the bridge then sees this smbd's connection end.
 *
 * grace: during a grace period, a new open through the grace address of a file that still has
 * a disconnected durable handle is deferred (SMB2 interim STATUS_PENDING) until the period
 * ends, through the same deferred-open mechanism smbd uses for sharing violations, while the
 * durable reconnect (SMB_VFS_DURABLE_RECONNECT, not create_file) goes through at once.
 *
 * Copyright (C) 2026 the nfsbridge authors. GPL-3.0-or-later.
 */
#include "includes.h"
#include "smbd/smbd.h"
#include "smbd/proto.h"
#include "smbd/globals.h"
#include "librpc/gen_ndr/ndr_open_files.h"
#include "locking/share_mode_lock.h"
#include "lib/tsocket/tsocket.h"
#include "lib/util/server_id.h"
#include "lib/util/tevent_ntstatus.h"

#include "nfsbridge_failover.h"
#include "nfsbridge_internal.h"

static const struct nfsb_failover_ops *failover_ops;
static bool release_scheduled;
static int failover_debug_class = DBGC_VFS;

#undef DBGC_CLASS
#define DBGC_CLASS failover_debug_class

void nfsb_failover_register(const struct nfsb_failover_ops *ops)
{
	/* The shim's class: debug_add_class() returns the index of an existing class. */
	int cls = debug_add_class("nfsbridge");

	if (cls >= 0) {
		failover_debug_class = cls;
	}
	failover_ops = ops;
}

static void release_now(struct tevent_context *ev, struct tevent_immediate *im,
			void *private_data)
{
	exit_server_cleanly("nfsbridge: client connection released for failover");
}

/* Ends the client connection from the event loop (never from inside the caller: it runs
 * under Rust frames that hold the bridge state, which the closes need). */
static bool schedule_release(const char *why)
{
	struct smbXsrv_client *client = global_smbXsrv_client;
	struct tevent_immediate *im;

	if (release_scheduled) {
		return true;
	}
	im = tevent_create_immediate(client);
	if (im == NULL) {
		DBG_ERR("nfsbridge: %s, but no memory to end the client connection\n", why);
		return false;
	}
	DBG_WARNING("nfsbridge: %s: ending the client connection (durable handles stay "
		    "disconnected for reclaim)\n", why);
	release_scheduled = true;
	tevent_schedule_immediate(im, client->raw_ev_ctx, release_now, NULL);
	return true;
}

/* As release_ip() compares: an IPv4-mapped IPv6 address is the IPv4 one. */
static bool same_ip(const char *ours, const char *wanted)
{
	if (strncmp(ours, "::ffff:", 7) == 0 && strcmp(ours + 7, wanted) == 0) {
		return true;
	}
	return strcmp(ours, wanted) == 0;
}

bool nfsb_failover_release_address(const char *address)
{
	struct smbXsrv_client *client = global_smbXsrv_client;
	struct smbXsrv_connection *xconn;
	bool found = false;

	if (client == NULL) {
		return false;
	}
	for (xconn = client->connections; xconn != NULL && !found; xconn = xconn->next) {
		char *ours = NULL;

		if (xconn->local_address == NULL) {
			continue;
		}
		ours = tsocket_address_inet_addr_string(xconn->local_address, talloc_tos());
		found = ours != NULL && same_ip(ours, address);
		TALLOC_FREE(ours);
	}
	if (!found) {
		return false;
	}
	return schedule_release(talloc_asprintf(talloc_tos(), "unlock-ip %s", address));
}

static struct files_struct *fsp_on_dev(struct files_struct *fsp, void *private_data)
{
	const uint64_t *dev = private_data;

	if (fsp->fsp_flags.is_fsa && fsp->fsp_name != NULL && VALID_STAT(fsp->fsp_name->st) &&
	    (uint64_t)fsp->fsp_name->st.st_ex_dev == *dev) {
		return fsp;
	}
	return NULL;
}

bool nfsb_failover_release_fs(uint64_t dev)
{
	struct smbXsrv_client *client = global_smbXsrv_client;
	struct smbd_server_connection *sconn;
	struct connection_struct *conn;
	bool found = false;

	if (client == NULL || client->sconn == NULL) {
		return false;
	}
	sconn = client->sconn;
	become_root(); /* the share roots may not be searchable by the current user */
	for (conn = sconn->connections; conn != NULL && !found; conn = conn->next) {
		struct stat st;

		if (IS_IPC(conn) || conn->connectpath == NULL) {
			continue;
		}
		found = stat(conn->connectpath, &st) == 0 && (uint64_t)st.st_dev == dev;
	}
	unbecome_root();
	if (!found) {
		found = files_forall(sconn, fsp_on_dev, &dev) != NULL;
	}
	if (!found) {
		return false;
	}
	return schedule_release(talloc_asprintf(talloc_tos(), "unlock-fs (dev %" PRIu64 ")",
						dev));
}

/* A create deferred for a grace period, retried when it ends. Owned by the SMB2 create's
 * tevent request: answered, cancelled or torn down, it goes (with its timer). */
struct grace_wait {
	struct grace_wait *prev, *next;
	struct smbXsrv_connection *xconn;
	struct tevent_context *ev;
	struct tevent_req *subreq;
	uint64_t mid;
};

static struct grace_wait *grace_waits;

static int grace_wait_destructor(struct grace_wait *wait)
{
	DLIST_REMOVE(grace_waits, wait);
	return 0;
}

static void grace_over(struct tevent_context *ev, struct tevent_timer *te, struct timeval now,
		       void *private_data)
{
	struct grace_wait *wait = talloc_get_type_abort(private_data, struct grace_wait);

	(void)schedule_deferred_open_message_smb(wait->xconn, wait->mid);
	TALLOC_FREE(wait);
}

void nfsb_failover_grace_changed(void)
{
	while (grace_waits != NULL) {
		struct grace_wait *wait = grace_waits;

		/* Only schedules the retry (a tevent immediate); nothing runs from here. */
		(void)schedule_deferred_open_message_smb(wait->xconn, wait->mid);
		TALLOC_FREE(wait);
	}
}

/* SMB2 CANCEL of a create waiting for the grace period. */
static bool grace_wait_cancel(struct tevent_req *req)
{
	struct grace_wait *wait;

	for (wait = grace_waits; wait != NULL && wait->subreq != req; wait = wait->next) {
	}
	if (wait == NULL) {
		return false;
	}
	nfsb_cancel_deferred_create(req, wait->xconn, wait->mid, wait->ev, wait);
	return true;
}

static bool disconnected_entry_fn(struct share_mode_entry *e, bool *modified,
				  void *private_data)
{
	bool *found = private_data;

	if (server_id_is_disconnected(&e->pid)) {
		*found = true;
		return true;
	}
	return false;
}

/* Whether the file still has a disconnected durable handle (one its client may reclaim). */
static bool has_disconnected_durable(struct connection_struct *conn,
				     const struct smb_filename *smb_fname, struct file_id *id)
{
	struct share_mode_lock *lck;
	bool found = false;

	if (!VALID_STAT(smb_fname->st)) {
		return false; /* a new file: nothing to reclaim */
	}
	*id = vfs_file_id_from_sbuf(conn, &smb_fname->st);
	lck = fetch_share_mode_unlocked(talloc_tos(), *id);
	if (lck == NULL) {
		return false;
	}
	(void)share_mode_forall_entries(lck, disconnected_entry_fn, &found);
	TALLOC_FREE(lck);
	return found;
}

bool nfsb_failover_create_deferred(struct vfs_handle_struct *handle, struct smb_request *req,
				   const struct smb_filename *smb_fname, NTSTATUS *status)
{
	struct deferred_open_record *open_rec = NULL;
	struct file_id id = { 0 };
	struct grace_wait *wait;
	char *server;
	uint64_t left_ms;
	bool ours_before;

	if (failover_ops == NULL || req == NULL || req->xconn == NULL ||
	    req->xconn->local_address == NULL || handle->conn->connectpath == NULL) {
		return false;
	}
	/* Our deferrals carry no open record; smbd's own always do. */
	ours_before = get_deferred_open_message_state(req, NULL, &open_rec) && open_rec == NULL;
	server = tsocket_address_inet_addr_string(req->xconn->local_address, talloc_tos());
	if (server == NULL) {
		return false;
	}
	if (strncmp(server, "::ffff:", 7) == 0) {
		memmove(server, server + 7, strlen(server + 7) + 1);
	}
	left_ms = failover_ops->grace_remaining_ms(handle->conn->connectpath, server);
	TALLOC_FREE(server);
	if (left_ms == 0 || (!ours_before && !has_disconnected_durable(handle->conn, smb_fname, &id))) {
		if (ours_before) {
			/* The grace period is over: go on as a first attempt would. */
			remove_deferred_open_message_smb(req->xconn, req->mid);
		}
		return false;
	}
	if (ours_before && VALID_STAT(smb_fname->st)) {
		id = vfs_file_id_from_sbuf(handle->conn, &smb_fname->st);
	}
	if (req->smb2req == NULL || req->smb2req->subreq == NULL) {
		/* SMB1 has no interim response here: refuse, as a sharing violation clients retry. */
		*status = NT_STATUS_SHARING_VIOLATION;
		return true;
	}
	if (!push_deferred_open_message_smb(req,
					    (struct timeval){ .tv_sec = left_ms / 1000,
							      .tv_usec = (left_ms % 1000) * 1000 },
					    id, NULL)) {
		*status = NT_STATUS_SHARING_VIOLATION;
		return true;
	}
	wait = talloc(req->smb2req->subreq, struct grace_wait);
	if (wait == NULL ||
	    tevent_add_timer(req->sconn->ev_ctx, wait, timeval_current_ofs_msec(left_ms),
			     grace_over, wait) == NULL) {
		TALLOC_FREE(wait);
		remove_deferred_open_message_smb(req->xconn, req->mid);
		*status = NT_STATUS_NO_MEMORY;
		return true;
	}
	*wait = (struct grace_wait){ .xconn = req->xconn, .ev = req->sconn->ev_ctx,
				     .subreq = req->smb2req->subreq, .mid = req->mid };
	DLIST_ADD(grace_waits, wait);
	talloc_set_destructor(wait, grace_wait_destructor);
	tevent_req_set_cancel_fn(wait->subreq, grace_wait_cancel);
	DBG_NOTICE("nfsbridge: %s: open waits %" PRIu64 " ms for the grace period (a durable "
		   "handle of it may be reclaimed)\n", smb_fname_str_dbg(smb_fname), left_ms);
	*status = NT_STATUS_SHARING_VIOLATION; /* not sent: the request is pending */
	return true;
}
