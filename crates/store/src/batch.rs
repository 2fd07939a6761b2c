//! What a runner learned about its running attempts, written together: the process groups
//! of attempts that started and the results of attempts that succeeded. A trivial trial runs
//! in a few milliseconds, and every statement is a round trip to the database (SQLite's
//! worker thread, or PostgreSQL's server), so a transaction and a handful of statements for
//! each trial would set the pace of the whole sweep; a batch costs the same few statements
//! however many attempts it holds.

use std::collections::{BTreeMap, HashMap, HashSet};

use crate::{now_ms, with_pool, AttemptEnd, Store, StoreError, WriteTx};

/// A started attempt's process group, for a later run to clean up after a crash.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct AttemptPid<'a> {
    /// Trial id.
    pub trial_id: &'a str,
    /// The attempt's number.
    pub attempt: u32,
    /// Its process group.
    pub pid: u32,
}

/// A succeeded attempt, to be stored with its results.
#[derive(Debug, Clone, Copy)]
pub struct Completion<'a> {
    /// Trial id.
    pub trial_id: &'a str,
    /// The attempt's number.
    pub attempt: u32,
    /// Metrics by trial id: the trial's own, and those it reported for other points of the
    /// sweep.
    pub results: &'a BTreeMap<String, BTreeMap<String, Option<f64>>>,
    /// How it ended (always a success; the attempt row records its exit).
    pub end: &'a AttemptEnd,
}

/// Result rows per `INSERT`: three parameters each, far below either database's limit.
const RESULT_ROWS_PER_INSERT: usize = 1000;

/// Closes the attempt rows of finished attempts, `(trial id, attempt, how it ended)`, at
/// `$now`, inside the caller's transaction `$tx`: one statement however many there are (a
/// batch's successes, or the one attempt that failed).
macro_rules! finish_attempts {
    ($tx:expr, $ended:expr, $now:expr) => {{
        let ended: &[(&str, u32, &$crate::AttemptEnd)] = $ended;
        let (v, n) = $crate::batch::values_table(
            "id, attempt, outcome, exit_code, signal, reason, stderr_tail",
            ended.len(),
        );
        let sql = format!(
            "{v}UPDATE attempts SET finished_at = ${}, outcome = v.outcome, exit_code = v.exit_code, \
             signal = v.signal, reason = v.reason, stderr_tail = v.stderr_tail \
             FROM v WHERE attempts.trial_id = v.id AND attempts.attempt = v.attempt",
            n + 1
        );
        let mut finish = sqlx::query(&sql);
        for (trial_id, attempt, end) in ended {
            finish = finish
                .bind(*trial_id)
                .bind(*attempt as i64)
                .bind(end.outcome.as_str())
                .bind(end.exit_code.map(i64::from))
                .bind(end.signal.map(i64::from))
                .bind(end.reason.as_deref())
                .bind(end.stderr_tail.as_str());
        }
        finish.bind($now).execute(&mut *$tx).await
    }};
}
pub(crate) use finish_attempts;

impl Store {
    /// Records the process groups of `pids` and the results of `completions`, all of
    /// `runner_id`'s attempts, in one transaction (a statement alone when there are only
    /// pids). For each completion, in order: how many other trials it completed, or `None`
    /// when `runner_id` no longer holds that attempt of the trial (its lease was taken over
    /// while it ran); then nothing of it is written, so a trial's result comes from exactly
    /// one attempt. A pid is likewise recorded only while its attempt holds the trial.
    pub async fn record(
        &self,
        runner_id: &str,
        pids: &[AttemptPid<'_>],
        completions: &[Completion<'_>],
    ) -> Result<Vec<Option<u64>>, StoreError> {
        let set_pids = {
            let (v, n) = values_table("id, attempt, pid", pids.len());
            format!(
                "{v}UPDATE trials SET pid = v.pid FROM v WHERE trials.id = v.id AND trials.owner = ${} \
                 AND trials.attempts = v.attempt AND trials.status = 'running'",
                n + 1
            )
        };
        let complete = {
            let (v, n) = values_table("id, attempt", completions.len());
            format!(
                "{v}UPDATE trials SET status = 'completed', owner = NULL, pid = NULL, error = NULL, \
                 completed_by = NULL, finished_at = ${} FROM v WHERE trials.id = v.id AND trials.owner = ${} \
                 AND trials.attempts = v.attempt AND trials.status = 'running' RETURNING trials.id",
                n + 1,
                n + 2
            )
        };
        let done: Vec<Option<u64>> = with_pool!(self, |pool| {
            let mut pid_query = sqlx::query(&set_pids);
            for p in pids {
                pid_query = pid_query
                    .bind(p.trial_id)
                    .bind(p.attempt as i64)
                    .bind(p.pid as i64);
            }
            let pid_query = pid_query.bind(runner_id);
            if completions.is_empty() {
                if !pids.is_empty() {
                    pid_query.execute(pool).await?;
                }
                return Ok(Vec::new());
            }
            let now = now_ms();
            let mut tx = pool.write_tx().await?;
            if !pids.is_empty() {
                pid_query.execute(&mut *tx).await?;
            }
            let mut query = sqlx::query_scalar(&complete);
            for c in completions {
                query = query.bind(c.trial_id).bind(c.attempt as i64);
            }
            let owned: HashSet<String> = query
                .bind(now)
                .bind(runner_id)
                .fetch_all(&mut *tx)
                .await?
                .into_iter()
                .collect();
            let mine: Vec<&Completion> = completions
                .iter()
                .filter(|c| owned.contains(c.trial_id))
                .collect();
            // Points reported for other trials complete those not completed yet; each is
            // rare and its own statement.
            let mut rows = Vec::new();
            let mut others: HashMap<&str, u64> = HashMap::new();
            for c in &mine {
                for (id, metrics) in c.results {
                    if id != c.trial_id {
                        let updated = sqlx::query(
                            "UPDATE trials SET status = 'completed', finished_at = $1, started_at = COALESCE(started_at, $1), \
                             error = NULL, completed_by = $2 WHERE id = $3 AND status <> 'completed'",
                        )
                        .bind(now)
                        .bind(c.trial_id)
                        .bind(id)
                        .execute(&mut *tx)
                        .await?
                        .rows_affected();
                        if updated == 0 {
                            continue;
                        }
                        *others.entry(c.trial_id).or_default() += 1;
                        sqlx::query("DELETE FROM results WHERE trial_id = $1")
                            .bind(id)
                            .execute(&mut *tx)
                            .await?;
                    }
                    // A trial's own results go in as they are: it was running until now, and
                    // only completed trials have results.
                    rows.extend(metrics.iter().map(|(name, value)| (id, name, *value)));
                }
            }
            // After the status updates: the summaries' trigger counts a result only for a
            // completed trial.
            for chunk in rows.chunks(RESULT_ROWS_PER_INSERT) {
                let sql = format!(
                    "INSERT INTO results (trial_id, name, value) VALUES {}",
                    value_rows(chunk.len(), 3)
                );
                let mut insert = sqlx::query(&sql);
                for (id, name, value) in chunk {
                    insert = insert.bind(*id).bind(*name).bind(*value);
                }
                insert.execute(&mut *tx).await?;
            }
            if !mine.is_empty() {
                let ended: Vec<_> = mine
                    .iter()
                    .map(|c| (c.trial_id, c.attempt, c.end))
                    .collect();
                finish_attempts!(tx, &ended, now)?;
            }
            tx.commit().await?;
            Ok(completions
                .iter()
                .map(|c| {
                    owned
                        .contains(c.trial_id)
                        .then(|| others.get(c.trial_id).copied().unwrap_or(0))
                })
                .collect())
        })?;
        if done.iter().any(Option::is_some) {
            self.note_metric_names(
                completions
                    .iter()
                    .zip(&done)
                    .filter(|(_, done)| done.is_some())
                    .flat_map(|(c, _)| c.results.values().flat_map(|m| m.keys())),
            )
            .await;
        }
        Ok(done)
    }

    /// Records the process group of a trial's running attempt, so a later run can clean up
    /// after a crash: [`Store::record`] of one pid.
    pub async fn set_pid(
        &self,
        trial_id: &str,
        runner_id: &str,
        attempt: u32,
        pid: u32,
    ) -> Result<(), StoreError> {
        let pid = AttemptPid {
            trial_id,
            attempt,
            pid,
        };
        self.record(runner_id, &[pid], &[]).await.map(drop)
    }

    /// Records a successful attempt: [`Store::record`] of one completion.
    pub async fn complete(
        &self,
        trial_id: &str,
        runner_id: &str,
        attempt: u32,
        results: &BTreeMap<String, BTreeMap<String, Option<f64>>>,
        end: &AttemptEnd,
    ) -> Result<Option<u64>, StoreError> {
        let completion = Completion {
            trial_id,
            attempt,
            results,
            end,
        };
        let done = self.record(runner_id, &[], &[completion]).await?;
        Ok(done.into_iter().next().flatten())
    }
}

/// `WITH v(columns) AS (VALUES ($1, ...), ...) `: a table of `rows` rows of values, for
/// `UPDATE ... FROM v`, the one form of a many-row update that SQLite and PostgreSQL both read.
/// Its parameters are numbered from 1, row by row; returned with how many there are, so the
/// statement's own parameters follow without a count kept by hand beside the column list.
pub(crate) fn values_table(columns: &str, rows: usize) -> (String, usize) {
    let width = columns.split(',').count();
    let table = format!("WITH v({columns}) AS (VALUES {}) ", value_rows(rows, width));
    (table, rows * width)
}

/// `n` tuples of `width` parameters, numbered from 1: `($1, $2), ($3, $4)`.
fn value_rows(n: usize, width: usize) -> String {
    let tuples: Vec<String> = (0..n)
        .map(|row| {
            let params: Vec<String> = (1..=width)
                .map(|i| format!("${}", row * width + i))
                .collect();
            format!("({})", params.join(", "))
        })
        .collect();
    tuples.join(", ")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_values_table_numbers_its_parameters_row_by_row() {
        assert_eq!(
            values_table("id, attempt", 2),
            (
                "WITH v(id, attempt) AS (VALUES ($1, $2), ($3, $4)) ".to_string(),
                4
            )
        );
        assert_eq!(value_rows(1, 3), "($1, $2, $3)");
    }
}
