//! The universe's identity (RFC-0021): a UUID, an ed25519 key pair and descriptive metadata.
//! The public part lives in `.jit/universe.toml`; the secret key in `.jit/keys/universe.ed25519`
//! (mode 0600). Identity is local configuration, never part of hashed history.

use std::fs;
use std::io::Write;
use std::os::unix::fs::OpenOptionsExt;
use std::path::Path;

use ed25519_dalek::{SigningKey, VerifyingKey};
use serde::{Deserialize, Serialize};

use jit_proto::identity::{IdentityDoc, SignedIdentity};

use crate::error::{Error, Result};

/// The public description of a universe.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct UniverseInfo {
    /// Random UUID chosen at `init`.
    pub id: uuid::Uuid,
    /// Hex of the ed25519 public key.
    pub public_key: String,
    /// Human name.
    pub name: String,
    /// Who runs it.
    pub owner: String,
    /// What it holds.
    pub description: String,
    /// Creation time, seconds since the epoch (local fact, not hashed).
    pub created: i64,
}

/// A universe's identity: public info plus the signing key.
pub struct UniverseIdentity {
    /// Public description.
    pub info: UniverseInfo,
    signing: SigningKey,
}

impl std::fmt::Debug for UniverseIdentity {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("UniverseIdentity")
            .field("info", &self.info)
            .finish_non_exhaustive()
    }
}

/// The public description's file in `.jit/`.
pub const INFO_FILE: &str = "universe.toml";
/// The secret key's file in `.jit/`.
pub const KEY_FILE: &str = "keys/universe.ed25519";

/// Key in the store's `meta` table of the identity the store was made for: `jit fsck` checks
/// that `universe.toml` still names it.
const RECORD_KEY: &str = "universe";

/// Records in the store, as part of `op`, which universe (id and public key) it belongs to.
pub fn record(op: &mut crate::store::Op<'_>, info: &UniverseInfo) -> Result<()> {
    op.put_meta(
        RECORD_KEY,
        format!("{} {}", info.id, info.public_key).as_bytes(),
    )
}

/// The universe id and public key recorded in the store ([`record`]); `None` for a store made
/// before identities were recorded.
pub fn recorded(
    store: &crate::store::Store,
    txn: &crate::store::ReadTxn<'_>,
) -> Result<Option<(String, String)>> {
    let Some(raw) = store.meta.get(txn, RECORD_KEY)? else {
        return Ok(None);
    };
    let text = std::str::from_utf8(raw)
        .map_err(|_| Error::InvalidInput("the store's universe record is not text".into()))?;
    match text.split_once(' ') {
        Some((id, key)) => Ok(Some((id.to_owned(), key.to_owned()))),
        None => Err(Error::InvalidInput(format!(
            "the store's universe record {text:?} is malformed"
        ))),
    }
}

/// The public key (hex) of the secret key stored in `key_file`'s text.
pub fn public_key_of(key_text: &str) -> Option<String> {
    let mut secret = [0u8; 32];
    hex::decode_to_slice(key_text.trim(), &mut secret).ok()?;
    Some(hex::encode(
        SigningKey::from_bytes(&secret).verifying_key().as_bytes(),
    ))
}

impl UniverseInfo {
    /// Reads the public description from `jit_dir/universe.toml`. Every replica has one; only the
    /// universe's origin also holds the secret key.
    pub fn load(jit_dir: &Path) -> Result<UniverseInfo> {
        let info_path = jit_dir.join(INFO_FILE);
        let text = fs::read_to_string(&info_path).map_err(|e| Error::io(&info_path, e))?;
        toml::from_str(&text).map_err(|e| Error::Config {
            path: info_path.clone(),
            reason: e.to_string(),
        })
    }

    /// Writes the public description to `jit_dir/universe.toml`, durably.
    pub fn write(&self, jit_dir: &Path) -> Result<()> {
        let info_path = jit_dir.join(INFO_FILE);
        let text = toml::to_string(self).map_err(|e| Error::Config {
            path: info_path.clone(),
            reason: e.to_string(),
        })?;
        crate::durable::write_durably(&info_path, text.as_bytes())
    }
}

impl UniverseIdentity {
    /// Creates a fresh identity and writes it under `jit_dir`.
    pub fn create(
        jit_dir: &Path,
        name: &str,
        owner: &str,
        created: i64,
    ) -> Result<UniverseIdentity> {
        let signing = SigningKey::generate(&mut rand::rngs::OsRng);
        let info = UniverseInfo {
            id: uuid::Uuid::new_v4(),
            public_key: hex::encode(signing.verifying_key().as_bytes()),
            name: name.to_owned(),
            owner: owner.to_owned(),
            description: String::new(),
            created,
        };
        let key_path = jit_dir.join(KEY_FILE);
        if let Some(parent) = key_path.parent() {
            fs::create_dir_all(parent).map_err(|e| Error::io(parent, e))?;
        }
        let mut key_file = fs::OpenOptions::new()
            .write(true)
            .create_new(true)
            .mode(0o600)
            .open(&key_path)
            .map_err(|e| Error::io(&key_path, e))?;
        key_file
            .write_all(hex::encode(signing.to_bytes()).as_bytes())
            .and_then(|_| key_file.sync_all())
            .map_err(|e| Error::io(&key_path, e))?;
        info.write(jit_dir)?;
        Ok(UniverseIdentity { info, signing })
    }

    /// Loads the identity from `jit_dir`, checking the key pair matches. A replica made by
    /// `jit clone` has no secret key: it can read and sync, not sign for the universe.
    pub fn load(jit_dir: &Path) -> Result<UniverseIdentity> {
        let info_path = jit_dir.join(INFO_FILE);
        let bad = |reason: String| Error::Config {
            path: info_path.clone(),
            reason,
        };
        let info = UniverseInfo::load(jit_dir)?;
        let key_path = jit_dir.join(KEY_FILE);
        let key_hex = match fs::read_to_string(&key_path) {
            Ok(text) => text,
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => {
                return Err(bad(format!(
                    "{} is missing: this replica cannot sign for universe {}; sign on the replica that holds the key",
                    key_path.display(),
                    info.id
                )))
            }
            Err(e) => return Err(Error::io(&key_path, e)),
        };
        let mut secret = [0u8; 32];
        hex::decode_to_slice(key_hex.trim(), &mut secret)
            .map_err(|_| bad("the secret key file is not 64 hex characters".into()))?;
        let signing = SigningKey::from_bytes(&secret);
        if hex::encode(signing.verifying_key().as_bytes()) != info.public_key {
            return Err(bad("the secret key does not match the public key".into()));
        }
        Ok(UniverseIdentity { info, signing })
    }

    /// The public key.
    pub fn verifying_key(&self) -> VerifyingKey {
        self.signing.verifying_key()
    }

    /// Signs bytes with the universe key (handshakes, manifests).
    pub fn sign(&self, message: &[u8]) -> ed25519_dalek::Signature {
        use ed25519_dalek::Signer;
        self.signing.sign(message)
    }

    /// Seals a federation statement (`jit_proto::federation`: hello, accept, manifest).
    pub fn seal<S: jit_proto::federation::Statement>(&self, statement: &S) -> Result<Vec<u8>> {
        Ok(statement.seal(&self.signing)?)
    }

    /// The key that authenticates this universe's federation session tokens: derived from the
    /// universe key under its own context, so it is never the signing key itself.
    pub fn session_key(&self) -> [u8; 32] {
        blake3::derive_key("jit federation session token v1", &self.signing.to_bytes())
    }

    /// Every version of this universe's identity document, version 1 first (what another
    /// universe verifies continuity with).
    pub fn chain(&self) -> Result<Vec<SignedIdentity>> {
        Ok(vec![self.document()?])
    }

    /// Signs a published head (`jit_proto::head`) with the universe key.
    pub fn sign_head(
        &self,
        head: jit_proto::head::PublishedHead,
    ) -> Result<jit_proto::head::SignedHead> {
        Ok(jit_proto::head::SignedHead::sign(head, &self.signing)?)
    }

    /// This universe's signed identity document for federation (RFC-0021 §3): version 1,
    /// signed with the universe key. ed25519 signing is deterministic, so the document is the
    /// same bytes every time it is made.
    pub fn document(&self) -> Result<SignedIdentity> {
        let created = u64::try_from(self.info.created).map_err(|_| {
            Error::InvalidInput(format!(
                "the universe's creation time {} is before 1970",
                self.info.created
            ))
        })?;
        let doc = IdentityDoc {
            universe: *self.info.id.as_bytes(),
            version: 1,
            public_key: [0; 32],
            name: self.info.name.clone(),
            owner: self.info.owner.clone(),
            description: self.info.description.clone(),
            created,
        };
        Ok(SignedIdentity::first(doc, &self.signing)?)
    }
}
