//! The bridge's lease table: per inode, the one open file description every smbd shares, the
//! kernel lease on it, the SMB opens that cache through it, and the break in progress.
//!
//! Pure logic: no syscalls, no clock. The caller (the bridge daemon) passes the time, performs
//! the kernel actions the table returns (`F_SETLEASE`), and reports a refused lease through
//! the closure given to [`LeaseTable::grant`]. Two rules hold after every operation:
//! - no holder caches more than the kernel lease backs ([`caching_backed_by`]): a lease is
//!   dropped or downgraded only once every holder is down to what remains;
//! - a break ends when every break unit has acknowledged, closed, died, or timed out
//!   ([`LeaseTable::expire_breaks`]), and then the kernel lease is at or below the kernel's
//!   target.
use std::collections::{btree_map, BTreeMap, BTreeSet};
use std::time::Duration;

use super::kernel::LeaseType;

/// An inode, as smbd's `fsp->fsp_name->st` and the bridge's `fstat` see it.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct InodeKey {
    pub dev: u64,
    pub ino: u64,
}

/// SMB caching rights: the MS-SMB2 lease state bits. Oplocks map onto them: batch = RWH,
/// exclusive = RW, level II = R.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Default)]
pub struct Caching {
    pub read: bool,
    pub write: bool,
    pub handle: bool,
}

impl Caching {
    pub const NONE: Caching = Caching {
        read: false,
        write: false,
        handle: false,
    };
    pub const R: Caching = Caching {
        read: true,
        write: false,
        handle: false,
    };
    pub const RH: Caching = Caching {
        read: true,
        write: false,
        handle: true,
    };
    pub const RW: Caching = Caching {
        read: true,
        write: true,
        handle: false,
    };
    pub const RWH: Caching = Caching {
        read: true,
        write: true,
        handle: true,
    };

    /// SMB2_LEASE_READ_CACHING, SMB2_LEASE_HANDLE_CACHING, SMB2_LEASE_WRITE_CACHING.
    const READ_BIT: u32 = 0x1;
    const HANDLE_BIT: u32 = 0x2;
    const WRITE_BIT: u32 = 0x4;

    /// From an SMB2 lease state; unknown bits are ignored (smbd never grants them).
    pub fn from_lease_state(bits: u32) -> Caching {
        Caching {
            read: bits & Self::READ_BIT != 0,
            write: bits & Self::WRITE_BIT != 0,
            handle: bits & Self::HANDLE_BIT != 0,
        }
    }

    pub fn to_lease_state(self) -> u32 {
        (if self.read { Self::READ_BIT } else { 0 })
            | (if self.write { Self::WRITE_BIT } else { 0 })
            | (if self.handle { Self::HANDLE_BIT } else { 0 })
    }

    pub fn is_none(self) -> bool {
        self == Caching::NONE
    }

    /// Every right of `self` is also in `other`.
    pub fn within(self, other: Caching) -> bool {
        (!self.read || other.read) && (!self.write || other.write) && (!self.handle || other.handle)
    }

    pub fn intersect(self, other: Caching) -> Caching {
        Caching {
            read: self.read && other.read,
            write: self.write && other.write,
            handle: self.handle && other.handle,
        }
    }

    pub fn union(self, other: Caching) -> Caching {
        Caching {
            read: self.read || other.read,
            write: self.write || other.write,
            handle: self.handle || other.handle,
        }
    }
}

/// What a kernel lease protects a client's cache against. A read lease is broken by every
/// writer and truncater, so cached reads (and the deferred close of H, which the kernel does
/// not see at all) stay valid; only a write lease also stops readers from seeing stale data.
pub fn caching_backed_by(kernel: Option<LeaseType>) -> Caching {
    match kernel {
        None => Caching::NONE,
        Some(LeaseType::Read) => Caching::RH,
        Some(LeaseType::Write) => Caching::RWH,
    }
}

/// The weakest kernel lease that backs `caching` on a description opened with or without
/// write access (the kernel refuses F_RDLCK on a writable description).
pub fn kernel_lease_for(caching: Caching, description_writable: bool) -> Option<LeaseType> {
    if caching.is_none() {
        None
    } else if caching.write || description_writable {
        Some(LeaseType::Write)
    } else {
        Some(LeaseType::Read)
    }
}

/// One SMB open, named as smbd names it: the process and the open's share-mode file id.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct OpenId {
    pub smbd_pid: u32,
    pub file_id: u64,
}

/// An SMB2 lease key.
pub type LeaseKey = [u8; 16];

/// How the client caches: through an SMB2/3 lease (shared by all handles with its key) or an
/// oplock on one open.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub enum GrantKind {
    Lease(LeaseKey),
    Oplock,
}

/// What smbd breaks and the client acknowledges as one: a lease (every handle of that key in
/// that smbd) or a single oplocked open.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub enum BreakUnit {
    Lease { smbd_pid: u32, key: LeaseKey },
    Oplock(OpenId),
}

impl BreakUnit {
    pub fn smbd_pid(&self) -> u32 {
        match self {
            BreakUnit::Lease { smbd_pid, .. } => *smbd_pid,
            BreakUnit::Oplock(open) => open.smbd_pid,
        }
    }
}

/// An SMB open that shares the inode's description, and what its client may cache.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Holder {
    pub open: OpenId,
    pub share_path: String,
    pub client_address: String,
    pub server_address: String,
    pub kind: GrantKind,
    pub caching: Caching,
}

impl Holder {
    pub fn unit(&self) -> BreakUnit {
        match self.kind {
            GrantKind::Lease(key) => BreakUnit::Lease {
                smbd_pid: self.open.smbd_pid,
                key,
            },
            GrantKind::Oplock => BreakUnit::Oplock(self.open),
        }
    }
}

/// A change the daemon must make to the kernel lease (`F_SETLEASE`) on the inode's description.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum KernelAction {
    Set(LeaseType),
    Release,
}

/// Tell the smbd that owns `unit` to break its client's caching down to `break_to`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct BreakNotice {
    pub inode: InodeKey,
    pub unit: BreakUnit,
    pub current: Caching,
    pub break_to: Caching,
}

/// A kernel lease break the SMB side is still answering.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct BreakInProgress {
    pub started: Duration,
    /// What the kernel asked for (`F_GETLEASE` during the break); `None` = give it up.
    pub kernel_target: Option<LeaseType>,
    /// What the SMB side must come down to for the kernel target to be reachable.
    pub smb_target: Caching,
    pub waiting: BTreeSet<BreakUnit>,
}

/// One inode's row.
#[derive(Debug)]
pub struct InodeEntry<D> {
    description: D,
    description_writable: bool,
    kernel: Option<LeaseType>,
    /// Every SMB open using the description, caching or not (holders are a subset).
    opens: BTreeSet<OpenId>,
    holders: BTreeMap<OpenId, Holder>,
    pending_break: Option<BreakInProgress>,
}

impl<D> InodeEntry<D> {
    pub fn description(&self) -> &D {
        &self.description
    }
    pub fn description_writable(&self) -> bool {
        self.description_writable
    }
    /// The kernel lease the table believes is on the description.
    pub fn kernel_lease(&self) -> Option<LeaseType> {
        self.kernel
    }
    pub fn holders(&self) -> impl Iterator<Item = &Holder> {
        self.holders.values()
    }
    /// Every SMB open of the inode, whether its client caches or not.
    pub fn opens(&self) -> impl Iterator<Item = &OpenId> {
        self.opens.iter()
    }
    pub fn pending_break(&self) -> Option<&BreakInProgress> {
        self.pending_break.as_ref()
    }

    fn cached(&self) -> Caching {
        self.holders
            .values()
            .fold(Caching::NONE, |all, holder| all.union(holder.caching))
    }

    fn unit_caching(&self, unit: BreakUnit) -> Caching {
        self.holders
            .values()
            .filter(|holder| holder.unit() == unit)
            .fold(Caching::NONE, |all, holder| all.union(holder.caching))
    }

    /// What SMB may keep while the kernel wants `target` on this description.
    fn smb_target_for(&self, target: Option<LeaseType>) -> Caching {
        match target {
            // F_WRLCK -> F_RDLCK fails on a writable description: the kernel forces a full break.
            Some(LeaseType::Read) if self.description_writable => Caching::NONE,
            other => caching_backed_by(other),
        }
    }

    /// The kernel lease still needed once holders have come down; the action to get there.
    fn settle_kernel(&mut self) -> Option<KernelAction> {
        let needed = kernel_lease_for(self.cached(), self.description_writable);
        if needed >= self.kernel {
            return None;
        }
        self.kernel = needed;
        Some(match needed {
            None => KernelAction::Release,
            Some(lease) => KernelAction::Set(lease),
        })
    }

    /// Ends the break if nobody is left to answer; returns the kernel action that completes it.
    fn finish_break_if_answered(&mut self) -> Option<Option<KernelAction>> {
        let answered = self
            .pending_break
            .as_ref()
            .is_some_and(|pending| pending.waiting.is_empty());
        if !answered {
            return None;
        }
        self.pending_break = None;
        Some(self.settle_kernel())
    }
}

/// Refusals of table operations (the daemon answers the smbd with an error).
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum TableError {
    #[error("no shared description for inode {0:?}")]
    UnknownInode(InodeKey),
    #[error("open {0:?} is not in the table")]
    UnknownOpen(OpenId),
    #[error("{0:?} is not part of the break in progress")]
    NotBreaking(BreakUnit),
    #[error("acknowledged caching {acked:?} is above the break target {target:?}")]
    AckAboveTarget { acked: Caching, target: Caching },
}

/// The result of a grant: the caching the smbd may give its client, the lease now held, and
/// a downgrade to apply when a re-grant lowered what the opens need.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Grant {
    pub caching: Caching,
    pub kernel_lease: Option<LeaseType>,
    pub kernel_action: Option<KernelAction>,
}

/// The result of starting (or joining) a break.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct BreakStart {
    pub notify: Vec<BreakNotice>,
    /// Set when nobody had to be asked: the break is over and this completes it.
    pub completed: Option<Option<KernelAction>>,
}

/// What an acknowledgement, close or timeout did to a break.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum BreakProgress {
    /// Others still have to answer (or there was no break).
    Waiting { remaining: usize },
    /// The break is over; apply this to the kernel lease (and wake the waiting openers).
    Completed(Option<KernelAction>),
}

/// A closed open: the kernel action it allows, and the description when it was the last open.
#[derive(Debug)]
pub struct Removal<D> {
    pub progress: BreakProgress,
    pub kernel: Option<KernelAction>,
    pub closed_description: Option<D>,
}

/// A break that hit its timeout: the units forced down (their smbds must drop the caching now)
/// and the kernel action that completes it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ExpiredBreak {
    pub inode: InodeKey,
    pub revoked: Vec<BreakNotice>,
    pub kernel: Option<KernelAction>,
}

/// The table, generic over the description handle (`OwnedFd` in the daemon).
#[derive(Debug)]
pub struct LeaseTable<D> {
    inodes: BTreeMap<InodeKey, InodeEntry<D>>,
}

impl<D> Default for LeaseTable<D> {
    fn default() -> Self {
        LeaseTable {
            inodes: BTreeMap::new(),
        }
    }
}

impl<D> LeaseTable<D> {
    pub fn new() -> Self {
        Self::default()
    }

    pub fn entry(&self, inode: InodeKey) -> Option<&InodeEntry<D>> {
        self.inodes.get(&inode)
    }

    pub fn inodes(&self) -> impl Iterator<Item = (&InodeKey, &InodeEntry<D>)> {
        self.inodes.iter()
    }

    /// The inode's shared description, opening it with `open` (returning it and whether it is
    /// writable) the first time.
    pub fn description_or_open<E>(
        &mut self,
        inode: InodeKey,
        open: impl FnOnce() -> Result<(D, bool), E>,
    ) -> Result<&D, E> {
        let entry = match self.inodes.entry(inode) {
            btree_map::Entry::Occupied(occupied) => occupied.into_mut(),
            btree_map::Entry::Vacant(vacant) => {
                let (description, description_writable) = open()?;
                vacant.insert(InodeEntry {
                    description,
                    description_writable,
                    kernel: None,
                    opens: BTreeSet::new(),
                    holders: BTreeMap::new(),
                    pending_break: None,
                })
            }
        };
        Ok(&entry.description)
    }

    /// Records an SMB open of the inode (one that got a dup of its description); the
    /// description stays open until every open is closed ([`LeaseTable::close_open`]).
    pub fn add_open(&mut self, inode: InodeKey, open: OpenId) -> Result<(), TableError> {
        let entry = self
            .inodes
            .get_mut(&inode)
            .ok_or(TableError::UnknownInode(inode))?;
        entry.opens.insert(open);
        Ok(())
    }

    /// Records an SMB open (or a new grant on an existing one) asking for `holder.caching`.
    ///
    /// During a break nothing above the break target is granted. A stronger kernel lease is
    /// taken through `take_lease` *before* the caching counts as granted; if the kernel refuses
    /// (another process has the file open), the open gets only what the current lease backs.
    pub fn grant(
        &mut self,
        inode: InodeKey,
        mut holder: Holder,
        take_lease: impl FnOnce(&D, LeaseType) -> bool,
    ) -> Result<Grant, TableError> {
        let entry = self
            .inodes
            .get_mut(&inode)
            .ok_or(TableError::UnknownInode(inode))?;
        if let Some(pending) = &entry.pending_break {
            holder.caching = holder.caching.intersect(pending.smb_target);
        }
        let others = entry
            .holders
            .values()
            .filter(|other| other.open != holder.open)
            .fold(Caching::NONE, |all, other| all.union(other.caching));
        let needed = kernel_lease_for(others.union(holder.caching), entry.description_writable);
        if needed > entry.kernel {
            let wanted = needed.expect("a stronger lease than the current one is Some");
            if take_lease(&entry.description, wanted) {
                entry.kernel = needed;
            }
        }
        holder.caching = holder.caching.intersect(caching_backed_by(entry.kernel));
        let caching = holder.caching;
        entry.opens.insert(holder.open);
        entry.holders.insert(holder.open, holder);
        // A re-grant may lower an open's caching below what the current lease is for.
        let kernel_action = if entry.pending_break.is_none() {
            entry.settle_kernel()
        } else {
            None
        };
        Ok(Grant {
            caching,
            kernel_lease: entry.kernel,
            kernel_action,
        })
    }

    /// Closes an SMB open. A close during a break counts as its unit's answer once the unit has
    /// no other open; the last close hands back the description for the daemon to close.
    pub fn close_open(&mut self, inode: InodeKey, open: OpenId) -> Result<Removal<D>, TableError> {
        let entry = self
            .inodes
            .get_mut(&inode)
            .ok_or(TableError::UnknownInode(inode))?;
        let was_open = entry.opens.remove(&open);
        let Some(holder) = entry.holders.remove(&open) else {
            if !was_open {
                return Err(TableError::UnknownOpen(open));
            }
            // An open without caching: only the description's lifetime depends on it.
            let closed_description = if entry.unused() {
                self.inodes.remove(&inode).map(|entry| entry.description)
            } else {
                None
            };
            return Ok(Removal {
                progress: BreakProgress::Waiting {
                    remaining: self.inodes.get(&inode).map_or(0, InodeEntry::waiting_count),
                },
                kernel: None,
                closed_description,
            });
        };
        let unit = holder.unit();
        let unit_gone = !entry.holders.values().any(|other| other.unit() == unit);
        let (progress, kernel) = match entry.pending_break.as_mut() {
            Some(pending) => {
                if unit_gone {
                    pending.waiting.remove(&unit);
                }
                match entry.finish_break_if_answered() {
                    Some(action) => (BreakProgress::Completed(action), action),
                    None => (
                        BreakProgress::Waiting {
                            remaining: entry.waiting_count(),
                        },
                        None,
                    ),
                }
            }
            None => (
                BreakProgress::Waiting { remaining: 0 },
                entry.settle_kernel(),
            ),
        };
        let closed_description = if entry.unused() {
            self.inodes.remove(&inode).map(|entry| entry.description)
        } else {
            None
        };
        Ok(Removal {
            progress,
            kernel,
            closed_description,
        })
    }

    /// The kernel is breaking the inode's lease down to `kernel_target` (a non-SMB open or
    /// truncate). Returns whom to notify; units of dead smbds (`is_alive` false) are dropped
    /// instead. A second break while one is pending lowers the target and re-notifies.
    pub fn start_break(
        &mut self,
        inode: InodeKey,
        kernel_target: Option<LeaseType>,
        now: Duration,
        is_alive: impl Fn(u32) -> bool,
    ) -> Result<BreakStart, TableError> {
        let entry = self
            .inodes
            .get_mut(&inode)
            .ok_or(TableError::UnknownInode(inode))?;
        entry
            .holders
            .retain(|_, holder| is_alive(holder.open.smbd_pid));
        entry.opens.retain(|open| is_alive(open.smbd_pid));
        let kernel_target = match &entry.pending_break {
            Some(pending) => kernel_target.min(pending.kernel_target),
            None => kernel_target,
        };
        let smb_target = entry.smb_target_for(kernel_target);
        let units: BTreeSet<BreakUnit> = entry.holders.values().map(Holder::unit).collect();
        let mut notify = Vec::new();
        let mut waiting = BTreeSet::new();
        for unit in units {
            let current = entry.unit_caching(unit);
            if !current.within(smb_target) {
                notify.push(BreakNotice {
                    inode,
                    unit,
                    current,
                    break_to: current.intersect(smb_target),
                });
                waiting.insert(unit);
            }
        }
        entry.pending_break = Some(BreakInProgress {
            started: entry
                .pending_break
                .as_ref()
                .map_or(now, |pending| pending.started),
            kernel_target,
            smb_target,
            waiting,
        });
        let completed = entry.finish_break_if_answered();
        Ok(BreakStart { notify, completed })
    }

    /// An smbd reports that its client acknowledged a break and now caches `caching`.
    pub fn acknowledge(
        &mut self,
        inode: InodeKey,
        unit: BreakUnit,
        caching: Caching,
    ) -> Result<BreakProgress, TableError> {
        let entry = self
            .inodes
            .get_mut(&inode)
            .ok_or(TableError::UnknownInode(inode))?;
        let pending = entry
            .pending_break
            .as_mut()
            .ok_or(TableError::NotBreaking(unit))?;
        if !pending.waiting.contains(&unit) {
            return Err(TableError::NotBreaking(unit));
        }
        if !caching.within(pending.smb_target) {
            return Err(TableError::AckAboveTarget {
                acked: caching,
                target: pending.smb_target,
            });
        }
        pending.waiting.remove(&unit);
        for holder in entry
            .holders
            .values_mut()
            .filter(|holder| holder.unit() == unit)
        {
            holder.caching = holder.caching.intersect(caching);
        }
        Ok(match entry.finish_break_if_answered() {
            Some(action) => BreakProgress::Completed(action),
            None => BreakProgress::Waiting {
                remaining: entry.waiting_count(),
            },
        })
    }

    /// Forces every break older than `timeout` to its end: the units that did not answer lose
    /// their caching down to the target (as smbd does to a client that never acknowledges).
    pub fn expire_breaks(&mut self, now: Duration, timeout: Duration) -> Vec<ExpiredBreak> {
        let mut expired = Vec::new();
        for (inode, entry) in self.inodes.iter_mut() {
            let Some(pending) = entry
                .pending_break
                .take_if(|pending| now.saturating_sub(pending.started) >= timeout)
            else {
                continue;
            };
            let mut revoked = Vec::new();
            for unit in &pending.waiting {
                let current = entry.unit_caching(*unit);
                let break_to = current.intersect(pending.smb_target);
                for holder in entry
                    .holders
                    .values_mut()
                    .filter(|holder| holder.unit() == *unit)
                {
                    holder.caching = holder.caching.intersect(break_to);
                }
                revoked.push(BreakNotice {
                    inode: *inode,
                    unit: *unit,
                    current,
                    break_to,
                });
            }
            expired.push(ExpiredBreak {
                inode: *inode,
                revoked,
                kernel: entry.settle_kernel(),
            });
        }
        expired
    }

    /// Drops the opens of smbd processes that are gone (they cache nothing any more), finishing
    /// the breaks that only waited for them. Returns the kernel actions to apply per inode;
    /// [`LeaseTable::take_unused_descriptions`] then hands out the descriptions left unused.
    pub fn reap_dead(
        &mut self,
        is_alive: impl Fn(u32) -> bool,
    ) -> Vec<(InodeKey, Option<KernelAction>)> {
        let mut actions = Vec::new();
        for (inode, entry) in self.inodes.iter_mut() {
            let before = entry.holders.len() + entry.opens.len();
            entry
                .holders
                .retain(|_, holder| is_alive(holder.open.smbd_pid));
            entry.opens.retain(|open| is_alive(open.smbd_pid));
            if let Some(pending) = entry.pending_break.as_mut() {
                pending.waiting.retain(|unit| is_alive(unit.smbd_pid()));
            }
            let action = match entry.finish_break_if_answered() {
                Some(action) => action,
                None if entry.pending_break.is_none() => entry.settle_kernel(),
                None => None,
            };
            if before != entry.holders.len() + entry.opens.len() || action.is_some() {
                actions.push((*inode, action));
            }
        }
        actions
    }

    /// Removes and returns the descriptions of inodes without opens or breaks (after
    /// [`LeaseTable::reap_dead`]); the daemon closes them.
    pub fn take_unused_descriptions(&mut self) -> Vec<(InodeKey, D)> {
        let unused: Vec<InodeKey> = self
            .inodes
            .iter()
            .filter(|(_, entry)| entry.unused())
            .map(|(inode, _)| *inode)
            .collect();
        unused
            .into_iter()
            .filter_map(|inode| {
                self.inodes
                    .remove(&inode)
                    .map(|entry| (inode, entry.description))
            })
            .collect()
    }
}

impl<D> InodeEntry<D> {
    /// Nothing uses the description any more: no open, no holder, no break to finish.
    fn unused(&self) -> bool {
        self.opens.is_empty() && self.holders.is_empty() && self.pending_break.is_none()
    }

    fn waiting_count(&self) -> usize {
        self.pending_break
            .as_ref()
            .map_or(0, |pending| pending.waiting.len())
    }
}
