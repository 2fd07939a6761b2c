//! A test executor: jobs that are scripts, not processes, so the supervisor and the
//! dispatcher can be tested on every way an attempt can end, without a process or a cluster.

use std::collections::{BTreeMap, HashMap};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use sweep_core::protocol::Event;
use sweep_store::Orphan;
use tokio::sync::{mpsc, Notify};
use tokio::time::{sleep_until, Instant};

use super::{Executor, JobRef, JobUpdate, RunningJob};
use crate::attempt::{AttemptReport, Launch, Message};
use crate::SchedulerError;

/// How a scripted job behaves.
#[derive(Debug, Clone, Copy)]
pub(crate) enum Plan {
    /// Runs for this long, stopping early on a termination request, and exits 0 without a
    /// result.
    RunsFor(Duration),
    /// Runs for this long, reports `{"score": 1}` and exits 0.
    Succeeds(Duration),
    /// Runs for this long and exits with this code.
    Fails(Duration, i32),
    /// Runs until killed; ignores termination requests.
    IgnoresTerm,
    /// Stays queued until killed.
    Queued,
    /// Panics while it is watched.
    Panics,
    /// Never starts: the executor refuses it.
    Refused,
}

type Script = dyn Fn(&Launch) -> Plan + Send + Sync;

/// Runs each attempt by the plan `script` gives it.
pub(crate) struct Scripted {
    script: Box<Script>,
    /// What the supervisor asked of its jobs, in order.
    pub asked: Arc<Mutex<Vec<&'static str>>>,
    /// Attempts submitted: (trial id, attempt).
    pub submitted: Arc<Mutex<Vec<(String, u32)>>>,
    /// How to stop each job by its id, for [`Executor::kill`].
    stoppers: Arc<Mutex<HashMap<String, Arc<Notify>>>>,
}

impl Scripted {
    /// Every attempt by `plan`.
    pub(crate) fn always(plan: Plan) -> Scripted {
        Scripted::new(move |_| plan)
    }

    /// Each attempt by what `script` says for it.
    pub(crate) fn new(script: impl Fn(&Launch) -> Plan + Send + Sync + 'static) -> Scripted {
        Scripted {
            script: Box::new(script),
            asked: Arc::default(),
            submitted: Arc::default(),
            stoppers: Arc::default(),
        }
    }
}

pub(crate) struct ScriptedJob {
    plan: Plan,
    asked: Arc<Mutex<Vec<&'static str>>>,
    announced: bool,
    end_at: Option<Instant>,
    stopped: Arc<Notify>,
    exit: Option<i32>,
    trial_id: String,
    attempt: u32,
    events: mpsc::UnboundedSender<Message>,
}

impl Executor for Scripted {
    type Job = ScriptedJob;
    const NAME: &'static str = "scripted";

    async fn check(&self) -> Result<(), SchedulerError> {
        Ok(())
    }

    fn leases_gpus(&self) -> bool {
        true
    }

    fn visible_devices(&self, gpus: &[String]) -> Option<String> {
        Some(gpus.join(","))
    }

    async fn submit(
        &self,
        launch: &Launch,
        events: mpsc::UnboundedSender<Message>,
    ) -> Result<ScriptedJob, AttemptReport> {
        self.submitted
            .lock()
            .unwrap()
            .push((launch.trial_id.clone(), launch.attempt));
        let plan = (self.script)(launch);
        if let Plan::Refused = plan {
            return Err(AttemptReport {
                rejected: Some("no room".into()),
                ..AttemptReport::default()
            });
        }
        let end_at = match plan {
            Plan::RunsFor(d) | Plan::Succeeds(d) | Plan::Fails(d, _) => Some(Instant::now() + d),
            _ => None,
        };
        let stopped = Arc::new(Notify::new());
        self.stoppers.lock().unwrap().insert(
            format!("{}-{}", launch.trial_id, launch.attempt),
            stopped.clone(),
        );
        Ok(ScriptedJob {
            plan,
            asked: self.asked.clone(),
            announced: false,
            end_at,
            stopped,
            exit: None,
            trial_id: launch.trial_id.clone(),
            attempt: launch.attempt,
            events,
        })
    }

    async fn kill(&self, jobs: &[JobRef]) {
        for job in jobs {
            self.asked.lock().unwrap().push("kill (dispatcher)");
            if let JobRef::Job { id, .. } = job {
                if let Some(stop) = self.stoppers.lock().unwrap().get(id) {
                    stop.notify_one();
                }
            }
        }
    }

    async fn clean_up_unrecorded(&self, _orphan: &Orphan) -> Vec<String> {
        Vec::new()
    }
}

impl RunningJob for ScriptedJob {
    fn job_ref(&self) -> JobRef {
        JobRef::Job {
            executor: Scripted::NAME,
            id: format!("{}-{}", self.trial_id, self.attempt),
        }
    }

    async fn next(&mut self) -> JobUpdate {
        if let Plan::Panics = self.plan {
            panic!("watcher bug");
        }
        if !self.announced && !matches!(self.plan, Plan::Queued) {
            self.announced = true;
            return JobUpdate::Running { node: None };
        }
        if self.exit.is_none() {
            let far = Instant::now() + Duration::from_secs(3600);
            tokio::select! {
                _ = sleep_until(self.end_at.unwrap_or(far)) => {
                    self.exit = Some(match self.plan {
                        Plan::Succeeds(_) => {
                            let _ = self.events.send(Message::Event {
                                trial_id: self.trial_id.clone(),
                                attempt: self.attempt,
                                event: Event::Result {
                                    metrics: BTreeMap::from([("score".to_string(), Some(1.0))]),
                                    params: Default::default(),
                                },
                            });
                            0
                        }
                        Plan::Fails(_, code) => code,
                        _ => 0,
                    });
                }
                _ = self.stopped.notified() => {
                    self.exit.get_or_insert(137);
                }
            }
        }
        JobUpdate::Ended
    }

    async fn terminate(&mut self) {
        self.asked.lock().unwrap().push("terminate");
        if let Plan::RunsFor(_) | Plan::Succeeds(_) | Plan::Fails(..) = self.plan {
            self.exit = Some(143);
            self.stopped.notify_one();
        }
    }

    async fn kill(&mut self) {
        self.asked.lock().unwrap().push("kill");
        self.exit.get_or_insert(137);
        self.stopped.notify_one();
    }

    async fn finish(self, report: &mut AttemptReport) {
        report.exit_code = self.exit;
    }
}
