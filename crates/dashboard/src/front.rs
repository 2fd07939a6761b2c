//! A sweep's Pareto front for the page, computed as `sweep report --pareto` computes it and
//! kept until the sweep's trial counts change: a page reloaded (or polled) while
//! nothing finished reads the kept front instead of the whole sweep again.

use std::collections::HashMap;
use std::sync::{Arc, Mutex};
use std::time::Instant;

use axum::body::Bytes;
use serde_json::{json, Value};
use sweep_core::value::params_to_value;
use sweep_report::pareto::Objective;
use sweep_report::{FrontRead, FrontReport, OpenError, Shares, Stored};
use sweep_store::{Counts, Store, SweepRecord};

use crate::json;

/// The most configurations a front answer lists: all of rank 1, then the best ranks. A plot of
/// more points says nothing more and costs the page its speed.
pub(crate) const MAX_CONFIGURATIONS: usize = 5_000;

/// The most trial ids listed per configuration.
const MAX_TRIAL_IDS: usize = 6;

/// Which front of a sweep.
#[derive(Debug, Clone, PartialEq)]
pub(crate) struct FrontQuery {
    /// Two or more objectives.
    pub objectives: Vec<Objective>,
    /// The replicate parameters averaged over; `None`: every trial on its own.
    pub replicate: Option<Vec<String>>,
}

impl FrontQuery {
    fn key(&self, sweep: &SweepRecord) -> String {
        let objectives: Vec<String> = self.objectives.iter().map(|o| o.to_string()).collect();
        format!(
            "{}\0{}\0{:?}",
            sweep.id,
            objectives.join(","),
            self.replicate
        )
    }
}

/// Fronts already computed, each with the counts it was computed at.
#[derive(Default)]
pub(crate) struct FrontCache {
    entries: Mutex<HashMap<String, Slot>>,
}

/// A front as sent (its JSON text, shared by every response without a copy), with the counts
/// it was computed at.
type Slot = Arc<tokio::sync::Mutex<Option<(Counts, Bytes)>>>;

/// Kept fronts beyond this many are dropped (all of them: a dashboard asks for few).
const MAX_KEPT: usize = 64;

impl FrontCache {
    /// The front of `sweep` for `query`, computed again only when `counts` differ from those it
    /// was computed at. Requests for the same front while it is computed wait for that one.
    pub(crate) async fn get(
        &self,
        store: &Store,
        sweep: &SweepRecord,
        query: &FrontQuery,
        counts: &Counts,
    ) -> Result<Bytes, OpenError> {
        let slot: Slot = {
            let mut entries = self.entries.lock().unwrap_or_else(|e| e.into_inner());
            if entries.len() > MAX_KEPT {
                entries.clear();
            }
            entries.entry(query.key(sweep)).or_default().clone()
        };
        let mut kept = slot.lock().await;
        if let Some((at, value)) = kept.as_ref() {
            if at == counts {
                return Ok(value.clone());
            }
        }
        let value = Bytes::from(compute(store, sweep, query).await?.to_string());
        *kept = Some((counts.clone(), value.clone()));
        Ok(value)
    }
}

async fn compute(
    store: &Store,
    sweep: &SweepRecord,
    query: &FrontQuery,
) -> Result<Value, OpenError> {
    let started = Instant::now();
    let stored = Stored::open(store, Some(&sweep.name), &[]).await?;
    // Front shares where every trial is read; the summaries where they serve.
    let how = FrontRead {
        shares: Shares::WhereRead,
        front_only: false,
    };
    let replicate = query.replicate.as_deref();
    let (report, covered) =
        FrontReport::read(&stored, &query.objectives, replicate, None, how).await?;
    Ok(front_json(&report, covered, started.elapsed().as_millis()))
}

/// The front as the page draws it.
fn front_json(report: &FrontReport, read: u64, computed_ms: u128) -> Value {
    let listed: Vec<Value> = report
        .ranked
        .iter()
        .take(MAX_CONFIGURATIONS.max(report.ranked.iter().filter(|r| r.rank == 1).count()))
        .map(|r| {
            let stats: serde_json::Map<String, Value> = r
                .config
                .stats
                .iter()
                .map(|(name, s)| (name.clone(), s.to_json()))
                .collect();
            json!({
                "rank": r.rank,
                "params": params_to_value(&r.config.params),
                // The first few, to open one; over 10^6 trials every id would be most of
                // the answer.
                "trials": r.config.trials.iter().take(MAX_TRIAL_IDS).collect::<Vec<_>>(),
                "trial_count": r.config.trials.len(),
                "front_share": r.front_share.map(|(k, n)| [k, n]),
                "stats": stats,
            })
        })
        .collect();
    let hypervolume = report.hypervolume.as_ref().map(|(value, reference)| {
        json!({
            "value": json::number(*value),
            "reference": reference.iter().map(|x| json::number(*x)).collect::<Vec<_>>(),
        })
    });
    json!({
        "objectives": report.objectives.iter().map(|o| o.to_string()).collect::<Vec<_>>(),
        "configurations": listed,
        "ranked": report.ranked.len(),
        "left_out": report.ranked.len() - listed.len(),
        "excluded": report.excluded,
        "hypervolume": hypervolume,
        "trials_read": read,
        "computed_ms": computed_ms as u64,
    })
}
