//! Expanding a grid into its trials.
//!
//! Points are numbered like nested loops in file order (the last factor varies fastest), built
//! and hashed in parallel with rayon, then excluded and de-duplicated in order, so the result
//! is the same on every run and every machine.

use std::collections::HashSet;

use rayon::prelude::*;

use crate::key::TrialKey;
use crate::spec::{Axis, Grid};
use crate::value::Params;

/// One grid point to run.
#[derive(Debug, Clone, PartialEq)]
pub struct Trial {
    /// Position in the expansion, used to run trials in a predictable order.
    pub ordinal: u64,
    /// Hash of `params`.
    pub key: TrialKey,
    /// The swept parameters (not `[fixed]`).
    pub params: Params,
}

/// The trials of a grid and what was dropped on the way.
#[derive(Debug, Clone)]
pub struct Expansion {
    /// Distinct trials in expansion order.
    pub trials: Vec<Trial>,
    /// Points dropped by `[[exclude]]` rules.
    pub excluded: u64,
    /// Points equal to an earlier one (e.g. `1e-3` and `0.001` on the same axis).
    pub duplicates: u64,
}

/// Expands every point of `grid`. The grid's size was checked against its cap on parsing.
pub fn expand(grid: &Grid) -> Expansion {
    let size = grid.size();
    let candidates: Vec<(u64, TrialKey, Params)> = (0..size)
        .into_par_iter()
        .filter_map(|index| {
            let params = point(&grid.axes, index);
            if excluded(grid, &params) {
                return None;
            }
            Some((index, TrialKey::of(&params), params))
        })
        .collect();
    let excluded = size - candidates.len() as u64;
    let mut seen = HashSet::with_capacity(candidates.len());
    let mut trials = Vec::with_capacity(candidates.len());
    for (ordinal, key, params) in candidates {
        if seen.insert(key) {
            trials.push(Trial {
                ordinal,
                key,
                params,
            });
        }
    }
    let duplicates = size - excluded - trials.len() as u64;
    Expansion {
        trials,
        excluded,
        duplicates,
    }
}

/// The parameters of point `index` (mixed radix, last factor fastest).
fn point(axes: &[Axis], mut index: u64) -> Params {
    let mut params = Params::new();
    for axis in axes.iter().rev() {
        let len = axis.len() as u64;
        let i = (index % len) as usize;
        index /= len;
        match axis {
            Axis::Single { name, values } => {
                params.insert(name.clone(), values[i].clone());
            }
            Axis::Zip { names, rows } => {
                for (name, value) in names.iter().zip(&rows[i]) {
                    params.insert(name.clone(), value.clone());
                }
            }
        }
    }
    params
}

fn excluded(grid: &Grid, params: &Params) -> bool {
    grid.excludes.iter().any(|rule| {
        rule.iter().all(|(name, values)| {
            params
                .get(name)
                .is_some_and(|v| values.iter().any(|x| x.matches(v)))
        })
    })
}

#[cfg(test)]
mod tests {
    use std::path::Path;

    use super::*;
    use crate::value::ParamValue;

    fn grid(body: &str) -> Grid {
        let text = format!("[sweep]\nname = \"t\"\ncommand = [\"true\"]\n{body}");
        Grid::parse(Path::new("g.toml"), &text).unwrap()
    }

    #[test]
    fn product_zip_and_exclude() {
        let g = grid(
            "[grid]\nlr = [1e-5, 5e-5]\nseed = [0, 1]\n[[zip]]\nbs = [8, 16]\naccum = [2, 1]\n\
             [[exclude]]\nlr = 5e-5\nbs = 8\n",
        );
        let e = expand(&g);
        assert_eq!(g.size(), 8);
        assert_eq!(e.excluded, 2);
        assert_eq!(e.trials.len(), 6);
        let first = &e.trials[0].params;
        assert_eq!(first["lr"], ParamValue::Float(1e-5));
        assert_eq!(first["bs"], ParamValue::Int(8));
        assert_eq!(first["accum"], ParamValue::Int(2));
        // Zipped axes never cross.
        assert!(e.trials.iter().all(|t| {
            (t.params["bs"] == ParamValue::Int(8)) == (t.params["accum"] == ParamValue::Int(2))
        }));
        assert!(!e.trials.iter().any(|t| {
            t.params["lr"] == ParamValue::Float(5e-5) && t.params["bs"] == ParamValue::Int(8)
        }));
    }

    #[test]
    fn identical_points_run_once() {
        let e = expand(&grid("[grid]\nlr = [1e-3, 0.001, 2e-3]\n"));
        assert_eq!(e.trials.len(), 2);
        assert_eq!(e.duplicates, 1);
    }

    #[test]
    fn expansion_is_deterministic() {
        let g =
            grid("[grid]\na = { lin = [0, 99], num = 100 }\nb = { log = [1e-6, 1], num = 50 }\n");
        let (x, y) = (expand(&g), expand(&g));
        assert_eq!(x.trials, y.trials);
        assert_eq!(x.trials.len(), 5000);
        assert!(x.trials.windows(2).all(|w| w[0].ordinal < w[1].ordinal));
    }
}
