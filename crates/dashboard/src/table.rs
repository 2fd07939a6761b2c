//! The trial table: one page of a sweep's trials in a chosen order. Without a `where` filter the
//! database pages and sorts (indexes; quick on millions of trials); with one, the sweep is read
//! once and only the rows up to the page's end are kept, so memory stays bounded either way.

use std::cmp::Ordering;

use serde::Deserialize;
use sweep_report::{conditions, FixedParams, OpenError, Stored};
use sweep_store::{Store, SweepRecord, TrialOrder, TrialPage, TrialRow, TrialStatus};

use crate::error::ApiError;

/// The most rows one page holds.
const MAX_LIMIT: u64 = 500;

/// A page of the table, as the page's query string asks for it.
#[derive(Debug, Deserialize)]
pub(crate) struct TableArgs {
    /// Only trials in this state.
    status: Option<String>,
    /// `ordinal` (default), `status` or `metric:NAME`.
    sort: Option<String>,
    /// Largest first.
    #[serde(default)]
    desc: bool,
    /// Rows skipped.
    #[serde(default)]
    pub offset: u64,
    /// Rows on the page (default 50, at most 500).
    limit: Option<u64>,
    /// Conditions as `sweep report --where` takes them, comma-separated
    /// (`learning_rate>=1e-4,seed=0`).
    #[serde(rename = "where")]
    filter: Option<String>,
}

impl TableArgs {
    fn page(&self) -> Result<TrialPage, ApiError> {
        let status = match self.status.as_deref().filter(|s| !s.is_empty()) {
            None => None,
            Some(s) => Some(TrialStatus::parse(s).ok_or_else(|| {
                ApiError::BadRequest(format!(
                    "no state {s:?}; the states are: {}",
                    TrialStatus::ALL.map(|s| s.as_str()).join(", ")
                ))
            })?),
        };
        let order = match self.sort.as_deref().unwrap_or("ordinal") {
            "ordinal" | "" => TrialOrder::Ordinal,
            "status" => TrialOrder::Status,
            other => match other.strip_prefix("metric:") {
                Some(m) if !m.is_empty() => TrialOrder::Metric(m.to_string()),
                _ => {
                    return Err(ApiError::BadRequest(format!(
                        "sort {other:?}: write ordinal, status or metric:NAME"
                    )))
                }
            },
        };
        Ok(TrialPage {
            status,
            order,
            descending: self.desc,
            offset: self.offset,
            limit: self.limit.unwrap_or(50).clamp(1, MAX_LIMIT),
        })
    }
}

/// One page of `sweep`'s trials and how many match, with the sweep's `[fixed]` values among
/// each row's parameters.
pub(crate) async fn page(
    store: &Store,
    sweep: &SweepRecord,
    args: &TableArgs,
) -> Result<(Vec<TrialRow>, u64), ApiError> {
    let page = args.page()?;
    let text = args.filter.as_deref().unwrap_or("").trim();
    if text.is_empty() {
        let fixed = FixedParams::load(store, Some(&sweep.name)).await?;
        let (rows, total) = store.trial_page(sweep.id, &page).await?;
        return Ok((rows.into_iter().map(|r| fixed.apply(r)).collect(), total));
    }
    let wanted =
        conditions(text).map_err(|e| ApiError::BadRequest(format!("where {text:?}: {e}")))?;
    let stored = match Stored::open(store, Some(&sweep.name), &wanted).await {
        Ok(stored) => stored,
        Err(OpenError::Filter(e)) => {
            return Err(ApiError::BadRequest(format!("where {text:?}: {e}")))
        }
        Err(OpenError::Store(e)) => return Err(e.into()),
    };
    let keep = (page.offset + page.limit) as usize;
    let mut rows: Vec<TrialRow> = Vec::new();
    let mut total = 0u64;
    stored
        .for_each(|row| {
            if page.status.is_none_or(|s| s == row.status) {
                total += 1;
                rows.push(row);
                if rows.len() >= 2 * keep.max(64) {
                    rows.sort_by(|a, b| compare(&page, a, b));
                    rows.truncate(keep);
                }
            }
            true
        })
        .await?;
    rows.sort_by(|a, b| compare(&page, a, b));
    let rows = rows
        .into_iter()
        .skip(page.offset as usize)
        .take(page.limit as usize)
        .collect();
    Ok((rows, total))
}

/// The order [`Store::trial_page`] gives, for rows read one at a time: a metric's missing or
/// non-finite values last in either direction, ties in expansion order.
fn compare(page: &TrialPage, a: &TrialRow, b: &TrialRow) -> Ordering {
    let flip = |o: Ordering| if page.descending { o.reverse() } else { o };
    let primary = match &page.order {
        TrialOrder::Ordinal => flip(a.ordinal.cmp(&b.ordinal)),
        TrialOrder::Status => flip(a.status.as_str().cmp(b.status.as_str())),
        TrialOrder::Metric(m) => {
            let value = |r: &TrialRow| r.metrics.get(m).copied().flatten();
            match (value(a), value(b)) {
                (Some(x), Some(y)) => flip(x.total_cmp(&y)),
                (Some(_), None) => Ordering::Less,
                (None, Some(_)) => Ordering::Greater,
                (None, None) => Ordering::Equal,
            }
        }
    };
    primary.then(a.ordinal.cmp(&b.ordinal))
}
