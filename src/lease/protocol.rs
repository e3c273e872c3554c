//! Messages between smbd processes (the nfsbridge module) and the lease bridge daemon.
//!
//! One message per SOCK_SEQPACKET packet ([`super::transport`]). Layout, little-endian:
//! magic `"NB"`, version (1 byte), tag (1 byte), request id (u64), then the tag's fields.
//! Strings are a u16 length and UTF-8 bytes, at most [`MAX_STRING_LEN`]; a packet with bytes
//! left over is refused. Every request but `Close` gets exactly one reply with its request id
//! (`Done`, `Failed` or the request's own answer); `Close` gets none (smbd never waits for
//! it). `BreakNotify` is the daemon's request, `BreakAck` answers it.
//!
//! Versions: 1 (the first layer) had no file id in `OpenDescription` and no `ListLeases`;
//! 2 adds both; 3 adds the provisional grant of `OpenDescription` (answered in
//! `DescriptionOpened`), `AdjustGrant`, the failover messages (`Release` … `GraceState`,
//! `super::failover`), and sends no reply to `Close`; 4 adds `release_until` to
//! `BreakNotify`. A peer speaking another version is refused at its first message.
//!
//! The sending smbd's pid is never in a message: the daemon takes it from SO_PEERCRED, so an
//! smbd can only act on its own opens and break units.
use super::failover::{GraceEntry, ReleaseScope};
use super::kernel::LeaseType;
use super::table::{BreakUnit, Caching, GrantKind, InodeKey, LeaseKey};
use super::transport::PeerCredentials;

pub const MAGIC: [u8; 2] = *b"NB";
pub const VERSION: u8 = 5;
/// The request id of a `BreakAck` for a break the smbd started itself, on a kernel break
/// signal the bridge had pointed at it (`DirectBreaks`), with no `BreakNotify` to answer. The
/// bridge numbers its own requests from 2^63 and smbds from 1, so 0 is never a request.
pub const DIRECT_BREAK: u64 = 0;
/// PATH_MAX: share paths and addresses are never longer.
pub const MAX_STRING_LEN: usize = 4096;

/// `CLOCK_MONOTONIC` now, in nanoseconds: the clock of `BreakNotify`'s `release_until`, one
/// clock for every process on the machine.
pub fn monotonic_now_ns() -> u64 {
    let now = rustix::time::clock_gettime(rustix::time::ClockId::Monotonic);
    (now.tv_sec as u64)
        .saturating_mul(1_000_000_000)
        .saturating_add(now.tv_nsec as u64)
}

/// `release_until` for a break that may run `left` longer before the bridge's timeout: a
/// second short of that, from now; 0 (the smbd may not release) when less is left.
pub fn release_deadline(left: std::time::Duration) -> u64 {
    match left.checked_sub(std::time::Duration::from_secs(1)) {
        Some(margin) if !margin.is_zero() => {
            monotonic_now_ns().saturating_add(margin.as_nanos() as u64)
        }
        _ => 0,
    }
}

/// A break unit as it travels: the smbd pid is the connection's peer.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum WireUnit {
    Lease(LeaseKey),
    Oplock { file_id: u64 },
}

impl WireUnit {
    pub fn from_unit(unit: BreakUnit) -> WireUnit {
        match unit {
            BreakUnit::Lease { key, .. } => WireUnit::Lease(key),
            BreakUnit::Oplock(open) => WireUnit::Oplock {
                file_id: open.file_id,
            },
        }
    }

    /// The table's unit for this wire unit sent by (or to) `smbd_pid`.
    pub fn with_pid(self, smbd_pid: u32) -> BreakUnit {
        match self {
            WireUnit::Lease(key) => BreakUnit::Lease { smbd_pid, key },
            WireUnit::Oplock { file_id } => {
                BreakUnit::Oplock(super::table::OpenId { smbd_pid, file_id })
            }
        }
    }
}

/// A grant asked for with the open (see `Message::OpenDescription`).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Provisional {
    pub kind: GrantKind,
    pub requested: Caching,
    pub client_address: String,
    pub server_address: String,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Message {
    /// smbd → daemon, carrying one O_PATH descriptor of the file smbd resolved: give me a dup
    /// of the inode's shared description.
    OpenDescription {
        request_id: u64,
        share_path: String,
        /// The SMB open this description is for; the daemon keeps the description while any
        /// open of the inode is not closed (`Close`).
        file_id: u64,
        want_write: bool,
        nonblocking: bool,
        /// The caching the client asked for in this SMB create, granted at once on the new
        /// open (kernel lease taken first), so that the create needs no `Grant` round trip;
        /// smbd then lowers it with `AdjustGrant` to what it really granted.
        provisional: Option<Provisional>,
    },
    /// daemon → smbd, carrying the dup; `caching` is what the provisional grant got (none
    /// without one).
    DescriptionOpened {
        request_id: u64,
        inode: InodeKey,
        writable: bool,
        caching: Caching,
        /// The bridge's descriptor number of the description: the `si_fd` of its lease break
        /// signal when the bridge makes this smbd the signal's receiver (`DirectBreaks`).
        bridge_fd: u32,
    },
    /// smbd → daemon: open `file_id` now caches `caching`, no more than it was granted (what
    /// smbd granted after a provisional grant). No reply.
    AdjustGrant {
        request_id: u64,
        inode: InodeKey,
        file_id: u64,
        caching: Caching,
    },
    /// smbd → daemon: smbd granted (or is about to grant) `requested` on open `file_id`.
    Grant {
        request_id: u64,
        inode: InodeKey,
        file_id: u64,
        kind: GrantKind,
        requested: Caching,
        share_path: String,
        client_address: String,
        server_address: String,
    },
    /// daemon → smbd: what the kernel lease backs; the client must get no more.
    Granted {
        request_id: u64,
        caching: Caching,
        kernel_lease: Option<LeaseType>,
    },
    /// smbd → daemon: open `file_id` is closed.
    Close {
        request_id: u64,
        inode: InodeKey,
        file_id: u64,
    },
    /// daemon → smbd: break this unit's client down to `break_to`. `release_until`: when
    /// this unit is the only one the kernel lease break waits for, a `CLOCK_MONOTONIC` time
    /// (ns) before which smbd may give the kernel lease up itself once its client caches
    /// nothing, before acknowledging (one wake-up of the daemon less); 0 when it may not.
    BreakNotify {
        request_id: u64,
        inode: InodeKey,
        unit: WireUnit,
        current: Caching,
        break_to: Caching,
        release_until: u64,
    },
    /// smbd → daemon: this smbd handles signal `signo` (with `SA_SIGINFO`), so the bridge may
    /// point a description's lease break signal at it (`F_SETOWN`) while its clients alone
    /// cache on the file: it then starts the SMB break itself, without waiting for a
    /// `BreakNotify`, and answers with a direct `BreakAck` ([`DIRECT_BREAK`]). Answered with
    /// `DirectBreaksAccepted`, or `Failed` (EINVAL: the bridge signals another number).
    DirectBreaks { request_id: u64, signo: u32 },
    /// daemon → smbd: direct breaks are on; `break_timeout_ms` is the bridge's break timeout
    /// (a direct break's `release_until` is one second short of it).
    DirectBreaksAccepted {
        request_id: u64,
        break_timeout_ms: u64,
    },
    /// smbd → daemon: a lease break signal of `inode` reached this smbd and it leaves the break
    /// to the bridge (several units there, a parked open beside live ones, a description that
    /// is not writable). No reply.
    BreakSeen { request_id: u64, inode: InodeKey },
    /// smbd → daemon: the client acknowledged (or smbd gave up on it) and now caches `caching`.
    /// With request id [`DIRECT_BREAK`]: the answer to a break this smbd started on a signal.
    BreakAck {
        request_id: u64,
        inode: InodeKey,
        unit: WireUnit,
        caching: Caching,
    },
    /// Either way: the request succeeded and has no other answer.
    Done { request_id: u64 },
    /// Either way: the request failed with this errno.
    Failed { request_id: u64, errno: i32 },
    /// admin (uid 0) → daemon: list the lease table.
    ListLeases { request_id: u64 },
    /// daemon → admin, carrying one descriptor: a sealed memfd holding the table as JSON
    /// (`super::listing::LeaseListing`), which has no size limit a packet would impose.
    LeaseList { request_id: u64 },
    /// admin (uid 0) → daemon: release everything held through `scope` (`nfsbridge unlock-ip`,
    /// `unlock-fs`), answering when done or after `timeout_ms`.
    Release {
        request_id: u64,
        scope: ReleaseScope,
        timeout_ms: u64,
    },
    /// daemon → admin, carrying one descriptor: a sealed memfd holding the outcome as JSON
    /// (`super::failover::ReleaseReport`).
    ReleaseReport { request_id: u64 },
    /// daemon → smbd: end your client connection if it is within `scope`; answer with
    /// `ReleaseAnswer`.
    ReleaseRequest { request_id: u64, scope: ReleaseScope },
    /// smbd → daemon: whether this smbd is ending its client connection for the request.
    ReleaseAnswer { request_id: u64, releasing: bool },
    /// admin (uid 0) → daemon: a grace period for clients through `address` on shares at or
    /// below `path` (`nfsbridge grace`); 0 ms ends it. Answered with `Done`.
    Grace {
        request_id: u64,
        address: String,
        path: String,
        duration_ms: u64,
    },
    /// smbd → daemon: the grace periods in force now (answered with `GraceState`); daemon →
    /// smbd: the same, unasked, whenever they change.
    GraceQuery { request_id: u64 },
    GraceState {
        request_id: u64,
        entries: Vec<GraceEntry>,
    },
}

mod tag {
    pub const OPEN_DESCRIPTION: u8 = 1;
    pub const DESCRIPTION_OPENED: u8 = 2;
    pub const GRANT: u8 = 3;
    pub const GRANTED: u8 = 4;
    pub const CLOSE: u8 = 5;
    pub const BREAK_NOTIFY: u8 = 6;
    pub const BREAK_ACK: u8 = 7;
    pub const DONE: u8 = 8;
    pub const FAILED: u8 = 9;
    pub const LIST_LEASES: u8 = 10;
    pub const LEASE_LIST: u8 = 11;
    pub const RELEASE: u8 = 12;
    pub const RELEASE_REPORT: u8 = 13;
    pub const RELEASE_REQUEST: u8 = 14;
    pub const RELEASE_ANSWER: u8 = 15;
    pub const GRACE: u8 = 16;
    pub const GRACE_QUERY: u8 = 17;
    pub const GRACE_STATE: u8 = 18;
    pub const ADJUST_GRANT: u8 = 19;
    pub const DIRECT_BREAKS: u8 = 20;
    pub const DIRECT_BREAKS_ACCEPTED: u8 = 21;
    pub const BREAK_SEEN: u8 = 22;
}

/// Why bytes are not a message.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum DecodeError {
    #[error("message ends early")]
    Truncated,
    #[error("not a lease bridge message")]
    BadMagic,
    #[error("protocol version {0} (this side speaks {VERSION})")]
    UnsupportedVersion(u8),
    #[error("unknown message tag {0}")]
    UnknownTag(u8),
    #[error("{0} bytes left over after the message")]
    TrailingBytes(usize),
    #[error("invalid {field}: {value}")]
    InvalidValue { field: &'static str, value: u64 },
    #[error("string of {0} bytes is longer than {MAX_STRING_LEN}")]
    StringTooLong(usize),
    #[error("string is not UTF-8")]
    NotUtf8,
}

impl Message {
    pub fn request_id(&self) -> u64 {
        match self {
            Message::OpenDescription { request_id, .. }
            | Message::DescriptionOpened { request_id, .. }
            | Message::AdjustGrant { request_id, .. }
            | Message::Grant { request_id, .. }
            | Message::Granted { request_id, .. }
            | Message::Close { request_id, .. }
            | Message::BreakNotify { request_id, .. }
            | Message::BreakAck { request_id, .. }
            | Message::DirectBreaks { request_id, .. }
            | Message::DirectBreaksAccepted { request_id, .. }
            | Message::BreakSeen { request_id, .. }
            | Message::Done { request_id }
            | Message::Failed { request_id, .. }
            | Message::ListLeases { request_id }
            | Message::LeaseList { request_id }
            | Message::Release { request_id, .. }
            | Message::ReleaseReport { request_id }
            | Message::ReleaseRequest { request_id, .. }
            | Message::ReleaseAnswer { request_id, .. }
            | Message::Grace { request_id, .. }
            | Message::GraceQuery { request_id }
            | Message::GraceState { request_id, .. } => *request_id,
        }
    }

    /// How many descriptors travel with this message (anything else is a protocol error).
    pub fn descriptors_carried(&self) -> usize {
        match self {
            Message::OpenDescription { .. }
            | Message::DescriptionOpened { .. }
            | Message::LeaseList { .. }
            | Message::ReleaseReport { .. } => 1,
            _ => 0,
        }
    }

    /// The packet for this message. Panics only on a string over [`MAX_STRING_LEN`], which
    /// callers build from paths and addresses that cannot be that long.
    pub fn encode(&self) -> Vec<u8> {
        let mut out = Writer(Vec::with_capacity(64));
        out.0.extend_from_slice(&MAGIC);
        out.u8(VERSION);
        let (tag, request_id) = (self.tag(), self.request_id());
        out.u8(tag);
        out.u64(request_id);
        match self {
            Message::OpenDescription {
                share_path,
                file_id,
                want_write,
                nonblocking,
                provisional,
                ..
            } => {
                out.string(share_path);
                out.u64(*file_id);
                out.u8(
                    u8::from(*want_write)
                        | u8::from(*nonblocking) << 1
                        | u8::from(provisional.is_some()) << 2,
                );
                if let Some(provisional) = provisional {
                    out.kind(provisional.kind);
                    out.caching(provisional.requested);
                    out.string(&provisional.client_address);
                    out.string(&provisional.server_address);
                }
            }
            Message::DescriptionOpened {
                inode,
                writable,
                caching,
                bridge_fd,
                ..
            } => {
                out.inode(*inode);
                out.u8(u8::from(*writable));
                out.caching(*caching);
                out.u32(*bridge_fd);
            }
            Message::DirectBreaks { signo, .. } => out.u32(*signo),
            Message::DirectBreaksAccepted {
                break_timeout_ms, ..
            } => out.u64(*break_timeout_ms),
            Message::BreakSeen { inode, .. } => out.inode(*inode),
            Message::AdjustGrant {
                inode,
                file_id,
                caching,
                ..
            } => {
                out.inode(*inode);
                out.u64(*file_id);
                out.caching(*caching);
            }
            Message::Grant {
                inode,
                file_id,
                kind,
                requested,
                share_path,
                client_address,
                server_address,
                ..
            } => {
                out.inode(*inode);
                out.u64(*file_id);
                out.kind(*kind);
                out.caching(*requested);
                out.string(share_path);
                out.string(client_address);
                out.string(server_address);
            }
            Message::Granted {
                caching,
                kernel_lease,
                ..
            } => {
                out.caching(*caching);
                out.u8(match kernel_lease {
                    None => 0,
                    Some(LeaseType::Read) => 1,
                    Some(LeaseType::Write) => 2,
                });
            }
            Message::Close { inode, file_id, .. } => {
                out.inode(*inode);
                out.u64(*file_id);
            }
            Message::BreakNotify {
                inode,
                unit,
                current,
                break_to,
                release_until,
                ..
            } => {
                out.inode(*inode);
                out.unit(*unit);
                out.caching(*current);
                out.caching(*break_to);
                out.u64(*release_until);
            }
            Message::BreakAck {
                inode,
                unit,
                caching,
                ..
            } => {
                out.inode(*inode);
                out.unit(*unit);
                out.caching(*caching);
            }
            Message::Done { .. }
            | Message::ListLeases { .. }
            | Message::LeaseList { .. }
            | Message::ReleaseReport { .. }
            | Message::GraceQuery { .. } => {}
            Message::Release {
                scope, timeout_ms, ..
            } => {
                out.scope(scope);
                out.u64(*timeout_ms);
            }
            Message::ReleaseRequest { scope, .. } => out.scope(scope),
            Message::ReleaseAnswer { releasing, .. } => out.u8(u8::from(*releasing)),
            Message::Grace {
                address,
                path,
                duration_ms,
                ..
            } => {
                out.string(address);
                out.string(path);
                out.u64(*duration_ms);
            }
            Message::GraceState { entries, .. } => {
                // At most a few hundred entries (one per address and export); a packet holds
                // 64 KiB, and the daemon refuses to keep more than MAX_GRACE_ENTRIES.
                out.0
                    .extend_from_slice(&(entries.len() as u16).to_le_bytes());
                for entry in entries {
                    out.string(&entry.address);
                    out.string(&entry.path);
                    out.u64(entry.remaining_ms);
                }
            }
            Message::Failed { errno, .. } => out.u32(*errno as u32),
        }
        out.0
    }

    fn tag(&self) -> u8 {
        match self {
            Message::OpenDescription { .. } => tag::OPEN_DESCRIPTION,
            Message::DescriptionOpened { .. } => tag::DESCRIPTION_OPENED,
            Message::AdjustGrant { .. } => tag::ADJUST_GRANT,
            Message::Grant { .. } => tag::GRANT,
            Message::Granted { .. } => tag::GRANTED,
            Message::Close { .. } => tag::CLOSE,
            Message::BreakNotify { .. } => tag::BREAK_NOTIFY,
            Message::BreakAck { .. } => tag::BREAK_ACK,
            Message::DirectBreaks { .. } => tag::DIRECT_BREAKS,
            Message::DirectBreaksAccepted { .. } => tag::DIRECT_BREAKS_ACCEPTED,
            Message::BreakSeen { .. } => tag::BREAK_SEEN,
            Message::Done { .. } => tag::DONE,
            Message::Failed { .. } => tag::FAILED,
            Message::ListLeases { .. } => tag::LIST_LEASES,
            Message::LeaseList { .. } => tag::LEASE_LIST,
            Message::Release { .. } => tag::RELEASE,
            Message::ReleaseReport { .. } => tag::RELEASE_REPORT,
            Message::ReleaseRequest { .. } => tag::RELEASE_REQUEST,
            Message::ReleaseAnswer { .. } => tag::RELEASE_ANSWER,
            Message::Grace { .. } => tag::GRACE,
            Message::GraceQuery { .. } => tag::GRACE_QUERY,
            Message::GraceState { .. } => tag::GRACE_STATE,
        }
    }
}

/// Decodes one packet. Never panics, whatever the bytes (the daemon reads from any process
/// that can connect before it checks credentials, and fuzzers call this directly).
pub fn decode(bytes: &[u8]) -> Result<Message, DecodeError> {
    let mut input = Reader(bytes);
    if input.take(2)? != MAGIC {
        return Err(DecodeError::BadMagic);
    }
    let version = input.u8()?;
    if version != VERSION {
        return Err(DecodeError::UnsupportedVersion(version));
    }
    let tag = input.u8()?;
    let request_id = input.u64()?;
    let message = match tag {
        tag::OPEN_DESCRIPTION => {
            let share_path = input.string()?;
            let file_id = input.u64()?;
            let flags = input.u8()?;
            if flags & !0b111 != 0 {
                return Err(DecodeError::InvalidValue {
                    field: "open flags",
                    value: flags.into(),
                });
            }
            let provisional = if flags & 4 != 0 {
                Some(Provisional {
                    kind: input.kind()?,
                    requested: input.caching()?,
                    client_address: input.string()?,
                    server_address: input.string()?,
                })
            } else {
                None
            };
            Message::OpenDescription {
                request_id,
                share_path,
                file_id,
                want_write: flags & 1 != 0,
                nonblocking: flags & 2 != 0,
                provisional,
            }
        }
        tag::DESCRIPTION_OPENED => Message::DescriptionOpened {
            request_id,
            inode: input.inode()?,
            writable: input.flag("writable")?,
            caching: input.caching()?,
            bridge_fd: input.u32()?,
        },
        tag::DIRECT_BREAKS => Message::DirectBreaks {
            request_id,
            signo: input.u32()?,
        },
        tag::DIRECT_BREAKS_ACCEPTED => Message::DirectBreaksAccepted {
            request_id,
            break_timeout_ms: input.u64()?,
        },
        tag::BREAK_SEEN => Message::BreakSeen {
            request_id,
            inode: input.inode()?,
        },
        tag::ADJUST_GRANT => Message::AdjustGrant {
            request_id,
            inode: input.inode()?,
            file_id: input.u64()?,
            caching: input.caching()?,
        },
        tag::GRANT => {
            let inode = input.inode()?;
            let file_id = input.u64()?;
            let kind = input.kind()?;
            Message::Grant {
                request_id,
                inode,
                file_id,
                kind,
                requested: input.caching()?,
                share_path: input.string()?,
                client_address: input.string()?,
                server_address: input.string()?,
            }
        }
        tag::GRANTED => {
            let caching = input.caching()?;
            let kernel_lease = match input.u8()? {
                0 => None,
                1 => Some(LeaseType::Read),
                2 => Some(LeaseType::Write),
                other => {
                    return Err(DecodeError::InvalidValue {
                        field: "kernel lease",
                        value: other.into(),
                    })
                }
            };
            Message::Granted {
                request_id,
                caching,
                kernel_lease,
            }
        }
        tag::CLOSE => Message::Close {
            request_id,
            inode: input.inode()?,
            file_id: input.u64()?,
        },
        tag::BREAK_NOTIFY => Message::BreakNotify {
            request_id,
            inode: input.inode()?,
            unit: input.unit()?,
            current: input.caching()?,
            break_to: input.caching()?,
            release_until: input.u64()?,
        },
        tag::BREAK_ACK => Message::BreakAck {
            request_id,
            inode: input.inode()?,
            unit: input.unit()?,
            caching: input.caching()?,
        },
        tag::DONE => Message::Done { request_id },
        tag::FAILED => Message::Failed {
            request_id,
            errno: input.u32()? as i32,
        },
        tag::LIST_LEASES => Message::ListLeases { request_id },
        tag::LEASE_LIST => Message::LeaseList { request_id },
        tag::RELEASE => Message::Release {
            request_id,
            scope: input.scope()?,
            timeout_ms: input.u64()?,
        },
        tag::RELEASE_REPORT => Message::ReleaseReport { request_id },
        tag::RELEASE_REQUEST => Message::ReleaseRequest {
            request_id,
            scope: input.scope()?,
        },
        tag::RELEASE_ANSWER => Message::ReleaseAnswer {
            request_id,
            releasing: input.flag("releasing")?,
        },
        tag::GRACE => Message::Grace {
            request_id,
            address: input.string()?,
            path: input.string()?,
            duration_ms: input.u64()?,
        },
        tag::GRACE_QUERY => Message::GraceQuery { request_id },
        tag::GRACE_STATE => {
            let count = u16::from_le_bytes(input.array()?);
            let mut entries = Vec::with_capacity(usize::from(count).min(256));
            for _ in 0..count {
                entries.push(GraceEntry {
                    address: input.string()?,
                    path: input.string()?,
                    remaining_ms: input.u64()?,
                });
            }
            Message::GraceState {
                request_id,
                entries,
            }
        }
        other => return Err(DecodeError::UnknownTag(other)),
    };
    if !input.0.is_empty() {
        return Err(DecodeError::TrailingBytes(input.0.len()));
    }
    Ok(message)
}

/// Who may talk to the daemon: the uids smbd connects as (root, before it becomes a user).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PeerPolicy {
    pub allowed_uids: Vec<u32>,
    /// Absolute share roots from smb.conf; a request for any other path is refused.
    pub share_roots: Vec<String>,
}

/// A refused peer or request.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum PeerRefused {
    #[error("uid {0} may not use the lease bridge")]
    Uid(u32),
    #[error("{0:?} is not a configured share")]
    Share(String),
}

impl PeerPolicy {
    /// Checks a connection's credentials; returns the smbd pid the messages speak for.
    pub fn admit(&self, peer: PeerCredentials) -> Result<u32, PeerRefused> {
        if self.allowed_uids.contains(&peer.uid) {
            Ok(peer.pid)
        } else {
            Err(PeerRefused::Uid(peer.uid))
        }
    }

    /// Checks that a request names one of the configured shares, exactly (not a path below or
    /// beside it: the daemon resolves the file from the descriptor smbd sent, never by name).
    pub fn check_share(&self, share_path: &str) -> Result<(), PeerRefused> {
        if self.share_roots.iter().any(|root| root == share_path) {
            Ok(())
        } else {
            Err(PeerRefused::Share(share_path.to_string()))
        }
    }
}

struct Writer(Vec<u8>);

impl Writer {
    fn u8(&mut self, value: u8) {
        self.0.push(value);
    }
    fn u32(&mut self, value: u32) {
        self.0.extend_from_slice(&value.to_le_bytes());
    }
    fn u64(&mut self, value: u64) {
        self.0.extend_from_slice(&value.to_le_bytes());
    }
    fn string(&mut self, value: &str) {
        assert!(
            value.len() <= MAX_STRING_LEN,
            "protocol strings are paths and addresses"
        );
        self.0
            .extend_from_slice(&(value.len() as u16).to_le_bytes());
        self.0.extend_from_slice(value.as_bytes());
    }
    fn scope(&mut self, scope: &ReleaseScope) {
        match scope {
            ReleaseScope::ServerAddress(address) => {
                self.u8(0);
                self.string(address);
            }
            ReleaseScope::FileSystem { dev, path } => {
                self.u8(1);
                self.u64(*dev);
                self.string(path);
            }
        }
    }
    fn inode(&mut self, inode: InodeKey) {
        self.u64(inode.dev);
        self.u64(inode.ino);
    }
    fn kind(&mut self, kind: GrantKind) {
        match kind {
            GrantKind::Lease(key) => {
                self.u8(0);
                self.0.extend_from_slice(&key);
            }
            GrantKind::Oplock => self.u8(1),
        }
    }

    fn caching(&mut self, caching: Caching) {
        self.u8(caching.to_lease_state() as u8);
    }
    fn unit(&mut self, unit: WireUnit) {
        match unit {
            WireUnit::Lease(key) => {
                self.u8(0);
                self.0.extend_from_slice(&key);
            }
            WireUnit::Oplock { file_id } => {
                self.u8(1);
                self.u64(file_id);
            }
        }
    }
}

struct Reader<'a>(&'a [u8]);

impl<'a> Reader<'a> {
    fn take(&mut self, count: usize) -> Result<&'a [u8], DecodeError> {
        if self.0.len() < count {
            return Err(DecodeError::Truncated);
        }
        let (head, rest) = self.0.split_at(count);
        self.0 = rest;
        Ok(head)
    }
    fn array<const N: usize>(&mut self) -> Result<[u8; N], DecodeError> {
        let mut array = [0u8; N];
        array.copy_from_slice(self.take(N)?);
        Ok(array)
    }
    fn u8(&mut self) -> Result<u8, DecodeError> {
        Ok(self.array::<1>()?[0])
    }
    fn u32(&mut self) -> Result<u32, DecodeError> {
        Ok(u32::from_le_bytes(self.array()?))
    }
    fn u64(&mut self) -> Result<u64, DecodeError> {
        Ok(u64::from_le_bytes(self.array()?))
    }
    fn flag(&mut self, field: &'static str) -> Result<bool, DecodeError> {
        match self.u8()? {
            0 => Ok(false),
            1 => Ok(true),
            other => Err(DecodeError::InvalidValue {
                field,
                value: other.into(),
            }),
        }
    }
    fn string(&mut self) -> Result<String, DecodeError> {
        let len = u16::from_le_bytes(self.array()?) as usize;
        if len > MAX_STRING_LEN {
            return Err(DecodeError::StringTooLong(len));
        }
        let bytes = self.take(len)?;
        String::from_utf8(bytes.to_vec()).map_err(|_| DecodeError::NotUtf8)
    }
    fn scope(&mut self) -> Result<ReleaseScope, DecodeError> {
        match self.u8()? {
            0 => Ok(ReleaseScope::ServerAddress(self.string()?)),
            1 => Ok(ReleaseScope::FileSystem {
                dev: self.u64()?,
                path: self.string()?,
            }),
            other => Err(DecodeError::InvalidValue {
                field: "release scope",
                value: other.into(),
            }),
        }
    }
    fn inode(&mut self) -> Result<InodeKey, DecodeError> {
        Ok(InodeKey {
            dev: self.u64()?,
            ino: self.u64()?,
        })
    }
    fn kind(&mut self) -> Result<GrantKind, DecodeError> {
        match self.u8()? {
            0 => Ok(GrantKind::Lease(self.lease_key()?)),
            1 => Ok(GrantKind::Oplock),
            other => Err(DecodeError::InvalidValue {
                field: "grant kind",
                value: other.into(),
            }),
        }
    }

    fn lease_key(&mut self) -> Result<LeaseKey, DecodeError> {
        self.array()
    }
    fn caching(&mut self) -> Result<Caching, DecodeError> {
        let bits = self.u8()?;
        let caching = Caching::from_lease_state(bits.into());
        // Unknown bits are refused rather than dropped, so decode(encode(x)) is the identity
        // and what an smbd sent is exactly what the daemon acts on.
        if caching.to_lease_state() != u32::from(bits) {
            return Err(DecodeError::InvalidValue {
                field: "caching",
                value: bits.into(),
            });
        }
        Ok(caching)
    }
    fn unit(&mut self) -> Result<WireUnit, DecodeError> {
        match self.u8()? {
            0 => Ok(WireUnit::Lease(self.lease_key()?)),
            1 => Ok(WireUnit::Oplock {
                file_id: self.u64()?,
            }),
            other => Err(DecodeError::InvalidValue {
                field: "break unit",
                value: other.into(),
            }),
        }
    }
}
