"""SMB changes to a delegated file recall the delegation without stalling smbd (issue 7 item 3).

An unlink, rename or attribute change of a file or directory that nfsd or a local process has
delegated waits in the kernel until the delegation is given back; done by smbd, that wait would
stall every request of the client. On an nfsbridge share the SMB create that precedes the change
(DELETE, write or attribute access, no data: as Windows opens to delete or rename) starts the
recall without blocking and waits (STATUS_PENDING) until the delegation is gone; other
requests on the same connection are answered meanwhile. Kernel tier only: F_SETDELEG needs
Linux 6.19 and delegations need kernel nfsd.

The local holder (`hold_lease(kind="deleg")`) decides when it gives the delegation back, so the
tests can hold it long enough to see a stall; the NFS test uses the kernel NFS client's real
read delegation from nfsd, which is recalled over the callback channel.
"""
from __future__ import annotations

import os
import time
from concurrent.futures import ThreadPoolExecutor

import pytest
from smbprotocol.exceptions import SMBResponseException
from smbprotocol.header import NtStatus

from harness.waiting import eventually

pytestmark = [pytest.mark.kernel_tier, pytest.mark.bed_share("nfsbridge")]

# How long the local holder keeps its delegation after the recall started.
HOLD = 1.5
# A request on the same connection is "not stalled" if answered well within HOLD.
PROMPT = 0.5


def _waiting_delete_open(smb, name: str, holder):
    """A create of `name` for DELETE (no data access, as Windows opens to delete or rename),
    sent while `holder` has a delegation on it: returns it once the recall started and the
    create went async (STATUS_PENDING)."""
    pending = smb.open(name, lease=None, write=False, create=False, delete=True, data=False,
                       pending=True)
    holder.wait_broken(timeout=10)
    assert eventually(5, pending.interim_received), "the create did not wait (STATUS_PENDING)"
    return pending


def _result(pending, timeout: float = 30):
    """The pending create's answer (its SMBResponseException raised), bounded in time."""
    pool = ThreadPoolExecutor(1)
    try:
        return pool.submit(pending.result).result(timeout=timeout)
    finally:
        pool.shutdown(wait=False)


def _files(bed, *names):
    for name in names:
        bed.local.write(name, b"contents of " + name.encode(), mode=0o666)


def _other_request_time(smb, name: str) -> float:
    """Opens, reads and closes `name` on `smb`'s connection; how long that took."""
    started = time.monotonic()
    f = smb.open(name, lease=None, write=False, create=False)
    assert f.read() == b"contents of " + name.encode()
    f.close()
    return time.monotonic() - started


def _lock_location(bed, name: str) -> str:
    """How /proc/locks names the file `name`: major:minor:inode (device numbers in hex)."""
    st = os.stat(bed.local.path(name))
    return f" {os.major(st.st_dev):02x}:{os.minor(st.st_dev):02x}:{st.st_ino} "


def _delegations(bed, name: str, where: str | None = None) -> list[str]:
    where = where or _lock_location(bed, name)
    with open("/proc/locks") as locks:
        return [line for line in locks if " DELEG " in line and where in line]


@pytest.mark.parametrize("change", ["delete", "rename"])
def test_smb_change_of_a_delegated_file_waits_for_the_recall_without_stalling_the_connection(bed, change):
    _files(bed, "deleg.txt", "other.txt")
    holder = bed.local.hold_lease("deleg.txt", "read", kind="deleg")
    with bed.smb() as smb:
        pending = _waiting_delete_open(smb, "deleg.txt", holder)
        # The client's other requests go on while the recall is outstanding.
        assert _other_request_time(smb, "other.txt") < PROMPT
        time.sleep(HOLD)
        assert _delegations(bed, "deleg.txt"), "the holder still has its delegation (being recalled)"
        assert _other_request_time(smb, "other.txt") < PROMPT
        released = time.monotonic()
        holder.release()
        f = _result(pending)
        waited = time.monotonic() - released
        assert waited < 1.0, f"the create was retried {waited:.2f} s after the recall ended"
        if change == "delete":
            smb.mark_deleted(f)
            f.close()
            assert not bed.local.path("deleg.txt").exists()
        else:
            smb.rename_open(f, "renamed.txt")
            f.close()
            assert bed.local.read("renamed.txt") == b"contents of deleg.txt"
    assert "its recall started" in bed.smbd.log_text()


@pytest.mark.parametrize("change", ["delete", "rename", "attributes"])
def test_smb_change_of_a_delegated_directory_waits_for_the_recall_without_stalling_the_connection(bed, change):
    """No open breaks a directory's read delegation: a thread of the module makes a change that
    alters only the directory's ctime and waits for the recall in the kernel, while the SMB
    create waits (STATUS_PENDING) and the connection's other requests go on."""
    _files(bed, "other.txt")
    bed.local.mkdir("ddir")
    bed.give_to_smb_user("ddir")   # may set its times
    holder = bed.local.hold_lease("ddir", "read", kind="deleg")
    with bed.smb() as smb:
        pending = smb.open("ddir", lease=None, directory=True, create=False, data=False,
                           write=(change == "attributes"), delete=(change != "attributes"),
                           pending=True)
        holder.wait_broken(timeout=10)
        assert eventually(5, pending.interim_received), "the create did not wait (STATUS_PENDING)"
        assert _other_request_time(smb, "other.txt") < PROMPT
        time.sleep(HOLD)
        assert _delegations(bed, "ddir"), "the holder still has its delegation (being recalled)"
        assert _other_request_time(smb, "other.txt") < PROMPT
        holder.release()
        d = _result(pending)
        if change == "delete":
            smb.mark_deleted(d)
            d.close()
            assert not bed.local.path("ddir").exists()
        elif change == "rename":
            smb.rename_open(d, "renamed-dir")
            d.close()
            assert bed.local.path("renamed-dir").is_dir()
        else:
            smb.set_write_time(d, 1_000_000_000)
            d.close()
            assert os.stat(bed.local.path("ddir")).st_mtime == 1_000_000_000
    assert "delegated (NFS or local), a directory; its recall started" in bed.smbd.log_text()


def test_attribute_change_waits_for_the_recall(bed):
    _files(bed, "attrs.txt")
    holder = bed.local.hold_lease("attrs.txt", "read", kind="deleg")
    with bed.smb() as smb:
        # FILE_WRITE_ATTRIBUTES without data access: what setting times or attributes opens.
        pending = smb.open("attrs.txt", lease=None, write=True, create=False, data=False,
                           pending=True)
        holder.wait_broken(timeout=10)
        assert eventually(5, pending.interim_received)
        holder.release()
        _result(pending).close()


@pytest.mark.bed_share("nfsbridge", **{"nfsbridge:recall timeout": "2"})
def test_a_delegation_never_given_back_fails_the_create_after_the_timeout(bed):
    _files(bed, "stuck.txt", "other.txt")
    holder = bed.local.hold_lease("stuck.txt", "read", kind="deleg")
    with bed.smb() as smb:
        started = time.monotonic()
        pending = _waiting_delete_open(smb, "stuck.txt", holder)
        assert _other_request_time(smb, "other.txt") < PROMPT
        with pytest.raises(SMBResponseException) as refused:
            _result(pending)
        elapsed = time.monotonic() - started
        assert refused.value.status == NtStatus.STATUS_SHARING_VIOLATION
        assert 1.5 < elapsed < 10, elapsed
        # The connection is fine and the file untouched.
        assert _other_request_time(smb, "other.txt") < PROMPT
    assert bed.local.read("stuck.txt") == b"contents of stuck.txt"
    assert "not given back within 2 s" in bed.smbd.log_text()
    holder.release()


def test_a_cancelled_wait_answers_cancelled(bed):
    _files(bed, "cancel.txt", "other.txt")
    holder = bed.local.hold_lease("cancel.txt", "read", kind="deleg")
    with bed.smb() as smb:
        pending = _waiting_delete_open(smb, "cancel.txt", holder)
        pending.cancel()
        with pytest.raises(SMBResponseException) as cancelled:
            _result(pending)
        assert cancelled.value.status == NtStatus.STATUS_CANCELLED
        assert _other_request_time(smb, "other.txt") < PROMPT
    holder.release()
    assert bed.local.path("cancel.txt").exists()


@pytest.mark.bed_share("nfsbridge", **{"nfsbridge:recall timeout": "0"})
def test_without_the_recall_smbd_stalls_in_the_kernel(bed):
    """The control: with the recall off, smbd's unlink waits in the kernel for the delegation,
    and so does every other request of the connection. This is what the tests above rule out."""
    _files(bed, "stall.txt", "other.txt")
    holder = bed.local.hold_lease("stall.txt", "read", kind="deleg")
    with bed.smb() as smb, ThreadPoolExecutor(1) as pool:
        f = smb.open("stall.txt", lease=None, write=False, create=False, delete=True, data=False)
        smb.mark_deleted(f)
        closing = pool.submit(f.close)
        holder.wait_broken(timeout=10)
        released = []
        pool_release = ThreadPoolExecutor(1)
        pool_release.submit(lambda: (time.sleep(HOLD), released.append(time.monotonic()),
                                     holder.release()))
        took = _other_request_time(smb, "other.txt")
        closing.result(timeout=30)
        pool_release.shutdown()
        assert took > HOLD - 0.3, f"the other request took only {took:.2f} s"
    assert not bed.local.path("stall.txt").exists()


def test_smb_delete_of_a_file_an_nfs_client_holds_a_delegation_on(bed):
    _files(bed, "nfs-deleg.txt", "other.txt")
    where = _lock_location(bed, "nfs-deleg.txt")
    with open(bed.nfs.path("nfs-deleg.txt"), "rb") as nfs_reader:
        assert nfs_reader.read() == b"contents of nfs-deleg.txt"
        # nfsd hands the Linux client a read delegation for this open.
        assert eventually(5, lambda: _delegations(bed, "nfs-deleg.txt")), "nfsd granted no delegation"
        with bed.smb() as smb:
            started = time.monotonic()
            smb.delete("nfs-deleg.txt", data=False)
            took = time.monotonic() - started
            assert _other_request_time(smb, "other.txt") < PROMPT
        # The client gave it back on the callback channel; no one-second poll in between.
        assert took < 1.0, took
        assert not _delegations(bed, "nfs-deleg.txt", where)
    assert not bed.local.path("nfs-deleg.txt").exists()
    assert "its recall started" in bed.smbd.log_text()


def test_smb_data_open_of_an_nfs_delegated_file_is_retried_as_soon_as_it_is_free(bed):
    """A data open goes through the lease bridge, whose open meets nfsd's delegation and
    starts its recall (EWOULDBLOCK): smbd defers the create with its poll-open, and the module
    has it retried when the delegation is gone, not a second later."""
    _files(bed, "nfs-read.txt")
    with open(bed.nfs.path("nfs-read.txt"), "rb") as nfs_reader:
        nfs_reader.read()
        assert eventually(5, lambda: _delegations(bed, "nfs-read.txt")), "nfsd granted no delegation"
        with bed.smb() as smb:
            started = time.monotonic()
            f = smb.open("nfs-read.txt", lease="RWH")
            took = time.monotonic() - started
            f.write(b"written over SMB")
            f.close()
        assert took < 0.9, f"the open took {took:.2f} s (smbd's one-second poll-open)"
    assert bed.local.read("nfs-read.txt").startswith(b"written over SMB")
