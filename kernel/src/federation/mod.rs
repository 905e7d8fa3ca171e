//! Federation between universes (RFC-0021, the ASL federation RFC, the federated-readiness RFC;
//! issue #19): separate universes — each its own DAG, refs and keys — link through signed,
//! verified, read-only imports of published snapshots. No universe ever writes another, and no
//! foreign node ever becomes local.
//!
//! The publishing side:
//! 1. **Identity** — who a universe is, as a signed, versioned document
//!    (`jit_proto::identity`; made by `crate::identity::UniverseIdentity::document`).
//! 2. **Publish** ([`publish`]) — the append-only publish log of the snapshots a universe shows
//!    others and the signed head over it (`jit_proto::head`, `jit_proto::merkle`); each publish
//!    indexes the snapshot's closure ([`closure`]) as visible ([`visible`]).
//! 3. **Serve** ([`serve`]) — answers a hello with a signed accept and a session token
//!    ([`session`]), then the head, manifests and nodes of published closures only; anything
//!    else is answered as a node that does not exist.
//!
//! The importing side, one file per RFC-0021 stage group:
//! 1. **Policy** ([`peers`]) — a trust level per universe and a deny list, checked before
//!    anything of a universe is looked up.
//! 2. **Handshake** ([`handshake`], stages 1–2) — signed hello and accept, identity continuity
//!    (key rotation, no replay), capabilities intersected.
//! 3. **Import** ([`import`], stages 3–7) — the verified head and log, the dependency
//!    declaration, the signed manifest, sync's verified resumable transfer into the universe's
//!    own store ([`foreign`]), the closure checked against the manifest, and one atomic commit
//!    of the nodes, the head, the import record ([`known`]) and a `federation-edge` node.
//! 4. **Faults** ([`quarantine`]) — a universe that equivocates, signs with the wrong key or
//!    sends a closure that fails verification is quarantined until released.
//! 5. **Bundles** ([`bundle`]) — the same import from one self-contained file, verifiable
//!    offline.
//! 6. **Witnesses** ([`witness`]) — other universes cosign a publisher's heads, each only a
//!    consistent extension of the last it cosigned; importers may require k of n.
//! 7. **Agreement** ([`agree`]) — optionally, k of a set of sources (publisher and mirrors)
//!    must resolve a published name to the same snapshot before an import moves.
//! 8. **Gossip** ([`gossip`]) — daemons compare the heads they verified; two that cannot both
//!    be true make an equivocation proof (`jit_proto::equivocation`) that quarantines the
//!    universe wherever it is heard.
//!
//! Transport: the peer is sync's transport-agnostic [`crate::sync::Remote`]; the plane's
//! Zenoh implementation serves and asks `jit/federation/<op>`, and tests use an in-process one.
//! `docs/federation.md` specifies the wire protocol.

pub mod agree;
pub mod bundle;
pub mod closure;
pub mod foreign;
pub mod gossip;
pub mod handshake;
pub mod import;
pub mod known;
pub mod peers;
pub mod publish;
pub mod quarantine;
pub mod serve;
pub mod session;
pub mod visible;
pub mod wire;
pub mod witness;

use crate::error::{Code, Coded, Error};

/// A refusal of another universe's statement, with the statement error's code.
pub(crate) fn refused(error: impl Coded + std::fmt::Display) -> Error {
    Error::Federation {
        code: error.code(),
        message: error.to_string(),
    }
}

/// A federation refusal with `code`.
pub(crate) fn refusal(code: Code, message: impl Into<String>) -> Error {
    Error::Federation {
        code,
        message: message.into(),
    }
}
