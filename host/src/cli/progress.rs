//! Progress bars for long CLI work (knowledge-base ingestion, plugin compiles, schedule
//! backfills): counts, rate and elapsed time on standard error, drawn only when standard
//! error is a terminal, so scripts and logs stay quiet.

use std::io::IsTerminal;

use indicatif::{ProgressBar, ProgressDrawTarget, ProgressStyle};

pub struct TerminalProgress {
    bar: ProgressBar,
}

impl TerminalProgress {
    /// A bar labelled `label` with `total` items (the work adds what it finds).
    pub fn new(label: &str, total: u64) -> Self {
        let bar = ProgressBar::with_draw_target(
            Some(total),
            if std::io::stderr().is_terminal() {
                ProgressDrawTarget::stderr()
            } else {
                ProgressDrawTarget::hidden()
            },
        );
        if let Ok(style) = ProgressStyle::with_template(
            "{prefix} [{bar:28}] {pos}/{len} ({per_sec}, {elapsed}) {wide_msg}",
        ) {
            bar.set_style(style.progress_chars("=> "));
        }
        bar.set_prefix(label.to_owned());
        Self { bar }
    }

    /// Remove the bar (the command prints its own summary).
    pub fn finish(&self) {
        self.bar.finish_and_clear();
    }
}

impl crate::progress::Progress for TerminalProgress {
    fn found(&self, count: u64) {
        self.bar.inc_length(count);
    }

    fn next(&self, what: &str) {
        self.bar.inc(1);
        self.bar.set_message(what.to_owned());
    }
}
