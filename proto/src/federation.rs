//! The federation handshake and import manifest (issue #19; RFC-0021 stages 1–4, the
//! federated-readiness RFC's hello and accept): three signed statements a universe makes to
//! another.
//!
//! - [`Hello`] — the importer says who it is (universe, identity version), which protocol
//!   version and capabilities it speaks and the policy it applies, with a fresh nonce.
//! - [`Accept`] — the publisher answers with a session, its current epoch, the hash of its own
//!   policy and the capabilities both share; it names the hello it answers by hash, so an accept
//!   cannot be replayed to another hello.
//! - [`Manifest`] — for the snapshots an importer declared it depends on: the roots, how many
//!   nodes their closure holds and the digest of that set, under the epoch and head it was made
//!   for.
//!
//! Each is canonical CBOR [`Sealed`] under its own domain string: the signature covers
//! `{"body": <statement>, "domain": <domain>}`, so a signature made for one statement (or for a
//! published head, an identity document, an agent's envelope) never passes as another.

use std::collections::BTreeMap;

use ciborium::value::Value;
use ed25519_dalek::{Signature, Signer, SigningKey, VerifyingKey};
use serde::de::DeserializeOwned;
use serde::{Deserialize, Serialize};
use serde_bytes::ByteArray;

use crate::cbor::{self, fields, CborError};
use crate::code::{Code, Coded};

/// The domain of a hello's signature.
pub const HELLO_DOMAIN: &str = "jit/federation/hello/v1";
/// The domain of an accept's signature.
pub const ACCEPT_DOMAIN: &str = "jit/federation/accept/v1";
/// The domain of a manifest's signature.
pub const MANIFEST_DOMAIN: &str = "jit/federation/manifest/v1";
/// The domain of a witness's cosignature.
pub const COSIGN_DOMAIN: &str = "jit/federation/cosign/v1";

/// The federation protocol version this build speaks.
pub const PROTOCOL: u64 = 1;

/// Largest sealed statement accepted, in bytes (refused unread beyond).
pub const MAX_SEALED: usize = 16 * 1024;

/// Most roots one manifest (one dependency declaration) may name.
pub const MAX_ROOTS: usize = 256;

/// Largest closure one manifest may describe, in nodes: an importer refuses a bigger one
/// before it allocates anything for it.
pub const MAX_CLOSURE: u64 = 1 << 24;

/// Largest closure one manifest may describe, in bytes: an importer refuses a bigger one
/// before it asks for anything, and never receives more than the manifest declared.
pub const MAX_CLOSURE_BYTES: u64 = 1 << 40;

/// Most hashes in a consistency or inclusion proof (a log of 2^64 entries needs 64).
pub const MAX_PROOF_HASHES: usize = 64;

/// What this build can do as a publisher or an importer. A capability the two sides do not
/// share is refused when it is used.
pub const CAPABILITIES: &[&str] = &[CAP_HEAD, CAP_MANIFEST, CAP_FETCH, CAP_ZSTD, CAP_COSIGN];
/// Asking for the signed head and the publish log.
pub const CAP_HEAD: &str = "head/v1";
/// Declaring dependencies and receiving a signed manifest.
pub const CAP_MANIFEST: &str = "manifest/v1";
/// Fetching the nodes of a published closure.
pub const CAP_FETCH: &str = "fetch/v1";
/// Fetch replies compressed with zstd (RFC-0021 stage 2's compression modes).
pub const CAP_ZSTD: &str = "zstd/v1";
/// Asking this universe to witness another's head.
pub const CAP_COSIGN: &str = "cosign/v1";

/// A statement sealed with a universe's signature.
#[derive(Debug, Clone, PartialEq)]
pub struct Sealed {
    /// The statement, as CBOR.
    pub body: Value,
    /// ed25519 over `{"body": body, "domain": domain}`.
    pub sig: Vec<u8>,
}

/// Why a sealed statement was refused.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum SealError {
    /// Not canonical CBOR of the statement's shape, or too large.
    #[error("not a {what}: {reason}")]
    Malformed {
        /// Which statement.
        what: &'static str,
        /// What is wrong.
        reason: String,
    },
    /// The signature does not verify under the key it should.
    #[error("the {what} is not signed by the universe's key")]
    BadSignature {
        /// Which statement.
        what: &'static str,
    },
}

impl Coded for SealError {
    fn code(&self) -> Code {
        match self {
            SealError::Malformed { .. } => Code::Malformed,
            SealError::BadSignature { .. } => Code::BadSignature,
        }
    }
}

fn text(s: &str) -> Value {
    Value::Text(s.to_owned())
}

fn signing_bytes(domain: &str, body: &Value) -> Result<Vec<u8>, CborError> {
    cbor::encode(&Value::Map(vec![
        (text("body"), body.clone()),
        (text("domain"), text(domain)),
    ]))
}

/// A statement that can be sealed: its domain and its name in errors.
pub trait Statement: Serialize + DeserializeOwned {
    /// The domain string its signature covers.
    const DOMAIN: &'static str;
    /// Its name in errors.
    const WHAT: &'static str;

    /// Signs the statement with `key`: the canonical bytes of `{body, sig}`.
    fn seal(&self, key: &SigningKey) -> Result<Vec<u8>, CborError> {
        let body = cbor::to_value(self)?;
        let sig = key.sign(&signing_bytes(Self::DOMAIN, &body)?);
        cbor::encode(&Value::Map(vec![
            (text("body"), body),
            (text("sig"), Value::Bytes(sig.to_bytes().to_vec())),
        ]))
    }

    /// Opens sealed bytes: checks the size (before decoding), the canonical shape and the
    /// signature under `public_key`, and returns the statement.
    fn open(bytes: &[u8], public_key: &[u8; 32]) -> Result<Self, SealError> {
        let sealed = Self::unverified(bytes)?;
        let bad = SealError::BadSignature { what: Self::WHAT };
        let signed = signing_bytes(Self::DOMAIN, &sealed.body).map_err(|_| bad.clone())?;
        let key = VerifyingKey::from_bytes(public_key).map_err(|_| bad.clone())?;
        let sig = Signature::from_slice(&sealed.sig).map_err(|_| bad.clone())?;
        key.verify_strict(&signed, &sig).map_err(|_| bad)?;
        cbor::from_value(sealed.body).map_err(|e| SealError::Malformed {
            what: Self::WHAT,
            reason: e.to_string(),
        })
    }

    /// The statement and signature of sealed bytes, signature unchecked (to learn who claims
    /// to have signed before looking up their key).
    fn unverified(bytes: &[u8]) -> Result<Sealed, SealError> {
        let malformed = |reason: String| SealError::Malformed {
            what: Self::WHAT,
            reason,
        };
        if bytes.len() > MAX_SEALED {
            return Err(malformed(format!(
                "{} bytes exceed {MAX_SEALED}",
                bytes.len()
            )));
        }
        let value = cbor::decode(bytes).map_err(|e| malformed(e.to_string()))?;
        let map = fields::as_map(&value, Self::WHAT).map_err(|e| malformed(e.to_string()))?;
        fields::only(map, &["body", "sig"]).map_err(|e| malformed(e.to_string()))?;
        let body = fields::require(map, "body").map_err(|e| malformed(e.to_string()))?;
        let sig = fields::require(map, "sig").map_err(|e| malformed(e.to_string()))?;
        let sig = fields::as_bytes(sig, "sig").map_err(|e| malformed(e.to_string()))?;
        // The shape is checked now, so a malformed body is refused before any key lookup.
        cbor::from_value::<Self>(body.clone()).map_err(|e| malformed(e.to_string()))?;
        Ok(Sealed {
            body: body.clone(),
            sig: sig.to_vec(),
        })
    }

    /// The statement of sealed bytes, signature unchecked.
    fn claimed(bytes: &[u8]) -> Result<Self, SealError> {
        let sealed = Self::unverified(bytes)?;
        cbor::from_value(sealed.body).map_err(|e| SealError::Malformed {
            what: Self::WHAT,
            reason: e.to_string(),
        })
    }
}

/// Stage 1: the importer introduces itself.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Hello {
    /// The importer's universe.
    pub universe: ByteArray<16>,
    /// The version of its identity document whose key signs this hello.
    pub identity_version: u64,
    /// The federation protocol version it speaks.
    pub protocol: u64,
    /// What it can do.
    pub capabilities: Vec<String>,
    /// The rules it applies (text to text; hashed by the other side if it wants).
    pub policy: BTreeMap<String, String>,
    /// Fresh random bytes: no two hellos are alike.
    pub nonce: ByteArray<16>,
}

impl Statement for Hello {
    const DOMAIN: &'static str = HELLO_DOMAIN;
    const WHAT: &'static str = "federation hello";
}

/// Stage 2: the publisher accepts, naming the session and what both share.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Accept {
    /// The publisher's universe.
    pub universe: ByteArray<16>,
    /// The version of its identity document whose key signs this accept.
    pub identity_version: u64,
    /// The importer it answers.
    pub peer: ByteArray<16>,
    /// BLAKE3 of the sealed hello it answers.
    pub hello: ByteArray<32>,
    /// The token every later request of this session carries.
    pub session: serde_bytes::ByteBuf,
    /// The publisher's current epoch (0 before its first publish).
    pub epoch: u64,
    /// BLAKE3 of the canonical CBOR of the publisher's policy.
    pub policy_hash: ByteArray<32>,
    /// The publisher's policy.
    pub policy: BTreeMap<String, String>,
    /// The capabilities both sides have, sorted.
    pub capabilities: Vec<String>,
}

impl Statement for Accept {
    const DOMAIN: &'static str = ACCEPT_DOMAIN;
    const WHAT: &'static str = "federation accept";
}

/// Stage 4: what the closure of the declared roots holds, signed by the publisher.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Manifest {
    /// The publisher's universe.
    pub universe: ByteArray<16>,
    /// The epoch of the head it was made under.
    pub epoch: u64,
    /// That head's Merkle root (the publish log it was made from).
    pub head_root: ByteArray<32>,
    /// The published snapshots the importer declared, in the order it named them.
    pub roots: Vec<ByteArray<32>>,
    /// How many nodes their closure holds (the roots included).
    pub count: u64,
    /// How many bytes those nodes' encodings add up to (at most [`MAX_CLOSURE_BYTES`]).
    pub bytes: u64,
    /// [`closure_digest`] of the closure's ids.
    pub digest: ByteArray<32>,
}

impl Statement for Manifest {
    const DOMAIN: &'static str = MANIFEST_DOMAIN;
    const WHAT: &'static str = "federation manifest";
}

/// A witness's statement that it saw a universe's head as a consistent extension of every head
/// of that universe it cosigned before.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Cosignature {
    /// The witness's universe.
    pub witness: ByteArray<16>,
    /// The universe witnessed.
    pub universe: ByteArray<16>,
    /// The head's epoch.
    pub epoch: u64,
    /// The head's log size.
    pub size: u64,
    /// The head's Merkle root.
    pub root: ByteArray<32>,
    /// The witness's logical time: one more for every head it cosigns, never a wall clock.
    pub time: u64,
}

impl Statement for Cosignature {
    const DOMAIN: &'static str = COSIGN_DOMAIN;
    const WHAT: &'static str = "cosignature";
}

/// The digest of a node set: BLAKE3 over its ids, sorted and concatenated.
pub fn closure_digest<'a>(ids: impl IntoIterator<Item = &'a [u8; 32]>) -> [u8; 32] {
    let mut sorted: Vec<&[u8; 32]> = ids.into_iter().collect();
    sorted.sort_unstable();
    sorted.dedup();
    let mut hasher = blake3::Hasher::new();
    for id in sorted {
        hasher.update(id);
    }
    *hasher.finalize().as_bytes()
}

/// BLAKE3 of a policy's canonical CBOR.
pub fn policy_hash(policy: &BTreeMap<String, String>) -> Result<[u8; 32], CborError> {
    Ok(*blake3::hash(&cbor::to_canonical_bytes(policy)?).as_bytes())
}

/// The capabilities `ours` and `theirs` share, sorted and unique.
pub fn intersect(ours: &[&str], theirs: &[String]) -> Vec<String> {
    let mut shared: Vec<String> = theirs
        .iter()
        .filter(|c| ours.contains(&c.as_str()))
        .cloned()
        .collect();
    shared.sort();
    shared.dedup();
    shared
}

#[cfg(test)]
mod tests {
    use super::*;

    fn key(seed: u8) -> SigningKey {
        SigningKey::from_bytes(&[seed; 32])
    }

    fn hello() -> Hello {
        Hello {
            universe: ByteArray::new([1; 16]),
            identity_version: 1,
            protocol: PROTOCOL,
            capabilities: vec![CAP_HEAD.into(), "teleport/v9".into()],
            policy: BTreeMap::from([("imports".into(), "published-only".into())]),
            nonce: ByteArray::new([7; 16]),
        }
    }

    #[test]
    fn a_sealed_statement_opens_under_its_key_only() {
        let sealed = hello().seal(&key(1)).unwrap();
        let public = key(1).verifying_key().to_bytes();
        assert_eq!(Hello::open(&sealed, &public).unwrap(), hello());
        let other = key(2).verifying_key().to_bytes();
        assert_eq!(
            Hello::open(&sealed, &other).unwrap_err().code(),
            Code::BadSignature
        );
        // Sealing is deterministic: the same statement and key give the same bytes.
        assert_eq!(sealed, hello().seal(&key(1)).unwrap());
    }

    #[test]
    fn a_signature_for_one_statement_never_opens_another() {
        // A manifest whose body happens to be signed as a hello: same key, other domain.
        let manifest = Manifest {
            universe: ByteArray::new([1; 16]),
            epoch: 1,
            head_root: ByteArray::new([0; 32]),
            roots: vec![],
            count: 0,
            bytes: 0,
            digest: ByteArray::new(closure_digest([])),
        };
        let body = cbor::to_value(&manifest).unwrap();
        let sig = key(1).sign(&signing_bytes(HELLO_DOMAIN, &body).unwrap());
        let forged = cbor::encode(&Value::Map(vec![
            (text("body"), body),
            (text("sig"), Value::Bytes(sig.to_bytes().to_vec())),
        ]))
        .unwrap();
        let public = key(1).verifying_key().to_bytes();
        assert_eq!(
            Manifest::open(&forged, &public).unwrap_err().code(),
            Code::BadSignature
        );
    }

    #[test]
    fn a_changed_body_an_unknown_field_or_an_oversized_statement_is_refused() {
        let public = key(1).verifying_key().to_bytes();
        let mut tampered = hello();
        tampered.identity_version = 2;
        let mut value = cbor::decode(&hello().seal(&key(1)).unwrap()).unwrap();
        if let Value::Map(entries) = &mut value {
            for (key, body) in entries.iter_mut() {
                if key == &text("body") {
                    *body = cbor::to_value(&tampered).unwrap();
                }
            }
        }
        let bytes = cbor::encode(&value).unwrap();
        let error = Hello::open(&bytes, &public).unwrap_err();
        assert_eq!(error.code(), Code::BadSignature, "{error}");

        let mut body = cbor::to_value(&hello()).unwrap();
        if let Value::Map(entries) = &mut body {
            entries.push((text("zzz"), Value::Bool(true)));
        }
        let sig = key(1).sign(&signing_bytes(HELLO_DOMAIN, &body).unwrap());
        let unknown = cbor::encode(&Value::Map(vec![
            (text("body"), body),
            (text("sig"), Value::Bytes(sig.to_bytes().to_vec())),
        ]))
        .unwrap();
        assert_eq!(
            Hello::open(&unknown, &public).unwrap_err().code(),
            Code::Malformed
        );

        let huge = vec![0u8; MAX_SEALED + 1];
        assert_eq!(
            Hello::open(&huge, &public).unwrap_err().code(),
            Code::Malformed
        );
    }

    #[test]
    fn capabilities_intersect_and_digests_ignore_order() {
        assert_eq!(
            intersect(CAPABILITIES, &hello().capabilities),
            vec![CAP_HEAD.to_owned()]
        );
        let (a, b) = ([1u8; 32], [2u8; 32]);
        assert_eq!(closure_digest([&a, &b]), closure_digest([&b, &a, &b]));
        assert_ne!(closure_digest([&a]), closure_digest([&b]));
    }
}
