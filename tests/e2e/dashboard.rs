//! `sweep serve` in a real browser: headless Chromium loads each page while a sweep runs, and
//! the test reads the DOM the page's script drew (the front's points, a learning curve, a
//! trial's answers beside the base model's, the running sweep's progress).
//! (`scripts/dashboard-screenshots` takes the pictures in docs/ the same way, of the
//! quickstart sweep.)

use std::io::{BufRead, BufReader};
use std::path::Path;
use std::process::{Child, Command, Stdio};
use std::time::Duration;

use crate::support::{text, wait_for, Project};

/// The built-in trainer on a model small enough to align in seconds (`trainer::TINY`): two
/// fine-tuning runs (one per learning rate), each reporting every step count and EMA decay.
fn tiny_grid() -> String {
    format!(
        r#"
[sweep]
name = "tiny"
parallel = 1

[grid]
learning_rate = [1e-3, 1e-2]
steps = [0, 10, 40]
ema_decay = [0.0, 0.9]

[[exclude]]
steps = 0
learning_rate = 1e-2

[[exclude]]
steps = 0
ema_decay = 0.9

[fixed]
seed = 0
{}"#,
        crate::trainer::TINY
    )
}

/// A sweep that stays running: its trial reports a few curve points, then waits.
const SLOW_GRID: &str = r#"
[sweep]
name = "slow"
command = ["sh", "slow.sh"]
parallel = 1
timeout = "10m"

[grid]
lr = [0.1, 0.2]
"#;

const SLOW_SH: &str = r#"#!/bin/sh
for i in 1 2 3; do echo "{\"event\":\"metric\",\"step\":$i,\"name\":\"loss\",\"value\":1.$i}"; done
sleep 600
"#;

/// Kills the child when the test ends, however it ends.
struct Killed(Child);

impl Drop for Killed {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

/// Chromium, headless, with the flags a machine without network needs.
fn chromium(profile: &Path) -> Command {
    let mut cmd = Command::new("chromium");
    cmd.args([
        "--headless",
        "--no-sandbox",
        "--disable-gpu",
        "--disable-quic",
        "--no-first-run",
        "--disable-background-networking",
        "--disable-component-update",
        "--disable-sync",
        "--hide-scrollbars",
        "--window-size=1400,2000",
        // Virtual time runs the page's script and waits out its requests before the DOM is read.
        "--virtual-time-budget=6000",
    ])
    .arg(format!("--user-data-dir={}", profile.display()))
    .stdin(Stdio::null());
    cmd
}

/// The DOM after the page's script ran.
fn page(profile: &Path, url: &str) -> String {
    let out = chromium(profile)
        .arg("--dump-dom")
        .arg(url)
        .output()
        .expect("run chromium (scripts/chromium-install)");
    assert!(out.status.success(), "chromium: {}", text(&out.stderr));
    text(&out.stdout)
}

fn count(dom: &str, needle: &str) -> usize {
    dom.matches(needle).count()
}

#[test]
#[ignore = "needs Chromium: scripts/chromium-install"]
fn the_dashboard_draws_a_running_sweep_its_front_curves_and_answers() {
    let p = Project::new();
    p.write("tiny.toml", &tiny_grid());
    let out = p.run(&["run", "tiny.toml"]);
    assert!(out.status.success(), "{}", text(&out.stderr));
    p.write("slow.sh", SLOW_SH);
    p.write("slow.toml", SLOW_GRID);
    let _slow = Killed(
        p.sweep(&["run", "slow.toml"])
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .expect("start the slow sweep"),
    );
    let running = || p.sql("SELECT CAST(COUNT(*) AS TEXT) FROM curves")[0] != "0";
    assert!(
        wait_for(Duration::from_secs(60), running),
        "the slow sweep's trial never reported"
    );

    let mut serve = p
        .sweep(&["serve", "--bind", "127.0.0.1:0"])
        .stderr(Stdio::piped())
        .stdout(Stdio::null())
        .spawn()
        .expect("start sweep serve");
    let stderr = serve.stderr.take().expect("piped stderr");
    let _serve = Killed(serve);
    let url = BufReader::new(stderr)
        .lines()
        .map_while(Result::ok)
        .find_map(|l| {
            Some(
                l[l.find("http://")?..]
                    .split_whitespace()
                    .next()?
                    .to_string(),
            )
        })
        .expect("sweep serve prints its address");

    let profile = tempfile::tempdir().unwrap();

    let sweeps = page(profile.path(), &format!("{url}#/"));
    assert!(
        sweeps.contains("#/sweep/tiny") && sweeps.contains("#/sweep/slow"),
        "{sweeps}"
    );
    assert!(
        sweeps.contains("live · updated"),
        "a running sweep is followed: {sweeps}"
    );

    let tiny = page(profile.path(), &format!("{url}#/sweep/tiny"));
    assert!(
        count(&tiny, "class=\"point front\"") >= 1,
        "the front's points: {tiny}"
    );
    // 9 configurations (the base, and 2 learning rates × 2 step counts × 2 EMA decays),
    // every one drawn.
    assert_eq!(count(&tiny, "class=\"point"), 9, "{tiny}");
    assert!(
        count(&tiny, "class=\"curve\"") >= 1,
        "a learning curve: {tiny}"
    );
    assert!(
        count(&tiny, "class=\"pc-line") == 9,
        "parallel coordinates: {tiny}"
    );
    assert_eq!(
        count(&tiny, "class=\"trial-row\""),
        9,
        "the trial table: {tiny}"
    );

    let slow = page(profile.path(), &format!("{url}#/sweep/slow"));
    assert!(slow.contains("running: "), "{slow}");
    assert!(
        slow.contains(" step 3 "),
        "the running trial's last step: {slow}"
    );

    let id = p.sql(
        "SELECT t.id FROM trials t JOIN sweeps s ON s.id = t.sweep_id WHERE s.name = 'tiny' \
         AND t.params LIKE '%\"steps\":40%' AND t.params LIKE '%0.01%' \
         AND t.params LIKE '%\"ema_decay\":0.0%'",
    )[0]
    .clone();
    let trial = page(profile.path(), &format!("{url}#/trial/{id}"));
    // Every answer the run wrote at this trial's point, one row each.
    let ran = p.sql(&format!(
        "SELECT COALESCE(completed_by, id) FROM trials WHERE id = '{id}'"
    ))[0]
        .clone();
    let file = p
        .path()
        .join("sweep-trials/tiny")
        .join(ran)
        .join("responses.jsonl");
    let answers = std::fs::read_to_string(&file).expect("the run's responses.jsonl");
    let own = answers
        .lines()
        .filter_map(|l| serde_json::from_str::<serde_json::Value>(l).ok())
        .filter(|v| v["steps"] == 40 && v["ema_decay"] == 0.0)
        .count();
    assert!(own > 0);
    assert_eq!(count(&trial, "class=\"answer-row\""), own, "{trial}");
    assert!(
        trial.contains("base: trial "),
        "beside the base model's answers: {trial}"
    );
    assert!(
        count(&trial, "class=\"curve\"") >= 1,
        "the run's curves: {trial}"
    );
    assert!(
        trial.contains("attempt-1.stderr.log") || trial.contains("from the run of trial"),
        "{trial}"
    );
}
