//! The bridge's socket: SOCK_SEQPACKET unix sockets carrying one protocol message per packet,
//! file descriptors passed with SCM_RIGHTS, and the peer's credentials from SO_PEERCRED.
//!
//! SEQPACKET keeps message boundaries (one `recv` = one message, no framing to get wrong)
//! and, unlike datagrams, is connection-oriented, so the peer's credentials are fixed at
//! `connect()` time and a dead peer shows up as end-of-file.
use std::io::{self, IoSlice, IoSliceMut};
use std::mem::MaybeUninit;
use std::os::fd::{AsFd, BorrowedFd, OwnedFd};
use std::path::Path;

use rustix::net::{
    self, AddressFamily, RecvAncillaryBuffer, RecvAncillaryMessage, RecvFlags, ReturnFlags,
    SendAncillaryBuffer, SendAncillaryMessage, SendFlags, SocketAddrUnix, SocketFlags, SocketType,
};

/// The most descriptors one message may carry (the protocol needs one at most; a peer that
/// sends more has its extra descriptors closed and the message refused).
pub const MAX_FDS_PER_MESSAGE: usize = 4;

/// The largest message the protocol produces, with room to spare (paths are capped at 4096).
pub const MAX_MESSAGE_LEN: usize = 8192;

/// Who is on the other end of a connected unix socket, as the kernel recorded it at connect.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct PeerCredentials {
    pub pid: u32,
    pub uid: u32,
    pub gid: u32,
}

/// A received message: its bytes and the descriptors that came with it (closed on drop).
#[derive(Debug)]
pub struct Received {
    pub bytes: Vec<u8>,
    pub fds: Vec<OwnedFd>,
}

/// Two connected SOCK_SEQPACKET sockets (close-on-exec).
pub fn seqpacket_pair() -> io::Result<(OwnedFd, OwnedFd)> {
    Ok(net::socketpair(
        AddressFamily::UNIX,
        SocketType::SEQPACKET,
        SocketFlags::CLOEXEC,
        None,
    )?)
}

/// A listening SOCK_SEQPACKET socket bound at `path` (which must not exist yet).
pub fn listen_seqpacket(path: &Path, backlog: i32) -> io::Result<OwnedFd> {
    let socket = net::socket_with(
        AddressFamily::UNIX,
        SocketType::SEQPACKET,
        SocketFlags::CLOEXEC,
        None,
    )?;
    net::bind(&socket, &SocketAddrUnix::new(path)?)?;
    net::listen(&socket, backlog)?;
    Ok(socket)
}

/// Accepts one connection on a socket from [`listen_seqpacket`].
pub fn accept_seqpacket(listener: BorrowedFd<'_>) -> io::Result<OwnedFd> {
    Ok(net::accept_with(listener, SocketFlags::CLOEXEC)?)
}

/// Connects to the bridge socket at `path`.
pub fn connect_seqpacket(path: &Path) -> io::Result<OwnedFd> {
    let socket = net::socket_with(
        AddressFamily::UNIX,
        SocketType::SEQPACKET,
        SocketFlags::CLOEXEC,
        None,
    )?;
    net::connect(&socket, &SocketAddrUnix::new(path)?)?;
    Ok(socket)
}

/// The credentials of the process that connected (or created the pair): the kernel's record,
/// which the peer cannot forge. Identifies the smbd that sent a request.
pub fn peer_credentials(socket: BorrowedFd<'_>) -> io::Result<PeerCredentials> {
    let cred = net::sockopt::socket_peercred(socket)?;
    Ok(PeerCredentials {
        pid: cred.pid.as_raw_nonzero().get() as u32,
        uid: cred.uid.as_raw(),
        gid: cred.gid.as_raw(),
    })
}

/// Sends one message with `fds` attached (each is duplicated into the receiver).
pub fn send_message(
    socket: BorrowedFd<'_>,
    bytes: &[u8],
    fds: &[BorrowedFd<'_>],
) -> io::Result<()> {
    if fds.len() > MAX_FDS_PER_MESSAGE {
        return Err(io::Error::new(
            io::ErrorKind::InvalidInput,
            "too many descriptors for one message",
        ));
    }
    let mut space =
        [MaybeUninit::<u8>::uninit(); rustix::cmsg_space!(ScmRights(MAX_FDS_PER_MESSAGE))];
    let mut control = SendAncillaryBuffer::new(&mut space);
    if !fds.is_empty() && !control.push(SendAncillaryMessage::ScmRights(fds)) {
        return Err(io::Error::new(
            io::ErrorKind::InvalidInput,
            "descriptors do not fit the control buffer",
        ));
    }
    // MSG_NOSIGNAL: a dead peer must be an EPIPE to handle, not a SIGPIPE that kills smbd.
    let sent = net::sendmsg(
        socket,
        &[IoSlice::new(bytes)],
        &mut control,
        SendFlags::NOSIGNAL,
    )?;
    if sent != bytes.len() {
        return Err(io::Error::new(
            io::ErrorKind::WriteZero,
            "message sent in part",
        ));
    }
    Ok(())
}

/// Receives one message. `Ok(None)` means the peer closed the connection.
///
/// A message longer than [`MAX_MESSAGE_LEN`] or whose descriptors did not all fit is refused
/// (`InvalidData`); the descriptors that did arrive are closed, never leaked.
pub fn recv_message(socket: BorrowedFd<'_>) -> io::Result<Option<Received>> {
    let mut buffer = vec![0u8; MAX_MESSAGE_LEN + 1];
    let mut space =
        [MaybeUninit::<u8>::uninit(); rustix::cmsg_space!(ScmRights(MAX_FDS_PER_MESSAGE))];
    let mut control = RecvAncillaryBuffer::new(&mut space);
    let received = net::recvmsg(
        socket,
        &mut [IoSliceMut::new(&mut buffer)],
        &mut control,
        RecvFlags::CMSG_CLOEXEC,
    )?;
    let mut fds = Vec::new();
    for message in control.drain() {
        if let RecvAncillaryMessage::ScmRights(rights) = message {
            fds.extend(rights);
        }
    }
    if received.bytes == 0 && fds.is_empty() {
        return Ok(None);
    }
    if received.flags.contains(ReturnFlags::CTRUNC) {
        return Err(io::Error::new(
            io::ErrorKind::InvalidData,
            "peer sent more descriptors than allowed",
        ));
    }
    if received.bytes > MAX_MESSAGE_LEN || received.flags.contains(ReturnFlags::TRUNC) {
        return Err(io::Error::new(
            io::ErrorKind::InvalidData,
            "message longer than the protocol allows",
        ));
    }
    buffer.truncate(received.bytes);
    Ok(Some(Received { bytes: buffer, fds }))
}

/// Convenience for tests and callers holding owned descriptors.
pub fn borrow_all(fds: &[OwnedFd]) -> Vec<BorrowedFd<'_>> {
    fds.iter().map(AsFd::as_fd).collect()
}
