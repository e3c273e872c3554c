//! A bounded, expiring memo of identity-mapping answers, kept for one process.
//!
//! Inside smbd every `fget_nt_acl` (a client's query, and smbd's own access check on every
//! open) maps the file's owner and group to SIDs, and every `fset_nt_acl` maps the ACEs' SIDs
//! to ids. Without winbind, Samba answers each of those from passdb under `become_root`
//! (six set*id calls and a copy of the security token per lookup) and caches nothing, so the
//! module remembers the answers itself for a short while:
//!
//! - an answer (a SID for an id, an id for a SID) is used for at most
//!   [`IdCacheTimes::positive`] after it was looked up; "no mapping" for at most
//!   [`IdCacheTimes::negative`], which is never longer than the positive time;
//! - a failure of the map itself ([`IdMapError::Backend`]) is never remembered;
//! - each direction holds at most `capacity` answers: when one is full, expired answers are
//!   dropped, and if none has expired, all of that direction's answers are (simple, bounded,
//!   and a miss only costs the lookup the module would have made anyway).
//!
//! Entries record when they were looked up, not when they expire, so that each caller
//! (one share) applies its own times: a share configured with a time of zero never uses an
//! answer another share's lookup left behind. Time is [`Instant`] (monotonic), so a clock
//! step cannot make an answer live longer. Pure data structure: no I/O, no clock reads (the
//! caller passes `now`).
use std::collections::HashMap;
use std::hash::Hash;
use std::time::{Duration, Instant};

use super::idmap::{IdMapError, UnixId};
use super::sid::Sid;

/// How long answers are used after their lookup.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct IdCacheTimes {
    pub positive: Duration,
    /// Always `<= positive` (see [`IdCacheTimes::new`]).
    pub negative: Duration,
}

impl IdCacheTimes {
    /// `negative` is cut down to `positive`: "no mapping" is never remembered longer than a
    /// mapping.
    pub fn new(positive: Duration, negative: Duration) -> Self {
        IdCacheTimes { positive, negative: negative.min(positive) }
    }

    /// Nothing is remembered.
    pub const OFF: IdCacheTimes = IdCacheTimes { positive: Duration::ZERO, negative: Duration::ZERO };

    pub fn is_off(&self) -> bool {
        self.positive.is_zero()
    }

    /// How long `answer` may be used; `None` if it must not be remembered at all.
    fn lifetime<V>(&self, answer: &Result<V, IdMapError>) -> Option<Duration> {
        let lifetime = match answer {
            Ok(_) => self.positive,
            Err(err) if err.is_not_found() => self.negative,
            Err(_) => return None,
        };
        (!lifetime.is_zero()).then_some(lifetime)
    }
}

struct Entry<V> {
    answer: Result<V, IdMapError>,
    looked_up: Instant,
}

impl<V> Entry<V> {
    fn is_fresh(&self, now: Instant, times: &IdCacheTimes) -> bool {
        let Some(lifetime) = times.lifetime(&self.answer) else { return false };
        // checked_duration_since: an entry from the future (a caller's `now` taken before
        // another caller's insert) counts as just looked up.
        now.checked_duration_since(self.looked_up).unwrap_or(Duration::ZERO) < lifetime
    }
}

struct Memo<K, V> {
    entries: HashMap<K, Entry<V>>,
}

impl<K: Hash + Eq, V: Clone> Memo<K, V> {
    fn new() -> Self {
        Memo { entries: HashMap::new() }
    }

    fn get(&mut self, key: &K, now: Instant, times: &IdCacheTimes) -> Option<Result<V, IdMapError>> {
        let entry = self.entries.get(key)?;
        if entry.is_fresh(now, times) {
            return Some(entry.answer.clone());
        }
        self.entries.remove(key);
        None
    }

    fn insert(&mut self, key: K, answer: Result<V, IdMapError>, now: Instant, times: &IdCacheTimes, capacity: usize) {
        if times.lifetime(&answer).is_none() || capacity == 0 {
            return;
        }
        if self.entries.len() >= capacity && !self.entries.contains_key(&key) {
            self.entries.retain(|_, entry| entry.is_fresh(now, times));
            if self.entries.len() >= capacity {
                self.entries.clear();
            }
        }
        self.entries.insert(key, Entry { answer, looked_up: now });
    }
}

/// The memo of SID → id, uid → SID and gid → SID answers (see the module docs).
pub struct IdCache {
    capacity: usize,
    sids: Memo<Sid, UnixId>,
    users: Memo<u32, Sid>,
    groups: Memo<u32, Sid>,
}

impl IdCache {
    /// Answers kept per direction by [`IdCache::default`].
    pub const DEFAULT_CAPACITY: usize = 4096;

    pub fn new(capacity: usize) -> Self {
        IdCache { capacity, sids: Memo::new(), users: Memo::new(), groups: Memo::new() }
    }

    /// How many answers are held, all directions together (expired ones included until they
    /// are dropped).
    pub fn len(&self) -> usize {
        self.sids.entries.len() + self.users.entries.len() + self.groups.entries.len()
    }

    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    /// Forgets every answer.
    pub fn clear(&mut self) {
        self.sids.entries.clear();
        self.users.entries.clear();
        self.groups.entries.clear();
    }

    pub fn sid_to_unix(&mut self, sid: &Sid, now: Instant, times: &IdCacheTimes) -> Option<Result<UnixId, IdMapError>> {
        self.sids.get(sid, now, times)
    }

    pub fn uid_to_sid(&mut self, uid: u32, now: Instant, times: &IdCacheTimes) -> Option<Result<Sid, IdMapError>> {
        self.users.get(&uid, now, times)
    }

    pub fn gid_to_sid(&mut self, gid: u32, now: Instant, times: &IdCacheTimes) -> Option<Result<Sid, IdMapError>> {
        self.groups.get(&gid, now, times)
    }

    /// Remembers `answer` (looked up at `now`), if `times` allow it.
    pub fn put_sid(&mut self, sid: &Sid, answer: &Result<UnixId, IdMapError>, now: Instant, times: &IdCacheTimes) {
        self.sids.insert(sid.clone(), answer.clone(), now, times, self.capacity);
    }

    pub fn put_uid(&mut self, uid: u32, answer: &Result<Sid, IdMapError>, now: Instant, times: &IdCacheTimes) {
        self.users.insert(uid, answer.clone(), now, times, self.capacity);
    }

    pub fn put_gid(&mut self, gid: u32, answer: &Result<Sid, IdMapError>, now: Instant, times: &IdCacheTimes) {
        self.groups.insert(gid, answer.clone(), now, times, self.capacity);
    }
}

impl Default for IdCache {
    fn default() -> Self {
        IdCache::new(IdCache::DEFAULT_CAPACITY)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const SEC: Duration = Duration::from_secs(1);

    fn times(positive: u64, negative: u64) -> IdCacheTimes {
        IdCacheTimes::new(Duration::from_secs(positive), Duration::from_secs(negative))
    }

    fn user(rid: u32) -> Sid {
        Sid::new(5, &[21, 1, 2, 3, rid]).unwrap()
    }

    #[test]
    fn answers_are_used_until_they_expire() {
        let (mut cache, t, now) = (IdCache::default(), times(60, 10), Instant::now());
        assert_eq!(cache.uid_to_sid(1000, now, &t), None);
        cache.put_uid(1000, &Ok(user(1000)), now, &t);
        cache.put_gid(100, &Ok(user(513)), now, &t);
        cache.put_sid(&user(1000), &Ok(UnixId::Uid(1000)), now, &t);
        assert_eq!(cache.uid_to_sid(1000, now + 59 * SEC, &t), Some(Ok(user(1000))));
        assert_eq!(cache.gid_to_sid(100, now + 59 * SEC, &t), Some(Ok(user(513))));
        assert_eq!(cache.sid_to_unix(&user(1000), now + 59 * SEC, &t), Some(Ok(UnixId::Uid(1000))));
        // uid and gid answers are kept apart.
        assert_eq!(cache.gid_to_sid(1000, now, &t), None);
        assert_eq!(cache.uid_to_sid(1000, now + 60 * SEC, &t), None);
        assert_eq!(cache.sid_to_unix(&user(1000), now + 61 * SEC, &t), None);
    }

    #[test]
    fn no_mapping_is_remembered_for_the_shorter_time_and_keeps_its_error() {
        let (mut cache, t, now) = (IdCache::default(), times(60, 10), Instant::now());
        cache.put_uid(4242, &Err(IdMapError::UidNotMapped(4242)), now, &t);
        cache.put_sid(&user(7), &Err(IdMapError::SidNotMapped(user(7))), now, &t);
        let got = cache.uid_to_sid(4242, now + 9 * SEC, &t).unwrap().unwrap_err();
        assert_eq!(got.to_string(), IdMapError::UidNotMapped(4242).to_string());
        assert_eq!(cache.sid_to_unix(&user(7), now + 9 * SEC, &t), Some(Err(IdMapError::SidNotMapped(user(7)))));
        assert_eq!(cache.uid_to_sid(4242, now + 10 * SEC, &t), None);
        assert_eq!(cache.sid_to_unix(&user(7), now + 10 * SEC, &t), None);
    }

    #[test]
    fn negative_time_never_exceeds_positive_time() {
        let t = times(5, 120);
        assert_eq!(t.negative, 5 * SEC);
        let (mut cache, now) = (IdCache::default(), Instant::now());
        cache.put_gid(7, &Err(IdMapError::GidNotMapped(7)), now, &t);
        assert!(cache.gid_to_sid(7, now + 4 * SEC, &t).is_some());
        assert_eq!(cache.gid_to_sid(7, now + 5 * SEC, &t), None);
    }

    #[test]
    fn backend_failures_are_never_remembered() {
        let (mut cache, t, now) = (IdCache::default(), times(60, 60), Instant::now());
        let failure = IdMapError::Backend { backend: "winbind".into(), subject: "uid 1".into(), reason: "down".into() };
        cache.put_uid(1, &Err(failure), now, &t);
        assert!(cache.is_empty());
        assert_eq!(cache.uid_to_sid(1, now, &t), None);
    }

    #[test]
    fn off_remembers_nothing_and_ignores_what_others_left() {
        let (mut cache, now) = (IdCache::default(), Instant::now());
        cache.put_uid(1, &Ok(user(1)), now, &IdCacheTimes::OFF);
        assert!(cache.is_empty());
        // Another share (with a cache time) looked uid 2 up; a share with none does not use it.
        cache.put_uid(2, &Ok(user(2)), now, &times(60, 10));
        assert_eq!(cache.uid_to_sid(2, now, &IdCacheTimes::OFF), None);
        assert!(IdCacheTimes::OFF.is_off());
        // A share with a shorter time sees the answer expire sooner.
        cache.put_uid(3, &Ok(user(3)), now, &times(60, 10));
        assert_eq!(cache.uid_to_sid(3, now + 2 * SEC, &times(1, 1)), None);
    }

    #[test]
    fn an_entry_stamped_after_the_callers_now_counts_as_fresh() {
        let (mut cache, t, now) = (IdCache::default(), times(60, 10), Instant::now());
        cache.put_uid(1, &Ok(user(1)), now + SEC, &t);
        assert_eq!(cache.uid_to_sid(1, now, &t), Some(Ok(user(1))));
    }

    #[test]
    fn each_direction_is_bounded() {
        let (mut cache, t, now) = (IdCache::new(4), times(60, 10), Instant::now());
        for uid in 0..4 {
            cache.put_uid(uid, &Ok(user(uid)), now, &t);
        }
        assert_eq!(cache.len(), 4);
        // Replacing a held key needs no room.
        cache.put_uid(3, &Ok(user(33)), now, &t);
        assert_eq!(cache.len(), 4);
        // Full and nothing expired: everything of that direction goes, then the new answer.
        cache.put_uid(4, &Ok(user(4)), now, &t);
        assert_eq!(cache.len(), 1);
        assert_eq!(cache.uid_to_sid(4, now, &t), Some(Ok(user(4))));
        assert_eq!(cache.uid_to_sid(0, now, &t), None);
        // Other directions are not touched.
        cache.put_gid(9, &Ok(user(9)), now, &t);
        for uid in 10..13 {
            cache.put_uid(uid, &Ok(user(uid)), now, &t);
        }
        assert_eq!(cache.len(), 5);
        cache.put_uid(20, &Ok(user(20)), now, &t);
        assert_eq!(cache.gid_to_sid(9, now, &t), Some(Ok(user(9))));
        for count in 0..10_000u32 {
            cache.put_uid(100 + count, &Ok(user(count)), now, &t);
            assert!(cache.len() <= 4 + 1);
        }
    }

    #[test]
    fn a_full_direction_drops_expired_answers_first() {
        let (mut cache, t, now) = (IdCache::new(3), times(60, 10), Instant::now());
        cache.put_uid(1, &Err(IdMapError::UidNotMapped(1)), now, &t);
        cache.put_uid(2, &Ok(user(2)), now, &t);
        cache.put_uid(3, &Ok(user(3)), now, &t);
        // At +30 s the negative answer for uid 1 has expired: it goes, the others stay.
        let later = now + 30 * SEC;
        cache.put_uid(4, &Ok(user(4)), later, &t);
        assert_eq!(cache.len(), 3);
        assert_eq!(cache.uid_to_sid(2, later, &t), Some(Ok(user(2))));
        assert_eq!(cache.uid_to_sid(4, later, &t), Some(Ok(user(4))));
    }

    #[test]
    fn clear_forgets_everything() {
        let (mut cache, t, now) = (IdCache::default(), times(60, 10), Instant::now());
        cache.put_uid(1, &Ok(user(1)), now, &t);
        cache.put_sid(&user(1), &Ok(UnixId::Both(1)), now, &t);
        cache.clear();
        assert!(cache.is_empty());
    }
}
