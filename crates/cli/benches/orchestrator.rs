//! Orchestrator throughput: grid expansion and keying, trial registration, and trivial
//! trials run end to end through the real binary. Prints medians; see docs/performance.md.
//!
//! `cargo bench -p sweep --bench orchestrator` (build the binary first: `cargo build --release`).

use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::{Duration, Instant};

use sweep_core::{expand, Grid};
use sweep_store::Store;

fn median(mut xs: Vec<Duration>) -> Duration {
    xs.sort();
    xs[xs.len() / 2]
}

fn grid(text: &str) -> Grid {
    Grid::parse(Path::new("bench.toml"), text).expect("bench grid parses")
}

fn sweep_binary() -> PathBuf {
    let exe = std::env::current_exe().expect("bench path");
    let dir = exe.parent().and_then(Path::parent).expect("target dir");
    dir.join("sweep")
}

fn main() {
    let head = "[sweep]\nname = \"bench\"\ncommand = [\"true\"]\n";
    let million = grid(&format!(
        "{head}[grid]\nlr = {{ log = [1e-6, 1e-1], num = 100 }}\nwd = {{ lin = [0.0, 0.1], num = 100 }}\nseed = {{ lin = [0, 99], num = 100 }}\n"
    ));
    let runs: Vec<Duration> = (0..5)
        .map(|_| {
            let t = Instant::now();
            let e = expand(&million);
            assert_eq!(e.trials.len(), 1_000_000);
            t.elapsed()
        })
        .collect();
    let m = median(runs);
    println!(
        "expand+key 10^6 points: median {:.3} s ({:.2} M points/s, {} threads)",
        m.as_secs_f64(),
        1.0 / m.as_secs_f64(),
        rayon_threads()
    );

    let runtime = tokio::runtime::Runtime::new().expect("runtime");
    let hundred_k = grid(&format!(
        "{head}[grid]\nlr = {{ log = [1e-6, 1e-1], num = 100 }}\nwd = {{ lin = [0.0, 0.1], num = 100 }}\nseed = {{ lin = [0, 9], num = 10 }}\n"
    ));
    let trials = expand(&hundred_k).trials;
    let runs: Vec<Duration> = (0..3)
        .map(|_| {
            let dir = tempfile::tempdir().expect("temp dir");
            let db = dir.path().join("bench.db").display().to_string();
            runtime.block_on(async {
                let store = Store::open(&db).await.expect("open");
                let sweep = store
                    .register_sweep(&hundred_k, "/tmp")
                    .await
                    .expect("sweep");
                let t = Instant::now();
                let r = store
                    .register_trials(&sweep, &trials)
                    .await
                    .expect("register");
                let elapsed = t.elapsed();
                assert_eq!(r.added, 100_000);
                store.close().await;
                elapsed
            })
        })
        .collect();
    let m = median(runs);
    println!(
        "register 10^5 trials: median {:.3} s ({:.0} trials/s)",
        m.as_secs_f64(),
        100_000.0 / m.as_secs_f64()
    );

    let bin = sweep_binary();
    if !bin.exists() {
        println!(
            "skipping trivial trials: {} not built (cargo build --release)",
            bin.display()
        );
        return;
    }
    let n: u64 = std::env::var("BENCH_TRIALS")
        .ok()
        .and_then(|s| s.parse().ok())
        .unwrap_or(10_000);
    let dir = tempfile::tempdir().expect("temp dir");
    let grid_path = dir.path().join("trivial.toml");
    std::fs::write(
        &grid_path,
        format!(
            "[sweep]\nname = \"trivial\"\ncommand = [\"sh\", \"-c\", \"echo '{{{{\\\"event\\\":\\\"result\\\",\\\"metrics\\\":{{{{\\\"x\\\":1}}}}}}}}'\"]\n\
             parallel = 8\n[grid]\ni = {{ lin = [1, {n}], num = {n} }}\n"
        ),
    )
    .expect("write grid");
    let t = Instant::now();
    let status = Command::new(&bin)
        .current_dir(dir.path())
        .env("RUST_LOG", "warn")
        .args(["--db", "trivial.db", "run", "trivial.toml"])
        .status()
        .expect("run sweep");
    let elapsed = t.elapsed();
    assert!(status.success(), "trivial sweep failed");
    println!(
        "{n} trivial trials (sh -c echo) at --parallel 8: {:.1} s, {:.0} trials/s",
        elapsed.as_secs_f64(),
        n as f64 / elapsed.as_secs_f64()
    );
}

fn rayon_threads() -> usize {
    std::thread::available_parallelism().map_or(1, |n| n.get())
}
