/*
 * nfsbridge_dirlease.h - the namespace watch's boundary between Rust and the C shim (issue 7,
 * docs/lease-bridge.md "Directory leases"). Plain C, no Samba includes: bindgen reads it.
 *
 * Rust watches directories with fanotify and tells the shim which watched directory changed
 * outside smbd; the shim finds the SMB opens of this smbd process the change concerns and
 * breaks their leases through smbd's own break code.
 *
 * Copyright (C) 2026 the nfsbridge authors. GPL-3.0-or-later.
 */
#ifndef NFSBRIDGE_DIRLEASE_H
#define NFSBRIDGE_DIRLEASE_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

/* Rust's half, registered once per process with nfsb_dirlease_register(). Called from smbd's
 * main loop only; `watch`, `unwatch`, `socket` and `readable` run as root. */
struct nfsb_dirlease_ops {
	/* The group's descriptor to poll (set up on first use, logging which mode is active;
	 * the kernel's support for delegations is probed on `probe_dir`, a directory of the
	 * share, whose handle leases are delegated if `handle_leases`), or -1 when no watch is
	 * possible in this process. */
	int (*socket)(const char *probe_dir, bool handle_leases);
	/* One more open needs the directory at `path` (absolute) with device/inode dev/ino
	 * watched. 0, or an errno value (the directory is not watched). */
	int (*watch)(uint64_t dev, uint64_t ino, const char *path);
	/* One open fewer needs it (the mark goes with the last one). */
	void (*unwatch)(uint64_t dev, uint64_t ino);
	/* The descriptor is readable: reads the events and calls nfsb_dirlease_changed() for
	 * each change made outside smbd. */
	void (*readable)(void);
	/* What a lease of `state` (SMB2 lease bits) is broken to: a directory lease whose
	 * directory's entries changed, and a lease whose open's name was deleted or renamed
	 * away. NFSB_DIRLEASE_NO_BREAK when it keeps what it has. */
	uint32_t (*directory_break)(uint32_t state);
	uint32_t (*unlinked_break)(uint32_t state);
};

#define NFSB_DIRLEASE_NO_BREAK UINT32_MAX

void nfsb_dirlease_register(const struct nfsb_dirlease_ops *ops);

/* A change in the watched directory dev/ino made by a process other than an smbd: `name` is
 * the entry created, deleted or renamed, or NULL when anything may have changed (the event
 * queue overflowed). Breaks the directory leases on that directory and the handle leases of
 * opens whose name went away. */
void nfsb_dirlease_changed(uint64_t dev, uint64_t ino, const char *name);

/*
 * Directory delegations (Linux 6.19+, F_SETDELEG; module/src/dirdeleg.rs): this smbd process
 * holds a read delegation on each directory its clients hold a directory lease on, and on each
 * directory holding the name of an open whose lease has H, so that a change made outside smbd
 * waits until the leases are broken. Called from smbd's main loop (the signal handler is
 * Rust's own).
 */
struct nfsb_dirdeleg_ops {
	/* At a tree connect of a share that wants them: maps the table of smbd changes in
	 * progress at `table_path` if the kernel has delegations for `share_dir`'s file system.
	 * True: this process announces its namespace changes (and may hold delegations). */
	bool (*prepare)(const char *table_path, const char *share_dir);
	/* Around each of smbd's creates, deletes, renames and links: `count` (dev, ino) pairs of
	 * the directories (and entry) concerned, counted up (`enter`) or down. */
	void (*namespace_change)(const uint64_t *keys, size_t count, bool enter);
	/* smbd's main loop starts (true) or stops (false) waiting for events. */
	void (*idle)(bool waiting);
	/* The descriptor that wakes the main loop when a delegation was broken (set up on first
	 * use), or -1 when this process cannot hold delegations. */
	int (*holder_socket)(void);
	/* One more open has a directory lease on the directory at `path`, or a lease with H on
	 * an entry of it: 0 when a delegation backs it, or an errno value. */
	int (*delegate)(uint64_t dev, uint64_t ino, const char *path);
	void (*undelegate)(uint64_t dev, uint64_t ino);
	/* holder_socket's descriptor is readable. */
	void (*readable)(void);
	/* smbd has sent the breaks nfsb_dirlease_delegation_broken asked for: give it back. */
	void (*release)(uint64_t dev, uint64_t ino);
	/* The timer nfsb_dirlease_retake_later set fired. */
	void (*retake)(void);
};

void nfsb_dirdeleg_register(const struct nfsb_dirdeleg_ops *ops);

/* Someone other than an smbd is changing the delegated directory dev/ino: breaks its directory
 * leases and the H of the leases on its entries, then (after smbd has sent the breaks) has Rust
 * give the delegation back. */
void nfsb_dirlease_delegation_broken(uint64_t dev, uint64_t ino);
/* Calls the `retake` op in `ms` milliseconds. */
void nfsb_dirlease_retake_later(uint32_t ms);
/* Whether an open of this process still has a directory lease that caches (R or H) on dev/ino,
 * or a lease with H on an entry of it, that is not being broken. */
bool nfsb_dirlease_leased(uint64_t dev, uint64_t ino);

#endif /* NFSBRIDGE_DIRLEASE_H */
