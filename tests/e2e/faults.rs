//! What sweep promises under faults, one test per way it was seen to break: trials that
//! leave processes behind or misbehave on their pipes, orchestrators that die, pause or hit
//! errors, outputs nobody reads, and databases that are not what they seem.

use std::collections::BTreeMap;
use std::io::Read;
use std::path::Path;
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use nix::sys::signal::{kill, Signal};
use nix::unistd::Pid;

use crate::support::{
    assert_code, attempts_started, block_on, overlapping_attempts, text, wait_for, Project,
    TIMED_SH,
};

fn signal(child: &std::process::Child, sig: Signal) {
    kill(Pid::from_raw(child.id() as i32), sig).unwrap();
}

/// Pauses a process and waits until every one of its threads has stopped. A SIGSTOP takes
/// effect only once one of its threads is scheduled to take it, so on a loaded machine the
/// process can still act (on a child's exit, say) for a while after `kill` returns.
fn pause(child: &std::process::Child) {
    signal(child, Signal::SIGSTOP);
    let tasks = format!("/proc/{}/task", child.id());
    let all_stopped = || {
        std::fs::read_dir(&tasks).is_ok_and(|entries| {
            entries.flatten().all(|task| {
                std::fs::read_to_string(task.path().join("stat")).is_ok_and(|stat| {
                    // The state follows the command name, which is in parentheses.
                    stat.rfind(')')
                        .and_then(|end| stat[end + 1..].split_whitespace().next())
                        .is_some_and(|state| state == "T" || state == "t")
                })
            })
        })
    };
    assert!(
        wait_for(Duration::from_secs(20), all_stopped),
        "{} did not stop",
        child.id()
    );
}

/// Every process whose environment carries `SWEEP_SWEEP=<sweep>`: what a sweep left running.
fn processes_of(sweep: &str) -> Vec<i64> {
    sweep_scheduler::processes_marked(&format!("SWEEP_SWEEP={sweep}"))
}

/// A project whose grid `name` runs `sh t.sh` (the given script); `rest` is the grid after
/// the command line: more [sweep] keys, then the axes.
fn with_trial(script: &str, name: &str, rest: &str) -> Project {
    let p = Project::new();
    p.write("t.sh", script);
    p.write(
        "g.toml",
        &format!("[sweep]\nname = \"{name}\"\ncommand = [\"sh\", \"t.sh\"]\n{rest}"),
    );
    p
}

/// A wrapper script that runs the real work as its child, as `python train.py` behind a shell
/// script does: the work appends `start ID` and, 10 s later (1 s on a retry), `done ID` to
/// `ledger`.
const WRAPPER_SH: &str = r#"#!/bin/sh
sh work.sh &
wait
"#;
const WORK_SH: &str = r#"#!/bin/sh
echo "start $SWEEP_TRIAL_ID" >> ledger
# The first attempt works long enough for any restart to find it still running.
if [ "$SWEEP_ATTEMPT" = 1 ]; then sleep "${WORK:-10}"; else sleep 1; fi
echo "done $SWEEP_TRIAL_ID" >> ledger
echo "{\"event\":\"result\",\"metrics\":{\"attempt\":$SWEEP_ATTEMPT}}"
"#;

fn count(lines: &[String], word: &str) -> BTreeMap<String, usize> {
    let mut counts = BTreeMap::new();
    for line in lines {
        if let Some(id) = line.strip_prefix(word) {
            *counts.entry(id.trim().to_string()).or_default() += 1;
        }
    }
    counts
}

#[test]
fn a_restart_kills_what_a_dead_orchestrators_trials_left_running() {
    let p = Project::new();
    p.write("wrapper.sh", WRAPPER_SH);
    p.write("work.sh", WORK_SH);
    p.write(
        "g.toml",
        "[sweep]\nname = \"orphans\"\ncommand = [\"sh\", \"wrapper.sh\"]\nparallel = 2\n[grid]\nx = [1, 2]\n",
    );
    let mut first = p.sweep(&["run", "g.toml"]).spawn().unwrap();
    assert!(wait_for(Duration::from_secs(20), || p
        .lines("ledger")
        .len()
        >= 2));
    // Everything of sweep's own dies at once (as when the OOM killer or a `kill -9` of a
    // whole job takes it): the orchestrator and the guard that watches its attempts.
    // (Stopped first, so that it cannot start another guard either.)
    let guard = guard_of(&first);
    pause(&first);
    kill(Pid::from_raw(guard as i32), Signal::SIGKILL).unwrap();
    signal(&first, Signal::SIGKILL);
    first.wait().unwrap();
    let again = p.run(&["run", "g.toml"]);
    assert_code(&again, 0);
    // The first run's work was killed when the second took its trials back: each trial's
    // work finished exactly once, and nothing of the sweep is left running.
    std::thread::sleep(Duration::from_secs(1));
    let ledger = p.lines("ledger");
    let done = count(&ledger, "done ");
    assert_eq!(done.len(), 2, "{ledger:?}");
    assert!(done.values().all(|n| *n == 1), "work ran twice: {ledger:?}");
    assert_eq!(processes_of("orphans"), Vec::<i64>::new());
    assert!(
        text(&again.stderr).contains("killed leftover process group"),
        "{}",
        text(&again.stderr)
    );
}

/// The guards (`sweep guard ...`) running on this machine.
fn guards() -> Vec<i64> {
    std::fs::read_dir("/proc")
        .unwrap()
        .filter_map(|e| e.ok()?.file_name().to_str()?.parse::<i64>().ok())
        .filter(|pid| {
            std::fs::read(format!("/proc/{pid}/cmdline"))
                .is_ok_and(|c| c.split(|b| *b == 0).nth(1) == Some(b"guard".as_slice()))
        })
        .collect()
}

/// The fields of `/proc/PID/stat` after the command name (which may hold spaces and
/// parentheses itself): state, parent's pid, process group, ...; empty for a process gone.
fn stat_fields(pid: i64) -> Vec<String> {
    let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).unwrap_or_default();
    let after_name = stat.rsplit_once(')').map_or("", |(_, rest)| rest);
    after_name.split_whitespace().map(str::to_string).collect()
}

/// The guard that watches the attempts of the `sweep run` `orchestrator`.
fn guard_of(orchestrator: &std::process::Child) -> i64 {
    let parent = orchestrator.id().to_string();
    let guards: Vec<i64> = guards()
        .into_iter()
        .filter(|pid| stat_fields(*pid).get(1) == Some(&parent))
        .collect();
    assert_eq!(guards.len(), 1, "{guards:?}");
    guards[0]
}

#[test]
fn a_trials_whole_process_group_dies_with_the_orchestrator() {
    let p = Project::new();
    p.write("wrapper.sh", WRAPPER_SH);
    // Work that ignores SIGTERM: only the kill after the grace period stops it.
    p.write(
        "work.sh",
        &WORK_SH.replacen("#!/bin/sh\n", "#!/bin/sh\ntrap '' TERM\n", 1),
    );
    p.write(
        "g.toml",
        "[sweep]\nname = \"dies\"\ncommand = [\"sh\", \"wrapper.sh\"]\nparallel = 2\ngrace = \"1s\"\n[grid]\nx = [1, 2]\n",
    );
    let mut first = p
        .sweep(&["run", "g.toml"])
        .env("WORK", "30")
        .spawn()
        .unwrap();
    assert!(wait_for(Duration::from_secs(20), || p
        .lines("ledger")
        .len()
        >= 2));
    assert!(!processes_of("dies").is_empty());
    signal(&first, Signal::SIGKILL);
    first.wait().unwrap();
    // No restart: the guards take the trials' groups down within the grace period.
    assert!(
        wait_for(Duration::from_secs(5), || processes_of("dies").is_empty()),
        "left running: {:?}",
        processes_of("dies")
    );
}

#[test]
fn an_error_mid_run_hands_back_the_claimed_trials() {
    let p = with_trial(
        "#!/bin/sh\necho '{\"event\":\"result\",\"metrics\":{\"m\":1}}'\n",
        "stranded",
        "parallel = 2\n[grid]\nx = [1, 2, 3]\n",
    );
    // The sweep's trial directory cannot be made (a file is in its way): the run fails after
    // it has claimed a trial.
    std::fs::create_dir_all(p.path().join("sweep-trials")).unwrap();
    p.write("sweep-trials/stranded", "in the way");
    let failed = p.run(&["run", "g.toml"]);
    assert_code(&failed, 2);
    let err = text(&failed.stderr);
    assert!(err.contains("cannot create the trial directory"), "{err}");
    assert!(
        p.sql("SELECT id FROM trials WHERE status = 'running'")
            .is_empty(),
        "claimed trials were left running"
    );
    std::fs::remove_file(p.path().join("sweep-trials/stranded")).unwrap();
    let out = p.run(&["run", "g.toml"]);
    assert_code(&out, 0);
    let rows = p.export();
    assert_eq!(rows.len(), 3);
    assert!(rows.iter().all(|r| r["status"] == "completed"), "{rows:?}");
}

#[test]
fn bytes_that_are_not_utf8_on_stdout_are_logged_not_fatal() {
    let p = with_trial(
        "#!/bin/sh\nprintf 'caf\\351 \\377\\n'\nhead -c 3000000 /dev/zero | tr '\\0' 'x'\necho\necho '{\"event\":\"result\",\"metrics\":{\"m\":1}}'\n",
        "bytes",
        "max_attempts = 1\n[grid]\nx = [1]\n",
    );
    let out = p.run(&["run", "g.toml"]);
    assert_code(&out, 0);
    let rows = p.export();
    assert_eq!(
        (rows[0]["status"].as_str(), rows[0]["metric_m"].as_str()),
        ("completed", "1.0")
    );
    let log = std::fs::read(
        p.path()
            .join("sweep-trials/bytes")
            .join(&rows[0]["trial_id"])
            .join("logs/attempt-1.stdout.log"),
    )
    .unwrap();
    assert!(
        log.starts_with(b"caf\xe9 \xff\n"),
        "the bytes are kept as written"
    );
    assert!(log.len() > 3_000_000, "a 3 MB line is logged whole");
}

#[test]
fn a_detached_grandchild_holding_stdout_does_not_hang_the_sweep() {
    let p = with_trial(
        // The result only once the daemon has left the trial's group (it writes its pid
        // after `setsid`), so the group's kill at the trial's end cannot catch it first.
        "#!/bin/sh\nsetsid sh -c 'echo $$ > daemon.pid; exec sleep 60' &\n\
         while [ ! -s daemon.pid ]; do sleep 0.05; done\n\
         echo '{\"event\":\"result\",\"metrics\":{\"m\":1}}'\n",
        "detached",
        "[grid]\nx = [1]\n",
    );
    let start = Instant::now();
    let out = p.run(&["run", "g.toml"]);
    let took = start.elapsed();
    // A run that ends normally says goodbye to its guard, which leaves at once and takes
    // nothing down, not even a process of the trial's that left its group.
    std::thread::sleep(Duration::from_millis(500));
    let daemon = std::fs::read_to_string(p.path().join("daemon.pid"))
        .ok()
        .and_then(|pid| pid.trim().parse::<i32>().ok());
    // Not a zombie either (nobody may reap it at once where it was reparented).
    let alive = daemon.is_some_and(|pid| {
        let state = stat_fields(pid as i64).first().cloned();
        state.is_some_and(|state| state != "Z")
    });
    let left: Vec<i64> = guards()
        .into_iter()
        .filter(|pid| {
            std::fs::read_link(format!("/proc/{pid}/cwd")).is_ok_and(|cwd| cwd == p.path())
        })
        .collect();
    if let Some(pid) = daemon {
        let _ = kill(Pid::from_raw(pid), Signal::SIGKILL);
    }
    assert_code(&out, 0);
    assert!(took < Duration::from_secs(20), "took {took:?}");
    assert_eq!(p.export()[0]["status"], "completed");
    assert!(
        alive,
        "the guard killed a process that had left the trial's group"
    );
    assert_eq!(left, Vec::<i64>::new(), "a guard outlived its run");
}

#[test]
fn a_paused_runners_late_result_is_not_recorded() {
    let p = with_trial(
        "#!/bin/sh\necho \"run $SWEEP_TRIAL_ID $SWEEP_ATTEMPT\" >> ledger\nsleep 1\necho \"{\\\"event\\\":\\\"result\\\",\\\"metrics\\\":{\\\"attempt\\\":$SWEEP_ATTEMPT}}\"\n",
        "paused",
        "[grid]\nx = [1]\n",
    );
    // Runner A starts the trial and is paused before the trial prints its result.
    let mut a = p
        .sweep(&["run", "g.toml"])
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    assert!(wait_for(Duration::from_secs(20), || !p
        .lines("ledger")
        .is_empty()));
    pause(&a);
    // Runner B, started once A's last heartbeat is older than B's lease, presumes A dead and
    // runs the trial again; then A wakes up with its attempt's result.
    std::thread::sleep(Duration::from_secs(3));
    let b = p.run(&["run", "g.toml", "--lease", "2s"]);
    assert_code(&b, 0);
    signal(&a, Signal::SIGCONT);
    let mut a_err = String::new();
    a.stderr.take().unwrap().read_to_string(&mut a_err).unwrap();
    let status = a.wait().unwrap();
    assert!(!a_err.contains("panicked"), "{a_err}");
    assert!(status.code().is_some(), "{a_err}");
    let rows = p.export();
    assert_eq!(rows[0]["status"], "completed");
    assert_eq!(
        rows[0]["metric_attempt"], "2.0",
        "the result is the attempt that owns the trial, not the paused one's:\n{a_err}"
    );
}

#[test]
fn a_sweep_whose_output_pipe_closed_still_stops_on_ctrl_c() {
    let p = with_trial(
        "#!/bin/sh\necho start >> ledger\nsleep 60\necho '{\"event\":\"result\",\"metrics\":{\"m\":1}}'\n",
        "deadpipe",
        "parallel = 2\ngrace = \"1s\"\n[grid]\nx = [1, 2]\n",
    );
    let mut child = p
        .sweep(&["run", "g.toml"])
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    // The program that captured its output dies: nobody reads either pipe any more.
    drop(child.stdout.take());
    drop(child.stderr.take());
    assert!(wait_for(Duration::from_secs(20), || p
        .lines("ledger")
        .len()
        >= 2));
    let sent = Instant::now();
    signal(&child, Signal::SIGINT);
    let stopped = wait_for(Duration::from_secs(15), || {
        child.try_wait().unwrap().is_some()
    });
    if !stopped {
        signal(&child, Signal::SIGKILL);
    }
    assert!(stopped, "no stop {:?} after Ctrl-C", sent.elapsed());
    assert_eq!(child.wait().unwrap().code(), Some(130));
    let rows = p.export();
    assert!(
        rows.iter().all(|r| r["status"] == "interrupted"),
        "{rows:?}"
    );
}

#[test]
fn output_into_a_closed_pipe_exits_quietly() {
    let p = Project::new();
    register(&p, "many", 3000, ".");
    for (args, first) in [
        ("status many", "sweep many (3000"),
        ("export --csv -", "trial_id,"),
        ("export --format json --output -", "["),
    ] {
        let out = Command::new("bash")
            .arg("-c")
            .arg(format!(
                "set -o pipefail; '{}' --db '{}' {args} | head -c 20",
                env!("CARGO_BIN_EXE_sweep"),
                p.location()
            ))
            .output()
            .unwrap();
        let err = text(&out.stderr);
        assert!(!err.contains("panicked"), "{args}: {err}");
        assert_eq!(out.status.code(), Some(0), "{args}: {err}");
        assert!(text(&out.stdout).starts_with(first), "{args}");
    }
}

/// Registers a sweep of `n` pending trials (`x` = 1..=n) whose working directory is `workdir`,
/// through the store, without running anything.
fn register(p: &Project, name: &str, n: usize, workdir: &str) {
    let grid = format!(
        "[sweep]\nname = \"{name}\"\ncommand = [\"sh\", \"t.sh\"]\n[grid]\nx = {{ lin = [1, {n}], num = {n} }}\n"
    );
    p.write("g.toml", &grid);
    block_on(async {
        let store = sweep_store::Store::open(p.location()).await.unwrap();
        let grid = sweep_core::Grid::parse(&p.path().join("g.toml"), &grid).unwrap();
        let sweep = store.register_sweep(&grid, workdir).await.unwrap();
        store
            .register_trials(&sweep, &sweep_core::expand(&grid).trials)
            .await
            .unwrap();
        store.close().await;
    });
}

#[test]
fn a_vanished_working_directory_is_an_error_that_spends_no_attempts() {
    let p = Project::new();
    let gone = p.path().join("gone");
    register(&p, "vanished", 2, gone.to_str().unwrap());
    let out = p.run(&["resume", "vanished"]);
    assert_code(&out, 2);
    let err = text(&out.stderr);
    assert!(
        err.contains("working directory") && err.contains(gone.to_str().unwrap()),
        "{err}"
    );
    // And when it vanishes while the sweep runs: the trial that removed it completes, the
    // next is not started, and keeps its attempts.
    let p = Project::new();
    let work = p.path().join("work");
    std::fs::create_dir(&work).unwrap();
    std::fs::write(
        work.join("t.sh"),
        "#!/bin/sh\nrm -rf \"$PWD\"\necho '{\"event\":\"result\",\"metrics\":{\"m\":1}}'\n",
    )
    .unwrap();
    std::fs::write(
        work.join("g.toml"),
        "[sweep]\nname = \"v2\"\ncommand = [\"sh\", \"t.sh\"]\n[grid]\nx = [1, 2]\n",
    )
    .unwrap();
    let out = p
        .sweep(&["run", "g.toml"])
        .current_dir(&work)
        .output()
        .unwrap();
    assert_code(&out, 2);
    let attempts = p.sql("SELECT status || ':' || attempts FROM trials ORDER BY ordinal");
    assert_eq!(attempts, ["completed:1", "pending:0"]);
}

#[test]
fn databases_that_are_not_sweeps_are_refused_untouched() {
    let p = Project::new();
    p.write(
        "g.toml",
        "[sweep]\nname = \"x\"\ncommand = [\"true\"]\n[grid]\nx = [1]\n",
    );
    // Somebody else's SQLite database.
    let foreign = p.path().join("people.db");
    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .unwrap();
    let tables = |path: &Path| {
        runtime.block_on(async {
            let url = format!("sqlite://{}?mode=rwc", path.display());
            let pool = sqlx::SqlitePool::connect(&url).await.unwrap();
            sqlx::query("CREATE TABLE IF NOT EXISTS people (name TEXT)")
                .execute(&pool)
                .await
                .unwrap();
            let names: Vec<String> =
                sqlx::query_scalar("SELECT name FROM sqlite_master WHERE type = 'table'")
                    .fetch_all(&pool)
                    .await
                    .unwrap();
            pool.close().await;
            names
        })
    };
    tables(&foreign);
    for args in [vec!["run", "g.toml"], vec!["status"]] {
        let out = sweep_at(&p, foreign.to_str().unwrap(), &args);
        assert_code(&out, 2);
        let err = text(&out.stderr);
        assert!(err.contains("is not a sweep database"), "{err}");
        assert!(!err.contains("newer sweep"), "{err}");
    }
    assert_eq!(tables(&foreign), ["people"], "no tables were added");
    // A file that is not SQLite at all.
    let junk = p.write("junk.db", &"not a database at all\n".repeat(200));
    let out = sweep_at(&p, junk.to_str().unwrap(), &["status"]);
    assert_code(&out, 2);
    let err = text(&out.stderr);
    assert!(err.contains("is not a SQLite database"), "{err}");
    assert_eq!(
        std::fs::read_to_string(&junk).unwrap(),
        "not a database at all\n".repeat(200)
    );
}

#[test]
fn a_read_only_database_can_still_be_read() {
    let p = with_trial(
        "#!/bin/sh\necho '{\"event\":\"result\",\"metrics\":{\"m\":1}}'\n",
        "ro",
        "[grid]\nx = [1, 2]\n",
    );
    if p.on_postgres() {
        return; // file permissions: SQLite's concern only
    }
    assert_code(&p.run(&["run", "g.toml"]), 0);
    use std::os::unix::fs::PermissionsExt;
    let mode = |path: &Path, bits: u32| {
        std::fs::set_permissions(path, std::fs::Permissions::from_mode(bits)).unwrap()
    };
    mode(&p.db(), 0o444);
    mode(p.path(), 0o555);
    // Root may write anything: read as an unprivileged user then.
    let root = std::os::unix::fs::MetadataExt::uid(&std::fs::metadata("/proc/self").unwrap()) == 0;
    // The unprivileged user may not reach the build directory: give it its own copy.
    let bin_dir = tempfile::tempdir().unwrap();
    mode(bin_dir.path(), 0o755);
    let bin = bin_dir.path().join("sweep");
    std::fs::copy(env!("CARGO_BIN_EXE_sweep"), &bin).unwrap();
    let as_reader = |args: &[&str]| {
        let mut cmd = if root {
            let mut c = Command::new("setpriv");
            c.args(["--reuid=65534", "--regid=65534", "--clear-groups"])
                .arg(&bin);
            c
        } else {
            Command::new(&bin)
        };
        cmd.current_dir(p.path())
            .arg("--db")
            .arg(p.db())
            .args(args)
            .output()
            .unwrap()
    };
    let status = as_reader(&["status", "ro"]);
    let export = as_reader(&["export", "--csv", "-"]);
    let run = as_reader(&["run", "g.toml"]);
    mode(p.path(), 0o755);
    mode(&p.db(), 0o644);
    assert_code(&status, 0);
    assert!(text(&status.stdout).contains("2 completed"));
    assert_code(&export, 0);
    assert_eq!(text(&export.stdout).lines().count(), 3);
    assert_code(&run, 2);
    assert!(
        text(&run.stderr).contains("read-only"),
        "{}",
        text(&run.stderr)
    );
}

#[test]
fn database_errors_say_their_cause_once() {
    let p = Project::new();
    p.write(
        "g.toml",
        "[sweep]\nname = \"x\"\ncommand = [\"true\"]\n[grid]\nx = [1]\n",
    );
    let out = sweep_at(&p, "no/such/dir/x.db", &["run", "g.toml"]);
    assert_code(&out, 2);
    let err = text(&out.stderr);
    assert_eq!(
        err.matches("unable to open database file").count(),
        1,
        "{err}"
    );
    assert_eq!(err.matches("no/such/dir/x.db").count(), 1, "{err}");
    let out = sweep_at(&p, "", &["status"]);
    assert_code(&out, 2);
    assert!(
        text(&out.stderr).contains("the database location is empty"),
        "{}",
        text(&out.stderr)
    );
    // Each location below is refused with what is wrong with it, once, and nothing is made.
    let empty = p.write("empty.db", "");
    let cases = [
        ("/dev/null", "run", "/dev/null is not a regular file"),
        ("/dev/null", "status", "/dev/null is not a regular file"),
        (empty.to_str().unwrap(), "status", "holds no sweeps yet"),
        (
            "postgresql:/me@db.example/sweeps",
            "status",
            "starts with `postgresql://`",
        ),
        (
            "postgres:me@db.example/sweeps",
            "status",
            "starts with `postgres://`",
        ),
        (
            "postgres://me@db.example:port/sweeps",
            "status",
            "the URL is malformed: invalid port number",
        ),
        // A server that refuses: the connection's own reason, not a pool's time-out.
        (
            "postgres://me@127.0.0.1:1/sweeps",
            "status",
            "Connection refused",
        ),
    ];
    for (db, command, needle) in cases {
        let args: &[&str] = if command == "run" {
            &["run", "g.toml"]
        } else {
            &["status"]
        };
        let out = sweep_at(&p, db, args);
        assert_code(&out, 2);
        let err = text(&out.stderr);
        assert!(err.contains(needle), "{db}: {err}");
        assert!(!err.contains("error with configuration"), "{db}: {err}");
        assert!(!err.contains("older sweep"), "{db}: {err}");
        assert!(!err.contains("pool timed out"), "{db}: {err}");
    }
    assert!(!p.path().join("postgresql:").exists());
    // A sweep database one of whose tables was dropped by hand.
    let damaged = p.path().join("damaged.db");
    sweep_at(&p, damaged.to_str().unwrap(), &["run", "g.toml"]);
    assert!(damaged.is_file());
    block_on(async {
        let url = format!("sqlite://{}", damaged.display());
        let pool = sqlx::SqlitePool::connect(&url).await.unwrap();
        sqlx::query("DROP TABLE results")
            .execute(&pool)
            .await
            .unwrap();
        pool.close().await;
    });
    let out = sweep_at(&p, damaged.to_str().unwrap(), &["export", "--csv", "-"]);
    assert_code(&out, 2);
    let err = text(&out.stderr);
    assert!(err.contains("missing one of sweep's tables"), "{err}");
}

/// Runs `sweep --db DB ARGS` in the project directory.
fn sweep_at(p: &Project, db: &str, args: &[&str]) -> std::process::Output {
    Command::new(env!("CARGO_BIN_EXE_sweep"))
        .current_dir(p.path())
        .env_remove("SWEEP_DB")
        .args(["--db", db])
        .args(args)
        .output()
        .unwrap()
}

#[test]
fn a_trial_whose_claim_reply_was_lost_still_runs_in_the_same_run() {
    // What a claim leaves when its commit goes through but the reply is lost and the claim is
    // retried (a dropped database connection): a trial held by the runner that no attempt
    // runs. The first trial makes one, as that claim would have.
    let p = with_trial(
        "echo \"$SWEEP_RUNNER\" >> runner.log\nsleep 1\n\
         echo '{\"event\":\"result\",\"metrics\":{\"x\":1}}'\necho \"$SWEEP_TRIAL_ID\" >> runs.log\n",
        "lost-claim",
        "[grid]\nx = [1, 2, 3]\n",
    );
    let run = p
        .sweep(&["run", "g.toml"])
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    assert!(wait_for(Duration::from_secs(30), || !p
        .lines("runner.log")
        .is_empty()));
    let runner = &p.lines("runner.log")[0];
    let stray = p.sql_write(&format!(
        "UPDATE trials SET status = 'running', owner = '{runner}', attempts = attempts + 1 \
         WHERE id = (SELECT id FROM trials WHERE status = 'pending' ORDER BY ordinal DESC LIMIT 1) \
         RETURNING id"
    ));
    assert_eq!(stray.len(), 1);
    let out = run.wait_with_output().unwrap();
    assert_code(&out, 0);
    assert!(
        text(&out.stderr).contains("the claim's reply was lost"),
        "{}",
        text(&out.stderr)
    );
    let runs = p.lines("runs.log");
    assert_eq!(runs.len(), 3, "{runs:?}");
    assert!(runs.contains(&stray[0]));
    assert!(p.export().iter().all(|r| r["status"] == "completed"));
}

#[test]
fn a_runner_paused_past_its_lease_wakes_up_without_breaking_exactly_once() {
    // Every attempt is its trial's only chance: a spurious failure would show as a failed
    // trial. Both runners' slots stay full, so the trials taken from A wait for A itself.
    let p = with_trial(
        TIMED_SH,
        "wakes",
        "parallel = 2\nmax_attempts = 1\ngrace = \"1s\"\n[grid]\nx = { lin = [1, 24], num = 24 }\n",
    );
    let runner = || {
        p.sweep(&["run", "g.toml", "--lease", "3s"])
            .stdout(Stdio::null())
            .stderr(Stdio::piped())
            .spawn()
            .unwrap()
    };
    let mut a = runner();
    let mut b = runner();
    let mut pauses = 0;
    while pauses < 3 {
        let started = attempts_started(&p.lines("ledger"));
        // A holds trials when it is paused, some of them just claimed.
        let more = || attempts_started(&p.lines("ledger")) >= started + 3;
        assert!(wait_for(Duration::from_secs(30), more));
        if a.try_wait().unwrap().is_some() || b.try_wait().unwrap().is_some() {
            break;
        }
        pause(&a);
        // Past A's lease: B takes A's trials back, kills their work and runs them again.
        std::thread::sleep(Duration::from_secs(6));
        signal(&a, Signal::SIGCONT);
        pauses += 1;
    }
    let mut a_err = String::new();
    a.stderr.take().unwrap().read_to_string(&mut a_err).unwrap();
    let (a_status, b_status) = (a.wait().unwrap(), b.wait().unwrap());
    assert!(pauses >= 2, "the sweep ended after {pauses} pause(s)");
    assert!(!a_err.contains("panicked"), "{a_err}");
    assert!(a_status.code().is_some() && b_status.code().is_some());
    // What was interrupted by the takeovers and not yet rerun, a last run finishes.
    assert_code(&p.run(&["run", "g.toml"]), 0);

    let rows = p.export();
    let not_completed: Vec<_> = rows
        .iter()
        .filter(|r| r["status"] != "completed")
        .map(|r| format!("{} {}", r["trial_id"], r["status"]))
        .collect();
    assert!(
        not_completed.is_empty(),
        "trials without a fair attempt: {not_completed:?}\nrunner A said:\n{a_err}"
    );
    // No attempt ended as failed: the only ends are completed, or lost to a takeover.
    let unfair = p.sql(
        "SELECT trial_id || ' attempt ' || attempt || ': ' || COALESCE(outcome, 'running') \
         || ' ' || COALESCE(reason, '') FROM attempts \
         WHERE outcome IS NULL OR outcome NOT IN ('completed', 'lost', 'interrupted')",
    );
    assert!(unfair.is_empty(), "{unfair:#?}\nrunner A said:\n{a_err}");
    let overlaps = overlapping_attempts(&p.lines("ledger"));
    assert!(
        overlaps.is_empty(),
        "two attempts of a trial worked at once: {overlaps:?}"
    );
    // Every result recorded is the work of the attempt that recorded it, and finished.
    for row in &rows {
        let attempt = row["metric_attempt"].trim_end_matches(".0");
        let done = format!("done {} {attempt} ", row["trial_id"]);
        assert!(
            p.lines("ledger").iter().any(|l| l.starts_with(&done)),
            "{} recorded attempt {attempt}, whose work never finished",
            row["trial_id"]
        );
    }
}
