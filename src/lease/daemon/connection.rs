//! One smbd's (or admin's) connection to the bridge: its peer, the messages queued for it,
//! and the break notices it has not answered.
use std::collections::{HashMap, VecDeque};
use std::io;
use std::os::fd::{AsFd, OwnedFd};

use crate::lease::protocol::Message;
use crate::lease::table::InodeKey;
use crate::lease::transport::{self, PeerCredentials};

/// More queued messages than this means the peer stopped reading: it is disconnected (its
/// opens are dropped as if it had died) rather than letting the bridge's memory grow.
pub const MAX_QUEUED_MESSAGES: usize = 65_536;

/// Why a connection has to go.
#[derive(Debug)]
pub enum Gone {
    /// The peer closed its end (smbd exited or crashed).
    Eof,
    /// A socket error, a malformed message, or a peer that does not read.
    Failed(String),
}

pub struct Connection {
    pub socket: OwnedFd,
    pub peer: PeerCredentials,
    /// Packets not yet sent (the socket was full): bytes and the descriptor they carry.
    outgoing: VecDeque<(Vec<u8>, Option<OwnedFd>)>,
    next_request_id: u64,
    /// `BreakNotify` request ids sent and not yet acknowledged, with their inode.
    pub notifies: HashMap<u64, InodeKey>,
    /// The peer handles the bridge's lease break signal (`DirectBreaks`): it may be made the
    /// signal's receiver for files only its clients cache on.
    pub direct_breaks: bool,
}

impl Connection {
    pub fn new(socket: OwnedFd, peer: PeerCredentials) -> Connection {
        Connection {
            socket,
            peer,
            outgoing: VecDeque::new(),
            // The bridge's own request ids count from the top half so that a log line never
            // confuses them with the smbd's.
            next_request_id: 1 << 63,
            notifies: HashMap::new(),
            direct_breaks: false,
        }
    }

    pub fn next_request_id(&mut self) -> u64 {
        let id = self.next_request_id;
        self.next_request_id = self.next_request_id.wrapping_add(1) | 1 << 63;
        id
    }

    pub fn wants_to_write(&self) -> bool {
        !self.outgoing.is_empty()
    }

    /// Queues a message (with its descriptor) and sends what the socket takes now.
    pub fn send(&mut self, message: &Message, fd: Option<OwnedFd>) -> Result<(), Gone> {
        if self.outgoing.len() >= MAX_QUEUED_MESSAGES {
            return Err(Gone::Failed(format!(
                "{MAX_QUEUED_MESSAGES} messages queued: the peer does not read"
            )));
        }
        self.outgoing.push_back((message.encode(), fd));
        self.flush()
    }

    /// Sends queued packets until the socket is full (never blocks).
    pub fn flush(&mut self) -> Result<(), Gone> {
        while let Some((bytes, fd)) = self.outgoing.front() {
            let fds: Vec<_> = fd.iter().map(AsFd::as_fd).collect();
            match transport::send_message(self.socket.as_fd(), bytes, &fds) {
                Ok(()) => {
                    self.outgoing.pop_front();
                }
                Err(error) if error.kind() == io::ErrorKind::WouldBlock => break,
                Err(error) if error.kind() == io::ErrorKind::Interrupted => continue,
                Err(error) => return Err(Gone::Failed(format!("send: {error}"))),
            }
        }
        Ok(())
    }
}
