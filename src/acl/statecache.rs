//! What a file's ACL xattrs held when last read, trusted again only while a fresh stat proves
//! that nothing can have changed them since.
//!
//! smbd's access check reads a file's ACL on every open, and a client's security query reads
//! it again; each read is a fresh stat (kept: the coherence rule needs the current mode and
//! owner) and two or three getxattr calls. This cache keeps the xattr values of the last read
//! of a file, keyed by device and inode, and hands them back only when **all** of these hold:
//!
//! 1. the fresh stat shows the same ctime (to the nanosecond), mode, owner and group as the
//!    stat that preceded the cached read. Every xattr write, `setfacl`, `chmod` and `chown`
//!    sets the ctime to the current time;
//! 2. that ctime was older than the moment the cached read began by more than
//!    [`StateCache::MARGIN`] (the "racy git index" rule). A ctime is a clock reading at the
//!    file system's granularity (1 s on ext4 with small inodes, one timer tick where the kernel
//!    stamps with its coarse clock), so a change made after the read began could carry the same
//!    ctime as one made just before it; once the recorded ctime is more than the granularity
//!    older than the read, any later change carries a later ctime;
//! 3. the clock has not gone back since the read began, and the entry is younger than
//!    [`StateCache::MAX_AGE`] (bounds what a clock step could hide);
//! 4. the read was for the same xattr name (shares may name the ACL xattr differently).
//!
//! A read of a file changed within the margin is kept only for its **turn**: the caller's
//! name for one piece of work that forms a single snapshot (in smbd, one turn of its event
//! loop, which handles one request or compound chain; smbd's own access checks and ACL
//! inheritance read a directory's ACL up to three times while creating one file in it, and
//! such a directory has always changed in the last two seconds). Rule 1 still applies within
//! a turn. A change by someone else that lands between two reads of one turn and keeps the
//! ctime is missed by the second read as it would be by a request that came a moment earlier;
//! the next turn reads the file again.
//!
//! Anything else is a miss, and the caller reads the file again. The caller forgets a file
//! before writing its ACL, and only uses the cache on file systems whose ctime is kept by the
//! local kernel (a network file system's client may show a cached ctime while the server's
//! xattrs changed) and when the xattrs are the file's own (in smbd: no VFS module stacked
//! below nfsbridge, which might keep them elsewhere, as vfs_xattr_tdb does).
//!
//! Bounded: at most `capacity` files; when full, old entries go, and if none is old, all do.
//! Pure data structure: the caller passes the clock readings (`SystemTime`, because ctimes are
//! wall-clock times).
use std::collections::HashMap;
use std::time::{Duration, SystemTime};

use super::posix::PosixAcl;

/// Whether the file system type (`statfs`'s `f_type`) is one whose ctime the local kernel
/// sets on every xattr, ACL, mode and owner change: ext2/3/4, XFS, Btrfs and tmpfs. Network
/// and FUSE file systems are not trusted (their ctime may be a cached or remote answer).
pub fn trusts_ctime(f_type: u64) -> bool {
    const EXT4: u64 = 0xEF53;
    const XFS: u64 = 0x5846_5342;
    const BTRFS: u64 = 0x9123_683E;
    const TMPFS: u64 = 0x0102_1994;
    matches!(f_type, EXT4 | XFS | BTRFS | TMPFS)
}

/// The parts of a stat that must be unchanged for a cached read to stand.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Stamp {
    pub dev: u64,
    pub ino: u64,
    /// ctime as seconds and nanoseconds since the epoch.
    pub ctime_sec: i64,
    pub ctime_nsec: u32,
    pub mode: u32,
    pub uid: u32,
    pub gid: u32,
}

impl Stamp {
    fn ctime(&self) -> Option<SystemTime> {
        let secs = u64::try_from(self.ctime_sec).ok()?;
        SystemTime::UNIX_EPOCH.checked_add(Duration::new(secs, self.ctime_nsec.min(999_999_999)))
    }
}

/// The xattr values of one read. `None`: the file had no such xattr.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct AclXattrs {
    /// The name of the NFSv4 ACL xattr read into `stored`.
    pub xattr_name: String,
    pub stored: Option<Vec<u8>>,
    pub access: Option<PosixAcl>,
    /// Only read for directories.
    pub default: Option<PosixAcl>,
}

struct Entry {
    stamp: Stamp,
    /// When the read began (before the stat that gave `stamp`).
    read_began: SystemTime,
    /// The turn of the read ([`StateCache::put`]).
    turn: Option<u64>,
    xattrs: AclXattrs,
}

impl Entry {
    /// The ctime was older than the read by more than the margin: trusted in any turn.
    fn settled(&self) -> bool {
        self.stamp
            .ctime()
            .and_then(|ctime| self.read_began.duration_since(ctime).ok())
            .is_some_and(|age| age > StateCache::MARGIN)
    }
}

/// See the module docs.
pub struct StateCache {
    capacity: usize,
    entries: HashMap<(u64, u64), Entry>,
}

impl StateCache {
    /// How much older than the read a ctime must be for the read to be cached: more than the
    /// coarsest timestamp granularity of a local Linux file system with xattrs (1 s) plus a
    /// timer tick.
    pub const MARGIN: Duration = Duration::from_secs(2);
    /// How long an entry is used at most.
    pub const MAX_AGE: Duration = Duration::from_secs(10);
    pub const DEFAULT_CAPACITY: usize = 1024;

    pub fn new(capacity: usize) -> Self {
        StateCache { capacity, entries: HashMap::new() }
    }

    pub fn len(&self) -> usize {
        self.entries.len()
    }

    pub fn is_empty(&self) -> bool {
        self.entries.is_empty()
    }

    /// The cached xattrs of the file `stamp` describes (from a stat made just now, in the
    /// caller's `turn`, `None` when it cannot tell), if they are certain to be what the file
    /// holds (module docs); a stale entry is dropped.
    pub fn get(
        &mut self,
        stamp: &Stamp,
        xattr_name: &str,
        now: SystemTime,
        turn: Option<u64>,
    ) -> Option<&AclXattrs> {
        let key = (stamp.dev, stamp.ino);
        let entry = self.entries.get(&key)?;
        let fresh = entry.stamp == *stamp
            && entry.xattrs.xattr_name == xattr_name
            && now.duration_since(entry.read_began).is_ok_and(|age| age < Self::MAX_AGE)
            && (entry.settled() || (turn.is_some() && entry.turn == turn));
        if !fresh {
            self.entries.remove(&key);
            return None;
        }
        self.entries.get(&key).map(|entry| &entry.xattrs)
    }

    /// Records a read: `read_began` was taken before the stat that gave `stamp`, and the
    /// xattrs were read after that stat, in the caller's `turn` (`None`: it cannot tell).
    /// When the ctime is too recent (or in the future) to tell later changes apart, the read
    /// is kept for its turn only, and not at all without one.
    pub fn put(&mut self, stamp: Stamp, read_began: SystemTime, turn: Option<u64>, xattrs: AclXattrs) {
        let key = (stamp.dev, stamp.ino);
        let entry = Entry { stamp, read_began, turn, xattrs };
        if (!entry.settled() && turn.is_none()) || self.capacity == 0 {
            self.entries.remove(&key);
            return;
        }
        if self.entries.len() >= self.capacity && !self.entries.contains_key(&key) {
            self.entries.retain(|_, entry| {
                read_began.duration_since(entry.read_began).is_ok_and(|age| age < Self::MAX_AGE)
            });
            if self.entries.len() >= self.capacity {
                self.entries.clear();
            }
        }
        self.entries.insert(key, entry);
    }

    /// Forgets the file (before writing its ACL).
    pub fn forget(&mut self, dev: u64, ino: u64) {
        self.entries.remove(&(dev, ino));
    }
}

impl Default for StateCache {
    fn default() -> Self {
        StateCache::new(StateCache::DEFAULT_CAPACITY)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const MS: Duration = Duration::from_millis(1);

    fn at(secs: u64) -> SystemTime {
        SystemTime::UNIX_EPOCH + Duration::from_secs(1_700_000_000 + secs)
    }

    fn stamp_at(ino: u64, ctime: SystemTime) -> Stamp {
        let since = ctime.duration_since(SystemTime::UNIX_EPOCH).unwrap();
        Stamp {
            dev: 2049,
            ino,
            ctime_sec: since.as_secs() as i64,
            ctime_nsec: since.subsec_nanos(),
            mode: 0o100644,
            uid: 1000,
            gid: 100,
        }
    }

    fn xattrs(stored: &[u8]) -> AclXattrs {
        AclXattrs {
            xattr_name: "security.nfs4acl_xdr".into(),
            stored: Some(stored.to_vec()),
            access: Some(PosixAcl::from_mode(0o644)),
            default: None,
        }
    }

    const NAME: &str = "security.nfs4acl_xdr";

    #[test]
    fn a_settled_read_is_used_while_the_stat_is_unchanged() {
        let mut cache = StateCache::default();
        let stamp = stamp_at(7, at(0));
        cache.put(stamp, at(3), None, xattrs(b"acl"));
        assert_eq!(cache.get(&stamp, NAME, at(3) + 5 * MS, None), Some(&xattrs(b"acl")));
        assert_eq!(cache.get(&stamp, NAME, at(9), None), Some(&xattrs(b"acl")));
    }

    #[test]
    fn a_read_within_the_margin_of_the_last_change_is_not_cached() {
        let mut cache = StateCache::default();
        // Changed 1.5 s before the read: a change right after the read could share its ctime
        // on a file system with 1 s timestamps.
        let stamp = stamp_at(7, at(0));
        cache.put(stamp, at(0) + 1500 * MS, None, xattrs(b"acl"));
        assert!(cache.is_empty());
        assert_eq!(cache.get(&stamp, NAME, at(1), None), None);
        // Exactly at the margin is still too close.
        cache.put(stamp, at(0) + StateCache::MARGIN, None, xattrs(b"acl"));
        assert!(cache.is_empty());
        // A ctime in the future (clock stepped back) is never settled.
        cache.put(stamp_at(8, at(10)), at(5), None, xattrs(b"acl"));
        assert!(cache.is_empty());
    }

    #[test]
    fn a_read_within_the_margin_is_used_in_its_own_turn_only() {
        let mut cache = StateCache::default();
        // A directory a file was just created in: changed 1 ms before the read.
        let stamp = stamp_at(7, at(0));
        cache.put(stamp, at(0) + MS, Some(41), xattrs(b"acl"));
        assert_eq!(cache.get(&stamp, NAME, at(0) + 2 * MS, Some(41)), Some(&xattrs(b"acl")));
        assert_eq!(cache.get(&stamp, NAME, at(0) + 3 * MS, Some(41)), Some(&xattrs(b"acl")));
        // The next turn reads again (and the entry goes).
        assert_eq!(cache.get(&stamp, NAME, at(0) + 4 * MS, Some(42)), None);
        assert!(cache.is_empty());
        // A caller that cannot tell its turn never uses it.
        cache.put(stamp, at(0) + MS, Some(41), xattrs(b"acl"));
        assert_eq!(cache.get(&stamp, NAME, at(0) + 2 * MS, None), None);
        // Within the turn, a changed stat is still a miss.
        cache.put(stamp, at(0) + MS, Some(41), xattrs(b"acl"));
        assert_eq!(cache.get(&Stamp { mode: 0o100600, ..stamp }, NAME, at(0) + 2 * MS, Some(41)), None);
        // A settled read is used in any turn, with or without one.
        let settled = stamp_at(8, at(0));
        cache.put(settled, at(3), Some(41), xattrs(b"old"));
        assert_eq!(cache.get(&settled, NAME, at(4), Some(50)), Some(&xattrs(b"old")));
        assert_eq!(cache.get(&settled, NAME, at(4), None), Some(&xattrs(b"old")));
    }

    #[test]
    fn a_too_recent_read_drops_what_was_cached_for_the_file() {
        let mut cache = StateCache::default();
        cache.put(stamp_at(7, at(0)), at(3), None, xattrs(b"old"));
        let changed = stamp_at(7, at(10));
        cache.put(changed, at(10) + 100 * MS, None, xattrs(b"new"));
        assert!(cache.is_empty());
    }

    #[test]
    fn any_change_of_ctime_mode_owner_or_group_is_a_miss() {
        let base = stamp_at(7, at(0));
        let changes = [
            Stamp { ctime_nsec: base.ctime_nsec + 1, ..base },
            Stamp { ctime_sec: base.ctime_sec + 1, ..base },
            Stamp { mode: 0o100600, ..base },
            Stamp { uid: 0, ..base },
            Stamp { gid: 0, ..base },
        ];
        for changed in changes {
            let mut cache = StateCache::default();
            cache.put(base, at(3), None, xattrs(b"acl"));
            assert_eq!(cache.get(&changed, NAME, at(4), None), None, "{changed:?}");
            // The stale entry is gone, even for the old stamp.
            assert_eq!(cache.get(&base, NAME, at(4), None), None);
        }
    }

    #[test]
    fn another_file_or_another_xattr_name_is_a_miss() {
        let mut cache = StateCache::default();
        let stamp = stamp_at(7, at(0));
        cache.put(stamp, at(3), None, xattrs(b"acl"));
        assert_eq!(cache.get(&Stamp { dev: 2050, ..stamp }, NAME, at(4), None), None);
        assert_eq!(cache.get(&Stamp { ino: 8, ..stamp }, NAME, at(4), None), None);
        assert_eq!(cache.get(&stamp, "security.nfs4acl_ndr", at(4), None), None);
    }

    #[test]
    fn entries_expire_and_a_clock_going_back_is_a_miss() {
        let mut cache = StateCache::default();
        let stamp = stamp_at(7, at(0));
        cache.put(stamp, at(3), None, xattrs(b"acl"));
        assert_eq!(cache.get(&stamp, NAME, at(3) + StateCache::MAX_AGE, None), None);
        cache.put(stamp, at(3), None, xattrs(b"acl"));
        assert_eq!(cache.get(&stamp, NAME, at(3) - MS, None), None);
        assert!(cache.is_empty());
    }

    #[test]
    fn forget_drops_the_file() {
        let mut cache = StateCache::default();
        let stamp = stamp_at(7, at(0));
        cache.put(stamp, at(3), None, xattrs(b"acl"));
        cache.put(stamp_at(8, at(0)), at(3), None, xattrs(b"other"));
        cache.forget(2049, 7);
        assert_eq!(cache.get(&stamp, NAME, at(4), None), None);
        assert_eq!(cache.len(), 1);
    }

    #[test]
    fn only_local_file_systems_are_trusted() {
        assert!(trusts_ctime(0xEF53) && trusts_ctime(0x5846_5342) && trusts_ctime(0x9123_683E));
        // NFS, SMB, FUSE, overlayfs.
        for f_type in [0x6969, 0xFE53_4D42, 0x6573_5546, 0x794C_7630] {
            assert!(!trusts_ctime(f_type), "{f_type:#x}");
        }
    }

    #[test]
    fn the_cache_is_bounded() {
        let mut cache = StateCache::new(3);
        for ino in 0..3 {
            cache.put(stamp_at(ino, at(0)), at(3), None, xattrs(b"acl"));
        }
        // Full, none older than MAX_AGE: all go, then the new one.
        cache.put(stamp_at(9, at(0)), at(4), None, xattrs(b"acl"));
        assert_eq!(cache.len(), 1);
        // Full with old entries: only those go.
        cache.put(stamp_at(10, at(0)), at(5), None, xattrs(b"acl"));
        cache.put(stamp_at(11, at(0)), at(20), None, xattrs(b"acl"));
        assert_eq!(cache.len(), 3);
        cache.put(stamp_at(12, at(0)), at(21), None, xattrs(b"acl"));
        assert_eq!(cache.len(), 2);
        for ino in 100..1000 {
            cache.put(stamp_at(ino, at(0)), at(30), None, xattrs(b"acl"));
            assert!(cache.len() <= 3);
        }
        let mut off = StateCache::new(0);
        off.put(stamp_at(1, at(0)), at(3), None, xattrs(b"acl"));
        assert!(off.is_empty());
    }
}
