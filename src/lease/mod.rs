//! The lease bridge (issue 5; the design is in `docs/lease-bridge.md`): kernel lease facts and
//! calls, the shared lease table, the message format between smbd processes and the bridge
//! daemon, the daemon itself, and the client library the smbd module uses.
pub mod client;
pub mod daemon;
pub mod failover;
pub mod fcntl;
pub mod kernel;
pub mod listing;
pub mod parking;
pub mod proc_locks;
pub mod protocol;
pub mod signals;
pub mod table;
pub mod transport;
