//! Directory delegations (`F_SETDELEG`, Linux 6.19+): the state each smbd process keeps about
//! the delegations it holds on directories its clients have directory leases on (or leases
//! with H on an entry of), and the decision its signal handler takes when one is broken
//! (docs/lease-bridge.md, "Directory delegations"). Everything here is lock-free and
//! allocation-free: the handler runs in signal context, interrupting smbd's main thread
//! anywhere.
//!
//! A delegation makes the changer (a local process, nfsd, another smbd, or this one) wait in
//! the kernel until the holder gives it back. Who changed the directory decides what happens:
//! - **an smbd** (this process is not idle, or an smbd has announced a change of that directory
//!   in the shared [`ChangesInProgress`] table): given back at once, inside the handler. Samba
//!   breaks directory leases for its own changes (`contend_dirleases`, with its parent lease key
//!   rule), and an smbd must never wait on another's main loop;
//! - **anyone else** (this process idle in its event loop, no smbd change announced): the
//!   handler only marks it; the main loop breaks the directory leases to none (and the H of
//!   the leases on its entries) and gives the delegation back after smbd has sent the breaks,
//!   so the SMB client hears of the change before it is visible. A timer gives it back anyway
//!   if the main loop has not got there in [`LATE_RELEASE`].
use std::sync::atomic::{AtomicI32, AtomicU32, AtomicU64, AtomicU8, Ordering};
use std::time::Duration;

/// Slots of the shared table of smbd changes in progress (a 16 KiB shared mapping).
pub const SLOTS: usize = 4096;
/// Directories one smbd process holds delegations on at most (more are watched by fanotify
/// only).
pub const MAX_DELEGATIONS: usize = 256;
/// How long a delegation broken by someone else waits for the main loop at most.
pub const LATE_RELEASE: Duration = Duration::from_millis(50);
/// How soon a delegation given back is taken again (while its directory is still leased):
/// long enough for the changer's system call to go through first.
pub const RETAKE_AFTER: Duration = Duration::from_millis(10);

/// The signal a broken directory delegation sends its smbd: not smbd's own kernel-oplock signal
/// (SIGRTMIN+1) nor the lease bridge's (SIGRTMIN+5).
pub fn break_signal() -> i32 {
    libc::SIGRTMIN() + 6
}

/// The slot of the shared table a directory's changes are counted in. Two directories may
/// share a slot: a change of one then makes the other's break look like an smbd's, which only
/// means that break comes from the fanotify watch, after the change.
pub fn slot_of(dev: u64, ino: u64) -> usize {
    // splitmix64's finaliser: inode numbers are sequential, the slots should not be.
    let mut x = dev.rotate_left(32) ^ ino;
    x = (x ^ (x >> 30)).wrapping_mul(0xbf58_476d_1ce4_e5b9);
    x = (x ^ (x >> 27)).wrapping_mul(0x94d0_49bb_1331_11eb);
    x ^= x >> 31;
    (x % SLOTS as u64) as usize
}

/// Counts of namespace changes smbd processes are making, per directory slot, in memory every
/// smbd of the instance maps. An smbd counts a directory up before a create, delete, rename or
/// link in it (and of it) and down after.
pub struct ChangesInProgress<'a> {
    slots: &'a [AtomicU32],
}

impl<'a> ChangesInProgress<'a> {
    /// `slots` must hold [`SLOTS`] counters.
    pub fn new(slots: &'a [AtomicU32]) -> Option<Self> {
        (slots.len() == SLOTS).then_some(ChangesInProgress { slots })
    }

    pub fn enter(&self, dev: u64, ino: u64) {
        self.slots[slot_of(dev, ino)].fetch_add(1, Ordering::SeqCst);
    }

    /// Counts down (never below zero: a count another process left behind is not ours to
    /// take, but a leave without its enter must not wrap).
    pub fn leave(&self, dev: u64, ino: u64) {
        let _ = self.slots[slot_of(dev, ino)]
            .fetch_update(Ordering::SeqCst, Ordering::SeqCst, |n| n.checked_sub(1));
    }

    pub fn busy(&self, dev: u64, ino: u64) -> bool {
        self.slots[slot_of(dev, ino)].load(Ordering::SeqCst) != 0
    }
}

/// Where one delegation stands.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
#[repr(u8)]
pub enum State {
    /// Not held (given back, or not taken yet): taken again while the directory is leased.
    Released = 0,
    Held = 1,
    /// Broken by someone other than an smbd: the main loop breaks the leases, then gives it
    /// back.
    Breaking = 2,
}

impl State {
    fn from_raw(raw: u8) -> State {
        match raw {
            1 => State::Held,
            2 => State::Breaking,
            _ => State::Released,
        }
    }
}

/// One delegated directory: its descriptor number (−1: free entry) and identity.
pub struct Entry {
    fd: AtomicI32,
    dev: AtomicU64,
    ino: AtomicU64,
    state: AtomicU8,
    /// How many times the handler gave it back at once (an smbd's change) and how many times
    /// it broke leases first; read for the debug log.
    pub released_for_smbd: AtomicU32,
    pub broken_first: AtomicU32,
}

impl Entry {
    const FREE: Entry = Entry {
        fd: AtomicI32::new(-1),
        dev: AtomicU64::new(0),
        ino: AtomicU64::new(0),
        state: AtomicU8::new(State::Released as u8),
        released_for_smbd: AtomicU32::new(0),
        broken_first: AtomicU32::new(0),
    };

    pub fn fd(&self) -> i32 {
        self.fd.load(Ordering::SeqCst)
    }

    pub fn key(&self) -> (u64, u64) {
        (self.dev.load(Ordering::SeqCst), self.ino.load(Ordering::SeqCst))
    }

    pub fn state(&self) -> State {
        State::from_raw(self.state.load(Ordering::SeqCst))
    }

    /// Moves from `from` to `to`; false if the entry was not in `from` (the handler, or the
    /// late-release timer, got there first).
    pub fn transition(&self, from: State, to: State) -> bool {
        self.state.compare_exchange(from as u8, to as u8, Ordering::SeqCst, Ordering::SeqCst).is_ok()
    }
}

/// What the signal handler does about a broken delegation.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Decision {
    /// Give it back now (an smbd is the changer, or may be).
    ReleaseNow,
    /// Leave it to the main loop (wake it, arm the late-release timer).
    BreakFirst,
    /// Not ours, or already being dealt with.
    Ignore,
}

/// The delegations of one smbd process. The main thread adds and removes entries; the signal
/// handler (on the same thread, at any point) only reads them and moves their state.
pub struct Delegations {
    entries: [Entry; MAX_DELEGATIONS],
}

impl Default for Delegations {
    fn default() -> Self {
        Self::new()
    }
}

impl Delegations {
    pub const fn new() -> Self {
        Delegations { entries: [Entry::FREE; MAX_DELEGATIONS] }
    }

    /// Records a delegation on descriptor `fd` (in state `Released`: the caller takes it and
    /// marks it `Held`). None when the table is full.
    pub fn insert(&self, fd: i32, dev: u64, ino: u64) -> Option<&Entry> {
        let entry = self.entries.iter().find(|e| e.fd() == -1)?;
        entry.dev.store(dev, Ordering::SeqCst);
        entry.ino.store(ino, Ordering::SeqCst);
        entry.state.store(State::Released as u8, Ordering::SeqCst);
        entry.released_for_smbd.store(0, Ordering::SeqCst);
        entry.broken_first.store(0, Ordering::SeqCst);
        // Last: from here on the handler may find it.
        entry.fd.store(fd, Ordering::SeqCst);
        Some(entry)
    }

    /// Forgets the entry of `fd` before the descriptor is closed (closing gives the delegation
    /// back; a signal for it meanwhile is ignored).
    pub fn remove(&self, fd: i32) {
        if let Some(entry) = self.by_fd(fd) {
            entry.fd.store(-1, Ordering::SeqCst);
            entry.state.store(State::Released as u8, Ordering::SeqCst);
        }
    }

    pub fn by_fd(&self, fd: i32) -> Option<&Entry> {
        if fd < 0 {
            return None;
        }
        self.entries.iter().find(|e| e.fd() == fd)
    }

    pub fn by_key(&self, dev: u64, ino: u64) -> Option<&Entry> {
        self.entries.iter().find(|e| e.fd() != -1 && e.key() == (dev, ino))
    }

    pub fn in_use(&self) -> impl Iterator<Item = &Entry> {
        self.entries.iter().filter(|e| e.fd() != -1)
    }

    /// The handler's decision for a break signal on `fd`: `idle` is whether smbd's main thread
    /// was waiting in its event loop when the signal came (then this process cannot be the
    /// changer), `smbd_changing` whether an smbd announced a change of the directory. Moves
    /// the entry to `Released` (the caller gives it back) or `Breaking`.
    pub fn on_break(&self, fd: i32, idle: bool, smbd_changing: impl FnOnce(u64, u64) -> bool) -> Decision {
        let Some(entry) = self.by_fd(fd) else { return Decision::Ignore };
        let (dev, ino) = entry.key();
        if !idle || smbd_changing(dev, ino) {
            if entry.transition(State::Held, State::Released) || entry.transition(State::Breaking, State::Released) {
                entry.released_for_smbd.fetch_add(1, Ordering::SeqCst);
                return Decision::ReleaseNow;
            }
            return Decision::Ignore;
        }
        if entry.transition(State::Held, State::Breaking) {
            entry.broken_first.fetch_add(1, Ordering::SeqCst);
            return Decision::BreakFirst;
        }
        Decision::Ignore
    }

    /// The late-release timer: every entry still `Breaking` goes to `Released` (the caller
    /// gives each back). Calls `release` for each.
    pub fn release_late(&self, mut release: impl FnMut(&Entry)) {
        for entry in self.in_use() {
            if entry.transition(State::Breaking, State::Released) {
                release(entry);
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn table() -> Vec<AtomicU32> {
        (0..SLOTS).map(|_| AtomicU32::new(0)).collect()
    }

    #[test]
    fn slots_spread_sequential_inodes_and_depend_on_the_device() {
        let used: std::collections::BTreeSet<usize> = (1000..1064).map(|ino| slot_of(2049, ino)).collect();
        assert!(used.len() > 56, "64 sequential inodes fell into {} slots", used.len());
        assert_ne!((0..16).map(|ino| slot_of(1, ino)).collect::<Vec<_>>(), (0..16).map(|ino| slot_of(2, ino)).collect::<Vec<_>>());
    }

    #[test]
    fn changes_in_progress_count_per_directory_and_never_wrap() {
        let slots = table();
        assert!(ChangesInProgress::new(&slots[..10]).is_none());
        let changes = ChangesInProgress::new(&slots).unwrap();
        assert!(!changes.busy(1, 7));
        changes.enter(1, 7);
        changes.enter(1, 7);
        assert!(changes.busy(1, 7));
        changes.leave(1, 7);
        assert!(changes.busy(1, 7));
        changes.leave(1, 7);
        assert!(!changes.busy(1, 7));
        changes.leave(1, 7);
        assert_eq!(slots[slot_of(1, 7)].load(Ordering::SeqCst), 0);
    }

    #[test]
    fn a_break_while_idle_and_unannounced_is_left_to_the_main_loop() {
        let d = Delegations::new();
        let e = d.insert(12, 1, 7).unwrap();
        assert!(e.transition(State::Released, State::Held));
        assert_eq!(d.on_break(12, true, |_, _| false), Decision::BreakFirst);
        assert_eq!(d.by_fd(12).unwrap().state(), State::Breaking);
        // A second signal for the same break changes nothing.
        assert_eq!(d.on_break(12, true, |_, _| false), Decision::Ignore);
        assert_eq!(d.by_fd(12).unwrap().broken_first.load(Ordering::SeqCst), 1);
    }

    #[test]
    fn a_break_by_an_smbd_is_given_back_at_once() {
        let d = Delegations::new();
        d.insert(12, 1, 7).unwrap().transition(State::Released, State::Held);
        assert_eq!(d.on_break(12, true, |dev, ino| (dev, ino) == (1, 7)), Decision::ReleaseNow);
        assert_eq!(d.by_fd(12).unwrap().state(), State::Released);
        // Busy (this process may be the changer): at once too, announced or not.
        d.by_fd(12).unwrap().transition(State::Released, State::Held);
        assert_eq!(d.on_break(12, false, |_, _| false), Decision::ReleaseNow);
        // Breaking, then this process turns out busy with a change of its own: at once.
        d.by_fd(12).unwrap().transition(State::Released, State::Held);
        assert_eq!(d.on_break(12, true, |_, _| false), Decision::BreakFirst);
        assert_eq!(d.on_break(12, false, |_, _| false), Decision::ReleaseNow);
        assert_eq!(d.by_fd(12).unwrap().released_for_smbd.load(Ordering::SeqCst), 3);
    }

    #[test]
    fn unknown_and_removed_descriptors_are_ignored() {
        let d = Delegations::new();
        assert_eq!(d.on_break(5, true, |_, _| false), Decision::Ignore);
        assert_eq!(d.on_break(-1, false, |_, _| true), Decision::Ignore);
        d.insert(5, 1, 2).unwrap().transition(State::Released, State::Held);
        d.remove(5);
        assert!(d.by_fd(5).is_none() && d.by_key(1, 2).is_none());
        assert_eq!(d.on_break(5, true, |_, _| false), Decision::Ignore);
        // A released delegation (not held) is not broken again.
        d.insert(6, 1, 3).unwrap();
        assert_eq!(d.on_break(6, false, |_, _| true), Decision::Ignore);
    }

    #[test]
    fn the_late_timer_releases_only_what_is_still_breaking() {
        let d = Delegations::new();
        for fd in 10..13 {
            d.insert(fd, 1, fd as u64).unwrap().transition(State::Released, State::Held);
        }
        d.on_break(10, true, |_, _| false);
        d.on_break(12, true, |_, _| false);
        assert!(d.by_fd(12).unwrap().transition(State::Breaking, State::Released)); // the main loop got there
        let mut released = Vec::new();
        d.release_late(|e| released.push(e.fd()));
        assert_eq!(released, vec![10]);
        assert_eq!(d.by_fd(11).unwrap().state(), State::Held);
    }

    #[test]
    fn the_table_is_bounded_and_reuses_free_entries() {
        let d = Delegations::new();
        for fd in 0..MAX_DELEGATIONS as i32 {
            assert!(d.insert(fd + 100, 1, fd as u64).is_some());
        }
        assert!(d.insert(9999, 1, 9999).is_none());
        d.remove(150);
        assert_eq!(d.insert(9999, 1, 9999).unwrap().key(), (1, 9999));
        assert_eq!(d.in_use().count(), MAX_DELEGATIONS);
    }
}
