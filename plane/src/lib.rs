//! The message plane (RFC-0008) on Zenoh. The daemon embeds one Zenoh session — peer mode,
//! multicast scouting off, listening on a Unix socket in `.jit/` and optionally loopback TCP —
//! and agents connect to it as clients. The plane coordinates; the kernel decides: every write
//! goes through the same kernel operation and validation as the RPC.
//!
//! Key expressions (RFC name → Zenoh key; an optional namespace prefix `NS/` goes in front):
//!
//! | RFC topic | key expression | kind |
//! |---|---|---|
//! | `jit.kernel.create` | `jit/kernel/create` | query: create an SWS owned by the sender |
//! | `jit.sws.<id>.patch` | `jit/sws/<id>/patch` | query: apply a patch |
//! | `jit.sws.<id>.commit` | `jit/sws/<id>/commit` | query: collapse the SWS |
//! | `jit.sws.<id>.discard` | `jit/sws/<id>/discard` | query: discard the SWS |
//! | `jit.sws.<id>.status` | `jit/sws/<id>/status` | query: the SWS's state |
//! | `jit.sws.<id>.analyze` | `jit/sws/<id>/analyze` | query: would it merge cleanly? |
//! | `jit.kernel.events` | `jit/kernel/events` | publication: every log record |
//! | `jit.kernel.ref_updates` | `jit/kernel/ref_updates` | publication: ref records |
//! | `jit.kernel.sws_lifecycle` | `jit/kernel/sws_lifecycle` | publication: SWS created/committed/discarded |
//! | `jit.kernel.sync` | `jit/kernel/sync` | publication: a pull appended nodes or moved refs |
//! | `jit.sync.<op>` | `jit/sync/{frontier,negotiate,fetch}` | query: a replica pulls (see `docs/sync.md`) |
//!
//! Writes are Zenoh queries whose reply is the acknowledgement, sent only after the effect is
//! durable. See `docs/plane.md` for the envelope, signing bytes and error codes.

#![deny(missing_docs)]

pub mod agent;
pub mod gossip;
pub mod listen;
pub mod ratelimit;
pub mod server;
pub mod sync;

/// Errors of the plane's client side and set-up.
#[derive(Debug, thiserror::Error)]
pub enum PlaneError {
    /// Zenoh failed.
    #[error("zenoh: {0}")]
    Zenoh(String),
    /// The kernel refused or failed.
    #[error(transparent)]
    Kernel(#[from] jit_kernel::Error),
    /// No acknowledgement arrived after every retry.
    #[error("no acknowledgement for {key} after {attempts} attempts")]
    NoAck {
        /// The key expression.
        key: String,
        /// How many times it was sent.
        attempts: u32,
    },
}

impl From<jit_proto::cbor::CborError> for PlaneError {
    fn from(error: jit_proto::cbor::CborError) -> PlaneError {
        PlaneError::Kernel(error.into())
    }
}

impl jit_kernel::Coded for PlaneError {
    fn code(&self) -> jit_kernel::Code {
        match self {
            PlaneError::Zenoh(_) => jit_kernel::Code::PlaneUnavailable,
            PlaneError::Kernel(e) => e.code(),
            PlaneError::NoAck { .. } => jit_kernel::Code::NoAck,
        }
    }
}

impl PlaneError {
    fn zenoh(error: impl std::fmt::Display) -> PlaneError {
        PlaneError::Zenoh(error.to_string())
    }
}

/// Result type of this crate.
pub type Result<T, E = PlaneError> = std::result::Result<T, E>;

/// Prefixes a key expression with the namespace, if any.
pub fn keyexpr(namespace: &str, key: &str) -> String {
    jit_proto::keyexpr::with_namespace(namespace, key)
}

/// The environment variable naming a Zenoh configuration file (JSON5) that every Zenoh
/// session JIT opens starts from — the daemon's plane, agents, `jit clone`/`pull`, federation:
/// TLS certificates, access control, routers. JIT then sets the mode and turns multicast
/// scouting off; endpoints given on the command line are added.
pub const ZENOH_CONFIG_ENV: &str = "JIT_ZENOH_CONFIG";

/// A client-mode Zenoh configuration connecting to `endpoints`, from the file `JIT_ZENOH_CONFIG`
/// names (if any), with multicast scouting off: for a `jit` command that opens a session of
/// its own (following events, say).
pub fn client_config(endpoints: &[String]) -> Result<zenoh::Config> {
    client_config_from(endpoints, None)
}

/// [`client_config`] starting from Zenoh configuration `file`, when given.
pub(crate) fn client_config_from(
    endpoints: &[String],
    file: Option<&std::path::Path>,
) -> Result<zenoh::Config> {
    let mut config = base_config("client", file)?;
    let list = format!(
        "[{}]",
        endpoints
            .iter()
            .map(|e| format!("{e:?}"))
            .collect::<Vec<_>>()
            .join(",")
    );
    config
        .insert_json5("connect/endpoints", &list)
        .map_err(PlaneError::zenoh)?;
    Ok(config)
}

/// A Zenoh configuration in `mode`, from `file` (else the file [`ZENOH_CONFIG_ENV`] names,
/// else the defaults), with multicast scouting off.
pub(crate) fn base_config(mode: &str, file: Option<&std::path::Path>) -> Result<zenoh::Config> {
    let from_env = std::env::var_os(ZENOH_CONFIG_ENV).map(std::path::PathBuf::from);
    let mut config = match file.map(std::path::Path::to_path_buf).or(from_env) {
        Some(path) => zenoh::Config::from_file(&path).map_err(|e| {
            PlaneError::Zenoh(format!(
                "cannot read the Zenoh configuration {}: {e}",
                path.display()
            ))
        })?,
        None => zenoh::Config::default(),
    };
    config
        .insert_json5("mode", &format!("{mode:?}"))
        .map_err(PlaneError::zenoh)?;
    config
        .insert_json5("scouting/multicast/enabled", "false")
        .map_err(PlaneError::zenoh)?;
    Ok(config)
}
