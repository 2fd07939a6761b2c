//! One poller for all of an orchestrator's jobs: a single `squeue` call a tick, however many
//! jobs it has, and `scontrol`/`sacct` once per job when it leaves the queue, for how it
//! ended. Sites ask users not to poll the controller per job.

use std::collections::HashMap;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex, Weak};
use std::time::Duration;

use tokio::sync::watch;

use super::cli::{self, call, Ending, SQUEUE_FORMAT};

/// Where a job stands, as the poller last saw it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) enum JobState {
    /// Submitted, not started (or requeued, or held).
    Queued,
    /// Started on `node`.
    Running {
        /// Its node list.
        node: String,
    },
    /// Gone from the queue.
    Ended(Ending),
}

/// Publishes the state of every watched job.
pub(crate) struct Watcher {
    jobs: Mutex<HashMap<String, watch::Sender<JobState>>>,
    poll: Duration,
    /// Whether the poller runs: it starts with the first job, on the runtime that job's
    /// attempt runs on.
    polling: AtomicBool,
}

/// After this many polls in a row in which `squeue` failed, say so once more.
const WARN_EVERY: u32 = 30;

impl Watcher {
    /// A watcher that will poll every `poll`, for as long as it is in use.
    pub(crate) fn new(poll: Duration) -> Arc<Watcher> {
        Arc::new(Watcher {
            jobs: Mutex::new(HashMap::new()),
            poll,
            polling: AtomicBool::new(false),
        })
    }

    /// Follows `job_id` until it ends.
    pub(crate) fn watch(self: &Arc<Self>, job_id: &str) -> watch::Receiver<JobState> {
        let (tx, rx) = watch::channel(JobState::Queued);
        self.jobs
            .lock()
            .expect("the job map is never poisoned")
            .insert(job_id.to_string(), tx);
        if !self.polling.swap(true, Ordering::SeqCst) {
            tokio::spawn(poll_loop(Arc::downgrade(self), self.poll));
        }
        rx
    }

    fn ids(&self) -> Vec<String> {
        let jobs = self.jobs.lock().expect("the job map is never poisoned");
        jobs.iter()
            .filter(|(_, tx)| !tx.is_closed())
            .map(|(id, _)| id.clone())
            .collect()
    }

    fn publish(&self, id: &str, state: JobState) {
        let mut jobs = self.jobs.lock().expect("the job map is never poisoned");
        let ended = matches!(state, JobState::Ended(_));
        if let Some(tx) = jobs.get(id) {
            tx.send_if_modified(|now| {
                let changed = *now != state;
                *now = state;
                changed
            });
        }
        if ended {
            jobs.remove(id);
        }
    }

    fn forget_unwatched(&self) {
        let mut jobs = self.jobs.lock().expect("the job map is never poisoned");
        jobs.retain(|_, tx| !tx.is_closed());
    }
}

async fn poll_loop(watcher: Weak<Watcher>, poll: Duration) {
    let mut failures = 0u32;
    loop {
        tokio::time::sleep(poll).await;
        let Some(watcher) = watcher.upgrade() else {
            return;
        };
        watcher.forget_unwatched();
        let ids = watcher.ids();
        if ids.is_empty() {
            continue;
        }
        let args = [
            "-h".to_string(),
            "-o".to_string(),
            SQUEUE_FORMAT.to_string(),
            "-j".to_string(),
            ids.join(","),
        ];
        let listed = match call("squeue", &args).await {
            Ok((out, _)) => cli::parse_squeue(&out),
            Err(e) if cli::no_such_jobs(&e) => HashMap::new(),
            Err(e) => {
                // The controller may be restarting: the jobs run on regardless; nothing is
                // concluded from a failed poll.
                if failures.is_multiple_of(WARN_EVERY) {
                    tracing::warn!("cannot poll SLURM ({e}); trying again");
                }
                failures += 1;
                continue;
            }
        };
        failures = 0;
        for id in ids {
            let state = match listed.get(&id) {
                Some(job) if cli::is_queued(&job.state) => JobState::Queued,
                Some(job) if cli::is_active(&job.state) => JobState::Running {
                    node: job.nodes.clone(),
                },
                // Listed, but ended (some sites keep ended jobs in squeue), or not listed.
                _ => match look_up(&id).await {
                    Lookup::Ended(ending) => JobState::Ended(ending),
                    Lookup::Active => continue,
                    Lookup::Unknown if listed.contains_key(&id) => continue,
                    Lookup::Unknown => JobState::Ended(Ending {
                        state: "UNKNOWN".into(),
                        exit_code: 0,
                        signal: None,
                        nodes: None,
                    }),
                },
            };
            watcher.publish(&id, state);
        }
    }
}

/// What SLURM says of a job that `squeue` did not list as queued or running.
enum Lookup {
    Ended(Ending),
    /// Still running after all (the listing was a moment older).
    Active,
    /// Neither the controller nor accounting knows it.
    Unknown,
}

/// How a job that left the queue ended: from `scontrol` while the controller still holds
/// it, else from accounting.
async fn look_up(id: &str) -> Lookup {
    let shown = call(
        "scontrol",
        &["show".into(), "job".into(), "-o".into(), id.into()],
    )
    .await;
    if let Ok((out, _)) = shown {
        match cli::parse_scontrol(&out) {
            Some(ending) => return Lookup::Ended(ending),
            None if out.contains("JobState=") => return Lookup::Active,
            None => {}
        }
    }
    let args = ["-P", "-n", "-X", "-o", "State,ExitCode", "-j", id].map(String::from);
    match call("sacct", &args).await {
        Ok((out, _)) => match cli::parse_sacct(&out) {
            Some(ending) => Lookup::Ended(ending),
            None if out.trim().is_empty() => Lookup::Unknown,
            None => Lookup::Active,
        },
        Err(_) => Lookup::Unknown,
    }
}
