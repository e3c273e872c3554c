//! The smbd side of the bridge socket: a blocking, synchronous client that never hangs smbd.
//!
//! Every wait is bounded ([`DEFAULT_TIMEOUT`], then ETIMEDOUT); the socket itself is
//! non-blocking, so smbd can watch [`BridgeClient::as_raw_fd`] in its event loop and call
//! [`BridgeClient::take_break_requests`] when it is readable. Break notices that arrive while
//! the client waits for a reply are queued, never lost; replies nobody waits for any more
//! (those of `close`, or of a request that timed out) are discarded when they arrive.
//!
//! smbd must connect while it is root and in the process that will use the connection: the
//! bridge takes the smbd's pid and uid from SO_PEERCRED at `connect()`.
use std::collections::VecDeque;
use std::io::{self, Read};
use std::os::fd::{AsFd, AsRawFd, BorrowedFd, OwnedFd, RawFd};
use std::path::Path;
use std::time::{Duration, Instant};

use rustix::event::{PollFd, PollFlags};

use super::failover::{GraceEntry, ReleaseReport, ReleaseScope};
use super::kernel::LeaseType;
use super::listing::LeaseListing;
use super::protocol::{self, Message, Provisional, WireUnit};
use super::table::{Caching, GrantKind, InodeKey};
use super::transport;

/// How long a request waits for the bridge before giving up with ETIMEDOUT.
pub const DEFAULT_TIMEOUT: Duration = Duration::from_secs(5);

/// A break the bridge asks smbd to send to a client (answer with [`BridgeClient::break_ack`]
/// and this `request_id`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct BreakRequest {
    pub request_id: u64,
    pub inode: InodeKey,
    pub unit: WireUnit,
    pub current: Caching,
    pub break_to: Caching,
    /// See `Message::BreakNotify`: 0, or when this smbd may stop releasing the lease itself.
    pub release_until: u64,
}

/// What [`BridgeClient::open_description_granting`] answers.
#[derive(Debug)]
pub struct OpenedDescription {
    pub description: OwnedFd,
    pub inode: InodeKey,
    pub writable: bool,
    /// What the provisional grant got (none without one).
    pub caching: Caching,
    /// The bridge's descriptor number of the description (the `si_fd` of its break signal).
    pub bridge_fd: i32,
}

/// A failover request the bridge sends unasked (`super::failover`).
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum FailoverRequest {
    /// End this smbd's client connection if it is within `scope`; answer with
    /// [`BridgeClient::release_answer`] and this `request_id`.
    Release { request_id: u64, scope: ReleaseScope },
    /// The grace periods in force now (they replace the ones known before).
    Grace(Vec<GraceEntry>),
}

pub struct BridgeClient {
    socket: OwnedFd,
    next_request_id: u64,
    /// Break requests received while waiting for a reply.
    queued: VecDeque<BreakRequest>,
    /// Failover requests received while waiting for a reply or reading break requests.
    failover_queued: VecDeque<FailoverRequest>,
    timeout: Duration,
}

/// The JSON answer the bridge sent in its one memfd (see `Message::LeaseList`).
fn read_json_memfd<T: serde::de::DeserializeOwned>(fds: Vec<OwnedFd>) -> io::Result<T> {
    let mut json = Vec::new();
    let mut memfd = std::fs::File::from(fds.into_iter().next().expect("one fd"));
    memfd.read_to_end(&mut json)?;
    serde_json::from_slice(&json).map_err(|error| io::Error::new(io::ErrorKind::InvalidData, error))
}

fn timed_out() -> io::Error {
    io::Error::from_raw_os_error(libc::ETIMEDOUT)
}

fn unexpected(message: &Message) -> io::Error {
    io::Error::new(
        io::ErrorKind::InvalidData,
        format!("unexpected reply from the lease bridge: {message:?}"),
    )
}

impl BridgeClient {
    /// Connects to the bridge listening at `path`.
    pub fn connect(path: &Path) -> io::Result<BridgeClient> {
        let socket = transport::connect_seqpacket(path)?;
        rustix::io::ioctl_fionbio(&socket, true)?;
        Ok(BridgeClient {
            socket,
            next_request_id: 1,
            queued: VecDeque::new(),
            failover_queued: VecDeque::new(),
            timeout: DEFAULT_TIMEOUT,
        })
    }

    /// Changes the bound on every wait (default [`DEFAULT_TIMEOUT`]).
    pub fn set_timeout(&mut self, timeout: Duration) {
        self.timeout = timeout;
    }

    /// The socket, for smbd's event loop to watch for readability.
    pub fn as_raw_fd(&self) -> RawFd {
        self.socket.as_raw_fd()
    }

    /// A dup of the shared description of the file `reference` (an O_PATH descriptor is
    /// enough) refers to, its inode, and whether it is writable. The bridge's errno comes back
    /// as the error (EWOULDBLOCK: a local process holds a lease, retry later; EPERM or the
    /// errno O_RDWR got: write wanted on a read-only description; EACCES: not a configured
    /// share, or the file is outside it; EINVAL: not a regular file).
    pub fn open_description(
        &mut self,
        reference: BorrowedFd<'_>,
        share_path: &str,
        file_id: u64,
        want_write: bool,
        nonblocking: bool,
    ) -> io::Result<(OwnedFd, InodeKey, bool)> {
        self.open_description_granting(reference, share_path, file_id, want_write, nonblocking, None)
            .map(|opened| (opened.description, opened.inode, opened.writable))
    }

    /// [`BridgeClient::open_description`] that also grants `provisional` (what the SMB
    /// create asked for) on the new open in the same round trip; `caching` in the answer is
    /// what the kernel lease backs. Lower it afterwards with [`BridgeClient::adjust_grant`].
    pub fn open_description_granting(
        &mut self,
        reference: BorrowedFd<'_>,
        share_path: &str,
        file_id: u64,
        want_write: bool,
        nonblocking: bool,
        provisional: Option<Provisional>,
    ) -> io::Result<OpenedDescription> {
        let request_id = self.new_request_id();
        let request = Message::OpenDescription {
            request_id,
            share_path: share_path.to_string(),
            file_id,
            want_write,
            nonblocking,
            provisional,
        };
        match self.request(&request, &[reference])? {
            (
                Message::DescriptionOpened {
                    inode,
                    writable,
                    caching,
                    bridge_fd,
                    ..
                },
                mut fds,
            ) if fds.len() == 1 => Ok(OpenedDescription {
                description: fds.remove(0),
                inode,
                writable,
                caching,
                bridge_fd: bridge_fd as i32,
            }),
            (other, _) => Err(unexpected(&other)),
        }
    }

    /// Open `file_id` caches only `caching` now (no more than it was granted). Sends and
    /// returns (no reply).
    pub fn adjust_grant(&mut self, inode: InodeKey, file_id: u64, caching: Caching) -> io::Result<()> {
        let request_id = self.new_request_id();
        self.send(
            &Message::AdjustGrant {
                request_id,
                inode,
                file_id,
                caching,
            },
            &[],
            self.deadline(),
        )
    }

    /// Asks the bridge to back `requested` caching on open `file_id` with a kernel lease;
    /// returns what it backs (the client must be granted no more).
    #[allow(clippy::too_many_arguments)] // the smbd module's API, agreed as is
    pub fn grant(
        &mut self,
        inode: InodeKey,
        file_id: u64,
        kind: GrantKind,
        requested: Caching,
        share_path: &str,
        client_address: &str,
        server_address: &str,
    ) -> io::Result<Caching> {
        Ok(self
            .grant_with_lease(
                inode,
                file_id,
                kind,
                requested,
                share_path,
                client_address,
                server_address,
            )?
            .0)
    }

    /// [`BridgeClient::grant`], also returning the kernel lease now on the description.
    #[allow(clippy::too_many_arguments)]
    pub fn grant_with_lease(
        &mut self,
        inode: InodeKey,
        file_id: u64,
        kind: GrantKind,
        requested: Caching,
        share_path: &str,
        client_address: &str,
        server_address: &str,
    ) -> io::Result<(Caching, Option<LeaseType>)> {
        let request_id = self.new_request_id();
        let request = Message::Grant {
            request_id,
            inode,
            file_id,
            kind,
            requested,
            share_path: share_path.to_string(),
            client_address: client_address.to_string(),
            server_address: server_address.to_string(),
        };
        match self.request(&request, &[])? {
            (
                Message::Granted {
                    caching,
                    kernel_lease,
                    ..
                },
                _,
            ) => Ok((caching, kernel_lease)),
            (other, _) => Err(unexpected(&other)),
        }
    }

    /// Tells the bridge that this process handles signal `signo` (`SA_SIGINFO`), so it may
    /// receive the kernel's lease break signals of files only its clients cache on
    /// ([`Message::DirectBreaks`]). The bridge's break timeout when it accepts; EINVAL when it
    /// signals another number.
    pub fn direct_breaks(&mut self, signo: i32) -> io::Result<Duration> {
        let request_id = self.new_request_id();
        let request = Message::DirectBreaks {
            request_id,
            signo: signo as u32,
        };
        match self.request(&request, &[])? {
            (Message::DirectBreaksAccepted { break_timeout_ms, .. }, _) => {
                Ok(Duration::from_millis(break_timeout_ms))
            }
            (other, _) => Err(unexpected(&other)),
        }
    }

    /// Hands a break signalled to this process back to the bridge (no reply).
    pub fn break_seen(&mut self, inode: InodeKey) -> io::Result<()> {
        let request_id = self.new_request_id();
        self.send(&Message::BreakSeen { request_id, inode }, &[], self.deadline())
    }

    /// Tells the bridge open `file_id` is closed. Sends and returns (the bridge sends no reply).
    pub fn close(&mut self, inode: InodeKey, file_id: u64) -> io::Result<()> {
        let request_id = self.new_request_id();
        self.send(
            &Message::Close {
                request_id,
                inode,
                file_id,
            },
            &[],
            self.deadline(),
        )
    }

    /// Answers a [`BreakRequest`]: the client now caches `caching`. Sends and returns.
    pub fn break_ack(
        &mut self,
        request_id: u64,
        inode: InodeKey,
        unit: WireUnit,
        caching: Caching,
    ) -> io::Result<()> {
        self.send(
            &Message::BreakAck {
                request_id,
                inode,
                unit,
                caching,
            },
            &[],
            self.deadline(),
        )
    }

    /// Whether break (or failover) requests arrived while a request waited for its reply. The
    /// socket no longer reads as ready for them, so the caller must take them without waiting
    /// for it.
    pub fn has_queued_requests(&self) -> bool {
        !self.queued.is_empty() || !self.failover_queued.is_empty()
    }

    /// Every break request queued or readable now, without waiting. `UnexpectedEof` once the
    /// bridge is gone (after the requests that arrived before it went).
    pub fn take_break_requests(&mut self) -> io::Result<Vec<BreakRequest>> {
        loop {
            match self.receive_now() {
                Ok(Some((message, _))) => self.keep_if_break_request(message),
                Ok(None) => break,
                Err(error) if error.kind() == io::ErrorKind::UnexpectedEof => {
                    if self.queued.is_empty() {
                        return Err(error);
                    }
                    break;
                }
                Err(error) => return Err(error),
            }
        }
        Ok(self.queued.drain(..).collect())
    }

    /// The bridge's lease table (root only: anyone else gets EPERM).
    pub fn list_leases(&mut self) -> io::Result<LeaseListing> {
        let request_id = self.new_request_id();
        match self.request(&Message::ListLeases { request_id }, &[])? {
            (Message::LeaseList { .. }, fds) if fds.len() == 1 => read_json_memfd(fds),
            (other, _) => Err(unexpected(&other)),
        }
    }

    /// Failover requests received so far (by any call that read the socket), without reading
    /// it: call after [`BridgeClient::take_break_requests`].
    pub fn take_failover_requests(&mut self) -> Vec<FailoverRequest> {
        self.failover_queued.drain(..).collect()
    }

    /// The grace periods in force now (smbd asks once after connecting; changes come as
    /// [`FailoverRequest::Grace`]).
    pub fn grace_query(&mut self) -> io::Result<Vec<GraceEntry>> {
        let request_id = self.new_request_id();
        match self.request(&Message::GraceQuery { request_id }, &[])? {
            (Message::GraceState { entries, .. }, _) => Ok(entries),
            (other, _) => Err(unexpected(&other)),
        }
    }

    /// Answers a [`FailoverRequest::Release`]. Sends and returns.
    pub fn release_answer(&mut self, request_id: u64, releasing: bool) -> io::Result<()> {
        self.send(
            &Message::ReleaseAnswer {
                request_id,
                releasing,
            },
            &[],
            self.deadline(),
        )
    }

    /// Admin (root only): releases everything held through `scope` and waits for the bridge's
    /// report, at most `timeout` plus the client's own bound.
    pub fn release(&mut self, scope: ReleaseScope, timeout: Duration) -> io::Result<ReleaseReport> {
        let request_id = self.new_request_id();
        let saved = self.timeout;
        self.timeout = timeout + saved;
        let reply = self.request(
            &Message::Release {
                request_id,
                scope,
                timeout_ms: timeout.as_millis() as u64,
            },
            &[],
        );
        self.timeout = saved;
        match reply? {
            (Message::ReleaseReport { .. }, fds) if fds.len() == 1 => read_json_memfd(fds),
            (other, _) => Err(unexpected(&other)),
        }
    }

    /// Admin (root only): starts, replaces or (zero `duration`) ends a grace period.
    pub fn set_grace(&mut self, address: &str, path: &str, duration: Duration) -> io::Result<()> {
        let request_id = self.new_request_id();
        let request = Message::Grace {
            request_id,
            address: address.to_string(),
            path: path.to_string(),
            duration_ms: duration.as_millis() as u64,
        };
        match self.request(&request, &[])? {
            (Message::Done { .. }, _) => Ok(()),
            (other, _) => Err(unexpected(&other)),
        }
    }

    fn new_request_id(&mut self) -> u64 {
        let id = self.next_request_id;
        // The bridge numbers its own requests from 2^63 up; ours stay below.
        self.next_request_id = (self.next_request_id + 1) & !(1 << 63);
        id
    }

    fn deadline(&self) -> Instant {
        Instant::now() + self.timeout
    }

    /// Sends a request and waits for the reply with its id (queueing break requests and
    /// dropping stale replies meanwhile). `Failed` becomes the bridge's errno.
    fn request(
        &mut self,
        request: &Message,
        fds: &[BorrowedFd<'_>],
    ) -> io::Result<(Message, Vec<OwnedFd>)> {
        let deadline = self.deadline();
        self.send(request, fds, deadline)?;
        loop {
            let (message, fds) = match self.receive_now()? {
                Some(received) => received,
                None => {
                    self.wait(PollFlags::IN, deadline)?;
                    continue;
                }
            };
            if message.request_id() != request.request_id() {
                self.keep_if_break_request(message);
                continue;
            }
            return match message {
                Message::Failed { errno, .. } => Err(io::Error::from_raw_os_error(errno)),
                Message::BreakNotify { .. } => Err(unexpected(&message)),
                reply => Ok((reply, fds)),
            };
        }
    }

    /// Queues a break or failover request; anything else arriving unasked is a stale reply.
    fn keep_if_break_request(&mut self, message: Message) {
        match message {
            Message::ReleaseRequest { request_id, scope } => {
                self.failover_queued
                    .push_back(FailoverRequest::Release { request_id, scope });
                return;
            }
            Message::GraceState { entries, .. } => {
                self.failover_queued
                    .push_back(FailoverRequest::Grace(entries));
                return;
            }
            _ => {}
        }
        if let Message::BreakNotify {
            request_id,
            inode,
            unit,
            current,
            break_to,
            release_until,
        } = message
        {
            self.queued.push_back(BreakRequest {
                request_id,
                inode,
                unit,
                current,
                break_to,
                release_until,
            });
        }
    }

    fn send(
        &mut self,
        message: &Message,
        fds: &[BorrowedFd<'_>],
        deadline: Instant,
    ) -> io::Result<()> {
        let bytes = message.encode();
        loop {
            match transport::send_message(self.socket.as_fd(), &bytes, fds) {
                Ok(()) => return Ok(()),
                Err(error) if error.kind() == io::ErrorKind::WouldBlock => {
                    self.wait(PollFlags::OUT, deadline)?
                }
                Err(error) if error.kind() == io::ErrorKind::Interrupted => {}
                Err(error) => return Err(error),
            }
        }
    }

    /// One message if one is readable now; `UnexpectedEof` when the bridge closed.
    fn receive_now(&mut self) -> io::Result<Option<(Message, Vec<OwnedFd>)>> {
        loop {
            return match transport::recv_message(self.socket.as_fd()) {
                Ok(Some(received)) => {
                    let message = protocol::decode(&received.bytes)
                        .map_err(|error| io::Error::new(io::ErrorKind::InvalidData, error))?;
                    Ok(Some((message, received.fds)))
                }
                Ok(None) => Err(io::Error::new(
                    io::ErrorKind::UnexpectedEof,
                    "the lease bridge closed the connection",
                )),
                Err(error) if error.kind() == io::ErrorKind::WouldBlock => Ok(None),
                Err(error) if error.kind() == io::ErrorKind::Interrupted => continue,
                Err(error) => Err(error),
            };
        }
    }

    /// Waits until the socket is ready for `flags` or the deadline passes (ETIMEDOUT).
    fn wait(&self, flags: PollFlags, deadline: Instant) -> io::Result<()> {
        loop {
            let left = deadline.saturating_duration_since(Instant::now());
            if left.is_zero() {
                return Err(timed_out());
            }
            let timeout = rustix::event::Timespec {
                tv_sec: left.as_secs() as i64,
                tv_nsec: left.subsec_nanos() as _,
            };
            let mut fds = [PollFd::new(&self.socket, flags)];
            match rustix::event::poll(&mut fds, Some(&timeout)) {
                Ok(0) => return Err(timed_out()),
                Ok(_) => return Ok(()),
                Err(rustix::io::Errno::INTR) => continue,
                Err(error) => return Err(error.into()),
            }
        }
    }
}
