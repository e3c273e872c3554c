//! The `nfsbridge` subcommands beyond `options`; the ACL logic itself lives in the library.
pub mod acl;
pub mod failover;
pub mod formats;
pub mod lease_bridge;
pub mod leases;
pub mod stderr_log;
pub mod winbind;
