//! Checking signed plane messages before anything runs: size, key expression, envelope shape,
//! the sender's registered key, and the signature — everything that needs no store. Whoever
//! holds the registry (the kernel, or a test, or a peer) supplies each sender's key through a
//! lookup; the answer for each message is a [`Checked`] message or a [`Refusal`] with its code.
//!
//! Signatures of a batch are checked together with ed25519 batch verification (about twice as
//! fast per message as one by one); if the batch fails, each is checked alone to find the
//! culprits. Every check — batch or alone — uses the same cofactored equation, so whether a
//! message is accepted never depends on what it arrived with.

use ed25519_dalek::{Signature, VerifyingKey};

use crate::code::Code;
use crate::envelope::{Envelope, MAX_MESSAGE, MAX_MSG_ID};
use crate::keyexpr::Target;

/// A message whose every check passed.
#[derive(Debug, Clone)]
pub struct Checked<R> {
    /// The parsed envelope.
    pub envelope: Envelope,
    /// What it asks for (from its key).
    pub target: Target,
    /// The sender's registration, as the lookup gave it.
    pub signer: R,
    /// BLAKE3 of the signed bytes: tells a retry (same digest) from a replay (same `msg_id`,
    /// other content).
    pub digest: [u8; 32],
}

/// Why a message was refused.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Refusal {
    /// The stable code.
    pub code: Code,
    /// One line for a human.
    pub message: String,
    /// The sender the envelope names, when it could be decoded (for a message that did not
    /// verify, only who it *claims* to be): audit records name it.
    pub sender: Option<String>,
}

fn refuse(code: Code, message: impl Into<String>) -> Refusal {
    Refusal {
        code,
        message: message.into(),
        sender: None,
    }
}

/// A sender's registration and its ed25519 public key, or none for an unknown sender; an
/// error (the registry could not be read) refuses the message as `internal`.
pub type Lookup<R> = Result<Option<(R, Vec<u8>)>, String>;

/// Checks `messages` (key expression without namespace, envelope bytes), answering in order.
pub fn check_batch<R>(
    messages: &[(&str, &[u8])],
    mut lookup: impl FnMut(&str) -> Lookup<R>,
) -> Vec<Result<Checked<R>, Refusal>> {
    let mut verdicts: Vec<_> = messages
        .iter()
        .map(|(key, bytes)| prepare(key, bytes, &mut lookup))
        .collect();
    let signed: Vec<&Prepared<R>> = verdicts.iter().filter_map(|v| v.as_ref().ok()).collect();
    if !signed.is_empty() && !signatures_hold(&signed) {
        for verdict in verdicts.iter_mut() {
            if let Ok(prepared) = verdict {
                if !signatures_hold(&[prepared]) {
                    let sender = prepared.checked.envelope.sender.clone();
                    *verdict = Err(Refusal {
                        sender: Some(sender.clone()),
                        ..refuse(
                            Code::BadSignature,
                            format!("the signature does not verify for {sender:?}"),
                        )
                    });
                }
            }
        }
    }
    verdicts
        .into_iter()
        .map(|verdict| verdict.map(|prepared| prepared.checked))
        .collect()
}

/// A message that passed every check but its signature.
struct Prepared<R> {
    checked: Checked<R>,
    signed: Vec<u8>,
    public: VerifyingKey,
    sig: Signature,
}

/// Checks the signatures of `batch` together.
fn signatures_hold<R>(batch: &[&Prepared<R>]) -> bool {
    let messages: Vec<&[u8]> = batch.iter().map(|p| p.signed.as_slice()).collect();
    let sigs: Vec<Signature> = batch.iter().map(|p| p.sig).collect();
    let keys: Vec<VerifyingKey> = batch.iter().map(|p| p.public).collect();
    ed25519_dalek::verify_batch(&messages, &sigs, &keys).is_ok()
}

/// Size, key, shape and sender; the signature's parts parsed but not yet checked.
fn prepare<R>(
    key: &str,
    bytes: &[u8],
    lookup: &mut impl FnMut(&str) -> Lookup<R>,
) -> Result<Prepared<R>, Refusal> {
    if bytes.len() > MAX_MESSAGE {
        return Err(refuse(
            Code::TooLarge,
            format!("message of {} bytes exceeds {MAX_MESSAGE}", bytes.len()),
        ));
    }
    let Some(target) = Target::parse(key) else {
        return Err(refuse(
            Code::UnknownTopic,
            format!("no operation on {key:?}"),
        ));
    };
    let envelope = Envelope::decode(bytes)
        .map_err(|e| refuse(Code::Malformed, format!("not a canonical envelope: {e}")))?;
    let sender = envelope.sender.clone();
    prepare_envelope(key, target, envelope, lookup).map_err(|refusal| Refusal {
        sender: Some(sender),
        ..refusal
    })
}

/// [`prepare`] once the envelope is decoded.
fn prepare_envelope<R>(
    key: &str,
    target: Target,
    envelope: Envelope,
    lookup: &mut impl FnMut(&str) -> Lookup<R>,
) -> Result<Prepared<R>, Refusal> {
    if envelope.msg_id.is_empty() || envelope.msg_id.len() > MAX_MSG_ID {
        return Err(refuse(Code::Malformed, "msg_id must be 1-128 bytes"));
    }
    if envelope.sig.is_empty() {
        return Err(refuse(Code::Unsigned, "the envelope carries no signature"));
    }
    let (signer, public_key) = match lookup(&envelope.sender) {
        Ok(Some(found)) => found,
        Ok(None) => {
            return Err(refuse(
                Code::UnknownAgent,
                format!("no agent named {:?}", envelope.sender),
            ))
        }
        Err(e) => return Err(refuse(Code::Internal, e)),
    };
    let signed = envelope
        .signing_bytes(key)
        .map_err(|e| refuse(Code::Malformed, e.to_string()))?;
    let parts = VerifyingKey::try_from(public_key.as_slice())
        .ok()
        .zip(Signature::from_slice(&envelope.sig).ok());
    let Some((public, sig)) = parts else {
        return Err(refuse(
            Code::BadSignature,
            format!("the signature does not verify for {:?}", envelope.sender),
        ));
    };
    Ok(Prepared {
        checked: Checked {
            digest: *blake3::hash(&signed).as_bytes(),
            envelope,
            target,
            signer,
        },
        signed,
        public,
        sig,
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use ciborium::value::Value;
    use ed25519_dalek::SigningKey;

    const KEY: &str = "jit/kernel/create";

    fn signed(seed: u8, sender: &str, id: &str) -> Vec<u8> {
        Envelope::signed(
            KEY,
            sender,
            1,
            id.into(),
            Value::Map(Vec::new()),
            &SigningKey::from_bytes(&[seed; 32]),
        )
        .expect("sign")
        .encode()
        .expect("encode")
    }

    /// Registered: "ann" with seed 1's key and "bob" with seed 2's.
    fn lookup(name: &str) -> Lookup<&'static str> {
        let key = |seed: u8| {
            SigningKey::from_bytes(&[seed; 32])
                .verifying_key()
                .to_bytes()
                .to_vec()
        };
        Ok(match name {
            "ann" => Some(("ann's record", key(1))),
            "bob" => Some(("bob's record", key(2))),
            _ => None,
        })
    }

    #[test]
    fn a_batch_accepts_the_genuine_and_names_each_refusal() {
        let good = signed(1, "ann", "m1");
        let forged = signed(9, "bob", "m2");
        let stranger = signed(3, "cyd", "m3");
        let mut unsigned = Envelope::decode(&signed(1, "ann", "m4")).expect("decode");
        unsigned.sig.clear();
        let unsigned = unsigned.encode().expect("encode");
        let also_good = signed(2, "bob", "m5");
        let messages: Vec<(&str, &[u8])> = vec![
            (KEY, &good),
            (KEY, &forged),
            (KEY, &stranger),
            (KEY, &unsigned),
            ("jit/kernel/frobnicate", &good),
            (KEY, &[0xff, 0x00]),
            (KEY, &also_good),
        ];
        let verdicts = check_batch(&messages, lookup);
        let codes: Vec<Option<Code>> = verdicts
            .iter()
            .map(|v| v.as_ref().err().map(|r| r.code))
            .collect();
        assert_eq!(
            codes,
            vec![
                None,
                Some(Code::BadSignature),
                Some(Code::UnknownAgent),
                Some(Code::Unsigned),
                Some(Code::UnknownTopic),
                Some(Code::Malformed),
                None,
            ]
        );
        let accepted = verdicts[0].as_ref().expect("accepted");
        assert_eq!(accepted.signer, "ann's record");
        assert_eq!(accepted.target, Target::Create);
        // A message signed for one key does not verify on another.
        let moved = check_batch(
            &[("jit/sws/00112233445566778899aabbccddeeff/discard", &good)],
            lookup,
        );
        assert_eq!(
            moved[0].as_ref().err().map(|r| r.code),
            Some(Code::BadSignature)
        );
    }
}
