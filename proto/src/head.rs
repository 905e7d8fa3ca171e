//! A universe's signed published head (issue #19): `{universe, epoch, size, root}`, where `root`
//! is the [`crate::merkle`] root over the first `size` entries of its publish log and `epoch`
//! only increases. An importer keeps the last head it verified and accepts a new one only if it
//! is signed by the universe's key and extends it: a later epoch whose log is an append-only
//! extension of the old one (a consistency proof), or the very same head again.
//!
//! Refusals, each with its code: a head of an earlier epoch (a rollback) is `stale`; a second,
//! different head for an epoch, a log that shrank, or one whose consistency proof fails is
//! `equivocation` — the publisher showed two histories; a bad signature is `bad_signature`.

use ciborium::value::Value;
use ed25519_dalek::{Signature, Signer, SigningKey, Verifier, VerifyingKey};

use crate::cbor::{self, fields, CborError};
use crate::code::{Code, Coded};
use crate::merkle::{self, Hash};

/// The domain string in every published head's signed bytes.
pub const HEAD_DOMAIN: &str = "jit/federation/head/v1";

/// Largest encoded signed head accepted, in bytes.
pub const MAX_HEAD: usize = 1024;

/// What a universe has published, in one statement.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct PublishedHead {
    /// The universe (its UUID's 16 bytes).
    pub universe: [u8; 16],
    /// Raised with every publish; never goes back.
    pub epoch: u64,
    /// Entries of the publish log the root covers.
    pub size: u64,
    /// The Merkle root over those entries.
    pub root: Hash,
}

/// A published head with the universe key's signature.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SignedHead {
    /// The head.
    pub head: PublishedHead,
    /// ed25519 over [`PublishedHead::signing_bytes`].
    pub sig: Vec<u8>,
}

/// Why a head was refused.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum HeadError {
    /// Not a canonical signed head.
    #[error("not a published head: {0}")]
    Malformed(String),
    /// The signature does not verify under the universe's key.
    #[error("the head of epoch {epoch} is not signed by the universe's key")]
    BadSignature {
        /// Its epoch.
        epoch: u64,
    },
    /// A head of another universe.
    #[error("the head is of another universe")]
    OtherUniverse,
    /// An earlier epoch than the one verified: a rollback.
    #[error("epoch {got} is before the verified epoch {have} (a rollback)")]
    Rollback {
        /// The epoch verified.
        have: u64,
        /// The epoch offered.
        got: u64,
    },
    /// Two histories: another head for a verified epoch, or a log that is not an append-only
    /// extension of the verified one.
    #[error("the publisher shows two histories: {0}")]
    Equivocation(String),
}

impl Coded for HeadError {
    fn code(&self) -> Code {
        match self {
            HeadError::Malformed(_) => Code::Malformed,
            HeadError::BadSignature { .. } => Code::BadSignature,
            HeadError::OtherUniverse => Code::OtherUniverse,
            HeadError::Rollback { .. } => Code::Stale,
            HeadError::Equivocation(_) => Code::Equivocation,
        }
    }
}

fn text(s: &str) -> Value {
    Value::Text(s.to_owned())
}

fn malformed(e: impl std::fmt::Display) -> HeadError {
    HeadError::Malformed(e.to_string())
}

impl PublishedHead {
    fn value(&self) -> Value {
        Value::Map(vec![
            (text("epoch"), Value::Integer(self.epoch.into())),
            (text("root"), Value::Bytes(self.root.to_vec())),
            (text("size"), Value::Integer(self.size.into())),
            (text("universe"), Value::Bytes(self.universe.to_vec())),
        ])
    }

    /// The bytes the signature covers: canonical CBOR of `{domain, head}`.
    pub fn signing_bytes(&self) -> Result<Vec<u8>, CborError> {
        cbor::encode(&Value::Map(vec![
            (text("domain"), text(HEAD_DOMAIN)),
            (text("head"), self.value()),
        ]))
    }
}

impl SignedHead {
    /// Signs `head` with the universe's key.
    pub fn sign(head: PublishedHead, key: &SigningKey) -> Result<SignedHead, CborError> {
        let sig = key.sign(&head.signing_bytes()?).to_bytes().to_vec();
        Ok(SignedHead { head, sig })
    }

    /// Canonical bytes: `{head, sig}`.
    pub fn encode(&self) -> Result<Vec<u8>, CborError> {
        cbor::encode(&Value::Map(vec![
            (text("head"), self.head.value()),
            (text("sig"), Value::Bytes(self.sig.clone())),
        ]))
    }

    /// Parses canonical bytes (at most [`MAX_HEAD`], refused before decoding); checks shape only.
    pub fn decode(bytes: &[u8]) -> Result<SignedHead, HeadError> {
        if bytes.len() > MAX_HEAD {
            return Err(malformed(format!(
                "{} bytes exceed {MAX_HEAD}",
                bytes.len()
            )));
        }
        let value = cbor::decode(bytes).map_err(malformed)?;
        let map = fields::as_map(&value, "signed head").map_err(malformed)?;
        fields::only(map, &["head", "sig"]).map_err(malformed)?;
        let head = fields::as_map(fields::require(map, "head").map_err(malformed)?, "head")
            .map_err(malformed)?;
        fields::only(head, &["epoch", "root", "size", "universe"]).map_err(malformed)?;
        let bytes_of = |key: &str| -> Result<&[u8], HeadError> {
            fields::as_bytes(fields::require(head, key).map_err(malformed)?, key).map_err(malformed)
        };
        let number = |key: &str| -> Result<u64, HeadError> {
            fields::as_u64(fields::require(head, key).map_err(malformed)?, key).map_err(malformed)
        };
        Ok(SignedHead {
            head: PublishedHead {
                universe: bytes_of("universe")?
                    .try_into()
                    .map_err(|_| malformed("universe is not 16 bytes"))?,
                epoch: number("epoch")?,
                size: number("size")?,
                root: bytes_of("root")?
                    .try_into()
                    .map_err(|_| malformed("root is not 32 bytes"))?,
            },
            sig: fields::as_bytes(fields::require(map, "sig").map_err(malformed)?, "sig")
                .map_err(malformed)?
                .to_vec(),
        })
    }

    /// Checks the signature under the universe's `public_key`.
    pub fn verify(&self, public_key: &[u8; 32]) -> Result<&PublishedHead, HeadError> {
        let bad = HeadError::BadSignature {
            epoch: self.head.epoch,
        };
        let bytes = self.head.signing_bytes().map_err(malformed)?;
        let key = VerifyingKey::from_bytes(public_key).map_err(|_| bad.clone())?;
        let sig = Signature::from_slice(&self.sig).map_err(|_| bad.clone())?;
        key.verify(&bytes, &sig).map_err(|_| bad)?;
        Ok(&self.head)
    }

    /// Checks the signature and that this head extends `last` (the head last verified; none on
    /// first contact): the same universe, and either `last` itself or a later epoch whose log
    /// `consistency` proves to be an append-only extension of `last`'s.
    pub fn verify_after(
        &self,
        public_key: &[u8; 32],
        last: Option<&PublishedHead>,
        consistency: &[Hash],
    ) -> Result<&PublishedHead, HeadError> {
        let head = self.verify(public_key)?;
        let Some(last) = last else {
            return Ok(head);
        };
        if head.universe != last.universe {
            return Err(HeadError::OtherUniverse);
        }
        if head.epoch < last.epoch {
            return Err(HeadError::Rollback {
                have: last.epoch,
                got: head.epoch,
            });
        }
        if head.epoch == last.epoch {
            return if head == last {
                Ok(head)
            } else {
                Err(HeadError::Equivocation(format!(
                    "two heads for epoch {}",
                    head.epoch
                )))
            };
        }
        if head.size < last.size {
            return Err(HeadError::Equivocation(format!(
                "the publish log shrank from {} to {} entries",
                last.size, head.size
            )));
        }
        if !merkle::verify_consistency(last.size, head.size, &last.root, &head.root, consistency) {
            return Err(HeadError::Equivocation(format!(
                "the log of epoch {} does not extend the log of epoch {}",
                head.epoch, last.epoch
            )));
        }
        Ok(head)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::merkle::{consistency_proof, leaf_hash, root};

    fn key(seed: u8) -> SigningKey {
        SigningKey::from_bytes(&[seed; 32])
    }

    fn log(n: usize) -> Vec<Hash> {
        (0..n)
            .map(|i| leaf_hash(format!("publish {i}").as_bytes()))
            .collect()
    }

    fn head(epoch: u64, leaves: &[Hash]) -> SignedHead {
        SignedHead::sign(
            PublishedHead {
                universe: [3; 16],
                epoch,
                size: leaves.len() as u64,
                root: root(leaves),
            },
            &key(1),
        )
        .expect("sign")
    }

    #[test]
    fn an_extension_is_accepted_and_every_kind_of_second_history_is_refused() {
        let public = key(1).verifying_key().to_bytes();
        let entries = log(7);
        let h3 = head(3, &entries[..4]);
        let h4 = head(4, &entries);
        let proof = consistency_proof(&entries, 4).expect("proof");
        let code = |r: Result<&PublishedHead, HeadError>| r.map(|_| ()).map_err(|e| e.code());
        // First contact, the same head again, and a proven extension.
        assert_eq!(code(h3.verify_after(&public, None, &[])), Ok(()));
        assert_eq!(code(h3.verify_after(&public, Some(&h3.head), &[])), Ok(()));
        assert_eq!(
            code(h4.verify_after(&public, Some(&h3.head), &proof)),
            Ok(())
        );
        // A rollback to an earlier epoch.
        assert_eq!(
            code(h3.verify_after(&public, Some(&h4.head), &[])),
            Err(Code::Stale)
        );
        // Another head for the same epoch.
        let other = head(3, &log(5)[..4].iter().rev().copied().collect::<Vec<_>>());
        assert_eq!(
            code(other.verify_after(&public, Some(&h3.head), &[])),
            Err(Code::Equivocation)
        );
        // A later epoch whose log rewrote an entry of the verified one.
        let mut forked = entries.clone();
        forked[1] = leaf_hash(b"rewritten");
        let h5 = head(5, &forked);
        let forked_proof = consistency_proof(&forked, 4).expect("proof");
        assert_eq!(
            code(h5.verify_after(&public, Some(&h3.head), &forked_proof)),
            Err(Code::Equivocation)
        );
        // A later epoch with a shorter log.
        let shorter = head(6, &entries[..2]);
        assert_eq!(
            code(shorter.verify_after(&public, Some(&h3.head), &[])),
            Err(Code::Equivocation)
        );
        // Signed by another key; another universe.
        let forged = SignedHead::sign(h4.head, &key(2)).expect("sign");
        assert_eq!(
            code(forged.verify_after(&public, Some(&h3.head), &proof)),
            Err(Code::BadSignature)
        );
        let mut foreign = h4.head;
        foreign.universe = [4; 16];
        let foreign = SignedHead::sign(foreign, &key(1)).expect("sign");
        assert_eq!(
            code(foreign.verify_after(&public, Some(&h3.head), &proof)),
            Err(Code::OtherUniverse)
        );
    }

    #[test]
    fn heads_round_trip_and_oversized_or_altered_bytes_are_refused() {
        let h = head(1, &log(3));
        let bytes = h.encode().expect("encode");
        assert_eq!(SignedHead::decode(&bytes).expect("decode"), h);
        let mut longer = bytes.clone();
        longer.push(0);
        assert_eq!(
            SignedHead::decode(&longer).unwrap_err().code(),
            Code::Malformed
        );
        assert_eq!(
            SignedHead::decode(&vec![0u8; MAX_HEAD + 1])
                .unwrap_err()
                .code(),
            Code::Malformed
        );
        // Deterministic: the same head signs to the same bytes.
        assert_eq!(head(1, &log(3)).encode().unwrap(), bytes);
        // A head signature is not an identity signature: the domains differ.
        assert_ne!(HEAD_DOMAIN, crate::identity::IDENTITY_DOMAIN);
    }
}
