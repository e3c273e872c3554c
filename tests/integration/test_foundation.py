"""The foundation: nfsbridge.so loads into a real smbd 4.22.6 and serves files transparently.

Real smbd, real smbclient/smbcacls, real files: nothing here is mocked.
"""
from __future__ import annotations

import os
import re
import subprocess
import uuid
from pathlib import Path

import pytest

from harness.samba import REPO, Share

NFSBRIDGE = {"vfs objects": "nfsbridge"}


@pytest.fixture(scope="module")
def smbd(smbd_factory, data_dir):
    data = data_dir
    return smbd_factory([
        Share("bridged", data / "bridged", dict(NFSBRIDGE)),
        Share("badoption", data / "bad", {**NFSBRIDGE, "nfsbridge:fault injection": "sometimes"}),
        Share("panics", data / "panics", {**NFSBRIDGE, "nfsbridge:fault injection": "panic in connect"}),
    ])


def bridged_path(smbd) -> Path:
    return next(s.path for s in smbd.shares if s.name == "bridged")


def test_put_get_round_trip(smbd, test_user, tmp_path):
    payload = os.urandom(3 * 1024 * 1024 + 17)
    src, back = tmp_path / "src.bin", tmp_path / "back.bin"
    src.write_bytes(payload)
    smbd.smbclient("bridged", test_user, f"put {src} roundtrip.bin; get roundtrip.bin {back}")
    assert back.read_bytes() == payload
    # What smbd wrote through the module is the file on disk, byte for byte.
    assert (bridged_path(smbd) / "roundtrip.bin").read_bytes() == payload


def test_directory_listing_shows_smb_and_local_files(smbd, test_user, tmp_path):
    base = bridged_path(smbd)
    (base / "made-locally.txt").write_text("local\n")
    src = tmp_path / "x.txt"
    src.write_text("over smb\n")
    smbd.smbclient("bridged", test_user, f"mkdir listed; put {src} listed/over-smb.txt")
    top = smbd.smbclient("bridged", test_user, "ls").stdout
    assert re.search(r"^\s+made-locally\.txt\s+[A-Z]*\s+6\s", top, re.M), top
    assert re.search(r"^\s+listed\s+D\s", top, re.M), top
    sub = smbd.smbclient("bridged", test_user, "ls listed/*").stdout
    assert "over-smb.txt" in sub
    assert (base / "listed" / "over-smb.txt").read_text() == "over smb\n"


def test_smbcacls_reads_the_security_descriptor(smbd, test_user, test_uid):
    target = bridged_path(smbd) / "acl-target.txt"
    target.write_text("x")
    os.chown(target, test_uid, 0)
    os.chmod(target, 0o640)
    out = smbd.smbcacls("bridged", "acl-target.txt", test_user, "--numeric")
    assert out.returncode == 0, out.stdout + out.stderr
    text = out.stdout
    assert "REVISION:1" in text
    owner = re.search(r"^OWNER:(S-1-\S+)$", text, re.M).group(1)
    assert re.search(r"^GROUP:S-1-22-2-0$", text, re.M), text
    masks = {sid: int(mask, 16) for sid, mask in re.findall(r"^ACL:(S-1-[\d-]+):0/0x0/(0x[0-9a-f]+)$", text, re.M)}
    # Mode 0640 as smbd presents it: owner read+write, group read only, Everyone nothing.
    read_data, write_data = 0x1, 0x2
    assert masks[owner] & read_data and masks[owner] & write_data, text
    assert masks["S-1-22-2-0"] & read_data and not masks["S-1-22-2-0"] & write_data, text
    assert masks["S-1-1-0"] & (read_data | write_data) == 0, text


def test_bad_option_refuses_tree_connect_with_a_clear_log_line(smbd, test_user):
    result = smbd.smbclient("badoption", test_user, "ls", check=False)
    assert result.returncode != 0
    assert "tree connect failed" in result.stdout
    log = smbd.log_text()
    assert ("refusing tree connect to share [badoption]" in log
            and "invalid value \"sometimes\" for option 'nfsbridge:fault injection'" in log
            and "expected one of: none, panic in connect" in log), log[-3000:]


def test_log_line_proves_the_module_ran(smbd, test_user):
    smbd.smbclient("bridged", test_user, "ls")
    log = smbd.log_text()
    assert "class=nfsbridge" in log
    assert re.search(r"connect: share \[bridged\] path \S+ user nfsbridge-test; options: acls=yes .*fault injection=none", log)


def test_panic_fails_only_that_request_and_smbd_keeps_serving(smbd, test_user):
    """One SMB session: the tree connect whose callback panics fails, the next one works."""
    from smbprotocol.connection import Connection
    from smbprotocol.exceptions import SMBResponseException
    from smbprotocol.session import Session
    from smbprotocol.tree import TreeConnect

    conn = Connection(uuid.uuid4(), "127.0.0.1", smbd.port, require_signing=True)
    with smbd.netns.entered():
        conn.connect(timeout=10)
    try:
        session = Session(conn, test_user.name, test_user.password, require_encryption=False)
        session.connect()
        with pytest.raises(SMBResponseException):
            TreeConnect(session, r"\\127.0.0.1\panics").connect()
        tree = TreeConnect(session, r"\\127.0.0.1\bridged")
        tree.connect()  # the same smbd process is still serving this client
        tree.disconnect()
    finally:
        conn.disconnect()
    log = smbd.log_text()
    assert "connect failed: internal error (panic caught at the module boundary: fault injection" in log
    assert "only this request fails" in log
    assert "PANIC" not in log and "INTERNAL ERROR" not in log  # smbd itself never panicked


def test_only_samba_init_module_is_exported(module_path):
    out = subprocess.run(["nm", "-D", "--defined-only", str(module_path)], capture_output=True,
                         text=True, check=True).stdout
    assert [line.split()[-1] for line in out.splitlines()] == ["samba_init_module"]


def test_module_for_another_interface_version_is_refused(smbd_factory, data_dir, test_user):
    """A module announcing SMB_VFS_INTERFACE_VERSION 49 is refused by smbd with its own message."""
    target = REPO / "target" / "iface-test"
    env = dict(os.environ, NFSBRIDGE_REGISTER_VFS_VERSION="49", CARGO_TARGET_DIR=str(target))
    subprocess.run(["cargo", "build", "-q", "--locked", "-p", "nfsbridge-vfs"], cwd=REPO, env=env, check=True)
    wrong = target / "debug" / "libvfs_nfsbridge.so"
    instance = smbd_factory([Share("wrongversion", data_dir / "iface", dict(NFSBRIDGE))], module=wrong)
    result = instance.smbclient("wrongversion", test_user, "ls", check=False)
    assert result.returncode != 0 and "tree connect failed" in result.stdout
    log = instance.log_text()
    assert "Failed to register vfs module" in log, log[-3000:]
    assert "compiled against SMB_VFS_INTERFACE_VERSION 49" in log
    assert "current SMB_VFS_INTERFACE_VERSION is 50" in log


def test_stop_leaves_no_process_behind(smbd_factory, data_dir, test_user):
    """smbcacls makes smbd start samba-dcerpcd and rpcd_lsad, which leave smbd's process
    group; stopping the instance stops them too."""
    instance = smbd_factory([Share("cleanup", data_dir / "cleanup", dict(NFSBRIDGE))])
    (data_dir / "cleanup" / "f.txt").write_text("x")
    assert instance.smbcacls("cleanup", "f.txt", test_user).returncode == 0  # names: LSA lookups
    assert instance.rpc_helpers(), "smbcacls did not start samba-dcerpcd; the test proves nothing"
    instance.stop()
    assert not instance.running()
    assert instance.rpc_helpers() == []
