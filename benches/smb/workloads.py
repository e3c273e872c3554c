"""The SMB workloads of scripts/bench.sh. Each function runs one bounded batch on one share (a
count of operations and a deadline, whichever comes first) and returns a Batch: per-operation
latencies and the batch's wall time, from which the caller derives operations (or bytes) per
second. Clients are harness.smb_lease_client.SmbLeaseClient connections made in the bench's
network namespace; the local opener is this process, on the shared directory itself.
"""
from __future__ import annotations

import os
import struct
import time
import uuid
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from pathlib import Path

from smbprotocol.create_contexts import (CreateContextName, SMB2CreateContextRequest,
                                         SMB2CreateRequestLeaseV2, SMB2CreateResponseLeaseV2)
from smbprotocol.file_info import InfoType
from smbprotocol.open import (CreateDisposition, CreateOptions, DirectoryAccessMask,
                              FilePipePrinterAccessMask, ImpersonationLevel, Open,
                              RequestedOplockLevel, ShareAccess, SMB2QueryInfoRequest,
                              SMB2QueryInfoResponse, SMB2SetInfoRequest)

from harness.smb_lease_client import LeaseBreak, SmbLeaseClient, lease_state

Access = FilePipePrinterAccessMask
SHARE_ALL = ShareAccess.FILE_SHARE_READ | ShareAccess.FILE_SHARE_WRITE | ShareAccess.FILE_SHARE_DELETE
BATCH_OPLOCK = RequestedOplockLevel.SMB2_OPLOCK_LEVEL_BATCH
OWNER_SECURITY_INFORMATION, GROUP_SECURITY_INFORMATION, DACL_SECURITY_INFORMATION = 0x1, 0x2, 0x4
IO_CHUNK = 1 << 20
# How long after a local open returned we still wait for a break that would show the share
# noticed it at all (a break that comes after the open returned is no coherence either).
BREAK_GRACE = 0.15
# Upper bound on waiting for a break that a blocked local open is waiting for (the kernel's
# lease-break-time is 45 s; a coherent share answers in milliseconds).
BREAK_TIMEOUT = 10.0


@dataclass
class Batch:
    latencies: list[float] = field(default_factory=list)   # seconds, one per operation
    elapsed: float = 0.0                                    # wall time of the batch, seconds
    units: float = 0.0                                      # operations, or bytes for read/write
    granted: str = ""                                       # what the leased opens were granted

    @property
    def rate(self) -> float:
        return self.units / self.elapsed if self.elapsed > 0 else 0.0


@dataclass
class BreakProbe:
    """One local-opener (or local/SMB change) probe against a cached open."""
    granted: str                  # what the holder was granted, e.g. "lease RWH", "oplock 0x09", "none"
    coherent: bool                # the break reached the client before the other side went on
    latency: float | None         # seconds; None when incoherent or nothing was granted


def lease_context(state: str, key: bytes | None = None) -> SMB2CreateContextRequest:
    request = SMB2CreateRequestLeaseV2()
    request["lease_key"] = key or uuid.uuid4().bytes
    request["lease_state"] = lease_state(state)
    request["parent_lease_key"] = b"\x00" * 16
    request["epoch"] = b"\x00\x00"
    context = SMB2CreateContextRequest()
    context["buffer_name"] = CreateContextName.SMB2_CREATE_REQUEST_LEASE_V2
    context["buffer_data"] = request
    return context


def smb_open(client: SmbLeaseClient, path: str, access: int, disposition: int, options: int,
             lease: str | None = None, oplock: int | None = None,
             lease_key: bytes | None = None) -> tuple[Open, str]:
    """Opens `path` asking for a v2 lease (with `lease_key`, else a new one) or an oplock;
    returns the handle and what was granted ("lease RWH", "oplock 0x09", "none")."""
    handle = Open(client.tree, path)
    contexts = [lease_context(lease, lease_key)] if lease is not None else []
    if lease is not None:
        level = RequestedOplockLevel.SMB2_OPLOCK_LEVEL_LEASE
    else:
        level = RequestedOplockLevel.SMB2_OPLOCK_LEVEL_NONE if oplock is None else oplock
    responses = handle.create(ImpersonationLevel.Impersonation, access, 0, SHARE_ALL, disposition,
                              options, create_contexts=contexts, oplock_level=level)
    granted = "none"
    for response in responses or []:
        if isinstance(response, SMB2CreateResponseLeaseV2):
            state = response["lease_state"].get_value()
            granted = "lease " + "".join(c for c, b in (("R", 1), ("W", 4), ("H", 2)) if state & b) if state else "none"
    if granted == "none" and handle.oplock_level not in (0, RequestedOplockLevel.SMB2_OPLOCK_LEVEL_LEASE):
        granted = f"oplock 0x{handle.oplock_level:02x}"
    return handle, granted


def open_file(client, path, lease="RWH", write=True, create=False, oplock=None, lease_key=None):
    access = Access.FILE_READ_DATA | Access.FILE_READ_ATTRIBUTES
    if write:
        access |= Access.FILE_WRITE_DATA | Access.FILE_WRITE_ATTRIBUTES
    disposition = CreateDisposition.FILE_OPEN_IF if create else CreateDisposition.FILE_OPEN
    return smb_open(client, path, access, disposition, CreateOptions.FILE_NON_DIRECTORY_FILE, lease, oplock,
                    lease_key)


def open_directory(client, path, lease="RH", create=False):
    access = DirectoryAccessMask.FILE_LIST_DIRECTORY | DirectoryAccessMask.FILE_READ_ATTRIBUTES
    disposition = CreateDisposition.FILE_OPEN_IF if create else CreateDisposition.FILE_OPEN
    return smb_open(client, path, access, disposition, CreateOptions.FILE_DIRECTORY_FILE, lease)


# -- throughput ------------------------------------------------------------------------------

def open_close(client: SmbLeaseClient, name: str, count: int, deadline: float) -> Batch:
    """Open an existing file asking for an RWH lease, close it: the open path of every client.
    Every open of the file uses one lease key, as Windows and the Linux client do (a client
    keeps one lease key per file, MS-SMB2 3.2.4.3.8)."""
    batch = Batch()
    lease_key = uuid.uuid4().bytes
    start = time.perf_counter()
    for _ in range(count):
        t0 = time.perf_counter()
        handle, batch.granted = open_file(client, name, lease="RWH", write=False, lease_key=lease_key)
        handle.close()
        batch.latencies.append(time.perf_counter() - t0)
        if time.perf_counter() > deadline:
            break
    batch.elapsed = time.perf_counter() - start
    batch.units = len(batch.latencies)
    return batch


def create_delete(client: SmbLeaseClient, prefix: str, count: int, deadline: float) -> Batch:
    """Create a new file with an RWH lease and delete-on-close, close it (so it is deleted)."""
    batch = Batch()
    access = Access.FILE_READ_DATA | Access.FILE_WRITE_DATA | Access.DELETE | Access.FILE_READ_ATTRIBUTES
    options = CreateOptions.FILE_NON_DIRECTORY_FILE | CreateOptions.FILE_DELETE_ON_CLOSE
    start = time.perf_counter()
    for i in range(count):
        t0 = time.perf_counter()
        handle, batch.granted = smb_open(client, f"{prefix}-{i}.tmp", access, CreateDisposition.FILE_CREATE, options, "RWH")
        handle.close()
        batch.latencies.append(time.perf_counter() - t0)
        if time.perf_counter() > deadline:
            break
    batch.elapsed = time.perf_counter() - start
    batch.units = len(batch.latencies)
    return batch


def read_leased(client: SmbLeaseClient, name: str, size: int, deadline: float) -> Batch:
    """Sequential 1 MiB reads over `size` bytes of a file held open with an RWH lease."""
    handle, granted = open_file(client, name, lease="RWH", write=False)
    batch = Batch(granted=granted)
    chunk = min(IO_CHUNK, client.connection.max_read_size)
    try:
        start = time.perf_counter()
        for offset in range(0, size, chunk):
            t0 = time.perf_counter()
            data = handle.read(offset, min(chunk, size - offset))
            batch.latencies.append(time.perf_counter() - t0)
            batch.units += len(data)
            if time.perf_counter() > deadline:
                break
        batch.elapsed = time.perf_counter() - start
    finally:
        handle.close()
    return batch


def write_leased(client: SmbLeaseClient, name: str, size: int, deadline: float) -> Batch:
    """Sequential 1 MiB writes over `size` bytes of a file held open with an RWH lease."""
    handle, granted = open_file(client, name, lease="RWH", write=True)
    batch = Batch(granted=granted)
    chunk = min(IO_CHUNK, client.connection.max_write_size)
    payload = os.urandom(chunk)
    try:
        start = time.perf_counter()
        for offset in range(0, size, chunk):
            t0 = time.perf_counter()
            batch.units += handle.write(payload[:min(chunk, size - offset)], offset)
            batch.latencies.append(time.perf_counter() - t0)
            if time.perf_counter() > deadline:
                break
        batch.elapsed = time.perf_counter() - start
    finally:
        handle.close()
    return batch


# -- security descriptors ----------------------------------------------------------------------

def query_security(client: SmbLeaseClient, handle: Open,
                   info: int = OWNER_SECURITY_INFORMATION | GROUP_SECURITY_INFORMATION | DACL_SECURITY_INFORMATION) -> bytes:
    request = SMB2QueryInfoRequest()
    request["info_type"] = InfoType.SMB2_0_INFO_SECURITY
    request["output_buffer_length"] = 65536
    request["additional_information"] = info
    request["file_id"] = handle.file_id
    sent = client.connection.send(request, sid=client.session.session_id, tid=client.tree.tree_connect_id)
    response = SMB2QueryInfoResponse()
    response.unpack(client.connection.receive(sent)["data"].get_value())
    return response["buffer"].get_value()


def set_security(client: SmbLeaseClient, handle: Open, sd: bytes, info: int = DACL_SECURITY_INFORMATION) -> None:
    request = SMB2SetInfoRequest()
    request["info_type"] = InfoType.SMB2_0_INFO_SECURITY
    request["additional_information"] = info
    request["file_id"] = handle.file_id
    request["buffer"] = sd
    sent = client.connection.send(request, sid=client.session.session_id, tid=client.tree.tree_connect_id)
    client.connection.receive(sent)         # raises on an error status


def _sid_at(sd: bytes, offset: int) -> bytes:
    count = sd[offset + 1]
    return sd[offset:offset + 8 + 4 * count]


def owner_and_group(sd: bytes) -> tuple[bytes, bytes]:
    """The binary owner and group SIDs of a self-relative SD (MS-DTYP 2.4.6)."""
    _rev, _sbz, _control, owner, group, _sacl, _dacl = struct.unpack_from("<BBHIIII", sd, 0)
    if not owner or not group:
        raise ValueError("the SD has no owner or no group")
    return _sid_at(sd, owner), _sid_at(sd, group)


EVERYONE = bytes([1, 1, 0, 0, 0, 0, 0, 1]) + struct.pack("<I", 0)
FULL_CONTROL, MODIFY, READ_EXECUTE, READ = 0x1F01FF, 0x1301BF, 0x1200A9, 0x120089


def dacl_only_sd(aces: list[tuple[int, bytes]]) -> bytes:
    """A self-relative SD with only a DACL of access-allowed ACEs (mask, SID)."""
    body = b"".join(struct.pack("<BBHI", 0, 0, 8 + len(sid), mask) + sid for mask, sid in aces)
    acl = struct.pack("<BBHHH", 2, 0, 8 + len(body), len(aces), 0) + body
    return struct.pack("<BBHIIII", 1, 0, 0x8004, 0, 0, 0, 20) + acl   # DACL_PRESENT | SELF_RELATIVE


def dacl_variants(owner: bytes, group: bytes) -> list[bytes]:
    """Two DACLs that differ in the group's rights, so that every set really changes the ACL;
    the owner keeps full control in both."""
    return [dacl_only_sd([(FULL_CONTROL, owner), (READ_EXECUTE, group), (READ, EVERYONE)]),
            dacl_only_sd([(FULL_CONTROL, owner), (MODIFY, group), (READ, EVERYONE)])]


def open_for_security(client: SmbLeaseClient, name: str) -> Open:
    access = Access.READ_CONTROL | Access.WRITE_DAC | Access.FILE_READ_ATTRIBUTES
    handle, _ = smb_open(client, name, access, CreateDisposition.FILE_OPEN, CreateOptions.FILE_NON_DIRECTORY_FILE)
    return handle


def sd_get(client: SmbLeaseClient, handle: Open, count: int, deadline: float) -> Batch:
    """QUERY_INFO security (owner, group, DACL) on an open handle: smbd's fget_nt_acl."""
    batch = Batch()
    start = time.perf_counter()
    for _ in range(count):
        t0 = time.perf_counter()
        sd = query_security(client, handle)
        batch.latencies.append(time.perf_counter() - t0)
        if len(sd) < 20:
            raise RuntimeError(f"query security returned {len(sd)} bytes")
        if time.perf_counter() > deadline:
            break
    batch.elapsed = time.perf_counter() - start
    batch.units = len(batch.latencies)
    return batch


def sd_set(client: SmbLeaseClient, handle: Open, variants: list[bytes], count: int, deadline: float) -> Batch:
    """SET_INFO security (DACL), alternating two DACLs: smbd's fset_nt_acl."""
    batch = Batch()
    start = time.perf_counter()
    for i in range(count):
        t0 = time.perf_counter()
        set_security(client, handle, variants[i % len(variants)])
        batch.latencies.append(time.perf_counter() - t0)
        if time.perf_counter() > deadline:
            break
    batch.elapsed = time.perf_counter() - start
    batch.units = len(batch.latencies)
    return batch


# -- breaks ------------------------------------------------------------------------------------

def _ack(client: SmbLeaseClient, brk) -> None:
    if isinstance(brk, LeaseBreak):
        if brk.ack_required:
            client.ack_lease_break(brk)
    else:
        client.ack_oplock_break(brk, level=0)


def _wait_break_or_done(client: SmbLeaseClient, future) -> object | None:
    """The first break the client gets, or None once `future` is done and BREAK_GRACE passed
    without one (the other side went on without breaking anything)."""
    limit = time.perf_counter() + BREAK_TIMEOUT
    done_at = None
    while time.perf_counter() < limit:
        try:
            return client.wait_break(timeout=0.005)
        except TimeoutError:
            pass
        if future.done():
            done_at = done_at or time.perf_counter()
            if time.perf_counter() - done_at > BREAK_GRACE:
                return None
    return None


def local_open_break(client: SmbLeaseClient, share_dir: Path, name: str, use_oplock: bool) -> BreakProbe:
    """A client holds the file with an RWH lease (a batch oplock where the share grants no
    leases); a local process opens it for reading. Coherent when the open waited for the break:
    the latency is how long the local open took, break and acknowledgement included."""
    client.pending_breaks()
    if use_oplock:
        handle, granted = open_file(client, name, lease=None, oplock=BATCH_OPLOCK)
    else:
        handle, granted = open_file(client, name, lease="RWH")
    path = str(share_dir / name)

    def local_open() -> tuple[float, float]:
        t0 = time.perf_counter()
        fd = os.open(path, os.O_RDONLY)
        t1 = time.perf_counter()
        os.close(fd)
        return t0, t1

    acked_at = None
    try:
        with ThreadPoolExecutor(1) as pool:
            future = pool.submit(local_open)
            brk = _wait_break_or_done(client, future)
            if brk is not None:
                acked_at = time.perf_counter()
                _ack(client, brk)
            t0, t1 = future.result(timeout=60)
    finally:
        handle.close()
        client.pending_breaks()
    # Coherent: the local open returned only after the client had answered the break (so
    # after it gave up, and could flush, what it cached).
    coherent = acked_at is not None and t1 >= acked_at
    return BreakProbe(granted, coherent, (t1 - t0) if coherent else None)


def directory_break_by_smb(holder: SmbLeaseClient, other: SmbLeaseClient, directory: str, index: int) -> BreakProbe:
    """`holder` caches `directory` with an RH lease; `other` creates a file in it. Latency:
    from the create being sent to the break reaching the holder."""
    holder.pending_breaks()
    handle, granted = open_directory(holder, directory, lease="RH")
    if not granted.startswith("lease"):
        handle.close()
        return BreakProbe(granted, False, None)
    access = Access.FILE_READ_DATA | Access.FILE_WRITE_DATA | Access.DELETE
    options = CreateOptions.FILE_NON_DIRECTORY_FILE | CreateOptions.FILE_DELETE_ON_CLOSE
    try:
        with ThreadPoolExecutor(1) as pool:
            t0 = time.perf_counter()
            future = pool.submit(smb_open, other, f"{directory}\\smb-{index}.tmp", access,
                                 CreateDisposition.FILE_CREATE, options)
            brk = _wait_break_or_done(holder, future)
            if brk is not None:
                _ack(holder, brk)
            created, _ = future.result(timeout=60)
            created.close()
    finally:
        handle.close()
        holder.pending_breaks()
    return BreakProbe(granted, brk is not None, (brk.received_at - t0) if brk is not None else None)


def directory_break_by_local(holder: SmbLeaseClient, share_dir: Path, directory: str, index: int) -> BreakProbe:
    """`holder` caches `directory` with an RH lease; a local process creates a file in it.
    Coherent when a break reaches the holder; latency from the local create call to the break."""
    holder.pending_breaks()
    handle, granted = open_directory(holder, directory, lease="RH")
    if not granted.startswith("lease"):
        handle.close()
        return BreakProbe(granted, False, None)
    path = share_dir / directory / f"local-{index}.tmp"

    def local_create() -> None:
        os.close(os.open(path, os.O_CREAT | os.O_WRONLY, 0o644))

    try:
        with ThreadPoolExecutor(1) as pool:
            t0 = time.perf_counter()
            future = pool.submit(local_create)
            brk = _wait_break_or_done(holder, future)
            if brk is not None:
                _ack(holder, brk)
            future.result(timeout=60)
    finally:
        handle.close()
        holder.pending_breaks()
        path.unlink(missing_ok=True)
    return BreakProbe(granted, brk is not None, (brk.received_at - t0) if brk is not None else None)


# -- memory ------------------------------------------------------------------------------------

def smbd_children(parent: int) -> set[int]:
    children = set()
    for entry in os.listdir("/proc"):
        if not entry.isdigit():
            continue
        try:
            stat = Path(f"/proc/{entry}/stat").read_text()
        except OSError:
            continue
        # comm may hold spaces or parentheses: the fields after the last ')' are fixed.
        if int(stat.rsplit(")", 1)[1].split()[1]) == parent:
            children.add(int(entry))
    return children


def server_cpu_ns(pid: int) -> int:
    """CPU time of every live thread of an smbd child, in ns (schedstat: exact, unlike the
    10 ms ticks of /proc/<pid>/stat). A thread that exited between two readings is lost."""
    total = 0
    for task in os.listdir(f"/proc/{pid}/task"):
        try:
            total += int(Path(f"/proc/{pid}/task/{task}/schedstat").read_text().split()[0])
        except (OSError, ValueError, IndexError):
            pass
    return total


def memory_kib(pid: int) -> dict[str, int]:
    values = {}
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        key, _, rest = line.partition(":")
        if key in ("VmRSS", "VmHWM"):
            values[key] = int(rest.split()[0])
    return values


def hold_many_leased_files(client: SmbLeaseClient, prefix: str, count: int, deadline: float) -> list[tuple[Open, str]]:
    """Creates and keeps open `count` files, each asking for its own RWH lease; returns the
    handles with what each was granted."""
    handles = []
    for i in range(count):
        handles.append(open_file(client, f"{prefix}-{i}.dat", lease="RWH", create=True))
        if time.perf_counter() > deadline:
            break
    return handles
