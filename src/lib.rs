//! nfsbridge: the pure-Rust half of the project.
//!
//! Everything here builds and tests without Samba: option parsing and validation for the
//! `nfsbridge:` smb.conf parameters, and (as it lands) the ACL and lease policy. The smbd
//! module in `module/` and the `nfsbridge` command line tool are thin users of this crate.
//!
//! Unsafe code is denied crate-wide (`deny`, not `forbid`, so that a module can opt out):
//! exactly two modules do, `lease::fcntl` and `lease::signals`, because the kernel lease calls
//! (`F_SETLEASE`, `F_GETLEASE`, `F_SETSIG`, `F_SETDELEG`) and `signalfd` are wrapped by no safe
//! syscall crate. Each is a handful of one-syscall functions with a `// SAFETY:` comment on
//! every `unsafe` block; everything else stays safe Rust.
#![deny(unsafe_code)]

pub mod acl;
pub mod config;
pub mod dirlease;
#[doc(hidden)]
pub mod fuzzing;
pub mod lease;
