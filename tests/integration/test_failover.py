"""Failover controls (issue 9; docs/failover.md): `nfsbridge unlock-ip`, `unlock-fs` and `grace`
against a real smbd that listens on two addresses (127.0.0.1 and 127.0.0.2 on lo of the network
namespace the harness creates) and serves two shares on two ext4 file systems the test
loop-mounts, with the smbd's own lease bridge. The clients are real SMB3 connections
(smbprotocol) that hold leases, byte-range locks and durable handles; the "local" side is this
process opening the files with O_NONBLOCK, which fails with EWOULDBLOCK exactly when a kernel
lease has to be broken first.
"""
from __future__ import annotations

import errno
import fcntl
import json
import os
import shutil
import subprocess
import time
import uuid
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import pytest
from smbprotocol.exceptions import SMBResponseException
from smbprotocol.header import NtStatus
from smbprotocol.open import LockFlags, SMB2LockElement

from harness.samba import DEFAULT_CLI, Share
from harness.smb_lease_client import STATUS_SUCCESS, LeaseBreak, SmbLeaseClient, lease_text
from harness.waiting import eventually

NFSBRIDGE = {"vfs objects": "nfsbridge"}
IP1, IP2 = "127.0.0.1", "127.0.0.2"
BATCH = 0x09  # SMB2_OPLOCK_LEVEL_BATCH


@pytest.fixture(scope="module")
def filesystems(data_dir):
    """Two small ext4 file systems, loop-mounted under the test's directory (before smbd
    starts: smbd runs in a private mount namespace copied at its start)."""
    mounts = []
    for name in ("fs1", "fs2"):
        image, mount = data_dir / f"{name}.img", data_dir / name
        mount.mkdir()
        subprocess.run(["truncate", "-s", "32M", str(image)], check=True)
        subprocess.run(["mkfs.ext4", "-q", "-F", str(image)], check=True, capture_output=True)
        subprocess.run(["mount", "-o", "loop", str(image), str(mount)], check=True)
        mount.chmod(0o755)
        mounts.append(mount)
    yield mounts
    for mount in mounts:
        subprocess.run(["umount", "-l", str(mount)], check=False)


@pytest.fixture(scope="module")
def smbd(filesystems, smbd_factory):
    fs1, fs2 = filesystems
    return smbd_factory(
        [Share("one", fs1 / "share", dict(NFSBRIDGE)), Share("two", fs2 / "share", dict(NFSBRIDGE))],
        addresses=(f"{IP2}/8",),
        global_options={"interfaces": f"{IP1} {IP2}"},
    )


def share_dir(smbd, name: str) -> Path:
    return next(share.path for share in smbd.shares if share.name == name)


def local_file(path: Path, data: bytes = b"contents\n") -> None:
    path.write_bytes(data)
    os.chmod(path, 0o666)


def client(smbd, user, share: str, server: str, **kw) -> SmbLeaseClient:
    return SmbLeaseClient(share, user.name, user.password, netns=smbd.netns, server=server, **kw)


def cli(smbd, command: str, *args: str, timeout: float = 60) -> subprocess.CompletedProcess:
    argv = [str(DEFAULT_CLI), command, *args, "--socket", str(smbd.bridge_socket)]
    return subprocess.run(argv, capture_output=True, text=True, timeout=timeout)


def holders(smbd) -> list[dict]:
    result = cli(smbd, "leases", "--json")
    assert result.returncode == 0, result.stderr
    listing = json.loads(result.stdout)
    return [dict(holder, path=row["path"]) for row in listing["inodes"] for holder in row["holders"]]


def local_open_blocks(path: Path, flags: int = os.O_WRONLY) -> bool:
    """Opens `path` without waiting: True when a kernel lease stood in the way (EWOULDBLOCK;
    the kernel has then started breaking it), False when the open got in at once."""
    try:
        fd = os.open(path, flags | os.O_NONBLOCK)
    except BlockingIOError:
        return True
    os.close(fd)
    return False


def posix_locks_on(path: Path) -> list[str]:
    """/proc/locks lines of POSIX (byte-range) locks on `path`'s inode."""
    ino = os.stat(path).st_ino
    return [line for line in Path("/proc/locks").read_text().splitlines()
            if " POSIX " in line and line.split()[5].endswith(f":{ino}")]


def assert_still_leased(smb, leased, path) -> None:
    """The client still caches `path` through `leased`: a local writer has to wait for its
    lease break, which the client acknowledges; then the open is closed."""
    assert local_open_blocks(path)
    brk = smb.wait_break(timeout=10)
    assert isinstance(brk, LeaseBreak) and brk.lease_key == leased.lease_key
    if brk.ack_required:
        assert smb.ack_lease_break(brk) == STATUS_SUCCESS
    leased.close()


def test_unlock_ip_releases_only_the_clients_of_that_address(smbd, test_user):
    one = share_dir(smbd, "one")
    local_file(one / "via1.txt")
    local_file(one / "via1-oplock.txt")
    local_file(one / "via2.txt")
    c1 = client(smbd, test_user, "one", IP1)
    c2 = client(smbd, test_user, "one", IP2)
    try:
        f1 = c1.open("via1.txt", lease="RWH")
        o1 = c1.open("via1-oplock.txt", lease=None, oplock=BATCH)
        f2 = c2.open("via2.txt", lease="RWH")
        assert lease_text(f1.lease_state) == "RWH" and lease_text(f2.lease_state) == "RWH"
        assert o1.oplock_level == BATCH
        lock = SMB2LockElement()
        lock["offset"], lock["length"] = 0, 10
        lock["flags"] = LockFlags.SMB2_LOCKFLAG_EXCLUSIVE_LOCK | LockFlags.SMB2_LOCKFLAG_FAIL_IMMEDIATELY
        f1.handle.lock([lock])
        assert posix_locks_on(one / "via1.txt"), "smbd's byte-range lock is not a POSIX lock"
        before = holders(smbd)
        assert {holder["server_address"] for holder in before} == {IP1, IP2}, before
        assert any(h["path"].endswith("/via1-oplock.txt") and h["lease_key"] is None
                   and h["server_address"] == IP1 for h in before), before

        started = time.monotonic()
        result = cli(smbd, "unlock-ip", IP1, "--timeout", "20")
        took = time.monotonic() - started
        assert result.returncode == 0, result.stdout + result.stderr
        assert "released" in result.stdout, result.stdout
        assert took < 10, f"unlock-ip took {took:.1f}s"

        # IP1's client let go of everything: lease, kernel lease and byte-range lock.
        assert not local_open_blocks(one / "via1.txt"), "IP1's kernel lease is still held"
        assert not local_open_blocks(one / "via1-oplock.txt"), "IP1's oplock is still backed"
        assert posix_locks_on(one / "via1.txt") == []
        fd = os.open(one / "via1.txt", os.O_WRONLY)
        try:
            fcntl.lockf(fd, fcntl.LOCK_EX | fcntl.LOCK_NB, 10, 0)
        finally:
            os.close(fd)
        assert [h for h in holders(smbd) if h["server_address"] == IP1] == []

        # IP2's client still caches: a local writer has to break its lease first.
        assert_still_leased(c2, f2, one / "via2.txt")
    finally:
        c1.close()
        c2.close()


def test_unlock_fs_releases_only_that_file_system(smbd, test_user, filesystems):
    fs1, _ = filesystems
    one, two = share_dir(smbd, "one"), share_dir(smbd, "two")
    local_file(one / "on-fs1.txt")
    local_file(two / "on-fs2.txt")
    # The same server address for both: only the file system tells them apart.
    c1 = client(smbd, test_user, "one", IP2)
    c2 = client(smbd, test_user, "two", IP2)
    try:
        f1 = c1.open("on-fs1.txt", lease="RWH")
        f2 = c2.open("on-fs2.txt", lease="RWH")
        assert lease_text(f1.lease_state) == "RWH" and lease_text(f2.lease_state) == "RWH"

        result = cli(smbd, "unlock-fs", str(fs1), "--timeout", "20")
        assert result.returncode == 0, result.stdout + result.stderr
        assert not local_open_blocks(one / "on-fs1.txt"), "fs1's kernel lease is still held"
        left = holders(smbd)
        assert [h for h in left if h["path"].startswith(str(fs1) + "/")] == []

        assert_still_leased(c2, f2, two / "on-fs2.txt")
    finally:
        c1.close()
        c2.close()


def test_unlock_fs_completes_with_a_description_kept_after_the_last_close(smbd, test_user, filesystems):
    """An smbd keeps the description of a file its client just closed, with its lease, for a
    quick reopen (docs/lease-bridge.md, parked descriptions): unlock-fs still completes and
    leaves nothing held on that file system (the smbd serving the share ends its connection;
    one that does not, an smbd whose client left the share, gives the kept description up)."""
    fs1, _ = filesystems
    one = share_dir(smbd, "one")
    local_file(one / "closed.txt")
    c1 = client(smbd, test_user, "one", IP2)
    try:
        f = c1.open("closed.txt", lease="RWH")
        assert lease_text(f.lease_state) == "RWH"
        f.close()
        assert [h for h in holders(smbd) if h["path"].endswith("/closed.txt")], "not kept"
        result = cli(smbd, "unlock-fs", str(fs1), "--timeout", "20")
        assert result.returncode == 0, result.stdout + result.stderr
        assert [h for h in holders(smbd) if h["path"].startswith(str(fs1) + "/")] == []
    finally:
        c1.close()


def test_grace_serves_the_durable_reconnect_and_holds_new_conflicting_opens(smbd, test_user, filesystems):
    _, fs2 = filesystems
    two = share_dir(smbd, "two")
    local_file(two / "durable.txt", b"reclaimed by its owner\n")
    local_file(two / "other.txt")
    guid = uuid.uuid4()
    owner = client(smbd, test_user, "two", IP1, client_guid=guid)
    reclaimed = newcomer = bystander = quitter = None
    try:
        kept = owner.open("durable.txt", lease="RWH", durable=True)
        other = owner.open("other.txt", lease="RWH", durable=True)
        assert kept.durable and lease_text(kept.lease_state) == "RWH"

        # The old node lets go: the owner's smbd ends, its durable handles stay disconnected.
        result = cli(smbd, "unlock-ip", IP1, "--timeout", "20")
        assert result.returncode == 0, result.stdout + result.stderr
        # The new node (the same smbd here) serves IP1 again, in grace for 6 s.
        grace = 6.0
        result = cli(smbd, "grace", IP1, str(fs2), "--seconds", str(int(grace)))
        assert result.returncode == 0, result.stdout + result.stderr
        grace_started = time.monotonic()

        newcomer = client(smbd, test_user, "two", IP1)
        with ThreadPoolExecutor(1) as pool:
            waiting = pool.submit(newcomer.open, "durable.txt", lease="RWH")
            time.sleep(1.0)
            assert not waiting.done(), "a new open got in during the grace period"

            # Another address is not in grace: its open of a file with a disconnected durable
            # handle is served at once.
            bystander = client(smbd, test_user, "two", IP2)
            started = time.monotonic()
            bystander.open("other.txt", lease="RH", write=False).close()
            assert time.monotonic() - started < 2

            # A waiting open can be cancelled (SMB2 CANCEL), and its connection goes on.
            quitter = client(smbd, test_user, "two", IP1)
            pending = quitter.open("durable.txt", lease="RWH", pending=True)
            assert eventually(5, pending.interim_received), "no interim STATUS_PENDING"
            pending.cancel()
            with pytest.raises(SMBResponseException) as cancelled:
                pending.result()
            assert cancelled.value.status == NtStatus.STATUS_CANCELLED
            local_file(two / "unrelated.txt")
            quitter.open("unrelated.txt", lease=None).close()

            # The owner reclaims through the grace address at once.
            reclaimed = client(smbd, test_user, "two", IP1, client_guid=guid)
            started = time.monotonic()
            back = reclaimed.open("durable.txt", lease="RWH", reconnect=kept)
            assert time.monotonic() - started < 2
            assert lease_text(back.lease_state) == "RWH"
            assert back.read() == b"reclaimed by its owner\n"
            assert not waiting.done()

            # When the grace period ends the new open goes on, as against any lease holder:
            # the reclaimed lease is broken first.
            brk = reclaimed.wait_break(timeout=grace + 10)
            assert time.monotonic() - grace_started >= grace - 0.5
            assert isinstance(brk, LeaseBreak) and brk.lease_key == kept.lease_key
            if brk.ack_required:
                assert reclaimed.ack_lease_break(brk) == STATUS_SUCCESS
            opened = waiting.result(timeout=20)
            assert time.monotonic() - grace_started >= grace - 0.5
            opened.close()
        back.close()
        del other
    finally:
        for c in (owner, reclaimed, newcomer, bystander, quitter):
            if c is not None:
                c.close()


def test_failover_commands_refuse_non_root(smbd, test_user, work_root):
    # A copy the test user can run (the build tree may not be traversable for it).
    binary = work_root / "nfsbridge-cli"
    shutil.copy2(DEFAULT_CLI, binary)
    binary.chmod(0o755)
    for args in (["unlock-ip", IP1], ["unlock-fs", "/"], ["grace", IP1, "/srv"]):
        result = subprocess.run(["runuser", "-u", test_user.name, "--", str(binary), *args,
                                 "--socket", str(smbd.bridge_socket)],
                                capture_output=True, text=True, timeout=30)
        assert result.returncode == 2, (args, result.stdout, result.stderr)
        assert "only root" in result.stderr, result.stderr


def test_ending_grace_early_lets_the_waiting_open_in(smbd, test_user, filesystems):
    fs1, _ = filesystems
    one = share_dir(smbd, "one")
    local_file(one / "early.txt")
    owner = client(smbd, test_user, "one", IP2)
    newcomer = None
    try:
        kept = owner.open("early.txt", lease="RWH", durable=True)
        assert kept.durable
        assert cli(smbd, "unlock-ip", IP2, "--timeout", "20").returncode == 0
        assert cli(smbd, "grace", IP2, str(fs1), "--seconds", "60").returncode == 0
        newcomer = client(smbd, test_user, "one", IP2)
        waiting = newcomer.open("early.txt", lease="RWH", pending=True)
        assert eventually(5, waiting.interim_received), "the open did not wait"
        started = time.monotonic()
        result = cli(smbd, "grace", IP2, str(fs1), "--seconds", "0")
        assert result.returncode == 0, result.stderr
        opened = waiting.result()
        assert time.monotonic() - started < 5, "the open waited for the old end of the period"
        assert lease_text(opened.lease_state) == "RWH"   # the durable handle was not reclaimed
        opened.close()
    finally:
        for c in (owner, newcomer):
            if c is not None:
                c.close()
