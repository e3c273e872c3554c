"""Directory leases and handle leases against namespace changes made outside smbd (issue 7).

Samba 4.22 breaks an SMB directory lease only for changes made through smbd, and a handle (H)
lease only for SMB opens that ask for DELETE access. On an nfsbridge share a local or NFS
create, delete or rename in the directory breaks the directory lease, and a local or NFS
delete or rename of a file breaks the H of its lease. Host tier (6.18, no F_SETDELEG): the
fanotify watch, after the change. Kernel tier (7.3): the smbd serving a directory lease, or a
lease with H, holds a delegation on the directory (the one holding the name, for H), so the
change waits until the break is sent. Changes made through smbd keep Samba's own breaks, and no
more. Kernel tier: the NFS
actor is the kernel NFSv4.2 client, the server kernel nfsd.
"""
from __future__ import annotations

import os
import re
import signal
import time
from concurrent.futures import ThreadPoolExecutor

import pytest

from harness.smb_lease_client import LeaseBreak, STATUS_SUCCESS, lease_state, lease_text

pytestmark = [pytest.mark.bed_share("nfsbridge")]

# A break follows the change within milliseconds (BENCHMARKS.md); this only bounds a failure.
BREAK_TIMEOUT = 10
# How long "no break" is watched for.
QUIET = 1.0


def _dir_with_lease(bed, smb, name: str, entries=("old.txt",)):
    """A directory (made locally, writable by everyone) holding `entries`, open over SMB with
    an RH directory lease."""
    bed.local.mkdir(name)
    os.chmod(bed.local.path(name), 0o777)
    for entry in entries:
        bed.local.write(f"{name}/{entry}", b"x", mode=0o666)
    d = smb.open(name, lease="RH", directory=True, write=False, create=False)
    assert lease_text(d.lease_state) == "RH"
    return d


def _expect_dir_break(smb, d) -> None:
    brk = smb.wait_break(timeout=BREAK_TIMEOUT)
    assert isinstance(brk, LeaseBreak) and brk.lease_key == d.lease_key
    assert lease_text(brk.current) == "RH" and brk.new == 0 and brk.ack_required
    assert smb.ack_lease_break(brk) == STATUS_SUCCESS
    assert smb.pending_breaks() == []


def _expect_no_break(smb) -> None:
    with pytest.raises(TimeoutError):
        smb.wait_break(timeout=QUIET)


LOCAL_CHANGES = {
    "create": lambda bed, d: bed.local.write(f"{d}/new.txt", b"new"),
    "mkdir": lambda bed, d: bed.local.mkdir(f"{d}/sub"),
    "delete": lambda bed, d: os.unlink(bed.local.path(f"{d}/old.txt")),
    "rename": lambda bed, d: os.rename(bed.local.path(f"{d}/old.txt"), bed.local.path(f"{d}/renamed.txt")),
    # From and to another directory, not d's parent: with handle lease delegations (kernel
    # tier) a change of d's parent also breaks the H of d's own lease first (RH -> R, then
    # none), the documented stronger break.
    "rename-out": lambda bed, d: os.rename(bed.local.path(f"{d}/old.txt"),
                                           bed.local.path("elsewhere/moved-out.txt")),
    "rename-in": lambda bed, d: os.rename(bed.local.path("elsewhere/outside.txt"),
                                          bed.local.path(f"{d}/moved-in.txt")),
}

NFS_CHANGES = {
    "create": lambda bed, d: bed.nfs.create(f"{d}/new.txt", b"new"),
    "mkdir": lambda bed, d: bed.nfs.mkdir(f"{d}/sub"),
    "delete": lambda bed, d: bed.nfs.unlink(f"{d}/old.txt"),
    "rename": lambda bed, d: bed.nfs.rename(f"{d}/old.txt", f"{d}/renamed.txt"),
}


@pytest.mark.host_tier
@pytest.mark.kernel_tier
@pytest.mark.parametrize("change", sorted(LOCAL_CHANGES))
def test_local_change_breaks_directory_lease(bed, change):
    bed.local.mkdir("elsewhere")
    bed.local.write("elsewhere/outside.txt", b"x")
    with bed.smb() as smb:
        d = _dir_with_lease(bed, smb, "d")
        LOCAL_CHANGES[change](bed, "d")
        _expect_dir_break(smb, d)
        d.close()


@pytest.mark.host_tier
@pytest.mark.kernel_tier
@pytest.mark.parametrize("change", sorted(NFS_CHANGES))
def test_nfs_change_breaks_directory_lease(bed, change):
    with bed.smb() as smb:
        d = _dir_with_lease(bed, smb, "d")
        NFS_CHANGES[change](bed, "d")
        _expect_dir_break(smb, d)
        d.close()


def test_change_in_another_directory_breaks_nothing(bed):
    with bed.smb() as smb:
        d = _dir_with_lease(bed, smb, "d")
        bed.local.mkdir("other")
        bed.local.write("other/new.txt", b"x")
        os.unlink(bed.local.path("other/new.txt"))
        _expect_no_break(smb)
        bed.local.write("d/new.txt", b"x")   # the watch is still there
        _expect_dir_break(smb, d)
        d.close()


def test_every_lease_on_the_directory_breaks(bed):
    with bed.smb() as a, bed.smb() as b:
        da = _dir_with_lease(bed, a, "d")
        db = b.open("d", lease="RH", directory=True, write=False, create=False)
        assert lease_text(db.lease_state) == "RH"
        bed.local.write("d/new.txt", b"x")
        _expect_dir_break(a, da)
        _expect_dir_break(b, db)
        da.close()
        db.close()


def test_closed_directory_lease_is_no_longer_watched(bed):
    with bed.smb() as smb:
        d = _dir_with_lease(bed, smb, "d")
        d.close()
        bed.local.write("d/new.txt", b"x")
        _expect_no_break(smb)
        d = smb.open("d", lease="RH", directory=True, write=False, create=False)
        assert lease_text(d.lease_state) == "RH"
        os.unlink(bed.local.path("d/new.txt"))
        _expect_dir_break(smb, d)
        d.close()


def _file_with_rh(bed, smb, name: str):
    bed.local.write(name, b"cached contents\n", mode=0o666)
    f = smb.open(name, lease="RH", write=False, create=False)
    assert lease_text(f.lease_state) == "RH"
    return f


def _expect_handle_break(smb, f, keeps_read: bool = True) -> None:
    brk = smb.wait_break(timeout=BREAK_TIMEOUT)
    assert isinstance(brk, LeaseBreak) and brk.lease_key == f.lease_key
    assert lease_text(brk.current) == "RH" and brk.ack_required
    assert lease_text(brk.new) == ("R" if keeps_read else "")
    assert smb.ack_lease_break(brk) == STATUS_SUCCESS


FILE_CHANGES = {
    "local-delete": lambda bed: os.unlink(bed.local.path("f.txt")),
    "local-rename": lambda bed: os.rename(bed.local.path("f.txt"), bed.local.path("g.txt")),
    "local-replace": lambda bed: (bed.local.write("h.txt", b"other"),
                                  os.rename(bed.local.path("h.txt"), bed.local.path("f.txt"))),
    "nfs-delete": lambda bed: bed.nfs.unlink("f.txt"),
    "nfs-rename": lambda bed: bed.nfs.rename("f.txt", "g.txt"),
}


@pytest.mark.host_tier
@pytest.mark.kernel_tier
@pytest.mark.parametrize("change", sorted(FILE_CHANGES))
def test_delete_or_rename_outside_smbd_breaks_handle_caching(bed, change):
    """The H goes, R stays: what smbd's own rename or delete of the file would leave."""
    with bed.smb() as smb:
        f = _file_with_rh(bed, smb, "f.txt")
        FILE_CHANGES[change](bed)
        # Kernel tier, NFS: the file is also opened on the kernel NFS path (client or nfsd; seen
        # as "kernel lease break ... held=write target=read" in the lease bridge's log), which
        # breaks the bridge's kernel lease; the shared description is O_RDWR, so no read lease
        # can back R and the client loses R too. Ganesha's and local renames and deletes open
        # nothing: only H goes.
        kernel_nfsd = bed.tier == "kernel" and change.startswith("nfs-")
        _expect_handle_break(smb, f, keeps_read=not kernel_nfsd)
        assert f.read() == b"cached contents\n"   # the open still reads its file
        f.close()


def test_other_entries_of_the_directory_keep_handle_caching(bed):
    with bed.smb() as smb:
        f = _file_with_rh(bed, smb, "f.txt")
        bed.local.write("g.txt", b"x")
        os.rename(bed.local.path("g.txt"), bed.local.path("h.txt"))
        os.unlink(bed.local.path("h.txt"))
        _expect_no_break(smb)
        f.close()


# -- changes through smbd: Samba's breaks, exactly ------------------------------------------------

@pytest.mark.host_tier
@pytest.mark.kernel_tier
@pytest.mark.parametrize("profile", ["plain", "nfsbridge"])
def test_smb_create_by_another_client_breaks_once(bed_factory, profile):
    bed = bed_factory(profile)
    with bed.smb() as a, bed.smb() as b:
        d = _dir_with_lease(bed, a, "d")
        b.open("d/new.txt", lease=None).close()
        _expect_dir_break(a, d)
        _expect_no_break(a)
        b.delete("d/new.txt")
        b.rename("d/old.txt", "d/renamed.txt")
        _expect_no_break(a)   # already broken to none: nothing more
        d.close()


@pytest.mark.host_tier
@pytest.mark.kernel_tier
@pytest.mark.parametrize("profile", ["plain", "nfsbridge"])
def test_smb_change_with_parent_lease_key_spares_that_lease(bed_factory, profile):
    """smbd spares the directory lease a create names as its parent lease key, whether the
    create comes from the lease's own connection (same smbd) or another one (another smbd);
    the watch must not break it behind smbd's back."""
    bed = bed_factory(profile)
    with bed.smb() as a, bed.smb() as b:
        d = _dir_with_lease(bed, a, "d")
        a.open("d/own.txt", lease="RWH", parent_lease_key=d.lease_key).close()
        b.open("d/other.txt", lease="RWH", parent_lease_key=d.lease_key).close()
        _expect_no_break(a)
        b.open("d/third.txt", lease="RWH").close()   # no parent key: Samba breaks it
        _expect_dir_break(a, d)
        d.close()


@pytest.mark.parametrize("profile", ["plain", "nfsbridge"])
def test_smb_rename_breaks_handle_caching_as_samba_does(bed_factory, profile):
    bed = bed_factory(profile)
    with bed.smb() as a, bed.smb() as b:
        f = _file_with_rh(bed, a, "f.txt")
        with ThreadPoolExecutor(1) as pool:
            renamed = pool.submit(b.rename, "f.txt", "g.txt")   # waits for a's H to go first
            _expect_handle_break(a, f)
            renamed.result(timeout=BREAK_TIMEOUT)
        _expect_no_break(a)
        f.close()


def _kernel_has_delegations(path) -> bool:
    """F_SETDELEG (F_LINUX_SPECIFIC_BASE + 16) giving up nothing: EINVAL where it does not exist."""
    import errno
    import fcntl
    import struct
    fd = os.open(path, os.O_RDONLY | os.O_DIRECTORY)
    try:
        fcntl.fcntl(fd, 1024 + 16, struct.pack("IHH", 0, fcntl.F_UNLCK, 0))
        return True
    except OSError as e:
        return e.errno != errno.EINVAL
    finally:
        os.close(fd)


@pytest.mark.host_tier
@pytest.mark.kernel_tier
def test_the_active_mode_is_logged(bed):
    with bed.smb() as smb:
        d = _dir_with_lease(bed, smb, "d")
        d.close()
    log = bed.smbd.log_text()
    delegations = _kernel_has_delegations(bed.local.path("."))
    if bed.tier == "kernel":
        assert delegations   # Debian's 7.3 kernel, ext4
    if delegations:
        assert "namespace watch: directory delegations and fanotify (the kernel has F_SETDELEG)" in log
    else:
        assert "namespace watch: fanotify (the kernel has no F_SETDELEG (Linux < 6.19))" in log


@pytest.mark.kernel_tier
@pytest.mark.bed_share("nfsbridge", **{"nfsbridge:directory delegations": "no"})
def test_directory_delegations_can_be_turned_off(bed):
    with bed.smb() as smb:
        d = _dir_with_lease(bed, smb, "d")
        assert _delegation_holders(bed.local.path("d")) == []
        bed.local.write("d/new.txt", b"x")   # the fanotify watch still breaks it, after
        _expect_dir_break(smb, d)
        d.close()
    assert "namespace watch: fanotify (the kernel has F_SETDELEG, but directory delegations are off" in bed.smbd.log_text()


# -- directory delegations (kernel tier: F_SETDELEG is Linux 6.19+) --------------------------------

def _delegation_holders(path) -> list[int]:
    """The pids holding a delegation on the inode at `path` (/proc/locks: "N: DELEG ACTIVE READ
    pid maj:min:ino ..."; waiters blocked on one are "N: -> DELEG ..." lines)."""
    st = os.stat(path)
    pids = []
    with open("/proc/locks") as locks:
        for line in locks:
            fields = line.split()
            if len(fields) < 6 or fields[1] != "DELEG":
                continue
            major, minor, ino = fields[5].split(":")
            if int(ino) == st.st_ino and os.makedev(int(major, 16), int(minor, 16)) == st.st_dev:
                pids.append(int(fields[4]))
    return pids


def _held_delegation(path, timeout: float = BREAK_TIMEOUT) -> int:
    """The one pid holding a delegation on `path` (waits for it to be taken, or taken again)."""
    deadline = time.monotonic() + timeout
    while True:
        holders = _delegation_holders(path)
        if holders:
            assert len(holders) == 1, holders
            return holders[0]
        assert time.monotonic() < deadline, f"no delegation on {path} within {timeout} s"
        time.sleep(0.01)


def _assert_given_back_for_smbd_only(bed, path, times: int) -> None:
    """The delegation on the directory at `path` was, when last given up, never broken by
    others (no lease broken first) and given back at least `times` times for smbd's changes."""
    log = bed.smbd.log_text()
    assert "directory delegation broken): breaking" not in log
    ino = os.stat(path).st_ino
    given_up = re.findall(rf"directory delegations: \d+:{ino} given up; broken (\d+) times by "
                          r"others \(leases broken first\), (\d+) times by smbd", log)
    assert given_up and given_up[-1][0] == "0" and int(given_up[-1][1]) >= times, given_up


def _change_waits_for_the_stopped_holder(path, change, not_yet) -> None:
    """Stops the smbd holding the delegation on the directory at `path`, starts `change`, and
    checks that it waits (and `not_yet()` holds) until that smbd runs again, then goes through."""
    smbd_pid = _held_delegation(path)
    os.kill(smbd_pid, signal.SIGSTOP)
    try:
        with ThreadPoolExecutor(1) as pool:
            changed = pool.submit(change)
            time.sleep(0.5)
            assert not changed.done()
            assert not_yet()
            os.kill(smbd_pid, signal.SIGCONT)
            changed.result(timeout=BREAK_TIMEOUT)
    finally:
        os.kill(smbd_pid, signal.SIGCONT)


@pytest.mark.kernel_tier
def test_a_local_change_waits_until_the_directory_lease_is_broken(bed):
    """The smbd serving a directory lease holds a delegation on the directory: a local create
    in it waits in the kernel until that smbd has sent the break. Shown by stopping that smbd:
    nothing is created until it runs again."""
    with bed.smb() as smb:
        d = _dir_with_lease(bed, smb, "d")
        _change_waits_for_the_stopped_holder(
            bed.local.path("d"), lambda: bed.local.write("d/new.txt", b"new"),
            not_yet=lambda: not os.path.exists(bed.local.path("d/new.txt")))
        _expect_dir_break(smb, d)
        _expect_no_break(smb)   # the fanotify watch's own break of it changes nothing
        d.close()
    assert "breaking directory lease 0x3 to 0x0 before the change" in bed.smbd.log_text()


@pytest.mark.kernel_tier
def test_nfs_change_is_held_until_the_directory_lease_is_broken(bed):
    """The same for kernel nfsd: it meets the delegation, the NFS client retries until smbd
    has sent the break and given it back."""
    with bed.smb() as smb:
        d = _dir_with_lease(bed, smb, "d")
        _held_delegation(bed.local.path("d"))
        bed.nfs.create("d/new.txt", b"new")
        _expect_dir_break(smb, d)
        d.close()
    assert "breaking directory lease 0x3 to 0x0 before the change" in bed.smbd.log_text()


@pytest.mark.kernel_tier
def test_smb_changes_make_the_holder_give_its_delegation_back_at_once(bed):
    """smbd's own creates in a delegated directory, from the lease's smbd and from another one,
    are announced: the holder gives the delegation back without breaking anything itself, so
    Samba's breaks (with its parent lease key rule) are the only ones."""
    with bed.smb() as a, bed.smb() as b:
        d = _dir_with_lease(bed, a, "d")
        path = bed.local.path("d")
        _held_delegation(path)
        a.open("d/own.txt", lease="RWH", parent_lease_key=d.lease_key).close()
        _held_delegation(path)   # taken again: the lease still caches
        b.open("d/other.txt", lease="RWH", parent_lease_key=d.lease_key).close()
        _expect_no_break(a)
        _held_delegation(path)
        b.delete("d/other.txt")   # Samba breaks it, once
        _expect_dir_break(a, d)
        _expect_no_break(a)
        d.close()
    _assert_given_back_for_smbd_only(bed, path, times=3)


# -- handle leases backed by a delegation on the directory holding the name (kernel tier) ---------

@pytest.mark.kernel_tier
def test_a_local_rename_waits_until_the_handle_lease_is_broken(bed):
    """The smbd serving a lease with H holds a delegation on the directory holding the file's
    name: a local rename of the file waits in the kernel until that smbd has sent the break of
    H. Shown by stopping that smbd: the name does not change until it runs again."""
    with bed.smb() as smb:
        f = _file_with_rh(bed, smb, "f.txt")
        _change_waits_for_the_stopped_holder(
            bed.local.path("."), lambda: os.rename(bed.local.path("f.txt"), bed.local.path("g.txt")),
            not_yet=lambda: os.path.exists(bed.local.path("f.txt")))
        _expect_handle_break(smb, f)
        _expect_no_break(smb)   # the fanotify watch's own break of it changes nothing
        assert f.read() == b"cached contents\n"
        f.close()
    assert "breaking lease 0x3 to 0x1 before the change" in bed.smbd.log_text()


@pytest.mark.kernel_tier
def test_nfs_delete_is_held_until_the_handle_lease_is_broken(bed):
    """The same for kernel nfsd: the NFS client retries its REMOVE until smbd has sent the
    break and given the delegation back."""
    with bed.smb() as smb:
        f = _file_with_rh(bed, smb, "f.txt")
        _held_delegation(bed.local.path("."))
        bed.nfs.unlink("f.txt")
        brk = smb.wait_break(timeout=BREAK_TIMEOUT)
        assert isinstance(brk, LeaseBreak) and lease_text(brk.current) == "RH"
        assert lease_text(brk.new) in ("R", "")   # "": the NFS path's own open got there first
        smb.ack_lease_break(brk)
        f.close()
    assert "before the change" in bed.smbd.log_text()


@pytest.mark.kernel_tier
def test_any_change_in_the_directory_breaks_handle_caching_before_it(bed):
    """The kernel does not say which entry of a delegated directory is changing, so any local
    create, delete or rename in the directory breaks the H of the leases on its entries: a
    stronger break than SMB needs (documented; nfsbridge:handle lease delegations = no keeps
    the exact fanotify rule, next test)."""
    with bed.smb() as smb:
        f = _file_with_rh(bed, smb, "f.txt")
        _held_delegation(bed.local.path("."))
        bed.local.write("other.txt", b"x")
        _expect_handle_break(smb, f)
        f.close()
    assert "its directory changing outside smbd (directory delegation broken): breaking lease " \
           "0x3 to 0x1 before the change" in bed.smbd.log_text()


@pytest.mark.kernel_tier
@pytest.mark.bed_share("nfsbridge", **{"nfsbridge:handle lease delegations": "no"})
def test_handle_lease_delegations_can_be_turned_off(bed):
    with bed.smb() as smb:
        f = _file_with_rh(bed, smb, "f.txt")
        assert _delegation_holders(bed.local.path(".")) == []
        bed.local.write("other.txt", b"x")   # another entry: H stays
        _expect_no_break(smb)
        os.rename(bed.local.path("f.txt"), bed.local.path("g.txt"))   # fanotify, after
        _expect_handle_break(smb, f)
        f.close()
    assert "and handle leases after it (nfsbridge:handle lease delegations = no)" in bed.smbd.log_text()


@pytest.mark.kernel_tier
def test_smb_attribute_change_of_a_delegated_directory_breaks_nothing(bed):
    """A directory's own attribute, time or ACL change breaks delegations on it as well; smbd's
    are announced like its namespace changes, so another smbd's client setting the directory's
    write time leaves the handle lease on an entry alone (as on a plain share)."""
    bed.local.mkdir("d")
    os.chmod(bed.local.path("d"), 0o777)
    with bed.smb() as a, bed.smb() as b:
        f = _file_with_rh(bed, a, "d/f.txt")
        path = bed.local.path("d")
        holder = _held_delegation(path)
        d = b.open("d", lease=None, directory=True, write=True, data=False, create=False)
        b.set_write_time(d, time.time() - 3600)
        d.close()
        _expect_no_break(a)
        assert _held_delegation(path) == holder   # taken again: the H still caches
        f.close()
    _assert_given_back_for_smbd_only(bed, path, times=1)


@pytest.mark.kernel_tier
def test_an_smbd_delegation_is_not_recalled_as_someone_elses(bed):
    """An SMB create that may change a delegated directory recalls the delegations of others
    first (test_delegation_recall.py); an smbd's own directory delegation is left out (smbd's
    change is announced to it instead), so opening a leased directory to set its times starts
    no recall."""
    bed.local.mkdir("d")
    bed.give_to_smb_user("d")   # may set its times
    with bed.smb() as a, bed.smb() as b:
        d = a.open("d", lease="RH", directory=True, write=False, create=False)
        assert lease_text(d.lease_state) == "RH"
        _held_delegation(bed.local.path("d"))
        dd = b.open("d", lease=None, directory=True, write=True, data=False, create=False)
        b.set_write_time(dd, 1_000_000_000)
        dd.close()
        assert os.stat(bed.local.path("d")).st_mtime == 1_000_000_000
        d.close()
    assert "its recall started" not in bed.smbd.log_text()
