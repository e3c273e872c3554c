//! The ACL core: NT security descriptors, NFSv4 ACLs and POSIX ACLs, their encodings, and
//! the mappings between them. Pure Rust; no Samba needed to build or test.
//!
//! - [`sid`]: security identifiers.
//! - [`sd`]: the NT security descriptor model.
//! - [`nfs4`]: the NFSv4 ACL model (RFC 8881 §6).
//! - [`idmap`]: SID ↔ uid/gid mapping.
//! - [`idcache`]: a bounded, expiring memo of identity-mapping answers (the smbd module's).
//! - [`mapping`]: NT security descriptor ↔ NFSv4 ACL mapping.
//! - [`bridge`]: stored NFSv4 ACL ↔ POSIX ACL + mode coherence (pure).
//! - [`statecache`]: a file's ACL xattrs from its last read, trusted only while a stat proves
//!   them current (the smbd module's).
//! - [`store`]: the xattr, stat, chmod and chown I/O the bridge needs.
pub mod bridge;
pub mod idcache;
pub mod idmap;
pub mod mapping;
pub mod nfs4;
pub mod posix;
pub mod sd;
pub mod sid;
pub mod statecache;
pub mod store;
