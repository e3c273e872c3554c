//! The lease bridge daemon (`nfsbridge lease-bridge`): holds one open file description per
//! inode that smbd processes share, takes kernel leases on it when smbd grants caching, turns
//! kernel lease breaks into break notices for the smbds concerned, and gives the lease up when
//! they have answered, died or timed out. The design is in `docs/lease-bridge.md`.
//!
//! One thread, one `poll` loop, nothing that blocks: a non-blocking listening SOCK_SEQPACKET
//! socket, one non-blocking connection per smbd process (admitted by SO_PEERCRED), a signalfd
//! for the lease break signal (blocked before anything else), and the poll timeout as the
//! timer for break expiry. Every open of a description is `O_NONBLOCK`: when a local process
//! holds a lease the requesting smbd gets EWOULDBLOCK at once and retries (its poll-open path).
use std::collections::{BTreeMap, HashMap};
use std::io::{self, Seek, Write};
use std::os::fd::{AsFd, AsRawFd, BorrowedFd, OwnedFd, RawFd};
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use rustix::event::{PollFd, PollFlags};
use rustix::fs::{FileType, Mode, OFlags};
use tracing::{debug, error, info, warn};

use super::fcntl;
use super::kernel::LeaseType;
use super::listing::{self, BreakRow, HolderRow, InodeRow, LeaseListing, OpenRow, UnitRow};
use super::protocol::{self, Message, PeerPolicy, WireUnit};
use super::signals::{self, SignalSet};
use super::table::{
    BreakNotice, BreakProgress, BreakUnit, Caching, Holder, InodeKey, KernelAction, LeaseTable,
    OpenId, TableError,
};
use super::transport;

mod connection;
mod failover;
use connection::{Connection, Gone};

/// Where smbd finds the bridge unless configured otherwise.
pub const DEFAULT_SOCKET: &str = "/run/nfsbridge/lease-bridge.sock";

/// How long the bridge waits for the SMB side to answer a kernel break before forcing the
/// holders down and giving the lease up: longer than smbd's own oplock/lease break timeout
/// (35 s, after which smbd itself gives up on a silent client and answers), shorter than the
/// kernel's `lease-break-time` (45 s by default, after which the kernel revokes the lease and
/// the bridge would no longer decide when a local opener gets in).
pub const DEFAULT_BREAK_TIMEOUT: Duration = Duration::from_secs(40);

/// How many messages one connection may have handled per poll round (fairness).
const MESSAGES_PER_ROUND: usize = 64;

#[derive(Debug, Clone)]
pub struct DaemonConfig {
    pub socket_path: PathBuf,
    /// Share roots (smb.conf `path`), verbatim: a request naming anything else is refused.
    pub share_roots: Vec<String>,
    /// Uids allowed to connect besides root (which is always allowed).
    pub allowed_uids: Vec<u32>,
    pub break_timeout: Duration,
}

impl Default for DaemonConfig {
    fn default() -> Self {
        DaemonConfig {
            socket_path: PathBuf::from(DEFAULT_SOCKET),
            share_roots: Vec::new(),
            allowed_uids: vec![0],
            break_timeout: DEFAULT_BREAK_TIMEOUT,
        }
    }
}

/// The signals the daemon consumes through its signalfd.
fn consumed_signals() -> [i32; 4] {
    [
        signals::lease_break_signal(),
        libc::SIGIO,
        libc::SIGTERM,
        libc::SIGINT,
    ]
}

/// Runs the bridge until SIGTERM or SIGINT. Must be called before the process starts any
/// thread (the signals are blocked in the calling thread only).
pub fn run(config: DaemonConfig) -> io::Result<()> {
    let signal_set = SignalSet::new(&consumed_signals())?;
    signal_set.block()?;
    let signalfd = signal_set.signalfd()?;
    raise_open_file_limit();
    let listener = bind_listener(&config.socket_path)?;
    let mut allowed_uids = config.allowed_uids.clone();
    if !allowed_uids.contains(&0) {
        allowed_uids.insert(0, 0);
    }
    let policy = PeerPolicy {
        allowed_uids,
        share_roots: config.share_roots.clone(),
    };
    check_lease_break_time(config.break_timeout);
    log_delegation_support(&config.socket_path);
    info!(
        socket = %config.socket_path.display(),
        shares = ?policy.share_roots,
        allowed_uids = ?policy.allowed_uids,
        break_timeout_s = config.break_timeout.as_secs_f64(),
        "lease bridge listening"
    );
    notify_systemd_ready();
    let mut daemon = Daemon {
        config,
        policy,
        listener,
        signalfd,
        table: LeaseTable::new(),
        inodes: HashMap::new(),
        by_fd: HashMap::new(),
        connections: BTreeMap::new(),
        next_token: 0,
        started: Instant::now(),
        shutdown: false,
        failover: Default::default(),
    };
    let result = daemon.serve();
    let _ = std::fs::remove_file(&daemon.config.socket_path);
    info!(
        inodes = daemon.table.inodes().count(),
        "lease bridge stopped; closing every description releases its lease"
    );
    result
}

/// Leases need one descriptor per inode: raise the soft limit to the hard one.
fn raise_open_file_limit() {
    use rustix::process::{getrlimit, setrlimit, Resource};
    let mut limit = getrlimit(Resource::Nofile);
    if limit.current != limit.maximum {
        limit.current = limit.maximum;
        if let Err(error) = setrlimit(Resource::Nofile, limit) {
            warn!(%error, "cannot raise the open file limit");
        }
    }
}

/// Creates the socket's directory, removes a stale socket, and listens with mode 0600.
fn bind_listener(path: &Path) -> io::Result<OwnedFd> {
    if let Some(directory) = path.parent() {
        std::fs::create_dir_all(directory)?;
    }
    if let Ok(metadata) = std::fs::symlink_metadata(path) {
        use std::os::unix::fs::FileTypeExt;
        if !metadata.file_type().is_socket() {
            return Err(io::Error::new(
                io::ErrorKind::AlreadyExists,
                format!("{} exists and is not a socket", path.display()),
            ));
        }
        if transport::connect_seqpacket(path).is_ok() {
            return Err(io::Error::new(
                io::ErrorKind::AddrInUse,
                format!("another lease bridge is listening on {}", path.display()),
            ));
        }
        std::fs::remove_file(path)?;
    }
    // umask 0177 for the bind: the socket is created 0600, with no window where it is wider.
    let old_mask = rustix::process::umask(Mode::from_raw_mode(0o177));
    let listener = transport::listen_seqpacket(path, 128);
    rustix::process::umask(old_mask);
    let listener = listener?;
    rustix::io::ioctl_fionbio(&listener, true)?;
    Ok(listener)
}

fn check_lease_break_time(timeout: Duration) {
    let Ok(text) = std::fs::read_to_string("/proc/sys/fs/lease-break-time") else {
        return;
    };
    if let Ok(seconds) = text.trim().parse::<u64>() {
        if timeout >= Duration::from_secs(seconds) {
            warn!(
                break_timeout_s = timeout.as_secs_f64(),
                lease_break_time_s = seconds,
                "the break timeout is not below the kernel's lease-break-time: the kernel \
                 revokes leases before the bridge has heard from smbd"
            );
        }
    }
}

fn log_delegation_support(socket_path: &Path) {
    let directory = socket_path.parent().unwrap_or(Path::new("/"));
    if let Ok(dir) = std::fs::File::open(directory) {
        let supported = fcntl::delegations_supported(dir.as_fd());
        info!(
            delegations = supported,
            "F_SETDELEG probed (directory leases need it; Linux 6.19+)"
        );
    }
}

/// `sd_notify(READY=1)` when started by systemd with `Type=notify`.
fn notify_systemd_ready() {
    use std::os::unix::net::{SocketAddr, UnixDatagram};
    let Some(target) = std::env::var_os("NOTIFY_SOCKET") else {
        return;
    };
    let target = target.to_string_lossy().into_owned();
    let address = if let Some(abstract_name) = target.strip_prefix('@') {
        use std::os::linux::net::SocketAddrExt;
        SocketAddr::from_abstract_name(abstract_name.as_bytes())
    } else {
        SocketAddr::from_pathname(&target)
    };
    let sent = address.and_then(|address| {
        let socket = UnixDatagram::unbound()?;
        socket.send_to_addr(b"READY=1", &address)
    });
    if let Err(error) = sent {
        warn!(%error, "cannot tell systemd the bridge is ready");
    }
}

/// What the daemon knows about an inode besides the table's row.
struct InodeInfo {
    share_path: String,
    /// The errno O_RDWR got when the description had to be opened read-only.
    read_only_because: Option<i32>,
    /// The smbd the description's break signal goes to (`F_SETOWN`) instead of the bridge:
    /// see [`Daemon::settle_signal_owner`].
    signal_owner: Option<u32>,
}

struct Daemon {
    config: DaemonConfig,
    policy: PeerPolicy,
    listener: OwnedFd,
    signalfd: OwnedFd,
    table: LeaseTable<OwnedFd>,
    inodes: HashMap<InodeKey, InodeInfo>,
    /// The description's descriptor number (the `si_fd` of its break signal) → its inode.
    by_fd: HashMap<RawFd, InodeKey>,
    connections: BTreeMap<u64, Connection>,
    next_token: u64,
    started: Instant,
    shutdown: bool,
    failover: failover::FailoverState,
}

/// `read`, `write` or `none`, for log lines.
fn lease_word(lease: Option<LeaseType>) -> &'static str {
    match lease {
        None => "none",
        Some(LeaseType::Read) => "read",
        Some(LeaseType::Write) => "write",
    }
}

fn errno_of(error: &io::Error) -> i32 {
    error.raw_os_error().unwrap_or(libc::EIO)
}

fn table_errno(error: &TableError) -> i32 {
    match error {
        TableError::UnknownInode(_) | TableError::UnknownOpen(_) => libc::ENOENT,
        TableError::NotBreaking(_) | TableError::AckAboveTarget { .. } => libc::EINVAL,
    }
}

/// `/proc/self/fd/N`: opening it reopens exactly the inode `N` refers to, whatever its name.
fn proc_fd_path(fd: RawFd) -> String {
    format!("/proc/self/fd/{fd}")
}

/// Whether `path` (a resolved absolute path) lies below the share root `root`.
fn is_below(path: &str, root: &str) -> bool {
    let root = root.trim_end_matches('/');
    path.strip_prefix(root)
        .is_some_and(|rest| rest.starts_with('/'))
}

impl Daemon {
    fn now(&self) -> Duration {
        self.started.elapsed()
    }

    fn serve(&mut self) -> io::Result<()> {
        while !self.shutdown {
            let timeout = self.next_deadline().map(|deadline| {
                let left = deadline.saturating_sub(self.now());
                rustix::event::Timespec {
                    tv_sec: left.as_secs() as i64,
                    tv_nsec: left.subsec_nanos() as _,
                }
            });
            let tokens: Vec<u64> = self.connections.keys().copied().collect();
            let (listener_ready, signals_ready, ready) = {
                let mut fds = Vec::with_capacity(tokens.len() + 2);
                fds.push(PollFd::new(&self.listener, PollFlags::IN));
                fds.push(PollFd::new(&self.signalfd, PollFlags::IN));
                for connection in self.connections.values() {
                    let mut flags = PollFlags::IN;
                    if connection.wants_to_write() {
                        flags |= PollFlags::OUT;
                    }
                    fds.push(PollFd::new(&connection.socket, flags));
                }
                match rustix::event::poll(&mut fds, timeout.as_ref()) {
                    Ok(_) => {}
                    Err(rustix::io::Errno::INTR) => continue,
                    Err(error) => return Err(error.into()),
                }
                let ready: Vec<(u64, PollFlags)> = tokens
                    .iter()
                    .zip(&fds[2..])
                    .map(|(token, fd)| (*token, fd.revents()))
                    .filter(|(_, revents)| !revents.is_empty())
                    .collect();
                (
                    !fds[0].revents().is_empty(),
                    !fds[1].revents().is_empty(),
                    ready,
                )
            };
            if signals_ready {
                self.handle_signals()?;
            }
            if listener_ready {
                self.accept_connections();
            }
            for (token, revents) in ready {
                let result = if revents.contains(PollFlags::OUT) {
                    self.with_connection(token, Connection::flush)
                } else {
                    Ok(())
                };
                let result = result.and_then(|()| {
                    if revents.intersects(PollFlags::IN | PollFlags::HUP | PollFlags::ERR) {
                        self.read_messages(token)
                    } else {
                        Ok(())
                    }
                });
                if let Err(gone) = result {
                    self.drop_connection(token, gone);
                }
            }
            self.expire_breaks();
            self.progress_releases();
        }
        Ok(())
    }

    fn with_connection(
        &mut self,
        token: u64,
        action: impl FnOnce(&mut Connection) -> Result<(), Gone>,
    ) -> Result<(), Gone> {
        match self.connections.get_mut(&token) {
            Some(connection) => action(connection),
            None => Ok(()),
        }
    }

    /// When the oldest pending break times out.
    fn next_deadline(&self) -> Option<Duration> {
        self.table
            .inodes()
            .filter_map(|(_, entry)| entry.pending_break())
            .map(|pending| pending.started + self.config.break_timeout)
            .chain(self.failover_deadline())
            .min()
    }

    fn accept_connections(&mut self) {
        loop {
            let socket = match transport::accept_seqpacket(self.listener.as_fd()) {
                Ok(socket) => socket,
                Err(error) if error.kind() == io::ErrorKind::WouldBlock => return,
                Err(error) if error.kind() == io::ErrorKind::Interrupted => continue,
                Err(error) => {
                    // EMFILE and friends: leave the rest in the backlog for the next round.
                    warn!(%error, "accept failed");
                    return;
                }
            };
            let peer = match transport::peer_credentials(socket.as_fd()) {
                Ok(peer) => peer,
                Err(error) => {
                    warn!(%error, "no peer credentials; connection closed");
                    continue;
                }
            };
            if let Err(refused) = self.policy.admit(peer) {
                warn!(pid = peer.pid, uid = peer.uid, %refused, "connection refused");
                continue;
            }
            if let Err(error) = rustix::io::ioctl_fionbio(&socket, true) {
                warn!(%error, pid = peer.pid, "cannot make the connection non-blocking");
                continue;
            }
            let token = self.next_token;
            self.next_token += 1;
            info!(pid = peer.pid, uid = peer.uid, "peer connected");
            self.connections
                .insert(token, Connection::new(socket, peer));
        }
    }

    fn read_messages(&mut self, token: u64) -> Result<(), Gone> {
        for _ in 0..MESSAGES_PER_ROUND {
            let Some(connection) = self.connections.get(&token) else {
                return Ok(());
            };
            let received = match transport::recv_message(connection.socket.as_fd()) {
                Ok(Some(received)) => received,
                Ok(None) => return Err(Gone::Eof),
                // A peer that exits with messages unread resets the connection: it is gone.
                Err(error) if error.kind() == io::ErrorKind::ConnectionReset => {
                    return Err(Gone::Eof)
                }
                Err(error) if error.kind() == io::ErrorKind::WouldBlock => return Ok(()),
                Err(error) if error.kind() == io::ErrorKind::Interrupted => continue,
                Err(error) => return Err(Gone::Failed(format!("receive: {error}"))),
            };
            let message = protocol::decode(&received.bytes)
                .map_err(|error| Gone::Failed(format!("malformed message: {error}")))?;
            if received.fds.len() != message.descriptors_carried() {
                return Err(Gone::Failed(format!(
                    "message with {} descriptors where {} belong",
                    received.fds.len(),
                    message.descriptors_carried()
                )));
            }
            self.handle_message(token, message, received.fds)?;
        }
        Ok(())
    }

    fn reply(&mut self, token: u64, message: Message, fd: Option<OwnedFd>) -> Result<(), Gone> {
        self.with_connection(token, |connection| connection.send(&message, fd))
    }

    fn fail(&mut self, token: u64, request_id: u64, errno: i32) -> Result<(), Gone> {
        self.reply(token, Message::Failed { request_id, errno }, None)
    }

    fn peer_of(&self, token: u64) -> Option<transport::PeerCredentials> {
        self.connections
            .get(&token)
            .map(|connection| connection.peer)
    }

    fn handle_message(
        &mut self,
        token: u64,
        message: Message,
        mut fds: Vec<OwnedFd>,
    ) -> Result<(), Gone> {
        let Some(peer) = self.peer_of(token) else {
            return Ok(());
        };
        self.failover_note(token, &message);
        let message = match self.failover_message(token, message) {
            Ok(result) => return result,
            Err(other) => other,
        };
        match message {
            Message::OpenDescription {
                request_id,
                share_path,
                file_id,
                want_write,
                nonblocking: _,
                provisional,
            } => {
                let reference = fds.pop().expect("descriptor count checked");
                let open = OpenId {
                    smbd_pid: peer.pid,
                    file_id,
                };
                let (dup, inode, writable, bridge_fd) =
                    match self.open_description(open, reference.as_fd(), &share_path, want_write) {
                        Ok(opened) => opened,
                        Err(errno) => return self.fail(token, request_id, errno),
                    };
                // The grant the create asked for, at once (the same rules as `Grant`); a
                // refused kernel lease only means no caching.
                let caching = match provisional {
                    None => Caching::NONE,
                    Some(provisional) => {
                        let holder = Holder {
                            open,
                            share_path,
                            client_address: provisional.client_address,
                            server_address: provisional.server_address,
                            kind: provisional.kind,
                            caching: provisional.requested,
                        };
                        self.grant(inode, holder).map_or(Caching::NONE, |(caching, _)| caching)
                    }
                };
                self.reply(
                    token,
                    Message::DescriptionOpened {
                        request_id,
                        inode,
                        writable,
                        caching,
                        bridge_fd: bridge_fd as u32,
                    },
                    Some(dup),
                )
            }
            Message::DirectBreaks { request_id, signo } => {
                if signo as i32 != signals::lease_break_signal() {
                    info!(
                        pid = peer.pid,
                        signo,
                        "direct breaks refused: the bridge signals another number"
                    );
                    return self.fail(token, request_id, libc::EINVAL);
                }
                if let Some(connection) = self.connections.get_mut(&token) {
                    connection.direct_breaks = true;
                }
                debug!(pid = peer.pid, "direct breaks on");
                let break_timeout_ms = self.config.break_timeout.as_millis() as u64;
                self.reply(
                    token,
                    Message::DirectBreaksAccepted {
                        request_id,
                        break_timeout_ms,
                    },
                    None,
                )
            }
            Message::BreakSeen { inode, .. } => {
                debug!(pid = peer.pid, ?inode, "break signal handed back by smbd");
                self.take_signal_back(inode);
                self.kernel_break(inode);
                Ok(())
            }
            Message::AdjustGrant {
                request_id,
                inode,
                file_id,
                caching,
            } => {
                // No reply (smbd does not wait for one).
                let open = OpenId {
                    smbd_pid: peer.pid,
                    file_id,
                };
                if let Err(errno) = self.adjust_grant(inode, open, caching) {
                    debug!(pid = peer.pid, request_id, errno, "grant adjustment refused");
                }
                Ok(())
            }
            Message::Grant {
                request_id,
                inode,
                file_id,
                kind,
                requested,
                share_path,
                client_address,
                server_address,
            } => {
                if let Err(refused) = self.policy.check_share(&share_path) {
                    warn!(pid = peer.pid, %refused, "grant refused");
                    return self.fail(token, request_id, libc::EACCES);
                }
                let holder = Holder {
                    open: OpenId {
                        smbd_pid: peer.pid,
                        file_id,
                    },
                    share_path,
                    client_address,
                    server_address,
                    kind,
                    caching: requested,
                };
                match self.grant(inode, holder) {
                    Ok((caching, kernel_lease)) => self.reply(
                        token,
                        Message::Granted {
                            request_id,
                            caching,
                            kernel_lease,
                        },
                        None,
                    ),
                    Err(errno) => self.fail(token, request_id, errno),
                }
            }
            Message::Close {
                request_id,
                inode,
                file_id,
            } => {
                let open = OpenId {
                    smbd_pid: peer.pid,
                    file_id,
                };
                // No reply: smbd does not wait for it, and reading one would wake it once
                // more per close.
                if let Err(errno) = self.close_open(inode, open) {
                    debug!(pid = peer.pid, request_id, errno, "close of an unknown open");
                }
                Ok(())
            }
            Message::BreakAck {
                request_id,
                inode,
                unit,
                caching,
            } => {
                if request_id == protocol::DIRECT_BREAK {
                    self.direct_acknowledge(peer.pid, inode, unit, caching);
                } else {
                    self.acknowledge(token, peer.pid, request_id, inode, unit, caching);
                }
                Ok(())
            }
            Message::ListLeases { request_id } => {
                if peer.uid != 0 {
                    warn!(
                        pid = peer.pid,
                        uid = peer.uid,
                        "lease listing refused: not root"
                    );
                    return self.fail(token, request_id, libc::EPERM);
                }
                match self.listing_memfd() {
                    Ok(memfd) => self.reply(token, Message::LeaseList { request_id }, Some(memfd)),
                    Err(error) => {
                        warn!(%error, "cannot write the lease listing");
                        self.fail(token, request_id, errno_of(&error))
                    }
                }
            }
            Message::Done { request_id } | Message::Failed { request_id, .. } => {
                // Only BreakNotify is the bridge's request, and BreakAck answers it.
                debug!(pid = peer.pid, request_id, "unexpected reply ignored");
                Ok(())
            }
            Message::DescriptionOpened { .. }
            | Message::DirectBreaksAccepted { .. }
            | Message::Granted { .. }
            | Message::BreakNotify { .. }
            | Message::LeaseList { .. } => Err(Gone::Failed(
                "peer sent a message only the bridge sends".to_string(),
            )),
            // Handled by failover_message above.
            Message::Release { .. }
            | Message::ReleaseReport { .. }
            | Message::ReleaseRequest { .. }
            | Message::ReleaseAnswer { .. }
            | Message::Grace { .. }
            | Message::GraceQuery { .. }
            | Message::GraceState { .. } => Ok(()),
        }
    }

    /// Finds or opens the inode's shared description for `open`; returns a dup of it.
    fn open_description(
        &mut self,
        open: OpenId,
        reference: BorrowedFd<'_>,
        share_path: &str,
        want_write: bool,
    ) -> Result<(OwnedFd, InodeKey, bool, RawFd), i32> {
        if let Err(refused) = self.policy.check_share(share_path) {
            warn!(pid = open.smbd_pid, %refused, "open refused");
            return Err(libc::EACCES);
        }
        let stat = rustix::fs::fstat(reference).map_err(|error| error.raw_os_error())?;
        if FileType::from_raw_mode(stat.st_mode) != FileType::RegularFile {
            debug!(pid = open.smbd_pid, "open refused: not a regular file");
            return Err(libc::EINVAL);
        }
        let inode = InodeKey {
            dev: stat.st_dev,
            ino: stat.st_ino,
        };
        if self.table.entry(inode).is_none() {
            self.open_new_description(open, inode, reference, share_path)?;
        }
        let entry = self.table.entry(inode).expect("opened above");
        let writable = entry.description_writable();
        if want_write && !writable {
            let errno = self
                .inodes
                .get(&inode)
                .and_then(|info| info.read_only_because)
                .unwrap_or(libc::EPERM);
            debug!(
                pid = open.smbd_pid,
                ?inode,
                errno,
                "write refused: description is read-only"
            );
            if entry.opens().next().is_none() && entry.pending_break().is_none() {
                // Opened for this request only: nothing else uses it.
                self.forget_unused();
            }
            return Err(errno);
        }
        let bridge_fd = entry.description().as_raw_fd();
        let dup = entry
            .description()
            .try_clone()
            .map_err(|error| errno_of(&error))?;
        self.table
            .add_open(inode, open)
            .map_err(|error| table_errno(&error))?;
        debug!(
            pid = open.smbd_pid,
            file_id = open.file_id,
            ?inode,
            writable,
            "description shared"
        );
        Ok((dup, inode, writable, bridge_fd))
    }

    fn open_new_description(
        &mut self,
        open: OpenId,
        inode: InodeKey,
        reference: BorrowedFd<'_>,
        share_path: &str,
    ) -> Result<(), i32> {
        let reference_path = proc_fd_path(reference.as_raw_fd());
        let resolved = std::fs::read_link(&reference_path).map_err(|error| errno_of(&error))?;
        let resolved = resolved.to_string_lossy();
        if !is_below(&resolved, share_path) {
            warn!(pid = open.smbd_pid, path = %resolved, share = share_path, "open refused: file is outside the share");
            return Err(libc::EACCES);
        }
        // Reopening the magic link opens exactly the inode of the reference, already checked
        // to be a regular file: no name is looked up, so no symlink can be followed.
        let flags = OFlags::NONBLOCK | OFlags::CLOEXEC | OFlags::NOCTTY;
        let (description, read_only_because) = match rustix::fs::open(
            reference_path.as_str(),
            flags | OFlags::RDWR,
            Mode::empty(),
        ) {
            Ok(description) => (description, None),
            Err(
                errno @ (rustix::io::Errno::PERM
                | rustix::io::Errno::ACCESS
                | rustix::io::Errno::TXTBSY
                | rustix::io::Errno::ROFS),
            ) => {
                let description = rustix::fs::open(
                    reference_path.as_str(),
                    flags | OFlags::RDONLY,
                    Mode::empty(),
                )
                .map_err(|error| error.raw_os_error())?;
                (description, Some(errno.raw_os_error()))
            }
            Err(errno) => {
                if errno == rustix::io::Errno::WOULDBLOCK {
                    debug!(pid = open.smbd_pid, path = %resolved, "open would block: a local lease is being broken");
                }
                return Err(errno.raw_os_error());
            }
        };
        let stat = rustix::fs::fstat(&description).map_err(|error| error.raw_os_error())?;
        if (stat.st_dev, stat.st_ino) != (inode.dev, inode.ino) {
            return Err(libc::ESTALE);
        }
        // The dups behave like smbd's own descriptors: blocking I/O semantics.
        let status = rustix::fs::fcntl_getfl(&description).map_err(|error| error.raw_os_error())?;
        rustix::fs::fcntl_setfl(&description, status - OFlags::NONBLOCK)
            .map_err(|error| error.raw_os_error())?;
        if let Some(errno) = read_only_because {
            info!(path = %resolved, errno, "description opened read-only (O_RDWR refused)");
        }
        let raw = description.as_raw_fd();
        let writable = read_only_because.is_none();
        self.table
            .description_or_open(inode, || Ok::<_, i32>((description, writable)))?;
        self.by_fd.insert(raw, inode);
        self.inodes.insert(
            inode,
            InodeInfo {
                share_path: share_path.to_string(),
                read_only_because,
                signal_owner: None,
            },
        );
        Ok(())
    }

    fn grant(
        &mut self,
        inode: InodeKey,
        holder: Holder,
    ) -> Result<(Caching, Option<LeaseType>), i32> {
        // A break signalled to the inode's smbd may be under way: the table sees it first.
        self.reclaim_signal(inode);
        let before = self
            .table
            .entry(inode)
            .and_then(|entry| entry.kernel_lease());
        let requested = holder.caching;
        let open = holder.open;
        let grant = self
            .table
            .grant(inode, holder, |description, lease| {
                let taken =
                    fcntl::take_lease(description.as_fd(), lease, signals::lease_break_signal());
                match taken {
                    Ok(()) => true,
                    Err(error) => {
                        // EAGAIN: another process has the file open; no caching then.
                        debug!(?inode, %lease, %error, "kernel lease refused");
                        false
                    }
                }
            })
            .map_err(|error| table_errno(&error))?;
        if let Some(action) = grant.kernel_action {
            self.apply(inode, action);
        }
        // Per-open events are debug: a busy share takes and releases leases all the time.
        if grant.kernel_lease != before {
            debug!(
                path = %self.path_of(inode),
                lease = lease_word(grant.kernel_lease),
                pid = open.smbd_pid,
                file_id = open.file_id,
                "kernel lease taken"
            );
        }
        if grant.caching != requested {
            debug!(
                path = %self.path_of(inode),
                requested = listing::caching_letters(requested),
                granted = listing::caching_letters(grant.caching),
                pid = open.smbd_pid,
                "caching reduced to what the kernel lease backs"
            );
        }
        self.settle_signal_owner(inode);
        Ok((grant.caching, grant.kernel_lease))
    }

    /// Lowers what an open caches to `caching` (never raises it: the caller asked for less
    /// than its provisional grant, or the grant stands).
    fn adjust_grant(&mut self, inode: InodeKey, open: OpenId, caching: Caching) -> Result<(), i32> {
        let holder = self
            .table
            .entry(inode)
            .and_then(|entry| entry.holders().find(|holder| holder.open == open).cloned())
            .ok_or(libc::ENOENT)?;
        let lowered = Holder {
            caching: holder.caching.intersect(caching),
            ..holder
        };
        self.grant(inode, lowered).map(|_| ())
    }

    fn close_open(&mut self, inode: InodeKey, open: OpenId) -> Result<(), i32> {
        self.reclaim_signal(inode);
        let removal = self
            .table
            .close_open(inode, open)
            .map_err(|error| table_errno(&error))?;
        if let Some(action) = removal.kernel {
            self.apply(inode, action);
        }
        if let BreakProgress::Completed(_) = removal.progress {
            self.break_ended(inode, "the last open of the unit closed");
        }
        if let Some(description) = removal.closed_description {
            self.forget(inode, description);
        } else {
            self.settle_signal_owner(inode);
        }
        Ok(())
    }

    fn acknowledge(
        &mut self,
        token: u64,
        pid: u32,
        request_id: u64,
        inode: InodeKey,
        unit: WireUnit,
        caching: Caching,
    ) {
        let notified = self
            .connections
            .get_mut(&token)
            .and_then(|connection| connection.notifies.remove(&request_id));
        if notified != Some(inode) {
            debug!(
                pid,
                request_id, "acknowledgement of no pending notice (late or unknown)"
            );
            return;
        }
        match self.table.acknowledge(inode, unit.with_pid(pid), caching) {
            Ok(progress) => self.break_answered(pid, inode, progress),
            Err(error) => {
                warn!(pid, path = %self.path_of(inode), %error, "acknowledgement refused");
            }
        }
        self.settle_signal_owner(inode);
    }

    /// A direct `BreakAck`: the smbd the inode's break signal went to broke its clients
    /// itself (and, when they kept nothing, gave the kernel lease up) without a notice. The
    /// signal comes back to the bridge, and the table learns of the break now: started as if
    /// signalled here (`F_GETLEASE` shows it, or the lease already gone), without asking that
    /// unit, whose answer this is.
    fn direct_acknowledge(&mut self, pid: u32, inode: InodeKey, unit: WireUnit, caching: Caching) {
        let unit = unit.with_pid(pid);
        self.take_signal_back(inode);
        let waits_for_it = self
            .table
            .entry(inode)
            .and_then(|entry| entry.pending_break())
            .is_some_and(|pending| pending.waiting.contains(&unit));
        if !waits_for_it {
            self.kernel_break_for(inode, Some(unit));
        }
        match self.table.acknowledge(inode, unit, caching) {
            Ok(progress) => self.break_answered(pid, inode, progress),
            // Nothing was breaking here (a lease the kernel or a close already ended, or a
            // unit the table had lowered meanwhile): the answer changes nothing.
            Err(error) => debug!(pid, ?inode, %error, "direct break answer not needed"),
        }
        self.settle_signal_owner(inode);
    }

    fn break_answered(&mut self, pid: u32, inode: InodeKey, progress: BreakProgress) {
        match progress {
            BreakProgress::Completed(action) => {
                if let Some(action) = action {
                    self.apply(inode, action);
                }
                self.break_ended(inode, "every holder acknowledged");
                self.forget_unused();
            }
            BreakProgress::Waiting { remaining } => {
                debug!(
                    pid,
                    ?inode,
                    remaining,
                    "break acknowledged, others still to answer"
                );
            }
        }
    }

    /// Applies a kernel action the table decided on.
    fn apply(&mut self, inode: InodeKey, action: KernelAction) {
        let Some(entry) = self.table.entry(inode) else {
            return;
        };
        let (lease, verb) = match action {
            KernelAction::Set(lease) => (Some(lease), "kernel lease lowered"),
            KernelAction::Release => (None, "kernel lease released"),
        };
        let description = entry.description().as_fd();
        let result = match lease {
            Some(lease) => fcntl::take_lease(description, lease, signals::lease_break_signal()),
            None => fcntl::set_lease(description, None),
        };
        // Taking a lease makes the bridge the signal's receiver; a release clears it.
        if let Some(info) = self.inodes.get_mut(&inode) {
            info.signal_owner = None;
        }
        match result {
            Ok(()) => debug!(
                path = %self.path_of(inode),
                lease = lease_word(lease),
                "{verb}"
            ),
            // Releasing a lease the kernel already revoked (lease-break-time) finds nothing.
            Err(error) if lease.is_none() && error.raw_os_error() == Some(libc::EAGAIN) => {
                debug!(?inode, "lease already gone");
            }
            Err(error) => warn!(path = %self.path_of(inode), %error, "F_SETLEASE failed"),
        }
    }

    fn break_ended(&mut self, inode: InodeKey, why: &str) {
        for connection in self.connections.values_mut() {
            connection.notifies.retain(|_, notified| *notified != inode);
        }
        info!(path = %self.path_of(inode), "break ended: {why}");
    }

    /// Closes a description nothing uses any more.
    fn forget(&mut self, inode: InodeKey, description: OwnedFd) {
        self.by_fd.remove(&description.as_raw_fd());
        self.inodes.remove(&inode);
        debug!(?inode, "description closed");
        drop(description);
    }

    fn forget_unused(&mut self) {
        for (inode, description) in self.table.take_unused_descriptions() {
            self.forget(inode, description);
        }
    }

    fn path_of(&self, inode: InodeKey) -> String {
        self.table
            .entry(inode)
            .and_then(|entry| {
                std::fs::read_link(proc_fd_path(entry.description().as_raw_fd())).ok()
            })
            .map(|path| path.to_string_lossy().into_owned())
            .unwrap_or_else(|| format!("inode {}:{}", inode.dev, inode.ino))
    }

    fn handle_signals(&mut self) -> io::Result<()> {
        let received = signals::read_signals(&self.signalfd)?;
        let mut scan_all = false;
        for signal in received {
            match signal.signo {
                libc::SIGTERM | libc::SIGINT => {
                    info!(signal = signal.signo, "stopping");
                    self.shutdown = true;
                }
                libc::SIGIO => scan_all = true,
                signo if signo == signals::lease_break_signal() => {
                    match self.by_fd.get(&signal.fd).copied() {
                        Some(inode) => self.kernel_break(inode),
                        // A description closed since the signal was queued.
                        None => debug!(fd = signal.fd, "break signal for no description"),
                    }
                }
                other => debug!(signal = other, "signal ignored"),
            }
        }
        if scan_all {
            // The realtime signal queue overflowed: the kernel sent SIGIO without si_fd.
            let leased: Vec<InodeKey> = self
                .table
                .inodes()
                .filter(|(_, entry)| entry.kernel_lease().is_some())
                .map(|(inode, _)| *inode)
                .collect();
            info!(
                leased = leased.len(),
                "signal queue overflowed (SIGIO): checking every lease"
            );
            for inode in leased {
                self.kernel_break(inode);
            }
        }
        Ok(())
    }

    /// Checks the description's lease and starts (or lowers) a break if the kernel is
    /// breaking it.
    fn kernel_break(&mut self, inode: InodeKey) {
        self.kernel_break_for(inode, None);
        self.settle_signal_owner(inode);
    }

    /// [`Daemon::kernel_break`] without handing the signal out again; `answered`: a unit
    /// not to notify (its direct answer is at hand).
    fn kernel_break_for(&mut self, inode: InodeKey, answered: Option<BreakUnit>) {
        let Some(entry) = self.table.entry(inode) else {
            return;
        };
        let Some(held) = entry.kernel_lease() else {
            return;
        };
        let target = match fcntl::get_lease(entry.description().as_fd()) {
            Ok(target) => target,
            Err(error) => {
                warn!(?inode, %error, "F_GETLEASE failed");
                return;
            }
        };
        if target >= Some(held) {
            return; // not breaking (a late signal of a break that already ended)
        }
        if entry
            .pending_break()
            .is_some_and(|pending| pending.kernel_target <= target)
        {
            return; // this break is already being answered
        }
        let now = self.now();
        let connections = &self.connections;
        let is_alive = |pid: u32| connections.values().any(|c| c.peer.pid == pid);
        let start = match self.table.start_break(inode, target, now, is_alive) {
            Ok(start) => start,
            Err(error) => {
                warn!(?inode, %error, "cannot start the break");
                return;
            }
        };
        // The notices first: the log line reads the file's path (a readlink) and writes.
        let notified = start.notify.len();
        let release_until = if notified == 1 {
            self.sole_unit_release_until(inode)
        } else {
            0
        };
        for notice in start.notify {
            if Some(notice.unit) != answered {
                self.notify(notice, true, release_until);
            }
        }
        info!(
            path = %self.path_of(inode),
            held = %held,
            target = lease_word(target),
            notify = notified,
            "kernel lease break"
        );
        if let Some(action) = start.completed {
            if let Some(action) = action {
                self.apply(inode, action);
            }
            self.break_ended(inode, "no holder had to be asked");
            self.forget_unused();
        }
    }

    /// Until when the only unit a kernel lease break waits for may give the lease up itself
    /// (`BreakNotify::release_until`): a second before this break can time out here. After
    /// the timeout the table may have ended the break and a new lease may back someone
    /// else's caching, which a late release would drop. Only for a break of every unit to
    /// nothing: then this unit is the only one caching anything, and no later notice of the
    /// same break can add another.
    fn sole_unit_release_until(&self, inode: InodeKey) -> u64 {
        let Some(pending) = self
            .table
            .entry(inode)
            .and_then(|entry| entry.pending_break())
            .filter(|pending| pending.smb_target == Caching::NONE)
        else {
            return 0;
        };
        let left = self
            .config
            .break_timeout
            .saturating_sub(self.now().saturating_sub(pending.started));
        protocol::release_deadline(left)
    }

    /// The smbd a lease break on the inode can be left to, if any: the bridge holds a
    /// kernel lease on a writable description (so every break takes SMB caching to nothing),
    /// no break is pending, one break unit alone caches anything, and its smbd handles the
    /// signal (`DirectBreaks`). That smbd then starts the SMB break on the kernel's signal
    /// itself, one wake-up (this process's) earlier.
    fn direct_owner(&self, inode: InodeKey) -> Option<u32> {
        let entry = self.table.entry(inode)?;
        if entry.pending_break().is_some()
            || entry.kernel_lease().is_none()
            || !entry.description_writable()
        {
            return None;
        }
        let mut units = entry
            .holders()
            .filter(|holder| !holder.caching.is_none())
            .map(Holder::unit);
        let unit = units.next()?;
        if units.any(|other| other != unit) {
            return None;
        }
        let pid = unit.smbd_pid();
        self.connections
            .values()
            .any(|connection| connection.peer.pid == pid && connection.direct_breaks)
            .then_some(pid)
    }

    /// Points the inode's break signal at [`Daemon::direct_owner`], or back at the bridge
    /// (seeing any break the smbd may have been signalled). Called after every change of the
    /// inode's row; every change starts with [`Daemon::reclaim_signal`], so the table never
    /// changes while a break it does not know of may be under way.
    fn settle_signal_owner(&mut self, inode: InodeKey) {
        let wanted = self.direct_owner(inode);
        let current = self.inodes.get(&inode).and_then(|info| info.signal_owner);
        if wanted == current {
            return;
        }
        let Some(pid) = wanted else {
            self.reclaim_signal(inode);
            return;
        };
        let Some(entry) = self.table.entry(inode) else {
            return;
        };
        match fcntl::set_owner(entry.description().as_fd(), pid as i32) {
            Ok(()) => {
                if let Some(info) = self.inodes.get_mut(&inode) {
                    info.signal_owner = Some(pid);
                }
                debug!(?inode, pid, "break signal handed to smbd");
            }
            Err(error) => warn!(?inode, pid, %error, "F_SETOWN failed"),
        }
    }

    /// The inode's break signal comes to the bridge again (no check for a break).
    fn take_signal_back(&mut self, inode: InodeKey) {
        let Some(pid) = self
            .inodes
            .get_mut(&inode)
            .and_then(|info| info.signal_owner.take())
        else {
            return;
        };
        let Some(entry) = self.table.entry(inode) else {
            return;
        };
        let bridge = std::process::id() as i32;
        if let Err(error) = fcntl::set_owner(entry.description().as_fd(), bridge) {
            warn!(?inode, pid, %error, "F_SETOWN failed");
        }
    }

    /// The inode's break signal comes to the bridge again, and a break signalled to the smbd
    /// before that (`F_GETLEASE` shows its target) is started here the usual way: the smbd
    /// merges the notice into the break it may have started.
    fn reclaim_signal(&mut self, inode: InodeKey) {
        if self.inodes.get(&inode).and_then(|info| info.signal_owner).is_none() {
            return;
        }
        self.take_signal_back(inode);
        self.kernel_break_for(inode, None);
    }

    /// Sends a break notice to the newest connection of the unit's smbd.
    fn notify(&mut self, notice: BreakNotice, expect_ack: bool, release_until: u64) {
        let pid = notice.unit.smbd_pid();
        let Some((&token, connection)) = self
            .connections
            .iter_mut()
            .rev()
            .find(|(_, connection)| connection.peer.pid == pid)
        else {
            return;
        };
        let request_id = connection.next_request_id();
        if expect_ack {
            connection.notifies.insert(request_id, notice.inode);
        }
        let message = Message::BreakNotify {
            request_id,
            inode: notice.inode,
            unit: WireUnit::from_unit(notice.unit),
            current: notice.current,
            break_to: notice.break_to,
            release_until,
        };
        if let Err(gone) = connection.send(&message, None) {
            self.drop_connection(token, gone);
        }
    }

    fn expire_breaks(&mut self) {
        let now = self.now();
        let expired = self.table.expire_breaks(now, self.config.break_timeout);
        for ended in expired {
            warn!(
                path = %self.path_of(ended.inode),
                silent = ended.revoked.len(),
                timeout_s = self.config.break_timeout.as_secs_f64(),
                "break timed out: the silent holders lose their caching"
            );
            if let Some(action) = ended.kernel {
                self.apply(ended.inode, action);
            }
            self.break_ended(ended.inode, "timed out");
            // The smbds of silent units must drop the caching now: a last notice, no answer
            // expected.
            for notice in ended.revoked {
                self.notify(notice, false, 0);
            }
            self.settle_signal_owner(ended.inode);
        }
        self.forget_unused();
    }

    /// Removes a connection; when it was its smbd's last one, that smbd's opens go too.
    fn drop_connection(&mut self, token: u64, gone: Gone) {
        let Some(connection) = self.connections.remove(&token) else {
            return;
        };
        self.failover_forget(token);
        let pid = connection.peer.pid;
        match gone {
            Gone::Eof => info!(pid, "peer disconnected"),
            Gone::Failed(why) => warn!(pid, "connection closed: {why}"),
        }
        drop(connection);
        if self.connections.values().any(|c| c.peer.pid == pid) {
            return;
        }
        // Its breaks signal the bridge again; one signalled to it just before it went is seen
        // here (and ends with its opens, below).
        let owned: Vec<InodeKey> = self
            .inodes
            .iter()
            .filter(|(_, info)| info.signal_owner == Some(pid))
            .map(|(inode, _)| *inode)
            .collect();
        for inode in owned {
            self.reclaim_signal(inode);
        }
        let opens: usize = self
            .table
            .inodes()
            .map(|(_, entry)| entry.opens().filter(|open| open.smbd_pid == pid).count())
            .sum();
        let connections = &self.connections;
        let actions = self
            .table
            .reap_dead(|alive| connections.values().any(|c| c.peer.pid == alive));
        for (inode, action) in actions {
            if let Some(action) = action {
                self.apply(inode, action);
            }
        }
        if opens > 0 {
            info!(pid, opens, "opens of a departed smbd dropped");
        }
        self.forget_unused();
    }

    fn listing(&self) -> LeaseListing {
        let now = self.now();
        let wall_now = SystemTime::now()
            .duration_since(UNIX_EPOCH)
            .unwrap_or_default();
        let inodes = self
            .table
            .inodes()
            .map(|(inode, entry)| InodeRow {
                dev: inode.dev,
                ino: inode.ino,
                share_path: self
                    .inodes
                    .get(inode)
                    .map(|info| info.share_path.clone())
                    .unwrap_or_default(),
                path: self.path_of(*inode),
                description_writable: entry.description_writable(),
                kernel_lease: listing::lease_name(entry.kernel_lease()),
                break_signal_pid: self.inodes.get(inode).and_then(|info| info.signal_owner),
                opens: entry
                    .opens()
                    .map(|open| OpenRow {
                        smbd_pid: open.smbd_pid,
                        file_id: open.file_id,
                    })
                    .collect(),
                holders: entry
                    .holders()
                    .map(|holder| HolderRow {
                        smbd_pid: holder.open.smbd_pid,
                        file_id: holder.open.file_id,
                        client_address: holder.client_address.clone(),
                        server_address: holder.server_address.clone(),
                        lease_key: listing::lease_key_of(holder.kind),
                        caching: listing::caching_letters(holder.caching),
                    })
                    .collect(),
                pending_break: entry.pending_break().map(|pending| {
                    let age = now.saturating_sub(pending.started);
                    BreakRow {
                        started_unix_ms: wall_now.saturating_sub(age).as_millis() as u64,
                        age_ms: age.as_millis() as u64,
                        kernel_target: listing::lease_name(pending.kernel_target),
                        smb_target: listing::caching_letters(pending.smb_target),
                        waiting: pending
                            .waiting
                            .iter()
                            .copied()
                            .map(UnitRow::from_unit)
                            .collect(),
                    }
                }),
            })
            .collect();
        LeaseListing {
            version: listing::LISTING_VERSION,
            bridge_pid: std::process::id(),
            inodes,
        }
    }

    /// The listing as JSON in a sealed memfd.
    fn listing_memfd(&self) -> io::Result<OwnedFd> {
        sealed_json_memfd("nfsbridge-leases", &self.listing())
    }
}

/// `value` as JSON in a sealed memfd named `name`, its offset at 0 (the reader shares it):
/// how answers too large for one packet (the lease listing, a release report) travel.
fn sealed_json_memfd(name: &str, value: &impl serde::Serialize) -> io::Result<OwnedFd> {
    use rustix::fs::{MemfdFlags, SealFlags};
    let json = serde_json::to_vec(value).map_err(io::Error::other)?;
    let memfd = rustix::fs::memfd_create(name, MemfdFlags::CLOEXEC | MemfdFlags::ALLOW_SEALING)?;
    let mut file = std::fs::File::from(memfd);
    file.write_all(&json)?;
    file.rewind()?;
    rustix::fs::fcntl_add_seals(
        &file,
        SealFlags::WRITE | SealFlags::GROW | SealFlags::SHRINK | SealFlags::SEAL,
    )?;
    Ok(file.into())
}

/// Logs an error that ends the daemon.
pub fn log_fatal(error: &io::Error) {
    error!(%error, "lease bridge failed");
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn files_below_a_share_root_and_nothing_else() {
        assert!(is_below("/srv/share/a.txt", "/srv/share"));
        assert!(is_below("/srv/share/d/a.txt", "/srv/share/"));
        assert!(is_below("/etc/passwd", "/"));
        assert!(!is_below("/srv/share", "/srv/share"));
        assert!(!is_below("/srv/sharex/a.txt", "/srv/share"));
        assert!(!is_below("/srv/other/a.txt", "/srv/share"));
    }
}
