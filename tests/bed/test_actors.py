"""The bed's SMB actor holds leases and oplocks and acknowledges their breaks (host tier)."""
from __future__ import annotations

from concurrent.futures import ThreadPoolExecutor

import pytest

from harness.smb_lease_client import (LeaseBreak, OplockBreak, STATUS_SUCCESS, lease_state,
                                      lease_text)

BATCH = 0x09


def test_second_smb_open_breaks_a_write_lease_which_is_acknowledged(bed):
    with bed.smb() as holder, bed.smb() as other:
        held = holder.open("leased.txt", lease="RWH")
        assert lease_text(held.lease_state) == "RWH"
        with ThreadPoolExecutor(1) as pool:
            second = pool.submit(other.open, "leased.txt", lease="RWH")
            brk = holder.wait_break(timeout=30)
            assert isinstance(brk, LeaseBreak) and brk.lease_key == held.lease_key
            assert lease_text(brk.current) == "RWH" and not brk.new & lease_state("W")
            assert brk.ack_required
            assert holder.ack_lease_break(brk) == STATUS_SUCCESS
            opened = second.result(timeout=30)
        assert lease_text(opened.lease_state) == lease_text(brk.new)
        opened.close()
        held.close()


@pytest.mark.bed_share("kernel_oplocks")
def test_local_read_breaks_a_batch_oplock_on_a_kernel_oplocks_share(bed):
    with bed.smb() as smb:
        f = smb.open("cached.txt", lease=None, oplock=BATCH)
        assert f.oplock_level == BATCH
        assert f.lease_state == 0      # `kernel oplocks = yes` grants no leases, only oplocks
        f.write(b"written over smb")
        with ThreadPoolExecutor(1) as pool:
            local_read = pool.submit(bed.local.read, "cached.txt")
            brk = smb.wait_break(timeout=30)
            assert isinstance(brk, OplockBreak) and brk.file_id == f.handle.file_id
            assert smb.ack_oplock_break(brk, level=0) == STATUS_SUCCESS
            assert local_read.result(timeout=30) == b"written over smb"
        f.close()


def test_profiles_reach_smbd_and_ganesha_serves_the_same_directory(bed_factory):
    bed = bed_factory("nfs4acl_xattr")
    assert "vfs objects = nfs4acl_xattr" in bed.smbd.conf.read_text()
    with bed.smb() as smb:
        f = smb.open("seen.txt", lease="RH")
        f.write(b"over smb")
        f.close()
    assert bed.nfs.read("seen.txt") == b"over smb"
    assert bed.local.read("seen.txt") == b"over smb"


def test_local_actor_as_a_given_uid_holds_a_lease_that_nfs_breaks(bed, test_uid):
    user = bed.local.as_user(test_uid)
    user.write("owned.txt", b"0123456789")
    assert bed.local.path("owned.txt").stat().st_uid == test_uid
    holder = user.hold_lease("owned.txt", "read")
    with ThreadPoolExecutor(1) as pool:
        truncate = pool.submit(bed.nfs.truncate, "owned.txt", 4)
        holder.wait_broken(timeout=30)
        holder.release()
        truncate.result(timeout=60)
    assert user.read("owned.txt") == b"0123"
