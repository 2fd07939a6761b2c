//! The chaos suite: a long sweep of trials that are shell wrappers around a child doing the
//! work (as `python train.py` behind a script is), run by one or two concurrent `sweep run`
//! processes that are `kill -9`ed at random moments and paused past their lease, then
//! finished by a last run. The work writes a ledger; the ledger and the database are then
//! compared:
//!
//! - results lost: a trial not completed at the end, or completed with a result that no
//!   finished piece of work produced;
//! - work run twice outside the at-least-once window: two attempts of one trial working at the
//!   same time, or work finishing after the trial's result was recorded (the window, which is
//!   allowed, is an attempt that finished its work but whose result was never recorded);
//! - orphans: processes of the sweep still running a second after the last run ended.
//!
//! A second scenario pauses runners only, never kills them, with `max_attempts = 1`, so an
//! attempt recorded as failed when it was really taken over shows: two runners share a sweep
//! of 4 s trials (longer than the 3 s lease, so a takeover kills work mid-way), and one of them
//! is stopped for 6 s again and again, then let go on. Beside the counts above it reports
//! spurious failures: attempts or trials that ended `failed` though every piece of work
//! succeeds.
//!
//! `cargo bench -p sweep --bench chaos` (CHAOS_KILLS, CHAOS_TRIALS, CHAOS_SEED, CHAOS_PAUSES
//! to vary; CHAOS_PAUSES=0 skips the second scenario); figures in docs/reliability.md. Exits
//! 1 when any count is not zero.

use std::collections::BTreeMap;
use std::process::{Child, Stdio};
use std::time::{Duration, Instant};

use nix::sys::signal::{kill, Signal};
use nix::unistd::Pid;

/// The end-to-end tests' project helpers: a temp directory, the real binary, its exports.
#[expect(dead_code, reason = "the benchmark uses a few of the helpers")]
#[path = "../../../tests/e2e/support.rs"]
mod support;

const WRAPPER: &str = "#!/bin/sh\nsh work.sh \"$1\" &\nwait\n";

/// Work of a trial-specific length; the ledger records its start and end with the attempt.
const WORK: &str = r#"#!/bin/sh
now() { date +%s%N; }
echo "start $SWEEP_TRIAL_ID $SWEEP_ATTEMPT $(now)" >> ledger
sleep "$1"
echo "done $SWEEP_TRIAL_ID $SWEEP_ATTEMPT $(now)" >> ledger
echo "{\"event\":\"result\",\"metrics\":{\"attempt\":$SWEEP_ATTEMPT}}"
"#;

/// A small deterministic generator (xorshift64*), so a run can be repeated by its seed.
struct Rng(u64);

impl Rng {
    fn next(&mut self) -> u64 {
        self.0 ^= self.0 >> 12;
        self.0 ^= self.0 << 25;
        self.0 ^= self.0 >> 27;
        self.0.wrapping_mul(0x2545_F491_4F6C_DD1D)
    }

    /// Uniform in [lo, hi).
    fn between(&mut self, lo: f64, hi: f64) -> f64 {
        lo + (hi - lo) * (self.next() >> 11) as f64 / (1u64 << 53) as f64
    }
}

fn env_or<T: std::str::FromStr>(name: &str, default: T) -> T {
    std::env::var(name)
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(default)
}

fn signal(child: &Child, sig: Signal) {
    let _ = kill(Pid::from_raw(child.id() as i32), sig);
}

fn main() {
    let mut ok = kills_and_pauses();
    let pauses: usize = env_or("CHAOS_PAUSES", 20);
    if pauses > 0 {
        ok &= paused_runners(pauses);
    }
    if !ok {
        std::process::exit(1);
    }
}

/// Runners stopped past their lease and let go on, `max_attempts = 1`: see the module's
/// doc. Returns whether every count is zero.
fn paused_runners(pauses: usize) -> bool {
    let trials = pauses * 7 + 20;
    let p = support::Project::new();
    p.write("t.sh", support::TIMED_SH);
    p.write(
        "g.toml",
        &format!(
            "[sweep]\nname = \"wakes\"\ncommand = [\"sh\", \"t.sh\"]\nparallel = 2\nmax_attempts = 1\ngrace = \"1s\"\n\
             [grid]\nx = {{ lin = [1, {trials}], num = {trials} }}\n"
        ),
    );
    // Each runner's log is kept in the project (kept itself when the scenario fails), so a
    // runner that stops early says why.
    let runner = |i: usize| {
        let log = std::fs::File::create(p.path().join(format!("runner-{i}.log"))).expect("log");
        let mut cmd = p.sweep(&["run", "g.toml", "--lease", "3s"]);
        cmd.stdout(Stdio::null())
            .stderr(log)
            .env("RUST_LOG", "debug");
        cmd.spawn().expect("start sweep")
    };
    let started = Instant::now();
    let mut runners = [runner(0), runner(1)];
    let mut paused = 0;
    while paused < pauses {
        let before = support::attempts_started(&p.lines("ledger"));
        // Let both work a little: each pause catches the victim holding trials.
        while support::attempts_started(&p.lines("ledger")) < before + 4
            && started.elapsed() < Duration::from_secs(3600)
        {
            std::thread::sleep(Duration::from_millis(100));
        }
        if runners
            .iter_mut()
            .any(|r| matches!(r.try_wait(), Ok(Some(_))))
        {
            break;
        }
        let victim = &runners[paused % 2];
        signal(victim, Signal::SIGSTOP);
        std::thread::sleep(Duration::from_secs(6));
        signal(victim, Signal::SIGCONT);
        paused += 1;
    }
    let exits: Vec<Option<i32>> = runners
        .iter_mut()
        .map(|r| r.wait().ok().and_then(|s| s.code()))
        .collect();
    let chaos_s = started.elapsed().as_secs_f64();
    let last = p
        .sweep(&["run", "g.toml"])
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .status()
        .expect("last run");
    std::thread::sleep(Duration::from_secs(1));
    let orphans = sweep_scheduler::processes_marked("SWEEP_SWEEP=wakes");

    let ledger = p.lines("ledger");
    let rows = p.export();
    let done = |id: &str, attempt: &str| {
        let prefix = format!("done {id} {attempt} ");
        ledger.iter().any(|l| l.starts_with(&prefix))
    };
    let lost = rows
        .iter()
        .filter(|r| {
            r["status"] != "completed"
                || !done(&r["trial_id"], r["metric_attempt"].trim_end_matches(".0"))
        })
        .count();
    let failed_trials = rows.iter().filter(|r| r["status"] == "failed").count();
    let failed_attempts = p
        .sql("SELECT trial_id FROM attempts WHERE outcome = 'failed'")
        .len();
    let taken_over = p
        .sql("SELECT trial_id FROM attempts WHERE outcome = 'lost'")
        .len();
    let twice = support::overlapping_attempts(&ledger);
    println!("paused runners: {trials} trials of 4 s, max_attempts = 1, {paused} pauses of 6 s past a 3 s lease, {chaos_s:.0} s");
    println!("last run exit code: {:?}", last.code());
    println!(
        "trials completed: {} of {trials}",
        rows.iter().filter(|r| r["status"] == "completed").count()
    );
    println!("attempts taken over (recorded as lost): {taken_over}");
    println!("results lost: {lost}");
    println!("attempts of one trial working at once: {}", twice.len());
    println!("spurious failures: {failed_attempts} attempt(s), {failed_trials} trial(s)");
    println!(
        "orphaned processes 1 s after the last run: {}",
        orphans.len()
    );
    println!("runners' exit codes: {exits:?} (their logs: runner-0.log, runner-1.log)");
    let ok = paused == pauses
        && exits.iter().all(|c| *c == Some(0))
        && rows.len() == trials
        && lost == 0
        && twice.is_empty()
        && failed_attempts == 0
        && failed_trials == 0
        && orphans.is_empty()
        && last.success();
    if !ok {
        if paused < pauses {
            println!("the sweep finished after {paused} of {pauses} pauses");
        }
        for pair in &twice {
            println!("  at once: {pair}");
        }
        eprintln!(
            "paused-runner scenario FAILED; ledger and database kept in {}",
            p.path().display()
        );
        std::mem::forget(p);
    }
    ok
}

/// Kills and pauses at random moments, one or two runners: see the module's doc. Returns
/// whether every count is zero.
fn kills_and_pauses() -> bool {
    let kills: usize = env_or("CHAOS_KILLS", 24);
    let trials: usize = env_or("CHAOS_TRIALS", 400);
    let seed: u64 = env_or("CHAOS_SEED", 7);
    let mut rng = Rng(seed.max(1));
    let p = support::Project::new();
    p.write("wrapper.sh", WRAPPER);
    p.write("work.sh", WORK);
    // Work lengths from 0.2 to 1.5 s, a zipped axis so each trial has its own.
    let lengths: Vec<String> = (0..trials)
        .map(|_| format!("{:.2}", rng.between(0.2, 1.5)))
        .collect();
    let ids: Vec<String> = (0..trials).map(|i| i.to_string()).collect();
    p.write(
        "g.toml",
        &format!(
            "[sweep]\nname = \"chaos\"\ncommand = [\"sh\", \"wrapper.sh\", \"{{work}}\"]\nparallel = 3\nmax_attempts = 1000\nbackoff = \"0s\"\ngrace = \"1s\"\n\
             [[zip]]\ni = [{}]\nwork = [{}]\n",
            ids.join(", "),
            lengths.join(", ")
        ),
    );
    let sweep = |args: &[&str]| {
        let mut cmd = p.sweep(args);
        cmd.stdout(Stdio::null()).stderr(Stdio::null());
        cmd
    };
    let start_runner = || {
        sweep(&["run", "g.toml", "--lease", "3s"])
            .spawn()
            .expect("start sweep")
    };

    let started = Instant::now();
    let (mut killed, mut paused) = (0, 0);
    let mut runners: Vec<Child> = vec![start_runner()];
    let mut finished_early = false;
    while killed < kills {
        std::thread::sleep(Duration::from_secs_f64(rng.between(0.3, 2.0)));
        // Keep one or two runners going; one that exits 0 by itself has finished the sweep.
        runners.retain_mut(|r| match r.try_wait() {
            Ok(Some(status)) => {
                finished_early |= status.success();
                false
            }
            _ => true,
        });
        if finished_early {
            break;
        }
        if runners.is_empty() || (runners.len() < 2 && rng.next().is_multiple_of(2)) {
            runners.push(start_runner());
            continue;
        }
        let victim = (rng.next() % runners.len() as u64) as usize;
        if runners.len() == 2 && paused * 5 < killed {
            // Pause one runner past the other's 3 s lease, then let it go on: its trials are
            // taken over meanwhile, and it must notice and not record their results.
            signal(&runners[victim], Signal::SIGSTOP);
            std::thread::sleep(Duration::from_secs(5));
            signal(&runners[victim], Signal::SIGCONT);
            paused += 1;
            continue;
        }
        let mut dead = runners.remove(victim);
        signal(&dead, Signal::SIGKILL);
        let _ = dead.wait();
        killed += 1;
    }
    for mut r in runners {
        signal(&r, Signal::SIGKILL);
        let _ = r.wait();
    }
    let chaos_s = started.elapsed().as_secs_f64();
    let last = sweep(&["run", "g.toml"]).status().expect("last run");
    std::thread::sleep(Duration::from_secs(1));
    let orphans = sweep_scheduler::processes_marked("SWEEP_SWEEP=chaos");

    // Compare the ledger with the database.
    let mut work: BTreeMap<(String, u32), (u128, Option<u128>)> = BTreeMap::new();
    for line in p.lines("ledger") {
        let f: Vec<&str> = line.split(' ').collect();
        if f.len() != 4 {
            continue;
        }
        let (id, attempt, t) = (
            f[1].to_string(),
            f[2].parse().unwrap_or(0),
            f[3].parse().unwrap_or(0),
        );
        match f[0] {
            "start" => {
                work.insert((id, attempt), (t, None));
            }
            "done" => {
                if let Some(entry) = work.get_mut(&(id, attempt)) {
                    entry.1 = Some(t);
                }
            }
            _ => {}
        }
    }
    let rows = p.export();
    let mut lost = 0;
    let mut twice = 0;
    let mut at_least_once = 0;
    for row in &rows {
        let id = &row["trial_id"];
        let recorded: Option<u32> = row
            .get("metric_attempt")
            .and_then(|a| a.parse::<f64>().ok())
            .map(|a| a as u32);
        let attempts: Vec<(u32, u128, Option<u128>)> = work
            .iter()
            .filter(|((t, _), _)| t == id)
            .map(|((_, a), (s, d))| (*a, *s, *d))
            .collect();
        match recorded {
            Some(a) if row["status"] == "completed" => {
                let ours = attempts.iter().find(|(x, _, d)| *x == a && d.is_some());
                let Some(&(_, _, Some(recorded_done))) = ours else {
                    lost += 1; // a result no finished work produced
                    continue;
                };
                for &(x, _, done) in &attempts {
                    match done {
                        // Work that finished after the recorded result's own work.
                        Some(d) if x != a && d > recorded_done => twice += 1,
                        Some(_) if x != a => at_least_once += 1,
                        _ => {}
                    }
                }
            }
            _ => lost += 1,
        }
        // Two attempts of one trial working at once.
        for (i, &(_, s1, d1)) in attempts.iter().enumerate() {
            for &(_, s2, _) in &attempts[i + 1..] {
                if s2 > s1 && d1.is_some_and(|d| d > s2) {
                    twice += 1;
                }
            }
        }
    }
    let attempts_total: usize = work.len();
    println!("chaos suite: seed {seed}, {trials} trials, {kills} kill -9, {paused} pauses past the lease, {chaos_s:.0} s of chaos");
    println!("last run exit code: {:?}", last.code());
    println!(
        "trials completed: {} of {}",
        rows.iter().filter(|r| r["status"] == "completed").count(),
        trials
    );
    println!("pieces of work started: {attempts_total}");
    println!("results lost: {lost}");
    println!("work run twice outside the at-least-once window: {twice}");
    println!("work re-run inside the at-least-once window (finished, result never recorded): {at_least_once}");
    println!(
        "orphaned processes 1 s after the last run: {}",
        orphans.len()
    );
    if finished_early {
        println!("the sweep finished after {killed} of {kills} kills: raise CHAOS_TRIALS");
    }
    let ok = !finished_early
        && rows.len() == trials
        && lost == 0
        && twice == 0
        && orphans.is_empty()
        && last.success();
    if !ok {
        eprintln!(
            "chaos suite FAILED; ledger and database kept in {}",
            p.path().display()
        );
        std::mem::forget(p);
    }
    ok
}
