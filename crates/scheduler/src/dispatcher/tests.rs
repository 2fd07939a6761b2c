//! The dispatcher on a scripted executor (`executor::scripted`) and a real SQLite store:
//! retries, a panicking attempt, timeouts, Ctrl-C and a lost lease, without a process.

use std::sync::Mutex;

use sweep_core::expand;

use super::*;
use crate::executor::scripted::{Plan, Scripted};

/// Notes the dispatcher writes, for the assertions.
#[derive(Default)]
struct Notes(Arc<Mutex<Vec<String>>>);

impl Reporter for Notes {
    fn progress(&mut self, _progress: &Progress) {}
    fn note(&mut self, line: &str) {
        self.0.lock().unwrap().push(line.to_string());
    }
}

/// A store, a sweep of `grid`'s trials in it, and a run configuration, in a directory of
/// the test's own.
struct Bench {
    dir: std::path::PathBuf,
    store: Store,
    grid: Grid,
    sweep: SweepRecord,
    config: RunConfig,
}

impl Bench {
    async fn new(test: &str, grid: &str) -> Bench {
        let dir =
            std::env::temp_dir().join(format!("sweep-dispatcher-{}-{test}", std::process::id()));
        let _ = std::fs::remove_dir_all(&dir);
        std::fs::create_dir_all(&dir).unwrap();
        let store = Store::open(&dir.join("sweep.db").display().to_string())
            .await
            .unwrap();
        let text = format!("[sweep]\nname = \"{test}\"\ncommand = [\"work\"]\n{grid}");
        let grid = Grid::parse(&dir.join("grid.toml"), &text).unwrap();
        let sweep = store
            .register_sweep(&grid, &dir.display().to_string())
            .await
            .unwrap();
        store
            .register_trials(&sweep, &expand(&grid).trials)
            .await
            .unwrap();
        let mut config = RunConfig::new(dir.clone(), dir.join("trials"));
        config.parallel = grid.parallel;
        config.heartbeat = Duration::from_millis(50);
        config.lease = Duration::from_secs(30);
        Bench {
            dir,
            store,
            grid,
            sweep,
            config,
        }
    }

    /// Runs the sweep on `executor` to its end (ten seconds at most), with `stop` sent after
    /// `stop_after` if given.
    async fn run(
        &self,
        executor: Scripted,
        stop_with: Option<(Duration, Stop)>,
    ) -> (Result<Summary, SchedulerError>, Vec<String>) {
        let (stop_tx, stop_rx) = watch::channel(Stop::Run);
        let notes = Notes::default();
        let said = notes.0.clone();
        let mut reporter = notes;
        let slots = slots(&self.grid, &self.config).unwrap();
        let run = run_on(
            executor,
            &self.store,
            &self.grid,
            &self.sweep,
            &self.config,
            stop_rx,
            slots,
            &mut reporter,
        );
        let stopper = async {
            if let Some((after, how)) = stop_with {
                tokio::time::sleep(after).await;
                stop_tx.send(how).unwrap();
            }
            std::future::pending::<()>().await
        };
        let result = tokio::time::timeout(Duration::from_secs(10), async {
            tokio::select! {
                result = run => result,
                _ = stopper => unreachable!(),
            }
        })
        .await
        .expect("the sweep ended");
        let said = said.lock().unwrap().clone();
        (result, said)
    }

    /// Every trial's (x, status, attempts), by x.
    async fn trials(&self) -> Vec<(i64, TrialStatus, u32)> {
        let mut rows: Vec<_> = self
            .store
            .trial_rows(Some(self.sweep.id))
            .await
            .unwrap()
            .into_iter()
            .map(|r| {
                let x = match r.params.get("x") {
                    Some(sweep_core::ParamValue::Int(x)) => *x,
                    other => panic!("x is {other:?}"),
                };
                (x, r.status, r.attempts)
            })
            .collect();
        rows.sort_by_key(|r| r.0);
        rows
    }
}

impl Drop for Bench {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.dir);
    }
}

/// The value of `x` an attempt was launched for.
fn x_of(launch: &Launch) -> i64 {
    let params = launch
        .env
        .iter()
        .find(|(k, _)| k == env::PARAMS)
        .map(|(_, v)| v.clone())
        .unwrap();
    let params: serde_json::Value = serde_json::from_str(&params).unwrap();
    params["x"].as_i64().unwrap()
}

const QUICK: Duration = Duration::from_millis(20);

#[tokio::test]
async fn a_failed_attempt_is_retried_and_its_result_stored_once() {
    let b = Bench::new(
        "retry",
        "max_attempts = 3\nbackoff = \"0s\"\n[grid]\nx = [1, 2]\n",
    )
    .await;
    let executor = Scripted::new(|l| match (x_of(l), l.attempt) {
        (1, 1) => Plan::Fails(QUICK, 3),
        _ => Plan::Succeeds(QUICK),
    });
    let (result, notes) = b.run(executor, None).await;
    let summary = result.unwrap();
    assert_eq!(
        (summary.completed, summary.retried, summary.failed),
        (2, 1, 0)
    );
    assert_eq!(
        b.trials().await,
        [
            (1, TrialStatus::Completed, 2),
            (2, TrialStatus::Completed, 1)
        ]
    );
    assert!(
        notes
            .iter()
            .any(|n| n.contains("exited with code 3; retrying")),
        "{notes:?}"
    );
}

#[tokio::test]
async fn a_panicking_attempt_gives_its_slot_back_and_is_retried() {
    let b = Bench::new(
        "panic",
        "parallel = 1\nmax_attempts = 2\nbackoff = \"0s\"\n[grid]\nx = [1, 2]\n",
    )
    .await;
    let executor = Scripted::new(|l| match (x_of(l), l.attempt) {
        (1, 1) => Plan::Panics,
        _ => Plan::Succeeds(QUICK),
    });
    let (result, notes) = b.run(executor, None).await;
    assert_eq!(result.unwrap().completed, 2, "{notes:?}");
    assert_eq!(
        b.trials().await,
        [
            (1, TrialStatus::Completed, 2),
            (2, TrialStatus::Completed, 1)
        ]
    );
    assert!(notes.iter().any(|n| n.contains("watcher bug")), "{notes:?}");
}

#[tokio::test]
async fn a_trial_that_outlives_its_timeout_and_grace_fails_after_its_attempts() {
    let b = Bench::new(
        "timeout",
        "timeout = \"50ms\"\ngrace = \"50ms\"\nmax_attempts = 2\nbackoff = \"0s\"\n[grid]\nx = [1]\n",
    )
    .await;
    let executor = Scripted::always(Plan::IgnoresTerm);
    let asked = executor.asked.clone();
    let (result, notes) = b.run(executor, None).await;
    assert_eq!(result.unwrap().failed, 1);
    assert_eq!(b.trials().await, [(1, TrialStatus::Failed, 2)]);
    assert_eq!(
        *asked.lock().unwrap(),
        ["terminate", "kill", "terminate", "kill"]
    );
    assert!(notes.iter().any(|n| n.contains("timed out")), "{notes:?}");
}

#[tokio::test]
async fn ctrl_c_interrupts_running_trials_without_using_an_attempt_and_keeps_results() {
    let b = Bench::new("stop", "parallel = 3\n[grid]\nx = [1, 2, 3]\n").await;
    let executor = Scripted::new(|l| match x_of(l) {
        1 => Plan::Succeeds(QUICK),
        _ => Plan::RunsFor(Duration::from_secs(60)),
    });
    let (result, _) = b
        .run(executor, Some((Duration::from_millis(300), Stop::Graceful)))
        .await;
    let summary = result.unwrap();
    assert!(summary.stopped);
    assert_eq!((summary.completed, summary.interrupted), (1, 2));
    assert_eq!(
        b.trials().await,
        [
            (1, TrialStatus::Completed, 1),
            (2, TrialStatus::Interrupted, 1),
            (3, TrialStatus::Interrupted, 1)
        ]
    );
}

#[tokio::test]
async fn a_lost_lease_kills_its_attempts_and_the_trial_runs_again_under_a_new_one() {
    let b = Bench::new("lease", "[grid]\nx = [1]\n").await;
    let executor = Scripted::new(|l| match l.attempt {
        1 => Plan::RunsFor(Duration::from_secs(60)),
        _ => Plan::Succeeds(QUICK),
    });
    let asked = executor.asked.clone();
    let submitted = executor.submitted.clone();
    let store = b.store.clone();
    // Another runner takes the trial back while its first attempt runs, as it would from a
    // runner paused past its lease.
    let take_back = async {
        tokio::time::sleep(Duration::from_millis(300)).await;
        let runners = store.live_runners().await.unwrap();
        assert_eq!(runners.len(), 1);
        store
            .reclaim(&runners[0].id, "taken back by a test")
            .await
            .unwrap();
    };
    let ((result, notes), ()) = tokio::join!(b.run(executor, None), take_back);
    assert_eq!(result.unwrap().completed, 1, "{notes:?}");
    let trials = b.trials().await;
    assert_eq!(trials[0].1, TrialStatus::Completed, "{notes:?}");
    assert!(
        asked.lock().unwrap().contains(&"kill (dispatcher)"),
        "the first attempt was killed: {:?}",
        asked.lock().unwrap()
    );
    let submitted = submitted.lock().unwrap().clone();
    assert_eq!(submitted.len(), 2, "{submitted:?}");
    // The store holds one result, from the attempt of the new lease.
    let rows = b.store.trial_rows(Some(b.sweep.id)).await.unwrap();
    assert_eq!(rows[0].metrics.get("score"), Some(&Some(1.0)));
}
