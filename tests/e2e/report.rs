//! `sweep report`: ranks, aggregates, exclusions and formats on trials whose metrics are known
//! functions of their parameters.

use crate::support::{assert_code, text, Project};

/// x = 1..4 maps to (unsafe_rate, utility) = (0.1, 0.2), (0.2, 0.5), (0.2, 0.4), (0.4, 0.3);
/// seed 1 adds 0.02 to unsafe_rate. x = 5 fails; x = 6 reports no utility.
const TRIAL: &str = r#"#!/bin/sh
case "$1" in
  5) exit 4 ;;
  6) echo '{"event":"result","metrics":{"unsafe_rate":0.0}}'; exit 0 ;;
esac
awk -v x="$1" -v seed="$2" 'BEGIN {
  split("0.1 0.2 0.2 0.4", u, " "); split("0.2 0.5 0.4 0.3", v, " ");
  printf "{\"event\":\"result\",\"metrics\":{\"unsafe_rate\":%s,\"utility\":%s}}\n", u[x] + 0.02 * seed, v[x]
}'
"#;

fn project() -> Project {
    let p = Project::new();
    p.write("t.sh", TRIAL);
    p.write(
        "g.toml",
        "[sweep]\nname = \"front\"\ncommand = [\"sh\", \"t.sh\", \"{x}\", \"{seed}\"]\nmax_attempts = 1\n\
         [grid]\nx = [1, 2, 3, 4, 5, 6]\nseed = [0, 1]\n",
    );
    assert_code(&p.run(&["run", "g.toml"]), 1);
    p
}

#[test]
fn ranks_aggregates_and_exclusions_are_exact() {
    let p = project();
    let out = p.run(&["report", "front", "--format", "json"]);
    assert_code(&out, 0);
    let report: serde_json::Value = serde_json::from_str(&text(&out.stdout)).unwrap();
    let configs = report["configurations"].as_array().unwrap();
    let rank_of = |x: i64| {
        configs
            .iter()
            .find(|c| c["params"]["x"] == x)
            .map(|c| c["rank"].as_u64().unwrap())
            .unwrap()
    };
    assert_eq!(
        [rank_of(1), rank_of(2), rank_of(3), rank_of(4)],
        [1, 1, 2, 3]
    );
    assert_eq!(configs.len(), 4);
    let x2 = configs.iter().find(|c| c["params"]["x"] == 2).unwrap();
    let unsafe_rate = &x2["metrics"]["unsafe_rate"];
    assert!((unsafe_rate["mean"].as_f64().unwrap() - 0.21).abs() < 1e-12);
    assert!((unsafe_rate["std"].as_f64().unwrap() - 0.02 / 2f64.sqrt()).abs() < 1e-12);
    assert_eq!(unsafe_rate["n"], 2);
    assert!((unsafe_rate["ci95"].as_f64().unwrap() - 12.706 * 0.01).abs() < 1e-9);
    assert_eq!(x2["front_share"], serde_json::json!([2, 2]));
    assert_eq!(report["excluded"]["not completed (failed)"], 2);
    assert_eq!(report["excluded"]["no `utility` metric"], 2);
    // Front (unsafe, -utility): (0.11, -0.2), (0.21, -0.5); reference = worst = (0.41, 0.2).
    let hv = report["hypervolume"]["value"].as_f64().unwrap();
    assert!((hv - 0.2 * 0.3).abs() < 1e-12, "{hv}");
}

#[test]
fn pareto_front_in_every_format() {
    let p = project();
    let csv_out = p.run(&["report", "--pareto", "--format", "csv"]);
    assert_code(&csv_out, 0);
    let csv_text = text(&csv_out.stdout);
    let lines: Vec<&str> = csv_text.lines().collect();
    assert_eq!(
        lines[0],
        "sweep,rank,front_share,n,param_x,unsafe_rate_mean,unsafe_rate_std,unsafe_rate_n,unsafe_rate_ci95,utility_mean,utility_std,utility_n,utility_ci95"
    );
    assert_eq!(lines.len(), 3, "{csv_text}");
    assert!(lines[1].starts_with("front,1,2/2,2,1,0.11,"), "{csv_text}");
    assert!(lines[2].starts_with("front,1,2/2,2,2,0.21"), "{csv_text}");

    let table = text(&p.run(&["report"]).stdout);
    assert!(table.contains("unsafe_rate:min"), "{table}");
    assert!(
        table.contains("excluded: 2 trial(s), not completed (failed)"),
        "{table}"
    );
    let md = text(
        &p.run(&["report", "--pareto", "--format", "markdown"])
            .stdout,
    );
    assert!(
        md.starts_with("| rank | on front | n | x | unsafe_rate:min | utility:max |\n|---|"),
        "{md}"
    );

    // Per-trial ranking: only the seed-0 trials of x = 1 and x = 2 are non-dominated.
    let per_trial = text(
        &p.run(&["report", "--per-trial", "--pareto", "--format", "csv"])
            .stdout,
    );
    assert_eq!(per_trial.lines().count(), 1 + 2, "{per_trial}");

    // Objectives nobody reported are a clear error, not an empty table.
    let out = p.run(&["report", "--objective", "nope:min"]);
    assert_code(&out, 2);
    assert!(
        text(&out.stderr).contains("nothing to rank"),
        "{}",
        text(&out.stderr)
    );
}
