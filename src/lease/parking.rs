//! Parked descriptions, the policy (`docs/lease-bridge.md`, "Parked descriptions"): which
//! closing SMB opens an smbd process keeps with their bridge description, and when a new open
//! of the same file may take one over without asking the bridge. `module/src/lease.rs` keeps
//! the descriptors and follows these rules.
use std::time::Duration;

use super::kernel::LeaseType;
use super::table::{caching_backed_by, Caching, GrantKind};

/// How long a closed open's description is kept for the next open of the file.
pub const PARK_LINGER: Duration = Duration::from_secs(2);
/// At most this many closed files are kept per process; the oldest goes first.
pub const PARK_MAX: usize = 64;

/// What the module knows of an open that is closing.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ClosingOpen {
    /// What the bridge's table counts for the open (see `bridge_caching` in the module).
    pub bridge_caching: Caching,
    /// A break reached the file while the open existed.
    pub broken_into: bool,
    /// smbd settled what the create asked to cache (no provisional grant left open).
    pub grant_settled: bool,
    /// A stat open's separate description (kept only for its kernel lease).
    pub side_description: bool,
    /// The open belongs to the current connection to the bridge (not one that died).
    pub current_connection: bool,
}

/// Whether a closing open is kept. Only the last open of the file in the process, with no
/// break in progress on the file, on the current connection, whose kernel lease the bridge
/// holds: a local or NFS opener breaks that lease and so makes the process let go. Without
/// one, nothing would, and the kept description would stop others from taking a lease or
/// delegation of their own (`smb2.kernel-oplocks` 8).
pub fn may_park(open: &ClosingOpen, other_opens_of_file: bool, break_pending_on_file: bool) -> bool {
    open.current_connection
        && !open.broken_into
        && open.grant_settled
        && !open.side_description
        && !open.bridge_caching.is_none()
        && !other_opens_of_file
        && !break_pending_on_file
}

/// A kept open, as far as a takeover is concerned.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ParkedOpen<'a> {
    /// The kind the bridge counts it as (its break unit: the lease key, or its own open for
    /// an oplock).
    pub kind: Option<GrantKind>,
    pub bridge_caching: Caching,
    pub writable: bool,
    pub share_path: &'a str,
}

/// A new open of the same file in the same process.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Reopen<'a> {
    pub share_path: &'a str,
    pub want_write: bool,
    /// What the create asks to cache, and as what (none: no caching asked).
    pub asks: Option<(GrantKind, Caching)>,
}

/// What a takeover of `parked` grants `reopen` (nothing when nothing is asked), or `None` when
/// the open must ask the bridge. `kernel_lease` reads the description's kernel lease
/// (`F_GETLEASE`: the break target once a break started; `None` when it cannot be read) and is
/// called only when caching is asked. The takeover never grants less than asked: an open that
/// cannot have all of it asks the bridge, which may do better.
pub fn takeover(
    parked: &ParkedOpen<'_>,
    reopen: &Reopen<'_>,
    kernel_lease: impl FnOnce() -> Option<Option<LeaseType>>,
) -> Option<Caching> {
    if parked.share_path != reopen.share_path || (reopen.want_write && !parked.writable) {
        return None;
    }
    let Some((kind, asked)) = reopen.asks.filter(|(_, asked)| !asked.is_none()) else {
        return Some(Caching::NONE);
    };
    // The same break unit: a break the bridge sends for the parked open reaches this one.
    if parked.kind != Some(kind) {
        return None;
    }
    let backed = parked.bridge_caching.intersect(caching_backed_by(kernel_lease()?));
    asked.within(backed).then_some(asked)
}

#[cfg(test)]
mod tests {
    use super::*;

    const RWH: Caching = Caching::RWH;
    const RH: Caching = Caching::RH;
    const KEY: GrantKind = GrantKind::Lease([7; 16]);

    fn closing() -> ClosingOpen {
        ClosingOpen {
            bridge_caching: RWH,
            broken_into: false,
            grant_settled: true,
            side_description: false,
            current_connection: true,
        }
    }

    fn parked(kind: GrantKind, caching: Caching) -> ParkedOpen<'static> {
        ParkedOpen { kind: Some(kind), bridge_caching: caching, writable: true, share_path: "/srv/a" }
    }

    fn reopen(asks: Option<(GrantKind, Caching)>) -> Reopen<'static> {
        Reopen { share_path: "/srv/a", want_write: false, asks }
    }

    fn write_lease() -> Option<Option<LeaseType>> {
        Some(Some(LeaseType::Write))
    }

    #[test]
    fn only_a_last_open_with_a_kernel_lease_and_no_break_is_parked() {
        assert!(may_park(&closing(), false, false));
        assert!(!may_park(&closing(), true, false));
        assert!(!may_park(&closing(), false, true));
        for open in [
            ClosingOpen { bridge_caching: Caching::NONE, ..closing() },
            ClosingOpen { broken_into: true, ..closing() },
            ClosingOpen { grant_settled: false, ..closing() },
            ClosingOpen { side_description: true, ..closing() },
            ClosingOpen { current_connection: false, ..closing() },
        ] {
            assert!(!may_park(&open, false, false), "{open:?}");
        }
    }

    #[test]
    fn the_same_lease_key_takes_over_what_the_parked_open_and_the_kernel_lease_back() {
        let p = parked(KEY, RWH);
        assert_eq!(takeover(&p, &reopen(Some((KEY, RWH))), write_lease), Some(RWH));
        assert_eq!(takeover(&p, &reopen(Some((KEY, RH))), write_lease), Some(RH));
        // Another key is another break unit: the bridge must be asked.
        assert_eq!(takeover(&p, &reopen(Some((GrantKind::Lease([8; 16]), RH))), write_lease), None);
        assert_eq!(takeover(&p, &reopen(Some((GrantKind::Oplock, RH))), write_lease), None);
        let oplock = parked(GrantKind::Oplock, RWH);
        assert_eq!(takeover(&oplock, &reopen(Some((GrantKind::Oplock, RWH))), write_lease), Some(RWH));
    }

    #[test]
    fn nothing_above_the_table_or_the_kernel_lease_now() {
        // The table counts RH for it (a write lease held for someone else backs no W here).
        assert_eq!(takeover(&parked(KEY, RH), &reopen(Some((KEY, RWH))), write_lease), None);
        // A break started: F_GETLEASE answers its target.
        assert_eq!(takeover(&parked(KEY, RWH), &reopen(Some((KEY, RWH))), || Some(Some(LeaseType::Read))), None);
        assert_eq!(takeover(&parked(KEY, RWH), &reopen(Some((KEY, RH))), || Some(Some(LeaseType::Read))), Some(RH));
        assert_eq!(takeover(&parked(KEY, RWH), &reopen(Some((KEY, RH))), || Some(None)), None);
        // Unreadable: ask the bridge.
        assert_eq!(takeover(&parked(KEY, RWH), &reopen(Some((KEY, RH))), || None), None);
    }

    #[test]
    fn an_open_without_caching_needs_only_the_share_and_the_access() {
        let never = || -> Option<Option<LeaseType>> { panic!("the kernel lease is not read when nothing is asked") };
        let p = parked(KEY, RWH);
        assert_eq!(takeover(&p, &reopen(None), never), Some(Caching::NONE));
        assert_eq!(takeover(&p, &reopen(Some((GrantKind::Oplock, Caching::NONE))), never), Some(Caching::NONE));
        assert_eq!(takeover(&p, &Reopen { want_write: true, ..reopen(None) }, never), Some(Caching::NONE));
        let read_only = ParkedOpen { writable: false, ..p.clone() };
        assert_eq!(takeover(&read_only, &Reopen { want_write: true, ..reopen(None) }, never), None);
        let other_share = ParkedOpen { share_path: "/srv/b", ..p };
        assert_eq!(takeover(&other_share, &reopen(None), never), None);
    }
}
