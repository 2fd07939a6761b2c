//! `sweep report`: ranks, aggregates, exclusions and formats on trials whose metrics are known
//! functions of their parameters.

use crate::support::{assert_code, block_on, text, Project};

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
    let out = p.run(&["report", "front", "--format", "json", "--seed-fronts"]);
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
    let csv_out = p.run(&["report", "--pareto", "--format", "csv", "--seed-fronts"]);
    assert_code(&csv_out, 0);
    let csv_text = text(&csv_out.stdout);
    let lines: Vec<&str> = csv_text.lines().collect();
    assert_eq!(
        lines[0],
        "sweep,rank,front_share,n,param_x,metric_unsafe_rate_mean,metric_unsafe_rate_std,metric_unsafe_rate_n,metric_unsafe_rate_ci95,metric_utility_mean,metric_utility_std,metric_utility_n,metric_utility_ci95"
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
        &p.run(&[
            "report",
            "--pareto",
            "--format",
            "markdown",
            "--seed-fronts",
        ])
        .stdout,
    );
    assert!(
        md.starts_with(
            "| rank | on front | n | x | unsafe_rate:min (mean ± std) | utility:max (mean ± std) |\n|---|"
        ),
        "{md}"
    );

    // Per-trial ranking: only the seed-0 trials of x = 1 and x = 2 are non-dominated.
    let per_trial = text(
        &p.run(&["report", "--per-trial", "--pareto", "--format", "csv"])
            .stdout,
    );
    assert_eq!(per_trial.lines().count(), 1 + 2, "{per_trial}");

    // Objectives nobody reported are a clear error that lists the metrics, not an empty
    // table; so is a --color-by typo, listing the parameters.
    let out = p.run(&["report", "--objective", "nope:min"]);
    assert_code(&out, 2);
    let err = text(&out.stderr);
    assert!(
        err.contains("no trial reports `nope` (the metrics are: unsafe_rate, utility)"),
        "{err}"
    );
    let out = p.run(&["report", "--color-by", "xx", "--plot", "f.svg"]);
    assert_code(&out, 2);
    let err = text(&out.stderr);
    assert!(err.contains("(the parameters are: x)"), "{err}");
    assert!(!p.path().join("f.svg").exists());
}

#[test]
fn filters_latex_plot_and_html() {
    let p = project();
    // --where on a parameter and on a metric.
    let out = p.run(&[
        "report",
        "--where",
        "x>=2",
        "--where",
        "utility<0.45",
        "--format",
        "csv",
    ]);
    assert_code(&out, 0);
    let csv_text = text(&out.stdout);
    let xs: Vec<&str> = csv_text
        .lines()
        .skip(1)
        .map(|l| l.split(',').nth(4).unwrap())
        .collect();
    assert_eq!(xs, ["3", "4"], "{csv_text}");
    let out = p.run(&["report", "--where", "lr<1"]);
    assert_code(&out, 2);
    assert!(
        text(&out.stderr).contains("no parameter or metric named `lr`"),
        "{}",
        text(&out.stderr)
    );
    let out = p.run(&["report", "--where", "x; DROP TABLE trials"]);
    assert_code(&out, 2);

    let latex = text(&p.run(&["report", "--format", "latex"]).stdout);
    assert!(
        latex.contains("\\begin{tabular}{rlrr}")
            && latex.contains("\\toprule")
            && latex.contains("\\bottomrule"),
        "{latex}"
    );
    assert!(
        latex.contains("unsafe\\_rate $\\downarrow$ & utility $\\uparrow$"),
        "{latex}"
    );
    assert!(
        latex.contains("\\textbf{1} & \\textbf{1} & \\boldmath{$0.110 \\pm 0.014$}"),
        "{latex}"
    );
    compile_latex_if_possible(&p, &latex);

    let svg = p.path().join("front.svg");
    let html = p.path().join("front.html");
    let out = p.run(&[
        "report",
        "--plot",
        svg.to_str().unwrap(),
        "--html",
        html.to_str().unwrap(),
        "--color-by",
        "x",
    ]);
    assert_code(&out, 0);
    let svg_text = std::fs::read_to_string(&svg).unwrap();
    assert!(
        svg_text.starts_with("<svg") && svg_text.len() > 5_000,
        "{}",
        svg_text.len()
    );
    assert!(
        svg_text.contains("unsafe_rate (lower is better)")
            && svg_text.contains("utility (higher is better)")
    );
    assert!(svg_text.contains("x = 4") && svg_text.contains("Pareto front"));
    let html_text = std::fs::read_to_string(&html).unwrap();
    assert!(html_text.contains("<svg") && html_text.contains("<table id=\"configs\">"));
    assert_eq!(html_text.matches("<tr class=\"front\">").count(), 2);
    assert!(
        !html_text.contains("src=\"http"),
        "the page must be self-contained"
    );
}

fn compile_latex_if_possible(p: &Project, table: &str) {
    let Ok(status) = std::process::Command::new("pdflatex")
        .arg("--version")
        .output()
    else {
        eprintln!("pdflatex not installed: LaTeX compile step skipped");
        return;
    };
    assert!(status.status.success());
    p.write(
        "doc.tex",
        &format!("\\documentclass{{article}}\\usepackage{{booktabs}}\\begin{{document}}\n{table}\\end{{document}}\n"),
    );
    let out = std::process::Command::new("pdflatex")
        .args(["-interaction=nonstopmode", "-halt-on-error", "doc.tex"])
        .current_dir(p.path())
        .output()
        .unwrap();
    assert!(out.status.success(), "{}", text(&out.stdout));
}

#[test]
fn exports_aggregate_curves_and_json() {
    let p = project();
    let out = p.run(&["export", "front", "--aggregate", "--csv", "-"]);
    assert_code(&out, 0);
    let csv_text = text(&out.stdout);
    let mut lines = csv_text.lines();
    assert_eq!(
        lines.next().unwrap(),
        "sweep,trials,param_x,metric_unsafe_rate_mean,metric_unsafe_rate_std,metric_unsafe_rate_n,metric_unsafe_rate_ci95,metric_utility_mean,metric_utility_std,metric_utility_n,metric_utility_ci95"
    );
    let x1 = lines.next().unwrap();
    assert!(x1.starts_with("front,2,1,0.11,0.0141421356237309"), "{x1}");
    let ci95: f64 = x1.split(',').nth(6).unwrap().parse().unwrap();
    assert!((ci95 - 12.706 * 0.01).abs() < 1e-9, "{x1}");
    // x = 6 reported no utility: its utility columns are empty, n = 0.
    let x6 = csv_text
        .lines()
        .find(|l| l.starts_with("front,2,6,"))
        .unwrap();
    assert!(x6.ends_with(",,,0,"), "{x6}");

    let out = p.run(&[
        "export", "--format", "json", "--output", "-", "--where", "x=2",
    ]);
    assert_code(&out, 0);
    let rows: serde_json::Value = serde_json::from_str(&text(&out.stdout)).unwrap();
    let rows = rows.as_array().unwrap();
    assert_eq!(rows.len(), 2);
    assert_eq!(rows[0]["param_x"], 2);
    assert_eq!(rows[0]["metric_utility"], 0.5);
    let keys: Vec<&String> = rows[0].as_object().unwrap().keys().collect();
    assert_eq!(keys[0], "trial_id");
    assert_eq!(keys.last().unwrap().as_str(), "metric_utility");
}

#[test]
fn curves_export_keeps_the_latest_attempt_per_step() {
    let p = Project::new();
    p.write(
        "c.sh",
        r#"#!/bin/sh
echo "{\"event\":\"metric\",\"step\":1,\"name\":\"loss\",\"value\":$SWEEP_ATTEMPT}"
[ "$SWEEP_ATTEMPT" = "1" ] && exit 1
echo '{"event":"metric","step":2,"name":"loss","value":NaN}'
echo '{"event":"result","metrics":{"ok":1}}'
"#,
    );
    p.write(
        "g.toml",
        "[sweep]\nname = \"c\"\ncommand = [\"sh\", \"c.sh\"]\nbackoff = \"0s\"\n[grid]\nx = [1]\n",
    );
    assert_code(&p.run(&["run", "g.toml"]), 0);
    let out = p.run(&["export", "--curves", "--csv", "-"]);
    let header = text(&out.stdout).lines().next().unwrap().to_string();
    assert_eq!(
        header, "trial_id,sweep,param_x,step,name,value",
        "each point carries its trial's parameters"
    );
    let body: Vec<String> = text(&out.stdout)
        .lines()
        .skip(1)
        .map(|l| l.splitn(4, ',').last().unwrap().to_string())
        .collect();
    assert_eq!(body, ["1,loss,2.0", "2,loss,NaN"]);
}

/// x = 1..3 reports validation and test halves: on validation x = 1 is safest but below the
/// utility bar, x = 2 is the safest that meets it; on test x = 2 is less safe than it looked.
/// Seed 1 adds 0.02 to every unsafe rate.
const SPLIT_TRIAL: &str = r#"#!/bin/sh
awk -v x="$1" -v seed="$2" 'BEGIN {
  split("0.05 0.10 0.30", vu, " "); split("0.06 0.20 0.12", tu, " ");
  split("0.5 0.85 0.95", vy, " "); split("0.5 0.8 0.9", ty, " ");
  d = 0.02 * seed;
  printf "{\"event\":\"result\",\"metrics\":{\"unsafe_rate\":%s,\"utility\":%s,", (vu[x] + tu[x]) / 2 + d, (vy[x] + ty[x]) / 2
  printf "\"val_unsafe_rate\":%s,\"test_unsafe_rate\":%s,\"val_utility\":%s,\"test_utility\":%s}}\n", vu[x] + d, tu[x] + d, vy[x], ty[x]
}'
"#;

#[test]
fn best_is_chosen_on_validation_and_reported_on_test_in_every_format() {
    let p = Project::new();
    p.write("t.sh", SPLIT_TRIAL);
    p.write(
        "g.toml",
        "[sweep]\nname = \"sel\"\ncommand = [\"sh\", \"t.sh\", \"{x}\", \"{seed}\"]\n\
         [grid]\nx = [1, 2, 3]\nseed = [0, 1]\n",
    );
    assert_code(&p.run(&["run", "g.toml"]), 0);
    let best = |extra: &[&str]| {
        let mut args = vec!["report", "sel", "--best", "unsafe_rate:min"];
        args.extend_from_slice(extra);
        p.run(&args)
    };
    let out = best(&["--subject-to", "utility>=0.8", "--format", "json"]);
    assert_code(&out, 0);
    let json: serde_json::Value = serde_json::from_str(&text(&out.stdout)).unwrap();
    let sweep = &json["sweeps"][0];
    assert_eq!(sweep["chosen"]["params"]["x"], 2);
    assert_eq!(sweep["eligible"], 2);
    let reported = &sweep["chosen"]["metrics"]["unsafe_rate"]["reported"];
    assert!(
        (reported["mean"].as_f64().unwrap() - 0.21).abs() < 1e-12,
        "{reported}"
    );
    assert_eq!(reported["n"], 2);
    assert!((reported["ci95"].as_f64().unwrap() - 12.706 * 0.01).abs() < 1e-9);
    let chosen_on = &sweep["chosen"]["metrics"]["unsafe_rate"]["chosen_on"];
    assert!((chosen_on["mean"].as_f64().unwrap() - 0.11).abs() < 1e-12);

    // A relative bar: 90 % of the best validation utility (0.95) leaves only x = 3.
    let out = best(&["--subject-to", "utility>=0.9*best", "--format", "csv"]);
    assert_code(&out, 0);
    let csv = text(&out.stdout);
    let mut lines = csv.lines();
    let header: Vec<&str> = lines.next().unwrap().split(',').collect();
    let row: Vec<&str> = lines.next().unwrap().split(',').collect();
    let col = |name: &str| row[header.iter().position(|h| *h == name).unwrap()];
    assert_eq!(col("param_x"), "3");
    assert_eq!(col("eligible"), "1/3");
    assert_eq!(col("metric_test_unsafe_rate_mean"), "0.13");

    for format in ["table", "markdown", "latex"] {
        let out = best(&["--subject-to", "utility>=0.8", "--format", format]);
        assert_code(&out, 0);
        let shown = text(&out.stdout);
        assert!(shown.contains("0.2100"), "{format}: {shown}");
    }
    let out = best(&["--subject-to", "utility>=2"]);
    assert_code(&out, 2);
    assert!(text(&out.stdout).contains("none meets the constraints"));

    // Trials without halves: refused, unless asked to use the same prompts.
    p.write(
        "plain.sh",
        "echo '{\"event\":\"result\",\"metrics\":{\"unsafe_rate\":0.1}}'\n",
    );
    p.write(
        "h.toml",
        "[sweep]\nname = \"plain\"\ncommand = [\"sh\", \"plain.sh\", \"{x}\"]\n[grid]\nx = [1]\n",
    );
    assert_code(&p.run(&["run", "h.toml"]), 0);
    let out = p.run(&["report", "plain", "--best", "unsafe_rate:min"]);
    assert_code(&out, 2);
    assert!(
        text(&out.stderr).contains("--same-prompts"),
        "{}",
        text(&out.stderr)
    );
    let out = p.run(&[
        "report",
        "plain",
        "--best",
        "unsafe_rate:min",
        "--same-prompts",
    ]);
    assert_code(&out, 0);
    let out = p.run(&["report", "plain", "--subject-to", "utility>=1"]);
    assert_ne!(out.status.code(), Some(0), "--subject-to needs --best");
}

/// A `wandb.log`-style line records every curve it holds, and a result with a value that is
/// no number keeps its numbers (noted in the attempt's log) instead of failing the trial.
#[test]
fn several_curves_on_a_line_and_a_text_value_in_a_result_keep_the_numbers() {
    let p = Project::new();
    p.write(
        "w.sh",
        r#"#!/bin/sh
echo '{"event":"metric","step":1,"metrics":{"loss":2.5,"lr":0.001}}'
echo '{"event":"result","metrics":{"score":0.75,"note":"ok"}}'
"#,
    );
    p.write(
        "g.toml",
        "[sweep]\nname = \"w\"\ncommand = [\"sh\", \"w.sh\"]\nmax_attempts = 1\n[grid]\nx = [1]\n",
    );
    assert_code(&p.run(&["run", "g.toml"]), 0);
    let rows = p.export();
    assert_eq!(rows[0]["status"], "completed");
    assert_eq!(rows[0]["metric_score"], "0.75");
    assert_eq!(rows[0]["attempts"], "1", "not trained again");
    let out = p.run(&["export", "--curves", "--csv", "-"]);
    let mut body: Vec<String> = text(&out.stdout)
        .lines()
        .skip(1)
        .map(|l| l.splitn(4, ',').last().unwrap().to_string())
        .collect();
    body.sort();
    assert_eq!(body, ["1,loss,2.5", "1,lr,0.001"]);
    let log = std::fs::read_to_string(
        p.path()
            .join("sweep-trials/w")
            .join(&rows[0]["trial_id"])
            .join("logs/attempt-1.stdout.log"),
    )
    .unwrap();
    assert!(log.contains("`note` is \"ok\", not a number"), "{log}");
}

/// `[fixed]` values are parameters of every trial: exports carry them beside the swept
/// ones, and `--where` filters on them.
#[test]
fn exports_carry_the_fixed_parameters() {
    let p = Project::new();
    p.write(
        "f.sh",
        "#!/bin/sh\necho '{\"event\":\"result\",\"metrics\":{\"m\":1}}'\n",
    );
    p.write(
        "g.toml",
        "[sweep]\nname = \"f\"\ncommand = [\"sh\", \"f.sh\"]\n[grid]\nx = [1, 2]\n[fixed]\nepochs = 3\noptimizer = \"adamw\"\n",
    );
    assert_code(&p.run(&["run", "g.toml"]), 0);
    let rows = p.export();
    assert_eq!(rows.len(), 2);
    assert!(
        rows.iter()
            .all(|r| r["param_epochs"] == "3" && r["param_optimizer"] == "adamw"),
        "{rows:?}"
    );
    let out = p.run(&["export", "--aggregate", "--csv", "-", "--where", "epochs=3"]);
    assert_code(&out, 0);
    let csv = text(&out.stdout);
    assert!(csv.lines().next().unwrap().contains("epochs"), "{csv}");
    assert_eq!(csv.lines().count(), 3, "two configurations: {csv}");
    // Reports see the same parameters as exports: --where on a `[fixed]` one.
    let out = p.run(&[
        "report",
        "--objective",
        "m:max",
        "--where",
        "optimizer=adamw",
        "--format",
        "csv",
    ]);
    assert_code(&out, 0);
    assert_eq!(
        text(&out.stdout).lines().count(),
        3,
        "{}",
        text(&out.stdout)
    );
}

/// The store's `trials_wide` view (one column per parameter and metric) holds what the
/// per-trial export holds, under the same column names, for sweeps with different
/// parameters and metrics; a metric first reported later gets its column.
#[test]
fn the_wide_view_holds_the_per_trial_export() {
    let p = Project::new();
    p.write(
        "a.sh",
        "#!/bin/sh\necho \"{\\\"event\\\":\\\"result\\\",\\\"metrics\\\":{\\\"m\\\":0.$1,\\\"it's\\\":0.25}}\"\n",
    );
    p.write(
        "a.toml",
        "[sweep]\nname = \"a\"\ncommand = [\"sh\", \"a.sh\", \"{x}\"]\n[grid]\nx = [1, 2]\n[fixed]\noptimizer = \"adamw\"\n",
    );
    assert_code(&p.run(&["run", "a.toml"]), 0);
    p.write(
        "b.sh",
        "#!/bin/sh\necho '{\"event\":\"result\",\"metrics\":{\"loss\":0.5}}'\n",
    );
    p.write(
        "b.toml",
        "[sweep]\nname = \"b\"\ncommand = [\"sh\", \"b.sh\"]\n[grid]\nseed = [7]\n",
    );
    assert_code(&p.run(&["run", "b.toml"]), 0);

    let out = p.run(&["export", "--csv", "-"]);
    assert_code(&out, 0);
    let mut reader = csv::Reader::from_reader(out.stdout.as_slice());
    let header: Vec<String> = reader.headers().unwrap().iter().map(String::from).collect();
    let exported: Vec<Vec<String>> = reader
        .records()
        .map(|r| r.unwrap().iter().map(String::from).collect())
        .collect();
    let (columns, rows) = block_on(read_wide_view(&p));
    assert_eq!(columns, header);
    assert!(header.contains(&"metric_it's".to_string()), "{header:?}");
    assert!(
        header.contains(&"param_optimizer".to_string()),
        "{header:?}"
    );
    assert_eq!(rows, exported);
}

/// Rows of text columns (NULL as empty), whichever backend's rows they are.
macro_rules! as_text {
    ($rows:expr, $columns:expr) => {
        $rows
            .iter()
            .map(|r| {
                (0..$columns)
                    .map(|i| r.get::<Option<String>, _>(i).unwrap_or_default())
                    .collect()
            })
            .collect()
    };
}

/// Every column of `trials_wide` as text (empty for NULL), whichever backend holds it.
async fn read_wide_view(p: &Project) -> (Vec<String>, Vec<Vec<String>>) {
    use sqlx::Row;
    if p.on_postgres() {
        let pool = sqlx::PgPool::connect(p.location()).await.unwrap();
        let columns: Vec<(String, String)> = sqlx::query_as(
            "SELECT column_name::TEXT, data_type::TEXT FROM information_schema.columns \
             WHERE table_name = 'trials_wide' ORDER BY ordinal_position",
        )
        .fetch_all(&pool)
        .await
        .unwrap();
        let select = columns
            .iter()
            .map(|(c, ty)| {
                let c = format!("\"{}\"", c.replace('"', "\"\""));
                if ty == "jsonb" {
                    format!("{c} #>> '{{}}'")
                } else {
                    format!("{c}::TEXT")
                }
            })
            .collect::<Vec<_>>()
            .join(", ");
        let rows = sqlx::query(&format!("SELECT {select} FROM trials_wide"))
            .fetch_all(&pool)
            .await
            .unwrap();
        let rows = as_text!(rows, columns.len());
        (columns.into_iter().map(|(c, _)| c).collect(), rows)
    } else {
        let url = format!("sqlite://{}", p.db().display());
        let pool = sqlx::SqlitePool::connect(&url).await.unwrap();
        let columns: Vec<String> =
            sqlx::query_scalar("SELECT name FROM pragma_table_info('trials_wide')")
                .fetch_all(&pool)
                .await
                .unwrap();
        let select = columns
            .iter()
            .map(|c| format!("CAST(\"{}\" AS TEXT)", c.replace('"', "\"\"")))
            .collect::<Vec<_>>()
            .join(", ");
        let rows = sqlx::query(&format!("SELECT {select} FROM trials_wide"))
            .fetch_all(&pool)
            .await
            .unwrap();
        let rows = as_text!(rows, columns.len());
        (columns, rows)
    }
}

/// The report from the store's per-configuration summaries (the default) ranks, summarises
/// and leaves out exactly what the report that reads every trial (`--seed-fronts`) does, with
/// seeds alone as replicates and with two replicate parameters merged, in every field but the
/// front shares that only reading every trial can count.
#[test]
fn the_summaries_give_the_report_that_reading_every_trial_gives() {
    let p = Project::new();
    p.write("t.sh", TRIAL);
    p.write(
        "g.toml",
        "[sweep]\nname = \"sums\"\ncommand = [\"sh\", \"t.sh\", \"{x}\", \"{seed}\"]\n\
         max_attempts = 1\n[grid]\nx = [1, 2, 3, 4, 5]\nseed = [0, 1, 2]\nbase = [0, 1]\n",
    );
    assert_code(&p.run(&["run", "g.toml"]), 1);
    let report = |args: &[&str]| -> serde_json::Value {
        let out = p.run(&[&["report", "--format", "json"], args].concat());
        assert_code(&out, 0);
        serde_json::from_str(&text(&out.stdout)).unwrap()
    };
    for replicate in ["seed", "seed,base"] {
        let summed = report(&["--replicate", replicate]);
        let read = report(&["--replicate", replicate, "--seed-fronts"]);
        assert_eq!(summed["excluded"], read["excluded"]);
        assert_eq!(summed["excluded"]["not completed (failed)"], 6);
        let close = |a: &serde_json::Value, b: &serde_json::Value| {
            (a.as_f64().unwrap() - b.as_f64().unwrap()).abs() < 1e-12
        };
        assert!(close(
            &summed["hypervolume"]["value"],
            &read["hypervolume"]["value"]
        ));
        let (a, b) = (
            summed["configurations"].as_array().unwrap(),
            read["configurations"].as_array().unwrap(),
        );
        assert_eq!(a.len(), if replicate == "seed" { 8 } else { 4 });
        assert_eq!(a.len(), b.len());
        for (a, b) in a.iter().zip(b) {
            for field in ["sweep", "rank", "params", "trials"] {
                assert_eq!(a[field], b[field], "{field} under --replicate {replicate}");
            }
            assert!(a["front_share"].is_null());
            assert!(b["front_share"].is_array());
            let metrics = b["metrics"].as_object().unwrap();
            assert_eq!(a["metrics"].as_object().unwrap().len(), metrics.len());
            for (name, stat) in metrics {
                assert_eq!(a["metrics"][name]["n"], stat["n"], "{name}");
                for s in ["mean", "std", "ci95"] {
                    assert!(close(&a["metrics"][name][s], &stat[s]), "{name} {s}");
                }
            }
        }
    }
}
