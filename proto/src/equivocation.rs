//! Equivocation proofs (issue #20): two heads a universe signed that cannot both be true, with
//! the evidence, verifiable offline by anyone who has the universe's public key and nothing
//! else. A publisher that shows one history to one importer and another to a second is caught
//! as soon as the two compare notes, and the note they compare is this.
//!
//! Two validly signed heads of one universe are inconsistent when:
//! - **same epoch**: they are different heads for one epoch;
//! - **shrank**: the later epoch's log is shorter than the earlier one's;
//! - **forked**: leaf `index` of the two logs differs — each leaf shown by an RFC 9162
//!   inclusion proof against its head's root (O(log n) hashes). This covers a later log that
//!   does not extend the earlier one, and two logs of one size with different roots.
//!
//! Canonical CBOR: `{"first": <signed head>, "second": <signed head>, "evidence": …}` where the
//! evidence is `{"kind": "same-epoch"}`, `{"kind": "shrank"}` or `{"kind": "forked", "index":
//! uint, "first_leaf": bytes(32), "first_path": [bytes(32)], "second_leaf": bytes(32),
//! "second_path": [bytes(32)]}`. At most [`MAX_PROOF`] bytes and [`MAX_PATH`] hashes per path,
//! refused unread beyond.

use ciborium::value::Value;

use crate::cbor::{self, fields, CborError};
use crate::code::{Code, Coded};
use crate::head::SignedHead;
use crate::merkle::{self, Hash};

/// Largest encoded proof accepted.
pub const MAX_PROOF: usize = 8 * 1024;
/// Most hashes in one inclusion path (a log of 2^64 entries needs 64).
pub const MAX_PATH: usize = 64;

/// What shows the two heads cannot both be true.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Evidence {
    /// Two different heads for one epoch.
    SameEpoch,
    /// A later epoch with a shorter log.
    Shrank,
    /// Leaf `index` differs between the two logs.
    Forked {
        /// The leaf's position.
        index: u64,
        /// Its hash in the first head's log, and the inclusion path to that head's root.
        first_leaf: Hash,
        /// The first inclusion path.
        first_path: Vec<Hash>,
        /// Its hash in the second head's log.
        second_leaf: Hash,
        /// The second inclusion path.
        second_path: Vec<Hash>,
    },
}

/// Two signed heads and the evidence that they are inconsistent.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct EquivocationProof {
    /// One head (the earlier epoch when they differ).
    pub first: SignedHead,
    /// The other.
    pub second: SignedHead,
    /// Why both cannot be true.
    pub evidence: Evidence,
}

/// Why a proof was refused.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum ProofError {
    /// Not a canonical proof, or too large.
    #[error("not an equivocation proof: {0}")]
    Malformed(String),
    /// A head does not verify under the universe's key.
    #[error("a head in the proof is not signed by the universe's key")]
    BadSignature,
    /// The heads are of different universes.
    #[error("the heads in the proof are of different universes")]
    OtherUniverse,
    /// The evidence does not show what it claims.
    #[error("the proof does not show an equivocation: {0}")]
    NotProven(String),
}

impl Coded for ProofError {
    fn code(&self) -> Code {
        match self {
            ProofError::Malformed(_) => Code::Malformed,
            ProofError::BadSignature => Code::BadSignature,
            ProofError::OtherUniverse => Code::OtherUniverse,
            ProofError::NotProven(_) => Code::InvalidInput,
        }
    }
}

fn malformed(e: impl std::fmt::Display) -> ProofError {
    ProofError::Malformed(e.to_string())
}

fn text(s: &str) -> Value {
    Value::Text(s.to_owned())
}

fn hashes(path: &[Hash]) -> Value {
    Value::Array(path.iter().map(|h| Value::Bytes(h.to_vec())).collect())
}

fn hash_of(v: &Value, what: &str) -> Result<Hash, ProofError> {
    fields::as_bytes(v, what)
        .map_err(malformed)?
        .try_into()
        .map_err(|_| malformed(format!("{what} is not 32 bytes")))
}

fn path_of(v: &Value, what: &str) -> Result<Vec<Hash>, ProofError> {
    let items = fields::as_array(v, what).map_err(malformed)?;
    if items.len() > MAX_PATH {
        return Err(malformed(format!(
            "{what} holds more than {MAX_PATH} hashes"
        )));
    }
    items.iter().map(|h| hash_of(h, what)).collect()
}

impl EquivocationProof {
    /// The proof that `a` and `b` (heads of one universe, with the leaf hashes of the logs they
    /// cover) are inconsistent; None when one extends the other (or they are the same).
    pub fn between(
        a: &SignedHead,
        a_leaves: &[Hash],
        b: &SignedHead,
        b_leaves: &[Hash],
    ) -> Option<EquivocationProof> {
        let ((first, first_leaves), (second, second_leaves)) = if a.head.epoch <= b.head.epoch {
            ((a, a_leaves), (b, b_leaves))
        } else {
            ((b, b_leaves), (a, a_leaves))
        };
        let proof = |evidence| {
            Some(EquivocationProof {
                first: first.clone(),
                second: second.clone(),
                evidence,
            })
        };
        if first.head == second.head {
            return None;
        }
        if first.head.epoch == second.head.epoch {
            return proof(Evidence::SameEpoch);
        }
        if second.head.size < first.head.size {
            return proof(Evidence::Shrank);
        }
        let index = first_leaves
            .iter()
            .zip(second_leaves)
            .position(|(x, y)| x != y)?;
        proof(Evidence::Forked {
            index: index as u64,
            first_leaf: first_leaves[index],
            first_path: merkle::inclusion_proof(first_leaves, index)?,
            second_leaf: second_leaves[index],
            second_path: merkle::inclusion_proof(second_leaves, index)?,
        })
    }

    /// The evidence's kind as it is encoded: `same-epoch`, `shrank` or `forked`.
    pub fn evidence_kind(&self) -> &'static str {
        match self.evidence {
            Evidence::SameEpoch => "same-epoch",
            Evidence::Shrank => "shrank",
            Evidence::Forked { .. } => "forked",
        }
    }

    /// Checks the proof with the universe's public key alone: both heads are signed by it, are
    /// of one universe, and the evidence holds.
    pub fn verify(&self, public_key: &[u8; 32]) -> Result<(), ProofError> {
        let (first, second) = (
            self.first
                .verify(public_key)
                .map_err(|_| ProofError::BadSignature)?,
            self.second
                .verify(public_key)
                .map_err(|_| ProofError::BadSignature)?,
        );
        if first.universe != second.universe {
            return Err(ProofError::OtherUniverse);
        }
        match &self.evidence {
            Evidence::SameEpoch if first.epoch == second.epoch && first != second => Ok(()),
            Evidence::SameEpoch => Err(ProofError::NotProven(
                "the heads are not two different heads of one epoch".into(),
            )),
            Evidence::Shrank if first.epoch < second.epoch && second.size < first.size => Ok(()),
            Evidence::Shrank => Err(ProofError::NotProven(
                "the later head's log is not shorter".into(),
            )),
            Evidence::Forked {
                index,
                first_leaf,
                first_path,
                second_leaf,
                second_path,
            } => {
                if first_leaf == second_leaf {
                    return Err(ProofError::NotProven("the two leaves are the same".into()));
                }
                let shown = merkle::verify_inclusion(
                    first_leaf,
                    *index,
                    first.size,
                    first_path,
                    &first.root,
                ) && merkle::verify_inclusion(
                    second_leaf,
                    *index,
                    second.size,
                    second_path,
                    &second.root,
                );
                if shown {
                    Ok(())
                } else {
                    Err(ProofError::NotProven(format!(
                        "leaf {index} is not shown in both logs"
                    )))
                }
            }
        }
    }

    /// Canonical bytes.
    pub fn encode(&self) -> Result<Vec<u8>, CborError> {
        let evidence = match &self.evidence {
            Evidence::SameEpoch => Value::Map(vec![(text("kind"), text("same-epoch"))]),
            Evidence::Shrank => Value::Map(vec![(text("kind"), text("shrank"))]),
            Evidence::Forked {
                index,
                first_leaf,
                first_path,
                second_leaf,
                second_path,
            } => Value::Map(vec![
                (text("kind"), text("forked")),
                (text("index"), Value::Integer((*index).into())),
                (text("first_leaf"), Value::Bytes(first_leaf.to_vec())),
                (text("first_path"), hashes(first_path)),
                (text("second_leaf"), Value::Bytes(second_leaf.to_vec())),
                (text("second_path"), hashes(second_path)),
            ]),
        };
        let head = |h: &SignedHead| -> Result<Value, CborError> { Ok(Value::Bytes(h.encode()?)) };
        cbor::encode(&Value::Map(vec![
            (text("evidence"), evidence),
            (text("first"), head(&self.first)?),
            (text("second"), head(&self.second)?),
        ]))
    }

    /// Parses canonical bytes (at most [`MAX_PROOF`], refused before decoding); checks shape,
    /// not the evidence ([`EquivocationProof::verify`] does).
    pub fn decode(bytes: &[u8]) -> Result<EquivocationProof, ProofError> {
        if bytes.len() > MAX_PROOF {
            return Err(malformed(format!(
                "{} bytes exceed {MAX_PROOF}",
                bytes.len()
            )));
        }
        let value = cbor::decode(bytes).map_err(malformed)?;
        let map = fields::as_map(&value, "proof").map_err(malformed)?;
        fields::only(map, &["evidence", "first", "second"]).map_err(malformed)?;
        let head = |key: &str| -> Result<SignedHead, ProofError> {
            let bytes = fields::as_bytes(fields::require(map, key).map_err(malformed)?, key)
                .map_err(malformed)?;
            SignedHead::decode(bytes).map_err(malformed)
        };
        let evidence = fields::as_map(
            fields::require(map, "evidence").map_err(malformed)?,
            "evidence",
        )
        .map_err(malformed)?;
        let kind = fields::as_text(
            fields::require(evidence, "kind").map_err(malformed)?,
            "kind",
        )
        .map_err(malformed)?;
        let evidence = match kind {
            "same-epoch" | "shrank" => {
                fields::only(evidence, &["kind"]).map_err(malformed)?;
                if kind == "shrank" {
                    Evidence::Shrank
                } else {
                    Evidence::SameEpoch
                }
            }
            "forked" => {
                fields::only(
                    evidence,
                    &[
                        "first_leaf",
                        "first_path",
                        "index",
                        "kind",
                        "second_leaf",
                        "second_path",
                    ],
                )
                .map_err(malformed)?;
                let get = |key: &str| fields::require(evidence, key).map_err(malformed);
                Evidence::Forked {
                    index: fields::as_u64(get("index")?, "index").map_err(malformed)?,
                    first_leaf: hash_of(get("first_leaf")?, "first_leaf")?,
                    first_path: path_of(get("first_path")?, "first_path")?,
                    second_leaf: hash_of(get("second_leaf")?, "second_leaf")?,
                    second_path: path_of(get("second_path")?, "second_path")?,
                }
            }
            other => return Err(malformed(format!("unknown evidence {other:?}"))),
        };
        let proof = EquivocationProof {
            first: head("first")?,
            second: head("second")?,
            evidence,
        };
        if proof.encode().map_err(malformed)? != bytes {
            return Err(malformed("not in canonical form"));
        }
        Ok(proof)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::head::PublishedHead;
    use ed25519_dalek::SigningKey;

    fn key() -> SigningKey {
        SigningKey::from_bytes(&[3; 32])
    }

    fn log(names: &[&str]) -> Vec<Hash> {
        names
            .iter()
            .map(|n| merkle::leaf_hash(n.as_bytes()))
            .collect()
    }

    fn head(epoch: u64, leaves: &[Hash]) -> SignedHead {
        SignedHead::sign(
            PublishedHead {
                universe: [1; 16],
                epoch,
                size: leaves.len() as u64,
                root: merkle::root(leaves),
            },
            &key(),
        )
        .unwrap()
    }

    fn round_trip(proof: &EquivocationProof) -> EquivocationProof {
        let bytes = proof.encode().unwrap();
        assert!(bytes.len() <= MAX_PROOF);
        EquivocationProof::decode(&bytes).unwrap()
    }

    #[test]
    fn a_consistent_extension_is_no_equivocation() {
        let (old, new) = (log(&["a", "b"]), log(&["a", "b", "c"]));
        let (h1, h2) = (head(1, &old), head(2, &new));
        assert_eq!(EquivocationProof::between(&h1, &old, &h2, &new), None);
        assert_eq!(EquivocationProof::between(&h2, &new, &h2, &new), None);
    }

    #[test]
    fn each_kind_of_split_view_proves_itself_with_the_key_alone() {
        let public = key().verifying_key().to_bytes();
        // Same epoch, another log.
        let (x, y) = (log(&["a", "b"]), log(&["a", "B"]));
        let proof = EquivocationProof::between(&head(2, &x), &x, &head(2, &y), &y).unwrap();
        assert_eq!(proof.evidence, Evidence::SameEpoch);
        round_trip(&proof).verify(&public).unwrap();
        // A later log that rewrote an old entry: forked at index 1.
        let z = log(&["a", "B", "c", "d"]);
        let proof = EquivocationProof::between(&head(2, &x), &x, &head(5, &z), &z).unwrap();
        assert!(matches!(proof.evidence, Evidence::Forked { index: 1, .. }));
        round_trip(&proof).verify(&public).unwrap();
        // A later, shorter log.
        let short = log(&["a"]);
        let proof = EquivocationProof::between(&head(2, &x), &x, &head(3, &short), &short).unwrap();
        assert_eq!(proof.evidence, Evidence::Shrank);
        round_trip(&proof).verify(&public).unwrap();
    }

    #[test]
    fn a_forged_or_false_proof_is_refused() {
        let public = key().verifying_key().to_bytes();
        let (x, y) = (log(&["a", "b"]), log(&["a", "b", "c"]));
        // Consistent heads dressed up as a fork: the leaves are the same.
        let honest = EquivocationProof {
            first: head(1, &x),
            second: head(2, &y),
            evidence: Evidence::Forked {
                index: 1,
                first_leaf: x[1],
                first_path: merkle::inclusion_proof(&x, 1).unwrap(),
                second_leaf: y[1],
                second_path: merkle::inclusion_proof(&y, 1).unwrap(),
            },
        };
        assert!(matches!(
            honest.verify(&public),
            Err(ProofError::NotProven(_))
        ));
        // A leaf that is not in the log it claims.
        let mut lie = honest.clone();
        if let Evidence::Forked { second_leaf, .. } = &mut lie.evidence {
            *second_leaf = merkle::leaf_hash(b"never published");
        }
        assert!(matches!(lie.verify(&public), Err(ProofError::NotProven(_))));
        // Heads signed by someone else.
        let other = SigningKey::from_bytes(&[4; 32]).verifying_key().to_bytes();
        let z = log(&["a", "B"]);
        let proof = EquivocationProof::between(&head(2, &x), &x, &head(2, &z), &z).unwrap();
        assert_eq!(proof.verify(&other), Err(ProofError::BadSignature));
        // Oversized.
        assert!(EquivocationProof::decode(&vec![0u8; MAX_PROOF + 1]).is_err());
    }
}
