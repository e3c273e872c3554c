//! nfsbridge: the pure-Rust half of the project.
//!
//! Everything here builds and tests without Samba: option parsing and validation for the
//! `nfsbridge:` smb.conf parameters, and (as it lands) the ACL and lease policy. The smbd
//! module in `module/` and the `nfsbridge` command line tool are thin users of this crate.
#![forbid(unsafe_code)]

pub mod acl;
pub mod config;
#[doc(hidden)]
pub mod fuzzing;
pub mod lease;
