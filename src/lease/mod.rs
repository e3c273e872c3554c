//! The lease bridge's first layer: kernel lease facts, the shared lease table, and the message
//! format between smbd processes and the bridge daemon (issue 5; the design is in
//! `docs/lease-bridge.md`). Nothing here talks to smbd yet.
pub mod kernel;
pub mod protocol;
pub mod table;
pub mod transport;
