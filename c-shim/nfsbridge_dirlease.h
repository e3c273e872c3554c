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
#include <stdint.h>

/* Rust's half, registered once per process with nfsb_dirlease_register(). Called from smbd's
 * main loop only; `watch`, `unwatch`, `socket` and `readable` run as root. */
struct nfsb_dirlease_ops {
	/* The group's descriptor to poll (set up on first use, logging which mode is active;
	 * the kernel's support for delegations is probed on `probe_dir`, a directory of the
	 * share), or -1 when no watch is possible in this process. */
	int (*socket)(const char *probe_dir);
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

#endif /* NFSBRIDGE_DIRLEASE_H */
