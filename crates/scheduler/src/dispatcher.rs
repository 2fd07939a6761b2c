//! The dispatcher: claims trials into free slots, records what attempts report, renews the
//! lease and reclaims trials of dead orchestrators, and stops when told to.

use std::collections::{BTreeMap, HashMap};
use std::sync::Arc;
use std::time::Duration;

use sweep_core::protocol::env;
use sweep_core::protocol::Event;
use sweep_core::value::params_to_json;
use sweep_core::{trial_id, Grid, Params, TrialKey};
use sweep_store::{
    now_ms, AttemptEnd, Claimed, CurvePoint, Orphan, Outcome, Store, StoreError, SweepRecord,
    TrialStatus,
};
use tokio::sync::{mpsc, watch};
use tokio::time::{sleep_until, Instant};

use crate::attempt::{Launch, Message, Report};
use crate::executor::{self, with_executor, Executor, JobRef};
use crate::gpus::GpuPool;
use crate::oom;
use crate::process::{self, signal_name};
use crate::supervisor;
use crate::{Progress, Reporter, RunConfig, SchedulerError, Stop, Summary};

/// Curve points buffered before they are written in one transaction.
const CURVE_BATCH: usize = 512;
/// Longest wait between retries of one trial.
const MAX_BACKOFF: Duration = Duration::from_secs(600);

/// An attempt is named by its trial and its number: after a lost lease, an old attempt of a
/// trial may still be ending while the trial runs again elsewhere.
type AttemptKey = (String, u32);

struct Running {
    /// What the attempt runs as, once it started.
    job: Option<JobRef>,
    gpus: Vec<String>,
    params: Params,
    results: BTreeMap<String, BTreeMap<String, Option<f64>>>,
}

struct Dispatcher<'a, E: Executor> {
    store: &'a Store,
    grid: &'a Grid,
    sweep: &'a SweepRecord,
    config: &'a RunConfig,
    executor: Arc<E>,
    /// This runner's lease (its runner id), under which every running attempt was claimed
    /// and records: it changes only when no attempt runs (after a lost lease, or when
    /// strays are taken back), so no attempt ever records under another lease than its own.
    runner_id: String,
    /// The lease was lost: every running attempt belongs to it and is being killed; nothing
    /// is claimed until they are all gone, then the runner registers anew.
    lease_lost: bool,
    tx: mpsc::UnboundedSender<Message>,
    stop: watch::Receiver<Stop>,
    running: HashMap<AttemptKey, Running>,
    pool: GpuPool,
    curves: Vec<CurvePoint>,
    summary: Summary,
    progress: Progress,
    /// The executor refused a job while others ran (a cluster limit, say): nothing more is
    /// submitted until one of them ends.
    held_back: bool,
}

/// Runs the sweep's claimable trials until none is left, or until `stop` says so. Results
/// are stored as each trial finishes, so stopping (or crashing) at any point loses nothing.
pub async fn run_sweep(
    store: &Store,
    grid: &Grid,
    sweep: &SweepRecord,
    config: &RunConfig,
    stop: watch::Receiver<Stop>,
    reporter: &mut dyn Reporter,
) -> Result<Summary, SchedulerError> {
    let slots = slots(grid, config)?;
    with_executor!(config.executor, grid, |executor| {
        run_on(executor, store, grid, sweep, config, stop, slots, reporter).await
    })
}

/// [`run_sweep`] on one executor.
#[allow(clippy::too_many_arguments)]
async fn run_on<E: Executor>(
    executor: E,
    store: &Store,
    grid: &Grid,
    sweep: &SweepRecord,
    config: &RunConfig,
    stop: watch::Receiver<Stop>,
    slots: usize,
    reporter: &mut dyn Reporter,
) -> Result<Summary, SchedulerError> {
    let executor = Arc::new(executor);
    let runner = store
        .register_runner(&config.host, std::process::id())
        .await?;
    let (tx, mut rx) = mpsc::unbounded_channel();
    let counts = store.counts(sweep.id).await?;
    let mut d = Dispatcher {
        store,
        grid,
        sweep,
        config,
        executor,
        runner_id: runner.id.clone(),
        lease_lost: false,
        tx,
        stop: stop.clone(),
        running: HashMap::new(),
        pool: GpuPool::new(config.gpus.clone()),
        curves: Vec::new(),
        summary: Summary::default(),
        held_back: false,
        progress: Progress {
            total: counts.total(),
            completed: counts.get(TrialStatus::Completed),
            failed: counts.get(TrialStatus::Failed),
            running: 0,
        },
    };
    let result = d.run(&mut rx, slots, reporter).await;
    match result {
        Ok(()) => {
            store.end_runner(&d.runner_id).await?;
            Ok(d.summary)
        }
        Err(e) => {
            // A runner that stops by an error hands back what it holds: its trials' processes
            // are killed and the trials re-queued as interrupted. If even that cannot be
            // written (the disk is full, say), the lease is left to expire, and the next
            // `sweep run` takes the trials back as it would from a crashed runner.
            d.kill_running().await;
            if let Err(e2) = store
                .reclaim(&d.runner_id, &format!("its runner stopped: {e}"))
                .await
            {
                tracing::warn!("cannot hand back this run's trials ({e2}); the next `sweep run` will take them back");
            }
            Err(e)
        }
    }
}

/// Checks, before anything is stored, that `config` can run `grid` at all: trials to run at
/// once, enough GPUs for one trial, and an executor that accepts the grid's jobs (SLURM's
/// commands and `sbatch --test-only`). `sweep run` calls it before it registers the sweep, so
/// a refused run leaves the database as it found it.
pub async fn preflight(grid: &Grid, config: &RunConfig) -> Result<(), SchedulerError> {
    slots(grid, config)?;
    executor::check(config.executor, grid).await
}

/// How many attempts run at once: `parallel`, capped by the GPUs when trials lease them.
fn slots(grid: &Grid, config: &RunConfig) -> Result<usize, SchedulerError> {
    if config.parallel == 0 {
        return Err(SchedulerError::NoSlots);
    }
    let per_trial = grid.gpus_per_trial;
    if per_trial == 0 || config.gpus.is_empty() {
        return Ok(config.parallel);
    }
    if per_trial > config.gpus.len() {
        return Err(SchedulerError::NotEnoughGpus {
            per_trial,
            available: config.gpus.len(),
            ids: config.gpus.join(","),
        });
    }
    Ok(config.parallel.min(config.gpus.len() / per_trial))
}

impl<E: Executor> Dispatcher<'_, E> {
    async fn run(
        &mut self,
        rx: &mut mpsc::UnboundedReceiver<Message>,
        slots: usize,
        reporter: &mut dyn Reporter,
    ) -> Result<(), SchedulerError> {
        self.reclaim_dead(reporter).await?;
        reporter.progress(&self.progress);
        let mut heartbeat = tokio::time::interval(self.config.heartbeat);
        let mut stop = self.stop.clone();
        let mut stop_open = true;
        let mut stopping = false;
        let mut wake_at: Option<Instant> = None;
        let mut queue_dry = false;
        loop {
            if self.lease_lost && self.running.is_empty() {
                self.register_anew(reporter).await?;
                queue_dry = false;
            }
            if !stopping && !queue_dry && !self.lease_lost && self.running.len() < slots {
                queue_dry = self.fill(slots, reporter).await?;
            }
            if stopping && self.running.is_empty() {
                break;
            }
            wake_at = wake_at.filter(|w| *w > Instant::now());
            if queue_dry && self.running.len() < slots && !stopping && wake_at.is_none() {
                let (left, earliest) = self
                    .store
                    .queue_state(self.sweep.id, self.grid.max_attempts)
                    .await?;
                if left == 0 && self.running.is_empty() {
                    if self.take_back_strays(reporter).await? == 0 {
                        break;
                    }
                    queue_dry = false;
                    continue;
                }
                if left > 0 {
                    let wait_ms = earliest.map_or(1000, |t| (t - now_ms()).clamp(10, 60_000));
                    wake_at = Some(Instant::now() + Duration::from_millis(wait_ms as u64));
                }
            }
            let far = Instant::now() + Duration::from_secs(3600);
            tokio::select! {
                msg = rx.recv() => {
                    let Some(msg) = msg else { break };
                    let mut finished = self.handle(msg, reporter).await?;
                    while let Ok(msg) = rx.try_recv() {
                        finished |= self.handle(msg, reporter).await?;
                        if self.curves.len() >= CURVE_BATCH { break; }
                    }
                    self.flush_curves().await?;
                    if finished {
                        queue_dry = false;
                        reporter.progress(&self.progress);
                    }
                }
                _ = heartbeat.tick() => {
                    self.renew(reporter).await?;
                    if self.reclaim_dead(reporter).await? > 0 {
                        queue_dry = false;
                    }
                }
                _ = sleep_until(wake_at.unwrap_or(far)), if wake_at.is_some() => {
                    wake_at = None;
                    queue_dry = false;
                }
                changed = stop.changed(), if stop_open => {
                    if changed.is_err() {
                        stop_open = false;
                    } else if *stop.borrow() != Stop::Run && !stopping {
                        stopping = true;
                        self.summary.stopped = true;
                        let how = if *stop.borrow() == Stop::Now { "killing" } else { "stopping" };
                        reporter.note(&format!("{how} {} running trial(s); results so far are stored", self.running.len()));
                    }
                }
            }
        }
        Ok(())
    }

    /// Claims trials into free slots. Returns true when the queue had nothing to claim.
    async fn fill(
        &mut self,
        slots: usize,
        reporter: &mut dyn Reporter,
    ) -> Result<bool, SchedulerError> {
        while self.running.len() < slots && !self.held_back {
            // Not the trial's fault: do not spend its attempts on a directory that vanished.
            if !self.config.workdir.is_dir() {
                return Err(SchedulerError::WorkdirGone(self.config.workdir.clone()));
            }
            let pooled = self.executor.leases_gpus() && !self.config.gpus.is_empty();
            let gpus = if self.grid.gpus_per_trial > 0 && pooled {
                match self.pool.take(self.grid.gpus_per_trial) {
                    Some(g) => g,
                    None => return Ok(false),
                }
            } else {
                Vec::new()
            };
            let gpu_label = (!gpus.is_empty()).then(|| gpus.join(","));
            let claimed = self
                .store
                .claim(
                    self.sweep.id,
                    &self.runner_id,
                    self.config.lease,
                    self.grid.max_attempts,
                    gpu_label.as_deref(),
                )
                .await;
            let claimed = match claimed {
                Ok(claimed) => claimed,
                Err(StoreError::LeaseLapsed(_)) => {
                    // Woken from a pause, say, before the heartbeat: renew (or learn that
                    // the lease is gone) before claiming anything.
                    self.pool.give_back(gpus);
                    self.renew(reporter).await?;
                    return Ok(false);
                }
                Err(e) => return Err(e.into()),
            };
            let Some(claimed) = claimed else {
                self.pool.give_back(gpus);
                return Ok(true);
            };
            self.launch(claimed, gpus)?;
        }
        Ok(false)
    }

    fn launch(&mut self, claimed: Claimed, gpus: Vec<String>) -> Result<(), SchedulerError> {
        let trial_dir = self
            .config
            .trials_root
            .join(&self.sweep.name)
            .join(&claimed.id);
        std::fs::create_dir_all(&trial_dir)
            .map_err(|e| SchedulerError::TrialDir(trial_dir.clone(), e))?;
        let mut all = claimed.params.clone();
        all.extend(self.grid.fixed.clone());
        let trial_dir_text = trial_dir.display().to_string();
        let attempt_text = claimed.attempt.to_string();
        let argv = match &self.grid.command {
            Some(template) => template.render(|name| match name {
                "trial_id" => Some(claimed.id.clone()),
                "trial_dir" => Some(trial_dir_text.clone()),
                "attempt" => Some(attempt_text.clone()),
                other => all.get(other).map(ToString::to_string),
            }),
            // The built-in trainer is this same binary's hidden `trial` subcommand.
            None => vec![
                self.config.builtin_trial.display().to_string(),
                "trial".to_string(),
            ],
        };
        let mut env = vec![
            (env::SWEEP.to_string(), self.sweep.name.clone()),
            (env::TRIAL_ID.to_string(), claimed.id.clone()),
            (env::TRIAL_DIR.to_string(), trial_dir_text.clone()),
            (env::PARAMS.to_string(), params_to_json(&all)),
            (env::ATTEMPT.to_string(), attempt_text.clone()),
            // The `sweep` binary itself, for a command's trial to end with `sweep eval`.
            (
                env::BIN.to_string(),
                self.config.builtin_trial.display().to_string(),
            ),
            (process::RUNNER_VAR.to_string(), self.runner_id.clone()),
            (
                env::RESUME.to_string(),
                if claimed.attempt > 1 { "1" } else { "0" }.to_string(),
            ),
            (env::AXES.to_string(), axes_json(self.grid, &claimed.params)),
            (
                oom::SPLIT_VAR.to_string(),
                oom::split_after(claimed.out_of_memory).to_string(),
            ),
        ];
        if let Some(devices) = self.executor.visible_devices(&gpus) {
            env.push(("CUDA_VISIBLE_DEVICES".to_string(), devices));
        }
        if let Some(trainer) = &self.grid.trainer {
            env.push((env::TRAINER.to_string(), trainer.settings.to_string()));
        }
        let launch = Launch {
            trial_id: claimed.id.clone(),
            attempt: claimed.attempt,
            argv,
            env,
            workdir: self.config.workdir.clone(),
            guard: self.config.guard.clone(),
            log_dir: trial_dir.join("logs"),
            timeout: self.grid.timeout,
            grace: self.grid.grace,
        };
        let resume = if claimed.attempt > 1 {
            " (resuming)"
        } else {
            ""
        };
        let on = if gpus.is_empty() {
            String::new()
        } else {
            format!(" on GPU {}", gpus.join(","))
        };
        tracing::debug!(
            "start {} attempt {}{on}{resume}",
            claimed.id,
            claimed.attempt
        );
        supervisor::spawn(
            self.executor.clone(),
            launch,
            self.tx.clone(),
            self.stop.clone(),
        );
        self.running.insert(
            (claimed.id, claimed.attempt),
            Running {
                job: None,
                gpus,
                params: claimed.params,
                results: BTreeMap::new(),
            },
        );
        self.progress.running = self.running.len() as u64;
        Ok(())
    }

    /// Records one message. Returns true when a trial finished.
    async fn handle(
        &mut self,
        msg: Message,
        reporter: &mut dyn Reporter,
    ) -> Result<bool, SchedulerError> {
        match msg {
            Message::Started {
                trial_id,
                attempt,
                job,
            } => {
                let Some(running) = self.running.get_mut(&(trial_id.clone(), attempt)) else {
                    return Ok(false);
                };
                running.job = Some(job.clone());
                if self.lease_lost {
                    // Its lease was lost before it ran: stop it now, record nothing.
                    self.executor.kill(&[job]).await;
                    return Ok(false);
                }
                let lease = &self.runner_id;
                match job {
                    JobRef::Process(pid) => {
                        self.store.set_pid(&trial_id, lease, attempt, pid).await?
                    }
                    JobRef::Job { executor, id } => {
                        self.store
                            .set_job(&trial_id, lease, attempt, executor, &id, None)
                            .await?
                    }
                }
                Ok(false)
            }
            Message::Placed {
                trial_id,
                attempt,
                node,
            } => {
                if let Some(Running {
                    job: Some(JobRef::Job { executor, id }),
                    ..
                }) = self.running.get(&(trial_id.clone(), attempt))
                {
                    self.store
                        .set_job(
                            &trial_id,
                            &self.runner_id,
                            attempt,
                            executor,
                            id,
                            Some(&node),
                        )
                        .await?;
                }
                Ok(false)
            }
            Message::Event {
                trial_id,
                attempt,
                event,
            } => {
                match event {
                    Event::Metric { step, name, value } => self.curves.push(CurvePoint {
                        trial_id,
                        attempt,
                        step: step as i64,
                        name,
                        value,
                    }),
                    Event::Checkpoint { step } => {
                        if self.running.contains_key(&(trial_id.clone(), attempt)) {
                            self.store
                                .set_checkpoint(&trial_id, &self.runner_id, attempt, step as i64)
                                .await?
                        }
                    }
                    Event::Result { metrics, params } => {
                        self.add_result((trial_id, attempt), metrics, params, reporter)
                    }
                }
                Ok(false)
            }
            Message::Finished {
                trial_id,
                attempt,
                report,
            } => {
                self.flush_curves().await?;
                self.finish((trial_id, attempt), report, reporter).await?;
                Ok(true)
            }
        }
    }

    fn add_result(
        &mut self,
        key: AttemptKey,
        metrics: BTreeMap<String, Option<f64>>,
        overrides: Params,
        reporter: &mut dyn Reporter,
    ) {
        let Some(running) = self.running.get_mut(&key) else {
            return;
        };
        let trial_id = key.0.as_str();
        let target = if overrides.is_empty() {
            trial_id.to_string()
        } else {
            if let Some(unknown) = overrides.keys().find(|k| !running.params.contains_key(*k)) {
                reporter.note(&format!(
                    "trial {trial_id}: ignored a result for params {}: `{unknown}` is not a swept parameter",
                    params_to_json(&overrides)
                ));
                return;
            }
            let mut point = running.params.clone();
            point.extend(overrides);
            trial_id_of(&self.sweep.name, &point)
        };
        running.results.insert(target, metrics);
    }

    async fn finish(
        &mut self,
        (trial_id, attempt): AttemptKey,
        report: Report,
        reporter: &mut dyn Reporter,
    ) -> Result<(), SchedulerError> {
        let Some(running) = self.running.remove(&(trial_id.clone(), attempt)) else {
            return Ok(());
        };
        if report.abandoned {
            // Nobody watches its process any more: end it before its slot is reused.
            if let Some(job) = &running.job {
                self.executor.kill(std::slice::from_ref(job)).await;
            }
        }
        self.pool.give_back(running.gpus);
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
        let success = report.spawn_error.is_none() && report.exit_code == Some(0) && has_result;
        let (outcome, mut reason) = classify(&report, has_result, self.grid);
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
            reason: reason.clone(),
            stderr_tail: report.stderr_tail.clone(),
        };
        if success {
            let Some(others) = self
                .store
                .complete(&trial_id, &self.runner_id, attempt, &running.results, &end)
                .await?
            else {
                reporter.note(&format!(
                    "trial {trial_id}: result of attempt {} not recorded: another orchestrator took the trial over while it ran",
                    attempt
                ));
                return Ok(());
            };
            self.summary.completed += 1 + others;
            self.progress.completed += 1 + others;
            let metrics = running
                .results
                .get(&trial_id)
                .map(format_metrics)
                .unwrap_or_default();
            let extra = if others > 0 {
                format!(" (+{others} point(s) reported)")
            } else {
                String::new()
            };
            reporter.note(&format!(
                "completed {trial_id} {} {metrics}{extra}",
                params_to_json(&running.params)
            ));
            return Ok(());
        }
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
                &trial_id,
                &self.runner_id,
                attempt,
                &end,
                retry_at,
                self.grid.max_attempts,
                retryable,
            )
            .await?;
        let reason = reason.unwrap_or_default();
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

    /// Renews the lease; when it turns out to be lost, stops everything claimed under it.
    async fn renew(&mut self, reporter: &mut dyn Reporter) -> Result<(), SchedulerError> {
        if !self.lease_lost && !self.store.heartbeat(&self.runner_id).await? {
            self.lose_lease(reporter).await;
        }
        Ok(())
    }

    /// Another orchestrator presumed this one dead (it was paused, or cut off from the
    /// database, for longer than the lease) and took its trials back. Nothing more is
    /// claimed; every attempt claimed under the lost lease is killed (those not started yet
    /// as soon as they start), since their results would be refused; only once they are all
    /// gone does the runner register anew ([`Self::register_anew`]), so none of them can
    /// ever run beside an attempt this runner starts later.
    async fn lose_lease(&mut self, reporter: &mut dyn Reporter) {
        self.lease_lost = true;
        reporter.note(&format!(
            "this orchestrator missed its heartbeats for longer than the lease; its {} running trial(s) were taken over by another and are stopped here",
            self.running.len()
        ));
        self.kill_running().await;
    }

    /// Goes on under a new lease once nothing of the lost one runs.
    async fn register_anew(&mut self, reporter: &mut dyn Reporter) -> Result<(), SchedulerError> {
        debug_assert!(
            self.running.is_empty(),
            "attempts of the lost lease still run"
        );
        self.runner_id = self
            .store
            .register_runner(&self.config.host, std::process::id())
            .await?
            .id;
        self.lease_lost = false;
        reporter.note("its trials stopped; going on under a new lease");
        Ok(())
    }

    /// Takes back, when this dispatcher runs nothing, trials the store still says it holds:
    /// a claim whose commit went through but whose reply was lost on the way back (and was
    /// retried) holds a trial that no attempt runs. They are re-queued, under a new lease, so
    /// this run still runs them. Returns how many there were.
    async fn take_back_strays(
        &mut self,
        reporter: &mut dyn Reporter,
    ) -> Result<u64, SchedulerError> {
        let why = "claimed by its runner, but the claim's reply was lost";
        let strays = self.store.reclaim(&self.runner_id, why).await?;
        if strays.is_empty() {
            return Ok(0);
        }
        reporter.note(&format!("re-queued {} trial(s): {why}", strays.len()));
        self.runner_id = self
            .store
            .register_runner(&self.config.host, std::process::id())
            .await?
            .id;
        Ok(strays.len() as u64)
    }

    /// Kills every attempt this dispatcher runs (process groups, SLURM jobs).
    async fn kill_running(&self) {
        let jobs: Vec<JobRef> = self
            .running
            .values()
            .filter_map(|r| r.job.clone())
            .collect();
        self.executor.kill(&jobs).await;
    }

    /// The executor refused to start an attempt. The trial goes back to the queue without
    /// spending an attempt; while other attempts run, nothing more is submitted until one
    /// ends (a limit on jobs at once is the usual cause), else the run stops with the
    /// executor's message, results so far stored.
    async fn rejected(
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

    async fn flush_curves(&mut self) -> Result<(), SchedulerError> {
        if !self.curves.is_empty() {
            let points = std::mem::take(&mut self.curves);
            self.store.add_curve_points(&points).await?;
        }
        Ok(())
    }

    /// Takes back the trials of orchestrators that stopped renewing their lease or, on this
    /// host, whose process is gone. Kills what they left running here.
    async fn reclaim_dead(&mut self, reporter: &mut dyn Reporter) -> Result<u64, SchedulerError> {
        let now = now_ms();
        let mut reclaimed = 0;
        for runner in self.store.live_runners().await? {
            if runner.id == self.runner_id {
                continue;
            }
            let silent_ms = now - runner.heartbeat_at;
            let local = runner.host == self.config.host;
            let lease_ms = self.config.lease.as_millis() as i64;
            let (orphans, why) = if local && !process::alive(runner.pid) {
                let why = format!(
                    "orchestrator pid {} on {} exited without finishing",
                    runner.pid, runner.host
                );
                (self.store.reclaim(&runner.id, &why).await?, why)
            } else if silent_ms > lease_ms {
                let why = format!(
                    "orchestrator on {} sent no heartbeat for {} s",
                    runner.host,
                    silent_ms / 1000
                );
                // Only if it is still silent when its lease is ended: it may have woken up.
                let silent_before = now - lease_ms;
                let orphans = self
                    .store
                    .reclaim_silent(&runner.id, silent_before, &why)
                    .await?;
                (orphans, why)
            } else {
                continue;
            };
            reclaimed += self.clean_up(&orphans, &why, reporter).await;
        }
        let why = "its orchestrator ended without handing it back";
        let stranded = self.store.reclaim_stranded(why).await?;
        reclaimed += self.clean_up(&stranded, why, reporter).await;
        self.summary.reclaimed += reclaimed;
        Ok(reclaimed)
    }

    /// Stops what taken-back trials left running, and says so.
    async fn clean_up(&self, orphans: &[Orphan], why: &str, reporter: &mut dyn Reporter) -> u64 {
        for orphan in orphans {
            for line in executor::clean_up_orphan(&*self.executor, orphan, &self.config.host).await
            {
                reporter.note(&line);
            }
        }
        if !orphans.is_empty() {
            reporter.note(&format!("re-queued {} trial(s): {why}", orphans.len()));
        }
        orphans.len() as u64
    }
}

/// `SWEEP_AXES` for the trial with `params`: `{"name": [values...], ...}` for every swept
/// parameter, as far as the axes zipped with it allow (see [`Grid::axis_values_beside`]).
fn axes_json(grid: &Grid, params: &Params) -> String {
    let axes: serde_json::Map<String, serde_json::Value> = grid
        .axis_values_beside(params)
        .into_iter()
        .map(|(name, values)| (name, values.iter().map(|v| v.to_json()).collect()))
        .collect();
    serde_json::Value::Object(axes).to_string()
}

fn trial_id_of(sweep: &str, params: &Params) -> String {
    trial_id(sweep, &TrialKey::of(params))
}

/// The outcome and reason of an attempt that did not succeed.
fn classify(report: &Report, has_result: bool, grid: &Grid) -> (Outcome, Option<String>) {
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
    fn a_log_line_shows_a_few_whole_set_metrics_briefly() {
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
