//! What the store's integration tests share: a fresh store holding one sweep.

use std::path::Path;

use sweep_core::{expand, Grid};
use sweep_store::{Store, SweepRecord};

/// A fresh store (a SQLite file, or with `SWEEP_TEST_POSTGRES` set a fresh database on that
/// PostgreSQL server) holding the sweep `name` of `n` trials, `x = 1..=n`, registered.
pub async fn store_with(name: &str, n: usize) -> (tempfile::TempDir, Store, SweepRecord) {
    let dir = tempfile::tempdir().unwrap();
    let location = match std::env::var(sweep_store::TEST_SERVER_ENV) {
        Ok(server) => sweep_store::fresh_postgres_database(&server).await.unwrap(),
        Err(_) => dir.path().join("s.db").display().to_string(),
    };
    let store = Store::open(&location).await.unwrap();
    let values: Vec<String> = (1..=n).map(|i| i.to_string()).collect();
    let text = format!(
        "[sweep]\nname = \"{name}\"\ncommand = [\"true\"]\n[grid]\nx = [{}]\n",
        values.join(", ")
    );
    let grid = Grid::parse(Path::new("t.toml"), &text).unwrap();
    let sweep = store.register_sweep(&grid, "/tmp").await.unwrap();
    store
        .register_trials(&sweep, &expand(&grid).trials)
        .await
        .unwrap();
    (dir, store, sweep)
}
