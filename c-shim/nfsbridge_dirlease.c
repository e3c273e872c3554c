/*
 * nfsbridge_dirlease.c - SMB directory leases and handle leases against namespace changes
 * made outside smbd (issue 7; docs/lease-bridge.md "Directory leases").
 *
 * Samba 4.22 breaks directory leases only for its own changes (notify_fname with
 * NOTIFY_ACTION_DIRLEASE_BREAK -> contend_dirleases), and a handle (H) lease only when another
 * SMB open asks for DELETE access. Here every open that holds a directory lease, or any lease
 * with H, is recorded; Rust watches the directories concerned (fanotify, module/src/dirlease.rs)
 * and reports each create, delete or rename that a process other than an smbd made. The
 * opens of this smbd concerned then get the break smbd itself would send: a directory lease on
 * the changed directory to none (contend_dirleases' rule), a lease whose own name went away
 * to its state without H. The breaks go through MSG_SMB_BREAK_REQUEST to this process
 * (send_break_request in nfsbridge_shim.c), so smbd's own break code runs them. Where the
 * kernel has directory delegations (module/src/dirdeleg.rs) the same directories are also
 * delegated, and the same breaks are sent before the change, for any change in them.
 *
 * Copyright (C) 2026 the nfsbridge authors. GPL-3.0-or-later.
 */
#include "includes.h"
#include "smbd/smbd.h"
#include "smbd/proto.h"
#include "smbd/globals.h"
#include "lib/util/debug.h"
#include "lib/util/dlinklist.h"

#include "nfsbridge_dirlease.h"
#include "nfsbridge_internal.h"
#include "nfsbridge_shim.h"

/* Logs in nfsbridge's debug class (nfsb_debug adds the newline). */
#define DL_LOG(level, ...)                                                        \
	do {                                                                      \
		if (nfsb_debug_enabled(level)) {                                  \
			char *_msg = talloc_asprintf(talloc_tos(), __VA_ARGS__);  \
			if (_msg != NULL) {                                       \
				nfsb_debug(level, __location__, __func__, _msg);  \
				TALLOC_FREE(_msg);                                \
			}                                                         \
		}                                                                 \
	} while (0)

static const struct nfsb_dirlease_ops *dl_ops;
static const struct nfsb_dirdeleg_ops *dd_ops;
/* This process announces its namespace changes (the shared table is mapped). */
static bool dd_prepared;
/* The holder side's wake-up descriptor in the event loop, once set up. */
static struct tevent_fd *dd_fde;
static bool dd_holder_tried;
static struct tevent_context *dd_ev;
static struct tevent_timer *dd_retake_timer;
/* The watch's descriptor in this process's event loop. */
static struct tevent_fd *dl_fde;
static bool dl_socket_tried;

/* An open of this process whose lease needs a directory watched; a talloc child of its fsp. */
struct dl_entry {
	struct dl_entry *prev, *next;
	struct files_struct *fsp;
	/* A directory lease: its own directory. */
	bool self_watched;
	uint64_t self_dev, self_ino;
	/* ... and backed by a directory delegation. */
	bool self_delegated;
	/* A lease with H: the directory holding its name. */
	bool parent_watched;
	uint64_t parent_dev, parent_ino;
	/* ... and backed by a directory delegation on it. */
	bool parent_delegated;
};

static struct dl_entry *dl_entries;

void nfsb_dirlease_register(const struct nfsb_dirlease_ops *ops)
{
	dl_ops = ops;
}

void nfsb_dirdeleg_register(const struct nfsb_dirdeleg_ops *ops)
{
	dd_ops = ops;
}

void nfsb_dirlease_connect(struct connection_struct *conn)
{
	char *table;

	if (dd_ops == NULL || dd_prepared) {
		return;
	}
	/* Every smbd of this Samba instance maps the same table from its lock directory. */
	table = lock_path(talloc_tos(), "nfsbridge_namespace.tbl");
	if (table == NULL) {
		return;
	}
	dd_prepared = dd_ops->prepare(table, conn->connectpath);
	TALLOC_FREE(table);
}

static void ns_add(struct nfsb_namespace_change *change, uint64_t dev, uint64_t ino)
{
	if (change->count < ARRAY_SIZE(change->keys) / 2) {
		change->keys[2 * change->count] = dev;
		change->keys[2 * change->count + 1] = ino;
		change->count++;
	}
}

static void ns_add_dir(struct nfsb_namespace_change *change, const struct files_struct *dir)
{
	struct stat st;

	if (dir == NULL) {
		return;
	}
	if (VALID_STAT(dir->fsp_name->st)) {
		ns_add(change, dir->fsp_name->st.st_ex_dev, dir->fsp_name->st.st_ex_ino);
	} else if (fstat(fsp_get_pathref_fd(dir), &st) == 0) {
		ns_add(change, st.st_dev, st.st_ino);
	}
}

void nfsb_namespace_begin(struct nfsb_namespace_change *change, const struct files_struct *dir_a,
			  const struct files_struct *dir_b, const struct smb_filename *entry)
{
	change->count = 0;
	change->announced = false;
	if (!dd_prepared) {
		return;
	}
	ns_add_dir(change, dir_a);
	ns_add_dir(change, dir_b);
	/* A directory renamed (or removed) breaks its own delegation too. */
	if (entry != NULL && VALID_STAT(entry->st)) {
		ns_add(change, entry->st.st_ex_dev, entry->st.st_ex_ino);
	}
	dd_ops->namespace_change(change->keys, change->count, true);
	change->announced = true;
}

void nfsb_namespace_end(struct nfsb_namespace_change *change)
{
	int err = errno;

	if (change->announced) {
		dd_ops->namespace_change(change->keys, change->count, false);
		change->announced = false;
	}
	errno = err;
}

void nfsb_dirlease_trace(enum tevent_trace_point point)
{
	if (dd_fde == NULL) {
		return;
	}
	if (point == TEVENT_TRACE_BEFORE_WAIT) {
		dd_ops->idle(true);
	} else if (point == TEVENT_TRACE_AFTER_WAIT) {
		dd_ops->idle(false);
	}
}

static void dd_readable(struct tevent_context *ev, struct tevent_fd *fde, uint16_t flags,
			void *private_data)
{
	dd_ops->readable();
}

/* The holder side of this process (the first time a directory lease needs a delegation). */
static bool dd_ensure_holder(struct smbd_server_connection *sconn)
{
	int fd;

	if (dd_fde != NULL) {
		nfsb_trace_install(sconn->ev_ctx); /* again, in case smbd set another since */
		return true;
	}
	if (dd_holder_tried || !dd_prepared) {
		return false;
	}
	dd_holder_tried = true;
	fd = dd_ops->holder_socket();
	if (fd < 0) {
		return false;
	}
	dd_fde = tevent_add_fd(sconn->ev_ctx, sconn, fd, TEVENT_FD_READ, dd_readable, NULL);
	if (dd_fde == NULL) {
		DL_LOG(NFSB_DBGLVL_ERR, "cannot watch the directory delegations' descriptor");
		return false;
	}
	dd_ev = sconn->ev_ctx;
	nfsb_trace_install(dd_ev);
	return true;
}

struct dd_release {
	uint64_t dev, ino;
};

static void dd_release_now(struct tevent_context *ev, struct tevent_immediate *im,
			   void *private_data)
{
	struct dd_release *r = talloc_get_type_abort(private_data, struct dd_release);

	dd_ops->release(r->dev, r->ino);
	TALLOC_FREE(r);
}

void nfsb_dirlease_delegation_broken(uint64_t dev, uint64_t ino)
{
	struct dd_release *r;
	struct tevent_immediate *im;
	struct dl_entry *e;

	become_root(); /* leases.tdb */
	for (e = dl_entries; e != NULL; e = e->next) {
		struct files_struct *fsp = e->fsp;
		/* Every directory lease on it; the H only of leases whose share delegates them. */
		bool self = e->self_watched && e->self_dev == dev && e->self_ino == ino;
		bool parent = e->parent_delegated && e->parent_dev == dev && e->parent_ino == ino;
		uint32_t state, target;

		if ((!self && !parent) || fsp->lease == NULL) {
			continue;
		}
		(void)fsp_lease_update(fsp);
		state = fsp->lease->lease.lease_state;
		if (self) {
			target = dl_ops->directory_break(state);
			if (target != NFSB_DIRLEASE_NO_BREAK) {
				DL_LOG(NFSB_DBGLVL_INFO, "%s: changing outside smbd (directory "
				       "delegation broken): breaking directory lease 0x%x to 0x%x "
				       "before the change", fsp_str_dbg(fsp), state, target);
				(void)send_break_request(fsp, target);
			}
			continue;
		}
		/* The kernel does not say which entry is changing: it may be this one. */
		target = dl_ops->unlinked_break(state);
		if (target != NFSB_DIRLEASE_NO_BREAK) {
			DL_LOG(NFSB_DBGLVL_INFO, "%s: its directory changing outside smbd (directory "
			       "delegation broken): breaking lease 0x%x to 0x%x before the change",
			       fsp_str_dbg(fsp), state, target);
			(void)send_break_request(fsp, target);
		}
	}
	unbecome_root();
	/* smbd runs its break requests (messages to itself) as immediates, in order: this one
	 * comes after them, so the breaks are on their way to the clients before the change
	 * goes on. */
	r = talloc(dd_ev, struct dd_release);
	im = r == NULL ? NULL : tevent_create_immediate(r);
	if (im == NULL) {
		TALLOC_FREE(r);
		dd_ops->release(dev, ino);
		return;
	}
	r->dev = dev;
	r->ino = ino;
	tevent_schedule_immediate(im, dd_ev, dd_release_now, r);
}

static void dd_retake_fired(struct tevent_context *ev, struct tevent_timer *te,
			    struct timeval now, void *private_data)
{
	dd_retake_timer = NULL;
	become_root(); /* leases.tdb */
	dd_ops->retake();
	unbecome_root();
}

void nfsb_dirlease_retake_later(uint32_t ms)
{
	if (dd_ev == NULL || dd_retake_timer != NULL) {
		return;
	}
	dd_retake_timer = tevent_add_timer(dd_ev, dd_ev, timeval_current_ofs_msec(ms),
					   dd_retake_fired, NULL);
	if (dd_retake_timer == NULL) {
		/* Taken again when a lease is next granted on the directory. */
		DL_LOG(NFSB_DBGLVL_ERR, "cannot schedule taking directory delegations again");
	}
}

/* Runs as root (leases.tdb): from dd_retake_fired. */
bool nfsb_dirlease_leased(uint64_t dev, uint64_t ino)
{
	struct dl_entry *e;

	for (e = dl_entries; e != NULL; e = e->next) {
		struct files_struct *fsp = e->fsp;
		bool self = e->self_delegated && e->self_dev == dev && e->self_ino == ino;
		bool parent = e->parent_delegated && e->parent_dev == dev && e->parent_ino == ino;
		uint32_t state;

		if ((!self && !parent) || fsp->lease == NULL) {
			continue;
		}
		(void)fsp_lease_update(fsp);
		state = fsp->lease->lease.lease_state;
		/* A lease being broken is losing what the delegation backs: taking it again would
		 * only hold the next change up until the client answered. */
		if (fsp->lease->lease.lease_flags & SMB2_LEASE_FLAG_BREAK_IN_PROGRESS) {
			continue;
		}
		if (self && (state & (SMB2_LEASE_READ | SMB2_LEASE_HANDLE))) {
			return true;
		}
		if (parent && (state & SMB2_LEASE_HANDLE)) {
			return true;
		}
	}
	return false;
}

static void dl_readable(struct tevent_context *ev, struct tevent_fd *fde, uint16_t flags,
			void *private_data)
{
	/* No privileges here: most events are on idle marks and need none. The Rust side raises
	 * root's capabilities to look at a changer's /proc/<pid>/exe; acting on a change takes
	 * root (nfsb_dirlease_changed). */
	dl_ops->readable();
}

/* Watches the group's descriptor in smbd's event loop (the first time it is needed; the mode
 * logged then is that of the share whose open needed it first). */
static bool dl_ensure_socket(struct smbd_server_connection *sconn, const char *probe_dir,
			     unsigned delegations)
{
	int fd;

	if (dl_fde != NULL) {
		return true;
	}
	if (dl_socket_tried) {
		return false;
	}
	dl_socket_tried = true;
	become_root(); /* fanotify_init needs CAP_SYS_ADMIN */
	fd = dl_ops->socket(probe_dir, (delegations & NFSB_DELEGATE_HANDLE_LEASES) != 0);
	unbecome_root();
	if (fd < 0) {
		return false;
	}
	/* Lives as long as the process, like the lease bridge's socket watch. */
	dl_fde = tevent_add_fd(sconn->ev_ctx, sconn, fd, TEVENT_FD_READ, dl_readable, NULL);
	if (dl_fde == NULL) {
		DL_LOG(NFSB_DBGLVL_ERR, "cannot watch the namespace watch's descriptor");
		return false;
	}
	return true;
}

static int dl_entry_destructor(struct dl_entry *e)
{
	/* No privileges here: a watch's last user leaves its mark idle (removed later, by the
	 * Rust side with root's capabilities). */
	DLIST_REMOVE(dl_entries, e);
	if (e->self_delegated) {
		dd_ops->undelegate(e->self_dev, e->self_ino);
	}
	if (e->parent_delegated) {
		dd_ops->undelegate(e->parent_dev, e->parent_ino);
	}
	if (e->self_watched) {
		dl_ops->unwatch(e->self_dev, e->self_ino);
	}
	if (e->parent_watched) {
		dl_ops->unwatch(e->parent_dev, e->parent_ino);
	}
	return 0;
}

/* stat as the user (who reached the directory), as root only if that is refused. */
static int dl_stat_dir(const char *path, struct stat *st)
{
	int ret = stat(path, st);

	if (ret != 0 && errno == EACCES) {
		become_root();
		ret = stat(path, st);
		unbecome_root();
	}
	return ret;
}

/* The absolute path of a share-relative name ("." is the share's root). */
static char *dl_abs_path(TALLOC_CTX *mem_ctx, const struct connection_struct *conn,
			 const char *base_name)
{
	if (ISDOT(base_name)) {
		return talloc_strdup(mem_ctx, conn->connectpath);
	}
	return talloc_asprintf(mem_ctx, "%s/%s", conn->connectpath, base_name);
}

void nfsb_dirlease_after_create(struct vfs_handle_struct *handle, struct files_struct *fsp,
				unsigned delegations)
{
	struct connection_struct *conn;
	struct dl_entry *e;
	const char *base_name;
	uint32_t state;
	bool want_self, want_parent;
	int err;

	if (dl_ops == NULL || fsp == NULL || fsp->oplock_type != LEASE_OPLOCK ||
	    fsp->lease == NULL || fsp_is_alternate_stream(fsp) ||
	    !VALID_STAT(fsp->fsp_name->st)) {
		return;
	}
	conn = fsp->conn;
	base_name = fsp->fsp_name->base_name;
	state = fsp->lease->lease.lease_state;
	want_self = fsp->fsp_flags.is_directory && (state & (SMB2_LEASE_READ | SMB2_LEASE_HANDLE));
	want_parent = (state & SMB2_LEASE_HANDLE) && !ISDOT(base_name);
	if (!want_self && !want_parent) {
		return;
	}
	e = talloc_zero(fsp, struct dl_entry);
	if (e == NULL) {
		return;
	}
	e->fsp = fsp;
	if (dl_ensure_socket(conn->sconn, conn->connectpath, delegations)) {
		char *path = dl_abs_path(e, conn, base_name);

		/* A new mark is made with root's capabilities by the Rust side; a directory
		 * already watched costs no system call. */
		if (want_self && path != NULL) {
			e->self_dev = fsp->fsp_name->st.st_ex_dev;
			e->self_ino = fsp->fsp_name->st.st_ex_ino;
			err = dl_ops->watch(e->self_dev, e->self_ino, path);
			e->self_watched = (err == 0);
			/* The delegation needs the watch too: it covers what the delegation
			 * cannot (changes while it is given back). */
			if (e->self_watched && (delegations & NFSB_DELEGATE_DIRECTORY_LEASES) &&
			    dd_ensure_holder(conn->sconn)) {
				e->self_delegated =
					(dd_ops->delegate(e->self_dev, e->self_ino, path) == 0);
			}
		}
		if (want_parent && path != NULL) {
			char *parent = talloc_strdup(e, path);
			char *slash = parent == NULL ? NULL : strrchr(parent, '/');
			struct stat st;

			if (slash != NULL) {
				*slash = '\0';
				if (dl_stat_dir(parent, &st) == 0) {
					e->parent_dev = st.st_dev;
					e->parent_ino = st.st_ino;
					err = dl_ops->watch(e->parent_dev, e->parent_ino, parent);
					e->parent_watched = (err == 0);
				}
				/* As for a directory lease: the watch covers what the delegation
				 * cannot (changes while it is given back). */
				if (e->parent_watched &&
				    (delegations & NFSB_DELEGATE_HANDLE_LEASES) &&
				    dd_ensure_holder(conn->sconn)) {
					e->parent_delegated = (dd_ops->delegate(
						e->parent_dev, e->parent_ino, parent) == 0);
				}
			}
			TALLOC_FREE(parent);
		}
		TALLOC_FREE(path);
	}
	if (want_self && !e->self_watched) {
		/* Nothing would tell this client about local or NFS changes. */
		DL_LOG(NFSB_DBGLVL_INFO, "%s: directory lease 0x%x cannot be watched: breaking it",
		       fsp_str_dbg(fsp), state);
		(void)send_break_request(fsp, SMB2_LEASE_NONE);
	}
	if (!e->self_watched && !e->parent_watched) {
		TALLOC_FREE(e);
		return;
	}
	DLIST_ADD(dl_entries, e);
	talloc_set_destructor(e, dl_entry_destructor);
}

/* Whether the open's own name no longer names its file: deleted, renamed away or replaced. */
static bool dl_name_gone(const struct files_struct *fsp, const char *name)
{
	const char *base_name = fsp->fsp_name->base_name;
	const char *last = strrchr(base_name, '/');
	char *path;
	struct stat st;
	bool gone;

	last = (last == NULL) ? base_name : last + 1;
	if (name != NULL && strcmp(last, name) != 0) {
		return false;
	}
	path = dl_abs_path(talloc_tos(), fsp->conn, base_name);
	if (path == NULL) {
		return false;
	}
	gone = lstat(path, &st) != 0 ? (errno == ENOENT || errno == ENOTDIR)
				       : (st.st_dev != fsp->fsp_name->st.st_ex_dev ||
					  st.st_ino != fsp->fsp_name->st.st_ex_ino);
	TALLOC_FREE(path);
	return gone;
}

void nfsb_dirlease_changed(uint64_t dev, uint64_t ino, const char *name)
{
	struct dl_entry *e, *next;

	become_root(); /* leases.tdb, and lstat of names the user may not reach */
	for (e = dl_entries; e != NULL; e = next) {
		struct files_struct *fsp = e->fsp;
		uint32_t state, target;

		next = e->next;
		if (fsp->lease == NULL) {
			continue;
		}
		(void)fsp_lease_update(fsp); /* the current state, from leases.tdb */
		state = fsp->lease->lease.lease_state;
		if (e->self_watched && e->self_dev == dev && e->self_ino == ino) {
			target = dl_ops->directory_break(state);
			if (target != NFSB_DIRLEASE_NO_BREAK) {
				DL_LOG(NFSB_DBGLVL_INFO, "%s: entry %s changed outside smbd: "
				       "breaking directory lease 0x%x to 0x%x", fsp_str_dbg(fsp),
				       name ? name : "(any)", state, target);
				(void)send_break_request(fsp, target);
			}
			continue;
		}
		if (e->parent_watched && e->parent_dev == dev && e->parent_ino == ino) {
			target = dl_ops->unlinked_break(state);
			if (target != NFSB_DIRLEASE_NO_BREAK && dl_name_gone(fsp, name)) {
				DL_LOG(NFSB_DBGLVL_INFO, "%s: deleted or renamed outside smbd: "
				       "breaking lease 0x%x to 0x%x", fsp_str_dbg(fsp), state, target);
				(void)send_break_request(fsp, target);
			}
		}
	}
	unbecome_root();
}
