"""The lease bridge (issue 5): SMB caching on an nfsbridge share is backed by a kernel lease, so a
local or NFS opener breaks the client's caching first and sees what the client wrote.

The SMB client here (smbprotocol) does not cache by itself; each test plays a caching client:
it holds back a write while it holds write caching and sends it when the break arrives, before
acknowledging, as Windows flushes its cache. A stale read is then a read that returns before
the break was answered, or without the flushed bytes.
"""
from __future__ import annotations

import os
import signal
import time
from concurrent.futures import ThreadPoolExecutor

import pytest

from harness.smb_lease_client import (LeaseBreak, OplockBreak, STATUS_SUCCESS, lease_state,
                                      lease_text)

pytestmark = [pytest.mark.bed_share("nfsbridge")]

BATCH = 0x09
EXCLUSIVE = 0x08
LEVEL_II = 0x01

FLUSHED = b"written by the SMB client while it cached, flushed on the break\n"


def _cached_write_then_break(bed, reader, name: str) -> None:
    """The common shape: an RWH lease with a write held back; `reader(name)` runs in a thread
    and must not return before the client flushed and acknowledged, and must see the bytes."""
    bed.local.write(name, b"old contents\n", mode=0o666)
    with bed.smb() as smb:
        f = smb.open(name, lease="RWH")
        assert lease_text(f.lease_state) == "RWH"
        with ThreadPoolExecutor(1) as pool:
            read = pool.submit(reader, name)
            brk = smb.wait_break(timeout=10)
            assert isinstance(brk, LeaseBreak) and brk.lease_key == f.lease_key
            assert lease_text(brk.current) == "RWH" and brk.ack_required
            assert not brk.new & lease_state("W")
            time.sleep(0.2)
            assert not read.done(), "the reader got in before the client flushed"
            f.write(FLUSHED)       # the cached write reaches the server first ...
            assert smb.ack_lease_break(brk) == STATUS_SUCCESS   # ... then the ack
            data = read.result(timeout=10)
        assert data.startswith(FLUSHED)
        f.close()


@pytest.mark.host_tier
@pytest.mark.kernel_tier
def test_local_reader_sees_what_an_rwh_client_cached(bed):
    _cached_write_then_break(bed, bed.local.read, "rwh-local.txt")


@pytest.mark.host_tier
@pytest.mark.kernel_tier
def test_nfs_reader_sees_what_an_rwh_client_cached(bed):
    """Ganesha in the host tier; kernel nfsd and the kernel NFS client in the kernel tier."""
    _cached_write_then_break(bed, bed.nfs.read, "rwh-nfs.txt")


@pytest.mark.host_tier
@pytest.mark.kernel_tier
@pytest.mark.parametrize("writer", ["local", "nfs"])
def test_local_or_nfs_writer_invalidates_the_clients_read_cache(bed, writer):
    bed.local.write("rh.txt", b"before\n", mode=0o666)
    write_file = {"local": bed.local.write,
                  "nfs": lambda name, data: bed.nfs.write(name, data, 0)}[writer]
    with bed.smb() as smb:
        f = smb.open("rh.txt", lease="RH", write=False)
        assert lease_text(f.lease_state) == "RH"
        assert f.read() == b"before\n"
        with ThreadPoolExecutor(1) as pool:
            write = pool.submit(write_file, "rh.txt", b"after\n")
            brk = smb.wait_break(timeout=10)
            assert isinstance(brk, LeaseBreak)
            # A writer: nothing of the read cache may stay.
            assert brk.new == 0, lease_text(brk.new)
            if brk.ack_required:
                assert smb.ack_lease_break(brk) == STATUS_SUCCESS
            write.result(timeout=10)
        assert f.read(0, 6) == b"after\n"
        f.close()


@pytest.mark.parametrize("level", [BATCH, EXCLUSIVE])
def test_local_reader_breaks_a_batch_or_exclusive_oplock(bed, level):
    name = f"oplock-{level}.txt"
    bed.local.write(name, b"old\n", mode=0o666)
    with bed.smb() as smb:
        f = smb.open(name, lease=None, oplock=level)
        assert f.oplock_level == level
        with ThreadPoolExecutor(1) as pool:
            read = pool.submit(bed.local.read, name)
            brk = smb.wait_break(timeout=10)
            assert isinstance(brk, OplockBreak) and brk.file_id == f.handle.file_id
            time.sleep(0.2)
            assert not read.done()
            f.write(FLUSHED)
            assert smb.ack_oplock_break(brk) == STATUS_SUCCESS
            assert read.result(timeout=10).startswith(FLUSHED)
        f.close()


def test_smb_opens_of_one_file_do_not_break_each_other_through_the_kernel(bed):
    """Two SMB clients: the second open is decided by smbd (a lease break to RH, acknowledged),
    not by a kernel lease break; smbd's log shows no kernel-forced break."""
    with bed.smb() as first, bed.smb() as second:
        a = first.open("shared.txt", lease="RWH")
        with ThreadPoolExecutor(1) as pool:
            opening = pool.submit(second.open, "shared.txt", lease="RWH")
            brk = first.wait_break(timeout=10)
            assert lease_text(brk.new) == "RH"
            assert first.ack_lease_break(brk) == STATUS_SUCCESS
            b = opening.result(timeout=10)
        assert lease_text(b.lease_state) == "RH"
        a.write(b"via a")
        assert b.read(0, 5) == b"via a"
        a.close()
        b.close()


def test_client_that_disconnects_mid_break_lets_the_local_reader_in(bed):
    bed.local.write("gone.txt", b"contents\n", mode=0o666)
    smb = bed.smb()
    f = smb.open("gone.txt", lease="RWH")
    assert lease_text(f.lease_state) == "RWH"
    with ThreadPoolExecutor(1) as pool:
        read = pool.submit(bed.local.read, "gone.txt")
        smb.wait_break(timeout=10)
        started = time.monotonic()
        smb.connection.disconnect(False)       # no ack, no close: the TCP connection drops
        assert read.result(timeout=20) == b"contents\n"
        assert time.monotonic() - started < 10


def _smbd_child_serving(bed) -> int:
    """The smbd process serving our one client connection (a child of the parent smbd)."""
    parent = bed.smbd.pid()
    children = []
    for entry in os.listdir("/proc"):
        if entry.isdigit():
            try:
                stat = open(f"/proc/{entry}/stat").read().split()
            except OSError:
                continue
            if int(stat[3]) == parent and stat[1].startswith("(smbd"):
                children.append(int(entry))
    assert children, "no smbd child process"
    return max(children)


def test_smbd_killed_mid_break_lets_the_local_reader_in(bed):
    bed.local.write("killed.txt", b"contents\n", mode=0o666)
    smb = bed.smb()
    f = smb.open("killed.txt", lease="RWH")
    assert lease_text(f.lease_state) == "RWH"
    with ThreadPoolExecutor(1) as pool:
        read = pool.submit(bed.local.read, "killed.txt")
        smb.wait_break(timeout=10)
        started = time.monotonic()
        os.kill(_smbd_child_serving(bed), signal.SIGKILL)
        assert read.result(timeout=20) == b"contents\n"
        assert time.monotonic() - started < 10


def test_client_that_never_acknowledges_loses_its_lease_after_smbds_timeout(bed):
    """smbd gives a silent client 35 s (OPLOCK_BREAK_TIMEOUT); then the bridge releases the
    kernel lease and the reader gets in, before the kernel's own 45 s lease-break-time."""
    bed.local.write("silent.txt", b"contents\n", mode=0o666)
    with bed.smb() as smb:
        f = smb.open("silent.txt", lease="RWH")
        with ThreadPoolExecutor(1) as pool:
            started = time.monotonic()
            read = pool.submit(bed.local.read, "silent.txt")
            smb.wait_break(timeout=10)
            assert read.result(timeout=60) == b"contents\n"
            waited = time.monotonic() - started
        assert 30 < waited < 44, waited
        f.close()


def test_a_thousand_leased_files_broken_at_once(bed):
    names = [f"many/f{i:04d}" for i in range(1000)]
    bed.local.mkdir("many")
    os.chmod(bed.local.path("many"), 0o777)
    for name in names:
        bed.local.write(name, b"old", mode=0o666)
    with bed.smb() as smb:
        opens = {name: smb.open(name.replace("/", "\\"), lease="RWH") for name in names}
        assert all(lease_text(o.lease_state) == "RWH" for o in opens.values())
        by_key = {o.lease_key: (name, o) for name, o in opens.items()}
        with ThreadPoolExecutor(1) as pool:
            # One local process opens every file; each open waits for its break.
            reads = pool.submit(bed.local.read_many, names)
            acked = 0
            deadline = time.monotonic() + 120
            while acked < len(names) and time.monotonic() < deadline:
                brk = smb.wait_break(timeout=30)
                name, o = by_key[brk.lease_key]
                o.write(b"new")
                assert smb.ack_lease_break(brk) == STATUS_SUCCESS
                acked += 1
            contents = reads.result(timeout=60)
        assert acked == len(names)
        assert contents == [b"new"] * len(names)
        for o in opens.values():
            o.close()


def test_second_smb_open_is_decided_by_smbd_without_a_poll_open_delay(bed):
    """SMB opens share the bridge's description, so a second client's open never meets our
    kernel lease (smbd would retry such an open once a second)."""
    with bed.smb() as first, bed.smb() as second:
        first.open("quick.txt", lease="RWH").close()
        a = first.open("quick.txt", lease="RH", write=False)
        started = time.monotonic()
        b = second.open("quick.txt", lease="RH", write=False)
        assert time.monotonic() - started < 0.5
        assert lease_text(b.lease_state) == "RH" and not first.pending_breaks()
        a.close()
        b.close()


def test_lease_bridge_killed_breaks_caching_to_none_and_the_share_keeps_serving(bed):
    bed.local.write("orphan.txt", b"old contents\n", mode=0o666)
    with bed.smb() as smb:
        f = smb.open("orphan.txt", lease="RWH")
        assert lease_text(f.lease_state) == "RWH"
        bed.smbd.stop_bridge(signal.SIGKILL)
        # The module finds the bridge gone and breaks what its clients cache, itself.
        brk = smb.wait_break(timeout=10)
        assert isinstance(brk, LeaseBreak) and brk.new == 0
        f.write(FLUSHED)
        assert smb.ack_lease_break(brk) == STATUS_SUCCESS
        # The kernel lease the bridge left on the shared description is released by smbd.
        with ThreadPoolExecutor(1) as pool:
            assert pool.submit(bed.local.read, "orphan.txt").result(timeout=10).startswith(FLUSHED)
        # Without the bridge: opens still work, and nothing is cached that nobody would break.
        g = smb.open("no-bridge.txt", lease="RWH")
        assert g.lease_state == 0
        g.write(b"served without the bridge")
        g.close()
        f.close()
        assert bed.local.read("no-bridge.txt") == b"served without the bridge"
        # Back again: the next opens (after the module's one-second retry pause) are backed.
        bed.smbd.start_bridge()
        time.sleep(1.2)
        h = smb.open("after-restart.txt", lease="RWH")
        assert lease_text(h.lease_state) == "RWH"
        with ThreadPoolExecutor(1) as pool:
            read = pool.submit(bed.local.read, "after-restart.txt")
            brk = smb.wait_break(timeout=10)
            assert smb.ack_lease_break(brk) == STATUS_SUCCESS
            assert read.result(timeout=10) == b""
        h.close()


def test_smb_byte_range_lock_is_seen_by_a_local_process(bed):
    """Every SMB open shares one description, so the module turns on 'smbd force process locks':
    a local F_GETLK sees the SMB client's lock as on a plain share."""
    import fcntl
    import struct
    bed.local.write("locked.txt", b"0123456789", mode=0o666)
    with bed.smb() as smb:
        f = smb.open("locked.txt", lease=None)
        f.handle.lock([_lock_element(0, 4, exclusive=True)])
        fd = os.open(bed.local.path("locked.txt"), os.O_RDWR)
        try:
            query = struct.pack("hhqqi", fcntl.F_WRLCK, os.SEEK_SET, 0, 4, 0)
            l_type, _, start, length, pid = struct.unpack("hhqqi", fcntl.fcntl(fd, fcntl.F_GETLK, query))
        finally:
            os.close(fd)
        assert l_type == fcntl.F_WRLCK and (start, length) == (0, 4), (l_type, start, length)
        assert pid == _smbd_child_serving(bed)
        f.close()


def _lock_element(offset: int, length: int, exclusive: bool):
    from smbprotocol.open import SMB2LockElement, LockFlags
    element = SMB2LockElement()
    element["offset"] = offset
    element["length"] = length
    element["flags"] = (LockFlags.SMB2_LOCKFLAG_EXCLUSIVE_LOCK if exclusive
                        else LockFlags.SMB2_LOCKFLAG_SHARED_LOCK) | LockFlags.SMB2_LOCKFLAG_FAIL_IMMEDIATELY
    return element


def test_immutable_and_append_only_files_keep_their_kernel_rules(bed):
    """The bridge opens descriptions as root; what root may not do to the file either is still
    refused to SMB writers (chattr +i / +a), while reads work."""
    import subprocess
    for name, flag in (("immutable.txt", "+i"), ("append-only.txt", "+a")):
        bed.local.write(name, b"kept\n", mode=0o666)
        if subprocess.run(["chattr", flag, str(bed.local.path(name))]).returncode != 0:
            pytest.skip("the file system does not support chattr +i/+a")
    try:
        with bed.smb() as smb:
            for name in ("immutable.txt", "append-only.txt"):
                with pytest.raises(Exception, match="ACCESS_DENIED|0xc0000022|3221225506"):
                    smb.open(name, lease="RWH", write=True, create=False)
                f = smb.open(name, lease="RH", write=False, create=False)
                assert f.read(0, 5) == b"kept\n"
                f.close()
    finally:
        for name in ("immutable.txt", "append-only.txt"):
            subprocess.run(["chattr", "-i", "-a", str(bed.local.path(name))])


def _released_by_smbd(bed, name: str) -> bool:
    """Whether an smbd gave the file's kernel lease up itself (the module's debug line)."""
    st = os.stat(bed.local.path(name))
    return f"kernel lease of inode {st.st_dev}:{st.st_ino} released here" in bed.smbd.log_text()


def _broken_directly(bed, name: str) -> bool:
    """Whether the kernel's break signal went to an smbd, which broke its client without waiting
    for the bridge's notice (the module's debug line)."""
    st = os.stat(bed.local.path(name))
    return (f"kernel lease break of inode {st.st_dev}:{st.st_ino} signalled to this process: "
            "breaking its client directly") in bed.smbd.log_text()


def test_the_only_client_a_break_waits_for_has_its_smbd_release_the_kernel_lease(bed):
    """The bridge lets the smbd of the one unit a break waits for give the kernel lease up as
    soon as its client answered (one wake-up of the bridge less), and the reader still sees
    the flushed bytes."""
    _cached_write_then_break(bed, bed.local.read, "sole-unit.txt")
    assert _released_by_smbd(bed, "sole-unit.txt")
    # The only client's smbd also got the kernel's break signal itself (direct breaks).
    assert _broken_directly(bed, "sole-unit.txt")


def test_a_break_that_waits_for_two_clients_leaves_the_kernel_lease_to_the_bridge(bed):
    bed.local.write("two-units.txt", b"before\n", mode=0o666)
    with bed.smb() as first, bed.smb() as second:
        a = first.open("two-units.txt", lease="RH", write=False)
        b = second.open("two-units.txt", lease="RH", write=False)
        assert lease_text(a.lease_state) == lease_text(b.lease_state) == "RH"
        with ThreadPoolExecutor(1) as pool:
            write = pool.submit(bed.local.write, "two-units.txt", b"after\n")
            for smb in (first, second):
                brk = smb.wait_break(timeout=10)
                assert isinstance(brk, LeaseBreak) and brk.new == 0
                if brk.ack_required:
                    assert smb.ack_lease_break(brk) == STATUS_SUCCESS
            write.result(timeout=10)
        a.close()
        b.close()
    assert not _released_by_smbd(bed, "two-units.txt")
    assert not _broken_directly(bed, "two-units.txt")
