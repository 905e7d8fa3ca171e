//! How long text reaches people: through a pager when stdout is a terminal (`$JIT_PAGER`, then
//! `$PAGER`, else `less -FRX`, which exits at once when the text fits one screen), and in color
//! when asked or when on a terminal — never when `NO_COLOR` is set, as <https://no-color.org>
//! asks. Off a terminal (a pipe, a file, a test) text is printed as it is, uncolored.

use std::io::{IsTerminal, Write};
use std::process::{Command, Stdio};

use clap::ValueEnum;

/// `--color`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, ValueEnum)]
pub enum ColorChoice {
    /// On a terminal, unless `NO_COLOR` is set.
    #[default]
    Auto,
    /// Always (unless `NO_COLOR` is set).
    Always,
    /// Never.
    Never,
}

impl ColorChoice {
    /// Whether to color what goes to stdout.
    pub fn enabled(self) -> bool {
        let no_color = std::env::var_os("NO_COLOR").is_some_and(|v| !v.is_empty());
        match self {
            _ if no_color => false,
            ColorChoice::Never => false,
            ColorChoice::Always => true,
            ColorChoice::Auto => std::io::stdout().is_terminal(),
        }
    }
}

/// ANSI styles, or nothing when color is off.
#[derive(Debug, Clone, Copy)]
pub struct Paint(pub bool);

impl Paint {
    fn wrap(self, code: &str, text: &str) -> String {
        if self.0 {
            format!("\x1b[{code}m{text}\x1b[0m")
        } else {
            text.to_owned()
        }
    }

    /// A node id.
    pub fn id(self, text: &str) -> String {
        self.wrap("33", text)
    }

    /// Ref labels.
    pub fn label(self, text: &str) -> String {
        self.wrap("1;36", text)
    }

    /// The graph's lines.
    pub fn graph(self, text: &str) -> String {
        self.wrap("31", text)
    }
}

/// The pager to run, if any: `$JIT_PAGER`, `$PAGER`, else `less -FRX`; empty or `cat`: none.
fn pager_command() -> Option<String> {
    let chosen = std::env::var("JIT_PAGER")
        .or_else(|_| std::env::var("PAGER"))
        .unwrap_or_else(|_| "less -FRX".to_owned());
    let chosen = chosen.trim().to_owned();
    (!chosen.is_empty() && chosen != "cat").then_some(chosen)
}

/// Shows `text`: through the pager when stdout is a terminal and `page` is set, else printed.
/// A pager the user quits early is no error.
pub fn show(text: &str, page: bool) -> anyhow::Result<()> {
    let pager = page
        .then(|| std::io::stdout().is_terminal())
        .filter(|&tty| tty)
        .and_then(|_| pager_command());
    if let Some(command) = pager {
        let child = Command::new("sh")
            .arg("-c")
            .arg(&command)
            .env(
                "LESS",
                std::env::var("LESS").unwrap_or_else(|_| "FRX".into()),
            )
            .stdin(Stdio::piped())
            .spawn();
        if let Ok(mut child) = child {
            if let Some(mut stdin) = child.stdin.take() {
                let _ = stdin.write_all(text.as_bytes());
                let _ = stdin.write_all(b"\n");
            }
            let _ = child.wait();
            return Ok(());
        }
    }
    crate::output::stdout_line(format_args!("{text}"));
    Ok(())
}
