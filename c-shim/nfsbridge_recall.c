/*
 * nfsbridge_recall.c - SMB changes to a delegated file recall the delegation without blocking
 * smbd (nfsbridge_recall.h; docs/lease-bridge.md, "Delegations held by others").
 *
 * The create of an existing regular file or directory that may change it (DELETE, write or
 * attribute access, an overwriting disposition; on a share with the lease bridge only file
 * creates without data access, see below) looks up its delegations in /proc/locks (Rust,
 * src/lease/proc_locks.rs; smbd processes' own directory delegations left out: smbd's changes
 * are announced to them). None: nothing happens.
 * Some: once smbd's own access check would let the user have that access, the module opens
 * a file for writing with O_NONBLOCK as root. That open is what starts the recall (the
 * kernel breaks every delegation an open for writing conflicts with, tells nfsd or the local
 * holder, and returns EWOULDBLOCK at once). No open breaks a directory's read delegation: for
 * a directory a thread of the module makes a change that alters only its ctime and waits for
 * the recall in the kernel instead of smbd (recall_directory, module/src/recall.rs). The
 * create is then deferred the way smbd defers a create on a sharing violation (SMB2 interim STATUS_PENDING; other requests of the client go
 * on), /proc/locks is polled on a backing-off timer, and the create is run again as soon as
 * the delegation is gone. After 'nfsbridge:recall timeout' seconds it fails with
 * STATUS_SHARING_VIOLATION instead.
 *
 * Data opens on a share with the lease bridge are not looked at here: the bridge's own open of
 * the file (O_RDWR|O_NONBLOCK) meets any delegation or lease of someone else, starts its recall
 * and answers EWOULDBLOCK, and smbd defers the create with its poll-open (a retry a second).
 * For those the module only watches /proc/locks the same way and has smbd retry as soon as the
 * file is free (nfsb_recall_watch_deferred).
 *
 * Copyright (C) 2026 the nfsbridge authors. GPL-3.0-or-later.
 */
#include "includes.h"
#include "smbd/smbd.h"
#include "smbd/proto.h"
#include "smbd/globals.h"
#include "libcli/security/security.h"
#include "lib/util/tevent_ntstatus.h"

#include "nfsbridge_recall.h"
#include "nfsbridge_shim.h"
#include "nfsbridge_internal.h"

static const struct nfsb_recall_ops *recall_ops;
static int recall_debug_class = DBGC_VFS;

#undef DBGC_CLASS
#define DBGC_CLASS recall_debug_class

/* Access that leads to a change a read delegation must be recalled for: unlink and rename
 * (DELETE), writes and truncation, attribute, EA, ACL and owner changes. */
#define RECALL_ACCESS                                                                       \
	(SEC_STD_DELETE | FILE_WRITE_DATA | FILE_APPEND_DATA | FILE_WRITE_ATTRIBUTES |      \
	 FILE_WRITE_EA | SEC_STD_WRITE_DAC | SEC_STD_WRITE_OWNER)
/* Access for which smbd opens the file's data. */
#define DATA_ACCESS (FILE_READ_DATA | FILE_WRITE_DATA | FILE_APPEND_DATA | FILE_EXECUTE)

/* The first poll of /proc/locks after the recall started, and the longest interval. */
#define POLL_FIRST_MS 2
#define POLL_MAX_MS 64

static const struct generic_mapping recall_generic_mapping = {
	FILE_GENERIC_READ, FILE_GENERIC_WRITE, FILE_GENERIC_EXECUTE, FILE_GENERIC_ALL
};

void nfsb_recall_register(const struct nfsb_recall_ops *ops)
{
	/* The shim's class: debug_add_class() returns the index of an existing class. */
	int cls = debug_add_class("nfsbridge");

	if (cls >= 0) {
		recall_debug_class = cls;
	}
	recall_ops = ops;
}

/* A create waiting for a recall. Owned by the SMB2 request (answered, cancelled or torn down,
 * it goes, with its timer) and found again by its message id when smbd runs the create again:
 * the tevent request of each run (`subreq`, where SMB2 CANCEL arrives) may be a new one. */
struct recall_wait {
	struct recall_wait *prev, *next;
	struct smbXsrv_connection *xconn;
	struct tevent_context *ev;
	struct smbd_smb2_request *smb2req;
	struct tevent_req *subreq;
	uint64_t mid;
	uint64_t dev, ino;
	/* NFSB_* bits that must all be gone from the file before the create is retried. */
	uint32_t wait_for;
	/* smbd deferred the create itself (its poll-open): the module only retries it early. */
	bool smbd_owned;
	struct timeval deadline;
	struct tevent_timer *timer;
	uint32_t poll_ms;
};

static struct recall_wait *recall_waits;

static int recall_wait_destructor(struct recall_wait *wait)
{
	DLIST_REMOVE(recall_waits, wait);
	return 0;
}

static struct recall_wait *find_wait(const struct smb_request *req)
{
	struct recall_wait *wait;

	if (req->smb2req == NULL) {
		return NULL;
	}
	for (wait = recall_waits; wait != NULL; wait = wait->next) {
		if (wait->smb2req == req->smb2req && wait->mid == req->mid) {
			return wait;
		}
	}
	return NULL;
}

static void recall_poll(struct tevent_context *ev, struct tevent_timer *te, struct timeval now,
			void *private_data)
{
	struct recall_wait *wait = talloc_get_type_abort(private_data, struct recall_wait);
	bool gone, late;

	wait->timer = NULL;
	gone = (recall_ops->holders_on(wait->dev, wait->ino) & wait->wait_for) == 0;
	late = timeval_compare(&now, &wait->deadline) >= 0;
	if (gone || late) {
		/* Only schedules the retry (a tevent immediate); the create decides there. */
		(void)schedule_deferred_open_message_smb(wait->xconn, wait->mid);
		return;
	}
	wait->poll_ms = MIN(wait->poll_ms * 2, POLL_MAX_MS);
	wait->timer = tevent_add_timer(ev, wait, timeval_current_ofs_msec(wait->poll_ms),
				       recall_poll, wait);
	if (wait->timer == NULL) {
		(void)schedule_deferred_open_message_smb(wait->xconn, wait->mid);
	}
}

/* SMB2 CANCEL of a create waiting for a recall (only creates the module deferred itself). */
static bool recall_wait_cancel(struct tevent_req *req)
{
	struct recall_wait *wait;

	for (wait = recall_waits; wait != NULL && wait->subreq != req; wait = wait->next) {
	}
	if (wait == NULL || wait->smbd_owned) {
		return false;
	}
	nfsb_cancel_deferred_create(req, wait->xconn, wait->mid, wait->ev, wait);
	return true;
}

/* Whether the create disposition truncates an existing file. */
static bool overwrites(uint32_t create_disposition)
{
	return create_disposition == FILE_SUPERSEDE || create_disposition == FILE_OVERWRITE ||
	       create_disposition == FILE_OVERWRITE_IF;
}

/* Whether this create (its access mask with generic rights mapped) may lead to a change a read
 * delegation must be recalled for, and is not one the lease bridge's open will find
 * delegations for itself. Decided before /proc/locks is read, so that ordinary opens do not
 * pay for it. */
static bool create_may_need_recall(uint32_t mask, uint32_t create_disposition, bool bridged)
{
	if (bridged && (mask & DATA_ACCESS)) {
		return false; /* the bridge's O_RDWR open meets the delegation (EWOULDBLOCK) */
	}
	return overwrites(create_disposition) || (mask & RECALL_ACCESS) != 0;
}

/*
 * Starts the recall: an open for writing with O_NONBLOCK breaks every delegation and lease an
 * open for writing conflicts with and returns EWOULDBLOCK at once (fs/locks.c __break_lease).
 * As root (the user's own right to change the file was checked by the caller), through the
 * path reference, so no name is looked up again. True when a recall is under way (or was
 * already); false when the open went through (no delegation any more) or failed otherwise.
 */
static bool start_recall(const struct files_struct *pathref, const char *name, bool directory)
{
	char proc_path[64];
	int fd, err;

	if (directory) {
		err = recall_ops->recall_directory(fsp_get_pathref_fd(pathref));
		if (err != 0) {
			DBG_NOTICE("nfsbridge: %s: cannot start the recall of its delegation (%s); "
				   "smbd will wait for it in the kernel\n", name, strerror(err));
		}
		return err == 0;
	}

	snprintf(proc_path, sizeof(proc_path), "/proc/self/fd/%d", fsp_get_pathref_fd(pathref));
	nfsb_privilege_raise();
	fd = open(proc_path, O_WRONLY | O_NONBLOCK | O_CLOEXEC | O_NOCTTY);
	err = errno;
	nfsb_privilege_drop();
	if (fd != -1) {
		close(fd);
		return false;
	}
	if (err != EWOULDBLOCK) {
		DBG_NOTICE("nfsbridge: %s: cannot start the recall of its delegation (%s); smbd "
			   "will wait for it in the kernel\n", name, strerror(err));
		return false;
	}
	return true;
}

/* Ends our deferral of this create (it goes on, or fails, now). */
static void finish_wait(struct recall_wait *wait, struct smb_request *req)
{
	if (wait != NULL) {
		remove_deferred_open_message_smb(req->xconn, req->mid);
		TALLOC_FREE(wait);
	}
}

static struct recall_wait *new_wait(struct smb_request *req, uint64_t dev, uint64_t ino,
				    uint32_t wait_for, uint32_t timeout_secs)
{
	struct recall_wait *wait = talloc_zero(req->smb2req, struct recall_wait);

	if (wait == NULL) {
		return NULL;
	}
	*wait = (struct recall_wait){ .xconn = req->xconn, .ev = req->sconn->ev_ctx,
				      .smb2req = req->smb2req, .subreq = req->smb2req->subreq,
				      .mid = req->mid,
				      .dev = dev, .ino = ino, .wait_for = wait_for,
				      .deadline = timeval_current_ofs(timeout_secs, 0) };
	DLIST_ADD(recall_waits, wait);
	talloc_set_destructor(wait, recall_wait_destructor);
	return wait;
}

/* Polls /proc/locks for this wait from now on, starting with the shortest interval. */
static bool start_polling(struct recall_wait *wait)
{
	wait->poll_ms = POLL_FIRST_MS;
	TALLOC_FREE(wait->timer);
	wait->timer = tevent_add_timer(wait->ev, wait, timeval_current_ofs_msec(wait->poll_ms),
				       recall_poll, wait);
	return wait->timer != NULL;
}

void nfsb_recall_watch_deferred(struct smb_request *req, uint64_t dev, uint64_t ino)
{
	struct recall_wait *wait;

	if (recall_ops == NULL || req == NULL || req->xconn == NULL || req->smb2req == NULL ||
	    req->smb2req->subreq == NULL || !open_was_deferred(req->xconn, req->mid) ||
	    find_wait(req) != NULL) {
		return;
	}
	/* smbd's own retry comes after a second at the latest: no deadline of ours. */
	wait = new_wait(req, dev, ino, NFSB_DELEG_HELD | NFSB_LEASE_HELD, 3600);
	if (wait == NULL) {
		return;
	}
	wait->smbd_owned = true;
	if (!start_polling(wait)) {
		TALLOC_FREE(wait);
	}
}

bool nfsb_recall_create_deferred(struct vfs_handle_struct *handle, void *share_state,
				 struct smb_request *req, struct files_struct *dirfsp,
				 const struct smb_filename *smb_fname, uint32_t access_mask,
				 uint32_t create_disposition, bool bridged, NTSTATUS *status)
{
	struct recall_wait *wait = NULL;
	const char *name = smb_fname_str_dbg(smb_fname);
	uint32_t mask = access_mask;
	uint32_t timeout_secs, deleg;
	uint64_t dev, ino;
	struct file_id id;
	/* Directories are never opened through the lease bridge. */
	bool directory = VALID_STAT(smb_fname->st) && S_ISDIR(smb_fname->st.st_ex_mode);

	if (recall_ops == NULL || req == NULL || req->xconn == NULL) {
		return false;
	}
	wait = find_wait(req);
	if (wait != NULL && wait->smbd_owned) {
		/* smbd runs its own deferred create again (early, by our watch, or by its timer):
		 * the watch is done; smbd removes its own deferral. */
		TALLOC_FREE(wait);
	}
	/* First what costs nothing: most creates stop here. */
	se_map_generic(&mask, &recall_generic_mapping);
	mask &= ~SEC_FLAG_MAXIMUM_ALLOWED;
	if (wait == NULL && !create_may_need_recall(mask, create_disposition, bridged && !directory)) {
		return false;
	}
	timeout_secs = recall_ops->timeout_secs(share_state);
	if (timeout_secs == 0 || !VALID_STAT(smb_fname->st) ||
	    (!S_ISREG(smb_fname->st.st_ex_mode) && !directory) ||
	    smb_fname->fsp == NULL || fsp_get_pathref_fd(smb_fname->fsp) == -1 ||
	    is_named_stream(smb_fname)) {
		finish_wait(wait, req);
		return false;
	}
	dev = (uint64_t)smb_fname->st.st_ex_dev;
	ino = (uint64_t)smb_fname->st.st_ex_ino;
	deleg = recall_ops->holders_on(dev, ino);
	if (!(deleg & NFSB_DELEG_HELD)) {
		finish_wait(wait, req); /* given back (or never there): the create goes on */
		return false;
	}
	if (wait != NULL) {
		struct timeval now = timeval_current();

		if (timeval_compare(&now, &wait->deadline) >= 0) {
			DBG_WARNING("nfsbridge: %s: a delegation on it (NFS or local) was not "
				    "given back within %" PRIu32 " s (nfsbridge:recall timeout); the "
				    "SMB create fails with STATUS_SHARING_VIOLATION\n",
				    name, timeout_secs);
			finish_wait(wait, req);
			*status = NT_STATUS_SHARING_VIOLATION;
			return true;
		}
	} else {
		/* Only a user who may make the change starts a recall: smbd would refuse the open
		 * anyway, and a recall costs the NFS client its caching. */
		if (overwrites(create_disposition)) {
			mask |= FILE_WRITE_DATA; /* truncating needs it */
		}
		if (dirfsp == NULL || mask == 0 ||
		    !NT_STATUS_IS_OK(smbd_check_access_rights_fsp(dirfsp, smb_fname->fsp, false,
								  mask))) {
			return false;
		}
	}
	/* Started again on every retry: a holder may have taken a new delegation meanwhile. */
	if (!(deleg & NFSB_DELEG_BREAKING) && !start_recall(smb_fname->fsp, name, directory)) {
		finish_wait(wait, req);
		return false;
	}
	if (req->smb2req == NULL || req->smb2req->subreq == NULL) {
		/* SMB1 has no interim response: refuse as a sharing violation, which clients
		 * retry; the recall is under way. */
		*status = NT_STATUS_SHARING_VIOLATION;
		return true;
	}
	id = vfs_file_id_from_sbuf(handle->conn, &smb_fname->st);
	if (wait == NULL) {
		wait = new_wait(req, dev, ino, NFSB_DELEG_HELD, timeout_secs);
		if (wait == NULL) {
			*status = NT_STATUS_NO_MEMORY;
			return true;
		}
		DBG_NOTICE("nfsbridge: %s: delegated (NFS or local)%s; its recall started, the SMB "
			   "create waits for it (at most %" PRIu32 " s)\n", name,
			   directory ? ", a directory" : "", timeout_secs);
	}
	if (!push_deferred_open_message_smb(req, (struct timeval){ .tv_sec = timeout_secs }, id, NULL)) {
		TALLOC_FREE(wait);
		*status = NT_STATUS_SHARING_VIOLATION;
		return true;
	}
	if (!start_polling(wait)) {
		remove_deferred_open_message_smb(req->xconn, req->mid);
		TALLOC_FREE(wait);
		*status = NT_STATUS_NO_MEMORY;
		return true;
	}
	wait->subreq = req->smb2req->subreq;
	tevent_req_set_cancel_fn(wait->subreq, recall_wait_cancel);
	*status = NT_STATUS_SHARING_VIOLATION; /* not sent: the request is pending */
	return true;
}
