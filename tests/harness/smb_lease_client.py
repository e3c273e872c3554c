"""An SMB2/3 client that holds leases and oplocks and acknowledges their breaks.

Built on python smbprotocol 1.17. As shipped, its receive thread looks every server message up
among the pending requests by MessageId; a server-initiated break (MS-SMB2 2.2.23) carries
MessageId 0xFFFFFFFFFFFFFFFF, the lookup raises KeyError and the connection is dropped. We
register our own object under that MessageId: the thread hands it each break as if it were a
response, and it queues them. smbprotocol has no break acknowledgement messages, so they are
built here from the specification (2.2.24.1 oplock, 2.2.24.2 lease).
"""
from __future__ import annotations

import queue
import struct
import threading
import time
import uuid
from dataclasses import dataclass

from smbprotocol.connection import Connection
from smbprotocol.create_contexts import (CreateContextName, SMB2CreateContextRequest,
                                         SMB2CreateDurableHandleReconnectV2,
                                         SMB2CreateDurableHandleRequestV2,
                                         SMB2CreateRequestLeaseV2, SMB2CreateResponseLeaseV2)
from smbprotocol.file_info import (FileBasicInformation, FileDispositionInformation,
                                    FileRenameInformation)
from smbprotocol.header import Commands, NtStatus

from smbprotocol.open import (CreateDisposition, CreateOptions, FilePipePrinterAccessMask,
                              ImpersonationLevel, Open, RequestedOplockLevel, SMB2SetInfoRequest,
                              ShareAccess)
from smbprotocol.session import Session
from smbprotocol.tree import TreeConnect

from .netns import NetNamespace

BREAK_MESSAGE_ID = 0xFFFFFFFFFFFFFFFF
LEASE_R, LEASE_H, LEASE_W = 0x1, 0x2, 0x4
STATUS_SUCCESS = NtStatus.STATUS_SUCCESS


def lease_state(text: str) -> int:
    """"RWH" -> SMB2_LEASE_READ|WRITE|HANDLE_CACHING; "" -> NONE."""
    bits = {"R": LEASE_R, "H": LEASE_H, "W": LEASE_W}
    return sum(bits[c] for c in set(text.upper()))


def lease_text(state: int) -> str:
    return "".join(c for c, b in (("R", LEASE_R), ("W", LEASE_W), ("H", LEASE_H)) if state & b)


@dataclass
class LeaseBreak:
    """MS-SMB2 2.2.23.2 Lease Break Notification."""
    lease_key: bytes
    current: int
    new: int
    ack_required: bool
    epoch: int
    received_at: float = 0.0  # time.perf_counter() when the receive thread got it


@dataclass
class OplockBreak:
    """MS-SMB2 2.2.23.1 Oplock Break Notification."""
    file_id: bytes
    new_level: int
    received_at: float = 0.0  # time.perf_counter() when the receive thread got it


class _Field:
    def __init__(self, value: int):
        self.value = value

    def get_value(self) -> int:
        return self.value


class _BreakSink:
    """Stands in for a smbprotocol `Request` under MessageId 0xFFFFFFFFFFFFFFFF. The receive
    thread assigns each break notification's header to `.response`, which queues it; it reads
    `.session_id`, `.message["reserved"|"command"]`, `.response_event_lock`, and calls
    `.response_event.set()` (a no-op here)."""

    def __init__(self):
        self.breaks: queue.Queue = queue.Queue()
        self.session_id = None
        self.response_event_lock = threading.Lock()
        self.response_event = self
        self.message = {"reserved": _Field(0), "command": _Field(Commands.SMB2_OPLOCK_BREAK)}
        self.async_id = None

    @property
    def response(self):
        return None  # never "answered": the keep-alive check must not treat it as a stale echo

    @response.setter
    def response(self, header) -> None:
        received_at = time.perf_counter()
        body = header["data"].get_value()
        size = struct.unpack_from("<H", body, 0)[0]
        if size == 44:
            epoch, flags, key, current, new = struct.unpack_from("<HI16sII", body, 2)
            self.breaks.put(LeaseBreak(key, current, new, bool(flags & 0x1), epoch, received_at))
        elif size == 24:
            self.breaks.put(OplockBreak(body[8:24], body[2], received_at))

    def set(self) -> None:
        pass

    def wait(self, timeout=None) -> bool:
        return True

    def clear(self) -> None:
        pass


class _RawMessage:
    """A request body smbprotocol sends as is (it needs only COMMAND, pack() and len())."""

    def __init__(self, command: int, body: bytes):
        self.COMMAND = command
        self.body = body

    def pack(self) -> bytes:
        return self.body

    def __len__(self) -> int:
        return len(self.body)


@dataclass
class SmbOpen:
    handle: Open
    lease_key: bytes | None
    lease_state: int          # granted lease state (0 when none)
    oplock_level: int         # granted oplock level (0xFF when a lease was granted)
    create_guid: uuid.UUID | None = None   # set when a durable (v2) handle was asked for
    durable: bool = False     # the server granted a durable handle

    def read(self, offset: int = 0, length: int | None = None) -> bytes:
        size = self.handle.end_of_file if length is None else length
        return self.handle.read(offset, size) if size else b""

    def write(self, data: bytes, offset: int = 0) -> int:
        return self.handle.write(data, offset)

    def close(self) -> None:
        self.handle.close()


@dataclass
class PendingOpen:
    """A create sent and not yet answered: `result()` waits for it (raising the server's
    error status as smbprotocol's SMBResponseException); `cancel()` sends SMB2 CANCEL."""
    request: object
    _finish: object

    def interim_received(self) -> bool:
        """The server answered STATUS_PENDING (the request went async)."""
        return self.request.async_id is not None

    def cancel(self) -> None:
        self.request.cancel()

    def result(self) -> SmbOpen:
        return self._finish()


class SmbLeaseClient:
    """One SMB connection, session and tree connect to //`server`/`share` (127.0.0.1 unless
    given), made inside `netns` when given (the socket stays there for the connection's
    lifetime). `client_guid`: the SMB client GUID (a durable reconnect must reuse the one of
    the original connection)."""

    def __init__(self, share: str, user: str, password: str, port: int = 445,
                 netns: NetNamespace | None = None, timeout: float = 30.0,
                 server: str = "127.0.0.1", client_guid: uuid.UUID | None = None):
        self.timeout = timeout
        self.server = server
        self.client_guid = client_guid or uuid.uuid4()
        # Signing: against Samba without encryption, smbprotocol's tree connect fails otherwise.
        self.connection = Connection(self.client_guid, server, port, require_signing=True)
        if netns:
            with netns.entered():
                self.connection.connect(timeout=timeout)
        else:
            self.connection.connect(timeout=timeout)
        self._sink = _BreakSink()
        self.connection.outstanding_requests[BREAK_MESSAGE_ID] = self._sink
        self.session = Session(self.connection, user, password, require_encryption=False,
                               auth_protocol="ntlm")
        self.session.connect()
        self.tree = TreeConnect(self.session, rf"\\{server}\{share}")
        self.tree.connect()

    def open(self, path: str, lease: str | None = "RWH", oplock: int | None = None,
             write: bool = True, create: bool = True, share_access: int | None = None,
             directory: bool = False, parent_lease_key: bytes | None = None,
             delete: bool = False, durable: bool = False, lease_key: bytes | None = None,
             reconnect: SmbOpen | None = None, pending: bool = False,
             data: bool = True) -> SmbOpen:
        """Opens `path` asking for a v2 lease of state `lease` (e.g. "RWH", "RH", "R"), or for
        oplock level `oplock` (RequestedOplockLevel) when `lease` is None. `directory` opens
        (or creates) a directory; `parent_lease_key` is the lease key the client holds on the
        parent directory (MS-SMB2 2.2.13.2.10: smbd then spares that directory lease when
        this create changes the directory); `delete` asks for DELETE access too. `durable`
        asks for a durable v2 handle (MS-SMB2 2.2.13.2.11); `reconnect` reclaims the durable
        handle of an earlier open of `path` instead (2.2.13.2.12, with that open's lease key).
        `pending`: send the create and return a `PendingOpen` at once (to see it wait, or to
        cancel it). `data=False` asks for no data access (as Windows opens to delete, rename
        or set attributes): `write` then means FILE_WRITE_ATTRIBUTES alone."""
        handle = Open(self.tree, path)
        access = FilePipePrinterAccessMask.FILE_READ_ATTRIBUTES
        if data:
            access |= FilePipePrinterAccessMask.FILE_READ_DATA
        if write:
            access |= FilePipePrinterAccessMask.FILE_WRITE_ATTRIBUTES
            if data:
                access |= FilePipePrinterAccessMask.FILE_WRITE_DATA
        if delete:
            access |= FilePipePrinterAccessMask.DELETE
        if share_access is None:
            share_access = ShareAccess.FILE_SHARE_READ | ShareAccess.FILE_SHARE_WRITE | ShareAccess.FILE_SHARE_DELETE
        contexts, key, create_guid = [], None, None
        level = RequestedOplockLevel.SMB2_OPLOCK_LEVEL_NONE if oplock is None else oplock
        if reconnect is not None:
            lease_key = reconnect.lease_key
            create_guid = reconnect.create_guid
            request = SMB2CreateDurableHandleReconnectV2()
            request["file_id"] = reconnect.handle.file_id
            request["create_guid"] = create_guid
            request["flags"] = 0
            context = SMB2CreateContextRequest()
            context["buffer_name"] = CreateContextName.SMB2_CREATE_DURABLE_HANDLE_RECONNECT_V2
            context["buffer_data"] = request
            contexts.append(context)
        elif durable:
            create_guid = uuid.uuid4()
            request = SMB2CreateDurableHandleRequestV2()
            request["timeout"] = 0          # the server's default (Samba: 60 s)
            request["flags"] = 0
            request["create_guid"] = create_guid
            context = SMB2CreateContextRequest()
            context["buffer_name"] = CreateContextName.SMB2_CREATE_DURABLE_HANDLE_REQUEST_V2
            context["buffer_data"] = request
            contexts.append(context)
        if lease is not None:
            key = lease_key or uuid.uuid4().bytes
            request = SMB2CreateRequestLeaseV2()
            request["lease_key"] = key
            request["lease_state"] = lease_state(lease)
            request["parent_lease_key"] = parent_lease_key or b"\x00" * 16
            if parent_lease_key:
                request["lease_flags"] = 0x4  # SMB2_LEASE_FLAG_PARENT_LEASE_KEY_SET
            request["epoch"] = b"\x00\x00"
            context = SMB2CreateContextRequest()
            context["buffer_name"] = CreateContextName.SMB2_CREATE_REQUEST_LEASE_V2
            context["buffer_data"] = request
            contexts.append(context)
            level = RequestedOplockLevel.SMB2_OPLOCK_LEVEL_LEASE
        create_request, receive = handle.create(
            ImpersonationLevel.Impersonation, access, 0, share_access,
            CreateDisposition.FILE_OPEN_IF if create else CreateDisposition.FILE_OPEN,
            CreateOptions.FILE_DIRECTORY_FILE if directory else CreateOptions.FILE_NON_DIRECTORY_FILE,
            create_contexts=contexts, oplock_level=level, send=False)

        def finish(responses) -> SmbOpen:
            granted, got_durable = 0, False
            for response in responses or []:
                if isinstance(response, SMB2CreateResponseLeaseV2):
                    granted = response["lease_state"].get_value()
                elif type(response).__name__ == "SMB2CreateDurableHandleResponseV2":
                    got_durable = True
            return SmbOpen(handle, key, granted, handle.oplock_level, create_guid,
                           got_durable or reconnect is not None)

        request = self.connection.send(create_request, self.session.session_id,
                                       self.tree.tree_connect_id)
        if pending:
            return PendingOpen(request, lambda: finish(receive(request)))
        return finish(receive(request))

    def rename(self, old: str, new: str, data: bool = True) -> None:
        """Renames `old` to `new` (share-relative) through smbd (FileRenameInformation)."""
        f = self.open(old, lease=None, write=False, create=False, delete=True, data=data)
        self.rename_open(f, new)
        f.close()

    def rename_open(self, f: SmbOpen, new: str) -> None:
        """Renames the file open as `f` (opened with DELETE access) to `new`."""
        info = FileRenameInformation()
        info["replace_if_exists"] = False
        info["file_name"] = new.replace("/", "\\")
        self._set_info(f, info)

    def delete(self, path: str, data: bool = True) -> None:
        """Deletes `path` through smbd (FileDispositionInformation, then close)."""
        f = self.open(path, lease=None, write=False, create=False, delete=True, data=data)
        self.mark_deleted(f)
        f.close()

    def mark_deleted(self, f: SmbOpen) -> None:
        """Sets delete-pending on `f` (opened with DELETE access): its close deletes it."""
        info = FileDispositionInformation()
        info["delete_pending"] = True
        self._set_info(f, info)

    def set_write_time(self, f: SmbOpen, unix_time: float) -> None:
        """Sets the last write time of `f` (opened with FILE_WRITE_ATTRIBUTES) through smbd
        (FileBasicInformation; the other times and the attributes 0: unchanged)."""
        info = FileBasicInformation()
        info["last_write_time"] = int((unix_time + 11644473600) * 10_000_000)   # FILETIME
        self._set_info(f, info)

    def _set_info(self, f: SmbOpen, info) -> None:
        request = SMB2SetInfoRequest()
        request["info_type"] = info.INFO_TYPE
        request["file_info_class"] = info.INFO_CLASS
        request["file_id"] = f.handle.file_id
        request["buffer"] = info
        sent = self.connection.send(request, sid=self.session.session_id, tid=self.tree.tree_connect_id)
        self.connection.receive(sent)  # raises on an error status

    def wait_break(self, timeout: float = 30.0) -> LeaseBreak | OplockBreak:
        """The next break the server sent; raises TimeoutError if none came within `timeout`."""
        try:
            return self._sink.breaks.get(timeout=timeout)
        except queue.Empty:
            raise TimeoutError(f"no oplock/lease break within {timeout}s") from None

    def pending_breaks(self) -> list:
        out = []
        while True:
            try:
                out.append(self._sink.breaks.get_nowait())
            except queue.Empty:
                return out

    def ack_lease_break(self, brk: LeaseBreak, new_state: int | None = None) -> int:
        """Sends an SMB2 Lease Break Acknowledgment (2.2.24.2, 36 bytes); returns the NTSTATUS."""
        state = brk.new if new_state is None else new_state
        body = struct.pack("<HHI16sIQ", 36, 0, 0, brk.lease_key, state, 0)
        return self._send_ack(body)

    def ack_oplock_break(self, brk: OplockBreak, level: int | None = None) -> int:
        """Sends an SMB2 Oplock Break Acknowledgment (2.2.24.1, 24 bytes); returns the NTSTATUS."""
        body = struct.pack("<HBBI16s", 24, brk.new_level if level is None else level, 0, 0, brk.file_id)
        return self._send_ack(body)

    def _send_ack(self, body: bytes) -> int:
        request = self.connection.send(_RawMessage(Commands.SMB2_OPLOCK_BREAK, body),
                                       sid=self.session.session_id, tid=self.tree.tree_connect_id)
        # receive() raises on an error status; the caller wants to see it, so wait by hand.
        if not request.response_event.wait(self.timeout):
            raise TimeoutError("no answer to the break acknowledgment")
        self.connection.outstanding_requests.pop(request.message["message_id"].get_value(), None)
        return request.response["status"].get_value()

    def __enter__(self) -> "SmbLeaseClient":
        return self

    def __exit__(self, *exc) -> None:
        self.close()

    def close(self) -> None:
        transport = self.connection.transport
        if transport is None or not transport.connected:
            return              # already closed, or the server dropped it
        self.connection.outstanding_requests.pop(BREAK_MESSAGE_ID, None)
        try:
            self.connection.disconnect(True)
        except Exception:  # noqa: BLE001 - a dead connection needs no logoff
            self.connection.disconnect(False)

