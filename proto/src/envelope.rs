//! The signed message an agent sends on the plane (RFC-0008, RFC-0017): a canonical CBOR map
//! `{sender, ts, msg_id, payload, sig}`. `sig` is an ed25519 signature over the canonical CBOR
//! of `{key, msg_id, payload, sender, ts}`, where `key` is the message's key expression
//! (without namespace): the signature binds the message to its topic, so one signed for one SWS
//! or verb cannot be replayed on another.

use ciborium::value::Value;
use ed25519_dalek::{Signature, Signer, SigningKey, Verifier, VerifyingKey};

use crate::cbor::{self, fields, CborError};

/// Largest envelope accepted, in bytes.
pub const MAX_MESSAGE: usize = 4 << 20;

/// Longest `msg_id` accepted, in bytes.
pub const MAX_MSG_ID: usize = 128;

/// A message on the plane.
#[derive(Debug, Clone, PartialEq)]
pub struct Envelope {
    /// The agent.
    pub sender: String,
    /// The sender's logical clock; strictly increasing per sender.
    pub ts: u64,
    /// Unique per sender; a retry repeats it.
    pub msg_id: String,
    /// The operation's arguments.
    pub payload: Value,
    /// ed25519 signature over [`Envelope::signing_bytes`].
    pub sig: Vec<u8>,
}

fn text(s: &str) -> Value {
    Value::Text(s.to_owned())
}

impl Envelope {
    /// The bytes the signature covers: canonical CBOR of `{key, msg_id, payload, sender, ts}`.
    pub fn signing_bytes(&self, key: &str) -> Result<Vec<u8>, CborError> {
        cbor::encode(&Value::Map(vec![
            (text("key"), text(key)),
            (text("msg_id"), text(&self.msg_id)),
            (text("payload"), self.payload.clone()),
            (text("sender"), text(&self.sender)),
            (text("ts"), Value::Integer(self.ts.into())),
        ]))
    }

    /// Builds and signs an envelope for topic `key`.
    pub fn signed(
        key: &str,
        sender: &str,
        ts: u64,
        msg_id: String,
        payload: Value,
        signing: &SigningKey,
    ) -> Result<Envelope, CborError> {
        let mut envelope = Envelope {
            sender: sender.to_owned(),
            ts,
            msg_id,
            payload,
            sig: Vec::new(),
        };
        envelope.sig = signing
            .sign(&envelope.signing_bytes(key)?)
            .to_bytes()
            .to_vec();
        Ok(envelope)
    }

    /// Canonical CBOR of the envelope.
    pub fn encode(&self) -> Result<Vec<u8>, CborError> {
        cbor::encode(&Value::Map(vec![
            (text("sender"), text(&self.sender)),
            (text("ts"), Value::Integer(self.ts.into())),
            (text("msg_id"), text(&self.msg_id)),
            (text("payload"), self.payload.clone()),
            (text("sig"), Value::Bytes(self.sig.clone())),
        ]))
    }

    /// Strictly decodes an envelope (a missing `sig` decodes as empty: refused as unsigned).
    pub fn decode(bytes: &[u8]) -> Result<Envelope, CborError> {
        let value = cbor::decode(bytes)?;
        let map = fields::as_map(&value, "envelope")?;
        fields::only(map, &["sender", "ts", "msg_id", "payload", "sig"])?;
        Ok(Envelope {
            sender: fields::as_text(fields::require(map, "sender")?, "sender")?.to_owned(),
            ts: fields::as_u64(fields::require(map, "ts")?, "ts")?,
            msg_id: fields::as_text(fields::require(map, "msg_id")?, "msg_id")?.to_owned(),
            payload: fields::require(map, "payload")?.clone(),
            sig: match fields::get(map, "sig") {
                Some(sig) => fields::as_bytes(sig, "sig")?.to_vec(),
                None => Vec::new(),
            },
        })
    }

    /// Whether `sig` is `public`'s signature over this envelope sent on `key`.
    pub fn signature_holds(&self, key: &str, public: &VerifyingKey) -> bool {
        let Ok(sig) = Signature::from_slice(&self.sig) else {
            return false;
        };
        match self.signing_bytes(key) {
            Ok(bytes) => public.verify(&bytes, &sig).is_ok(),
            Err(_) => false,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_signed_envelope_round_trips_and_binds_its_key() {
        let key = SigningKey::from_bytes(&[7; 32]);
        let payload = Value::Map(vec![(Value::Text("a".into()), Value::Integer(1.into()))]);
        let envelope =
            Envelope::signed("jit/kernel/create", "agent", 3, "m1".into(), payload, &key)
                .expect("signs");
        let decoded = Envelope::decode(&envelope.encode().expect("encodes")).expect("decodes");
        assert_eq!(decoded, envelope);
        assert!(decoded.signature_holds("jit/kernel/create", &key.verifying_key()));
        assert!(!decoded.signature_holds("jit/sws/00/commit", &key.verifying_key()));
        let other = SigningKey::from_bytes(&[8; 32]);
        assert!(!decoded.signature_holds("jit/kernel/create", &other.verifying_key()));
    }
}
