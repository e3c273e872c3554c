//! Directory leases and handle leases against namespace changes made outside smbd (issue 7):
//! the pure half. The module (`module/src/dirlease.rs`) watches, with fanotify, every
//! directory an SMB client of its smbd process holds a directory lease on, and the parent
//! directory of every open holding a handle (H) lease; this module decodes fanotify's event
//! records, keeps the table of watched directories, decides which events come from smbd itself
//! (Samba already breaks directory leases for its own changes, with its own rules) and what a
//! change does to a lease.
//!
//! Why fanotify and not inotify: fanotify reports the pid of the process that made the change.
//! smbd's own creates, deletes and renames already break directory leases through
//! `contend_dirleases`, which spares the lease named as the opener's parent lease key; a
//! second break from the watch would break that lease too (a wrong break, which
//! `smb2.dirlease` notices). With the pid, events from smbd processes are dropped, so only
//! local and NFS changes break anything here.
use std::collections::BTreeMap;
use std::time::Duration;
use std::ffi::OsString;
use std::os::unix::ffi::OsStringExt;

pub mod delegation;

/// `FAN_*` event bits (include/uapi/linux/fanotify.h).
pub mod mask {
    pub const MOVED_FROM: u64 = 0x0000_0040;
    pub const MOVED_TO: u64 = 0x0000_0080;
    pub const CREATE: u64 = 0x0000_0100;
    pub const DELETE: u64 = 0x0000_0200;
    pub const Q_OVERFLOW: u64 = 0x0000_4000;
    pub const ONDIR: u64 = 0x4000_0000;
    /// What the module asks for on every watched directory.
    pub const NAMESPACE: u64 = CREATE | DELETE | MOVED_FROM | MOVED_TO | ONDIR;
}

/// `FAN_EVENT_INFO_TYPE_DFID_NAME`: the directory's file handle and the entry's name.
const INFO_TYPE_DFID_NAME: u8 = 2;
/// `FAN_EVENT_INFO_TYPE_DFID`, `FAN_EVENT_INFO_TYPE_FID`: a handle without a name.
const INFO_TYPE_FID: u8 = 1;
const INFO_TYPE_DFID: u8 = 3;
const FANOTIFY_METADATA_VERSION: u8 = 3;
const METADATA_LEN: usize = 24;

/// A directory as fanotify names it: the filesystem id and the directory's file handle
/// (`handle_type` and bytes, as `name_to_handle_at` gives them).
#[derive(Clone, Debug, PartialEq, Eq, PartialOrd, Ord)]
pub struct DirHandle {
    pub fsid: [u8; 8],
    pub handle_type: i32,
    pub handle: Vec<u8>,
}

/// One decoded fanotify event.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Event {
    pub mask: u64,
    /// The process that made the change (0 when the kernel cannot name it to us).
    pub pid: i32,
    /// The directory whose entries changed, when the record carries one.
    pub dir: Option<DirHandle>,
    /// The entry's name.
    pub name: Option<OsString>,
}

/// Why a buffer of events could not be decoded (the rest of it is dropped).
#[derive(Debug, PartialEq, Eq)]
pub enum DecodeError {
    Truncated,
    Version(u8),
}

fn u16_at(b: &[u8], at: usize) -> Option<u16> {
    b.get(at..at + 2).map(|s| u16::from_ne_bytes([s[0], s[1]]))
}
fn u32_at(b: &[u8], at: usize) -> Option<u32> {
    b.get(at..at + 4).map(|s| u32::from_ne_bytes([s[0], s[1], s[2], s[3]]))
}
fn u64_at(b: &[u8], at: usize) -> Option<u64> {
    b.get(at..at + 8).map(|s| u64::from_ne_bytes(s.try_into().unwrap()))
}

/// Decodes what one `read()` of a fanotify group made with `FAN_REPORT_DFID_NAME` returned:
/// `struct fanotify_event_metadata` records, each followed by its info records.
pub fn decode_events(buf: &[u8]) -> Result<Vec<Event>, DecodeError> {
    let mut events = Vec::new();
    let mut at = 0;
    while at < buf.len() {
        let record = &buf[at..];
        let event_len = u32_at(record, 0).ok_or(DecodeError::Truncated)? as usize;
        let version = record[4];
        if version != FANOTIFY_METADATA_VERSION {
            return Err(DecodeError::Version(version));
        }
        let metadata_len = u16_at(record, 6).ok_or(DecodeError::Truncated)? as usize;
        if event_len < METADATA_LEN || metadata_len < METADATA_LEN || event_len > record.len() || metadata_len > event_len {
            return Err(DecodeError::Truncated);
        }
        let mask = u64_at(record, 8).ok_or(DecodeError::Truncated)?;
        let pid = u32_at(record, 20).ok_or(DecodeError::Truncated)? as i32;
        let mut event = Event { mask, pid, dir: None, name: None };
        let mut info = metadata_len;
        while info + 4 <= event_len {
            let info_type = record[info];
            let info_len = u16_at(record, info + 2).ok_or(DecodeError::Truncated)? as usize;
            if info_len < 4 || info + info_len > event_len {
                return Err(DecodeError::Truncated);
            }
            let body = &record[info + 4..info + info_len];
            if matches!(info_type, INFO_TYPE_DFID_NAME | INFO_TYPE_DFID | INFO_TYPE_FID) && event.dir.is_none() {
                // fsid (8 bytes), struct file_handle { u32 handle_bytes; i32 handle_type; u8 f_handle[] }
                let handle_bytes = u32_at(body, 8).ok_or(DecodeError::Truncated)? as usize;
                let handle_type = u32_at(body, 12).ok_or(DecodeError::Truncated)? as i32;
                let handle = body.get(16..16 + handle_bytes).ok_or(DecodeError::Truncated)?.to_vec();
                if info_type == INFO_TYPE_DFID_NAME {
                    let rest = &body[16 + handle_bytes..];
                    let end = rest.iter().position(|&c| c == 0).unwrap_or(rest.len());
                    event.name = Some(OsString::from_vec(rest[..end].to_vec()));
                }
                event.dir = Some(DirHandle { fsid: body[..8].try_into().unwrap(), handle_type, handle });
            }
            info += info_len;
        }
        events.push(event);
        at += event_len;
    }
    Ok(events)
}

/// A directory by device and inode number (smbd's file id).
pub type DirKey = (u64, u64);

/// The directories this process watches, each with the number of opens that need it.
///
/// A watch whose last user went keeps its mark for a while ([`Watches::expire`]): an open,
/// close, open of files in one directory (what Windows clients do all the time) would
/// otherwise add and remove the fanotify mark, with root's privileges, every time. An idle
/// watch reports nothing (its events find no watch) and costs only the mark.
#[derive(Default)]
pub struct Watches<T> {
    by_key: BTreeMap<DirKey, Watch<T>>,
}

pub struct Watch<T> {
    pub handle: DirHandle,
    pub users: usize,
    /// When the last user went (on the caller's clock), for an idle watch.
    pub idle_since: Option<Duration>,
    /// What the module keeps for the mark (its descriptor of the directory).
    pub resource: T,
}

impl<T> Watches<T> {
    pub const fn new() -> Self {
        Watches { by_key: BTreeMap::new() }
    }

    /// One more user of an existing (active or idle) watch; false when `key` is not watched.
    pub fn retain(&mut self, key: DirKey) -> bool {
        match self.by_key.get_mut(&key) {
            Some(watch) => {
                watch.users += 1;
                watch.idle_since = None;
                true
            }
            None => false,
        }
    }

    /// A new watch with one user.
    pub fn insert(&mut self, key: DirKey, handle: DirHandle, resource: T) {
        self.by_key.insert(key, Watch { handle, users: 1, idle_since: None, resource });
    }

    /// One user fewer; the last one leaves the watch idle since `now`, mark kept.
    pub fn release(&mut self, key: DirKey, now: Duration) {
        if let Some(watch) = self.by_key.get_mut(&key) {
            watch.users = watch.users.saturating_sub(1);
            if watch.users == 0 && watch.idle_since.is_none() {
                watch.idle_since = Some(now);
            }
        }
    }

    /// Takes out the idle watches that have been idle for `linger` by `now`, and the oldest
    /// idle ones beyond `max_idle`: their resources, to remove the marks.
    pub fn expire(&mut self, now: Duration, linger: Duration, max_idle: usize) -> Vec<T> {
        let mut idle: Vec<(Duration, DirKey)> =
            self.by_key.iter().filter_map(|(k, w)| w.idle_since.map(|since| (since, *k))).collect();
        idle.sort();
        let over = idle.len().saturating_sub(max_idle);
        let gone: Vec<DirKey> = idle
            .iter()
            .enumerate()
            .filter(|(i, (since, _))| *i < over || now.saturating_sub(*since) >= linger)
            .map(|(_, (_, k))| *k)
            .collect();
        gone.into_iter().filter_map(|k| self.by_key.remove(&k).map(|w| w.resource)).collect()
    }

    /// The watched directory an event names (idle watches report nothing).
    pub fn find(&self, handle: &DirHandle) -> Option<DirKey> {
        self.by_key.iter().find(|(_, w)| w.users > 0 && &w.handle == handle).map(|(k, _)| *k)
    }

    /// The directories with users.
    pub fn keys(&self) -> impl Iterator<Item = DirKey> + '_ {
        self.by_key.iter().filter(|(_, w)| w.users > 0).map(|(k, _)| *k)
    }

    /// Every mark, idle ones included.
    pub fn len(&self) -> usize {
        self.by_key.len()
    }

    pub fn is_empty(&self) -> bool {
        self.by_key.is_empty()
    }
}

/// A change to a watched directory that the module acts on.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Change {
    pub dir: DirKey,
    /// The entry created, deleted or renamed; `None` after a queue overflow (anything may
    /// have changed).
    pub name: Option<OsString>,
    pub mask: u64,
}

/// Turns decoded events into the changes to act on: events from smbd (`is_smbd(pid)`) and
/// events on directories no longer watched are dropped; a queue overflow becomes a change of
/// every watched directory.
pub fn changes<T>(events: &[Event], watches: &Watches<T>, mut is_smbd: impl FnMut(i32) -> bool) -> Vec<Change> {
    let mut out = Vec::new();
    for event in events {
        if event.mask & mask::Q_OVERFLOW != 0 {
            out.extend(watches.keys().map(|dir| Change { dir, name: None, mask: event.mask }));
            continue;
        }
        if event.mask & mask::NAMESPACE & !mask::ONDIR == 0 {
            continue;
        }
        // The directory first: events on idle marks are common and need no look at the pid.
        let Some(dir) = event.dir.as_ref().and_then(|h| watches.find(h)) else { continue };
        if is_smbd(event.pid) {
            continue;
        }
        out.push(Change { dir, name: event.name.clone(), mask: event.mask });
    }
    out
}

/// SMB2 lease bits.
pub const LEASE_READ: u32 = 0x1;
pub const LEASE_HANDLE: u32 = 0x2;
pub const LEASE_WRITE: u32 = 0x4;

/// A directory lease whose directory's entries changed: what to break it to, as smbd's own
/// `contend_dirleases` does (to none, when it caches reads or handles).
pub fn directory_lease_break(current: u32) -> Option<u32> {
    (current & (LEASE_READ | LEASE_HANDLE) != 0).then_some(0)
}

/// A lease on an open whose name was deleted or renamed away (or replaced) by someone else:
/// H goes, R and W stay (as smbd breaks the H of other opens before its own delete or rename).
pub fn unlinked_lease_break(current: u32) -> Option<u32> {
    (current & LEASE_HANDLE != 0).then_some(current & !LEASE_HANDLE)
}

/// How namespace changes outside smbd reach SMB leases on this kernel.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Mode {
    /// Directory delegations (Linux 6.19+): a local or NFS change of a directory with a
    /// directory lease, or of the directory holding the name of a lease with H (unless the
    /// share turned that off), waits until the lease is broken; fanotify watches as well
    /// (changes while a delegation is given back, and handle leases not delegated), after the
    /// change.
    Delegations,
    /// fanotify watches: breaks follow the change (the window is measured in BENCHMARKS.md).
    Fanotify,
    /// No watch could be set up (no fanotify, no privilege): directory leases are broken to
    /// none as soon as they are granted, handle leases keep Samba's behaviour.
    Unavailable,
}

/// Why directory delegations are not used, for the mode's log line.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum DelegationSupport {
    /// The kernel (or the share's file system) has no `F_SETDELEG`.
    Missing,
    /// The kernel has them; the share turned them off (`nfsbridge:directory delegations = no`),
    /// or they could not be set up (logged on its own).
    NotUsed,
    Used,
}

impl Mode {
    /// The mode's log line; `handle_leases`: the share delegates the directories of handle
    /// leases too (`nfsbridge:handle lease delegations`).
    pub fn describe(self, support: DelegationSupport, handle_leases: bool) -> String {
        let kernel = match support {
            DelegationSupport::Missing => "the kernel has no F_SETDELEG (Linux < 6.19)",
            DelegationSupport::NotUsed => {
                "the kernel has F_SETDELEG, but directory delegations are off (nfsbridge:directory delegations = no) or could not be set up"
            }
            DelegationSupport::Used => "the kernel has F_SETDELEG",
        };
        match self {
            Mode::Delegations if handle_leases => format!(
                "namespace watch: directory delegations and fanotify ({kernel}); local and NFS creates, deletes \
                 and renames break SMB directory leases before the change, and the H of leases on the \
                 directory's entries before it too (any such change in the directory)"
            ),
            Mode::Delegations => format!(
                "namespace watch: directory delegations and fanotify ({kernel}); local and NFS creates, deletes \
                 and renames break SMB directory leases before the change, and handle leases after it \
                 (nfsbridge:handle lease delegations = no)"
            ),
            Mode::Fanotify => format!(
                "namespace watch: fanotify ({kernel}); local and NFS creates, deletes and renames break \
                 SMB directory and handle leases after the change"
            ),
            Mode::Unavailable => format!(
                "namespace watch: unavailable ({kernel}, fanotify refused); directory leases are broken \
                 to none when granted"
            ),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn record(mask: u64, pid: i32, fsid: [u8; 8], handle: &[u8], name: &str) -> Vec<u8> {
        let mut info = Vec::new();
        info.extend_from_slice(&fsid);
        info.extend_from_slice(&(handle.len() as u32).to_ne_bytes());
        info.extend_from_slice(&1i32.to_ne_bytes());
        info.extend_from_slice(handle);
        info.extend_from_slice(name.as_bytes());
        info.push(0);
        while (info.len() + 4) % 4 != 0 {
            info.push(0);
        }
        let info_len = info.len() + 4;
        let event_len = METADATA_LEN + info_len;
        let mut out = Vec::new();
        out.extend_from_slice(&(event_len as u32).to_ne_bytes());
        out.push(FANOTIFY_METADATA_VERSION);
        out.push(0);
        out.extend_from_slice(&(METADATA_LEN as u16).to_ne_bytes());
        out.extend_from_slice(&mask.to_ne_bytes());
        out.extend_from_slice(&(-1i32).to_ne_bytes());
        out.extend_from_slice(&pid.to_ne_bytes());
        out.push(INFO_TYPE_DFID_NAME);
        out.push(0);
        out.extend_from_slice(&(info_len as u16).to_ne_bytes());
        out.extend_from_slice(&info);
        out
    }

    fn handle(bytes: &[u8]) -> DirHandle {
        DirHandle { fsid: [7; 8], handle_type: 1, handle: bytes.to_vec() }
    }

    #[test]
    fn decodes_records_with_directory_handle_and_name() {
        let mut buf = record(mask::CREATE, 42, [7; 8], &[1, 2, 3, 4, 5, 6, 7, 8], "new.txt");
        buf.extend(record(mask::DELETE | mask::ONDIR, 43, [7; 8], &[9; 8], "sub"));
        let events = decode_events(&buf).unwrap();
        assert_eq!(events.len(), 2);
        assert_eq!(events[0], Event { mask: mask::CREATE, pid: 42, dir: Some(handle(&[1, 2, 3, 4, 5, 6, 7, 8])), name: Some("new.txt".into()) });
        assert_eq!(events[1].name.as_deref(), Some(std::ffi::OsStr::new("sub")));
        assert_eq!(events[1].mask, mask::DELETE | mask::ONDIR);
    }

    #[test]
    fn refuses_truncated_and_foreign_records() {
        let buf = record(mask::CREATE, 1, [7; 8], &[1; 8], "x");
        assert_eq!(decode_events(&buf[..buf.len() - 1]), Err(DecodeError::Truncated));
        assert_eq!(decode_events(&buf[..10]), Err(DecodeError::Truncated));
        let mut other = buf.clone();
        other[4] = 2;
        assert_eq!(decode_events(&other), Err(DecodeError::Version(2)));
        let mut bad_info = buf;
        bad_info[METADATA_LEN + 2] = 0xff; // info record longer than the event
        assert_eq!(decode_events(&bad_info), Err(DecodeError::Truncated));
    }

    #[test]
    fn watches_count_users_and_find_by_handle() {
        let mut watches = Watches::new();
        let t = Duration::from_secs;
        assert!(!watches.retain((1, 2)));
        watches.insert((1, 2), handle(&[1; 8]), "fd");
        assert!(watches.retain((1, 2)));
        assert_eq!(watches.find(&handle(&[1; 8])), Some((1, 2)));
        assert_eq!(watches.find(&handle(&[2; 8])), None);
        watches.release((1, 2), t(0));
        watches.release((1, 2), t(1));
        // Idle: reports nothing, keeps its mark, comes back on the next retain.
        assert_eq!(watches.find(&handle(&[1; 8])), None);
        assert_eq!(watches.keys().count(), 0);
        assert_eq!(watches.len(), 1);
        assert!(watches.expire(t(2), t(5), 8).is_empty());
        assert!(watches.retain((1, 2)));
        assert_eq!(watches.find(&handle(&[1; 8])), Some((1, 2)));
        watches.release((1, 2), t(10));
        assert!(watches.expire(t(14), t(5), 8).is_empty());
        assert_eq!(watches.expire(t(15), t(5), 8), vec!["fd"]);
        assert!(watches.is_empty());
        watches.release((1, 2), t(16)); // not watched: nothing happens
        assert!(watches.is_empty());
    }

    #[test]
    fn idle_watches_beyond_the_bound_go_oldest_first() {
        let mut watches = Watches::new();
        let t = Duration::from_secs;
        for (i, name) in ["a", "b", "c"].into_iter().enumerate() {
            watches.insert((1, i as u64), handle(&[i as u8; 8]), name);
            watches.release((1, i as u64), t(10 - i as u64)); // c idle first, a last
        }
        watches.insert((1, 9), handle(&[9; 8]), "busy");
        assert_eq!(watches.expire(t(11), t(60), 1), vec!["c", "b"]);
        assert_eq!(watches.len(), 2);
        assert_eq!(watches.keys().collect::<Vec<_>>(), vec![(1, 9)]);
    }

    #[test]
    fn changes_drop_smbd_and_unwatched_directories() {
        let mut watches = Watches::new();
        watches.insert((1, 2), handle(&[1; 8]), ());
        watches.insert((1, 3), handle(&[3; 8]), ());
        let events = decode_events(&[
            record(mask::CREATE, 100, [7; 8], &[1; 8], "local"),
            record(mask::DELETE, 200, [7; 8], &[1; 8], "by-smbd"),
            record(mask::MOVED_FROM, 100, [7; 8], &[2; 8], "unwatched"),
            record(mask::MOVED_TO | mask::ONDIR, 0, [7; 8], &[3; 8], "nfsd"),
        ].concat()).unwrap();
        let changes = changes(&events, &watches, |pid| pid == 200);
        assert_eq!(changes, vec![
            Change { dir: (1, 2), name: Some("local".into()), mask: mask::CREATE },
            Change { dir: (1, 3), name: Some("nfsd".into()), mask: mask::MOVED_TO | mask::ONDIR },
        ]);
    }

    #[test]
    fn overflow_changes_every_watched_directory() {
        let mut watches = Watches::new();
        watches.insert((1, 2), handle(&[1; 8]), ());
        watches.insert((1, 3), handle(&[3; 8]), ());
        let overflow = Event { mask: mask::Q_OVERFLOW, pid: 0, dir: None, name: None };
        let dirs: Vec<_> = changes(&[overflow], &watches, |_| true).into_iter().map(|c| (c.dir, c.name)).collect();
        assert_eq!(dirs, vec![((1, 2), None), ((1, 3), None)]);
    }

    #[test]
    fn lease_breaks_follow_samba() {
        assert_eq!(directory_lease_break(LEASE_READ | LEASE_HANDLE), Some(0));
        assert_eq!(directory_lease_break(LEASE_READ), Some(0));
        assert_eq!(directory_lease_break(0), None);
        assert_eq!(unlinked_lease_break(LEASE_READ | LEASE_WRITE | LEASE_HANDLE), Some(LEASE_READ | LEASE_WRITE));
        assert_eq!(unlinked_lease_break(LEASE_READ | LEASE_HANDLE), Some(LEASE_READ));
        assert_eq!(unlinked_lease_break(LEASE_READ | LEASE_WRITE), None);
    }
}
