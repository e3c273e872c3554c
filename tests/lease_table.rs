//! The lease table's rules, by example and under random operation sequences.
use std::collections::BTreeMap;
use std::time::Duration;

use nfsbridge::lease::kernel::LeaseType;
use nfsbridge::lease::table::{
    caching_backed_by, BreakProgress, BreakUnit, Caching, GrantKind, Holder, InodeKey,
    KernelAction, LeaseTable, OpenId, TableError,
};
use proptest::prelude::*;

const INODE: InodeKey = InodeKey {
    dev: 0xfe00,
    ino: 42,
};
const BREAK_TIMEOUT: Duration = Duration::from_secs(35);

fn holder(smbd_pid: u32, file_id: u64, kind: GrantKind, caching: Caching) -> Holder {
    Holder {
        open: OpenId { smbd_pid, file_id },
        share_path: "/srv/share".to_string(),
        client_address: "ipv4:127.0.0.2:50000".to_string(),
        server_address: "ipv4:127.0.0.1:445".to_string(),
        kind,
        caching,
    }
}

fn table_with_description(writable: bool) -> LeaseTable<&'static str> {
    let mut table = LeaseTable::new();
    table
        .description_or_open(INODE, || Ok::<_, ()>(("shared description", writable)))
        .unwrap();
    table
}

fn always_alive(_: u32) -> bool {
    true
}

#[test]
fn several_handles_of_one_lease_are_broken_and_acknowledged_once() {
    let mut table = table_with_description(true);
    let key = [7u8; 16];
    let mut taken = Vec::new();
    for file_id in [1, 2] {
        let grant = table
            .grant(
                INODE,
                holder(100, file_id, GrantKind::Lease(key), Caching::RWH),
                |_, lease| {
                    taken.push(lease);
                    true
                },
            )
            .unwrap();
        assert_eq!(grant.caching, Caching::RWH);
        assert_eq!(grant.kernel_lease, Some(LeaseType::Write));
    }
    assert_eq!(
        taken,
        [LeaseType::Write],
        "the second handle reuses the lease"
    );

    // A local reader: the description is O_RDWR, so the kernel forces a break to none.
    let start = table
        .start_break(INODE, Some(LeaseType::Read), Duration::ZERO, always_alive)
        .unwrap();
    assert_eq!(
        start.notify.len(),
        1,
        "one notice per lease, not per handle"
    );
    assert_eq!(
        start.notify[0].unit,
        BreakUnit::Lease { smbd_pid: 100, key }
    );
    assert_eq!(start.notify[0].break_to, Caching::NONE);
    assert_eq!(start.completed, None);
    assert_eq!(
        table.entry(INODE).unwrap().kernel_lease(),
        Some(LeaseType::Write),
        "kept until acked"
    );

    let unit = BreakUnit::Lease { smbd_pid: 100, key };
    assert_eq!(
        table.acknowledge(INODE, unit, Caching::R),
        Err(TableError::AckAboveTarget {
            acked: Caching::R,
            target: Caching::NONE
        })
    );
    assert_eq!(
        table.acknowledge(INODE, unit, Caching::NONE),
        Ok(BreakProgress::Completed(Some(KernelAction::Release)))
    );
    let entry = table.entry(INODE).unwrap();
    assert_eq!(entry.kernel_lease(), None);
    assert!(entry
        .holders()
        .all(|holder| holder.caching == Caching::NONE));
}

#[test]
fn read_only_description_keeps_read_caching_through_a_reader_break() {
    let mut table = table_with_description(false);
    let grant = table
        .grant(
            INODE,
            holder(100, 1, GrantKind::Oplock, Caching::RWH),
            |_, _| true,
        )
        .unwrap();
    assert_eq!(grant.kernel_lease, Some(LeaseType::Write));
    let start = table
        .start_break(INODE, Some(LeaseType::Read), Duration::ZERO, always_alive)
        .unwrap();
    assert_eq!(
        start.notify[0].break_to,
        Caching::RH,
        "a reader leaves read and handle caching"
    );
    let unit = start.notify[0].unit;
    assert_eq!(
        table.acknowledge(INODE, unit, Caching::R),
        Ok(BreakProgress::Completed(Some(KernelAction::Set(
            LeaseType::Read
        ))))
    );
}

#[test]
fn refused_kernel_lease_grants_no_caching() {
    let mut table = table_with_description(true);
    let grant = table
        .grant(
            INODE,
            holder(100, 1, GrantKind::Oplock, Caching::RWH),
            |_, _| false,
        )
        .unwrap();
    assert_eq!(
        grant.caching,
        Caching::NONE,
        "a grant never outruns its kernel lease"
    );
    assert_eq!(grant.kernel_lease, None);
}

#[test]
fn a_client_that_never_acknowledges_loses_its_caching_at_the_timeout() {
    let mut table = table_with_description(true);
    table
        .grant(
            INODE,
            holder(100, 1, GrantKind::Oplock, Caching::RW),
            |_, _| true,
        )
        .unwrap();
    table
        .grant(
            INODE,
            holder(200, 1, GrantKind::Oplock, Caching::R),
            |_, _| true,
        )
        .unwrap();
    let start = table
        .start_break(INODE, None, Duration::from_secs(10), always_alive)
        .unwrap();
    assert_eq!(start.notify.len(), 2);
    let first = BreakUnit::Oplock(OpenId {
        smbd_pid: 100,
        file_id: 1,
    });
    assert_eq!(
        table.acknowledge(INODE, first, Caching::NONE),
        Ok(BreakProgress::Waiting { remaining: 1 })
    );
    assert!(
        table
            .expire_breaks(Duration::from_secs(44), BREAK_TIMEOUT)
            .is_empty(),
        "not yet"
    );
    let expired = table.expire_breaks(Duration::from_secs(45), BREAK_TIMEOUT);
    assert_eq!(expired.len(), 1);
    assert_eq!(expired[0].revoked.len(), 1);
    assert_eq!(
        expired[0].revoked[0].unit,
        BreakUnit::Oplock(OpenId {
            smbd_pid: 200,
            file_id: 1
        })
    );
    assert_eq!(expired[0].kernel, Some(KernelAction::Release));
    assert!(table.entry(INODE).unwrap().pending_break().is_none());
}

#[test]
fn opens_of_dead_smbds_are_dropped_and_finish_the_break() {
    let mut table = table_with_description(true);
    table
        .grant(
            INODE,
            holder(100, 1, GrantKind::Oplock, Caching::RWH),
            |_, _| true,
        )
        .unwrap();
    table
        .start_break(INODE, None, Duration::ZERO, always_alive)
        .unwrap();
    let actions = table.reap_dead(|pid| pid != 100);
    assert_eq!(actions, [(INODE, Some(KernelAction::Release))]);
    let unused = table.take_unused_descriptions();
    assert_eq!(unused, [(INODE, "shared description")]);
    assert!(table.entry(INODE).is_none());

    // A dead smbd's opens are not even asked when a break starts.
    let mut table = table_with_description(true);
    table
        .grant(
            INODE,
            holder(100, 1, GrantKind::Oplock, Caching::RWH),
            |_, _| true,
        )
        .unwrap();
    let start = table
        .start_break(INODE, None, Duration::ZERO, |pid| pid != 100)
        .unwrap();
    assert!(start.notify.is_empty());
    assert_eq!(start.completed, Some(Some(KernelAction::Release)));
}

#[test]
fn the_last_close_hands_back_the_description_and_the_lease() {
    let mut table = table_with_description(true);
    table
        .grant(
            INODE,
            holder(100, 1, GrantKind::Oplock, Caching::RWH),
            |_, _| true,
        )
        .unwrap();
    table
        .grant(
            INODE,
            holder(100, 2, GrantKind::Oplock, Caching::NONE),
            |_, _| true,
        )
        .unwrap();
    let first = table
        .close_open(
            INODE,
            OpenId {
                smbd_pid: 100,
                file_id: 1,
            },
        )
        .unwrap();
    assert_eq!(
        first.kernel,
        Some(KernelAction::Release),
        "nobody caches any more"
    );
    assert!(
        first.closed_description.is_none(),
        "another open still uses the description"
    );
    let last = table
        .close_open(
            INODE,
            OpenId {
                smbd_pid: 100,
                file_id: 2,
            },
        )
        .unwrap();
    assert_eq!(last.closed_description, Some("shared description"));
    assert!(table.entry(INODE).is_none());
}

#[test]
fn an_open_without_caching_keeps_the_description_until_it_closes() {
    let mut table = table_with_description(true);
    let plain = OpenId {
        smbd_pid: 100,
        file_id: 1,
    };
    table.add_open(INODE, plain).unwrap();
    table
        .grant(
            INODE,
            holder(200, 2, GrantKind::Oplock, Caching::RWH),
            |_, _| true,
        )
        .unwrap();
    let cached = table
        .close_open(
            INODE,
            OpenId {
                smbd_pid: 200,
                file_id: 2,
            },
        )
        .unwrap();
    assert_eq!(cached.kernel, Some(KernelAction::Release));
    assert!(
        cached.closed_description.is_none(),
        "the plain open still uses the description"
    );
    assert_eq!(
        table.entry(INODE).unwrap().opens().collect::<Vec<_>>(),
        vec![&plain]
    );
    let last = table.close_open(INODE, plain).unwrap();
    assert_eq!(last.kernel, None);
    assert_eq!(last.closed_description, Some("shared description"));
    assert_eq!(
        table.close_open(INODE, plain).unwrap_err(),
        TableError::UnknownInode(INODE)
    );

    // An smbd that dies takes its plain opens with it.
    let mut table = table_with_description(false);
    table.add_open(INODE, plain).unwrap();
    assert_eq!(table.reap_dead(|pid| pid != 100), vec![(INODE, None)]);
    assert_eq!(
        table.take_unused_descriptions(),
        vec![(INODE, "shared description")]
    );
}

/// One step of a random history of the bridge.
#[derive(Debug, Clone)]
enum Step {
    Grant {
        inode: u8,
        pid: u8,
        file: u8,
        lease_key: Option<u8>,
        caching: u8,
        kernel_agrees: bool,
    },
    Open {
        inode: u8,
        pid: u8,
        file: u8,
    },
    Close {
        inode: u8,
        pid: u8,
        file: u8,
    },
    KernelBreak {
        inode: u8,
        to_read: bool,
    },
    Acknowledge {
        inode: u8,
        pick: u8,
        caching: u8,
    },
    Tick {
        seconds: u8,
    },
    SmbdDies {
        pid: u8,
    },
}

fn caching_from(bits: u8) -> Caching {
    Caching {
        read: bits & 1 != 0,
        write: bits & 2 != 0,
        handle: bits & 4 != 0,
    }
}

fn steps() -> impl Strategy<Value = Vec<Step>> {
    let step = prop_oneof![
        4 => (0..2u8, 0..3u8, 0..3u8, proptest::option::of(0..2u8), 0..8u8, any::<bool>()).prop_map(
            |(inode, pid, file, lease_key, caching, kernel_agrees)| Step::Grant {
                inode, pid, file, lease_key, caching, kernel_agrees
            }
        ),
        1 => (0..2u8, 0..3u8, 0..3u8).prop_map(|(inode, pid, file)| Step::Open { inode, pid, file }),
        2 => (0..2u8, 0..3u8, 0..3u8).prop_map(|(inode, pid, file)| Step::Close { inode, pid, file }),
        2 => (0..2u8, any::<bool>()).prop_map(|(inode, to_read)| Step::KernelBreak { inode, to_read }),
        3 => (0..2u8, any::<u8>(), 0..8u8)
            .prop_map(|(inode, pick, caching)| Step::Acknowledge { inode, pick, caching }),
        1 => (0..40u8).prop_map(|seconds| Step::Tick { seconds }),
        1 => (0..3u8).prop_map(|pid| Step::SmbdDies { pid }),
    ];
    proptest::collection::vec(step, 1..60)
}

fn inode(n: u8) -> InodeKey {
    InodeKey {
        dev: 1,
        ino: n as u64,
    }
}

/// No holder caches more than the kernel lease on its description backs.
fn assert_no_unbacked_caching(table: &LeaseTable<u8>) {
    for (inode, entry) in table.inodes() {
        let backed = caching_backed_by(entry.kernel_lease());
        for holder in entry.holders() {
            assert!(
                holder.caching.within(backed),
                "{inode:?}: {:?} caches {:?} with kernel lease {:?}",
                holder.open,
                holder.caching,
                entry.kernel_lease()
            );
        }
    }
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 400, ..ProptestConfig::default() })]

    #[test]
    fn no_lease_is_dropped_under_a_caching_holder_and_every_break_ends(history in steps()) {
        let mut table: LeaseTable<u8> = LeaseTable::new();
        let mut now = Duration::ZERO;
        let mut dead = [false; 3];
        // What the kernel asked for in the break pending on each inode.
        let mut kernel_targets: BTreeMap<InodeKey, Option<LeaseType>> = BTreeMap::new();
        for step in history {
            let snapshot = dead;
            let alive = move |pid: u32| !snapshot[pid as usize];
            match step {
                Step::Grant { inode: n, pid, file, lease_key, caching, kernel_agrees } => {
                    if dead[pid as usize] { continue; }
                    table.description_or_open(inode(n), || Ok::<_, ()>((n, n == 0))).unwrap();
                    let kind = lease_key.map_or(GrantKind::Oplock, |key| GrantKind::Lease([key; 16]));
                    let asked = caching_from(caching);
                    let grant = table.grant(inode(n), holder(pid as u32, file as u64, kind, asked), |_, _| kernel_agrees).unwrap();
                    prop_assert!(grant.caching.within(asked), "never more than asked");
                }
                Step::Open { inode: n, pid, file } => {
                    if dead[pid as usize] { continue; }
                    table.description_or_open(inode(n), || Ok::<_, ()>((n, n == 0))).unwrap();
                    table.add_open(inode(n), OpenId { smbd_pid: pid as u32, file_id: file as u64 }).unwrap();
                }
                Step::Close { inode: n, pid, file } => {
                    let _ = table.close_open(inode(n), OpenId { smbd_pid: pid as u32, file_id: file as u64 });
                }
                Step::KernelBreak { inode: n, to_read } => {
                    let Some(entry) = table.entry(inode(n)) else { continue };
                    // The kernel only breaks a lease that exists, to something weaker.
                    let target = match (entry.kernel_lease(), to_read) {
                        (None, _) => continue,
                        (Some(LeaseType::Write), true) => Some(LeaseType::Read),
                        _ => None,
                    };
                    let start = table.start_break(inode(n), target, now, alive).unwrap();
                    let merged = kernel_targets.get(&inode(n)).copied().map_or(target, |t| t.min(target));
                    kernel_targets.insert(inode(n), merged);
                    for notice in &start.notify {
                        prop_assert!(notice.break_to.within(notice.current));
                        prop_assert!(!notice.current.within(notice.break_to));
                    }
                }
                Step::Acknowledge { inode: n, pick, caching } => {
                    let Some(pending) = table.entry(inode(n)).and_then(|entry| entry.pending_break()) else { continue };
                    let waiting: Vec<BreakUnit> = pending.waiting.iter().copied().collect();
                    if waiting.is_empty() { continue; }
                    let unit = waiting[pick as usize % waiting.len()];
                    let acked = caching_from(caching);
                    let target = pending.smb_target;
                    match table.acknowledge(inode(n), unit, acked) {
                        Err(TableError::AckAboveTarget { .. }) => prop_assert!(!acked.within(target)),
                        Err(other) => prop_assert!(false, "unexpected {other:?}"),
                        Ok(_) => prop_assert!(acked.within(target)),
                    }
                }
                Step::Tick { seconds } => {
                    now += Duration::from_secs(seconds as u64);
                    table.expire_breaks(now, BREAK_TIMEOUT);
                }
                Step::SmbdDies { pid } => {
                    dead[pid as usize] = true;
                    let now_dead = dead;
                    table.reap_dead(|pid| !now_dead[pid as usize]);
                    table.take_unused_descriptions();
                }
            }
            assert_no_unbacked_caching(&table);
            // Every holder is an open: the description outlives none of them.
            for (key, entry) in table.inodes() {
                for holder in entry.holders() {
                    prop_assert!(entry.opens().any(|open| *open == holder.open), "{key:?}: holder {:?} not an open", holder.open);
                }
            }
            // A break that ended left the kernel lease at or below what the kernel asked for.
            let ended: Vec<InodeKey> = kernel_targets.keys().copied()
                .filter(|key| table.entry(*key).map_or(true, |entry| entry.pending_break().is_none()))
                .collect();
            for key in ended {
                let target = kernel_targets.remove(&key).unwrap();
                let kernel = table.entry(key).and_then(|entry| entry.kernel_lease());
                prop_assert!(kernel <= target, "{key:?}: kernel lease {kernel:?} above break target {target:?}");
            }
        }
        // Every break ends, at the latest when its timeout passes.
        table.expire_breaks(now + BREAK_TIMEOUT, BREAK_TIMEOUT);
        prop_assert!(table.inodes().all(|(_, entry)| entry.pending_break().is_none()));
        assert_no_unbacked_caching(&table);
    }
}
