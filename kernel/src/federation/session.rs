//! Session tokens: what an accept hands the importer, and every later request of the session
//! carries. A token is `peer (16) || issued (8, seconds, big-endian) || capabilities (1, a bit
//! per [`jit_proto::federation::CAPABILITIES`] entry) || MAC (32)`, the MAC a keyed BLAKE3 over
//! the rest under a key derived from the universe key
//! ([`crate::identity::UniverseIdentity::session_key`]).
//!
//! Tokens are stateless: the publisher keeps no session table that a flood could fill or a
//! restart could lose, and a token is good for [`TTL_SECS`] on any replica that holds the key.
//! Without a token nothing is listed: the head, manifests and nodes are served only within a
//! session, that is after a verified hello from a universe that is not denied.

use jit_proto::federation::CAPABILITIES;
use uuid::Uuid;

use crate::error::{Code, Error, Result};

/// How long a token is good for.
pub const TTL_SECS: u64 = 24 * 3600;
/// Slack allowed for a token issued by a replica whose clock runs ahead.
const SKEW_SECS: u64 = 300;
/// Length of a token.
pub const TOKEN_LEN: usize = 16 + 8 + 1 + 32;

/// A verified session: who, and which capabilities both sides share.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Session {
    /// The other universe.
    pub peer: Uuid,
    /// A bit per capability shared.
    capabilities: u8,
}

impl Session {
    /// Whether the session shares `capability`.
    pub fn shares(&self, capability: &str) -> bool {
        CAPABILITIES
            .iter()
            .position(|c| *c == capability)
            .is_some_and(|bit| self.capabilities & (1 << bit) != 0)
    }

    /// Refuses (`unsupported`) unless the session shares `capability`.
    pub fn require(&self, capability: &str) -> Result<()> {
        if self.shares(capability) {
            return Ok(());
        }
        Err(Error::Federation {
            code: Code::Unsupported,
            message: format!("the session does not share the capability {capability}"),
        })
    }
}

fn mac(key: &[u8; 32], body: &[u8]) -> [u8; 32] {
    *blake3::keyed_hash(key, body).as_bytes()
}

/// A token for `peer` sharing `capabilities`, issued at `now` (seconds).
pub fn issue(key: &[u8; 32], peer: Uuid, capabilities: &[String], now: u64) -> Vec<u8> {
    let mut bits = 0u8;
    for (bit, capability) in CAPABILITIES.iter().enumerate() {
        if capabilities.iter().any(|c| c == capability) {
            bits |= 1 << bit;
        }
    }
    let mut token = Vec::with_capacity(TOKEN_LEN);
    token.extend_from_slice(peer.as_bytes());
    token.extend_from_slice(&now.to_be_bytes());
    token.push(bits);
    let tag = mac(key, &token);
    token.extend_from_slice(&tag);
    token
}

/// Checks a token at `now`; refuses (`forbidden`) a forged, malformed or expired one.
pub fn check(key: &[u8; 32], token: &[u8], now: u64) -> Result<Session> {
    let refuse = |why: &str| Error::Federation {
        code: Code::Forbidden,
        message: format!("no session: {why} (start one with a hello)"),
    };
    if token.len() != TOKEN_LEN {
        return Err(refuse("the token is malformed"));
    }
    let (body, tag) = token.split_at(TOKEN_LEN - 32);
    // Constant-time comparison: blake3's Hash equality is.
    if blake3::Hash::from(mac(key, body))
        != blake3::Hash::from(<[u8; 32]>::try_from(tag).unwrap_or_default())
    {
        return Err(refuse("the token is not this universe's"));
    }
    let issued = u64::from_be_bytes(body[16..24].try_into().unwrap_or_default());
    if issued > now + SKEW_SECS || now.saturating_sub(issued) > TTL_SECS {
        return Err(refuse("the token expired"));
    }
    let peer = Uuid::from_slice(&body[..16]).map_err(|_| refuse("the token is malformed"))?;
    Ok(Session {
        peer,
        capabilities: body[24],
    })
}

/// Seconds since the epoch, as the signed time records keep.
pub(crate) fn now_signed() -> i64 {
    i64::try_from(now()).unwrap_or(i64::MAX)
}

/// Seconds since the epoch.
pub fn now() -> u64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| d.as_secs())
}

#[cfg(test)]
mod tests {
    use super::*;
    use jit_proto::federation::{CAP_FETCH, CAP_HEAD};

    #[test]
    fn a_token_checks_under_its_key_until_it_expires() {
        let key = [7u8; 32];
        let peer = Uuid::from_bytes([3; 16]);
        let token = issue(&key, peer, &[CAP_HEAD.to_owned()], 1000);
        let session = check(&key, &token, 1000).unwrap();
        assert_eq!(session.peer, peer);
        assert!(session.shares(CAP_HEAD));
        assert!(!session.shares(CAP_FETCH));
        assert_eq!(
            session.require(CAP_FETCH).unwrap_err().code(),
            Code::Unsupported
        );
        assert!(check(&[8u8; 32], &token, 1000).is_err());
        assert!(check(&key, &token, 1000 + TTL_SECS + 1).is_err());
        let mut forged = token.clone();
        forged[24] = 0xff;
        assert_eq!(
            check(&key, &forged, 1000).unwrap_err().code(),
            Code::Forbidden
        );
        assert!(check(&key, &token[..20], 1000).is_err());
    }
}
