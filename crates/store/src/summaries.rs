//! Per-configuration summaries, kept by the database as trials complete (migration 0008), so
//! that a report over 10^6 trials reads one row per configuration and metric. A configuration
//! here is a sweep's completed trials whose swept parameters are equal but for `seed`.

use std::collections::{BTreeMap, HashMap};

use sweep_core::value::params_from_json;
use sweep_core::Params;

use crate::{with_pool, Counts, Store, StoreError};

/// One configuration as the store keeps it: its trials and each metric's running sums.
#[derive(Debug, Clone, PartialEq)]
pub struct ConfigSummary {
    /// Sweep name.
    pub sweep: String,
    /// The swept parameters without `seed`.
    pub params: Params,
    /// Its completed trials, as expansion order and id, in that order.
    pub trials: Vec<(i64, String)>,
    /// The expansion order of its first completed trial: configurations are listed by it.
    pub first_ordinal: i64,
    /// Per metric, the sums over the trials that reported a finite value.
    pub sums: BTreeMap<String, Sums>,
}

/// The sums a mean, a standard deviation and an interval are made from.
#[derive(Debug, Clone, Copy, PartialEq, Default)]
pub struct Sums {
    /// How many finite values.
    pub n: u64,
    /// Their sum.
    pub sum: f64,
    /// The sum of their squared deviations from their mean.
    pub m2: f64,
}

impl Sums {
    /// The sums of two disjoint sets of values together (Chan et al.'s pairwise update), for
    /// configurations that a wider replicate set merges.
    pub fn merge(self, other: Sums) -> Sums {
        if self.n == 0 {
            return other;
        }
        if other.n == 0 {
            return self;
        }
        let (na, nb) = (self.n as f64, other.n as f64);
        let delta = other.sum / nb - self.sum / na;
        Sums {
            n: self.n + other.n,
            sum: self.sum + other.sum,
            m2: self.m2 + other.m2 + delta * delta * na * nb / (na + nb),
        }
    }
}

impl Store {
    /// The summaries of one sweep's configurations (or every sweep's), by sweep and then by
    /// their first trial's expansion order.
    pub async fn config_summaries(
        &self,
        sweep_id: Option<i64>,
    ) -> Result<Vec<ConfigSummary>, StoreError> {
        let filter = if sweep_id.is_some() {
            "WHERE c.sweep_id = $1"
        } else {
            ""
        };
        let configs_sql = format!(
            "SELECT c.sweep_id, s.name, c.config, c.first_ordinal, c.members \
             FROM configs c JOIN sweeps s ON s.id = c.sweep_id {filter} \
             ORDER BY c.sweep_id, c.first_ordinal"
        );
        let stats_sql = format!(
            "SELECT c.sweep_id, c.config, c.name, c.n, c.sum, c.m2 FROM config_stats c {filter}"
        );
        type ConfigRow = (i64, String, String, i64, String);
        type StatRow = (i64, String, String, i64, f64, f64);
        let (configs, stats): (Vec<ConfigRow>, Vec<StatRow>) = with_pool!(self, |pool| {
            let mut configs = sqlx::query_as(&configs_sql);
            let mut stats = sqlx::query_as(&stats_sql);
            if let Some(id) = sweep_id {
                configs = configs.bind(id);
                stats = stats.bind(id);
            }
            Ok((configs.fetch_all(pool).await?, stats.fetch_all(pool).await?))
        })?;
        let mut sums: HashMap<(i64, String), BTreeMap<String, Sums>> = HashMap::new();
        for (sweep_id, config, name, n, sum, m2) in stats {
            if n > 0 {
                let sums_of = sums.entry((sweep_id, config)).or_default();
                let n = n as u64;
                // Removing values can leave a rounding error's worth below zero.
                sums_of.insert(
                    name,
                    Sums {
                        n,
                        sum,
                        m2: m2.max(0.0),
                    },
                );
            }
        }
        configs
            .into_iter()
            .map(|(sweep_id, sweep, config, first_ordinal, members)| {
                let corrupt = |what: String| {
                    StoreError::Corrupt(format!("sweep {sweep}, configuration {config}: {what}"))
                };
                let params = params_from_json(&config).map_err(|e| corrupt(e.to_string()))?;
                let mut ordered: Vec<(i64, &str)> = members
                    .split(',')
                    .map(|m| {
                        let (ordinal, id) = m.split_once(':')?;
                        Some((ordinal.parse().ok()?, id))
                    })
                    .collect::<Option<_>>()
                    .ok_or_else(|| corrupt(format!("members {members:?}")))?;
                ordered.sort_unstable();
                Ok(ConfigSummary {
                    trials: ordered
                        .into_iter()
                        .map(|(ordinal, id)| (ordinal, id.to_string()))
                        .collect(),
                    sums: sums.remove(&(sweep_id, config)).unwrap_or_default(),
                    sweep,
                    params,
                    first_ordinal,
                })
            })
            .collect()
    }

    /// The trials still in their grids that have not completed, by state, for one sweep or
    /// all: found through the index on state, so a sweep of 10^6 completed trials is not read
    /// to count the few that are not.
    pub async fn unfinished_counts(&self, sweep_id: Option<i64>) -> Result<Counts, StoreError> {
        let sweeps = if sweep_id.is_some() {
            "SELECT id FROM sweeps WHERE id = $1"
        } else {
            "SELECT id FROM sweeps"
        };
        let sql = format!(
            "SELECT status, COUNT(*) FROM trials WHERE sweep_id IN ({sweeps}) \
             AND status IN ('pending', 'running', 'failed', 'interrupted') AND active = 1 \
             GROUP BY status"
        );
        let rows: Vec<(String, i64)> = with_pool!(self, |pool| {
            let mut query = sqlx::query_as(&sql);
            if let Some(id) = sweep_id {
                query = query.bind(id);
            }
            Ok(query.fetch_all(pool).await?)
        })?;
        Ok(Counts::of(rows))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn merged_sums_equal_the_sums_of_all_values() {
        let of = |v: &[f64]| {
            let n = v.len() as f64;
            let mean = v.iter().sum::<f64>() / n;
            Sums {
                n: v.len() as u64,
                sum: v.iter().sum(),
                m2: v.iter().map(|x| (x - mean).powi(2)).sum(),
            }
        };
        let all = of(&[1.0, 2.0, 6.0, 0.5, 3.25]);
        let merged = of(&[1.0, 2.0]).merge(of(&[6.0, 0.5, 3.25]));
        assert_eq!(merged.n, all.n);
        assert!((merged.sum - all.sum).abs() < 1e-12);
        assert!((merged.m2 - all.m2).abs() < 1e-12, "{merged:?} {all:?}");
        let empty = Sums {
            n: 0,
            sum: 0.0,
            m2: 0.0,
        };
        assert_eq!(empty.merge(all), all);
        assert_eq!(all.merge(empty), all);
    }
}
