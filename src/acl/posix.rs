//! POSIX ACLs and the NFSv4 ↔ POSIX mirror.
//!
//! The kernel and nfsd enforce only the POSIX ACL and the mode; the Windows ACL lives as an
//! NFSv4 ACL in an xattr that only smbd reads. So every NFSv4 ACL is mirrored into a POSIX
//! access ACL (plus a default ACL on directories) and mode that never grant more than the
//! NFSv4 ACL does ([`mirror`]). The way back, for changes made outside SMB, is
//! [`posix_to_nfs4`] (after setfacl) and [`apply_mode`] (after chmod).
//!
//! - [`model`]: entries, validity, canonical order, mode bits, getfacl text, the kernel check.
//! - [`xattr`]: the `system.posix_acl_access` / `system.posix_acl_default` binary format.
//! - [`eval`]: NFSv4 access evaluation (RFC 8881 §6.2.1) and rwx from NFSv4 masks.
//!
//! docs/posix-mirror.md explains the algorithm and what is narrowed.
pub mod chmod;
pub mod eval;
pub mod mirror;
pub mod model;
pub mod present;
pub mod xattr;

#[cfg(test)]
mod tests;

pub use chmod::apply_mode;
pub use eval::{access_mask, access_perms, perms_from_mask, Requester};
pub use mirror::{mirror, Mirror, Narrowing};
pub use model::{with_permission_bits, AclKind, Perms, PosixAcl, PosixAclError, PosixEntry, Tag};
pub use present::{posix_to_nfs4, posix_to_nfs4_for_smb, widen_for_smb};
pub use xattr::XattrDecodeError;
