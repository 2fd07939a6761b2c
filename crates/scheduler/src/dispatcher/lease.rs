//! This runner's lease, and the trials of runners that lost theirs: renewing, losing and
//! registering anew, and taking back (and cleaning up after) what dead runners held.

use super::*;

impl<E: Executor> Dispatcher<'_, E> {
    /// Renews the lease; when it turns out to be lost, stops everything claimed under it.
    pub(super) async fn renew(
        &mut self,
        reporter: &mut dyn Reporter,
    ) -> Result<(), SchedulerError> {
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
    pub(super) async fn lose_lease(&mut self, reporter: &mut dyn Reporter) {
        self.lease_lost = true;
        reporter.note(&format!(
            "this orchestrator missed its heartbeats for longer than the lease; its {} running trial(s) were taken over by another and are stopped here",
            self.running.len()
        ));
        self.kill_running().await;
    }

    /// Goes on under a new lease once nothing of the lost one runs.
    pub(super) async fn register_anew(
        &mut self,
        reporter: &mut dyn Reporter,
    ) -> Result<(), SchedulerError> {
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
    pub(super) async fn take_back_strays(
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
    pub(super) async fn kill_running(&self) {
        let jobs: Vec<JobRef> = self
            .running
            .values()
            .filter_map(|r| r.job.clone())
            .collect();
        self.executor.kill(&jobs).await;
    }

    /// Takes back the trials of orchestrators that stopped renewing their lease or, on this
    /// host, whose process is gone. Kills what they left running here.
    pub(super) async fn reclaim_dead(
        &mut self,
        reporter: &mut dyn Reporter,
    ) -> Result<u64, SchedulerError> {
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
    pub(super) async fn clean_up(
        &self,
        orphans: &[Orphan],
        why: &str,
        reporter: &mut dyn Reporter,
    ) -> u64 {
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
