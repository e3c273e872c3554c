//! What the kernel says about a lease on an open file description, read without `fcntl`.
//!
//! Taking, releasing and querying a lease is `fcntl(F_SETLEASE / F_GETLEASE)`, and break
//! notification needs `fcntl(F_SETSIG)`: those are in [`super::fcntl`], one of the two
//! modules of the crate allowed `unsafe`.
//!
//! What *is* readable safely is `/proc/<pid>/fdinfo/<fd>`: since Linux 4.x its `lock:` lines
//! list every lock and lease whose owner is that open file description, and for a lease under
//! a pending break the type printed is the break target, exactly what `F_GETLEASE` returns
//! (checked on this machine's 6.18 kernel by `tests/lease_kernel.rs`). The daemon can use it
//! to audit its own descriptions, and the tests use it to check what another process holds.
use std::fmt;
use std::io;
use std::os::fd::{AsRawFd, BorrowedFd};

/// A kernel lease type, as `F_SETLEASE` takes it and `F_GETLEASE` reports it.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub enum LeaseType {
    /// `F_RDLCK`: broken by an open for writing or a truncate.
    Read,
    /// `F_WRLCK`: broken by any open or truncate.
    Write,
}

/// The kernel ABI values (`<asm-generic/fcntl.h>`): note that `F_RDLCK` is 0.
pub const F_RDLCK: i32 = 0;
pub const F_WRLCK: i32 = 1;
pub const F_UNLCK: i32 = 2;

impl LeaseType {
    /// The `F_SETLEASE` argument for this type.
    pub fn to_raw(self) -> i32 {
        match self {
            LeaseType::Read => F_RDLCK,
            LeaseType::Write => F_WRLCK,
        }
    }

    /// Decodes an `F_GETLEASE` result: `None` for `F_UNLCK`, an error for anything else.
    pub fn from_raw(raw: i32) -> Result<Option<LeaseType>, UnknownLeaseType> {
        match raw {
            F_RDLCK => Ok(Some(LeaseType::Read)),
            F_WRLCK => Ok(Some(LeaseType::Write)),
            F_UNLCK => Ok(None),
            other => Err(UnknownLeaseType(other)),
        }
    }
}

/// An `F_GETLEASE` value that is none of `F_RDLCK`, `F_WRLCK`, `F_UNLCK`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
#[error("unknown kernel lease type {0}")]
pub struct UnknownLeaseType(pub i32);

/// The lease state of one open file description.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum LeaseState {
    /// No lease on this description.
    Unleased,
    /// A lease that nobody is breaking.
    Held(LeaseType),
    /// A break is pending: the holder must go down to `target` (`None` = give the lease up)
    /// before the breaker's open proceeds (or `lease-break-time` expires).
    Breaking { target: Option<LeaseType> },
}

/// A `/proc/<pid>/fdinfo/<fd>` text that does not have the expected shape.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum FdinfoError {
    #[error("fdinfo lease line has an unknown state {0:?}")]
    UnknownState(String),
    #[error("fdinfo lease line has an unknown type {0:?}")]
    UnknownType(String),
    #[error("fdinfo lease line is truncated: {0:?}")]
    Truncated(String),
    #[error("fdinfo lists more than one lease for one open file description")]
    SeveralLeases,
}

/// Parses the `lock:` lines of an fdinfo text into the description's lease state.
///
/// A lease line reads `lock:\t1: LEASE  ACTIVE    WRITE 7989 fe:00:10010633 0 EOF`; the
/// state word is `ACTIVE` or `BREAKING` (`BREAKER` lines describe a waiting opener and are
/// listed under the holder's lock only in `/proc/locks`). Other lock kinds (POSIX, OFDLCK,
/// FLOCK) are ignored: they are byte-range or whole-file locks, not leases.
pub fn lease_state_from_fdinfo(text: &str) -> Result<LeaseState, FdinfoError> {
    let mut found = None;
    for line in text.lines() {
        let Some(rest) = line.strip_prefix("lock:") else {
            continue;
        };
        let mut words = rest.split_whitespace();
        // "1:" is the lock's index, "->" marks a waiter line.
        let (Some(_index), Some(kind)) = (words.next(), words.next()) else {
            return Err(FdinfoError::Truncated(line.to_string()));
        };
        if kind != "LEASE" {
            continue;
        }
        let (Some(state), Some(type_word)) = (words.next(), words.next()) else {
            return Err(FdinfoError::Truncated(line.to_string()));
        };
        let lease_type = match type_word {
            "READ" => Some(LeaseType::Read),
            "WRITE" => Some(LeaseType::Write),
            "UNLCK" => None,
            other => return Err(FdinfoError::UnknownType(other.to_string())),
        };
        let parsed = match (state, lease_type) {
            ("ACTIVE", Some(held)) => LeaseState::Held(held),
            ("BREAKING", target) => LeaseState::Breaking { target },
            // A waiter shows up as BREAKER only in /proc/locks, never in the holder's fdinfo.
            (other, _) => return Err(FdinfoError::UnknownState(other.to_string())),
        };
        if found.replace(parsed).is_some() {
            return Err(FdinfoError::SeveralLeases);
        }
    }
    Ok(found.unwrap_or(LeaseState::Unleased))
}

/// The lease state of the open file description behind `fd` in this process.
pub fn lease_state(fd: BorrowedFd<'_>) -> io::Result<LeaseState> {
    lease_state_of(std::process::id(), fd.as_raw_fd())
}

/// The lease state of the open file description behind descriptor `fd` of process `pid`
/// (needs ptrace-read access to that process, as `/proc/<pid>/fdinfo` does).
pub fn lease_state_of(pid: u32, fd: i32) -> io::Result<LeaseState> {
    let text = std::fs::read_to_string(format!("/proc/{pid}/fdinfo/{fd}"))?;
    lease_state_from_fdinfo(&text)
        .map_err(|error| io::Error::new(io::ErrorKind::InvalidData, error))
}

impl fmt::Display for LeaseType {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            LeaseType::Read => "read",
            LeaseType::Write => "write",
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn raw_values_round_trip_and_unknown_values_are_refused() {
        for lease in [LeaseType::Read, LeaseType::Write] {
            assert_eq!(LeaseType::from_raw(lease.to_raw()), Ok(Some(lease)));
        }
        assert_eq!(LeaseType::from_raw(F_UNLCK), Ok(None));
        assert_eq!(LeaseType::from_raw(3), Err(UnknownLeaseType(3)));
    }

    #[test]
    fn fdinfo_lines_as_printed_by_linux_6_18() {
        let active = "pos:\t0\nflags:\t02120002\nmnt_id:\t27\nino:\t10010633\n\
                      lock:\t1: LEASE  ACTIVE    WRITE 7989 fe:00:10010633 0 EOF\n";
        assert_eq!(
            lease_state_from_fdinfo(active),
            Ok(LeaseState::Held(LeaseType::Write))
        );
        let breaking = "lock:\t1: LEASE  BREAKING  READ 7989 fe:00:10010633 0 EOF\n";
        assert_eq!(
            lease_state_from_fdinfo(breaking),
            Ok(LeaseState::Breaking {
                target: Some(LeaseType::Read)
            })
        );
        let to_none = "lock:\t1: LEASE  BREAKING  UNLCK 7989 fe:00:10010633 0 EOF\n";
        assert_eq!(
            lease_state_from_fdinfo(to_none),
            Ok(LeaseState::Breaking { target: None })
        );
        let no_lock = "pos:\t0\nflags:\t02100002\nmnt_id:\t27\nino:\t10010633\n";
        assert_eq!(lease_state_from_fdinfo(no_lock), Ok(LeaseState::Unleased));
    }

    #[test]
    fn other_lock_kinds_are_not_leases_and_odd_lines_are_errors() {
        let posix = "lock:\t1: POSIX  ADVISORY  WRITE 7936 fe:00:10100763 0 EOF\n\
                     lock:\t2: OFDLCK ADVISORY  READ -1 fe:00:10100763 0 3\n";
        assert_eq!(lease_state_from_fdinfo(posix), Ok(LeaseState::Unleased));
        assert!(matches!(
            lease_state_from_fdinfo("lock:\t1: LEASE  ACTIVE\n"),
            Err(FdinfoError::Truncated(_))
        ));
        assert!(matches!(
            lease_state_from_fdinfo("lock:\t1: LEASE  ACTIVE    UNLCK 1 0:0:1 0 EOF\n"),
            Err(FdinfoError::UnknownState(_))
        ));
        assert!(matches!(
            lease_state_from_fdinfo("lock:\t1: LEASE  ACTIVE    RW 1 0:0:1 0 EOF\n"),
            Err(FdinfoError::UnknownType(_))
        ));
        let twice = "lock:\t1: LEASE  ACTIVE    READ 1 0:0:1 0 EOF\n\
                     lock:\t2: LEASE  ACTIVE    READ 1 0:0:1 0 EOF\n";
        assert_eq!(
            lease_state_from_fdinfo(twice),
            Err(FdinfoError::SeveralLeases)
        );
    }
}
