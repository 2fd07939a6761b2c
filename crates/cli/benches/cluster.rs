//! Beyond one machine: trivial-trial throughput with the PostgreSQL store beside SQLite's, in
//! alternating rounds of one run, and SLURM's submission-to-start latency through
//! `--executor slurm`. Prints medians; see docs/performance.md.
//!
//! ```text
//! cargo build --release
//! SWEEP_TEST_POSTGRES=$(scripts/pg-local start) SLURM_CONF=$(scripts/slurm-local start) \
//!     cargo bench -p sweep --bench cluster
//! ```
//! Each half is skipped, saying so, when its service is not given.

use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::{Duration, Instant};

fn median(mut xs: Vec<f64>) -> f64 {
    xs.sort_by(f64::total_cmp);
    xs[xs.len() / 2]
}

fn sweep_binary() -> PathBuf {
    let exe = std::env::current_exe().expect("bench path");
    let dir = exe.parent().and_then(Path::parent).expect("target dir");
    dir.join("sweep")
}

/// Runs `sweep run grid.toml` in `dir` against `db` with `args`; returns the wall time.
fn run(dir: &Path, db: &str, args: &[&str], env: &[(&str, String)]) -> Duration {
    let t = Instant::now();
    let status = Command::new(sweep_binary())
        .current_dir(dir)
        .env("RUST_LOG", "warn")
        .envs(env.iter().map(|(k, v)| (k, v)))
        .args(["--db", db, "run", "grid.toml"])
        .args(args)
        .status()
        .expect("run sweep");
    assert!(status.success(), "the bench sweep failed");
    t.elapsed()
}

fn main() {
    if !sweep_binary().exists() {
        println!(
            "skipping: {} not built (cargo build --release)",
            sweep_binary().display()
        );
        return;
    }
    let runtime = tokio::runtime::Runtime::new().expect("runtime");
    stores(&runtime);
    slurm(&runtime);
}

/// `n` trivial trials at `--parallel 8`, SQLite and PostgreSQL alternating.
fn stores(runtime: &tokio::runtime::Runtime) {
    let Some(server) = std::env::var("SWEEP_TEST_POSTGRES")
        .ok()
        .filter(|s| !s.is_empty())
    else {
        println!("skipping the store comparison: SWEEP_TEST_POSTGRES is not set");
        return;
    };
    let n: u64 = std::env::var("BENCH_TRIALS")
        .ok()
        .and_then(|s| s.parse().ok())
        .unwrap_or(2_000);
    let rounds = 3;
    let mut sqlite = Vec::new();
    let mut postgres = Vec::new();
    // Deleted at the end, not between runs: on an ext4 file system without a journal, new
    // inodes scan past those deleted in the last half minute (docs/performance.md).
    let mut dirs = Vec::new();
    for _ in 0..rounds {
        for pg in [false, true] {
            let dir = tempfile::tempdir().expect("temp dir");
            std::fs::write(
                dir.path().join("grid.toml"),
                format!(
                    "[sweep]\nname = \"trivial\"\ncommand = [\"sh\", \"-c\", \"echo '{{{{\\\"event\\\":\\\"result\\\",\\\"metrics\\\":{{{{\\\"x\\\":1}}}}}}}}'\"]\n\
                     parallel = 8\n[grid]\ni = {{ lin = [1, {n}], num = {n} }}\n"
                ),
            )
            .expect("write grid");
            let db = if pg {
                runtime
                    .block_on(sweep_store::fresh_postgres_database(&server))
                    .expect("a fresh database")
            } else {
                dir.path().join("sweep.db").display().to_string()
            };
            let rate = n as f64 / run(dir.path(), &db, &[], &[]).as_secs_f64();
            if pg { &mut postgres } else { &mut sqlite }.push(rate);
            dirs.push(dir);
        }
    }
    let (s, p) = (median(sqlite.clone()), median(postgres.clone()));
    println!(
        "{n} trivial trials at --parallel 8, {rounds} alternating rounds: SQLite median {s:.0} trials/s \
         {sqlite:.0?}, PostgreSQL median {p:.0} trials/s {postgres:.0?}; PostgreSQL/SQLite {:.2}",
        p / s
    );
}

/// Submission-to-start latency: from the claim (just before `sbatch`) to the first line the
/// job's script runs, for 40 trivial trials at `parallel = 8` on an idle cluster.
fn slurm(runtime: &tokio::runtime::Runtime) {
    if std::env::var_os("SLURM_CONF").is_none() {
        println!("skipping SLURM latency: SLURM_CONF is not set");
        return;
    }
    let n = 40;
    let dir = tempfile::tempdir().expect("temp dir");
    std::fs::write(
        dir.path().join("t.sh"),
        "date +%s%3N > \"$SWEEP_TRIAL_DIR/started\"\necho '{\"event\":\"result\",\"metrics\":{\"x\":1}}'\n",
    )
    .expect("write trial");
    std::fs::write(
        dir.path().join("grid.toml"),
        format!(
            "[sweep]\nname = \"latency\"\ncommand = [\"sh\", \"t.sh\"]\nparallel = 8\n\
             [grid]\ni = {{ lin = [1, {n}], num = {n} }}\n[slurm]\npoll = \"200ms\"\n"
        ),
    )
    .expect("write grid");
    let db = dir.path().join("sweep.db").display().to_string();
    let wall = run(dir.path(), &db, &["--executor", "slurm"], &[]);
    let rows: Vec<(String, i64)> = runtime.block_on(async {
        let pool = sqlx::SqlitePool::connect(&format!("sqlite://{db}?mode=ro"))
            .await
            .expect("open");
        let rows = sqlx::query_as("SELECT trial_id, started_at FROM attempts")
            .fetch_all(&pool)
            .await
            .expect("attempts");
        pool.close().await;
        rows
    });
    let latencies: Vec<f64> = rows
        .iter()
        .map(|(trial, claimed)| {
            let path = dir
                .path()
                .join("sweep-trials/latency")
                .join(trial)
                .join("started");
            let started: i64 = std::fs::read_to_string(&path)
                .expect("the job ran")
                .trim()
                .parse()
                .expect("a time");
            (started - claimed) as f64 / 1000.0
        })
        .collect();
    let mut sorted = latencies.clone();
    sorted.sort_by(f64::total_cmp);
    println!(
        "SLURM: {n} trivial trials at parallel 8 in {:.1} s ({:.1} trials/s); claim to job start: \
         median {:.2} s, min {:.2} s, max {:.2} s",
        wall.as_secs_f64(),
        n as f64 / wall.as_secs_f64(),
        median(latencies),
        sorted[0],
        sorted[sorted.len() - 1]
    );
}
