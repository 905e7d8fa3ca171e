//! An `indicatif` progress bar on stderr for long kernel work; hidden when stderr is not a
//! terminal, or with `--quiet`/`--json`.

use indicatif::{ProgressBar, ProgressDrawTarget, ProgressStyle};
use jit_kernel::import::Progress;

/// A byte-based progress bar.
pub struct Bar(ProgressBar);

impl Bar {
    /// A bar that draws only if `visible` and stderr is a terminal.
    pub fn new(visible: bool) -> Bar {
        let bar = ProgressBar::with_draw_target(
            None,
            if visible {
                ProgressDrawTarget::stderr()
            } else {
                ProgressDrawTarget::hidden()
            },
        );
        if let Ok(style) = ProgressStyle::with_template(
            "{spinner} {msg} [{bar:30}] {bytes}/{total_bytes} ({bytes_per_sec}, {eta})",
        ) {
            bar.set_style(style.progress_chars("=> "));
        }
        Bar(bar)
    }

    /// Removes the bar.
    pub fn finish(&self) {
        self.0.finish_and_clear();
    }
}

impl Progress for Bar {
    fn total(&self, files: u64, bytes: u64) {
        self.0.set_length(bytes);
        self.0.set_message(format!("importing {files} files"));
    }

    fn advance(&self, _files: u64, bytes: u64) {
        self.0.inc(bytes);
    }
}

/// A bar counting commits, for the git verbs.
pub fn commits(visible: bool, what: &'static str) -> ProgressBar {
    let bar = ProgressBar::with_draw_target(
        None,
        if visible {
            ProgressDrawTarget::stderr()
        } else {
            ProgressDrawTarget::hidden()
        },
    );
    if let Ok(style) =
        ProgressStyle::with_template("{spinner} {msg} [{bar:30}] {pos}/{len} commits ({eta})")
    {
        bar.set_style(style.progress_chars("=> "));
    }
    bar.set_message(what);
    bar
}
