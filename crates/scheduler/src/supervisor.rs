//! The one supervisor of an attempt, for every executor: it submits the attempt, starts its
//! timeout when the job starts running, asks it to stop at the timeout or on Ctrl-C and
//! kills it when the grace period is over (or at once on a second Ctrl-C), and sends the
//! dispatcher the attempt's report. A panic in any of that still ends the attempt
//! ([`spawn`]), so its slot is never held for ever.

use std::sync::Arc;
use std::time::Duration;

use tokio::sync::{mpsc, watch};
use tokio::time::{sleep_until, Instant};

use crate::attempt::{AttemptReport, Launch, Message};
use crate::executor::{Executor, JobUpdate, RunningJob};
use crate::Stop;

/// Runs one attempt on `executor` in a task of its own. It reports through `tx` and always
/// ends with [`Message::Finished`], panics included.
pub(crate) fn spawn<E: Executor>(
    executor: Arc<E>,
    launch: Launch,
    tx: mpsc::UnboundedSender<Message>,
    stop: watch::Receiver<Stop>,
) {
    let (trial_id, attempt, done) = (launch.trial_id.clone(), launch.attempt, tx.clone());
    let task = tokio::spawn(async move {
        let report = supervise(&*executor, &launch, &tx, stop).await;
        let _ = tx.send(Message::Finished {
            trial_id: launch.trial_id.clone(),
            attempt: launch.attempt,
            report,
        });
    });
    tokio::spawn(report_panic(task, trial_id, attempt, done));
}

/// The attempt from submission to its report.
async fn supervise<E: Executor>(
    executor: &E,
    launch: &Launch,
    tx: &mpsc::UnboundedSender<Message>,
    mut stop: watch::Receiver<Stop>,
) -> AttemptReport {
    if *stop.borrow() != Stop::Run {
        return AttemptReport {
            interrupted: true,
            ..AttemptReport::default()
        };
    }
    let mut job = match executor.submit(launch, tx.clone()).await {
        Ok(job) => job,
        Err(report) => return report,
    };
    let _ = tx.send(Message::Started {
        trial_id: launch.trial_id.clone(),
        attempt: launch.attempt,
        job: job.job_ref(),
    });
    let mut report = AttemptReport::default();
    let far = Instant::now() + Duration::from_secs(100 * 365 * 24 * 3600);
    let mut running = false;
    let mut deadline: Option<Instant> = None;
    let mut kill_at: Option<Instant> = None;
    let mut killed = false;
    let mut stop_open = true;
    loop {
        if *stop.borrow() == Stop::Now && !killed {
            report.interrupted |= !report.timed_out;
            job.kill().await;
            killed = true;
        }
        tokio::select! {
            update = job.next() => match update {
                JobUpdate::Running { node } => {
                    if !running {
                        running = true;
                        deadline = launch.timeout.map(|t| Instant::now() + t);
                    }
                    if let Some(node) = node {
                        let _ = tx.send(Message::Placed {
                            trial_id: launch.trial_id.clone(),
                            attempt: launch.attempt,
                            node,
                        });
                    }
                }
                JobUpdate::Ended => break,
            },
            _ = sleep_until(deadline.unwrap_or(far)), if deadline.is_some() && kill_at.is_none() => {
                report.timed_out = true;
                job.terminate().await;
                kill_at = Some(Instant::now() + launch.grace);
            }
            _ = sleep_until(kill_at.unwrap_or(far)), if kill_at.is_some() && !killed => {
                job.kill().await;
                killed = true;
            }
            changed = stop.changed(), if stop_open => {
                if changed.is_err() {
                    stop_open = false;
                    continue;
                }
                let now = *stop.borrow_and_update();
                match now {
                    Stop::Run => {}
                    Stop::Graceful if running => {
                        report.interrupted |= !report.timed_out;
                        job.terminate().await;
                        kill_at.get_or_insert(Instant::now() + launch.grace);
                    }
                    // Not running yet (queued: nothing to save), or stop at once.
                    Stop::Graceful | Stop::Now => {
                        report.interrupted |= !report.timed_out;
                        if !killed {
                            job.kill().await;
                            killed = true;
                        }
                    }
                }
            }
        }
    }
    job.finish(&mut report).await;
    report
}

/// Waits for an attempt's task and, if it ended without its report (a panic), sends one for
/// it: without this a panicking task would hold its slot (and GPUs) for ever and the sweep
/// would never end.
async fn report_panic(
    task: tokio::task::JoinHandle<()>,
    trial_id: String,
    attempt: u32,
    tx: mpsc::UnboundedSender<Message>,
) {
    let Err(e) = task.await else {
        return;
    };
    let why = match e.try_into_panic() {
        Ok(payload) => payload
            .downcast_ref::<&str>()
            .map(|s| s.to_string())
            .or_else(|| payload.downcast_ref::<String>().cloned())
            .unwrap_or_else(|| "a panic".into()),
        Err(_) => "cancelled".into(),
    };
    let _ = tx.send(Message::Finished {
        trial_id,
        attempt,
        report: AttemptReport::abandoned(&why),
    });
}

#[cfg(test)]
mod tests {
    //! The supervisor on a test executor whose jobs are scripted, not processes: what it asks
    //! a job to do, and what it reports, for each way an attempt can end.

    use super::*;
    use crate::executor::scripted::{Plan, Scripted};

    fn launch(timeout: Option<Duration>, grace: Duration) -> Launch {
        Launch {
            trial_id: "t".into(),
            attempt: 1,
            argv: vec!["true".into()],
            env: Vec::new(),
            workdir: std::env::temp_dir(),
            log_dir: std::env::temp_dir(),
            timeout,
            grace,
        }
    }

    /// Runs one scripted attempt, sending `stop` after `stop_after`; returns what the job
    /// was asked, the messages and the report.
    async fn attempt(
        plan: Plan,
        timeout: Option<Duration>,
        stop_with: Option<(Duration, Stop)>,
    ) -> (Vec<&'static str>, Vec<Message>, AttemptReport) {
        let executor = Arc::new(Scripted::always(plan));
        let asked = executor.asked.clone();
        let (tx, mut rx) = mpsc::unbounded_channel();
        let (stop_tx, stop_rx) = watch::channel(Stop::Run);
        spawn(
            executor,
            launch(timeout, Duration::from_millis(150)),
            tx,
            stop_rx,
        );
        if let Some((after, how)) = stop_with {
            tokio::time::sleep(after).await;
            stop_tx.send(how).unwrap();
        }
        let mut messages = Vec::new();
        let report = loop {
            match tokio::time::timeout(Duration::from_secs(10), rx.recv()).await {
                Ok(Some(Message::Finished { report, .. })) => break report,
                Ok(Some(other)) => messages.push(other),
                other => panic!("the attempt never finished: {other:?}"),
            }
        };
        let asked = asked.lock().unwrap().clone();
        (asked, messages, report)
    }

    #[tokio::test]
    async fn a_job_that_ends_by_itself_is_asked_nothing() {
        let (asked, messages, report) =
            attempt(Plan::RunsFor(Duration::from_millis(20)), None, None).await;
        assert!(asked.is_empty(), "{asked:?}");
        assert!(
            matches!(messages[0], Message::Started { .. }),
            "{messages:?}"
        );
        assert_eq!(report.exit_code, Some(0));
        assert!(!report.timed_out && !report.interrupted);
    }

    #[tokio::test]
    async fn past_its_timeout_a_job_is_asked_to_stop_and_is_not_killed_if_it_does() {
        let (asked, _, report) = attempt(
            Plan::RunsFor(Duration::from_secs(60)),
            Some(Duration::from_millis(50)),
            None,
        )
        .await;
        assert_eq!(asked, ["terminate"]);
        assert!(report.timed_out && !report.interrupted);
        assert_eq!(report.exit_code, Some(143));
    }

    #[tokio::test]
    async fn a_job_that_ignores_the_request_is_killed_when_the_grace_period_ends() {
        let (asked, _, report) =
            attempt(Plan::IgnoresTerm, Some(Duration::from_millis(50)), None).await;
        assert_eq!(asked, ["terminate", "kill"]);
        assert!(report.timed_out);
        assert_eq!(report.exit_code, Some(137));
    }

    #[tokio::test]
    async fn ctrl_c_asks_a_running_job_to_stop_and_a_second_kills_it() {
        let (asked, _, report) = attempt(
            Plan::RunsFor(Duration::from_secs(60)),
            None,
            Some((Duration::from_millis(30), Stop::Graceful)),
        )
        .await;
        assert_eq!(asked, ["terminate"]);
        assert!(report.interrupted && !report.timed_out);

        let (asked, _, report) = attempt(
            Plan::IgnoresTerm,
            None,
            Some((Duration::from_millis(30), Stop::Now)),
        )
        .await;
        assert_eq!(asked, ["kill"]);
        assert!(report.interrupted);
    }

    #[tokio::test]
    async fn a_queued_job_is_cancelled_at_once_on_ctrl_c_and_its_timeout_never_starts() {
        let (asked, _, report) = attempt(
            Plan::Queued,
            Some(Duration::from_millis(20)),
            Some((Duration::from_millis(200), Stop::Graceful)),
        )
        .await;
        // Queued for ten times its timeout: never asked to stop for it, only cancelled.
        assert_eq!(asked, ["kill"]);
        assert!(report.interrupted && !report.timed_out);
    }

    #[tokio::test]
    async fn a_refused_job_reports_why_without_starting() {
        let (asked, messages, report) = attempt(Plan::Refused, None, None).await;
        assert!(asked.is_empty());
        assert!(messages.is_empty(), "{messages:?}");
        assert_eq!(report.rejected.as_deref(), Some("no room"));
    }

    #[tokio::test]
    async fn a_panic_while_watching_still_finishes_the_attempt() {
        let (_, _, report) = attempt(Plan::Panics, None, None).await;
        assert!(report.abandoned);
        assert!(report.reason.unwrap().contains("watcher bug"));
    }
}
