//! JIT's wire vocabulary: what every client and server of a JIT universe must agree on, and
//! nothing else.
//!
//! - [`cbor`]: canonical CBOR (RFC 8949 §4.2.1) — every hashed or signed byte goes through it.
//! - [`envelope`]: the signed message an agent sends on the plane, and the domain-separated
//!   bytes its signature covers.
//! - [`equivocation`]: two signed heads of one universe that cannot both be true, with the
//!   evidence — verifiable offline with the universe's public key alone.
//! - [`federation`]: the signed handshake (hello, accept) and import manifest between
//!   universes, each sealed under its own signature domain.
//! - [`head`]: a universe's signed published head (epoch, log size, Merkle root) and the
//!   checks that it extends the last one verified.
//! - [`identity`]: a universe's signed, versioned identity document (key rotation without
//!   losing continuity).
//! - [`merkle`]: the Merkle tree over a publish log, with inclusion and consistency proofs.
//! - [`keyexpr`]: the plane's key expressions and what each asks for.
//! - [`message`]: the request and response envelopes of the RPC (answers on the plane too).
//! - [`code`]: the stable error codes every refusal and failure carries, as one typed enum.
//! - [`verify`]: checking a batch of signed messages (size, key, shape, sender, signature)
//!   against a registry the caller supplies.
//! - [`operation`]: the operations the RPC serves, by name — the one table of op names.
//!
//! The key decision: this crate depends on no store (LMDB), no async runtime (tokio) and no
//! transport (Zenoh). An agent, a test or a federation peer signs and checks messages with it
//! alone, and the kernel, the plane and the RPC cannot drift apart on a byte of the wire,
//! because there is one definition of it. CI checks the dependency rule with
//! `cargo tree -p jit-proto`.

#![deny(missing_docs)]

pub mod cbor;
pub mod code;
pub mod envelope;
pub mod equivocation;
pub mod federation;
pub mod head;
pub mod identity;
pub mod keyexpr;
pub mod merkle;
pub mod message;
pub mod operation;
pub mod verify;

pub use code::{Code, Coded};
pub use envelope::Envelope;
pub use operation::Operation;
