//! The lease table as the bridge reports it to `nfsbridge leases` (issue 9): one row per inode
//! with its shared description, kernel lease, SMB opens and holders, and the break in
//! progress. Sent as JSON in a sealed memfd (protocol `LeaseList`), so its size is unbounded.
use serde::{Deserialize, Serialize};

use super::kernel::LeaseType;
use super::table::{BreakUnit, Caching, GrantKind};

/// Bumped when a field changes meaning or disappears (new fields may be added freely).
pub const LISTING_VERSION: u32 = 1;

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct LeaseListing {
    pub version: u32,
    /// The bridge's pid, so that an admin can tell a restarted bridge from the old one.
    pub bridge_pid: u32,
    pub inodes: Vec<InodeRow>,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct InodeRow {
    pub dev: u64,
    pub ino: u64,
    /// The share root the first open named.
    pub share_path: String,
    /// Where the description's file is now, as `readlink /proc/self/fd/<description>` says
    /// (follows renames; ends in " (deleted)" after an unlink).
    pub path: String,
    pub description_writable: bool,
    /// `"read"`, `"write"` or `None`: the lease the bridge holds on the description.
    pub kernel_lease: Option<String>,
    /// The smbd the kernel sends the lease's break signal to (direct breaks,
    /// docs/lease-bridge.md); `None`: the bridge.
    #[serde(default)]
    pub break_signal_pid: Option<u32>,
    /// Every SMB open using the description, caching or not.
    pub opens: Vec<OpenRow>,
    /// The opens whose clients were granted caching.
    pub holders: Vec<HolderRow>,
    pub pending_break: Option<BreakRow>,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct OpenRow {
    pub smbd_pid: u32,
    pub file_id: u64,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct HolderRow {
    pub smbd_pid: u32,
    pub file_id: u64,
    pub client_address: String,
    pub server_address: String,
    /// The SMB2 lease key in hex, or `None` for an oplock.
    pub lease_key: Option<String>,
    /// What the client may cache: a subset of `"RWH"`, `""` for nothing.
    pub caching: String,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct BreakRow {
    /// Wall-clock start, milliseconds since the Unix epoch.
    pub started_unix_ms: u64,
    /// How long it has been running, by the bridge's monotonic clock.
    pub age_ms: u64,
    /// What the kernel asked for (`F_GETLEASE` during the break): `"read"` or `None`.
    pub kernel_target: Option<String>,
    /// What the SMB clients must come down to.
    pub smb_target: String,
    /// The break units that have not answered yet.
    pub waiting: Vec<UnitRow>,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct UnitRow {
    pub smbd_pid: u32,
    /// The lease key in hex for a lease, `None` for an oplock.
    pub lease_key: Option<String>,
    /// The open for an oplock, `None` for a lease.
    pub file_id: Option<u64>,
}

/// `"RWH"`-style letters for a caching state (`""` for none).
pub fn caching_letters(caching: Caching) -> String {
    let mut letters = String::new();
    if caching.read {
        letters.push('R');
    }
    if caching.write {
        letters.push('W');
    }
    if caching.handle {
        letters.push('H');
    }
    letters
}

pub fn lease_name(lease: Option<LeaseType>) -> Option<String> {
    lease.map(|lease| lease.to_string())
}

pub fn hex(bytes: &[u8]) -> String {
    bytes.iter().map(|byte| format!("{byte:02x}")).collect()
}

pub fn lease_key_of(kind: GrantKind) -> Option<String> {
    match kind {
        GrantKind::Lease(key) => Some(hex(&key)),
        GrantKind::Oplock => None,
    }
}

impl UnitRow {
    pub fn from_unit(unit: BreakUnit) -> UnitRow {
        match unit {
            BreakUnit::Lease { smbd_pid, key } => UnitRow {
                smbd_pid,
                lease_key: Some(hex(&key)),
                file_id: None,
            },
            BreakUnit::Oplock(open) => UnitRow {
                smbd_pid: open.smbd_pid,
                lease_key: None,
                file_id: Some(open.file_id),
            },
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn caching_letters_follow_smb_order_and_keys_are_hex() {
        assert_eq!(caching_letters(Caching::RWH), "RWH");
        assert_eq!(caching_letters(Caching::RH), "RH");
        assert_eq!(caching_letters(Caching::NONE), "");
        assert_eq!(
            lease_key_of(GrantKind::Lease([0xab; 16])).unwrap(),
            "ab".repeat(16)
        );
        assert_eq!(lease_key_of(GrantKind::Oplock), None);
    }
}
