//! Failover controls (issue 9; `docs/failover.md`): what `nfsbridge unlock-ip`, `unlock-fs`
//! and `grace` send to the lease bridge, what the bridge asks of every smbd, and the pure rules
//! both sides apply (which address and which share a request covers, which grace periods are
//! in force). The daemon's half is `daemon::failover`, the smbd module's `module/src/failover.rs`.
use std::fmt;
use std::net::IpAddr;
use std::time::Duration;

use serde::{Deserialize, Serialize};

/// How long `unlock-ip` / `unlock-fs` wait by default for the smbds to let go.
pub const DEFAULT_RELEASE_TIMEOUT: Duration = Duration::from_secs(30);
/// nfsd's default grace time (`/proc/fs/nfsd/nfsv4gracetime`).
pub const DEFAULT_GRACE: Duration = Duration::from_secs(90);
/// The most grace periods the bridge keeps at once (they all travel in one packet).
pub const MAX_GRACE_ENTRIES: usize = 64;

/// What a release covers.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub enum ReleaseScope {
    /// Every client connection that reached this server through this local address.
    ServerAddress(String),
    /// Every client connection with a share or an open on the file system `dev` (the
    /// `st_dev` of `path`, the mount point the admin named).
    FileSystem { dev: u64, path: String },
}

impl fmt::Display for ReleaseScope {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            ReleaseScope::ServerAddress(address) => write!(f, "server address {address}"),
            ReleaseScope::FileSystem { dev, path } => {
                write!(
                    f,
                    "file system {path} (dev {}:{})",
                    dev_major(*dev),
                    dev_minor(*dev)
                )
            }
        }
    }
}

fn dev_major(dev: u64) -> u64 {
    ((dev >> 32) & 0xffff_f000) | ((dev >> 8) & 0xfff)
}

fn dev_minor(dev: u64) -> u64 {
    ((dev >> 12) & 0xffff_ff00) | (dev & 0xff)
}

/// One grace period as it travels: what is left of it when the message was sent.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct GraceEntry {
    pub address: String,
    pub path: String,
    pub remaining_ms: u64,
}

/// The outcome of `unlock-ip` / `unlock-fs`, as the bridge reports it (JSON in a memfd).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ReleaseReport {
    pub scope: String,
    /// True when every smbd in scope has ended and no caching in scope is left.
    pub complete: bool,
    pub elapsed_ms: u64,
    /// smbds asked (every smbd connected to the bridge).
    pub asked: usize,
    /// smbds that ended their client connection for this request (and are gone now).
    pub released: Vec<u32>,
    /// smbds still in the way at the timeout.
    pub remaining: Vec<RemainingSmbd>,
    /// Caching still held in scope at the timeout (holders of smbds listed above, or of smbds
    /// that said the request was not theirs).
    pub holders: Vec<RemainingHolder>,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct RemainingSmbd {
    pub smbd_pid: u32,
    /// `"no answer"` or `"still running"` (it said it is ending its connection).
    pub state: String,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct RemainingHolder {
    pub path: String,
    pub smbd_pid: u32,
    pub client_address: String,
    pub server_address: String,
    pub caching: String,
}

/// The IP in an address as smbd or an admin spells it: plain (`10.0.0.1`, `fd00::1`), an
/// IPv4-mapped IPv6 address (`::ffff:10.0.0.1`, as a dual-stack socket reports IPv4 peers), or
/// Samba's `ipv4:10.0.0.1:445` form.
pub fn ip_of(address: &str) -> Option<IpAddr> {
    let address = address.trim();
    let ip = match address
        .strip_prefix("ipv4:")
        .or_else(|| address.strip_prefix("ipv6:"))
    {
        Some(rest) => rest.rsplit_once(':')?.0.parse::<IpAddr>().ok()?,
        None => address
            .trim_start_matches('[')
            .trim_end_matches(']')
            .parse::<IpAddr>()
            .ok()?,
    };
    Some(ip.to_canonical())
}

/// Whether two addresses name the same IP (`::ffff:a.b.c.d` is `a.b.c.d`).
pub fn same_address(a: &str, b: &str) -> bool {
    match (ip_of(a), ip_of(b)) {
        (Some(a), Some(b)) => a == b,
        _ => false,
    }
}

/// Whether `path` is `root` or lies below it (whole components: `/srv/a` is not below `/srv/ab`).
pub fn at_or_below(path: &str, root: &str) -> bool {
    let root = root.trim_end_matches('/');
    if root.is_empty() {
        return path.starts_with('/');
    }
    let path = path.trim_end_matches('/');
    path == root
        || path
            .strip_prefix(root)
            .is_some_and(|rest| rest.starts_with('/'))
}

/// Grace periods with their end on some monotonic clock (the daemon's and each smbd's own).
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct GraceTable {
    entries: Vec<(String, String, Duration)>,
}

impl GraceTable {
    pub fn new() -> GraceTable {
        GraceTable::default()
    }

    /// Starts, replaces or (with a zero `duration`) ends the grace period of `address` on
    /// `path`. False when the table is full.
    pub fn set(&mut self, address: &str, path: &str, duration: Duration, now: Duration) -> bool {
        self.expire(now);
        self.entries
            .retain(|(a, p, _)| !(same_address(a, address) && p == path));
        if duration.is_zero() {
            return true;
        }
        if self.entries.len() >= MAX_GRACE_ENTRIES {
            return false;
        }
        self.entries
            .push((address.to_string(), path.to_string(), now + duration));
        true
    }

    /// Replaces the whole table with what the bridge sent (`remaining_ms` counted from `now`).
    pub fn replace(&mut self, entries: &[GraceEntry], now: Duration) {
        self.entries = entries
            .iter()
            .filter(|entry| entry.remaining_ms > 0)
            .map(|entry| {
                (
                    entry.address.clone(),
                    entry.path.clone(),
                    now + Duration::from_millis(entry.remaining_ms),
                )
            })
            .collect();
    }

    pub fn expire(&mut self, now: Duration) {
        self.entries.retain(|(_, _, until)| *until > now);
    }

    /// The periods in force at `now`, for the wire.
    pub fn active(&self, now: Duration) -> Vec<GraceEntry> {
        self.entries
            .iter()
            .filter(|(_, _, until)| *until > now)
            .map(|(address, path, until)| GraceEntry {
                address: address.clone(),
                path: path.clone(),
                // Rounded up: a period in force never travels as 0 (which means none).
                remaining_ms: until.saturating_sub(now).as_nanos().div_ceil(1_000_000) as u64,
            })
            .collect()
    }

    /// How long grace still holds for a client that reached `server_address` and opens on the
    /// share rooted at `share_path` (the longest of the periods that cover it), or `None`.
    pub fn remaining(
        &self,
        share_path: &str,
        server_address: &str,
        now: Duration,
    ) -> Option<Duration> {
        self.entries
            .iter()
            .filter(|(address, path, until)| {
                *until > now
                    && same_address(address, server_address)
                    && at_or_below(share_path, path)
            })
            .map(|(_, _, until)| until.saturating_sub(now))
            .max()
    }

    pub fn is_empty(&self) -> bool {
        self.entries.is_empty()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn addresses_compare_as_ips() {
        assert!(same_address("127.0.0.2", "127.0.0.2"));
        assert!(same_address("::ffff:10.1.2.3", "10.1.2.3"));
        assert!(same_address("ipv4:10.1.2.3:445", "10.1.2.3"));
        assert!(same_address("ipv6:fd00::1:445", "fd00::1"));
        assert!(same_address("[fd00::1]", "fd00:0::1"));
        assert!(!same_address("127.0.0.1", "127.0.0.2"));
        assert!(!same_address("", ""));
        assert!(!same_address("host.example", "host.example"));
    }

    #[test]
    fn paths_by_whole_components() {
        assert!(at_or_below("/srv/a", "/srv/a"));
        assert!(at_or_below("/srv/a/b", "/srv/a/"));
        assert!(at_or_below("/srv/a/", "/srv/a"));
        assert!(at_or_below("/srv/a", "/"));
        assert!(!at_or_below("/srv/ab", "/srv/a"));
        assert!(!at_or_below("/srv", "/srv/a"));
    }

    #[test]
    fn grace_covers_its_address_and_exports_until_it_ends() {
        let mut table = GraceTable::new();
        let t0 = Duration::from_secs(100);
        assert!(table.set("10.0.0.1", "/export", Duration::from_secs(90), t0));
        let later = t0 + Duration::from_secs(30);
        assert_eq!(
            table.remaining("/export/projects", "10.0.0.1", later),
            Some(Duration::from_secs(60))
        );
        assert_eq!(
            table.remaining("/export", "::ffff:10.0.0.1", later),
            Some(Duration::from_secs(60))
        );
        assert_eq!(table.remaining("/export/projects", "10.0.0.2", later), None);
        assert_eq!(table.remaining("/other", "10.0.0.1", later), None);
        assert_eq!(
            table.remaining("/export", "10.0.0.1", t0 + Duration::from_secs(90)),
            None
        );
        // Replaced, then ended.
        assert!(table.set("10.0.0.1", "/export", Duration::from_secs(5), later));
        assert_eq!(
            table.remaining("/export", "10.0.0.1", later),
            Some(Duration::from_secs(5))
        );
        assert!(table.set("10.0.0.1", "/export", Duration::ZERO, later));
        assert!(table.is_empty());
    }

    #[test]
    fn grace_travels_as_time_left() {
        let mut sender = GraceTable::new();
        let t0 = Duration::from_secs(10);
        sender.set("10.0.0.1", "/export", Duration::from_millis(1500), t0);
        let wire = sender.active(t0 + Duration::from_millis(500));
        assert_eq!(
            wire,
            vec![GraceEntry {
                address: "10.0.0.1".into(),
                path: "/export".into(),
                remaining_ms: 1000
            }]
        );
        // The receiver's clock is another one.
        let mut receiver = GraceTable::new();
        let r0 = Duration::from_secs(5000);
        receiver.replace(&wire, r0);
        assert_eq!(
            receiver.remaining("/export", "10.0.0.1", r0),
            Some(Duration::from_secs(1))
        );
        assert_eq!(
            receiver.remaining("/export", "10.0.0.1", r0 + Duration::from_secs(1)),
            None
        );
    }

    #[test]
    fn a_full_table_refuses_more() {
        let mut table = GraceTable::new();
        let now = Duration::from_secs(1);
        for i in 0..MAX_GRACE_ENTRIES {
            assert!(table.set(
                &format!("10.0.{}.{}", i / 200, i % 200 + 1),
                "/e",
                Duration::from_secs(9),
                now
            ));
        }
        assert!(!table.set("10.9.9.9", "/e", Duration::from_secs(9), now));
        // Replacing one that exists still works.
        assert!(table.set("10.0.0.1", "/e", Duration::from_secs(3), now));
    }
}
