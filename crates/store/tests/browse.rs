//! Browsing a sweep a page at a time, as the dashboard does: pages in each order and state,
//! one trial, its curves, the completed trials with a parameter's value. With `SWEEP_TEST_POSTGRES` set, on PostgreSQL.

mod support;

use std::collections::BTreeMap;
use std::path::Path;
use std::time::Duration;

use sweep_core::{expand, Grid};
use sweep_store::{
    AttemptEnd, CurvePoint, Outcome, Store, SweepRecord, TrialOrder, TrialPage, TrialStatus,
};

async fn store_with(n: usize) -> (tempfile::TempDir, Store, SweepRecord) {
    support::store_with("b", n).await
}

/// Claims the next trial and completes it with `m`, or fails it when `m` is `None`.
async fn finish_next(store: &Store, sweep: &SweepRecord, runner: &str, m: Option<f64>) -> String {
    let claimed = store
        .claim(sweep.id, runner, Duration::from_secs(60), 1, None)
        .await
        .unwrap()
        .expect("a trial to claim");
    let end = |outcome| AttemptEnd {
        outcome,
        exit_code: Some(if m.is_some() { 0 } else { 1 }),
        signal: None,
        reason: m.is_none().then(|| "boom".into()),
        stderr_tail: "last words\n".into(),
    };
    match m {
        Some(v) => {
            let results = BTreeMap::from([(
                claimed.id.clone(),
                BTreeMap::from([("m".to_string(), Some(v))]),
            )]);
            store
                .complete(
                    &claimed.id,
                    runner,
                    claimed.attempt,
                    &results,
                    &end(Outcome::Completed),
                )
                .await
                .unwrap();
        }
        None => {
            store
                .end_unsuccessful(
                    &claimed.id,
                    runner,
                    claimed.attempt,
                    &end(Outcome::Failed),
                    0,
                    1,
                    false,
                )
                .await
                .unwrap();
        }
    }
    claimed.id
}

fn page(order: TrialOrder, descending: bool) -> TrialPage {
    TrialPage {
        status: None,
        order,
        descending,
        offset: 0,
        limit: 100,
    }
}

fn xs(rows: &[sweep_store::TrialRow]) -> Vec<String> {
    rows.iter().map(|r| r.params["x"].to_string()).collect()
}

#[tokio::test]
async fn pages_come_in_each_order_and_state_with_the_total() {
    let (_dir, store, sweep) = store_with(5).await;
    let runner = store.register_runner("h", 1).await.unwrap().id;
    // x = 1, 2, 3 complete with m = 0.3, 0.1, 0.2; x = 4 fails; x = 5 stays pending.
    for m in [Some(0.3), Some(0.1), Some(0.2), None] {
        finish_next(&store, &sweep, &runner, m).await;
    }
    let (rows, total) = store
        .trial_page(sweep.id, &page(TrialOrder::Ordinal, false))
        .await
        .unwrap();
    assert_eq!(
        (xs(&rows), total),
        (
            vec!["1", "2", "3", "4", "5"]
                .into_iter()
                .map(String::from)
                .collect(),
            5
        )
    );

    let by_m = |descending| page(TrialOrder::Metric("m".into()), descending);
    let (rows, _) = store.trial_page(sweep.id, &by_m(false)).await.unwrap();
    assert_eq!(
        xs(&rows),
        ["2", "3", "1", "4", "5"],
        "trials without the metric last"
    );
    let (rows, _) = store.trial_page(sweep.id, &by_m(true)).await.unwrap();
    assert_eq!(
        xs(&rows),
        ["1", "3", "2", "4", "5"],
        "last in either direction"
    );

    let failed = TrialPage {
        status: Some(TrialStatus::Failed),
        ..by_m(false)
    };
    let (rows, total) = store.trial_page(sweep.id, &failed).await.unwrap();
    assert_eq!((xs(&rows), total), (vec!["4".to_string()], 1));

    let second = TrialPage {
        offset: 2,
        limit: 2,
        ..page(TrialOrder::Ordinal, true)
    };
    let (rows, total) = store.trial_page(sweep.id, &second).await.unwrap();
    assert_eq!(
        (xs(&rows), total),
        (vec!["3".to_string(), "2".to_string()], 5)
    );

    let (rows, _) = store
        .trial_page(sweep.id, &page(TrialOrder::Status, false))
        .await
        .unwrap();
    let states: Vec<&str> = rows.iter().map(|r| r.status.as_str()).collect();
    assert_eq!(
        states,
        ["completed", "completed", "completed", "failed", "pending"]
    );

    assert_eq!(store.param_names(Some(sweep.id)).await.unwrap(), ["x"]);
    assert_eq!(store.metric_names(Some(sweep.id)).await.unwrap(), ["m"]);

    let twos = store.completed_with(sweep.id, "x", 2.0, 10).await.unwrap();
    assert_eq!(xs(&twos), ["2"]);
    let fours = store.completed_with(sweep.id, "x", 4.0, 10).await.unwrap();
    assert!(
        fours.is_empty(),
        "x = 4 failed: only completed trials count"
    );
    let odd = store
        .completed_with(sweep.id, "no\"such", 2.0, 10)
        .await
        .unwrap();
    assert!(odd.is_empty());
}

#[tokio::test]
async fn one_trial_comes_with_its_metrics_attempts_and_curves() {
    let (_dir, store, sweep) = store_with(2).await;
    let runner = store.register_runner("h", 1).await.unwrap().id;
    let id = finish_next(&store, &sweep, &runner, Some(0.5)).await;
    let row = store.trial(&id).await.unwrap().expect("the trial");
    assert_eq!(row.metrics["m"], Some(0.5));
    assert_eq!(row.status, TrialStatus::Completed);
    assert!(store.trial("0000000000000000").await.unwrap().is_none());

    let attempts = store.attempts(&id).await.unwrap();
    assert_eq!(attempts.len(), 1);
    assert_eq!(attempts[0].stderr_tail.as_deref(), Some("last words\n"));
    assert_eq!(attempts[0].exit_code, Some(0));
    assert!(attempts[0].finished_at.is_some());

    let point = |attempt, step, name: &str, value| CurvePoint {
        trial_id: id.clone(),
        attempt,
        step,
        name: name.into(),
        value: Some(value),
    };
    store
        .add_curve_points(&[
            point(1, 10, "loss", 2.0),
            point(1, 20, "loss", 1.5),
            point(2, 20, "loss", 1.4),
            point(2, 10, "acc", 0.1),
        ])
        .await
        .unwrap();
    let curves: Vec<(String, i64, Option<f64>)> = store
        .trial_curves(&id)
        .await
        .unwrap()
        .into_iter()
        .map(|c| (c.name, c.step, c.value))
        .collect();
    assert_eq!(
        curves,
        [
            ("acc".to_string(), 10, Some(0.1)),
            ("loss".to_string(), 10, Some(2.0)),
            ("loss".to_string(), 20, Some(1.4)),
        ],
        "a step reported again by a later attempt keeps the later value"
    );
}

#[tokio::test]
async fn each_sweep_lists_its_own_parameter_and_metric_names() {
    let (_dir, store, first) = store_with(1).await;
    let text = "[sweep]\nname = \"other\"\ncommand = [\"true\"]\n[grid]\ny = [1]\nz = [2]\n";
    let grid = Grid::parse(Path::new("o.toml"), text).unwrap();
    let other = store.register_sweep(&grid, "/tmp").await.unwrap();
    store
        .register_trials(&other, &expand(&grid).trials)
        .await
        .unwrap();
    let runner = store.register_runner("h", 1).await.unwrap().id;
    finish_next(&store, &first, &runner, Some(1.0)).await;
    assert_eq!(store.param_names(Some(first.id)).await.unwrap(), ["x"]);
    assert_eq!(store.param_names(Some(other.id)).await.unwrap(), ["y", "z"]);
    assert_eq!(store.param_names(None).await.unwrap(), ["x", "y", "z"]);
    assert_eq!(store.metric_names(Some(first.id)).await.unwrap(), ["m"]);
    assert!(store.metric_names(Some(other.id)).await.unwrap().is_empty());
    assert_eq!(store.metric_names(None).await.unwrap(), ["m"]);
}

/// The configuration summaries the database keeps as trials complete hold what the trials
/// themselves give: each configuration's trials in expansion order, and per metric the count,
/// sum and squared deviations of its finite values, a trial completed by another's process
/// included, failed trials and non-finite values left out.
#[tokio::test]
async fn configuration_summaries_equal_the_sums_over_their_trials() {
    let (_dir, store, _) = store_with(1).await;
    // A float whose text JSON could rewrite as an integer stays a float.
    let text = "[sweep]\nname = \"s\"\ncommand = [\"true\"]\n\
                [grid]\nx = [1, 2, 3]\nlr = [1e17]\nseed = [0, 1, 2, 3]\n";
    let grid = Grid::parse(Path::new("s.toml"), text).unwrap();
    let sweep = store.register_sweep(&grid, "/tmp").await.unwrap();
    let trials = expand(&grid).trials;
    store.register_trials(&sweep, &trials).await.unwrap();
    let runner = store.register_runner("h", 1).await.unwrap().id;
    let all = store.trial_rows(Some(sweep.id)).await.unwrap();
    let last = all.last().unwrap().id.clone();
    let mut n = 0;
    while let Some(claimed) = store
        .claim(sweep.id, &runner, Duration::from_secs(60), 1, None)
        .await
        .unwrap()
    {
        n += 1;
        let metrics = |k: f64| {
            BTreeMap::from([
                ("m".to_string(), Some(k * 0.37 + 1e6)),
                ("sparse".to_string(), (n % 3 != 0).then_some(k)),
            ])
        };
        let mut results = BTreeMap::from([(claimed.id.clone(), metrics(n as f64))]);
        if n == 2 {
            // Its process also reports the last trial, which is then never claimed.
            results.insert(last.clone(), metrics(100.0));
        }
        let outcome = if n == 5 {
            Outcome::Failed
        } else {
            Outcome::Completed
        };
        let end = AttemptEnd {
            outcome,
            exit_code: Some(0),
            signal: None,
            reason: None,
            stderr_tail: String::new(),
        };
        if n == 5 {
            store
                .end_unsuccessful(&claimed.id, &runner, claimed.attempt, &end, 0, 1, false)
                .await
                .unwrap();
        } else {
            store
                .complete(&claimed.id, &runner, claimed.attempt, &results, &end)
                .await
                .unwrap();
        }
    }

    let rows = store.trial_rows(Some(sweep.id)).await.unwrap();
    let summaries = store.config_summaries(Some(sweep.id)).await.unwrap();
    assert_eq!(summaries.len(), 3);
    for summary in &summaries {
        let x = &summary.params["x"];
        let mine: Vec<&sweep_store::TrialRow> = rows
            .iter()
            .filter(|r| &r.params["x"] == x && r.status == TrialStatus::Completed)
            .collect();
        let mut params = mine[0].params.clone();
        params.remove("seed");
        assert_eq!(summary.params, params);
        let ids: Vec<(i64, String)> = mine.iter().map(|r| (r.ordinal, r.id.clone())).collect();
        assert_eq!(summary.trials, ids);
        assert_eq!(summary.first_ordinal, ids[0].0);
        for name in ["m", "sparse"] {
            let values: Vec<f64> = mine.iter().filter_map(|r| r.metrics[name]).collect();
            let mean = values.iter().sum::<f64>() / values.len() as f64;
            let m2: f64 = values.iter().map(|v| (v - mean).powi(2)).sum();
            let sums = summary.sums[name];
            assert_eq!(sums.n, values.len() as u64, "{name} of x = {x}");
            assert!(
                (sums.sum - values.iter().sum::<f64>()).abs() < 1e-6,
                "{name}"
            );
            assert!(
                (sums.m2 - m2).abs() < 1e-6 * m2.max(1.0),
                "{name}: {sums:?} vs {m2}"
            );
        }
    }
    let completed = rows
        .iter()
        .filter(|r| r.status == TrialStatus::Completed)
        .count();
    assert_eq!(completed, 11);
    assert_eq!(
        summaries.iter().map(|s| s.trials.len()).sum::<usize>(),
        completed
    );
}
