//! `jit up`: the daemon — the store's one writer, serving the RPC socket, the message plane and
//! the mount until a signal stops it.

use std::path::{Path, PathBuf};
use std::process::ExitCode;
use std::sync::Arc;

use anyhow::{bail, Context, Result};
use jit_daemon::access::Access;
use jit_daemon::limits::Limits;
use jit_daemon::server::{self, DaemonLock};
use jit_kernel::rpc::service::Service;
use jit_kernel::Repository;
use serde_json::json;

/// How `jit up` runs the message plane.
pub struct PlaneSettings {
    /// Start it at all.
    pub enabled: bool,
    /// Extra listen endpoints.
    pub listen: Vec<String>,
    /// Routers or peers to connect to.
    pub connect: Vec<String>,
    /// Allow a non-loopback listen without TLS.
    pub insecure_listen: bool,
    /// The Zenoh configuration file to start from (TLS, access control).
    pub zenoh_config: Option<std::path::PathBuf>,
}

/// How `jit up` serves the RPC socket.
pub struct RpcSettings {
    /// A group whose members may also connect.
    pub allow_group: Option<String>,
    /// Seconds a connection may stay idle.
    pub idle_timeout: f64,
    /// Seconds a request has to arrive whole.
    pub read_timeout: f64,
    /// Connections served at once.
    pub max_connections: usize,
    /// MiB large requests may hold at once.
    pub budget_mib: usize,
}

impl RpcSettings {
    fn options(&self) -> Result<server::ServeOptions> {
        let seconds = |value: f64, flag: &str| {
            std::time::Duration::try_from_secs_f64(value)
                .ok()
                .filter(|d| !d.is_zero())
                .with_context(|| format!("{flag} must be a positive number of seconds"))
        };
        let access = match &self.allow_group {
            Some(group) => Access::with_group(group)?,
            None => Access::owner_only(),
        };
        if self.max_connections == 0 {
            bail!("--rpc-max-connections must be at least 1");
        }
        Ok(server::ServeOptions {
            limits: Limits {
                idle_timeout: seconds(self.idle_timeout, "--rpc-idle-timeout")?,
                read_timeout: seconds(self.read_timeout, "--rpc-read-timeout")?,
                max_connections: self.max_connections,
                budget: self.budget_mib.saturating_mul(1 << 20),
                ..Limits::default()
            },
            access,
        })
    }
}

/// How `jit up` mounts the FUSE projection.
pub struct MountSettings {
    /// Mount at all.
    pub enabled: bool,
    /// Where (default `.jit/mnt`).
    pub mountpoint: Option<PathBuf>,
    /// FUSE request threads.
    pub threads: usize,
    /// Let other users use the mount.
    pub allow_other: bool,
}

/// The universe `base` is in; outside any, a new one is made in `base` (created if missing),
/// as `jit init` would, and said so — `jit up` alone brings a universe up on a fresh machine.
/// Returns it, and whether it was made now. With `json`, the one JSON line `jit up` prints
/// says so (`created`) instead of `jit init`'s own line.
fn discover_or_create(base: &Path, json: bool) -> Result<(Repository, bool)> {
    let found = if base.exists() {
        Repository::discover(base)
    } else {
        Err(jit_kernel::Error::NotARepository(base.to_path_buf()))
    };
    match found {
        Err(jit_kernel::Error::NotARepository(_)) => {
            std::fs::create_dir_all(base)
                .with_context(|| format!("cannot create {}", base.display()))?;
            if json {
                crate::verbs::universe::init_quietly(base)?;
            } else {
                let out = crate::output::Output { json };
                crate::verbs::universe::init(&out, base, None, "main", None)?;
            }
            Ok((Repository::discover(base)?, true))
        }
        other => Ok((other?, false)),
    }
}

/// `jit up`: the daemon in the foreground until Ctrl-C or SIGTERM.
pub fn up(
    base: &Path,
    settings: PlaneSettings,
    mount_settings: MountSettings,
    rpc: RpcSettings,
    json: bool,
) -> Result<ExitCode> {
    let serve_options = rpc.options()?;
    if settings.enabled {
        jit_plane::listen::preflight(
            &settings.listen,
            settings.zenoh_config.as_deref(),
            settings.insecure_listen,
        )?;
    }
    let (repo, created) = discover_or_create(base, json)?;
    let lock = DaemonLock::acquire(repo.jit_dir())?;
    let universe = repo.universe()?;
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
        .context("cannot start the async runtime")?;
    runtime.block_on(async {
        // Listen for SIGTERM/SIGINT before the socket exists: whoever sees the socket (systemd,
        // a script) may stop the daemon at once, even while the plane and the mount start.
        let stop = shutdown_signal()?;
        let listener = lock.bind(&serve_options.access)?;
        let repo = Arc::new(repo);
        let zenoh_socket = repo.jit_dir().join("zenoh.sock");
        let plane = if settings.enabled {
            let mut options = jit_plane::server::PlaneOptions {
                unix_socket: Some(zenoh_socket.clone()),
                listen: settings.listen.clone(),
                connect: settings.connect.clone(),
                insecure_listen: settings.insecure_listen,
                zenoh_config: settings.zenoh_config.clone(),
                ..Default::default()
            };
            plane_commit_cadence(&mut options);
            Some(jit_plane::server::Plane::start(repo.clone(), options).await?)
        } else {
            None
        };
        let mount = if mount_settings.enabled {
            let options = jit_jitfs::MountOptions {
                mountpoint: mount_settings
                    .mountpoint
                    .clone()
                    .unwrap_or_else(|| jit_jitfs::MountOptions::default_mountpoint(&repo)),
                threads: mount_settings.threads,
                allow_other: mount_settings.allow_other,
                owner: std::env::var("USER").unwrap_or_else(|_| "user".into()),
            };
            let repo = repo.clone();
            let mounted = tokio::task::spawn_blocking(move || jit_jitfs::Mount::start(repo, &options))
                .await
                .context("the mount task failed")?;
            Some(mounted.context("cannot mount the FUSE projection (use --no-mount to run without it)")?)
        } else {
            None
        };
        let mount_text = mount
            .as_ref()
            .map(|m| m.mountpoint().display().to_string());
        let mut endpoints: Vec<String> = Vec::new();
        if plane.is_some() {
            endpoints.push(format!("unixsock-stream/{}", zenoh_socket.display()));
            endpoints.extend(settings.listen.iter().cloned());
        }
        if json {
            println!(
                "{}",
                json!({ "universe": universe.id.to_string(), "socket": lock.socket().display().to_string(),
                        "plane": endpoints, "mount": mount_text, "created": created })
            );
        } else {
            println!(
                "jit daemon for universe {} ({})\n  mount:  {}\n  plane:  {}\n  socket: {}\nCtrl-C stops it.",
                universe.id,
                repo.workdir().display(),
                mount_text.as_deref().unwrap_or("off"),
                if endpoints.is_empty() { "off".to_owned() } else { endpoints.join(", ") },
                lock.socket().display(),
            );
        }
        let service = Service::new(repo);
        server::serve(service, listener, serve_options, stop).await;
        if let Some(mount) = mount {
            if let Err(error) = tokio::task::spawn_blocking(move || mount.unmount()).await? {
                tracing::error!(%error, "unmount failed");
            }
        }
        if let Some(plane) = plane {
            plane.close().await;
        }
        let _ = std::fs::remove_file(&zenoh_socket);
        anyhow::Ok(())
    })?;
    drop(lock);
    Ok(ExitCode::SUCCESS)
}

/// Registers for SIGTERM and SIGINT now (a signal that comes before the future is polled is
/// kept) and returns the future that completes on either.
fn shutdown_signal() -> Result<impl std::future::Future<Output = ()>> {
    use tokio::signal::unix::{signal, SignalKind};
    let mut terminate = signal(SignalKind::terminate()).context("cannot listen for SIGTERM")?;
    let mut interrupt = signal(SignalKind::interrupt()).context("cannot listen for SIGINT")?;
    Ok(async move {
        tokio::select! {
            _ = terminate.recv() => {}
            _ = interrupt.recv() => {}
        }
    })
}

/// How long the plane keeps its transaction open (journaling what it acknowledges meanwhile):
/// `JIT_PLANE_IDLE_MS` after the last batch and `JIT_PLANE_MAX_OPEN_MS` at most, for tests
/// and benchmarks of the journal; the defaults otherwise.
fn plane_commit_cadence(options: &mut jit_plane::server::PlaneOptions) {
    let millis = |name: &str| {
        std::env::var(name)
            .ok()
            .and_then(|value| value.parse::<u64>().ok())
            .map(std::time::Duration::from_millis)
    };
    if let Some(idle) = millis("JIT_PLANE_IDLE_MS") {
        options.idle = idle;
    }
    if let Some(max_open) = millis("JIT_PLANE_MAX_OPEN_MS") {
        options.max_open = max_open;
    }
}
