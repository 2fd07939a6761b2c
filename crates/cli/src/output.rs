//! Writing to the terminal without ever panicking: `println!` and `eprintln!` panic when the
//! other end of the pipe has gone (`sweep status | head -1`, a dropped SSH session, a killed
//! `| tee`), and a panic in the signal task would leave Ctrl-C with nothing to stop.

use std::io::Write;

/// A line on stderr; dropped silently when stderr has gone.
macro_rules! say {
    ($($arg:tt)*) => {
        $crate::output::stderr_line(format_args!($($arg)*))
    };
}
pub(crate) use say;

/// Writes one line to stderr, ignoring a closed or broken stream.
pub fn stderr_line(args: std::fmt::Arguments<'_>) {
    let mut err = std::io::stderr().lock();
    let _ = err.write_fmt(args);
    let _ = err.write_all(b"\n");
}

/// Whether an error (or any of its causes) is a write to a pipe nobody reads any more, which
/// is how a reader such as `head` says it has read enough: not worth an error.
pub fn is_broken_pipe(e: &anyhow::Error) -> bool {
    e.chain().any(|cause| {
        cause
            .downcast_ref::<std::io::Error>()
            .is_some_and(|io| io.kind() == std::io::ErrorKind::BrokenPipe)
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_broken_pipe_is_found_under_any_wrapping() {
        let pipe = || std::io::Error::from(std::io::ErrorKind::BrokenPipe);
        let e = anyhow::Error::from(sweep_report::ExportError::Io(pipe()));
        assert!(is_broken_pipe(&e));
        assert!(is_broken_pipe(&e.context("cannot write the report")));
        assert!(!is_broken_pipe(&anyhow::anyhow!("disk full")));
    }
}
