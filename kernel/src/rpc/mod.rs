//! The kernel's RPC (RFC-0007): canonical-CBOR requests and responses over a Unix socket in
//! `.jit/`. [`service::Service`] is the one dispatcher: the daemon (crate `jit-daemon`) serves it
//! on the socket, and [`client::Kernel`] calls it through the socket when a daemon runs, or in-process
//! when none does — the same operations, validation and answers either way.

pub mod client;
pub mod protocol;
pub mod service;

/// File name of the socket inside `.jit/`.
pub const SOCKET: &str = "jit.sock";
/// File name of the daemon's lock inside `.jit/` (one daemon per universe).
pub const LOCK: &str = "daemon.lock";
