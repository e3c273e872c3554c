"""ACL coherence across protocols through nfsbridge (issue 4): a change made over NFS or
locally is what the next SMB client sees, and an SMB change is what getfacl and, over a
kernel NFS mount, nfs4_getfacl show.
"""
from __future__ import annotations

import json
import re
import subprocess

import pytest

from harness.bed import SHARE_NAME
from harness.samba import REPO

NFSBRIDGE = REPO / "target" / "release" / "nfsbridge"

READ = 0x120089
FULL = 0x1F01FF
READ_DATA, WRITE_DATA = 0x1, 0x2
STRANGER = 12345  # a uid with no account: Unix SID S-1-22-1-12345
NEWCOMER = 23456


def smbcacls(bed, path: str, *args: str) -> subprocess.CompletedProcess:
    return bed.smbd.smbcacls(SHARE_NAME, path, bed.user, "--numeric", *args)


def masks(bed, path: str) -> dict[str, list[int]]:
    out = smbcacls(bed, path)
    assert out.returncode == 0, out.stdout + out.stderr
    found: dict[str, list[int]] = {}
    for sid, mask in re.findall(r"^ACL:(S-1-[\d-]+):0/0x[0-9a-f]+/(0x[0-9a-f]+)$", out.stdout, re.M):
        found.setdefault(sid, []).append(int(mask, 16))
    return found


def set_acl(bed, path: str) -> None:
    """Owner full control, uid 12345 read, Everyone read."""
    uid = bed.smb_uid
    spec = (f"OWNER:S-1-22-1-{uid},ACL:S-1-22-1-{uid}:ALLOWED/0x0/0x{FULL:08x},"
            f"ACL:S-1-22-1-{STRANGER}:ALLOWED/0x0/0x{READ:08x},ACL:S-1-1-0:ALLOWED/0x0/0x{READ:08x}")
    out = smbcacls(bed, path, "--set", spec)
    assert out.returncode == 0, out.stdout + out.stderr


def make_file(bed, name: str) -> None:
    bed.local.write(name, b"content\n")
    bed.give_to_smb_user(name)


@pytest.mark.host_tier
@pytest.mark.kernel_tier
@pytest.mark.bed_share("nfsbridge")
def test_nfs_chmod_is_what_smb_sees_and_keeps_named_entries(bed):
    make_file(bed, "chmod.txt")
    set_acl(bed, "chmod.txt")
    assert "user:12345:r--" in subprocess.run(["getfacl", "-n", str(bed.local.path("chmod.txt"))],
                                              capture_output=True, text=True, check=True).stdout
    bed.nfs.chmod("chmod.txt", 0o640)   # others lose read; the group class keeps r
    shown = masks(bed, "chmod.txt")
    assert all(m & READ_DATA == 0 for m in shown.get("S-1-1-0", [])), shown
    stranger = shown.get(f"S-1-22-1-{STRANGER}", [])
    assert any(m & READ_DATA for m in stranger), f"the named ACE did not survive the NFS chmod: {shown}"


@pytest.mark.kernel_tier
@pytest.mark.bed_share("nfsbridge")
def test_smb_acl_is_what_nfs4_getfacl_shows_over_the_kernel_mount(bed):
    make_file(bed, "shown.txt")
    set_acl(bed, "shown.txt")
    out = subprocess.run(["nfs4_getfacl", str(bed.nfs.path("shown.txt"))], capture_output=True, text=True)
    assert out.returncode == 0, out.stderr
    print(f"nfs4_getfacl over the kernel NFS mount:\n{out.stdout}")
    assert re.search(rf"^A::{STRANGER}:r", out.stdout, re.M), out.stdout
    assert re.search(r"^A::EVERYONE@:r", out.stdout, re.M), out.stdout
    # Our nfs4 text parser reads what the real nfs4_getfacl prints.
    parsed = subprocess.run([str(NFSBRIDGE), "acl", "convert", "--from", "nfs4", "--to", "nfs4-json"],
                            input=out.stdout, capture_output=True, text=True)
    assert parsed.returncode == 0, parsed.stderr
    aces = json.loads(parsed.stdout)["aces"]
    assert any(ace["who"] == {"uid": STRANGER} and ace["ace_type"] == "allow" for ace in aces), aces


@pytest.mark.kernel_tier
@pytest.mark.bed_share("nfsbridge")
def test_nfs4_setfacl_over_the_kernel_mount_is_what_smb_sees(bed):
    make_file(bed, "nfsacl.txt")
    set_acl(bed, "nfsacl.txt")
    out = subprocess.run(["nfs4_setfacl", "-a", f"A::{NEWCOMER}:rw", str(bed.nfs.path("nfsacl.txt"))],
                         capture_output=True, text=True)
    assert out.returncode == 0, out.stderr
    # nfsd folds the NFSv4 ACL into a POSIX ACL; what the kernel now enforces for the newcomer
    # (the entry, limited by the mask) is what SMB must show.
    facl = subprocess.run(["getfacl", "-n", "-e", str(bed.local.path("nfsacl.txt"))],
                          capture_output=True, text=True, check=True).stdout
    entry = re.search(rf"^user:{NEWCOMER}:([r-][w-][x-])(?:\s+#effective:([r-][w-][x-]))?", facl, re.M)
    assert entry, facl
    effective = entry.group(2) or entry.group(1)
    assert "r" in effective, facl
    newcomer = masks(bed, "nfsacl.txt").get(f"S-1-22-1-{NEWCOMER}", [])
    assert newcomer, f"SMB does not show the ACE added over NFS: {facl}"
    shown_read = any(m & READ_DATA for m in newcomer)
    shown_write = any(m & WRITE_DATA for m in newcomer)
    assert (shown_read, shown_write) == ("r" in effective, "w" in effective), (newcomer, facl)


@pytest.mark.host_tier
@pytest.mark.kernel_tier
@pytest.mark.bed_share("nfsbridge")
def test_file_created_over_nfs_inherits_what_smb_set_on_its_directory(bed):
    bed.local.mkdir("inheriting")
    bed.give_to_smb_user("inheriting")
    uid = bed.smb_uid
    spec = (f"OWNER:S-1-22-1-{uid},ACL:S-1-22-1-{uid}:ALLOWED/0x3/0x{FULL:08x},"
            f"ACL:S-1-22-1-{STRANGER}:ALLOWED/0x3/0x{READ | 0x20:08x}")  # OI|CI, read & execute
    out = smbcacls(bed, "inheriting", "--set", spec)
    assert out.returncode == 0, out.stdout + out.stderr
    bed.nfs.create("inheriting/from-nfs.txt", b"made over NFS\n")
    stranger = masks(bed, "inheriting/from-nfs.txt").get(f"S-1-22-1-{STRANGER}", [])
    assert any(m & READ_DATA for m in stranger), f"no inherited read for {STRANGER}: {stranger}"
    assert not any(m & WRITE_DATA for m in stranger), stranger
