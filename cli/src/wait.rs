//! `jit wait`: blocks until the universe's daemon serves. `jit up` binds its socket first and
//! accepts on it only once its mount and message plane are up, so the first answered request
//! means everything is ready — no sleeping and hoping in scripts that start `jit up &`.

use std::path::{Path, PathBuf};
use std::process::ExitCode;
use std::sync::mpsc;
use std::time::{Duration, Instant};

use anyhow::{bail, Context, Result};
use jit_kernel::command::Operation;
use jit_kernel::rpc::client::Kernel;
use jit_kernel::rpc::SOCKET;
use serde_json::{json, Value};

use crate::output::Output;

/// How long to wait before trying a socket no daemon has bound yet.
const RETRY: Duration = Duration::from_millis(20);

/// Waits until the daemon of the universe containing `base` answers, at most `timeout` seconds.
pub fn until_served(out: &Output, base: &Path, timeout: f64) -> Result<ExitCode> {
    let limit = Duration::try_from_secs_f64(timeout)
        .ok()
        .filter(|limit| Instant::now().checked_add(*limit).is_some())
        .with_context(|| format!("--timeout {timeout} is not a usable number of seconds"))?;
    let started = Instant::now();
    let socket = jit_dir_of(base, started + limit)
        .with_context(|| {
            format!(
                "no universe appeared at {} within {timeout} s",
                base.display()
            )
        })?
        .join(SOCKET);
    let info = answered(socket.clone(), limit).with_context(|| {
        format!(
            "no daemon served {} within {timeout} s (is `jit up` running?)",
            socket.display()
        )
    })?;
    let waited = started.elapsed().as_secs_f64();
    // Silent for people: scripts only need the exit status.
    out.emit(
        json!({ "ready": true, "waited_s": waited, "info": info }),
        String::new,
    )
}

/// The `.jit` directory of the universe containing `base`, found by its path alone — the store is
/// not opened, so waiting never competes with the daemon that is starting (for the journal it
/// recovers, say). A universe `jit up` is still making (in `base`, or `base` itself not yet
/// there) is waited for until `deadline`; `jit init` renames a finished universe into place,
/// so `universe.toml` appears with the rest.
fn jit_dir_of(base: &Path, deadline: Instant) -> Result<PathBuf> {
    loop {
        let found = base
            .ancestors()
            .map(|dir| dir.join(jit_kernel::repo::JIT_DIR))
            .find(|jit| jit.join("universe.toml").is_file());
        if let Some(jit) = found {
            return Ok(jit);
        }
        if Instant::now() >= deadline {
            bail!(jit_kernel::Error::NotARepository(base.to_path_buf()));
        }
        std::thread::sleep(RETRY);
    }
}

/// The daemon's `jit.info` answer, asked until one comes or `limit` passes: a socket nobody
/// serves yet, or one a stopping daemon still holds, is tried again. The requests run on their
/// own thread, so a daemon that bound its socket but never answers cannot hang the caller (the
/// thread ends with the process).
fn answered(socket: PathBuf, limit: Duration) -> Result<Value> {
    let deadline = Instant::now()
        .checked_add(limit)
        .context("the timeout is too long")?;
    let (tx, rx) = mpsc::channel();
    std::thread::spawn(move || {
        let result = loop {
            let attempt = Kernel::daemon(&socket)
                .and_then(|mut kernel| kernel.invoke::<_, Value>(Operation::Info, &json!({})));
            match attempt {
                Err(_) if Instant::now() < deadline => std::thread::sleep(RETRY),
                done => break done,
            }
        };
        let _ = tx.send(result);
    });
    match rx.recv_timeout(deadline.saturating_duration_since(Instant::now())) {
        Ok(result) => Ok(result?),
        Err(_) => bail!("it did not answer"),
    }
}
