//! Showing a running sweep: a progress bar on a terminal, plain log lines otherwise.

use std::io::IsTerminal;
use std::time::Duration;

use indicatif::{ProgressBar, ProgressStyle};
use sweep_scheduler::{Progress, Reporter};

/// Picks the bar or log lines depending on whether stderr is a terminal.
pub fn reporter() -> Box<dyn Reporter> {
    if std::io::stderr().is_terminal() {
        let bar = ProgressBar::new(0);
        bar.set_style(
            ProgressStyle::with_template(
                "{spinner} [{elapsed_precise}] {bar:30} {pos}/{len} {msg} (eta {eta})",
            )
            .unwrap_or_else(|_| ProgressStyle::default_bar()),
        );
        bar.enable_steady_tick(Duration::from_millis(200));
        Box::new(Bar(bar))
    } else {
        Box::new(Lines)
    }
}

struct Bar(ProgressBar);

impl Reporter for Bar {
    fn progress(&mut self, p: &Progress) {
        self.0.set_length(p.total);
        self.0.set_position(p.completed + p.failed);
        self.0.set_message(format!(
            "done {} running {} failed {}",
            p.completed, p.running, p.failed
        ));
    }

    fn note(&mut self, line: &str) {
        self.0.println(line);
    }
}

impl Drop for Bar {
    fn drop(&mut self) {
        self.0.finish_and_clear();
    }
}

struct Lines;

impl Reporter for Lines {
    fn progress(&mut self, _: &Progress) {}

    fn note(&mut self, line: &str) {
        tracing::info!("{line}");
    }
}
