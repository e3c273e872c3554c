"""First uses of the test bed: the same export driven over SMB, NFS and locally.

These prove the bed, not nfsbridge: they pass on a plain share because they exercise only
what Samba, NFS servers and the kernel already do.
"""
from __future__ import annotations

import os
import subprocess
import time
from concurrent.futures import ThreadPoolExecutor

import pytest


@pytest.mark.host_tier
@pytest.mark.kernel_tier
@pytest.mark.parametrize("profile", ["plain", "nfsbridge"])
def test_smb_write_reads_back_identically_over_nfs_and_locally(bed_factory, profile):
    bed = bed_factory(profile)
    payload = os.urandom(1024 * 1024 + 17)
    with bed.smb() as smb:
        f = smb.open("from-smb.bin", lease="RWH")
        assert f.write(payload) == len(payload)
        f.close()
    assert bed.nfs.read("from-smb.bin") == payload
    assert bed.local.read("from-smb.bin") == payload


def _timed(fn, *args):
    """Runs fn(*args); returns the monotonic time at which it returned."""
    fn(*args)
    return time.monotonic()


@pytest.mark.host_tier
@pytest.mark.kernel_tier
def test_nfs_write_breaks_a_local_kernel_lease_and_waits_for_its_release(bed):
    bed.local.write("leased.txt", b"local content\n")
    holder = bed.local.hold_lease("leased.txt", "read")
    with ThreadPoolExecutor(1) as pool:
        nfs_write = pool.submit(_timed, bed.nfs.write, "leased.txt", b"NFS", 0)
        holder.wait_broken(timeout=30)
        # The holder has not released yet, so the NFS write must still be waiting.
        assert not nfs_write.done()
        released_at = time.monotonic()
        holder.release()
        finished_at = nfs_write.result(timeout=60)
    assert finished_at >= released_at
    assert bed.local.read("leased.txt") == b"NFSal content\n"


@pytest.mark.kernel_tier
def test_nfs4_acl_set_with_nfs4_setfacl_shows_up_as_posix_acl(bed):
    bed.nfs.create("acl.txt", b"x")
    nfs_path = bed.nfs.path("acl.txt")
    subprocess.run(["nfs4_setfacl", "-a", "A::1234:rx", str(nfs_path)], check=True,
                   capture_output=True, text=True)
    nfs4 = subprocess.run(["nfs4_getfacl", str(nfs_path)], check=True, capture_output=True,
                          text=True).stdout
    assert "A::1234:rx" in nfs4, nfs4
    posix = subprocess.run(["getfacl", "-n", "-c", str(bed.local.path("acl.txt"))], check=True,
                           capture_output=True, text=True).stdout.split()
    assert "user:1234:r-x" in posix, posix
    assert any(line.startswith("mask::r") for line in posix), posix


@pytest.mark.kernel_tier
def test_nfs_create_breaks_a_local_directory_delegation(bed):
    bed.local.mkdir("dir")
    holder = bed.local.hold_lease("dir", "read", kind="deleg")
    with ThreadPoolExecutor(1) as pool:
        nfs_create = pool.submit(_timed, bed.nfs.create, "dir/created-over-nfs.txt", b"n")
        holder.wait_broken(timeout=30)
        released_at = time.monotonic()
        holder.release()
        finished_at = nfs_create.result(timeout=60)
    assert finished_at >= released_at
    assert bed.local.listdir("dir") == ["created-over-nfs.txt"]
