//! Helpers shared by the end-to-end tests.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::process::{Command, Output};
use std::time::{Duration, Instant};

/// A temporary project directory with a database: a SQLite file in it, or, when
/// `SWEEP_TEST_POSTGRES` names a server, a fresh database of its own on that server.
pub struct Project {
    pub dir: tempfile::TempDir,
    location: String,
}

/// The PostgreSQL server the suite runs against instead of SQLite files, if any.
pub fn postgres_server() -> Option<String> {
    std::env::var(sweep_store::TEST_SERVER_ENV)
        .ok()
        .filter(|s| !s.is_empty())
}

/// Runs a future to completion on a runtime of its own (the tests themselves are sync).
pub fn block_on<F: std::future::Future>(future: F) -> F::Output {
    tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .expect("tokio runtime")
        .block_on(future)
}

impl Project {
    pub fn new() -> Project {
        let dir = tempfile::tempdir().expect("temp dir");
        let location = match postgres_server() {
            Some(server) => block_on(sweep_store::fresh_postgres_database(&server))
                .expect("create a test database"),
            None => dir.path().join("sweep.db").display().to_string(),
        };
        Project { dir, location }
    }

    pub fn path(&self) -> &Path {
        self.dir.path()
    }

    /// The SQLite file of a project on SQLite (on PostgreSQL it never exists).
    pub fn db(&self) -> PathBuf {
        self.path().join("sweep.db")
    }

    /// What `--db` gets: the SQLite file, or the PostgreSQL database's URL.
    pub fn location(&self) -> &str {
        &self.location
    }

    /// Whether this project's database is on PostgreSQL.
    pub fn on_postgres(&self) -> bool {
        sweep_store::is_postgres(&self.location)
    }

    /// Writes a file into the project.
    pub fn write(&self, name: &str, text: &str) -> PathBuf {
        let path = self.path().join(name);
        std::fs::write(&path, text).expect("write file");
        path
    }

    /// A `sweep` command running in the project directory against its database.
    pub fn sweep(&self, args: &[&str]) -> Command {
        let mut cmd = Command::new(env!("CARGO_BIN_EXE_sweep"));
        cmd.current_dir(self.path())
            .env_remove("SWEEP_DB")
            .env_remove("CUDA_VISIBLE_DEVICES")
            .env("RUST_LOG", "info")
            .arg("--db")
            .arg(&self.location)
            .args(args);
        cmd
    }

    /// Runs `sweep` to completion.
    pub fn run(&self, args: &[&str]) -> Output {
        self.sweep(args).output().expect("run sweep")
    }

    /// The CSV export as records of (column -> value).
    pub fn export(&self) -> Vec<std::collections::BTreeMap<String, String>> {
        let out = self.run(&["export", "--csv", "-"]);
        assert!(out.status.success(), "export failed: {}", text(&out.stderr));
        let mut reader = csv::Reader::from_reader(out.stdout.as_slice());
        let headers = reader.headers().expect("headers").clone();
        reader
            .records()
            .map(|r| {
                let r = r.expect("record");
                headers
                    .iter()
                    .zip(r.iter())
                    .map(|(h, v)| (h.to_string(), v.to_string()))
                    .collect()
            })
            .collect()
    }

    /// The first column of a query on the project's database, as text.
    pub fn sql(&self, sql: &str) -> Vec<String> {
        self.query(sql, "ro")
    }

    /// The same for a statement that writes (`UPDATE … RETURNING`), as a fault would.
    pub fn sql_write(&self, sql: &str) -> Vec<String> {
        self.query(sql, "rw")
    }

    /// The first column of `sql`, on SQLite opened in `mode`.
    fn query(&self, sql: &str, mode: &str) -> Vec<String> {
        /// One text for either pool type.
        macro_rules! first_column {
            ($pool:expr) => {{
                let pool = $pool.await.expect("open database");
                let rows = sqlx::query_scalar(sql)
                    .fetch_all(&pool)
                    .await
                    .expect("query");
                pool.close().await;
                rows
            }};
        }
        block_on(async {
            if self.on_postgres() {
                first_column!(sqlx::PgPool::connect(&self.location))
            } else {
                let url = format!("sqlite://{}?mode={mode}", self.location);
                first_column!(sqlx::SqlitePool::connect(&url))
            }
        })
    }

    /// Lines of a file the trials append to (empty if absent).
    pub fn lines(&self, name: &str) -> Vec<String> {
        std::fs::read_to_string(self.path().join(name))
            .unwrap_or_default()
            .lines()
            .map(String::from)
            .collect()
    }
}

/// Output bytes as text.
pub fn text(bytes: &[u8]) -> String {
    String::from_utf8_lossy(bytes).into_owned()
}

/// Asserts a finished command's exit code, showing its output otherwise.
pub fn assert_code(out: &Output, code: i32) {
    assert_eq!(
        out.status.code(),
        Some(code),
        "stdout:\n{}\nstderr:\n{}",
        text(&out.stdout),
        text(&out.stderr)
    );
}

/// Polls `check` until it holds or `limit` passes.
pub fn wait_for(limit: Duration, mut check: impl FnMut() -> bool) -> bool {
    let start = Instant::now();
    while start.elapsed() < limit {
        if check() {
            return true;
        }
        std::thread::sleep(Duration::from_millis(50));
    }
    false
}

/// A trial script: sleeps `$SLEEP` seconds (default 0), appends its id to `runs.log`, then
/// reports metrics that are known functions of its parameters (`score = lr * 10 + seed`).
pub const TRIAL_SH: &str = r#"#!/bin/sh
echo "start $SWEEP_TRIAL_ID $SWEEP_ATTEMPT $SWEEP_RESUME $CUDA_VISIBLE_DEVICES" >> "$LOG_DIR/starts.log"
echo "{\"event\":\"metric\",\"step\":1,\"name\":\"loss\",\"value\":1.5}"
sleep "${SLEEP:-0}"
echo "{\"event\":\"metric\",\"step\":2,\"name\":\"loss\",\"value\":0.5}"
echo "{\"event\":\"result\",\"metrics\":{\"score\":$(awk "BEGIN{print $1*10+$2}")}}"
echo "$SWEEP_TRIAL_ID" >> "$LOG_DIR/runs.log"
"#;

/// Work that records when each attempt of each trial starts, is still alive (every half
/// second) and ends (ns), so attempts working at once show in the ledger, killed ones too. It
/// outlasts a 3 s lease, so a takeover kills it mid-work.
pub const TIMED_SH: &str = r#"#!/bin/sh
now() { date +%s%N; }
echo "start $SWEEP_TRIAL_ID $SWEEP_ATTEMPT $(now)" >> ledger
for i in 1 2 3 4 5 6 7 8; do
    sleep 0.5
    echo "alive $SWEEP_TRIAL_ID $SWEEP_ATTEMPT $(now)" >> ledger
done
echo "done $SWEEP_TRIAL_ID $SWEEP_ATTEMPT $(now)" >> ledger
echo "{\"event\":\"result\",\"metrics\":{\"attempt\":$SWEEP_ATTEMPT}}"
"#;

/// Pairs of attempts of one trial that worked at the same time, from a [`TIMED_SH`] ledger:
/// each attempt lived from its start to its last line.
pub fn overlapping_attempts(ledger: &[String]) -> Vec<String> {
    let mut spans: BTreeMap<(String, u32), (u128, u128)> = BTreeMap::new();
    for line in ledger {
        let f: Vec<&str> = line.split(' ').collect();
        let [word, id, attempt, t] = f[..] else {
            continue;
        };
        let (Ok(attempt), Ok(t)) = (attempt.parse(), t.parse::<u128>()) else {
            continue;
        };
        let span = spans.entry((id.to_string(), attempt)).or_insert((t, t));
        if word == "start" {
            span.0 = t;
        }
        span.1 = span.1.max(t);
    }
    let mut overlaps = Vec::new();
    for ((id, a), (s1, e1)) in &spans {
        for ((id2, b), (s2, e2)) in &spans {
            if id == id2 && a < b && s1 < e2 && s2 < e1 {
                overlaps.push(format!(
                    "{id}: attempts {a} and {b} ({} ms)",
                    (e1.min(e2) - s2.max(s1)) / 1_000_000
                ));
            }
        }
    }
    overlaps
}

/// How many attempts a [`TIMED_SH`] ledger says have started.
pub fn attempts_started(ledger: &[String]) -> usize {
    ledger.iter().filter(|l| l.starts_with("start ")).count()
}
