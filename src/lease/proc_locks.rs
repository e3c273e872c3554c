//! Delegations held on a file, read from `/proc/locks`.
//!
//! An SMB delete, rename or attribute change of a file that nfsd (or a local `F_SETDELEG`
//! holder) has delegated makes the kernel recall the delegation and wait for it inside the
//! system call, which would stall smbd's main loop. The module looks here first: a file with a
//! delegation gets its recall started without blocking and the SMB create waits (deferred)
//! until this table no longer lists the delegation. `/proc/locks` is the only place the kernel
//! shows another holder's delegation without breaking it.
//!
//! One line per lock (fs/locks.c `lock_get_status`), e.g.
//! `3: DELEG  ACTIVE    READ  1234 fe:00:10011114 0 EOF`: id, class (`POSIX`, `FLOCK`,
//! `OFDLCK`, `LEASE`, `DELEG`, …), for leases and delegations `ACTIVE`, `BREAKING` or `BREAKER`,
//! the type (during a break: the break target), the pid, `major:minor:inode` (device numbers in
//! hex, the inode in decimal), the range. Lines of waiters start with `->` after the id.
//! Anything that does not parse is skipped: the kernel writes this file, so an unknown line is
//! a newer format, not an attack, and skipping it only costs the non-blocking recall.

/// The delegations found on a file.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Delegation {
    /// Every one of them is being recalled already (`BREAKING`): their holders were told to
    /// give them back.
    pub breaking: bool,
}

/// Who holds the file `(major, minor, inode)` in `text`, leases and delegations alike.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct Holders {
    /// `None` when the file has no delegation.
    pub delegation: Option<Delegation>,
    /// Some plain lease (`F_SETLEASE`, any holder: the lease bridge's own among them).
    pub lease: bool,
}

/// The leases and delegations on the file `(major, minor, inode)` in `text` (the contents of
/// `/proc/locks`), leaving out the delegations of holders `skip(pid)` names (smbd's own
/// directory delegations: smbd's changes are announced to them, they are never recalled this
/// way). Only the lines of this file are passed to `skip`.
pub fn holders_on_except(text: &str, major: u32, minor: u32, inode: u64, mut skip: impl FnMut(i32) -> bool) -> Holders {
    let mut holders = Holders::default();
    for line in text.lines() {
        let Some(entry) = parse_line(line) else { continue };
        if entry.device != (major, minor) || entry.inode != inode {
            continue;
        }
        if entry.class == "DELEG" && skip(entry.pid) {
            continue;
        }
        if entry.class == "LEASE" {
            holders.lease = true;
            continue;
        }
        let breaking = entry.state == "BREAKING";
        holders.delegation = Some(Delegation {
            breaking: holders.delegation.map_or(breaking, |before| before.breaking && breaking),
        });
    }
    holders
}

struct Entry<'a> {
    class: &'a str,
    state: &'a str,
    pid: i32,
    device: (u32, u32),
    inode: u64,
}

/// One lease or delegation line; `None` for locks of other classes, waiters and anything
/// that does not parse.
fn parse_line(line: &str) -> Option<Entry<'_>> {
    let mut fields = line.split_ascii_whitespace();
    let id = fields.next()?;
    if !id.ends_with(':') {
        return None;
    }
    let class = fields.next()?;
    if class != "LEASE" && class != "DELEG" {
        return None; // POSIX/FLOCK/OFDLCK locks, and "->" waiter lines
    }
    let state = fields.next()?;
    let _kind = fields.next()?; // READ, WRITE; during a break its target
    let pid = fields.next()?.parse().ok()?;
    let mut location = fields.next()?.split(':');
    let major = u32::from_str_radix(location.next()?, 16).ok()?;
    let minor = u32::from_str_radix(location.next()?, 16).ok()?;
    let inode = location.next()?.parse().ok()?;
    if location.next().is_some() {
        return None;
    }
    Some(Entry { class, state, pid, device: (major, minor), inode })
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Every holder counted.
    fn holders_on(text: &str, major: u32, minor: u32, inode: u64) -> Holders {
        holders_on_except(text, major, minor, inode, |_| false)
    }

    const SAMPLE: &str = "\
1: POSIX  ADVISORY  WRITE 611 fe:00:131 0 EOF
2: LEASE  ACTIVE    READ 20698 fe:00:10011114 0 EOF
3: DELEG  ACTIVE    READ 4242 fe:00:77 0 EOF
3: -> DELEG  ACTIVE    READ 4242 fe:00:77 0 EOF
4: DELEG  BREAKING  UNLCK 4243 103:02:88 0 EOF
5: FLOCK  ADVISORY  WRITE 9 fe:00:77 0 EOF
";

    #[test]
    fn finds_a_read_delegation_by_device_and_inode() {
        assert_eq!(
            holders_on(SAMPLE, 0xfe, 0, 77).delegation,
            Some(Delegation { breaking: false })
        );
    }

    #[test]
    fn delegations_of_skipped_holders_are_left_out() {
        let text = "3: DELEG  ACTIVE    READ 4242 fe:00:77 0 EOF\n6: DELEG  BREAKING  UNLCK 99 fe:00:77 0 EOF\n";
        let mut asked = Vec::new();
        let holders = holders_on_except(text, 0xfe, 0, 77, |pid| {
            asked.push(pid);
            pid == 4242
        });
        assert_eq!(holders.delegation, Some(Delegation { breaking: true }));
        assert_eq!(asked, vec![4242, 99]);
        assert_eq!(holders_on_except(text, 0xfe, 0, 77, |_| true).delegation, None);
        // Only the file's own lines are looked at.
        assert_eq!(holders_on_except(SAMPLE, 0xfe, 0, 131, |_| panic!("not this file's")), Holders::default());
    }

    #[test]
    fn a_lease_is_not_a_delegation() {
        // Plain leases (ours among them) are not broken by unlink, rename or setattr.
        assert_eq!(holders_on(SAMPLE, 0xfe, 0, 10011114).delegation, None);
    }

    #[test]
    fn holders_report_leases_and_delegations() {
        assert_eq!(
            holders_on(SAMPLE, 0xfe, 0, 10011114),
            Holders { delegation: None, lease: true }
        );
        assert_eq!(
            holders_on(SAMPLE, 0xfe, 0, 77),
            Holders { delegation: Some(Delegation { breaking: false }), lease: false }
        );
        assert_eq!(holders_on(SAMPLE, 0xfe, 0, 131), Holders::default()); // a POSIX lock only
    }

    #[test]
    fn device_numbers_are_hex() {
        assert_eq!(
            holders_on(SAMPLE, 0x103, 2, 88).delegation,
            Some(Delegation { breaking: true })
        );
        assert_eq!(holders_on(SAMPLE, 103, 2, 88).delegation, None);
    }

    #[test]
    fn same_inode_on_another_device_does_not_match() {
        assert_eq!(holders_on(SAMPLE, 0xfe, 1, 77).delegation, None);
    }

    #[test]
    fn several_delegations_are_breaking_only_when_all_are() {
        let text = "1: DELEG  BREAKING  READ 1 fe:00:5 0 EOF\n2: DELEG  ACTIVE    WRITE 2 fe:00:5 0 EOF\n";
        assert_eq!(
            holders_on(text, 0xfe, 0, 5).delegation,
            Some(Delegation { breaking: false })
        );
        let both_breaking = "1: DELEG  BREAKING  READ 1 fe:00:5 0 EOF\n2: DELEG  BREAKING  READ 2 fe:00:5 0 EOF\n";
        assert_eq!(
            holders_on(both_breaking, 0xfe, 0, 5).delegation,
            Some(Delegation { breaking: true })
        );
    }

    #[test]
    fn malformed_lines_are_skipped() {
        let text = "garbage\n1: DELEG\n2: DELEG ACTIVE READ 1 zz:00:5 0 EOF\n3: DELEG ACTIVE READ 1 fe:00:5:9 0 EOF\n\
                    4: DELEG ACTIVE READ 1 fe:00:x 0 EOF\n5 DELEG ACTIVE READ 1 fe:00:5 0 EOF\n";
        assert_eq!(holders_on(text, 0xfe, 0, 5).delegation, None);
    }

    proptest::proptest! {
        #[test]
        fn never_panics(text in "\\PC*", major in 0u32..300, minor in 0u32..300, inode in 0u64..100) {
            let _ = holders_on(&text, major, minor, inode);
        }
    }
}
