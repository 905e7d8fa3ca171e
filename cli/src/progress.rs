//! `indicatif` progress bars on stderr for long kernel work; hidden when stderr is not a
//! terminal, or with `--quiet`/`--json`.

use indicatif::{ProgressBar, ProgressDrawTarget, ProgressStyle};
use jit_kernel::import::Progress;

/// A byte-based progress bar for imports.
pub struct Bar(ProgressBar);

impl Bar {
    /// A bar that draws only if `visible` and stderr is a terminal.
    pub fn new(visible: bool) -> Bar {
        Bar(styled(
            visible,
            "{spinner} {msg} [{bar:30}] {bytes}/{total_bytes} ({bytes_per_sec}, {eta})",
        ))
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
    let bar = styled(
        visible,
        "{spinner} {msg} [{bar:30}] {pos}/{len} commits ({eta})",
    );
    bar.set_message(what);
    bar
}

/// A bar of unknown length (a spinner with counters), for sync.
pub fn spinner(visible: bool, template: &str) -> ProgressBar {
    styled(visible, template)
}

/// Draws `bar` with another template from now on.
pub fn restyle(bar: &ProgressBar, template: &str) {
    if let Ok(style) = ProgressStyle::with_template(template) {
        bar.set_style(style.progress_chars("=> "));
    }
}

/// A bar on stderr (hidden unless `visible`) drawn with `template`.
fn styled(visible: bool, template: &str) -> ProgressBar {
    let target = if visible {
        ProgressDrawTarget::stderr()
    } else {
        ProgressDrawTarget::hidden()
    };
    let bar = ProgressBar::with_draw_target(None, target);
    if let Ok(style) = ProgressStyle::with_template(template) {
        bar.set_style(style.progress_chars("=> "));
    }
    bar
}

/// A bar counting files, for checkouts.
pub struct FileBar(ProgressBar);

impl FileBar {
    /// A bar that draws only if `visible` and stderr is a terminal.
    pub fn new(visible: bool, what: &'static str) -> FileBar {
        let bar = styled(
            visible,
            "{spinner} {msg} [{bar:30}] {pos}/{len} files ({eta})",
        );
        bar.set_message(what);
        FileBar(bar)
    }

    /// Removes the bar.
    pub fn finish(&self) {
        self.0.finish_and_clear();
    }
}

impl Progress for FileBar {
    fn total(&self, files: u64, _bytes: u64) {
        self.0.set_length(files);
    }

    fn advance(&self, files: u64, _bytes: u64) {
        self.0.inc(files);
    }
}
