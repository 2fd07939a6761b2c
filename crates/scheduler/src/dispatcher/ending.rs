//! How an attempt ended, recorded: completed with its results, retried after a back-off,
//! failed for good, interrupted, or refused by the executor.

use sweep_store::{AttemptPid, Completion};

use super::*;

/// What attempts said that is not written yet: the pids of attempts that started and the
/// attempts that succeeded, kept while the messages at hand are handled and then written in
/// one transaction ([`Store::record`]), so a trivial trial does not pay for transactions of its own.
#[derive(Default)]
pub(super) struct Unrecorded {
    /// Trial, attempt and process group.
    pub(super) pids: Vec<(String, u32, u32)>,
    succeeded: Vec<Succeeded>,
}

struct Succeeded {
    trial_id: String,
    attempt: u32,
    running: Running,
    end: AttemptEnd,
}

impl<E: Executor> Dispatcher<'_, E> {
    /// Records the end of an attempt and gives its slot back.
    pub(super) async fn finish(
        &mut self,
        (trial_id, attempt): AttemptKey,
        report: AttemptReport,
        reporter: &mut dyn Reporter,
    ) -> Result<(), SchedulerError> {
        let Some(running) = self.running.remove(&(trial_id.clone(), attempt)) else {
            return Ok(());
        };
        // An attempt that ended needs no pid recorded.
        self.unrecorded
            .pids
            .retain(|(id, a, _)| (id, *a) != (&trial_id, attempt));
        if report.abandoned {
            // Nobody watches its process any more: end it before its slot is reused.
            if let Some(job) = &running.job {
                self.executor.kill(std::slice::from_ref(job)).await;
            }
        }
        self.pool.give_back(running.gpus.clone());
        self.progress.running = self.running.len() as u64;
        if self.lease_lost {
            // Killed because its lease was lost; the runner that took the trial over records
            // it. (The store would refuse anything said under the old lease anyway.)
            tracing::debug!("attempt {attempt} of {trial_id} ended after its lease was lost");
            return Ok(());
        }
        if let Some(why) = &report.rejected {
            return self.rejected(&trial_id, attempt, why, reporter).await;
        }
        self.held_back = false;
        let has_result = running.results.contains_key(&trial_id);
        let (success, end) = attempt_end(&report, has_result, self.grid);
        if success {
            self.unrecorded.succeeded.push(Succeeded {
                trial_id,
                attempt,
                running,
                end,
            });
            return Ok(());
        }
        self.record_failure(&trial_id, attempt, &report, &end, reporter)
            .await
    }

    /// Writes what is [`Unrecorded`]: the pids, and the succeeded attempts with their
    /// results (and those they reported for other points).
    pub(super) async fn record(
        &mut self,
        reporter: &mut dyn Reporter,
    ) -> Result<(), SchedulerError> {
        let Unrecorded { pids, succeeded } = std::mem::take(&mut self.unrecorded);
        if pids.is_empty() && succeeded.is_empty() {
            return Ok(());
        }
        let pids: Vec<AttemptPid> = pids
            .iter()
            .map(|(trial_id, attempt, pid)| AttemptPid {
                trial_id,
                attempt: *attempt,
                pid: *pid,
            })
            .collect();
        let completions: Vec<Completion> = succeeded
            .iter()
            .map(|s| Completion {
                trial_id: &s.trial_id,
                attempt: s.attempt,
                results: &s.running.results,
                end: &s.end,
            })
            .collect();
        let done = self
            .store
            .record(&self.runner_id, &pids, &completions)
            .await?;
        for (s, others) in succeeded.iter().zip(done) {
            let (trial_id, attempt) = (&s.trial_id, s.attempt);
            let Some(others) = others else {
                reporter.note(&format!(
                    "trial {trial_id}: result of attempt {attempt} not recorded: another orchestrator took the trial over while it ran"
                ));
                continue;
            };
            self.summary.completed += 1 + others;
            self.progress.completed += 1 + others;
            let metrics = s
                .running
                .results
                .get(trial_id)
                .map(format_metrics)
                .unwrap_or_default();
            let extra = if others > 0 {
                format!(" (+{others} point(s) reported)")
            } else {
                String::new()
            };
            reporter.note(&format!(
                "completed {trial_id} {} {metrics}{extra}",
                params_to_json(&s.running.params)
            ));
        }
        Ok(())
    }

    /// Stores an attempt that did not succeed: the trial is retried after its back-off,
    /// failed for good, or interrupted.
    async fn record_failure(
        &mut self,
        trial_id: &str,
        attempt: u32,
        report: &AttemptReport,
        end: &AttemptEnd,
        reporter: &mut dyn Reporter,
    ) -> Result<(), SchedulerError> {
        let backoff = self
            .grid
            .backoff
            .saturating_mul(1 << (attempt - 1).min(16))
            .min(MAX_BACKOFF);
        let retry_at = now_ms() + backoff.as_millis() as i64;
        // A command that cannot even start will not start next time either.
        let retryable = report.spawn_error.is_none();
        let status = self
            .store
            .end_unsuccessful(
                trial_id,
                &self.runner_id,
                attempt,
                end,
                retry_at,
                self.grid.max_attempts,
                retryable,
            )
            .await?;
        let reason = end.reason.clone().unwrap_or_default();
        match status {
            Some(TrialStatus::Pending) => {
                self.summary.retried += 1;
                reporter.note(&format!(
                    "trial {trial_id} attempt {} {reason}; retrying in {}",
                    attempt,
                    humantime_short(backoff)
                ));
            }
            Some(TrialStatus::Failed) => {
                self.summary.failed += 1;
                self.progress.failed += 1;
                reporter.note(&format!(
                    "trial {trial_id} failed after {} attempt(s): {reason}",
                    attempt
                ));
            }
            Some(TrialStatus::Interrupted) => {
                self.summary.interrupted += 1;
                match &report.reason {
                    Some(why) => reporter.note(&format!("trial {trial_id} interrupted: {why}")),
                    None => reporter.note(&format!("trial {trial_id} interrupted")),
                }
            }
            _ => reporter.note(&format!(
                "trial {trial_id}: {reason} (it was taken over by another orchestrator)"
            )),
        }
        Ok(())
    }

    /// The executor refused to start an attempt. The trial goes back to the queue without
    /// spending an attempt; while other attempts run, nothing more is submitted until one
    /// ends (a limit on jobs at once is the usual cause), else the run stops with the
    /// executor's message, results so far stored.
    pub(super) async fn rejected(
        &mut self,
        trial_id: &str,
        attempt: u32,
        why: &str,
        reporter: &mut dyn Reporter,
    ) -> Result<(), SchedulerError> {
        let end = AttemptEnd {
            outcome: Outcome::Interrupted,
            exit_code: None,
            signal: None,
            reason: Some(format!("not started: {why}")),
            stderr_tail: String::new(),
        };
        self.store
            .end_unsuccessful(
                trial_id,
                &self.runner_id,
                attempt,
                &end,
                now_ms(),
                self.grid.max_attempts,
                true,
            )
            .await?;
        if self.running.is_empty() {
            return Err(SchedulerError::Submission {
                executor: E::NAME,
                trial: trial_id.to_string(),
                message: why.to_string(),
            });
        }
        if !self.held_back {
            reporter.note(&format!(
                "trial {trial_id} was not started ({why}); it waits until one of the {} running trial(s) ends",
                self.running.len()
            ));
        }
        self.held_back = true;
        Ok(())
    }
}

/// Whether an attempt succeeded, and what its attempt row records: the outcome, and a reason
/// that says why in words (with the malformed event lines it printed, and for a plain
/// failure its last stderr line).
fn attempt_end(report: &AttemptReport, has_result: bool, grid: &Grid) -> (bool, AttemptEnd) {
    let success = report.spawn_error.is_none() && report.exit_code == Some(0) && has_result;
    let (outcome, mut reason) = classify(report, has_result, grid);
    if !report.invalid_events.is_empty() {
        let note = format!(
            "{} malformed event line(s), first: {}",
            report.invalid_events.len(),
            report.invalid_events[0]
        );
        reason = Some(match reason {
            Some(r) => format!("{r}; {note}"),
            None => note,
        });
    }
    // An exit status alone says little ("exited with code 2"): the stored reason, which
    // `sweep status` shows, carries the trial's last word on stderr too. (A timeout or an
    // out-of-memory says why already; their last stderr line is the executor's noise.)
    if !success && outcome == Outcome::Failed && report.spawn_error.is_none() {
        let tail = last_line(&report.stderr_tail);
        reason = reason.map(|r| format!("{r}{tail}"));
    }
    let end = AttemptEnd {
        outcome: if success { Outcome::Completed } else { outcome },
        exit_code: report.exit_code,
        signal: report.signal,
        reason,
        stderr_tail: report.stderr_tail.clone(),
    };
    (success, end)
}

/// The outcome and reason of an attempt that did not succeed.
fn classify(report: &AttemptReport, has_result: bool, grid: &Grid) -> (Outcome, Option<String>) {
    if let Some(e) = &report.spawn_error {
        return (Outcome::Failed, Some(e.clone()));
    }
    if report.timed_out {
        let limit = grid.timeout.map(humantime_short).unwrap_or_default();
        let why = report
            .reason
            .clone()
            .unwrap_or_else(|| format!("timed out after {limit}"));
        return (Outcome::TimedOut, Some(why));
    }
    if report.interrupted {
        let why = report
            .reason
            .clone()
            .unwrap_or_else(|| "interrupted by the user".into());
        return (Outcome::Interrupted, Some(why));
    }
    let reason = match (report.exit_code, report.signal) {
        (Some(0), _) if !has_result => {
            "exited 0 without a result event (print {\"event\":\"result\",\"metrics\":{...}} before exiting)".to_string()
        }
        (Some(0), _) => return (Outcome::Completed, None),
        _ if oom::is_out_of_memory(&report.stderr_tail) => {
            return (
                Outcome::OutOfMemory,
                Some(format!(
                    "ran out of GPU memory (a retry splits each micro-batch further: {})",
                    oom::SPLIT_VAR
                )),
            )
        }
        (Some(code), _) => format!("exited with code {code}"),
        (None, Some(sig)) => format!("killed by {}", signal_name(sig)),
        (None, None) => "ended without an exit status".to_string(),
    };
    (
        Outcome::Failed,
        Some(report.reason.clone().unwrap_or(reason)),
    )
}

/// Metrics shown in a completed trial's log line: the whole-set ones (their `val_`/`test_`
/// halves are in `sweep status` and the exports), four significant digits, at most this many.
const LOGGED_METRICS: usize = 8;

fn format_metrics(metrics: &BTreeMap<String, Option<f64>>) -> String {
    let whole: Vec<(&String, &Option<f64>)> = metrics
        .iter()
        .filter(|(k, _)| !k.starts_with("val_") && !k.starts_with("test_"))
        .collect();
    let mut shown: Vec<String> = whole
        .iter()
        .take(LOGGED_METRICS)
        .map(|(k, v)| match v {
            Some(v) => format!("{k}={}", significant(*v, 4)),
            None => format!("{k}=NaN"),
        })
        .collect();
    let hidden = metrics.len() - shown.len();
    if hidden > 0 {
        shown.push(format!("(+{hidden} more)"));
    }
    shown.join(" ")
}

/// `x` to `digits` significant digits, in shortest form (`0.1797`, `39.3`, `0.00001235`).
fn significant(x: f64, digits: usize) -> String {
    if x == 0.0 || !x.is_finite() {
        return sweep_core::value::format_float(x);
    }
    let rounded: f64 = format!("{x:.*e}", digits - 1).parse().unwrap_or(x);
    sweep_core::value::format_float(rounded)
}

fn last_line(stderr: &str) -> String {
    stderr
        .lines()
        .rev()
        .find(|l| !l.trim().is_empty())
        .map(|l| format!(" (stderr: {})", l.trim()))
        .unwrap_or_default()
}

fn humantime_short(d: Duration) -> String {
    humantime::format_duration(d).to_string()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    pub(super) fn a_log_line_shows_a_few_whole_set_metrics_briefly() {
        let metrics: BTreeMap<String, Option<f64>> = [
            ("unsafe_rate", Some(0.1796875)),
            ("val_unsafe_rate", Some(0.171875)),
            ("test_unsafe_rate", Some(0.1875)),
            ("eval_loss", Some(39.30480270385742)),
            ("tiny", Some(1.23456e-5)),
            ("broken", None),
        ]
        .into_iter()
        .map(|(k, v)| (k.to_string(), v))
        .collect();
        assert_eq!(
            format_metrics(&metrics),
            "broken=NaN eval_loss=39.3 tiny=0.00001235 unsafe_rate=0.1797 (+2 more)"
        );
        let many: BTreeMap<String, Option<f64>> =
            (0..12).map(|i| (format!("m{i:02}"), Some(0.0))).collect();
        assert!(
            format_metrics(&many).ends_with("m07=0.0 (+4 more)"),
            "{}",
            format_metrics(&many)
        );
        assert_eq!(significant(0.0, 4), "0.0");
        assert_eq!(significant(123456.0, 4), "123500.0");
    }
}
