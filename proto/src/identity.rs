//! A universe's identity document (RFC-0021 §3; issue #19): who a universe is — its id, its
//! ed25519 key, its name, owner, description and creation time — signed, and versioned so the
//! key can rotate without losing continuity.
//!
//! - Version 1 is signed by its own key.
//! - Version n+1 keeps the universe id, is exactly n+1, and carries two signatures over the
//!   same bytes: its own key's and version n's key's. Whoever verified version n can therefore
//!   verify version n+1 without trusting anything new.
//! - A version at or below the one verified is refused as `replayed` (an old document cannot
//!   roll a key back), one that skips a version as `identity_gap` (the missing versions are
//!   needed), and two different documents of one version as `equivocation`.
//!
//! The signed bytes are canonical CBOR of the document with a domain string
//! ([`IDENTITY_DOMAIN`]), so an identity signature can never be taken for any other JIT
//! signature (an envelope, a published head).

use ciborium::value::Value;
use ed25519_dalek::{Signature, Signer, SigningKey, Verifier, VerifyingKey};

use crate::cbor::{self, fields, CborError};
use crate::code::{Code, Coded};

/// The domain string in every identity document's signed bytes.
pub const IDENTITY_DOMAIN: &str = "jit/federation/identity/v1";

/// Largest encoded identity document accepted, in bytes.
pub const MAX_IDENTITY: usize = 16 * 1024;

/// What a universe says about itself in one version.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct IdentityDoc {
    /// The universe's id (a UUID's 16 bytes); never changes.
    pub universe: [u8; 16],
    /// 1 for the first document, +1 for each rotation.
    pub version: u64,
    /// The ed25519 public key of this version.
    pub public_key: [u8; 32],
    /// Human name.
    pub name: String,
    /// Who runs it.
    pub owner: String,
    /// What it holds.
    pub description: String,
    /// Creation time of the universe, seconds since the epoch (the same in every version).
    pub created: u64,
}

/// An identity document with its signatures.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SignedIdentity {
    /// The document.
    pub doc: IdentityDoc,
    /// Its own key's signature over [`IdentityDoc::signing_bytes`].
    pub sig: Vec<u8>,
    /// From version 2 on: the previous version's key's signature over the same bytes.
    pub prev_sig: Option<Vec<u8>>,
}

/// Why an identity document was refused.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum IdentityError {
    /// Not a canonical identity document.
    #[error("not an identity document: {0}")]
    Malformed(String),
    /// A signature does not verify.
    #[error("identity version {version}: the {which} signature does not verify")]
    BadSignature {
        /// The version refused.
        version: u64,
        /// `own` or `previous key's`.
        which: &'static str,
    },
    /// The document is of another universe than the one verified.
    #[error("the identity document is of another universe")]
    OtherUniverse,
    /// A version at or below the one already verified.
    #[error("identity version {got} is not after the verified version {have} (a replay)")]
    Replayed {
        /// The version verified.
        have: u64,
        /// The version offered.
        got: u64,
    },
    /// A version that skips one: the versions between are needed.
    #[error("identity version {got} does not follow the verified version {have}")]
    Gap {
        /// The version verified.
        have: u64,
        /// The version offered.
        got: u64,
    },
    /// Another document of a version already verified.
    #[error("a second, different identity document for version {version}")]
    Equivocation {
        /// The version.
        version: u64,
    },
}

impl Coded for IdentityError {
    fn code(&self) -> Code {
        match self {
            IdentityError::Malformed(_) => Code::Malformed,
            IdentityError::BadSignature { .. } => Code::BadSignature,
            IdentityError::OtherUniverse => Code::OtherUniverse,
            IdentityError::Replayed { .. } => Code::Replayed,
            IdentityError::Gap { .. } => Code::IdentityGap,
            IdentityError::Equivocation { .. } => Code::Equivocation,
        }
    }
}

fn text(s: &str) -> Value {
    Value::Text(s.to_owned())
}

fn malformed(e: impl std::fmt::Display) -> IdentityError {
    IdentityError::Malformed(e.to_string())
}

impl IdentityDoc {
    fn value(&self) -> Value {
        Value::Map(vec![
            (text("created"), Value::Integer(self.created.into())),
            (text("description"), text(&self.description)),
            (text("name"), text(&self.name)),
            (text("owner"), text(&self.owner)),
            (text("public_key"), Value::Bytes(self.public_key.to_vec())),
            (text("universe"), Value::Bytes(self.universe.to_vec())),
            (text("version"), Value::Integer(self.version.into())),
        ])
    }

    fn from_value(value: &Value) -> Result<IdentityDoc, IdentityError> {
        let map = fields::as_map(value, "identity").map_err(malformed)?;
        fields::only(
            map,
            &[
                "created",
                "description",
                "name",
                "owner",
                "public_key",
                "universe",
                "version",
            ],
        )
        .map_err(malformed)?;
        let bytes = |key: &str| -> Result<&[u8], IdentityError> {
            fields::as_bytes(fields::require(map, key).map_err(malformed)?, key).map_err(malformed)
        };
        let string = |key: &str| -> Result<String, IdentityError> {
            Ok(
                fields::as_text(fields::require(map, key).map_err(malformed)?, key)
                    .map_err(malformed)?
                    .to_owned(),
            )
        };
        let number = |key: &str| -> Result<u64, IdentityError> {
            fields::as_u64(fields::require(map, key).map_err(malformed)?, key).map_err(malformed)
        };
        Ok(IdentityDoc {
            universe: bytes("universe")?
                .try_into()
                .map_err(|_| malformed("universe is not 16 bytes"))?,
            version: number("version")?,
            public_key: bytes("public_key")?
                .try_into()
                .map_err(|_| malformed("public_key is not 32 bytes"))?,
            name: string("name")?,
            owner: string("owner")?,
            description: string("description")?,
            created: number("created")?,
        })
    }

    /// The bytes both signatures cover: canonical CBOR of `{domain, doc}`.
    pub fn signing_bytes(&self) -> Result<Vec<u8>, CborError> {
        cbor::encode(&Value::Map(vec![
            (text("doc"), self.value()),
            (text("domain"), text(IDENTITY_DOMAIN)),
        ]))
    }
}

impl SignedIdentity {
    /// Version 1 of a universe's identity, signed with `key` (whose public half it names).
    pub fn first(mut doc: IdentityDoc, key: &SigningKey) -> Result<SignedIdentity, CborError> {
        doc.version = 1;
        doc.public_key = key.verifying_key().to_bytes();
        let sig = key.sign(&doc.signing_bytes()?).to_bytes().to_vec();
        Ok(SignedIdentity {
            doc,
            sig,
            prev_sig: None,
        })
    }

    /// The next version: the same universe and metadata under `new_key`, signed by it and by
    /// `old_key` (the key of `self`).
    pub fn rotate(
        &self,
        old_key: &SigningKey,
        new_key: &SigningKey,
    ) -> Result<SignedIdentity, CborError> {
        let mut doc = self.doc.clone();
        doc.version = self.doc.version.saturating_add(1);
        doc.public_key = new_key.verifying_key().to_bytes();
        let bytes = doc.signing_bytes()?;
        Ok(SignedIdentity {
            doc,
            sig: new_key.sign(&bytes).to_bytes().to_vec(),
            prev_sig: Some(old_key.sign(&bytes).to_bytes().to_vec()),
        })
    }

    /// Canonical bytes: `{doc, sig, prev_sig?}`.
    pub fn encode(&self) -> Result<Vec<u8>, CborError> {
        let mut map = vec![
            (text("doc"), self.doc.value()),
            (text("sig"), Value::Bytes(self.sig.clone())),
        ];
        if let Some(prev) = &self.prev_sig {
            map.push((text("prev_sig"), Value::Bytes(prev.clone())));
        }
        cbor::encode(&Value::Map(map))
    }

    /// Parses canonical bytes (at most [`MAX_IDENTITY`]); checks shape only, not signatures.
    pub fn decode(bytes: &[u8]) -> Result<SignedIdentity, IdentityError> {
        if bytes.len() > MAX_IDENTITY {
            return Err(malformed(format!(
                "{} bytes exceed {MAX_IDENTITY}",
                bytes.len()
            )));
        }
        let value = cbor::decode(bytes).map_err(malformed)?;
        let map = fields::as_map(&value, "signed identity").map_err(malformed)?;
        fields::only(map, &["doc", "prev_sig", "sig"]).map_err(malformed)?;
        let doc = IdentityDoc::from_value(fields::require(map, "doc").map_err(malformed)?)?;
        let sig = fields::as_bytes(fields::require(map, "sig").map_err(malformed)?, "sig")
            .map_err(malformed)?
            .to_vec();
        let prev_sig = match fields::get(map, "prev_sig") {
            Some(v) => Some(fields::as_bytes(v, "prev_sig").map_err(malformed)?.to_vec()),
            None => None,
        };
        Ok(SignedIdentity { doc, sig, prev_sig })
    }

    /// Whether `sig` verifies over this document's bytes under `key`.
    fn signed_by(&self, key: &[u8; 32], sig: &[u8]) -> bool {
        let Ok(bytes) = self.doc.signing_bytes() else {
            return false;
        };
        let parts = VerifyingKey::from_bytes(key)
            .ok()
            .zip(Signature::from_slice(sig).ok());
        parts.is_some_and(|(key, sig)| key.verify(&bytes, &sig).is_ok())
    }

    /// Checks this document against the version last verified (`known`; none for version 1,
    /// which must then be this one) and returns it verified.
    pub fn verify_after(&self, known: Option<&IdentityDoc>) -> Result<&IdentityDoc, IdentityError> {
        let doc = &self.doc;
        let bad = |which| IdentityError::BadSignature {
            version: doc.version,
            which,
        };
        match known {
            None if doc.version != 1 => {
                return Err(IdentityError::Gap {
                    have: 0,
                    got: doc.version,
                })
            }
            None => {
                if self.prev_sig.is_some() {
                    return Err(malformed("version 1 has no previous key"));
                }
            }
            Some(known) => {
                if known.universe != doc.universe {
                    return Err(IdentityError::OtherUniverse);
                }
                if doc.version == known.version && doc != known {
                    return Err(IdentityError::Equivocation {
                        version: doc.version,
                    });
                }
                if doc.version <= known.version {
                    return Err(IdentityError::Replayed {
                        have: known.version,
                        got: doc.version,
                    });
                }
                if doc.version != known.version + 1 {
                    return Err(IdentityError::Gap {
                        have: known.version,
                        got: doc.version,
                    });
                }
                let prev = self.prev_sig.as_deref().unwrap_or_default();
                if !self.signed_by(&known.public_key, prev) {
                    return Err(bad("previous key's"));
                }
            }
        }
        if !self.signed_by(&doc.public_key, &self.sig) {
            return Err(bad("own"));
        }
        Ok(doc)
    }

    /// Verifies a whole chain, version 1 first; returns the last document.
    pub fn verify_chain(chain: &[SignedIdentity]) -> Result<&IdentityDoc, IdentityError> {
        let mut known: Option<&IdentityDoc> = None;
        for next in chain {
            known = Some(next.verify_after(known)?);
        }
        known.ok_or_else(|| malformed("an empty identity chain"))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn key(seed: u8) -> SigningKey {
        SigningKey::from_bytes(&[seed; 32])
    }

    fn first() -> SignedIdentity {
        SignedIdentity::first(
            IdentityDoc {
                universe: [7; 16],
                version: 0,
                public_key: [0; 32],
                name: "upstream".into(),
                owner: "ann".into(),
                description: "published snapshots".into(),
                created: 1_700_000_000,
            },
            &key(1),
        )
        .expect("sign")
    }

    #[test]
    fn a_chain_of_rotations_verifies_and_round_trips() {
        let v1 = first();
        let v2 = v1.rotate(&key(1), &key(2)).expect("rotate");
        let v3 = v2.rotate(&key(2), &key(3)).expect("rotate");
        let chain = [v1.clone(), v2.clone(), v3.clone()];
        let last = SignedIdentity::verify_chain(&chain).expect("chain");
        assert_eq!(
            (last.version, last.public_key),
            (3, key(3).verifying_key().to_bytes())
        );
        for doc in &chain {
            let bytes = doc.encode().expect("encode");
            assert_eq!(&SignedIdentity::decode(&bytes).expect("decode"), doc);
        }
        // Signing is deterministic: the same identity signs to the same bytes on every machine.
        assert_eq!(first().encode().unwrap(), v1.encode().unwrap());
    }

    #[test]
    fn replays_gaps_forgeries_and_equivocation_are_refused_with_their_codes() {
        let v1 = first();
        let v2 = v1.rotate(&key(1), &key(2)).expect("rotate");
        let v3 = v2.rotate(&key(2), &key(3)).expect("rotate");
        let code = |r: Result<&IdentityDoc, IdentityError>| r.map(|_| ()).map_err(|e| e.code());
        // A replayed older version, and the same version again with other content.
        assert_eq!(code(v1.verify_after(Some(&v2.doc))), Err(Code::Replayed));
        let mut other = v2.clone();
        other.doc.name = "impostor".into();
        assert_eq!(
            code(other.verify_after(Some(&v2.doc))),
            Err(Code::Equivocation)
        );
        // Skipping a version, and a first contact at version 3 without the chain.
        assert_eq!(code(v3.verify_after(Some(&v1.doc))), Err(Code::IdentityGap));
        assert_eq!(code(v3.verify_after(None)), Err(Code::IdentityGap));
        // Rotated without the old key: signed by the new key twice.
        let forged = v1.rotate(&key(9), &key(2)).expect("rotate");
        assert_eq!(
            code(forged.verify_after(Some(&v1.doc))),
            Err(Code::BadSignature)
        );
        // A key swapped into a signed document.
        let mut swapped = v2.clone();
        swapped.doc.public_key = key(9).verifying_key().to_bytes();
        assert_eq!(
            code(swapped.verify_after(Some(&v1.doc))),
            Err(Code::BadSignature)
        );
        // Another universe's version 2.
        let mut foreign = v2.clone();
        foreign.doc.universe = [8; 16];
        assert_eq!(
            code(foreign.verify_after(Some(&v1.doc))),
            Err(Code::OtherUniverse)
        );
        // Tampered bytes and oversized input are malformed.
        let mut bytes = v1.encode().unwrap();
        bytes.push(0);
        assert_eq!(
            SignedIdentity::decode(&bytes).unwrap_err().code(),
            Code::Malformed
        );
        let huge = vec![0u8; MAX_IDENTITY + 1];
        assert_eq!(
            SignedIdentity::decode(&huge).unwrap_err().code(),
            Code::Malformed
        );
        // The genuine next version still verifies after all that.
        assert!(v2.verify_after(Some(&v1.doc)).is_ok());
    }

    #[test]
    fn an_identity_signature_is_not_an_envelope_signature() {
        let v1 = first();
        let bytes = v1.doc.signing_bytes().unwrap();
        let value = cbor::decode(&bytes).unwrap();
        let map = fields::as_map(&value, "signed").unwrap();
        assert_eq!(
            fields::as_text(fields::require(map, "domain").unwrap(), "domain").unwrap(),
            IDENTITY_DOMAIN
        );
    }
}
