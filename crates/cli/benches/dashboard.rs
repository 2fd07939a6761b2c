//! `sweep serve` over a store of 10^6 completed trials: how long each request of the pages
//! takes through the real binary, on loopback. See docs/performance.md.
//!
//! `cargo build --release && cargo bench -p sweep --bench dashboard` (BENCH_TRIALS to resize,
//! BENCH_DB=FILE to reuse a store the report bench kept with BENCH_KEEP_DB).

use std::io::{BufRead, BufReader, Read, Write};
use std::net::TcpStream;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

#[path = "support/big_store.rs"]
mod big_store;

/// One GET on a fresh connection: status line, body size, wall time.
fn get(addr: &str, path: &str) -> (String, usize, Duration) {
    let start = Instant::now();
    let mut stream = TcpStream::connect(addr).expect("connect");
    write!(
        stream,
        "GET {path} HTTP/1.1\r\nHost: {addr}\r\nConnection: close\r\n\r\n"
    )
    .expect("send");
    let mut response = Vec::new();
    stream.read_to_end(&mut response).expect("read");
    let elapsed = start.elapsed();
    let text = String::from_utf8_lossy(&response);
    let status = text.lines().next().unwrap_or("").to_string();
    assert!(status.contains(" 200 "), "GET {path}: {status}");
    (status, response.len(), elapsed)
}

fn median(mut times: Vec<Duration>) -> Duration {
    times.sort();
    times[times.len() / 2]
}

struct Server(Child);

impl Drop for Server {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

fn main() {
    let n = big_store::trials_wanted();
    let bin = big_store::sweep_binary();
    let dir = tempfile::tempdir().expect("temp dir");
    let db = match std::env::var_os("BENCH_DB") {
        Some(path) => PathBuf::from(path),
        None => {
            let db = dir.path().join("big.db");
            big_store::build(&db, n);
            db
        }
    };
    let started = Instant::now();
    let mut child = Command::new(&bin)
        .args([
            "--db",
            db.to_str().unwrap(),
            "serve",
            "--bind",
            "127.0.0.1:0",
        ])
        .stderr(Stdio::piped())
        .stdout(Stdio::null())
        .spawn()
        .expect("start sweep serve");
    let stderr = child.stderr.take().expect("stderr");
    let _server = Server(child);
    let addr = BufReader::new(stderr)
        .lines()
        .map_while(Result::ok)
        .find_map(|l| {
            let at = l.find("http://")? + "http://".len();
            Some(l[at..].split('/').next()?.to_string())
        })
        .expect("sweep serve prints its address");
    println!("listening after {:.2} s", started.elapsed().as_secs_f64());

    // What the sweep page asks for before it draws (the front is drawn when it comes).
    let page = [
        "/",
        "/style.css",
        "/app.js",
        "/api/sweeps/big",
        "/api/sweeps/big/trials?status=&sort=ordinal&desc=false&offset=0&limit=50&where=",
    ];
    let load = |label: &str| {
        let times: Vec<Duration> = page.iter().map(|p| get(&addr, p).2).collect();
        let total: Duration = times.iter().sum();
        println!(
            "{label}: the sweep page's {} requests one after another {:.0} ms ({})",
            page.len(),
            total.as_secs_f64() * 1000.0,
            times
                .iter()
                .map(|t| format!("{:.1}", t.as_secs_f64() * 1000.0))
                .collect::<Vec<_>>()
                .join(" + ")
        );
        total
    };
    // While the server computes the default front as it starts.
    load("cold, front being computed");
    let (_, bytes, cold) = get(&addr, "/api/sweeps/big/front");
    println!(
        "front (safety × utility over seeds) ready {:.2} s after the server started ({bytes} bytes; waited {:.2} s)",
        started.elapsed().as_secs_f64(),
        cold.as_secs_f64()
    );
    let runs = 5;
    let loads: Vec<Duration> = (0..runs).map(|_| load("warm")).collect();
    println!(
        "sweep page, median of {runs}: {:.0} ms",
        median(loads).as_secs_f64() * 1000.0
    );
    for (label, path) in [
        ("the sweeps list", "/api/sweeps".to_string()),
        ("the kept front", "/api/sweeps/big/front".to_string()),
        (
            "table sorted by utility, largest first",
            "/api/sweeps/big/trials?sort=metric:utility&desc=true&limit=50".to_string(),
        ),
        (
            "table of failed trials (none)",
            "/api/sweeps/big/trials?status=failed&limit=50".to_string(),
        ),
        (
            "table page 10,000 (offset 500,000)",
            "/api/sweeps/big/trials?offset=500000&limit=50".to_string(),
        ),
        (
            "table filtered by --where (reads the sweep)",
            "/api/sweeps/big/trials?where=seed%3D7&limit=50".to_string(),
        ),
        ("one trial", format!("/api/trials/{}", first_trial(&db))),
    ] {
        let times: Vec<Duration> = (0..runs).map(|_| get(&addr, &path).2).collect();
        println!(
            "{label}: median {:.1} ms ({runs} runs)",
            median(times).as_secs_f64() * 1000.0
        );
    }
    let (_, _, other) = get(
        &addr,
        "/api/sweeps/big/front?objectives=unsafe_rate:min,utility:min",
    );
    println!(
        "a front on other objectives, first time: {:.2} s",
        other.as_secs_f64()
    );
}

/// Some trial's id, for the trial page.
fn first_trial(db: &Path) -> String {
    let runtime = tokio::runtime::Runtime::new().expect("runtime");
    runtime.block_on(async {
        let url = format!("sqlite://{}?mode=ro", db.display());
        let pool = sqlx::SqlitePool::connect(&url).await.expect("open");
        let id: String = sqlx::query_scalar("SELECT id FROM trials ORDER BY ordinal LIMIT 1")
            .fetch_one(&pool)
            .await
            .expect("a trial");
        pool.close().await;
        id
    })
}
