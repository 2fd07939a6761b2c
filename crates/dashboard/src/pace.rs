//! A sweep's time to finish, from the pace the dashboard itself has seen: how many trials
//! completed since it first looked at the sweep, over how long. The store keeps no index on
//! start times, and reading them back is a pass over the whole sweep; the counts are cheap.

use std::collections::HashMap;
use std::sync::Mutex;
use std::time::Instant;

/// Each sweep's completed count when the dashboard first saw it, and when.
#[derive(Default)]
pub(crate) struct Pace {
    first_seen: Mutex<HashMap<i64, (Instant, u64)>>,
}

impl Pace {
    /// Seconds to finish `left` trials at the pace seen so far; `None` until a trial has
    /// completed while the dashboard watched, or when nothing is left.
    pub(crate) fn time_to_finish(&self, sweep_id: i64, completed: u64, left: u64) -> Option<f64> {
        self.at(sweep_id, completed, left, Instant::now())
    }

    fn at(&self, sweep_id: i64, completed: u64, left: u64, now: Instant) -> Option<f64> {
        let mut seen = self.first_seen.lock().unwrap_or_else(|e| e.into_inner());
        let (since, then) = *seen.entry(sweep_id).or_insert((now, completed));
        if completed < then {
            // Trials were reset (`resume --retry-failed`, a grid change): start over.
            seen.insert(sweep_id, (now, completed));
            return None;
        }
        let done = completed - then;
        let elapsed = now.duration_since(since).as_secs_f64();
        (left > 0 && done > 0 && elapsed > 0.0).then(|| left as f64 * elapsed / done as f64)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::time::Duration;

    #[test]
    fn the_pace_is_what_completed_while_watched() {
        let pace = Pace::default();
        let t0 = Instant::now();
        assert_eq!(pace.at(1, 100, 50, t0), None, "nothing seen yet");
        assert_eq!(
            pace.at(1, 100, 50, t0 + Duration::from_secs(5)),
            None,
            "nothing completed"
        );
        // 10 completed in 20 s: 40 left take 80 s.
        let eta = pace.at(1, 110, 40, t0 + Duration::from_secs(20)).unwrap();
        assert!((eta - 80.0).abs() < 1e-9, "{eta}");
        assert_eq!(
            pace.at(1, 150, 0, t0 + Duration::from_secs(30)),
            None,
            "finished"
        );
        assert_eq!(
            pace.at(1, 20, 130, t0 + Duration::from_secs(40)),
            None,
            "reset: start over"
        );
        let eta = pace.at(1, 30, 120, t0 + Duration::from_secs(50)).unwrap();
        assert!((eta - 120.0).abs() < 1e-9, "{eta}");
        assert_eq!(pace.at(2, 0, 10, t0), None, "each sweep its own");
    }
}
