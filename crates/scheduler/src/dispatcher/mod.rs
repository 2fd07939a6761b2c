//! The dispatcher: claims trials into free slots, records what attempts report, renews the
//! lease and reclaims trials of dead orchestrators, and stops when told to. This file has
//! its loop; `launch` turns a claimed trial into an attempt, `ending` records how an attempt
//! ended, `lease` keeps this runner's lease and takes back what dead runners left.

mod ending;
mod launch;
mod lease;
#[cfg(test)]
mod tests;

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

use crate::attempt::{AttemptReport, Launch, Message};
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
    /// Written together once the messages at hand are handled (see [`Store::record`]).
    unrecorded: ending::Unrecorded,
    axes: launch::AxesMemo,
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
    with_executor!(config, grid, |executor| {
        run_on(executor, store, grid, sweep, config, stop, slots, reporter).await
    })
}

/// [`run_sweep`] on one executor.
#[expect(clippy::too_many_arguments)]
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
        unrecorded: ending::Unrecorded::default(),
        axes: launch::AxesMemo::default(),
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
            d.executor.close().await;
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
    executor::check(config, grid).await
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
            // The stop is read here too, not only when its branch below is picked: attempts
            // that end because of it can be handled first, and their trials, interrupted,
            // must not be claimed again.
            if !stopping && *stop.borrow() != Stop::Run {
                stopping = true;
                self.summary.stopped = true;
                let how = if *stop.borrow() == Stop::Now {
                    "killing"
                } else {
                    "stopping"
                };
                reporter.note(&format!(
                    "{how} {} running trial(s); results so far are stored",
                    self.running.len()
                ));
            }
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
                    let handled = self.handle_at_hand(msg, rx, reporter).await;
                    // What was handled before a failure is written all the same.
                    let recorded = self.record(reporter).await;
                    let finished = handled?;
                    recorded?;
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
                // Wakes the loop, whose top starts the stop.
                changed = stop.changed(), if stop_open => {
                    if changed.is_err() {
                        stop_open = false;
                    }
                }
            }
        }
        Ok(())
    }

    /// Claims trials into free slots, all that are free at once (one transaction). Returns
    /// true when the queue had nothing more to claim.
    async fn fill(
        &mut self,
        slots: usize,
        reporter: &mut dyn Reporter,
    ) -> Result<bool, SchedulerError> {
        if self.held_back || self.running.len() >= slots {
            return Ok(false);
        }
        // Not the trial's fault: do not spend its attempts on a directory that vanished.
        if !self.config.workdir.is_dir() {
            return Err(SchedulerError::WorkdirGone(self.config.workdir.clone()));
        }
        let pooled = self.executor.leases_gpus() && !self.config.gpus.is_empty();
        let mut gpu_sets = Vec::new();
        for _ in self.running.len()..slots {
            if self.grid.gpus_per_trial > 0 && pooled {
                match self.pool.take(self.grid.gpus_per_trial) {
                    Some(gpus) => gpu_sets.push(gpus),
                    None => break,
                }
            } else {
                gpu_sets.push(Vec::new());
            }
        }
        if gpu_sets.is_empty() {
            return Ok(false);
        }
        let labels: Vec<Option<String>> = gpu_sets
            .iter()
            .map(|gpus| (!gpus.is_empty()).then(|| gpus.join(",")))
            .collect();
        let labels: Vec<Option<&str>> = labels.iter().map(Option::as_deref).collect();
        let claimed = self
            .store
            .claim_many(
                self.sweep.id,
                &self.runner_id,
                self.config.lease,
                self.grid.max_attempts,
                &labels,
            )
            .await;
        let claimed = match claimed {
            Ok(claimed) => claimed,
            Err(StoreError::LeaseLapsed(_)) => {
                // Woken from a pause, say, before the heartbeat: renew (or learn that the
                // lease is gone) before claiming anything.
                gpu_sets
                    .into_iter()
                    .for_each(|gpus| self.pool.give_back(gpus));
                self.renew(reporter).await?;
                return Ok(false);
            }
            Err(e) => return Err(e.into()),
        };
        let dry = claimed.len() < gpu_sets.len();
        let mut gpu_sets = gpu_sets.into_iter();
        for (claimed, gpus) in claimed.into_iter().zip(&mut gpu_sets) {
            self.launch(claimed, gpus)?;
        }
        gpu_sets.for_each(|gpus| self.pool.give_back(gpus));
        Ok(dry)
    }

    /// Handles `msg` and the messages already waiting behind it. Returns true when a trial
    /// finished.
    async fn handle_at_hand(
        &mut self,
        msg: Message,
        rx: &mut mpsc::UnboundedReceiver<Message>,
        reporter: &mut dyn Reporter,
    ) -> Result<bool, SchedulerError> {
        let mut finished = self.handle(msg, reporter).await?;
        while let Ok(msg) = rx.try_recv() {
            finished |= self.handle(msg, reporter).await?;
            if self.curves.len() >= CURVE_BATCH {
                break;
            }
        }
        Ok(finished)
    }

    /// Handles one message. Returns true when a trial finished.
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
                match job {
                    JobRef::Process(pid) => self.unrecorded.pids.push((trial_id, attempt, pid)),
                    JobRef::Job { executor, id } => {
                        self.store
                            .set_job(&trial_id, &self.runner_id, attempt, executor, &id, None)
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

    async fn flush_curves(&mut self) -> Result<(), SchedulerError> {
        if !self.curves.is_empty() {
            let points = std::mem::take(&mut self.curves);
            self.store.add_curve_points(&points).await?;
        }
        Ok(())
    }
}

fn trial_id_of(sweep: &str, params: &Params) -> String {
    trial_id(sweep, &TrialKey::of(params))
}
