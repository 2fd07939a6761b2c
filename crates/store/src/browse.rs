//! Reads for browsing a sweep a page at a time (the dashboard): one trial, one page of trials
//! in a chosen order, one trial's curves, the completed trials with a given parameter value. Each answers from the indexes
//! without reading the whole sweep, so a page stays quick on a store of millions of trials.

use crate::read::{trial_row, trial_select};
use crate::{with_pool, CurveRow, Store, StoreError, TrialRow, TrialStatus};

/// The order of a page of trials.
#[derive(Debug, Clone, PartialEq)]
pub enum TrialOrder {
    /// Expansion order (the grid's).
    Ordinal,
    /// By a final metric, trials without it last.
    Metric(String),
    /// By state, then expansion order.
    Status,
}

/// Which trials of a sweep, in which order, how many from where.
#[derive(Debug, Clone, PartialEq)]
pub struct TrialPage {
    /// Only trials in this state.
    pub status: Option<TrialStatus>,
    /// Their order.
    pub order: TrialOrder,
    /// Largest first.
    pub descending: bool,
    /// Trials skipped before the page.
    pub offset: u64,
    /// Trials on the page.
    pub limit: u64,
}

impl Store {
    /// One trial by id, `None` if there is none.
    pub async fn trial(&self, trial_id: &str) -> Result<Option<TrialRow>, StoreError> {
        let sql = format!("{} WHERE t.id = $1", trial_select(self.backend()));
        with_pool!(self, |pool| {
            match sqlx::query(&sql)
                .bind(trial_id)
                .fetch_optional(pool)
                .await?
            {
                Some(r) => Ok(Some(trial_row(&r)?)),
                None => Ok(None),
            }
        })
    }

    /// One page of a sweep's trials (those in its current grid, and completed ones it
    /// dropped), and how many match in all.
    pub async fn trial_page(
        &self,
        sweep_id: i64,
        page: &TrialPage,
    ) -> Result<(Vec<TrialRow>, u64), StoreError> {
        let direction = if page.descending { "DESC" } else { "ASC" };
        let status = if page.status.is_some() {
            "AND t.status = $2"
        } else {
            ""
        };
        // The metric's name is bound last, after the status when there is one.
        let metric_param = if page.status.is_some() { "$3" } else { "$2" };
        let order = match &page.order {
            TrialOrder::Ordinal => format!("t.ordinal {direction}"),
            TrialOrder::Status => format!("t.status {direction}, t.ordinal"),
            // NULLs (no such metric, or not finite) last in either direction.
            TrialOrder::Metric(_) => format!(
                "(SELECT r.value FROM results r WHERE r.trial_id = t.id AND r.name = {metric_param}) \
                 {direction} NULLS LAST, t.ordinal"
            ),
        };
        let visible = "t.sweep_id = $1 AND (t.active = 1 OR t.status = 'completed')";
        let sql = format!(
            "{} WHERE {visible} {status} ORDER BY {order} LIMIT {} OFFSET {}",
            trial_select(self.backend()),
            page.limit,
            page.offset
        );
        let count_sql = format!("SELECT COUNT(*) FROM trials t WHERE {visible} {status}");
        let status = page.status.map(TrialStatus::as_str);
        let metric = match &page.order {
            TrialOrder::Metric(name) => Some(name.as_str()),
            _ => None,
        };
        with_pool!(self, |pool| {
            let mut query = sqlx::query(&sql).bind(sweep_id);
            let mut count = sqlx::query_scalar::<_, i64>(&count_sql).bind(sweep_id);
            if let Some(s) = status {
                query = query.bind(s);
                count = count.bind(s);
            }
            if let Some(m) = metric {
                query = query.bind(m);
            }
            let rows = query.fetch_all(pool).await?;
            let total = count.fetch_one(pool).await?;
            let rows = rows.iter().map(trial_row).collect::<Result<Vec<_>, _>>()?;
            Ok((rows, total as u64))
        })
    }

    /// Every curve point of one trial, ordered by name and step; where a resumed trial
    /// reported the same step twice, the later attempt's value wins.
    pub async fn trial_curves(&self, trial_id: &str) -> Result<Vec<CurveRow>, StoreError> {
        let inserted = match self.backend() {
            crate::Backend::Sqlite => "rowid",
            crate::Backend::Postgres => "seq",
        };
        let sql = format!(
            "SELECT trial_id, step, name, value FROM curves WHERE trial_id = $1 \
             ORDER BY name, step, attempt, {inserted}"
        );
        let rows: Vec<(String, i64, String, Option<f64>)> = with_pool!(self, |pool| {
            Ok(sqlx::query_as(&sql).bind(trial_id).fetch_all(pool).await?)
        })?;
        Ok(crate::read::last_value_per_step(rows))
    }

    /// Completed trials of a sweep whose parameter `name` is the number `value`, at most
    /// `limit` in expansion order: how the dashboard finds the unchanged base (`steps = 0`)
    /// beside a fine-tuned trial without reading the whole sweep.
    pub async fn completed_with(
        &self,
        sweep_id: i64,
        name: &str,
        value: f64,
        limit: u64,
    ) -> Result<Vec<TrialRow>, StoreError> {
        let (param, key) = match self.backend() {
            // A JSON path with the key quoted; a name that would need escaping matches nothing.
            crate::Backend::Sqlite => ("json_extract(t.params, $2)", format!("$.\"{name}\"")),
            crate::Backend::Postgres => (
                "CASE WHEN jsonb_typeof(t.params::JSONB -> $2) = 'number' \
                 THEN (t.params::JSONB ->> $2)::FLOAT8 END",
                name.to_string(),
            ),
        };
        if name.contains(['"', '\\']) {
            return Ok(Vec::new());
        }
        let sql = format!(
            "{} WHERE t.sweep_id = $1 AND t.status = 'completed' AND {param} = $3 \
             ORDER BY t.ordinal LIMIT {limit}",
            trial_select(self.backend())
        );
        with_pool!(self, |pool| {
            let rows = sqlx::query(&sql)
                .bind(sweep_id)
                .bind(&key)
                .bind(value)
                .fetch_all(pool)
                .await?;
            rows.iter().map(trial_row).collect()
        })
    }
}
