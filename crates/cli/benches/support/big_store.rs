//! What the report and dashboard benchmarks share: the binary they drive, and a store of many
//! completed trials built directly in SQL: `n / 100` learning rates × 100 seeds, each trial completed with `unsafe_rate`
//! and `utility` that are deterministic functions of its expansion order.

use std::path::{Path, PathBuf};
use std::time::Instant;

use sqlx::sqlite::SqliteConnectOptions;
use sweep_core::{expand, Grid};
use sweep_store::Store;

/// Builds the store `big` of about `n` trials at `db`; returns how many trials it holds.
pub fn build(db: &Path, n: u64) -> usize {
    let configs = (n / 100).max(1);
    let grid = Grid::parse(
        Path::new("big.toml"),
        &format!(
            "[sweep]\nname = \"big\"\ncommand = [\"true\"]\n[grid]\nlearning_rate = {{ log = [1e-6, 1e-1], num = {configs} }}\nseed = {{ lin = [0, 99], num = 100 }}\n"
        ),
    )
    .expect("grid");
    let trials = expand(&grid).trials;
    let runtime = tokio::runtime::Runtime::new().expect("runtime");
    let setup = Instant::now();
    runtime.block_on(async {
        let store = Store::open(db.to_str().unwrap()).await.expect("open");
        let sweep = store.register_sweep(&grid, "/tmp").await.expect("sweep");
        store.register_trials(&sweep, &trials).await.expect("register");
        store.close().await;
        let pool = sqlx::SqlitePool::connect_with(SqliteConnectOptions::new().filename(db))
            .await
            .expect("pool");
        for sql in [
            "UPDATE trials SET status = 'completed', attempts = 1, started_at = 1767225600000 + ordinal, finished_at = 1767225600000 + ordinal + 60000",
            "INSERT INTO results (trial_id, name, value) SELECT id, 'unsafe_rate', ((ordinal * 7919) % 1000) / 1000.0 FROM trials",
            "INSERT INTO results (trial_id, name, value) SELECT id, 'utility', ((ordinal * 104729) % 997) / 997.0 FROM trials",
        ] {
            sqlx::query(sql).execute(&pool).await.expect("fill");
        }
        pool.close().await;
    });
    println!(
        "store of {} completed trials built in {:.1} s",
        trials.len(),
        setup.elapsed().as_secs_f64()
    );
    trials.len()
}

/// The `sweep` binary of this build (the benchmarks drive it as a user would), which must
/// have been built first.
pub fn sweep_binary() -> PathBuf {
    let exe = std::env::current_exe().expect("bench path");
    let bin = exe
        .parent()
        .and_then(Path::parent)
        .expect("target dir")
        .join("sweep");
    assert!(
        bin.exists(),
        "build the binary first: cargo build --release"
    );
    bin
}

/// How many trials the store holds: `BENCH_TRIALS`, 10^6 by default.
pub fn trials_wanted() -> u64 {
    std::env::var("BENCH_TRIALS")
        .ok()
        .and_then(|s| s.parse().ok())
        .unwrap_or(1_000_000)
}
