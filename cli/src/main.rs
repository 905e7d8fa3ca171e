//! `jit`: the command-line front end. It composes the kernel's operations; errors become one line
//! on stderr (and a JSON object on stdout with `--json`) and a non-zero exit.

mod agent;
mod args;
mod commands;
mod declared;
mod generate;
mod ondisk;
mod place;
mod progress;
mod sync;
mod wait;
mod work;

use std::process::ExitCode;

use clap::Parser;

use crate::args::Cli;

/// The kernel error behind `error`, also when a library wrapped it transparently (a
/// transparent wrapper's source chain skips the kernel error itself).
fn kernel_error(error: &anyhow::Error) -> Option<&jit_kernel::Error> {
    if let Some(e) = error.downcast_ref::<jit_kernel::Error>() {
        return Some(e);
    }
    if let Some(jit_git::GitError::Kernel(e)) = error.downcast_ref::<jit_git::GitError>() {
        return Some(e);
    }
    if let Some(jit_watcher::error::WatchError::Kernel(e)) =
        error.downcast_ref::<jit_watcher::error::WatchError>()
    {
        return Some(e);
    }
    None
}

fn main() -> ExitCode {
    tracing_subscriber::fmt()
        .with_env_filter(
            tracing_subscriber::EnvFilter::try_from_env("JIT_LOG").unwrap_or_else(|_| {
                tracing_subscriber::EnvFilter::new(
                    "warn,fuser=error,zenoh=error,zenoh_link_unixsock_stream=error,zenoh_transport=error",
                )
            }),
        )
        .with_writer(std::io::stderr)
        .init();
    let cli = Cli::parse();
    let json = cli.json;
    match commands::run(cli) {
        Ok(code) => code,
        Err(error) => {
            let code = kernel_error(&error)
                .map(|e| e.code().to_owned())
                .unwrap_or_else(|| "error".to_owned());
            let message = format!("{error:#}");
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
