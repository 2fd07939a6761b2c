//! Riding out a lost connection to a PostgreSQL server.
//!
//! A cluster's database server restarts, fails over, or drops off the network for a while;
//! a sweep of hour-long trials must not die of that. Every store operation that fails because
//! the connection is gone is run again after a growing pause (100 ms, doubling, at most 5 s
//! apart) until the server answers or [`RETRY_ENV`] seconds have passed; then it fails with
//! [`StoreError::Unreachable`], which says what was lost (nothing) and what to run next.
//! SQLite has no connection to lose, so its errors are never retried here.

use std::time::{Duration, Instant};

use crate::{Backend, StoreError};

/// How many seconds to keep retrying a lost PostgreSQL connection (default 120): longer than
/// the heartbeat lease, so a restart of the server does not make runners take each other's
/// trials back.
pub const RETRY_ENV: &str = "SWEEP_DB_RETRY_S";

const FIRST_PAUSE: Duration = Duration::from_millis(100);
const LONGEST_PAUSE: Duration = Duration::from_secs(5);
const DEFAULT_LIMIT: Duration = Duration::from_secs(120);

/// The retry state of one store operation.
pub(crate) struct Retry {
    backend: Backend,
    started: Instant,
    pause: Duration,
    tries: u32,
    limit: Duration,
}

impl Retry {
    pub(crate) fn new(backend: Backend) -> Retry {
        Retry {
            backend,
            started: Instant::now(),
            pause: FIRST_PAUSE,
            tries: 0,
            limit: limit(),
        }
    }

    /// Waits and returns true when `e` is a lost connection that is worth another try.
    pub(crate) async fn should_retry(&mut self, e: &StoreError) -> bool {
        if self.backend != Backend::Postgres || !e.is_connection_lost() {
            return false;
        }
        if self.started.elapsed() + self.pause > self.limit {
            return false;
        }
        if self.tries == 0 {
            tracing::warn!(
                "lost the connection to the database ({}); retrying for up to {} s",
                e.short(),
                self.limit.as_secs()
            );
        }
        self.tries += 1;
        tokio::time::sleep(self.pause).await;
        self.pause = (self.pause * 2).min(LONGEST_PAUSE);
        true
    }

    /// Says so when the server answered again after a lost connection.
    pub(crate) fn succeeded(&self) {
        if self.tries > 0 {
            tracing::info!(
                "the database answers again after {:.1} s",
                self.started.elapsed().as_secs_f64()
            );
        }
    }

    /// The error to report once retrying stopped.
    pub(crate) fn give_up(self, e: StoreError, location: &str) -> StoreError {
        if self.tries == 0 || !e.is_connection_lost() {
            return e;
        }
        StoreError::Unreachable {
            location: location.to_string(),
            waited_s: self.started.elapsed().as_secs(),
            message: e.short(),
        }
    }
}

fn limit() -> Duration {
    std::env::var(RETRY_ENV)
        .ok()
        .and_then(|s| s.trim().parse::<f64>().ok())
        .filter(|s| s.is_finite() && *s >= 0.0)
        .map(Duration::from_secs_f64)
        .unwrap_or(DEFAULT_LIMIT)
}
