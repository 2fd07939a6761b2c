//! Non-dominated sorting and hypervolume.
//!
//! Every objective is turned into "smaller is better" (maximised ones are negated) before
//! ranking, so the algorithms see one direction. Rank 1 is the Pareto front. Points equal in
//! every objective do not dominate each other and share a rank.

use std::cmp::Ordering;
use std::fmt;
use std::str::FromStr;

/// Whether an objective is minimised or maximised.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Direction {
    /// Smaller is better (e.g. `unsafe_rate`).
    Min,
    /// Larger is better (e.g. `utility`).
    Max,
}

/// A metric and its direction, written `name:min` or `name:max`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Objective {
    /// Metric name.
    pub metric: String,
    /// Direction.
    pub direction: Direction,
}

impl FromStr for Objective {
    type Err = String;

    fn from_str(s: &str) -> Result<Self, Self::Err> {
        let (metric, dir) = s.rsplit_once(':').ok_or_else(|| {
            format!("objective {s:?} needs a direction: write {s}:min or {s}:max")
        })?;
        let direction = match dir {
            "min" => Direction::Min,
            "max" => Direction::Max,
            other => {
                return Err(format!(
                    "objective direction {other:?} in {s:?} must be min or max"
                ))
            }
        };
        if metric.is_empty() {
            return Err(format!("objective {s:?} names no metric"));
        }
        Ok(Objective {
            metric: metric.to_string(),
            direction,
        })
    }
}

impl fmt::Display for Objective {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let dir = if self.direction == Direction::Min {
            "min"
        } else {
            "max"
        };
        write!(f, "{}:{dir}", self.metric)
    }
}

impl Objective {
    /// The value in "smaller is better" form.
    pub fn oriented(&self, value: f64) -> f64 {
        match self.direction {
            Direction::Min => value,
            Direction::Max => -value,
        }
    }
}

/// Whether `a` dominates `b` (both minimised): no worse anywhere, better somewhere.
pub fn dominates(a: &[f64], b: &[f64]) -> bool {
    a.iter().zip(b).all(|(x, y)| x <= y) && a.iter().zip(b).any(|(x, y)| x < y)
}

/// The front rank (1 = non-dominated) of every point, all objectives minimised. Points must
/// be finite. Two objectives take O(n log n); more take O(k n²).
pub fn front_ranks(points: &[Vec<f64>]) -> Vec<usize> {
    match points.first().map(Vec::len) {
        None => Vec::new(),
        Some(2) => ranks_2d(points),
        Some(_) => ranks_general(points),
    }
}

fn ranks_2d(points: &[Vec<f64>]) -> Vec<usize> {
    let mut order: Vec<usize> = (0..points.len()).collect();
    order.sort_by(|&a, &b| cmp2(&points[a], &points[b]));
    let mut ranks = vec![0; points.len()];
    // fronts[k] = smallest second objective among points placed in front k+1; non-decreasing
    // in k, so the first front that does not dominate a point is found by binary search.
    let mut fronts: Vec<f64> = Vec::new();
    let mut i = 0;
    while i < order.len() {
        // Identical points share a rank and must not dominate one another.
        let mut j = i + 1;
        while j < order.len() && cmp2(&points[order[i]], &points[order[j]]) == Ordering::Equal {
            j += 1;
        }
        let y = points[order[i]][1];
        let k = fronts.partition_point(|&min_y| min_y <= y);
        if k == fronts.len() {
            fronts.push(y);
        } else {
            fronts[k] = y;
        }
        for &idx in &order[i..j] {
            ranks[idx] = k + 1;
        }
        i = j;
    }
    ranks
}

fn cmp2(a: &[f64], b: &[f64]) -> Ordering {
    a[0].total_cmp(&b[0]).then(a[1].total_cmp(&b[1]))
}

fn ranks_general(points: &[Vec<f64>]) -> Vec<usize> {
    let n = points.len();
    let mut dominated_by = vec![0usize; n];
    let mut dominates_list: Vec<Vec<usize>> = vec![Vec::new(); n];
    for a in 0..n {
        for b in a + 1..n {
            if dominates(&points[a], &points[b]) {
                dominates_list[a].push(b);
                dominated_by[b] += 1;
            } else if dominates(&points[b], &points[a]) {
                dominates_list[b].push(a);
                dominated_by[a] += 1;
            }
        }
    }
    let mut ranks = vec![0; n];
    let mut current: Vec<usize> = (0..n).filter(|&i| dominated_by[i] == 0).collect();
    let mut rank = 1;
    while !current.is_empty() {
        let mut next = Vec::new();
        for &i in &current {
            ranks[i] = rank;
            for &j in &dominates_list[i] {
                dominated_by[j] -= 1;
                if dominated_by[j] == 0 {
                    next.push(j);
                }
            }
        }
        current = next;
        rank += 1;
    }
    ranks
}

/// The volume dominated by `points` and bounded by `reference` (all minimised). Points not
/// strictly better than the reference in every objective contribute nothing.
pub fn hypervolume(points: &[Vec<f64>], reference: &[f64]) -> f64 {
    let inside: Vec<Vec<f64>> = points
        .iter()
        .filter(|p| p.iter().zip(reference).all(|(x, r)| x < r))
        .cloned()
        .collect();
    hv(inside, reference)
}

/// Exact hypervolume by slicing along the last objective (fine for the front sizes of a
/// sweep; exponential in the number of objectives only).
fn hv(mut points: Vec<Vec<f64>>, reference: &[f64]) -> f64 {
    let d = reference.len();
    if points.is_empty() {
        return 0.0;
    }
    if d == 1 {
        let best = points.iter().map(|p| p[0]).fold(f64::INFINITY, f64::min);
        return reference[0] - best;
    }
    if d == 2 {
        points.sort_by(|a, b| cmp2(a, b));
        let mut area = 0.0;
        let mut y_bound = reference[1];
        for p in &points {
            if p[1] < y_bound {
                area += (reference[0] - p[0]) * (y_bound - p[1]);
                y_bound = p[1];
            }
        }
        return area;
    }
    points.sort_by(|a, b| a[d - 1].total_cmp(&b[d - 1]));
    let mut volume = 0.0;
    for i in 0..points.len() {
        let upper = if i + 1 < points.len() {
            points[i + 1][d - 1]
        } else {
            reference[d - 1]
        };
        let depth = upper - points[i][d - 1];
        if depth > 0.0 {
            let slice: Vec<Vec<f64>> = points[..=i].iter().map(|p| p[..d - 1].to_vec()).collect();
            volume += depth * hv(slice, &reference[..d - 1]);
        }
    }
    volume
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Brute-force reference: peel off the non-dominated set repeatedly.
    fn brute_ranks(points: &[Vec<f64>]) -> Vec<usize> {
        let mut ranks = vec![0; points.len()];
        let mut rank = 1;
        while ranks.contains(&0) {
            let left: Vec<usize> = (0..points.len()).filter(|&i| ranks[i] == 0).collect();
            let front: Vec<usize> = left
                .iter()
                .copied()
                .filter(|&i| !left.iter().any(|&j| dominates(&points[j], &points[i])))
                .collect();
            for i in front {
                ranks[i] = rank;
            }
            rank += 1;
        }
        ranks
    }

    /// A small deterministic generator (xorshift), so the test needs no RNG crate.
    fn random_points(seed: u64, n: usize, k: usize, levels: u64) -> Vec<Vec<f64>> {
        let mut s = seed.wrapping_mul(0x9E37_79B9_7F4A_7C15) | 1;
        let mut next = || {
            s ^= s << 13;
            s ^= s >> 7;
            s ^= s << 17;
            (s % levels) as f64
        };
        (0..n).map(|_| (0..k).map(|_| next()).collect()).collect()
    }

    #[test]
    fn ranks_match_brute_force_with_ties_and_duplicates() {
        for seed in 0..200 {
            for k in [2, 3, 4] {
                // Few levels force ties and exact duplicates.
                let levels = if seed % 2 == 0 { 5 } else { 1000 };
                let points = random_points(seed, 1 + (seed as usize % 60), k, levels);
                assert_eq!(
                    front_ranks(&points),
                    brute_ranks(&points),
                    "seed {seed} k {k}: {points:?}"
                );
            }
        }
    }

    #[test]
    fn hypervolume_of_hand_computed_cases() {
        // One point: a rectangle.
        assert_eq!(hypervolume(&[vec![1.0, 2.0]], &[3.0, 5.0]), 2.0 * 3.0);
        // A staircase of three points against (4, 4): 1*3 + 1*2 + 1*1 ... computed by hand.
        let front = vec![vec![1.0, 3.0], vec![2.0, 2.0], vec![3.0, 1.0]];
        assert_eq!(hypervolume(&front, &[4.0, 4.0]), 3.0 + 2.0 + 1.0);
        // Dominated points and points outside the reference add nothing.
        let mut more = front.clone();
        more.push(vec![3.0, 3.0]);
        more.push(vec![5.0, 0.0]);
        assert_eq!(hypervolume(&more, &[4.0, 4.0]), 6.0);
        // 3-D: two unit-offset boxes overlapping: 2*2*2 + 2*2*2 - 1*1*2... by inclusion-exclusion.
        let boxes = vec![vec![0.0, 1.0, 0.0], vec![1.0, 0.0, 0.0]];
        // Box A = [0,2]x[1,2]x[0,2] = 2*1*2 = 4, B = [1,2]x[0,2]x[0,2] = 1*2*2 = 4, A∩B = 1*1*2 = 2.
        assert_eq!(hypervolume(&boxes, &[2.0, 2.0, 2.0]), 6.0);
        assert_eq!(hypervolume(&[], &[1.0, 1.0]), 0.0);
    }

    #[test]
    fn hypervolume_matches_monte_carlo_free_grid_count() {
        // On integer points, the dominated volume equals the count of unit cells dominated.
        for seed in 0..30 {
            let points = random_points(seed, 8, 3, 6);
            let reference = [6.0, 6.0, 6.0];
            let mut cells = 0;
            for x in 0..6 {
                for y in 0..6 {
                    for z in 0..6 {
                        let c = [x as f64, y as f64, z as f64];
                        if points.iter().any(|p| p.iter().zip(&c).all(|(a, b)| a <= b)) {
                            cells += 1;
                        }
                    }
                }
            }
            assert_eq!(
                hypervolume(&points, &reference),
                cells as f64,
                "seed {seed}"
            );
        }
    }

    #[test]
    fn parses_objectives() {
        let o: Objective = "unsafe_rate:min".parse().unwrap();
        assert_eq!(o.direction, Direction::Min);
        assert!("utility".parse::<Objective>().is_err());
        assert!("utility:up".parse::<Objective>().is_err());
    }
}
