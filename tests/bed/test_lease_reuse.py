"""Parked descriptions (issue 5, the open path's cost): when the last SMB open of a file in an smbd
closes, the module keeps its bridge description for a moment (`PARK_LINGER`, 2 s), so that the
next open of the file with the same lease key takes it without a round trip to the bridge. These
tests check that this saves nothing it must not: a reopened file is still broken by local and
NFS openers, a closed file never keeps a local opener waiting, a parked open is given up (the
bridge's table shows it go), and a reopen never gets caching the kernel lease no longer backs.
"""
from __future__ import annotations

import fcntl
import json
import os
import subprocess
import time
import uuid
from concurrent.futures import ThreadPoolExecutor

import pytest

from harness.samba import DEFAULT_CLI
from harness.smb_lease_client import LeaseBreak, STATUS_SUCCESS, lease_text
from harness.waiting import eventually

pytestmark = [pytest.mark.bed_share("nfsbridge")]

PARK_LINGER = 2.0
FLUSHED = b"cached by the reopened handle, flushed on the break\n"


def _table(bed) -> list[dict]:
    """The lease bridge's table (`nfsbridge leases --json`), one row per file."""
    result = subprocess.run([str(DEFAULT_CLI), "leases", "--json", "--socket", str(bed.smbd.bridge_socket)],
                            capture_output=True, text=True, timeout=30)
    assert result.returncode == 0, result.stderr
    return json.loads(result.stdout)["inodes"]


def _table_paths(bed) -> list[str]:
    return [os.path.basename(row["path"]) for row in _table(bed)]


def _holder_ids(bed, name: str) -> list[int]:
    """The bridge's open ids of the holders of `name`."""
    return [h["file_id"] for row in _table(bed) if os.path.basename(row["path"]) == name for h in row["holders"]]


def _open_close(smb, name: str, key: bytes, lease: str = "RWH") -> None:
    f = smb.open(name, lease=lease, lease_key=key, create=False)
    assert lease_text(f.lease_state) == lease
    f.close()


@pytest.mark.host_tier
@pytest.mark.kernel_tier
@pytest.mark.parametrize("reader", ["local", "nfs"])
def test_a_reopened_file_is_broken_by_a_local_or_nfs_reader_before_it_reads(bed, reader):
    """The second open takes the first one's parked description; a reader must still break
    it, and see the write the client held back."""
    name = f"reopen-{reader}.txt"
    bed.local.write(name, b"old contents\n", mode=0o666)
    key = uuid.uuid4().bytes
    with bed.smb() as smb:
        first = smb.open(name, lease="RWH", lease_key=key, create=False)
        counted = _holder_ids(bed, name)
        assert len(counted) == 1
        first.close()
        f = smb.open(name, lease="RWH", lease_key=key, create=False)
        assert lease_text(f.lease_state) == "RWH"
        # It took over the first open's place in the bridge's table (no round trip).
        assert _holder_ids(bed, name) == counted
        read = getattr(bed, reader).read
        with ThreadPoolExecutor(1) as pool:
            pending = pool.submit(read, name)
            brk = smb.wait_break(timeout=10)
            assert isinstance(brk, LeaseBreak) and brk.lease_key == key
            time.sleep(0.2)
            assert not pending.done(), "the reader got in before the client flushed"
            f.write(FLUSHED)
            assert smb.ack_lease_break(brk) == STATUS_SUCCESS
            assert pending.result(timeout=10).startswith(FLUSHED)
        f.close()


@pytest.mark.host_tier
@pytest.mark.kernel_tier
def test_a_closed_file_does_not_keep_a_local_writer_waiting(bed):
    """The parked open caches nothing for any client: the break a local writer causes is
    answered at once, and the writer gets in well within a second."""
    name = "closed.txt"
    bed.local.write(name, b"old contents\n", mode=0o666)
    with bed.smb() as smb:
        f = smb.open(name, lease="RWH", create=False)
        f.write(b"written over SMB\n")
        f.close()
        started = time.monotonic()
        with open(bed.local.path(name), "r+b") as local:
            assert local.read() == b"written over SMB\n"
            local.write(b"and locally\n")
        assert time.monotonic() - started < 0.5
        assert not smb.pending_breaks()
        # The break gave the parked open up: the reopen is a fresh, fully backed one.
        g = smb.open(name, lease="RWH", create=False, write=False)
        assert lease_text(g.lease_state) == "RWH"
        assert g.read(0, 64) == b"written over SMB\nand locally\n"
        g.close()


def test_a_parked_open_is_given_up_after_it_lingered(bed):
    name = "linger.txt"
    bed.local.write(name, b"x", mode=0o666)
    with bed.smb() as smb:
        _open_close(smb, name, uuid.uuid4().bytes)
        assert name in _table_paths(bed)   # parked: the bridge still counts the open
        assert eventually(PARK_LINGER + 3, lambda: name not in _table_paths(bed)), \
            "the parked open is still in the bridge's table"


def test_a_deleted_file_is_not_parked(bed):
    with bed.smb() as smb:
        f = smb.open("deleted.txt", lease="RWH", delete=True)
        f.write(b"gone soon")
        smb.mark_deleted(f)
        f.close()
        assert not bed.local.path("deleted.txt").exists()
        assert "deleted.txt" not in _table_paths(bed)


def test_a_reopen_never_gets_caching_the_kernel_lease_no_longer_backs(bed):
    """A local reader keeps the file open after the parked open was broken: the reopen with
    the same key must not get write caching (no kernel write lease is possible now)."""
    name = "reader-stays.txt"
    bed.local.write(name, b"contents\n", mode=0o666)
    key = uuid.uuid4().bytes
    with bed.smb() as smb:
        _open_close(smb, name, key)
        with open(bed.local.path(name), "rb") as reader:
            assert reader.read() == b"contents\n"
            f = smb.open(name, lease="RWH", lease_key=key, create=False, write=False)
            assert "W" not in lease_text(f.lease_state)
            f.close()


def test_a_reopen_with_another_lease_key_is_backed_as_usual(bed):
    name = "other-key.txt"
    bed.local.write(name, b"contents\n", mode=0o666)
    with bed.smb() as smb:
        _open_close(smb, name, uuid.uuid4().bytes)
        parked = _holder_ids(bed, name)
        f = smb.open(name, lease="RWH", lease_key=uuid.uuid4().bytes, create=False)
        assert lease_text(f.lease_state) == "RWH"
        # A new open in the bridge's table; the parked one was given up.
        assert len(_holder_ids(bed, name)) == 1 and _holder_ids(bed, name) != parked
        with ThreadPoolExecutor(1) as pool:
            pending = pool.submit(bed.local.read, name)
            brk = smb.wait_break(timeout=10)
            assert brk.lease_key == f.lease_key
            assert smb.ack_lease_break(brk) == STATUS_SUCCESS
            assert pending.result(timeout=10) == b"contents\n"
        f.close()


@pytest.mark.host_tier
@pytest.mark.kernel_tier
@pytest.mark.parametrize("lease", ["RWH", None])
def test_a_local_process_takes_a_write_lease_right_after_the_smb_close(bed, lease):
    """What smb2.kernel-oplocks 8 does: a parked open must not keep the file open for others
    (a process's F_SETLEASE F_WRLCK, nfsd's delegations need that nobody else has it open)."""
    name = f"lease-after-close-{lease}.txt"
    bed.local.write(name, b"contents\n", mode=0o666)
    with bed.smb() as smb:
        f = smb.open(name, lease=lease, create=False)
        f.close()
        fd = os.open(bed.local.path(name), os.O_RDWR)
        try:
            # The kernel wakes this open when the last close of the bridge's description removes
            # its lease, and counts that description's write access down a moment later
            # (__fput: locks_remove_file before put_file_access): EAGAIN is possible for that
            # moment (seen under the kernel tier's emulation), never for the 2 s a parked open
            # would keep the file.
            deadline = time.monotonic() + 0.5
            while True:
                try:
                    fcntl.fcntl(fd, fcntl.F_SETLEASE, fcntl.F_WRLCK)
                    break
                except BlockingIOError:
                    if time.monotonic() > deadline:
                        raise
                    time.sleep(0.01)
            fcntl.fcntl(fd, fcntl.F_SETLEASE, fcntl.F_UNLCK)
        finally:
            os.close(fd)
        assert not smb.pending_breaks()
