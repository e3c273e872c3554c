//! The module's half of the lease bridge: one connection per smbd process to the bridge
//! daemon (`nfsbridge lease-bridge`), the opens of this process that share a bridge
//! description, and the breaks smbd is carrying out for the daemon. The shim calls in from
//! smbd's main loop (openat, create_file, close, the socket's readability); smbd is single
//! threaded, the mutex only makes the state a safe static.
//!
//! Never held across a call into the shim that can call back (`nfsb_request_break` only starts
//! a break; its answer comes later from the event loop), so the lock is never taken twice.
use std::collections::{BTreeMap, BTreeSet};
use std::io;
use std::os::fd::{AsFd, AsRawFd, BorrowedFd, IntoRawFd, OwnedFd, RawFd};
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Mutex, MutexGuard};
use std::time::{Duration, Instant};

use nfsbridge::lease::client::{BreakRequest, BridgeClient};
use nfsbridge::lease::kernel::LeaseType;
use nfsbridge::lease::protocol::{Provisional, WireUnit, DIRECT_BREAK};
use nfsbridge::lease::parking::{self, ClosingOpen, ParkedOpen, Reopen, PARK_LINGER, PARK_MAX};
use nfsbridge::lease::table::{Caching, GrantKind, InodeKey};

use crate::ffi;

/// How often a process tries to reach a bridge that is not answering.
const RECONNECT_INTERVAL: Duration = Duration::from_secs(1);

/// The shim handles the lease break signal (and SIGIO) for the rest of the process's life:
/// connections made from now on offer direct breaks to the bridge.
static SIGNALS_HANDLED: AtomicBool = AtomicBool::new(false);

/// One SMB open of this process whose file has a bridge description.
struct OpenRecord {
    /// The open's id in the daemon's table (unique in this process).
    open_id: u64,
    inode: InodeKey,
    /// Which connection to the daemon the open belongs to (a restarted daemon does not know
    /// the opens of its predecessor).
    generation: u64,
    /// Set once smbd granted caching on it.
    kind: Option<GrantKind>,
    /// What the bridge granted with the open (the create's request, as far as the kernel
    /// lease backs it), until the create post-hook settles it.
    provisional: Option<(GrantKind, Caching)>,
    /// For an open without a data descriptor (a stat open holding a lease): the description
    /// kept for the kernel lease.
    side_description: Option<OwnedFd>,
    /// What the bridge's table says this open caches: what it granted, lowered by every
    /// adjustment and break acknowledgement this process sent. Never below the truth, which
    /// is what makes a parked open safe to reuse without asking.
    bridge_caching: Caching,
    /// Whether the description was opened for writing.
    writable: bool,
    share_path: String,
    /// Taken over from a parked open: the bridge still counts it at `bridge_caching`, which
    /// is kept as it is (higher than the client's caching only makes breaks more eager).
    adopted: bool,
    /// A break reached the inode while the open existed: it is not parked when it closes.
    broken_into: bool,
    /// The bridge's descriptor number of the description: the `si_fd` of its break signal.
    bridge_fd: RawFd,
}

/// The description of a file whose last open in this process was closed, kept for
/// [`PARK_LINGER`]: the bridge still counts the open (so its kernel lease, and the caching the
/// table grants on it, stay as they were), and the next open of the file in this process with
/// the same lease key (or oplock, or no caching) takes it over without a round trip when the
/// kernel lease still backs what it asks for. Only opens the bridge holds a kernel lease for
/// are parked: a local or NFS opener breaks it, the bridge's notice comes here as for any
/// open, and the parked open is given up (its Close is the unit's answer).
struct Parked {
    description: OwnedFd,
    record: OpenRecord,
    since: Instant,
}

impl OpenRecord {
    /// Whether the bridge counts this open in break unit `unit` (its lease key, or the open
    /// itself for an oplock).
    fn in_unit(&self, unit: WireUnit) -> bool {
        match unit {
            WireUnit::Oplock { file_id } => self.open_id == file_id && self.kind == Some(GrantKind::Oplock),
            WireUnit::Lease(key) => self.kind == Some(GrantKind::Lease(key)),
        }
    }

    /// A descriptor of the bridge's description for this open (`fd`: the open's own).
    fn lease_fd(&self, fd: RawFd) -> RawFd {
        self.side_description.as_ref().map_or(fd, |side| side.as_raw_fd())
    }

    fn lease_key(&self) -> Option<[u8; 16]> {
        match self.kind {
            Some(GrantKind::Lease(key)) => Some(key),
            _ => None,
        }
    }

    /// The break unit the bridge counts this open in, once it was granted caching.
    fn unit(&self) -> Option<WireUnit> {
        match self.kind? {
            GrantKind::Lease(key) => Some(WireUnit::Lease(key)),
            GrantKind::Oplock => Some(WireUnit::Oplock { file_id: self.open_id }),
        }
    }
}

/// A break smbd is carrying out, by the token the shim hands back.
enum PendingBreak {
    /// Asked by the daemon: answered with a BreakAck.
    Daemon { request: BreakRequest, generation: u64 },
    /// The daemon went away while the client cached: once the client has flushed and given up
    /// its caching, the kernel lease left on the description is released here.
    Orphaned { lease_fd: RawFd },
}

struct Bridge {
    client: Option<BridgeClient>,
    socket_path: Option<PathBuf>,
    /// The connection failed (timeout, broken pipe): the shim must stop watching the socket
    /// before it is closed.
    broken: bool,
    generation: u64,
    last_attempt: Option<Instant>,
    opens: BTreeMap<RawFd, OpenRecord>,
    next_open_id: u64,
    breaks: BTreeMap<u64, PendingBreak>,
    next_token: u64,
    parked: BTreeMap<InodeKey, Parked>,
    /// Direct breaks are on for this connection (`DirectBreaks`): the bridge's break timeout.
    direct: Option<Duration>,
}

static BRIDGE: Mutex<Bridge> = Mutex::new(Bridge {
    client: None,
    socket_path: None,
    broken: false,
    generation: 0,
    last_attempt: None,
    opens: BTreeMap::new(),
    next_open_id: 1,
    breaks: BTreeMap::new(),
    next_token: 1,
    parked: BTreeMap::new(),
    direct: None,
});

fn bridge() -> MutexGuard<'static, Bridge> {
    // A panic while holding it was caught at the FFI boundary; the state is still consistent
    // enough to go on (every entry is independent).
    BRIDGE.lock().unwrap_or_else(|poisoned| poisoned.into_inner())
}

/// Errors that mean the daemon cannot be asked, as opposed to its answer being a refusal.
fn is_transport_error(err: &io::Error) -> bool {
    matches!(
        err.kind(),
        io::ErrorKind::TimedOut
            | io::ErrorKind::BrokenPipe
            | io::ErrorKind::ConnectionReset
            | io::ErrorKind::ConnectionRefused
            | io::ErrorKind::NotConnected
            | io::ErrorKind::UnexpectedEof
    )
}

/// A break the shim must start once the lock is released.
struct BreakOrder {
    fd: RawFd,
    lease_key: Option<[u8; 16]>,
    break_to: Caching,
    token: u64,
}

impl Bridge {
    /// The connected socket for `path`, connecting if needed.
    fn socket(&mut self, path: &Path) -> RawFd {
        if self.broken {
            return -1;
        }
        if let Some(client) = &self.client {
            if self.socket_path.as_deref() == Some(path) {
                return client.as_raw_fd();
            }
            tracing::error!(
                "this smbd already uses the lease bridge at {}; a share that names {} is served \
                 without kernel-backed caching (all shares must name the same socket)",
                self.socket_path.as_deref().unwrap_or(Path::new("?")).display(),
                path.display()
            );
            return -1;
        }
        if self.last_attempt.is_some_and(|at| at.elapsed() < RECONNECT_INTERVAL) {
            return -1;
        }
        self.last_attempt = Some(Instant::now());
        match BridgeClient::connect(path) {
            Ok(mut client) => {
                self.generation += 1;
                tracing::info!("connected to the lease bridge at {}", path.display());
                crate::failover::connected(&mut client);
                self.direct = None;
                if SIGNALS_HANDLED.load(Ordering::Relaxed) {
                    match client.direct_breaks(nfsbridge::lease::signals::lease_break_signal()) {
                        Ok(break_timeout) => self.direct = Some(break_timeout),
                        Err(err) => tracing::info!(
                            "the lease bridge keeps every break signal to itself ({err}): \
                             breaks take one more wake-up"
                        ),
                    }
                }
                let fd = client.as_raw_fd();
                self.client = Some(client);
                self.socket_path = Some(path.to_path_buf());
                fd
            }
            Err(err) => {
                tracing::error!(
                    "cannot reach the lease bridge at {}: {err}; SMB caching on this share is \
                     broken to none until it is back (start it with 'nfsbridge lease-bridge')",
                    path.display()
                );
                -1
            }
        }
    }

    fn mark_broken(&mut self, during: &str, err: &io::Error) {
        if !self.broken {
            tracing::error!("lease bridge connection lost during {during}: {err}");
        }
        self.broken = true;
    }

    fn new_token(&mut self) -> u64 {
        let token = self.next_token;
        self.next_token += 1;
        token
    }

    /// An open of this process belonging to `unit` on `inode`, for the shim to break.
    fn open_of_unit(&self, inode: InodeKey, unit: WireUnit) -> Option<(RawFd, &OpenRecord)> {
        self.opens
            .iter()
            .filter(|(_, record)| record.inode == inode && record.generation == self.generation)
            .find(|(_, record)| record.in_unit(unit))
            .map(|(fd, record)| (*fd, record))
    }

    /// Routes a daemon break request to an open of its unit; answers at once when this process
    /// has none left (its opens closed meanwhile: the closes end the unit's part).
    fn order_break(&mut self, request: BreakRequest) -> Option<BreakOrder> {
        let found = self
            .open_of_unit(request.inode, request.unit)
            .map(|(fd, record)| (fd, record.lease_key()));
        let Some((fd, lease_key)) = found else {
            self.ack(&request, Caching::NONE);
            return None;
        };
        let token = self.new_token();
        let order = BreakOrder { fd, lease_key, break_to: request.break_to, token };
        self.breaks
            .insert(token, PendingBreak::Daemon { request, generation: self.generation });
        Some(order)
    }

    fn ack(&mut self, request: &BreakRequest, caching: Caching) {
        let Some(client) = self.client.as_mut() else { return };
        if let Err(err) = client.break_ack(request.request_id, request.inode, request.unit, caching) {
            self.mark_broken("a break acknowledgement", &err);
        }
        // The bridge lowers every open of the unit to what was acknowledged.
        let generation = self.generation;
        for record in self.opens.values_mut().filter(|r| r.inode == request.inode && r.generation == generation) {
            if record.in_unit(request.unit) {
                record.bridge_caching = record.bridge_caching.intersect(caching);
            }
        }
    }

    /// The file of the description the bridge knows as `bridge_fd`, among this process's
    /// opens and parked opens of the current connection.
    fn inode_of_bridge_fd(&self, bridge_fd: RawFd) -> Option<InodeKey> {
        let generation = self.generation;
        self.opens
            .values()
            .chain(self.parked.values().map(|parked| &parked.record))
            .find(|record| record.bridge_fd == bridge_fd && record.generation == generation)
            .map(|record| record.inode)
    }

    /// A lease break signal of `inode` reached this process (the bridge pointed it here:
    /// only this process's clients cache on the file, and every break of its writable
    /// description takes SMB caching to nothing). The one unit caching here is broken to
    /// nothing at once, as if the bridge had asked (`DIRECT_BREAK`: its answer is a direct
    /// `BreakAck`, or the answer to the bridge's notice if one arrives first, see
    /// [`Bridge::merge_notice`]). A parked open alone is given up (its Close answers).
    /// Anything else (several units, a parked open beside live ones, a description that is
    /// not writable) goes back to the bridge (`BreakSeen`).
    fn signalled(&mut self, inode: InodeKey) -> Option<BreakOrder> {
        let break_timeout = self.direct?;
        let generation = self.generation;
        let breaking_here = |pending: &PendingBreak| {
            matches!(pending, PendingBreak::Daemon { request, generation: g }
                if request.inode == inode && *g == generation)
        };
        if self.breaks.values().any(breaking_here) {
            return None; // already breaking here
        }
        let records: Vec<(RawFd, &OpenRecord)> = self
            .opens
            .iter()
            .filter(|(_, record)| record.inode == inode && record.generation == generation)
            .map(|(fd, record)| (*fd, record))
            .collect();
        let parked = self.parked.get(&inode);
        // Closed here (no open, none parked): the bridge learns it from the Close.
        let lease_fd = records
            .first()
            .map(|(fd, record)| record.lease_fd(*fd))
            .or(parked.map(|parked| parked.description.as_raw_fd()))?;
        let writable =
            records.iter().all(|(_, record)| record.writable) && parked.is_none_or(|p| p.record.writable);
        // SAFETY: lease_fd is the descriptor of an open or parked open of this process, found
        // in its tables just above and open for the duration of this call.
        let target = nfsbridge::lease::fcntl::get_lease(unsafe { BorrowedFd::borrow_raw(lease_fd) });
        if let Ok(target) = target {
            if !lease_going(target, writable) {
                return None; // not breaking: a late signal of a break that ended
            }
        }
        let caching: Vec<&OpenRecord> =
            records.iter().map(|(_, record)| *record).filter(|r| !r.bridge_caching.is_none()).collect();
        let mut units: Vec<WireUnit> = Vec::new();
        for unit in caching.iter().filter_map(|record| record.unit()) {
            if !units.contains(&unit) {
                units.push(unit);
            }
        }
        let current = caching.iter().fold(Caching::NONE, |current, record| current.union(record.bridge_caching));
        if records.is_empty() && parked.is_some() {
            // No client caches through a parked open: it is given up, and its Close is the
            // unit's answer (the bridge sees the break when it takes the Close).
            self.unpark(inode);
            return None;
        }
        let direct = units.len() == 1 && writable && target.is_ok() && parked.is_none();
        let Some(unit) = units.into_iter().next().filter(|_| direct) else {
            self.hand_back(inode);
            return None;
        };
        self.mark_broken_into(inode);
        // As the bridge sets it for the only unit a break waits for, with the whole break
        // timeout left (the bridge learns of the break later).
        let release_until = nfsbridge::lease::protocol::release_deadline(break_timeout);
        tracing::debug!(
            "kernel lease break of inode {}:{} signalled to this process: breaking its client directly",
            inode.dev,
            inode.ino
        );
        let request =
            BreakRequest { request_id: DIRECT_BREAK, inode, unit, current, break_to: Caching::NONE, release_until };
        self.order_break(request)
    }

    /// A break reached `inode`: none of this process's opens of it is parked when it closes.
    fn mark_broken_into(&mut self, inode: InodeKey) {
        let generation = self.generation;
        for record in self.opens.values_mut().filter(|r| r.inode == inode && r.generation == generation) {
            record.broken_into = true;
        }
    }

    /// Gives a break signal of `inode` back to the bridge.
    fn hand_back(&mut self, inode: InodeKey) {
        let Some(client) = self.client.as_mut() else { return };
        tracing::debug!(
            "kernel lease break of inode {}:{} signalled to this process: left to the bridge",
            inode.dev,
            inode.ino
        );
        if let Err(err) = client.break_seen(inode) {
            self.mark_broken("handing a break back", &err);
        }
    }

    /// A notice of the bridge for a break this process started on the kernel's signal:
    /// the running break answers it (with the notice's request id and release deadline)
    /// instead of a second one starting. False when no such break is running.
    fn merge_notice(&mut self, notice: &BreakRequest) -> bool {
        let generation = self.generation;
        for pending in self.breaks.values_mut() {
            if let PendingBreak::Daemon { request, generation: g } = pending {
                if *g == generation
                    && request.request_id == DIRECT_BREAK
                    && request.inode == notice.inode
                    && request.unit == notice.unit
                {
                    request.request_id = notice.request_id;
                    request.release_until = match notice.release_until {
                        0 => 0,
                        until => request.release_until.min(until),
                    };
                    return true;
                }
            }
        }
        false
    }

    /// Whether the open `record` (just removed from `opens`) may be parked when it closes
    /// ([`parking::may_park`]).
    fn parkable(&self, record: &OpenRecord) -> bool {
        let closing = ClosingOpen {
            bridge_caching: record.bridge_caching,
            broken_into: record.broken_into,
            grant_settled: record.provisional.is_none(),
            side_description: record.side_description.is_some(),
            current_connection: record.generation == self.generation && !self.broken,
        };
        let other_opens = self.opens.values().any(|other| other.inode == record.inode);
        let break_pending = self.breaks.values().any(|pending| {
            matches!(pending, PendingBreak::Daemon { request, .. } if request.inode == record.inode)
        });
        parking::may_park(&closing, other_opens, break_pending)
    }

    fn park(&mut self, description: OwnedFd, record: OpenRecord) {
        self.unpark(record.inode);
        if self.parked.len() >= PARK_MAX {
            if let Some(oldest) = self.parked.iter().min_by_key(|(_, p)| p.since).map(|(inode, _)| *inode) {
                self.unpark(oldest);
            }
        }
        self.parked.insert(record.inode, Parked { description, record, since: Instant::now() });
    }

    /// Gives up the parked open of `inode`, if any: the bridge learns that it closed.
    fn unpark(&mut self, inode: InodeKey) {
        let Some(Parked { description, record, .. }) = self.parked.remove(&inode) else { return };
        // This process's descriptor goes first: when the bridge closes the description in
        // answer to the Close (and so drops its kernel lease), nothing else keeps it open,
        // and whoever the lease kept waiting may take a lease of its own at once.
        drop(description);
        if record.generation != self.generation || self.broken {
            return;
        }
        if let Some(client) = self.client.as_mut() {
            if let Err(err) = client.close(inode, record.open_id) {
                self.mark_broken("a close", &err);
            }
        }
    }

    /// Whether `request` is a break of this process's parked open of its inode.
    fn breaks_parked(&self, request: &BreakRequest) -> bool {
        self.parked
            .get(&request.inode)
            .is_some_and(|parked| parked.record.generation == self.generation && parked.record.in_unit(request.unit))
    }

    /// Takes over the parked open of `inode` for a new open when [`parking::takeover`] allows
    /// it. The kernel lease is read from the description itself: a break that started is
    /// seen there at once (F_GETLEASE answers its target), before the bridge's notice
    /// arrives; one that starts after this check finds the open counted in the bridge's table
    /// and is routed to it like any break.
    fn adopt(&mut self, inode: InodeKey, share_path: &str, want_write: bool, provisional: Option<&Provisional>) -> Option<RawFd> {
        let parked = self.parked.get(&inode)?;
        let record = &parked.record;
        if record.generation != self.generation {
            return None;
        }
        let view = ParkedOpen {
            kind: record.kind,
            bridge_caching: record.bridge_caching,
            writable: record.writable,
            share_path: &record.share_path,
        };
        let reopen = Reopen { share_path, want_write, asks: provisional.map(|p| (p.kind, p.requested)) };
        let description = parked.description.as_fd();
        let granted = parking::takeover(&view, &reopen, || nfsbridge::lease::fcntl::get_lease(description).ok())?;
        let parked = self.parked.remove(&inode).expect("found above");
        let mut record = parked.record;
        record.provisional = provisional.map(|p| (p.kind, granted));
        record.adopted = true;
        let fd = parked.description.into_raw_fd();
        self.opens.insert(fd, record);
        Some(fd)
    }

    /// Gives up the parked opens older than [`PARK_LINGER`]; the time until the next one is
    /// due, if any is left.
    fn expire_parked(&mut self, now: Instant) -> Option<Duration> {
        let due: Vec<InodeKey> = self
            .parked
            .iter()
            .filter(|(_, p)| now.duration_since(p.since) >= PARK_LINGER)
            .map(|(inode, _)| *inode)
            .collect();
        for inode in due {
            self.unpark(inode);
        }
        self.next_park_expiry(now)
    }

    /// Parks the open whose descriptor is `fd`, or tells the bridge it closed.
    fn close_open(&mut self, fd: RawFd) {
        let Some(record) = self.opens.remove(&fd) else { return };
        if record.generation != self.generation || self.broken {
            return;
        }
        if self.parkable(&record) {
            if let Some(description) = keep_for_reuse(fd) {
                self.park(description, record);
                return;
            }
        }
        if let Some(client) = self.client.as_mut() {
            if let Err(err) = client.close(record.inode, record.open_id) {
                self.mark_broken("a close", &err);
            }
        }
    }

    /// Carries out the failover requests the client has queued, and gives up the parked opens
    /// on the file systems they release.
    fn handle_failover_requests(&mut self) {
        if let Some(client) = self.client.as_mut() {
            let released = crate::failover::handle_requests(client);
            self.unpark_file_systems(&released);
        }
    }

    /// Gives up the parked opens on the file systems the bridge asked to release.
    fn unpark_file_systems(&mut self, devices: &[u64]) {
        let on_them: Vec<InodeKey> = self.parked.keys().filter(|inode| devices.contains(&inode.dev)).copied().collect();
        for inode in on_them {
            self.unpark(inode);
        }
    }

    fn next_park_expiry(&self, now: Instant) -> Option<Duration> {
        self.parked
            .values()
            .map(|p| (p.since + PARK_LINGER).saturating_duration_since(now))
            .min()
    }
}

/// Milliseconds for the shim's timer (at least 1), or 0 when nothing waits.
fn timer_ms(due: Option<Duration>) -> u32 {
    due.map_or(0, |left| left.as_millis().clamp(1, u32::MAX as u128) as u32)
}

/// A descriptor of the same description as `fd`, if the file still has a name (a deleted
/// file's description is not worth keeping: it would only hold the file's space).
fn keep_for_reuse(fd: RawFd) -> Option<OwnedFd> {
    // SAFETY: the shim passes the descriptor of the open being closed, still open during the
    // call.
    let fd = unsafe { BorrowedFd::borrow_raw(fd) };
    let mut st = std::mem::MaybeUninit::<libc::stat>::uninit();
    // SAFETY: fstat writes a struct stat to the pointer, which is valid and large enough.
    if unsafe { libc::fstat(fd.as_raw_fd(), st.as_mut_ptr()) } != 0 {
        return None;
    }
    // SAFETY: fstat returned 0, so it filled the struct.
    if unsafe { st.assume_init() }.st_nlink == 0 {
        return None;
    }
    fd.try_clone_to_owned().ok()
}

/// Starts the breaks in the shim (without the lock held).
fn start_breaks(orders: Vec<BreakOrder>) {
    for order in orders {
        let key_ptr = order.lease_key.as_ref().map_or(std::ptr::null(), |key| key.as_ptr());
        // SAFETY: called on smbd's main loop; key_ptr is NULL or 16 readable bytes that live
        // until the call returns (the shim copies nothing it keeps).
        let started = unsafe { ffi::nfsb_request_break(order.fd, key_ptr, order.break_to.to_lease_state(), order.token) };
        if !started {
            break_not_started(order.token);
        }
    }
}

pub fn socket(path: &str) -> RawFd {
    bridge().socket(Path::new(path))
}

/// The socket if this process is connected to the bridge at `path` (no attempt to connect).
pub fn connected_socket(path: &str) -> RawFd {
    let bridge = bridge();
    match &bridge.client {
        Some(client) if !bridge.broken && bridge.socket_path.as_deref() == Some(Path::new(path)) => {
            client.as_raw_fd()
        }
        _ => -1,
    }
}

/// Break requests that arrived during a request and wait to be taken (see `readable`).
pub fn has_queued_requests() -> bool {
    bridge().client.as_ref().is_some_and(BridgeClient::has_queued_requests)
}

pub fn is_broken() -> bool {
    bridge().broken
}

#[allow(clippy::too_many_arguments)]
pub fn open(
    path: &str,
    share_path: &str,
    reference: RawFd,
    inode: InodeKey,
    want_write: bool,
    nonblocking: bool,
    provisional: Option<Provisional>,
) -> i32 {
    let mut bridge = bridge();
    if bridge.socket(Path::new(path)) < 0 {
        return ffi::NFSB_BRIDGE_UNREACHABLE;
    }
    if let Some(fd) = bridge.adopt(inode, share_path, want_write, provisional.as_ref()) {
        return fd;
    }
    let open_id = bridge.next_open_id;
    bridge.next_open_id += 1;
    let client = bridge.client.as_mut().expect("socket() connected");
    // SAFETY: the shim passes a descriptor it keeps open for the duration of this call.
    let reference = unsafe { BorrowedFd::borrow_raw(reference) };
    let provisional_kind = provisional.as_ref().map(|p| p.kind);
    match client.open_description_granting(reference, share_path, open_id, want_write, nonblocking, provisional) {
        Ok(opened) => {
            let fd = opened.description.into_raw_fd();
            let generation = bridge.generation;
            let provisional = provisional_kind.map(|kind| (kind, opened.caching));
            bridge.opens.insert(
                fd,
                OpenRecord {
                    open_id,
                    inode: opened.inode,
                    generation,
                    // The bridge counts it as a holder of that kind from now on.
                    kind: provisional_kind,
                    provisional,
                    side_description: None,
                    // What the provisional grant got (none without one).
                    bridge_caching: opened.caching,
                    writable: opened.writable,
                    share_path: share_path.to_owned(),
                    adopted: false,
                    broken_into: false,
                    bridge_fd: opened.bridge_fd,
                },
            );
            // A parked open of the file that could not be taken over (another lease key, no
            // write access) is given up now that this one keeps the description.
            bridge.unpark(opened.inode);
            fd
        }
        Err(err) if is_transport_error(&err) => {
            bridge.mark_broken("an open", &err);
            ffi::NFSB_BRIDGE_UNREACHABLE
        }
        Err(err) => -err.raw_os_error().unwrap_or(libc::EIO),
    }
}

pub fn grant(
    path: &str,
    share_path: &str,
    fd: RawFd,
    lease_key: Option<[u8; 16]>,
    granted: Caching,
    client_address: &str,
    server_address: &str,
) -> Caching {
    let mut bridge = bridge();
    if granted.is_none() {
        // Nothing to back; only a grant the bridge made with the open is taken back.
        let generation = bridge.generation;
        let settled = bridge.opens.get_mut(&fd).and_then(|record| {
            let provisional = record.provisional.take();
            if record.adopted {
                // The bridge keeps counting the parked open's caching (see `adopt`).
                return None;
            }
            record.kind = None;
            provisional.filter(|(_, backed)| !backed.is_none() && record.generation == generation)
                .map(|_| (record.inode, record.open_id))
        });
        if let (Some((inode, open_id)), Some(client)) = (settled, bridge.client.as_mut()) {
            if let Err(err) = client.adjust_grant(inode, open_id, Caching::NONE) {
                bridge.mark_broken("a grant adjustment", &err);
            } else if let Some(record) = bridge.opens.get_mut(&fd) {
                record.bridge_caching = Caching::NONE;
            }
        }
        return Caching::NONE;
    }
    if bridge.socket(Path::new(path)) < 0 {
        return Caching::NONE;
    }
    if !bridge.opens.contains_key(&fd) {
        // No bridge description yet: a stat open (its descriptor is O_PATH), or an open made
        // while the bridge was unreachable. Open one beside it for the kernel lease; with a
        // plain descriptor still open the kernel refuses the lease and nothing is backed.
        let open_id = bridge.next_open_id;
        bridge.next_open_id += 1;
        let client = bridge.client.as_mut().expect("socket() connected");
        // SAFETY: fd is the fsp's descriptor, open for the duration of this call.
        let reference = unsafe { BorrowedFd::borrow_raw(fd) };
        match client.open_description_granting(reference, share_path, open_id, false, true, None) {
            Ok(side) => {
                let generation = bridge.generation;
                bridge.opens.insert(
                    fd,
                    OpenRecord {
                        open_id,
                        inode: side.inode,
                        generation,
                        kind: None,
                        provisional: None,
                        side_description: Some(side.description),
                        bridge_caching: Caching::NONE,
                        writable: false,
                        share_path: share_path.to_owned(),
                        adopted: false,
                        broken_into: false,
                        bridge_fd: side.bridge_fd,
                    },
                );
            }
            Err(err) => {
                if is_transport_error(&err) {
                    bridge.mark_broken("a grant", &err);
                } else {
                    tracing::info!("no bridge description for a granted open: {err}");
                }
                return Caching::NONE;
            }
        }
    }
    let generation = bridge.generation;
    let record = bridge.opens.get(&fd).expect("inserted above");
    if record.generation != generation {
        return Caching::NONE;
    }
    let (inode, open_id) = (record.inode, record.open_id);
    let kind = lease_key.map_or(GrantKind::Oplock, GrantKind::Lease);
    let (provisional, adopted) = {
        let record = bridge.opens.get_mut(&fd).expect("present");
        (record.provisional.take(), record.adopted)
    };
    if let Some((provisional_kind, backed)) = provisional {
        if provisional_kind == kind && granted.within(backed) {
            // Granted with the open: only tell the bridge if smbd granted less (no reply). A
            // taken-over parked open stays counted as it was (see `adopt`).
            if granted != backed && !adopted {
                let client = bridge.client.as_mut().expect("socket() connected");
                if let Err(err) = client.adjust_grant(inode, open_id, granted) {
                    bridge.mark_broken("a grant adjustment", &err);
                    return Caching::NONE;
                }
                bridge.opens.get_mut(&fd).expect("present").bridge_caching = granted;
            }
            return granted;
        }
        // smbd granted more than the open was granted (an existing lease of the same key),
        // or another kind: ask the bridge properly.
    }
    let client = bridge.client.as_mut().expect("socket() connected");
    match client.grant(inode, open_id, kind, granted, share_path, client_address, server_address) {
        Ok(backed) => {
            let record = bridge.opens.get_mut(&fd).expect("present");
            record.kind = Some(kind);
            // The bridge replaced the open's holder with this grant.
            record.bridge_caching = backed;
            backed
        }
        Err(err) => {
            if is_transport_error(&err) {
                bridge.mark_broken("a grant", &err);
            } else {
                tracing::warn!("the lease bridge refused a grant: {err}");
            }
            Caching::NONE
        }
    }
}

/// The open whose descriptor is `fd` is closing. The last open of a file in this process is
/// parked ([`Parked`]) rather than closed in the bridge when it may be. Returns the shim's
/// timer for [`expire_parked`] in ms (0: nothing parked).
pub fn close(fd: RawFd) -> u32 {
    let mut bridge = bridge();
    bridge.close_open(fd);
    timer_ms(bridge.next_park_expiry(Instant::now()))
}

/// The shim's timer: gives up the parked opens that lingered long enough; when to call again
/// in ms (0: nothing parked).
pub fn expire_parked() -> u32 {
    timer_ms(bridge().expire_parked(Instant::now()))
}

/// Applies failover requests the client queued while it waited for other replies.
pub fn drain_failover_requests() {
    bridge().handle_failover_requests();
}

/// The socket is readable. False when the daemon is gone.
pub fn readable() -> bool {
    let orders = {
        let mut bridge = bridge();
        let Some(client) = bridge.client.as_mut() else { return false };
        let requests = match client.take_break_requests() {
            Ok(requests) => requests,
            Err(err) => {
                bridge.mark_broken("reading break requests", &err);
                return false;
            }
        };
        bridge.handle_failover_requests();
        let mut orders = Vec::new();
        for request in requests {
            let inode = request.inode;
            bridge.mark_broken_into(inode);
            if !bridge.merge_notice(&request) && !bridge.breaks_parked(&request) {
                orders.extend(bridge.order_break(request));
            }
            // No client caches through a parked open: it is given up, and for the parked open's
            // unit its Close is the answer (the bridge counts a unit's last close as its ack).
            bridge.unpark(inode);
        }
        orders
    };
    start_breaks(orders);
    true
}

/// Drops the connection (the shim has stopped watching it). Every caching this process's
/// clients still hold is broken to none, and the kernel leases left behind on the shared
/// descriptions are released once each client has answered.
pub fn disconnect() {
    let orders = {
        let mut bridge = bridge();
        if bridge.client.take().is_none() {
            return;
        }
        bridge.broken = false;
        bridge.socket_path = None;
        bridge.direct = None;
        // No client caches through a parked open: its descriptor just goes (the kernel lease
        // the dead bridge left goes with the description's last descriptor, or is released
        // by a process whose clients did cache, once they have answered).
        bridge.parked.clear();
        tracing::warn!("lease bridge gone: breaking the caching of this process's clients to none");
        let cached: Vec<(RawFd, Option<[u8; 16]>, RawFd)> = bridge
            .opens
            .iter()
            .filter(|(_, record)| record.kind.is_some())
            .map(|(fd, record)| (*fd, record.lease_key(), record.lease_fd(*fd)))
            .collect();
        let mut orders = Vec::new();
        for (fd, lease_key, lease_fd) in cached {
            let token = bridge.new_token();
            bridge.breaks.insert(token, PendingBreak::Orphaned { lease_fd });
            orders.push(BreakOrder { fd, lease_key, break_to: Caching::NONE, token });
        }
        // Breaks the daemon asked for can no longer be acknowledged to it.
        bridge.breaks.retain(|_, pending| matches!(pending, PendingBreak::Orphaned { .. }));
        orders
    };
    start_breaks(orders);
}

/// The shim now handles the lease break signal for good (see [`SIGNALS_HANDLED`]).
pub fn signals_handled() {
    SIGNALS_HANDLED.store(true, Ordering::Relaxed);
}

/// The kernel's lease break signal arrived; `bridge_fd` (its `si_fd`) is the bridge's
/// descriptor of the description.
pub fn break_signalled(bridge_fd: RawFd) {
    let orders = {
        let mut bridge = bridge();
        let Some(inode) = bridge.inode_of_bridge_fd(bridge_fd) else {
            tracing::debug!("break signal for bridge descriptor {bridge_fd}: no open of this process has it");
            return;
        };
        bridge.signalled(inode).into_iter().collect::<Vec<_>>()
    };
    start_breaks(orders);
}

/// SIGIO: the kernel's realtime signal queue overflowed and some break signals were lost;
/// every description of this process is looked at (`signalled` ignores leases that are not
/// breaking).
pub fn break_signals_lost() {
    // smbd's SIGIO handler took the place of the directory delegations' own one.
    crate::dirdeleg::signals_lost();
    let orders = {
        let mut bridge = bridge();
        if bridge.direct.is_none() {
            return;
        }
        tracing::info!("lease break signals lost (SIGIO): checking every lease of this process");
        // Only files this process's clients cache on can have a break signalled here (and
        // F_GETLEASE cannot tell "breaking to nothing" from "no lease" on the others).
        let generation = bridge.generation;
        let inodes: BTreeSet<InodeKey> = bridge
            .opens
            .values()
            .filter(|record| record.generation == generation && !record.bridge_caching.is_none())
            .map(|record| record.inode)
            .chain(bridge.parked.keys().copied())
            .collect();
        inodes.into_iter().filter_map(|inode| bridge.signalled(inode)).collect::<Vec<_>>()
    };
    start_breaks(orders);
}

/// The shim found no open to break for `token` (it closed, or the break message could not be
/// sent: the shim logged why). Answered at once, never re-routed (that could loop).
fn break_not_started(token: u64) {
    let mut bridge = bridge();
    match bridge.breaks.remove(&token) {
        Some(PendingBreak::Daemon { request, generation }) if generation == bridge.generation => {
            bridge.ack(&request, Caching::NONE);
        }
        Some(PendingBreak::Orphaned { lease_fd }) => {
            drop(bridge);
            release_orphaned_lease(lease_fd);
        }
        _ => {}
    }
}

pub fn break_answered(token: u64, lease_state: u32) {
    let orders = {
        let mut bridge = bridge();
        let Some(pending) = bridge.breaks.remove(&token) else { return };
        match pending {
            PendingBreak::Daemon { request, generation } => {
                if generation != bridge.generation {
                    return;
                }
                if lease_state == ffi::NFSB_BREAK_ABANDONED {
                    // Its open closed: another open of the same lease carries the break on.
                    bridge.order_break(request).into_iter().collect::<Vec<_>>()
                } else {
                    let caching = Caching::from_lease_state(lease_state);
                    if caching == Caching::NONE && request.release_until != 0 {
                        if let Some((fd, record)) = bridge.open_of_unit(request.inode, request.unit) {
                            let lease_fd = record.lease_fd(fd);
                            release_sole_lease(request.inode, lease_fd, record.writable, request.release_until);
                        }
                    }
                    bridge.ack(&request, caching);
                    Vec::new()
                }
            }
            PendingBreak::Orphaned { lease_fd } => {
                if lease_state != ffi::NFSB_BREAK_ABANDONED {
                    release_orphaned_lease(lease_fd);
                }
                Vec::new()
            }
        }
    };
    start_breaks(orders);
}

/// Gives up the kernel lease of a break this process's unit alone was asked for, once its
/// client caches nothing, before the acknowledgement goes to the bridge: the local or NFS
/// opener the break holds back gets in without waiting for the bridge to wake up (about
/// 0.1 ms of the break round trip, BENCHMARKS.md). Only
/// - when the bridge said so (`release_until` is not 0: no other unit had to be asked, and
///   the bridge grants nothing while its break is pending, so nobody else caches anything),
/// - before `release_until` (after it the bridge may have timed the break out and taken a new
///   lease for someone else),
/// - and when the bridge would give the lease up entirely: the kernel's target is no lease
///   (`F_GETLEASE` answers `F_UNLCK` during a break to nothing), or a read lease on a
///   writable description, which the kernel cannot hold (so no read caching rests on one,
///   and the bridge breaks every unit to nothing). A read lease on a read-only description
///   may still back another unit's read caching: the bridge decides that one.
///
/// The bridge then finds the lease gone when it applies the acknowledgement.
fn release_sole_lease(inode: InodeKey, lease_fd: RawFd, writable: bool, release_until: u64) {
    if nfsbridge::lease::protocol::monotonic_now_ns() >= release_until {
        return;
    }
    // SAFETY: lease_fd is a descriptor of an open of this process in its open table (the
    // caller found the record, which owns or names it), used only during this call.
    let description = unsafe { BorrowedFd::borrow_raw(lease_fd) };
    match nfsbridge::lease::fcntl::get_lease(description) {
        Ok(target) if lease_going(target, writable) => {}
        _ => return,
    }
    match release_lease(description) {
        Ok(()) => tracing::debug!(
            "kernel lease of inode {}:{} released here: the break waited for this process's client alone",
            inode.dev,
            inode.ino
        ),
        // EAGAIN: no lease left (the bridge or the kernel released it already).
        Err(err) if err.raw_os_error() == Some(libc::EAGAIN) => {}
        Err(err) => tracing::debug!("cannot release the kernel lease of inode {}:{} here: {err}", inode.dev, inode.ino),
    }
}

/// Whether `F_GETLEASE`'s answer on a description means that its lease is going entirely:
/// no lease (a break to nothing under way, or the lease already given up), or a read lease on
/// a writable description, which the kernel cannot hold (only a break's target reads so).
fn lease_going(target: Option<LeaseType>, writable: bool) -> bool {
    match target {
        None => true,
        Some(LeaseType::Read) => writable,
        Some(LeaseType::Write) => false,
    }
}

/// Gives up the kernel lease on the description behind `description` (any descriptor of it
/// may) with root's capabilities: the file is not smbd's own (CAP_LEASE). EAGAIN when there
/// is no lease.
fn release_lease(description: BorrowedFd<'_>) -> io::Result<()> {
    let _root = crate::samba::Privileged::enter();
    nfsbridge::lease::fcntl::set_lease(description, None)
}

/// Releases the kernel lease a vanished daemon left on a description.
fn release_orphaned_lease(fd: RawFd) {
    // SAFETY: fd is a descriptor of an open this process still has (its record is present
    // until the close hook runs, and the close ends the break first).
    if let Err(err) = release_lease(unsafe { BorrowedFd::borrow_raw(fd) }) {
        tracing::warn!("cannot release the kernel lease left by the lease bridge: {err}");
    }
}
