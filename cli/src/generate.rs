//! Shell completions and man pages, generated from the CLI's own definition so they never drift.

use std::path::Path;
use std::process::ExitCode;

use anyhow::{Context, Result};
use clap::CommandFactory;

use crate::args::Cli;

/// Prints the completion script for `shell` on stdout.
pub fn completions(shell: clap_complete::Shell) -> Result<ExitCode> {
    let mut command = Cli::command();
    let mut script = Vec::new();
    clap_complete::generate(shell, &mut command, "jit", &mut script);
    crate::output::stdout_bytes(&script);
    Ok(ExitCode::SUCCESS)
}

/// Writes `jit.1` and `jit-<verb>.1` (and `jit-sws-<verb>.1`) into `dir`.
pub fn man_pages(dir: &Path) -> Result<ExitCode> {
    std::fs::create_dir_all(dir).with_context(|| format!("cannot create {}", dir.display()))?;
    let command = Cli::command();
    write_page(dir, "jit", command.clone())?;
    for sub in command.get_subcommands() {
        let name = format!("jit-{}", sub.get_name());
        write_page(dir, &name, sub.clone().name(name.clone()))?;
        for nested in sub.get_subcommands() {
            let nested_name = format!("{name}-{}", nested.get_name());
            write_page(dir, &nested_name, nested.clone().name(nested_name.clone()))?;
        }
    }
    Ok(ExitCode::SUCCESS)
}

fn write_page(dir: &Path, name: &str, command: clap::Command) -> Result<()> {
    let mut page = Vec::new();
    clap_mangen::Man::new(command).render(&mut page)?;
    let path = dir.join(format!("{name}.1"));
    std::fs::write(&path, page).with_context(|| format!("cannot write {}", path.display()))
}
