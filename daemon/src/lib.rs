//! The daemon's side of the RPC: the Unix-socket server that serves the kernel's
//! [`jit_kernel::rpc::service::Service`] (RFC-0007), who may connect to it, and the limits every
//! connection lives within.
//!
//! - [`server`]: one socket in `.jit/`, one task per connection, one daemon per universe.
//! - [`access`]: the peer's uid checked on every connection (`SO_PEERCRED`).
//! - [`limits`]: timeouts, a connection cap and a byte budget.
//! - [`frame`]: reading frames from an untrusted peer without trusting its lengths.
//!
//! The key decision: the transport lives outside the kernel. The kernel decides what an
//! operation does and answers the same in-process or through a socket; how bytes arrive, and
//! the async runtime that carries them, are this crate's, so the kernel needs no tokio.

#![deny(missing_docs)]

pub mod access;
pub mod frame;
pub mod limits;
pub mod server;
