//! A trial's life in the store: claims are exclusive, failures retry then fail, dead
//! runners' trials come back as interrupted. With `SWEEP_TEST_POSTGRES` set (`.ci/run` sets
//! it for a second pass), every store is a fresh database on that PostgreSQL server instead.

mod support;

use std::time::Duration;

use sweep_store::{
    now_ms, AttemptEnd, AttemptPid, Completion, Outcome, Store, StoreError, SweepRecord,
    TrialStatus,
};

/// The lease the tests claim under: long enough never to lapse by itself while one runs.
const LEASE: Duration = Duration::from_secs(60);

async fn store_with(n: usize) -> (tempfile::TempDir, Store, SweepRecord) {
    support::store_with("t", n).await
}

fn failed(reason: &str) -> AttemptEnd {
    AttemptEnd {
        outcome: Outcome::Failed,
        exit_code: Some(1),
        signal: None,
        reason: Some(reason.into()),
        stderr_tail: String::new(),
    }
}

#[tokio::test]
async fn concurrent_claims_never_hand_out_a_trial_twice() {
    let (_dir, store, sweep) = store_with(40).await;
    let a = store.register_runner("h", 1).await.unwrap();
    let b = store.register_runner("h", 2).await.unwrap();
    let claim_all = |runner: String| {
        let store = store.clone();
        async move {
            let mut got = Vec::new();
            while let Some(c) = store
                .claim(sweep.id, &runner, LEASE, 2, None)
                .await
                .unwrap()
            {
                got.push(c.id);
            }
            got
        }
    };
    let (x, y) = tokio::join!(claim_all(a.id.clone()), claim_all(b.id.clone()));
    let mut all: Vec<String> = x.into_iter().chain(y).collect();
    assert_eq!(all.len(), 40);
    all.sort();
    all.dedup();
    assert_eq!(all.len(), 40);
    assert_eq!(
        store
            .counts(sweep.id)
            .await
            .unwrap()
            .get(TrialStatus::Running),
        40
    );
}

/// A runner filling several free slots claims them in one transaction: the trials in
/// expansion order, each on the GPUs asked for it, fewer than asked when the queue runs short,
/// and nothing under a lapsed lease.
#[tokio::test]
async fn claims_in_a_batch_come_in_order_each_on_its_gpus() {
    let (_dir, store, sweep) = store_with(5).await;
    let r = store.register_runner("h", 1).await.unwrap();
    let first = store
        .claim_many(sweep.id, &r.id, LEASE, 2, &[Some("0"), Some("1,2"), None])
        .await
        .unwrap();
    let rest = store
        .claim_many(
            sweep.id,
            &r.id,
            LEASE,
            2,
            &[Some("3"), Some("4"), Some("5")],
        )
        .await
        .unwrap();
    assert_eq!((first.len(), rest.len()), (3, 2));
    let rows = store.trial_rows(Some(sweep.id)).await.unwrap();
    let mut got: Vec<(i64, Option<String>, u32)> = rows
        .iter()
        .map(|t| {
            let x = t.params["x"].as_f64().unwrap() as i64;
            (x, t.gpu.clone(), t.attempts)
        })
        .collect();
    got.sort();
    let gpu = |g: &str| Some(g.to_string());
    assert_eq!(
        got,
        [
            (1, gpu("0"), 1),
            (2, gpu("1,2"), 1),
            (3, None, 1),
            (4, gpu("3"), 1),
            (5, gpu("4"), 1)
        ]
    );
    let claimed: Vec<i64> = first
        .iter()
        .chain(&rest)
        .map(|c| c.params["x"].as_f64().unwrap() as i64)
        .collect();
    assert_eq!(claimed, [1, 2, 3, 4, 5]);
    for c in first.iter().chain(&rest) {
        assert_eq!(store.attempts(&c.id).await.unwrap().len(), 1);
    }
    store.reclaim(&r.id, "no heartbeat").await.unwrap();
    let refused = store
        .claim_many(sweep.id, &r.id, LEASE, 2, &[None, None])
        .await;
    assert!(
        matches!(refused, Err(StoreError::LeaseLapsed(_))),
        "{refused:?}"
    );
}

#[tokio::test]
async fn failures_retry_after_backoff_then_fail() {
    let (_dir, store, sweep) = store_with(1).await;
    let r = store.register_runner("h", 1).await.unwrap();
    let c = store
        .claim(sweep.id, &r.id, LEASE, 2, None)
        .await
        .unwrap()
        .unwrap();
    let later = now_ms() + 60_000;
    let s = store
        .end_unsuccessful(&c.id, &r.id, c.attempt, &failed("exit 1"), later, 2, true)
        .await
        .unwrap();
    assert_eq!(s, Some(TrialStatus::Pending));
    // Backing off: nothing to claim yet, but the queue knows when.
    assert!(store
        .claim(sweep.id, &r.id, LEASE, 2, None)
        .await
        .unwrap()
        .is_none());
    assert_eq!(
        store.queue_state(sweep.id, 2).await.unwrap(),
        (1, Some(later))
    );
    let s = store
        .end_unsuccessful(&c.id, &r.id, c.attempt, &failed("late"), 0, 2, true)
        .await
        .unwrap();
    assert_eq!(
        s, None,
        "an attempt the runner no longer holds changes nothing"
    );

    let (_dir2, store, sweep) = store_with(1).await;
    let r = store.register_runner("h", 1).await.unwrap();
    for expected in [TrialStatus::Pending, TrialStatus::Failed] {
        let c = store
            .claim(sweep.id, &r.id, LEASE, 2, None)
            .await
            .unwrap()
            .unwrap();
        let s = store
            .end_unsuccessful(&c.id, &r.id, c.attempt, &failed("exit 1"), 0, 2, true)
            .await
            .unwrap();
        assert_eq!(s, Some(expected));
    }
    assert!(store
        .claim(sweep.id, &r.id, LEASE, 2, None)
        .await
        .unwrap()
        .is_none());
    assert_eq!(store.reset_failed(sweep.id).await.unwrap(), 1);
    let c = store
        .claim(sweep.id, &r.id, LEASE, 2, None)
        .await
        .unwrap()
        .unwrap();
    assert_eq!(c.attempt, 3);
}

#[tokio::test]
async fn a_dead_runners_trials_come_back_interrupted() {
    let (_dir, store, sweep) = store_with(2).await;
    let dead = store.register_runner("h", 1).await.unwrap();
    let c = store
        .claim(sweep.id, &dead.id, LEASE, 2, Some("0"))
        .await
        .unwrap()
        .unwrap();
    store
        .set_pid(&c.id, &dead.id, c.attempt, 4242)
        .await
        .unwrap();
    let orphans = store.reclaim(&dead.id, "gone").await.unwrap();
    assert_eq!(orphans.len(), 1);
    assert_eq!(
        (orphans[0].trial_id.as_str(), orphans[0].pid),
        (c.id.as_str(), Some(4242))
    );
    assert!(
        store.reclaim(&dead.id, "gone").await.unwrap().is_empty(),
        "taken back once"
    );
    assert!(!store
        .live_runners()
        .await
        .unwrap()
        .iter()
        .any(|r| r.id == dead.id));
    let alive = store.register_runner("h", 2).await.unwrap();
    let again = store
        .claim(sweep.id, &alive.id, LEASE, 2, None)
        .await
        .unwrap()
        .unwrap();
    assert_eq!(
        (again.id, again.attempt),
        (c.id, 2),
        "the interrupted trial runs first, as a resume"
    );
}

fn succeeded() -> AttemptEnd {
    AttemptEnd {
        outcome: Outcome::Completed,
        exit_code: Some(0),
        signal: None,
        reason: None,
        stderr_tail: String::new(),
    }
}

#[tokio::test]
async fn only_the_attempt_that_owns_a_trial_records_its_result() {
    let (_dir, store, sweep) = store_with(1).await;
    let paused = store.register_runner("h", 1).await.unwrap();
    let first = store
        .claim(sweep.id, &paused.id, LEASE, 2, None)
        .await
        .unwrap()
        .unwrap();
    // The paused runner's lease runs out; another takes the trial back and reruns it.
    store.reclaim(&paused.id, "no heartbeat").await.unwrap();
    assert!(
        !store.heartbeat(&paused.id).await.unwrap(),
        "a runner presumed dead learns it at its next heartbeat"
    );
    let other = store.register_runner("h", 2).await.unwrap();
    let second = store
        .claim(sweep.id, &other.id, LEASE, 2, None)
        .await
        .unwrap()
        .unwrap();
    assert_eq!(second.attempt, 2);
    let results = std::collections::BTreeMap::from([(
        first.id.clone(),
        std::collections::BTreeMap::from([("m".to_string(), Some(1.0))]),
    )]);
    // The paused runner wakes up and reports: refused, even though it names the trial.
    let stale = store
        .complete(&first.id, &paused.id, first.attempt, &results, &succeeded())
        .await
        .unwrap();
    assert_eq!(stale, None);
    let status = store.trial_rows(Some(sweep.id)).await.unwrap();
    assert_eq!(status[0].status, TrialStatus::Running);
    let owned = store
        .complete(
            &second.id,
            &other.id,
            second.attempt,
            &results,
            &succeeded(),
        )
        .await
        .unwrap();
    assert_eq!(owned, Some(0));
    // And once completed, no later report from anyone changes it.
    let again = store
        .complete(
            &second.id,
            &other.id,
            second.attempt,
            &results,
            &succeeded(),
        )
        .await
        .unwrap();
    assert_eq!(again, None);
}

#[tokio::test]
async fn trials_of_a_runner_that_ended_without_handing_them_back_are_reclaimed() {
    let (_dir, store, sweep) = store_with(3).await;
    let gone = store.register_runner("h", 1).await.unwrap();
    let held = store
        .claim(sweep.id, &gone.id, LEASE, 2, None)
        .await
        .unwrap()
        .unwrap();
    // What an error mid-run used to leave behind: the runner ended, its trial still running.
    store.end_runner(&gone.id).await.unwrap();
    assert!(store.live_runners().await.unwrap().is_empty());
    let orphans = store.reclaim_stranded("stranded").await.unwrap();
    assert_eq!(orphans.len(), 1);
    assert_eq!(orphans[0].trial_id, held.id);
    assert_eq!(orphans[0].host.as_deref(), Some("h"));
    let next = store.register_runner("h", 2).await.unwrap();
    let again = store
        .claim(sweep.id, &next.id, LEASE, 2, None)
        .await
        .unwrap()
        .unwrap();
    assert_eq!((again.id, again.attempt), (held.id, 2));
    assert!(store.reclaim_stranded("stranded").await.unwrap().is_empty());
}

#[tokio::test]
async fn a_runner_whose_lease_was_taken_back_cannot_claim() {
    let (_dir, store, sweep) = store_with(3).await;
    let paused = store.register_runner("h", 1).await.unwrap();
    store
        .claim(sweep.id, &paused.id, LEASE, 2, None)
        .await
        .unwrap()
        .unwrap();
    store.reclaim(&paused.id, "no heartbeat").await.unwrap();
    // Woken up, it tries to claim before its heartbeat has told it anything.
    let refused = store.claim(sweep.id, &paused.id, LEASE, 2, None).await;
    assert!(
        matches!(refused, Err(StoreError::LeaseLapsed(ref id)) if *id == paused.id),
        "{refused:?}"
    );
    let counts = store.counts(sweep.id).await.unwrap();
    assert_eq!(counts.get(TrialStatus::Running), 0, "nothing was claimed");
}

#[tokio::test]
async fn a_lease_past_its_time_must_be_renewed_before_a_claim() {
    let (_dir, store, sweep) = store_with(2).await;
    let r = store.register_runner("h", 1).await.unwrap();
    tokio::time::sleep(Duration::from_millis(30)).await;
    // Silent for longer than a 10 ms lease, though nobody has taken anything back yet.
    let short = Duration::from_millis(10);
    assert!(matches!(
        store.claim(sweep.id, &r.id, short, 2, None).await,
        Err(StoreError::LeaseLapsed(_))
    ));
    assert!(store.heartbeat(&r.id).await.unwrap());
    assert!(store
        .claim(sweep.id, &r.id, LEASE, 2, None)
        .await
        .unwrap()
        .is_some());
}

#[tokio::test]
async fn a_runner_that_renewed_its_lease_is_not_taken_back_as_silent() {
    let (_dir, store, sweep) = store_with(1).await;
    let woke = store.register_runner("h", 1).await.unwrap();
    let held = store
        .claim(sweep.id, &woke.id, LEASE, 2, None)
        .await
        .unwrap()
        .unwrap();
    // Another runner read an old heartbeat; by the time it acts the runner has renewed.
    let read_at = now_ms() - 1;
    assert!(store.heartbeat(&woke.id).await.unwrap());
    let taken = store
        .reclaim_silent(&woke.id, read_at, "no heartbeat")
        .await
        .unwrap();
    assert!(taken.is_empty(), "{taken:?}");
    assert!(
        store.heartbeat(&woke.id).await.unwrap(),
        "the lease is still its own"
    );
    let rows = store.trial_rows(Some(sweep.id)).await.unwrap();
    assert_eq!(rows[0].status, TrialStatus::Running);
    // Still silent at the moment of ending: taken back.
    let later = now_ms() + 1;
    let taken = store
        .reclaim_silent(&woke.id, later, "no heartbeat")
        .await
        .unwrap();
    assert_eq!(taken.len(), 1);
    assert_eq!(taken[0].trial_id, held.id);
}

#[tokio::test]
async fn the_end_of_an_attempt_taken_over_is_not_recorded_against_a_newer_one() {
    let (_dir, store, sweep) = store_with(1).await;
    let a = store.register_runner("h", 1).await.unwrap();
    let first = store
        .claim(sweep.id, &a.id, LEASE, 1, None)
        .await
        .unwrap()
        .unwrap();
    store.reclaim(&a.id, "no heartbeat").await.unwrap();
    // The paused runner comes back under a new lease and claims the same trial again.
    let a2 = store.register_runner("h", 1).await.unwrap();
    let second = store
        .claim(sweep.id, &a2.id, LEASE, 1, None)
        .await
        .unwrap()
        .unwrap();
    assert_eq!((second.id.as_str(), second.attempt), (first.id.as_str(), 2));
    let killed = AttemptEnd {
        outcome: Outcome::Failed,
        exit_code: None,
        signal: Some(9),
        reason: Some("killed by SIGKILL".into()),
        stderr_tail: String::new(),
    };
    // The first attempt's end arrives, under its old lease and under the new one.
    for lease in [&a.id, &a2.id] {
        let status = store
            .end_unsuccessful(&first.id, lease, first.attempt, &killed, 0, 1, true)
            .await
            .unwrap();
        assert_eq!(status, None, "refused under lease {lease}");
    }
    let rows = store.trial_rows(Some(sweep.id)).await.unwrap();
    assert_eq!(rows[0].status, TrialStatus::Running, "attempt 2 still runs");
    let attempts = store.attempts(&first.id).await.unwrap();
    let outcomes: Vec<_> = attempts.iter().map(|a| a.outcome.as_deref()).collect();
    assert_eq!(outcomes, [Some("lost"), None], "{attempts:?}");
    // A checkpoint the old attempt announces late is refused too; the new one's is kept.
    store
        .set_checkpoint(&first.id, &a2.id, 1, 99)
        .await
        .unwrap();
    store.set_checkpoint(&first.id, &a2.id, 2, 7).await.unwrap();
    store.reclaim(&a2.id, "stopped").await.unwrap();
    let a3 = store.register_runner("h", 1).await.unwrap();
    let third = store
        .claim(sweep.id, &a3.id, LEASE, 1, None)
        .await
        .unwrap()
        .unwrap();
    assert_eq!(third.checkpoint_step, Some(7));
}

/// A batch holds the pids of attempts that started and the results of attempts that
/// succeeded: each is written only where its attempt still holds the trial, and an attempt
/// that does not takes nothing else in the batch down with it.
#[tokio::test]
async fn a_batch_records_only_what_its_attempts_still_hold() {
    let (_dir, store, sweep) = store_with(4).await;
    let a = store.register_runner("h", 1).await.unwrap();
    let b = store.register_runner("h", 2).await.unwrap();
    let mine = store
        .claim_many(sweep.id, &a.id, LEASE, 2, &[None, None, None])
        .await
        .unwrap();
    let theirs = store
        .claim(sweep.id, &b.id, LEASE, 2, None)
        .await
        .unwrap()
        .unwrap();
    let metrics = |m: f64| {
        std::collections::BTreeMap::from([("m".to_string(), Some(m)), ("n".to_string(), None)])
    };
    let own = |id: &str, m: f64| std::collections::BTreeMap::from([(id.to_string(), metrics(m))]);
    let (first, second, third) = (&mine[0], &mine[1], &mine[2]);
    let first_results = own(&first.id, 1.0);
    let third_results = own(&third.id, 3.0);
    let theirs_results = own(&theirs.id, 4.0);
    let end = succeeded();
    let done = store
        .record(
            &a.id,
            &[
                AttemptPid {
                    trial_id: &second.id,
                    attempt: 1,
                    pid: 101,
                },
                AttemptPid {
                    trial_id: &theirs.id,
                    attempt: 1,
                    pid: 103,
                },
            ],
            &[
                Completion {
                    trial_id: &first.id,
                    attempt: 1,
                    results: &first_results,
                    end: &end,
                },
                // Not this attempt: the trial's first attempt is the one running.
                Completion {
                    trial_id: &third.id,
                    attempt: 2,
                    results: &third_results,
                    end: &end,
                },
                // Not this runner's trial.
                Completion {
                    trial_id: &theirs.id,
                    attempt: 1,
                    results: &theirs_results,
                    end: &end,
                },
            ],
        )
        .await
        .unwrap();
    assert_eq!(done, [Some(0), None, None]);
    let rows = store.trial_rows(Some(sweep.id)).await.unwrap();
    let row = |id: &str| rows.iter().find(|r| r.id == id).unwrap();
    assert_eq!(row(&first.id).status, TrialStatus::Completed);
    assert_eq!(row(&first.id).metrics, metrics(1.0));
    for id in [&second.id, &third.id, &theirs.id] {
        assert_eq!(row(id).status, TrialStatus::Running, "{id}");
        assert!(row(id).metrics.is_empty(), "{id}");
    }
    let attempt = &store.attempts(&first.id).await.unwrap()[0];
    assert_eq!(attempt.outcome.as_deref(), Some("completed"));
    assert_eq!(attempt.exit_code, Some(0));
    assert!(attempt.finished_at.is_some());
    assert_eq!(store.attempts(&third.id).await.unwrap()[0].outcome, None);
    // The pids: recorded for this runner's running attempt, not for another runner's.
    let pid_of = |orphans: &[sweep_store::Orphan], id: &str| {
        orphans.iter().find(|o| o.trial_id == id).unwrap().pid
    };
    let orphans = store.reclaim(&a.id, "test").await.unwrap();
    assert_eq!(pid_of(&orphans, &second.id), Some(101));
    assert_eq!(pid_of(&orphans, &third.id), None);
    assert!(orphans.iter().all(|o| o.trial_id != first.id));
    let orphans = store.reclaim(&b.id, "test").await.unwrap();
    assert_eq!(pid_of(&orphans, &theirs.id), None);
}
