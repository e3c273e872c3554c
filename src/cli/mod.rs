//! The `nfsbridge` subcommands beyond `options`; the ACL logic itself lives in the library.
pub mod acl;
pub mod formats;
pub mod winbind;
