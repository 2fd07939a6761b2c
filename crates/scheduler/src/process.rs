//! Unix process-group handling for trials.
//!
//! Each trial runs in its own process group so a signal reaches everything it started, and on
//! Linux it is asked to receive SIGTERM if the orchestrator dies, so a `kill -9` of `sweep`
//! does not leave trials running unattended.

use std::path::Path;

use nix::errno::Errno;
use nix::sys::signal::{kill, killpg, Signal};
use nix::unistd::Pid;

/// Sends `signal` to a process group; a group that is already gone is not an error.
pub fn signal_group(pgid: u32, signal: Signal) {
    match killpg(Pid::from_raw(pgid as i32), signal) {
        Ok(()) | Err(Errno::ESRCH) => {}
        Err(e) => tracing::warn!("cannot send {signal} to process group {pgid}: {e}"),
    }
}

/// Whether a process exists (it may belong to another user).
pub fn alive(pid: i64) -> bool {
    pid > 0 && !matches!(kill(Pid::from_raw(pid as i32), None), Err(Errno::ESRCH))
}

/// Kills the process group a dead orchestrator left behind for `trial_id`, after checking
/// (through `/proc`, where there is one) that the group still runs that trial and not some
/// unrelated program that reused the id.
pub fn kill_orphan(pgid: i64, trial_id: &str) -> bool {
    if !alive(pgid) {
        return false;
    }
    let environ = Path::new("/proc").join(pgid.to_string()).join("environ");
    let ours = match std::fs::read(&environ) {
        Ok(bytes) => {
            let needle = format!("SWEEP_TRIAL_ID={trial_id}");
            bytes.split(|b| *b == 0).any(|var| var == needle.as_bytes())
        }
        Err(_) => !Path::new("/proc/self").exists(),
    };
    if ours {
        signal_group(pgid as u32, Signal::SIGKILL);
    }
    ours
}

/// Configures a command to start its own process group and, on Linux, to get SIGTERM when
/// the orchestrator exits.
pub fn isolate(cmd: &mut tokio::process::Command) {
    cmd.process_group(0);
    #[cfg(target_os = "linux")]
    // SAFETY: the closure runs between fork and exec and only calls prctl(2), which is
    // async-signal-safe.
    unsafe {
        cmd.pre_exec(|| {
            nix::sys::prctl::set_pdeathsig(Signal::SIGTERM).map_err(std::io::Error::from)
        });
    }
}

/// A signal's conventional name, for messages.
pub fn signal_name(signal: i32) -> String {
    Signal::try_from(signal).map_or_else(|_| format!("signal {signal}"), |s| s.as_str().to_string())
}
