"""The ACL bridge inside a real smbd: Windows ACLs stored as NFSv4 ACLs in an xattr and
mirrored into the POSIX ACL and mode that the kernel enforces.

Real smbd, real smbcacls and SMB opens, real xattrs, real POSIX ACLs, real local opens as the
mapped uids. Nothing is mocked.
"""
from __future__ import annotations

import ctypes
import grp
import os
import pwd
import re
import struct
import subprocess
import uuid

import pytest

from harness.samba import Share, User, ensure_unix_user

ACL_XATTR = "security.nfs4acl_ndr"
GROUP = "nfsb-team"
# alice owns the files; bob is in the team; carol is not.
USERS = {name: User(name, "Pw-" + uuid.uuid4().hex[:10]) for name in ("nfsb-alice", "nfsb-bob", "nfsb-carol")}

# NT rights used below.
READ = 0x120089      # FILE_GENERIC_READ
WRITE = 0x120116     # FILE_GENERIC_WRITE
EXECUTE = 0x1200A0   # FILE_GENERIC_EXECUTE
FULL = 0x1F01FF
FILE_READ_DATA, FILE_WRITE_DATA, FILE_EXECUTE = 0x1, 0x2, 0x20


def ensure_group(name: str, members: list[str]) -> int:
    try:
        gid = grp.getgrnam(name).gr_gid
    except KeyError:
        subprocess.run(["groupadd", "--system", name], check=True)
        gid = grp.getgrnam(name).gr_gid
    for member in members:
        subprocess.run(["usermod", "-a", "-G", name, member], check=True)
    return gid


@pytest.fixture(scope="module")
def ids():
    uids = {name: ensure_unix_user(name) for name in USERS}
    gid = ensure_group(GROUP, ["nfsb-alice", "nfsb-bob"])
    return {"uid": uids, "gid": gid}


@pytest.fixture(scope="module")
def smbd(smbd_factory, data_dir, ids):
    instance = smbd_factory([Share("acls", data_dir / "acls", {"vfs objects": "nfsbridge"}),
                             Share("stacked", data_dir / "stacked", {"vfs objects": "nfsbridge streams_xattr"})])
    for user in USERS.values():
        instance.add_user(user)
    share = instance.shares[0].path
    os.chown(share, ids["uid"]["nfsb-alice"], ids["gid"])
    os.chmod(share, 0o775)
    return instance


def share_path(smbd):
    return smbd.shares[0].path


def alice():
    return USERS["nfsb-alice"]


def user_sid(uid: int) -> str:
    """The Unix SID of a uid: Samba maps it to the uid whatever passdb calls the user."""
    return f"S-1-22-1-{uid}"


def shown_sids(smbd, user: str) -> set[str]:
    """The SIDs smbd may show for `user`: its passdb SID (S-1-5-21-...) and its Unix SID."""
    out = subprocess.run(["pdbedit", "-s", str(smbd.conf), "-v", "-u", user], capture_output=True, text=True).stdout
    sids = set(re.findall(r"^User SID:\s+(S-1-[\d-]+)$", out, re.M))
    return sids | {user_sid(pwd.getpwnam(user).pw_uid)}


def masks_of(shown: str) -> dict[str, list[int]]:
    """smbcacls --numeric output → {sid: [masks of its ALLOWED ACEs]}."""
    masks: dict[str, list[int]] = {}
    for sid, mask in re.findall(r"^ACL:(S-1-[\d-]+):0/0x[0-9a-f]+/(0x[0-9a-f]+)$", shown, re.M):
        masks.setdefault(sid, []).append(int(mask, 16))
    return masks


def group_sid(gid: int) -> str:
    return f"S-1-22-2-{gid}"


def create_file(smbd, name: str, content: str = "content\n") -> None:
    path = share_path(smbd) / name
    path.write_text(content)
    os.chown(path, pwd.getpwnam("nfsb-alice").pw_uid, grp.getgrnam(GROUP).gr_gid)
    os.chmod(path, 0o644)


def set_acl(smbd, name: str, aces: list[tuple[str, str, int]], ids, flags: str = "0x0") -> subprocess.CompletedProcess:
    """smbcacls --set with owner alice, group team and `aces` as (sid, ALLOWED|DENIED, mask)."""
    owner, group = user_sid(ids["uid"]["nfsb-alice"]), group_sid(ids["gid"])
    acl = ",".join(f"ACL:{sid}:{kind}/{flags}/0x{mask:08x}" for sid, kind, mask in aces)
    return smbd.smbcacls("acls", name, alice(), "--numeric", "--set", f"OWNER:{owner},GROUP:{group},{acl}")


def get_acl(smbd, name: str, user: User | None = None) -> subprocess.CompletedProcess:
    return smbd.smbcacls("acls", name, user or alice(), "--numeric")


def getfacl(path) -> str:
    return subprocess.run(["getfacl", "-n", "-p", str(path)], capture_output=True, text=True, check=True).stdout


def smb_may(smbd, user: User, name: str, access: int) -> bool:
    """Does smbd grant `user` an open of `name` with exactly `access`?"""
    from smbprotocol.connection import Connection
    from smbprotocol.exceptions import SMBResponseException
    from smbprotocol.open import CreateDisposition, CreateOptions, FilePipePrinterAccessMask, ImpersonationLevel, Open, ShareAccess
    from smbprotocol.session import Session
    from smbprotocol.tree import TreeConnect

    conn = Connection(uuid.uuid4(), "127.0.0.1", smbd.port, require_signing=True)
    with smbd.netns.entered():
        conn.connect(timeout=10)
    try:
        session = Session(conn, user.name, user.password, require_encryption=False)
        session.connect()
        tree = TreeConnect(session, r"\\127.0.0.1\acls")
        tree.connect()
        handle = Open(tree, name)
        try:
            handle.create(ImpersonationLevel.Impersonation, access,
                          0, ShareAccess.FILE_SHARE_READ | ShareAccess.FILE_SHARE_WRITE,
                          CreateDisposition.FILE_OPEN, CreateOptions.FILE_NON_DIRECTORY_FILE)
        except SMBResponseException as exc:
            if exc.status == 0xC0000022:  # STATUS_ACCESS_DENIED
                return False
            raise
        handle.close()
        return True
    finally:
        conn.disconnect()


def local_may(path, user: str, op: str) -> bool:
    """A real local open (or exec permission check) as `user` with its groups."""
    test = {"r": f"exec 3<'{path}'", "w": f"exec 3>>'{path}'", "x": f"test -x '{path}'"}[op]
    result = subprocess.run(["setpriv", f"--reuid={user}", f"--regid={pwd.getpwnam(user).pw_gid}", "--init-groups",
                             "sh", "-c", test], capture_output=True)
    return result.returncode == 0


def test_set_acl_is_stored_as_nfs4_and_mirrored_into_posix(smbd, ids):
    create_file(smbd, "mirrored.txt")
    bob, team = ids["uid"]["nfsb-bob"], ids["gid"]
    result = set_acl(smbd, "mirrored.txt", [
        (user_sid(ids["uid"]["nfsb-alice"]), "ALLOWED", FULL),
        (user_sid(bob), "ALLOWED", READ | WRITE),
        (group_sid(team), "ALLOWED", READ),
    ], ids)
    assert result.returncode == 0, result.stdout + result.stderr
    path = share_path(smbd) / "mirrored.txt"
    assert len(os.getxattr(path, ACL_XATTR)) > 0  # the NFSv4 ACL, ndr-encoded
    facl = getfacl(path)
    assert f"user:{bob}:rw-" in facl, facl
    assert f"group:{team}:r--" in facl or "group::r--" in facl, facl
    assert "other::---" in facl, facl
    shown = masks_of(get_acl(smbd, "mirrored.txt").stdout)
    bob_masks = [m for sid in shown_sids(smbd, "nfsb-bob") for m in shown.get(sid, [])]
    assert any(m & (READ | WRITE) == READ | WRITE for m in bob_masks), shown


def test_smb_sees_a_chmod_done_outside_and_keeps_named_entries(smbd, ids):
    create_file(smbd, "chmodded.txt")
    bob = ids["uid"]["nfsb-bob"]
    assert set_acl(smbd, "chmodded.txt", [
        (user_sid(ids["uid"]["nfsb-alice"]), "ALLOWED", FULL),
        (user_sid(bob), "ALLOWED", READ | WRITE),
        ("S-1-1-0", "ALLOWED", READ),
    ], ids).returncode == 0
    path = share_path(smbd) / "chmodded.txt"
    os.chmod(path, 0o640)  # group r (mask r--), others nothing
    shown = get_acl(smbd, "chmodded.txt").stdout
    masks = masks_of(shown)
    assert all(m & FILE_READ_DATA == 0 for m in masks.get("S-1-1-0", [])), f"chmod o-r not seen by SMB:\n{shown}"
    # bob's named entry survives, narrowed to the new mask (r), not deleted.
    bob_masks = [m for sid in shown_sids(smbd, "nfsb-bob") for m in masks.get(sid, [])]
    assert any(m & FILE_READ_DATA for m in bob_masks), f"bob's ACE lost after chmod:\n{shown}"
    assert not any(m & FILE_WRITE_DATA for m in bob_masks), f"bob keeps write beyond the chmod mask:\n{shown}"


def attribute_changes(path, action) -> int:
    """How many IN_ATTRIB inotify events (xattr, mode, owner or ctime changes) `path` gets while
    `action` runs. The kernel reports every setxattr and chmod, even one that stores the same
    value again (ext4 then leaves even the ctime alone)."""
    libc = ctypes.CDLL(None, use_errno=True)
    fd = libc.inotify_init1(os.O_NONBLOCK | os.O_CLOEXEC)
    assert fd >= 0, os.strerror(ctypes.get_errno())
    try:
        assert libc.inotify_add_watch(fd, os.fsencode(path), 0x4) >= 0, os.strerror(ctypes.get_errno())  # IN_ATTRIB
        action()
        try:
            data = os.read(fd, 65536)
        except BlockingIOError:
            return 0
        # struct inotify_event: wd, mask, cookie, len, then len bytes of name (none for a file).
        count, offset = 0, 0
        while offset < len(data):
            _wd, mask, _cookie, length = struct.unpack_from("iIII", data, offset)
            count += bool(mask & 0x4)
            offset += 16 + length
        return count
    finally:
        os.close(fd)


def test_setting_the_acl_a_file_has_writes_nothing_but_a_chmod_outside_is_undone(smbd, ids):
    create_file(smbd, "reapplied.txt")
    aces = [(user_sid(ids["uid"]["nfsb-alice"]), "ALLOWED", FULL), (user_sid(ids["uid"]["nfsb-bob"]), "ALLOWED", READ),
            ("S-1-1-0", "ALLOWED", READ)]
    path = share_path(smbd) / "reapplied.txt"
    assert attribute_changes(path, lambda: set_acl(smbd, "reapplied.txt", aces, ids).check_returncode()) > 0
    stored, facl, mode = os.getxattr(path, ACL_XATTR), getfacl(path), path.stat().st_mode
    # The same ACL again (a client re-applying what it read): nothing is written.
    assert attribute_changes(path, lambda: set_acl(smbd, "reapplied.txt", aces, ids).check_returncode()) == 0
    assert os.getxattr(path, ACL_XATTR) == stored and getfacl(path) == facl
    # After a chmod outside SMB the same ACL is not "already there": the mirror is written back.
    os.chmod(path, 0o600)
    assert attribute_changes(path, lambda: set_acl(smbd, "reapplied.txt", aces, ids).check_returncode()) > 0
    assert path.stat().st_mode == mode
    assert os.getxattr(path, ACL_XATTR) == stored and getfacl(path) == facl


def test_smb_sees_a_setfacl_done_outside(smbd, ids):
    create_file(smbd, "setfacled.txt")
    carol = ids["uid"]["nfsb-carol"]
    path = share_path(smbd) / "setfacled.txt"
    subprocess.run(["setfacl", "-m", f"u:{carol}:rw", str(path)], check=True)
    shown = get_acl(smbd, "setfacled.txt").stdout
    carol_masks = [m for sid in shown_sids(smbd, "nfsb-carol") for m in masks_of(shown).get(sid, [])]
    assert any(m & (FILE_READ_DATA | FILE_WRITE_DATA) == FILE_READ_DATA | FILE_WRITE_DATA for m in carol_masks), shown
    assert smb_may(smbd, USERS["nfsb-carol"], "setfacled.txt", FILE_WRITE_DATA)


SD_CASES = {
    # name: ACEs (owner alice, group team; bob in team, carol not)
    "owner-full-bob-read-team-rx": lambda ids: [
        (user_sid(ids["uid"]["nfsb-alice"]), "ALLOWED", FULL),
        (user_sid(ids["uid"]["nfsb-bob"]), "ALLOWED", READ),
        (group_sid(ids["gid"]), "ALLOWED", READ | EXECUTE)],
    "deny-bob-write-team-rw": lambda ids: [
        (user_sid(ids["uid"]["nfsb-bob"]), "DENIED", FILE_WRITE_DATA),
        (group_sid(ids["gid"]), "ALLOWED", READ | WRITE),
        (user_sid(ids["uid"]["nfsb-alice"]), "ALLOWED", FULL)],
    "everyone-read-deny-carol": lambda ids: [
        (user_sid(ids["uid"]["nfsb-carol"]), "DENIED", READ),
        ("S-1-1-0", "ALLOWED", READ),
        (user_sid(ids["uid"]["nfsb-alice"]), "ALLOWED", READ | WRITE)],
    "team-write-only": lambda ids: [
        (group_sid(ids["gid"]), "ALLOWED", WRITE),
        (user_sid(ids["uid"]["nfsb-alice"]), "ALLOWED", READ)],
    "deny-team-execute-everyone-all": lambda ids: [
        (group_sid(ids["gid"]), "DENIED", FILE_EXECUTE),
        ("S-1-1-0", "ALLOWED", READ | WRITE | EXECUTE)],
}
SMB_ACCESS = {"r": FILE_READ_DATA, "w": FILE_WRITE_DATA, "x": FILE_EXECUTE}


@pytest.mark.parametrize("case", sorted(SD_CASES))
def test_kernel_never_grants_more_than_the_windows_acl(smbd, ids, case):
    """For each user and r/w/x: a local open the kernel allows is one smbd's NT check allows."""
    name = f"access-{case}.txt"
    create_file(smbd, name)
    result = set_acl(smbd, name, SD_CASES[case](ids), ids)
    assert result.returncode == 0, result.stdout + result.stderr
    path = share_path(smbd) / name
    local_grants = 0
    violations = []
    for user in USERS.values():
        for op, access in SMB_ACCESS.items():
            local = local_may(path, user.name, op)
            smb = smb_may(smbd, user, name, access)
            local_grants += local
            if local and not smb:
                violations.append(f"{user.name} may {op} locally but not over SMB")
    assert not violations, f"{case}: POSIX mirror grants more than the Windows ACL:\n" + "\n".join(violations) + "\n" + getfacl(path)
    assert local_grants > 0, f"{case}: the mirror grants nobody anything:\n{getfacl(path)}"


def test_corrupt_acl_xattr_fails_that_file_clearly_and_never_opens_it_up(smbd, ids):
    create_file(smbd, "corrupt.txt")
    create_file(smbd, "healthy.txt")
    path = share_path(smbd) / "corrupt.txt"
    os.setxattr(path, ACL_XATTR, b"\x01\x00\xff\xffgarbage")
    result = get_acl(smbd, "corrupt.txt")
    assert result.returncode != 0
    assert "NT_STATUS_INTERNAL_DB_CORRUPTION" in result.stdout + result.stderr, result.stdout + result.stderr
    from smbprotocol.exceptions import SMBResponseException
    with pytest.raises(SMBResponseException) as refused:  # never opened up: the open fails
        smb_may(smbd, alice(), "corrupt.txt", FILE_READ_DATA)
    assert refused.value.status == 0xC00000E4  # STATUS_INTERNAL_DB_CORRUPTION
    assert get_acl(smbd, "healthy.txt").returncode == 0  # smbd keeps serving
    log = smbd.log_text()
    assert re.search(r"corrupt\.txt: reading the ACL failed: security\.nfs4acl_ndr \(ndr\): the stored NFSv4 ACL does not decode as ndr", log), log[-3000:]


def test_unmappable_sid_is_refused_with_none_mapped(smbd, ids):
    create_file(smbd, "unmappable.txt")
    before = getfacl(share_path(smbd) / "unmappable.txt")
    result = set_acl(smbd, "unmappable.txt", [
        (user_sid(ids["uid"]["nfsb-alice"]), "ALLOWED", FULL),
        ("S-1-5-21-1-2-3-4242", "ALLOWED", READ)], ids)
    assert result.returncode != 0
    assert "NT_STATUS_NONE_MAPPED" in result.stdout + result.stderr, result.stdout + result.stderr
    assert "S-1-5-21-1-2-3-4242" in smbd.log_text()
    assert getfacl(share_path(smbd) / "unmappable.txt") == before  # nothing half-written
    # Not even an owner change that came with it (a group change alice may make).
    path = share_path(smbd) / "unmappable.txt"
    owner_before = (path.stat().st_uid, path.stat().st_gid)
    result = smbd.smbcacls("acls", "unmappable.txt", alice(), "--numeric", "--set",
                           f"OWNER:{user_sid(ids['uid']['nfsb-alice'])},GROUP:{group_sid(0)},"
                           f"ACL:S-1-5-21-1-2-3-4242:ALLOWED/0x0/0x{READ:08x}")
    assert "NT_STATUS_NONE_MAPPED" in result.stdout + result.stderr, result.stdout + result.stderr
    assert (path.stat().st_uid, path.stat().st_gid) == owner_before


def sid_bytes(text: str) -> bytes:
    """The binary form (MS-DTYP 2.4.2.2) of an S-1-<authority>-<sub>... SID."""
    _s, rev, authority, *subs = text.split("-")
    return bytes([int(rev), len(subs)]) + int(authority).to_bytes(6, "big") + b"".join(
        int(sub).to_bytes(4, "little") for sub in subs)


def dacl_sd(aces: list[tuple[str, int]]) -> bytes:
    """A self-relative SD carrying only a DACL of access-allowed ACEs (sid, mask)."""
    body = b"".join(struct.pack("<BBHI", 0, 0, 8 + len(sid_bytes(sid)), mask) + sid_bytes(sid) for sid, mask in aces)
    dacl = struct.pack("<BBHHH", 2, 0, 8 + len(body), len(aces), 0) + body
    return struct.pack("<BBHIIII", 1, 0, 0x8004, 0, 0, 0, 20) + dacl  # DACL_PRESENT | SELF_RELATIVE


def test_a_set_by_a_user_granted_write_dac_writes_the_mirror_and_keeps_setgid(smbd, ids):
    """carol neither owns the file nor is in its group: the mirror is written with root's
    privileges (CAP_FOWNER for the POSIX ACL, CAP_FSETID so that the kernel keeps the setgid
    bit, CAP_SYS_ADMIN for security.*)."""
    from smbprotocol.connection import Connection
    from smbprotocol.file_info import InfoType
    from smbprotocol.open import (CreateDisposition, CreateOptions, FilePipePrinterAccessMask, ImpersonationLevel,
                                  Open, ShareAccess, SMB2SetInfoRequest)
    from smbprotocol.session import Session
    from smbprotocol.tree import TreeConnect

    create_file(smbd, "granted.txt")
    path = share_path(smbd) / "granted.txt"
    os.chmod(path, 0o2644)
    alice_sid, carol_sid = user_sid(ids["uid"]["nfsb-alice"]), user_sid(ids["uid"]["nfsb-carol"])
    read_control, write_dac = 0x20000, 0x40000
    assert set_acl(smbd, "granted.txt", [(alice_sid, "ALLOWED", FULL),
                                         (carol_sid, "ALLOWED", READ | write_dac)], ids).returncode == 0
    assert path.stat().st_mode & 0o7000 == 0o2000

    carol = USERS["nfsb-carol"]
    conn = Connection(uuid.uuid4(), "127.0.0.1", smbd.port, require_signing=True)
    with smbd.netns.entered():
        conn.connect(timeout=10)
    try:
        session = Session(conn, carol.name, carol.password, require_encryption=False)
        session.connect()
        tree = TreeConnect(session, r"\\127.0.0.1\acls")
        tree.connect()
        handle = Open(tree, "granted.txt")
        handle.create(ImpersonationLevel.Impersonation, read_control | write_dac, 0,
                      ShareAccess.FILE_SHARE_READ | ShareAccess.FILE_SHARE_WRITE, CreateDisposition.FILE_OPEN,
                      CreateOptions.FILE_NON_DIRECTORY_FILE)
        request = SMB2SetInfoRequest()
        request["info_type"] = InfoType.SMB2_0_INFO_SECURITY
        request["additional_information"] = 0x4  # DACL_SECURITY_INFORMATION
        request["file_id"] = handle.file_id
        request["buffer"] = dacl_sd([(alice_sid, FULL), (carol_sid, READ | write_dac),
                                     (group_sid(ids["gid"]), READ | WRITE)])
        conn.receive(conn.send(request, sid=session.session_id, tid=tree.tree_connect_id))  # raises on failure
        handle.close()
    finally:
        conn.disconnect()
    facl = getfacl(path)
    assert f"user:{ids['uid']['nfsb-carol']}:r--" in facl and "group::rw-" in facl, facl
    assert path.stat().st_mode & 0o7000 == 0o2000


def dacl_of(sd: bytes) -> list[tuple[int, int, str]]:
    """The DACL of a self-relative SD as (ACE type, mask, SID) triples."""
    def sid_at(offset: int) -> str:
        count, authority = sd[offset + 1], int.from_bytes(sd[offset + 2:offset + 8], "big")
        subs = struct.unpack_from(f"<{count}I", sd, offset + 8)
        return "-".join(["S", str(sd[offset]), str(authority), *map(str, subs)])
    dacl = struct.unpack_from("<I", sd, 16)[0]
    count, entries, offset = struct.unpack_from("<H", sd, dacl + 4)[0], [], dacl + 8
    for _ in range(count):
        ace_type, _flags, size, mask = struct.unpack_from("<BBHI", sd, offset)
        entries.append((ace_type, mask, sid_at(offset + 8)))
        offset += size
    return entries


def test_a_local_change_right_after_an_smb_read_is_seen_by_the_next_read(smbd, ids):
    """One SMB connection (one smbd process, so the module's per-process ACL state cache is in
    play) reads the ACL again and again; between reads, local changes (chmod, setfacl, both
    xattrs or only the NFSv4 one rewritten with setxattr) land within milliseconds of a read,
    and each must be seen by the next read. The first reads happen more than two seconds
    after the file last changed, so that they are cached."""
    import time
    from smbprotocol.connection import Connection
    from smbprotocol.file_info import InfoType
    from smbprotocol.open import (CreateDisposition, CreateOptions, ImpersonationLevel, Open, ShareAccess,
                                  SMB2QueryInfoRequest, SMB2QueryInfoResponse)
    from smbprotocol.session import Session
    from smbprotocol.tree import TreeConnect

    alice_sid, bob, carol = user_sid(ids["uid"]["nfsb-alice"]), ids["uid"]["nfsb-bob"], ids["uid"]["nfsb-carol"]
    create_file(smbd, "watched.txt")
    create_file(smbd, "template.txt")
    for name, bob_rights in (("watched.txt", READ | WRITE), ("template.txt", READ)):
        assert set_acl(smbd, name, [(alice_sid, "ALLOWED", FULL), (user_sid(bob), "ALLOWED", bob_rights),
                                    ("S-1-1-0", "ALLOWED", READ)], ids).returncode == 0
    path, template = share_path(smbd) / "watched.txt", share_path(smbd) / "template.txt"
    time.sleep(2.5)  # the ctime is now settled: reads from here on are cached

    conn = Connection(uuid.uuid4(), "127.0.0.1", smbd.port, require_signing=True)
    with smbd.netns.entered():
        conn.connect(timeout=10)
    try:
        session = Session(conn, alice().name, alice().password, require_encryption=False)
        session.connect()
        tree = TreeConnect(session, r"\\127.0.0.1\acls")
        tree.connect()
        handle = Open(tree, "watched.txt")
        handle.create(ImpersonationLevel.Impersonation, 0x20000 | 0x80, 0,  # READ_CONTROL | READ_ATTRIBUTES
                      ShareAccess.FILE_SHARE_READ | ShareAccess.FILE_SHARE_WRITE | ShareAccess.FILE_SHARE_DELETE,
                      CreateDisposition.FILE_OPEN, CreateOptions.FILE_NON_DIRECTORY_FILE)

        def read() -> list[tuple[int, int, str]]:
            request = SMB2QueryInfoRequest()
            request["info_type"] = InfoType.SMB2_0_INFO_SECURITY
            request["output_buffer_length"] = 65536
            request["additional_information"] = 0x7  # owner, group, DACL
            request["file_id"] = handle.file_id
            response = SMB2QueryInfoResponse()
            response.unpack(conn.receive(conn.send(request, sid=session.session_id, tid=tree.tree_connect_id))["data"].get_value())
            return dacl_of(response["buffer"].get_value())

        def rights(dacl, sids) -> int:
            return next((mask for ace_type, mask, sid in dacl if ace_type == 0 and sid in sids), 0)

        everyone, bob_sids, carol_sids = {"S-1-1-0"}, shown_sids(smbd, "nfsb-bob"), shown_sids(smbd, "nfsb-carol")
        first = read()
        assert read() == first and rights(first, everyone) & FILE_READ_DATA, first
        # The share is on a local file system, so the cache is in play (not silently off).
        assert re.search(r"connect: share \[acls\] .*ACL state cache on", smbd.log_text()), smbd.log_text()[-3000:]

        # chmod right after a (cached) read: others lose read.
        os.chmod(path, 0o640)
        after_chmod = read()
        assert not rights(after_chmod, everyone) & FILE_READ_DATA, after_chmod
        # setfacl within the same second as the chmod (same ctime second on coarse clocks).
        subprocess.run(["setfacl", "-m", f"u:{carol}:rw", str(path)], check=True)
        after_setfacl = read()
        assert rights(after_setfacl, carol_sids) & FILE_WRITE_DATA, after_setfacl
        # chmod back and the template's xattrs written over the file's with setxattr: the file
        # now holds exactly the template's ACL (bob may only read), as SMB must say at once.
        time.sleep(2.5)
        settled = read()
        assert read() == settled
        os.chmod(path, template.stat().st_mode & 0o7777)
        for name in (ACL_XATTR, "system.posix_acl_access"):
            os.setxattr(path, name, os.getxattr(template, name))
        after_setxattr = read()
        assert rights(after_setxattr, bob_sids) & FILE_READ_DATA, after_setxattr
        assert not rights(after_setxattr, bob_sids) & FILE_WRITE_DATA, after_setxattr
        assert not rights(after_setxattr, carol_sids), after_setxattr
        # Only the xattr itself, rewritten right after a read: an ACL that names carol.
        time.sleep(2.5)
        assert read() == read()
        create_file(smbd, "carol.txt")
        assert set_acl(smbd, "carol.txt", [(alice_sid, "ALLOWED", FULL), (user_sid(carol), "ALLOWED", READ)],
                       ids).returncode == 0
        os.setxattr(path, ACL_XATTR, os.getxattr(share_path(smbd) / "carol.txt", ACL_XATTR))
        after_xattr_only = read()
        assert not rights(after_xattr_only, bob_sids) & FILE_WRITE_DATA, after_xattr_only
        assert after_xattr_only != after_setxattr
        handle.close()
    finally:
        conn.disconnect()


def test_the_acl_state_cache_is_off_when_a_module_is_stacked_below(smbd, ids):
    """A module below nfsbridge might keep xattrs where the file's ctime does not witness
    their changes (vfs_xattr_tdb): the ACL bridge then reads them every time."""
    path = smbd.shares[1].path / "below.txt"
    path.write_text("x\n")
    os.chown(path, ids["uid"]["nfsb-alice"], ids["gid"])
    os.chown(smbd.shares[1].path, ids["uid"]["nfsb-alice"], ids["gid"])
    result = smbd.smbcacls("stacked", "below.txt", alice(), "--numeric")
    assert result.returncode == 0, result.stdout + result.stderr
    log = smbd.log_text()
    assert re.search(r"connect: share \[stacked\] .*ACL state cache off \(another module is stacked below nfsbridge\)",
                     log), log[-3000:]


def test_files_created_over_smb_inherit_as_windows_expects(smbd, ids, tmp_path):
    d = share_path(smbd) / "inheriting"
    d.mkdir()
    os.chown(d, ids["uid"]["nfsb-alice"], ids["gid"])
    bob = ids["uid"]["nfsb-bob"]
    result = set_acl(smbd, "inheriting", [
        (user_sid(ids["uid"]["nfsb-alice"]), "ALLOWED", FULL),
        # Read & execute: POSIX needs x on the directory for bob to reach its files.
        (user_sid(bob), "ALLOWED", READ | EXECUTE)], ids, flags="0x3")  # OI|CI
    assert result.returncode == 0, result.stdout + result.stderr
    src = tmp_path / "child.txt"
    src.write_text("child\n")
    smbd.smbclient("acls", alice(), f"put {src} inheriting/child.txt")
    shown = get_acl(smbd, "inheriting/child.txt").stdout
    # bob's ACE arrives on the child (smbd marks it INHERITED, 0x10, only when the parent's
    # DACL is AUTO_INHERITED, which smbcacls --set does not set).
    assert any(re.search(rf"^ACL:{sid}:0/0x(0|10)/0x001200a9$", shown, re.M) for sid in shown_sids(smbd, "nfsb-bob")), shown
    assert f"user:{bob}:r-x" in getfacl(d / "child.txt")
    # A file created locally in the same directory gets bob's right through the POSIX
    # default ACL, and SMB shows it.
    local = d / "local.txt"
    subprocess.run(["setpriv", "--reuid=nfsb-alice", f"--regid={ids['gid']}", "--init-groups",
                    "sh", "-c", f"echo local > '{local}'"], check=True)
    assert f"user:{bob}:r-x" in getfacl(local)
    assert smb_may(smbd, USERS["nfsb-bob"], "inheriting/local.txt", FILE_READ_DATA)


def directory_granting_bob(smbd, ids, name: str, bob_rights: int):
    """A directory owned by alice (full control) where bob has `bob_rights` and nothing else."""
    d = share_path(smbd) / name
    d.mkdir()
    os.chown(d, ids["uid"]["nfsb-alice"], ids["gid"])
    result = set_acl(smbd, name, [
        (user_sid(ids["uid"]["nfsb-alice"]), "ALLOWED", FULL),
        (user_sid(ids["uid"]["nfsb-bob"]), "ALLOWED", bob_rights)], ids)
    assert result.returncode == 0, result.stdout + result.stderr
    return d


def test_directory_the_windows_acl_allows_is_created_even_where_posix_cannot_say_so(smbd, ids, tmp_path):
    """ADD_SUBDIRECTORY without ADD_FILE has no POSIX equivalent (w allows both), so the
    mirror gives bob no w on the parent; smbd's NT check allows the mkdir, the module creates
    the directory as root and hands it to bob at once."""
    add_subdirectory = 0x4
    d = directory_granting_bob(smbd, ids, "subdirs", READ | EXECUTE | add_subdirectory)
    bob = ids["uid"]["nfsb-bob"]
    assert f"user:{bob}:r-x" in getfacl(d)  # no w for bob on the Unix side
    made = smbd.smbclient("acls", USERS["nfsb-bob"], "mkdir subdirs\\made-by-bob", check=False)
    assert made.returncode == 0 and "NT_STATUS" not in made.stdout, made.stdout + made.stderr
    assert (d / "made-by-bob").is_dir()
    assert (d / "made-by-bob").stat().st_uid == bob
    # ADD_FILE was not granted: smbd refuses a file, and carol (nothing granted) a directory.
    src = tmp_path / "file.txt"
    src.write_text("x")
    put = smbd.smbclient("acls", USERS["nfsb-bob"], f"put {src} subdirs\\file.txt", check=False)
    assert "NT_STATUS_ACCESS_DENIED" in put.stdout + put.stderr, put.stdout + put.stderr
    denied = smbd.smbclient("acls", USERS["nfsb-carol"], "mkdir subdirs\\made-by-carol", check=False)
    assert "NT_STATUS_ACCESS_DENIED" in denied.stdout + denied.stderr, denied.stdout + denied.stderr
    assert not (d / "made-by-carol").exists() and not (d / "file.txt").exists()


def test_file_the_windows_acl_allows_is_created_even_where_posix_cannot_say_so(smbd, ids, tmp_path):
    """ADD_FILE without ADD_SUBDIRECTORY: no w on the Unix side either; the file is created as
    root after smbd's NT check and belongs to its creator from the start."""
    add_file = 0x2
    d = directory_granting_bob(smbd, ids, "files-only", READ | EXECUTE | add_file)
    bob = ids["uid"]["nfsb-bob"]
    assert f"user:{bob}:r-x" in getfacl(d)
    src = tmp_path / "from-bob.txt"
    src.write_text("bob's\n")
    put = smbd.smbclient("acls", USERS["nfsb-bob"], f"put {src} files-only\\from-bob.txt", check=False)
    assert put.returncode == 0, put.stdout + put.stderr
    made = d / "from-bob.txt"
    assert made.read_text() == "bob's\n"
    assert made.stat().st_uid == bob, f"created as root but not handed to its creator: uid {made.stat().st_uid}"
