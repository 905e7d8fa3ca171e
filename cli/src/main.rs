//! `jit`: the command-line front end. It composes the kernel's operations; errors become one line
//! on stderr (and a JSON object on stdout with `--json`) and a non-zero exit.

/// `println!` for every verb: a reader that closed the pipe (`jit log | head -3`) ends the
/// command quietly ([`output::stdout_line`]) instead of std's panic. Defined before the modules,
/// so it is the `println!` they see.
macro_rules! println {
    ($($arg:tt)*) => {
        $crate::output::stdout_line(format_args!($($arg)*))
    };
}

/// `print!` likewise ([`output::stdout_text`]).
macro_rules! print {
    ($($arg:tt)*) => {
        $crate::output::stdout_text(format_args!($($arg)*))
    };
}

mod agent;
mod args;
mod commands;
mod declared;
mod federation;
mod generate;
mod ondisk;
mod output;
mod pager;
mod place;
mod progress;
mod sync;
mod up;
mod verbs;
mod wait;
mod work;

use std::process::ExitCode;

use clap::Parser;
use jit_kernel::{Code, Coded};

use crate::args::Cli;

/// The kernel error behind `error`, also when a library wrapped it transparently (a
/// transparent wrapper's source chain skips the kernel error itself).
/// The stable code of the first error in `error`'s chain that has one (`error` when none does).
fn code_of(error: &anyhow::Error) -> Code {
    for cause in error.chain() {
        let coded: Option<&dyn Coded> = if let Some(e) = cause.downcast_ref::<jit_kernel::Error>() {
            Some(e)
        } else if let Some(e) = cause.downcast_ref::<jit_git::GitError>() {
            Some(e)
        } else if let Some(e) = cause.downcast_ref::<jit_watcher::error::WatchError>() {
            Some(e)
        } else if let Some(e) = cause.downcast_ref::<jit_plane::PlaneError>() {
            Some(e)
        } else if let Some(e) = cause.downcast_ref::<jit_jitfs::Error>() {
            Some(e)
        } else {
            None
        };
        if let Some(coded) = coded {
            return coded.code();
        }
    }
    Code::Error
}

/// For a revision nobody knows, the nearest branch or tag name (a typo's likely intent).
fn suggestion(error: &anyhow::Error, directory: Option<std::path::PathBuf>) -> Option<String> {
    let unknown = error.chain().find_map(|cause| match cause.downcast_ref() {
        Some(jit_kernel::Error::UnknownRevision(rev)) => Some(rev.clone()),
        _ => None,
    })?;
    // The name part of an expression (`mian~2` → `mian`).
    let name = unknown
        .split(['~', '^', ':'])
        .next()
        .unwrap_or_default()
        .to_owned();
    let base = directory.or_else(|| std::env::current_dir().ok())?;
    let repo = jit_kernel::Repository::discover_for_reading(&base).ok()?;
    let txn = repo.store().read().ok()?;
    let names: Vec<String> = repo
        .store()
        .refs_with_prefix(&txn, "")
        .ok()?
        .into_iter()
        .flat_map(|(full, _)| {
            let short = full
                .split_once('/')
                .map_or(full.as_str(), |(_, short)| short)
                .to_owned();
            [full, short]
        })
        .collect();
    output::nearest(&name, names.iter().map(String::as_str)).map(str::to_owned)
}

fn main() -> ExitCode {
    tracing_subscriber::fmt()
        .with_env_filter(
            tracing_subscriber::EnvFilter::try_from_env("JIT_LOG").unwrap_or_else(|_| {
                tracing_subscriber::EnvFilter::new(
                    "warn,fuser=error,zenoh=error,zenoh_link_unixsock_stream=error,zenoh_transport=error,notify::inotify=error",
                )
            }),
        )
        .with_writer(std::io::stderr)
        .init();
    let cli = Cli::parse();
    let json = cli.json;
    let directory = cli.directory.clone();
    match commands::run(cli) {
        Ok(code) => code,
        Err(error) => {
            let code = code_of(&error).as_str();
            let mut message = format!("{error:#}");
            if let Some(near) = suggestion(&error, directory) {
                message.push_str(&format!("; did you mean {near}?"));
            }
            if json {
                println!(
                    "{}",
                    serde_json::json!({ "error": { "code": code, "message": message } })
                );
            }
            eprintln!("jit: error: {}", message.replace('\n', " "));
            ExitCode::FAILURE
        }
    }
}
