//! Bad grid files get a clear error naming the file, line and key, and never a panic.

use crate::support::{assert_code, text, Project};

const HEAD: &str = "[sweep]\nname = \"bad\"\ncommand = [\"echo\", \"{lr}\"]\n";

/// (name, grid text, expected `FILE:LINE` prefix line (0 = no line), substrings of the message)
fn cases() -> Vec<(&'static str, String, usize, Vec<&'static str>)> {
    vec![
        ("syntax", format!("{HEAD}[grid\nlr = [1]\n"), 4, vec!["help:"]),
        ("no sweep table", "[grid]\nlr = [1]\n".into(), 1, vec!["missing field `sweep`", "start the file with a [sweep] table"]),
        ("unknown table", format!("{HEAD}[grids]\nlr = [1]\n"), 4, vec!["grids: unknown table", "[sweep], [grid], [[zip]]", "[slurm]"]),
        ("key outside every table", format!("oops = 1\n{HEAD}"), 1, vec!["unknown key `oops` outside every table", "[sweep]"]),
        ("bad executor table", format!("{HEAD}[grid]\nlr = [1]\n[slurm]\npartition = \"gpu debug\"\n"), 7, vec!["slurm.partition", "not a single word"]),
        ("unknown executor key", format!("{HEAD}[grid]\nlr = [1]\n[slurm]\npartitoin = \"gpu\"\n"), 7, vec!["unknown field `partitoin`"]),
        ("unknown sweep key", "[sweep]\nname = \"bad\"\ncommand = [\"echo\"]\nparalel = 2\n".into(), 4, vec!["unknown field `paralel`"]),
        ("empty command", "[sweep]\nname = \"bad\"\ncommand = []\n".into(), 3, vec!["the command is empty"]),
        ("bad name", "[sweep]\nname = \"my sweep/1\"\ncommand = [\"echo\"]\n".into(), 2, vec!["invalid sweep name"]),
        ("empty axis", format!("{HEAD}[grid]\nlr = []\n"), 5, vec!["grid.lr", "the axis has no values"]),
        ("scalar axis", format!("{HEAD}[grid]\nlr = 0.1\n"), 5, vec!["an axis is a list of values", "lr = [0.1]"]),
        ("nested array", format!("{HEAD}[grid]\nlr = [[1, 2]]\n"), 5, vec!["expected a number, string or boolean"]),
        ("non-numeric range", format!("{HEAD}[grid]\nlr = {{ log = [\"a\", 1], num = 3 }}\n"), 5, vec!["range bounds must be finite numbers"]),
        ("negative log range", format!("{HEAD}[grid]\nlr = {{ log = [-1e-3, 1e-1], num = 3 }}\n"), 5, vec!["must be positive"]),
        ("range without num", format!("{HEAD}[grid]\nlr = {{ lin = [0, 1] }}\n"), 5, vec!["needs `num`"]),
        ("range num too small", format!("{HEAD}[grid]\nlr = {{ lin = [0, 1], num = 1 }}\n"), 5, vec!["`num` must be a whole number from 2"]),
        ("both lin and log", format!("{HEAD}[grid]\nlr = {{ lin = [0, 1], log = [1, 2], num = 2 }}\n"), 5, vec!["exactly one of `lin` or `log`"]),
        ("unknown range key", format!("{HEAD}[grid]\nlr = {{ lin = [0, 1], n = 2 }}\n"), 5, vec!["unknown range key `n`"]),
        ("duplicate axis", format!("{HEAD}[grid]\nlr = [1]\n[[zip]]\nlr = [1]\nbs = [2]\n"), 7, vec!["`lr` is already set by grid.lr"]),
        ("fixed shadows axis", format!("{HEAD}[grid]\nlr = [1]\n[fixed]\nlr = 2\n"), 7, vec!["`lr` is already set by grid.lr"]),
        ("duplicate key", format!("{HEAD}[grid]\nlr = [1]\nlr = [2]\n"), 6, vec!["duplicate key `lr`"]),
        ("duplicate sweep key", "[sweep]\nname = \"a\"\nname = \"b\"\ncommand = [\"echo\"]\n".into(), 3, vec!["duplicate key `name`"]),
        ("name like a flag", "[sweep]\nname = \"-rf\"\ncommand = [\"echo\"]\n".into(), 2, vec!["invalid sweep name \"-rf\"", "starting with a letter or digit"]),
        ("NUL in fixed", format!("{HEAD}[grid]\nlr = [1]\n[fixed]\nnote = \"a\\u0000b\"\n"), 7, vec!["fixed.note", "NUL byte"]),
        ("NUL in an axis", format!("{HEAD}[grid]\nlr = [\"a\\u0000\"]\n"), 5, vec!["grid.lr", "NUL byte"]),
        ("huge fixed value", format!("{HEAD}[grid]\nlr = [1]\n[fixed]\nnote = \"{}\"\n", "x".repeat(100_000)), 7, vec!["fixed.note", "100000 bytes long", "put long text in a file"]),
        ("zip of unequal lengths", format!("{HEAD}[grid]\nlr = [1]\n[[zip]]\nbs = [8, 16]\naccum = [1]\n"), 6, vec!["differ in length", "zip[0].bs has 2", "zip[0].accum has 1"]),
        ("unknown placeholder", "[sweep]\nname = \"bad\"\ncommand = [\"echo\", \"{learning_rate}\"]\n[grid]\nlr = [1]\n".into(), 3, vec!["`{learning_rate}` names no parameter", "use one of: lr"]),
        ("unclosed placeholder", "[sweep]\nname = \"bad\"\ncommand = [\"echo\", \"{lr\"]\n[grid]\nlr = [1]\n".into(), 3, vec!["argument 2", "is not closed"]),
        ("negative parallel", "[sweep]\nname = \"bad\"\ncommand = [\"echo\"]\nparallel = -2\n".into(), 4, vec!["sweep.parallel", "must be at least 1"]),
        ("zero attempts", "[sweep]\nname = \"bad\"\ncommand = [\"echo\"]\nmax_attempts = 0\n".into(), 4, vec!["sweep.max_attempts", "must be at least 1"]),
        ("bad timeout", "[sweep]\nname = \"bad\"\ncommand = [\"echo\"]\ntimeout = \"2 hours-ish\"\n".into(), 4, vec!["invalid duration", "\"90s\""]),
        ("grid over cap", format!("{HEAD}max_trials = 10\n[grid]\nlr = {{ lin = [1, 4], num = 4 }}\nbs = [1, 2, 3]\n"), 5, vec!["12 points, over the cap of 10"]),
        ("exclude unknown axis", format!("{HEAD}[grid]\nlr = [1]\n[[exclude]]\nbs = 8\n"), 7, vec!["`bs` is not a swept axis"]),
        ("exclude matches nothing", format!("{HEAD}[grid]\nlr = [1, 2]\n[[exclude]]\nlr = 3\n"), 7, vec!["3 is not a value of axis `lr`", "the axis has: 1, 2"]),
        ("empty exclude", format!("{HEAD}[grid]\nlr = [1]\n[[exclude]]\n"), 6, vec!["would drop every trial"]),
        ("reserved name", format!("{HEAD}[grid]\nlr = [1]\ntrial_id = [1]\n"), 6, vec!["reserved"]),
        ("non-finite value", format!("{HEAD}[grid]\nlr = [nan]\n"), 5, vec!["not a finite number"]),
        ("huge timeout", "[sweep]\nname = \"bad\"\ncommand = [\"echo\"]\ntimeout = \"500000000000years\"\n".into(), 4, vec!["sweep.timeout", "longer than a year"]),
        ("huge grace", "[sweep]\nname = \"bad\"\ncommand = [\"echo\"]\ngrace = \"500000000000years\"\n".into(), 4, vec!["sweep.grace", "longer than a year"]),
        ("zero timeout", "[sweep]\nname = \"bad\"\ncommand = [\"echo\"]\ntimeout = \"0s\"\n".into(), 4, vec!["sweep.timeout", "is zero", "leave the key out"]),
        ("attempts over 32 bits", "[sweep]\nname = \"bad\"\ncommand = [\"echo\"]\nmax_attempts = 4294967297\n".into(), 4, vec!["sweep.max_attempts", "must be at most 1000, got 4294967297"]),
        ("parallel over the cap", "[sweep]\nname = \"bad\"\ncommand = [\"echo\"]\nparallel = 9223372036854775807\n".into(), 4, vec!["sweep.parallel", "must be at most"]),
        ("array in fixed", format!("{HEAD}[grid]\nlr = [1]\n[fixed]\nlayers = [1, 2]\n"), 7, vec!["fixed.layers", "move the key to [grid]"]),
    ]
}

#[test]
fn malformed_grids_name_file_line_key_and_fix() {
    let p = Project::new();
    let cases = cases();
    assert!(cases.len() >= 20);
    for (name, grid, line, needles) in cases {
        p.write("bad.toml", &grid);
        let out = p.run(&["run", "bad.toml"]);
        let err = text(&out.stderr);
        assert_eq!(out.status.code(), Some(2), "case {name}: {err}");
        assert!(!err.contains("panicked"), "case {name}: {err}");
        let prefix = format!("error: bad.toml:{line}:");
        assert!(
            err.starts_with(&prefix),
            "case {name}: expected {prefix:?}, got:\n{err}"
        );
        assert!(err.contains("help:"), "case {name} gives no help:\n{err}");
        for needle in needles {
            assert!(
                err.contains(needle),
                "case {name}: {needle:?} not in:\n{err}"
            );
        }
        assert!(
            !p.db().exists(),
            "case {name}: a bad grid must not create a database"
        );
    }
}

#[test]
fn a_missing_grid_file_is_named() {
    let p = Project::new();
    let out = p.run(&["run", "nowhere.toml"]);
    assert_code(&out, 2);
    let err = text(&out.stderr);
    assert!(
        err.contains("nowhere.toml: cannot read the grid file"),
        "{err}"
    );
}

#[test]
fn every_example_grid_parses() {
    let dir = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("../../sweeps");
    let (mut seen, mut builtin) = (0, 0);
    for entry in std::fs::read_dir(&dir).unwrap() {
        let path = entry.unwrap().path();
        if path.extension().is_some_and(|e| e == "toml") {
            let grid = sweep_core::Grid::load(&path).unwrap_or_else(|e| panic!("{e}"));
            let expansion = sweep_core::expand(&grid);
            assert!(!expansion.trials.is_empty(), "{}", path.display());
            // Grids for the built-in trainer pass the checks `sweep run` makes (parameter
            // names and values, the [trainer] table and its files, read from the repository
            // root, where the README runs them).
            let root = dir.parent().unwrap();
            // A grid on a real checkpoint needs it converted first (scripts/smollm2; .ci/run
            // then runs that grid through `sweep run`, which checks it the same way), a
            // grid on public data needs it put in data/ (scripts/paper-data), and one on
            // libtorch needs the `tch` build.
            let settings = grid.trainer.as_ref().map(|t| &t.settings);
            let inputs = settings.into_iter().flat_map(|t| {
                let hf = t.get("model").and_then(|m| m.get("hf"));
                let files =
                    ["harmful_prompts", "benign_prompts", "finetune_data"].map(|k| t.get(k));
                let align = t.get("align");
                let align = ["harmful", "benign"].map(|k| align.and_then(|a| a.get(k)));
                files
                    .into_iter()
                    .chain(align)
                    .chain([hf])
                    .flatten()
                    .filter_map(|v| v.as_str())
            });
            let missing: Vec<String> = inputs
                .filter(|f| !root.join(f).exists())
                .map(str::to_string)
                .collect();
            let tch = settings
                .and_then(|t| t.get("backend"))
                .and_then(|b| b.as_str())
                == Some("tch");
            let unbuilt = tch && sweep_trainer::device::Backend::Tch.check_built().is_err();
            if !missing.is_empty() || unbuilt {
                eprintln!(
                    "{}: {missing:?} not there or libtorch not built ({unbuilt}), skipped",
                    path.display()
                );
            } else if grid.command.is_none() {
                sweep_trainer::grid::check_grid(&grid, &expansion, root)
                    .unwrap_or_else(|e| panic!("{e}"));
                builtin += 1;
            }
            seen += 1;
        }
    }
    assert!(seen >= 1, "no grids in {}", dir.display());
    assert!(
        builtin >= 1,
        "no built-in trainer grids in {}",
        dir.display()
    );
}

#[test]
fn builtin_trainer_grids_reject_unknown_parameters_before_running() {
    let p = Project::new();
    p.write(
        "b.toml",
        "[sweep]\nname = \"b\"\n[grid]\nlerning_rate = [1e-3]\n",
    );
    let out = p.run(&["run", "b.toml"]);
    assert_code(&out, 2);
    let err = text(&out.stderr);
    assert!(
        err.contains("b.toml:4: built-in trainer parameter `lerning_rate`: unknown"),
        "{err}"
    );
    assert!(
        err.contains("learning_rate") && err.contains("give [sweep] a `command`"),
        "{err}"
    );
    assert!(
        !p.db().exists(),
        "nothing is stored for a grid that cannot run"
    );
}

/// A `sweep run` refused for its flags or its environment exits 2 with the flag named, and
/// leaves the database as it found it: no sweep, no trials (on SQLite, not even the file).
#[test]
fn a_refused_run_stores_nothing() {
    let no_programs = tempfile::tempdir().unwrap();
    let cases: [(&str, &[&str], &str); 5] = [
        ("parallel 0", &["--parallel", "0"], "at least 1 trial"),
        ("empty gpu id", &["--gpus", "x,,y"], "empty id"),
        ("negative gpu", &["--gpus=-1"], "--gpus none"),
        (
            "gpus for a gpu grid, none found",
            &["--gpus", "auto"],
            "--gpus none",
        ),
        ("slurm without sbatch", &["--executor", "slurm"], "sbatch"),
    ];
    for (name, flags, needle) in cases {
        let p = Project::new();
        let gpus = if name.starts_with("gpus for") { 1 } else { 0 };
        p.write(
            "g.toml",
            &format!("[sweep]\nname = \"refused\"\ncommand = [\"true\"]\ngpus_per_trial = {gpus}\n[grid]\nx = [1, 2]\n"),
        );
        let mut args = vec!["run", "g.toml"];
        args.extend_from_slice(flags);
        // No `sbatch` and no `nvidia-smi` on PATH.
        let out = p
            .sweep(&args)
            .env("PATH", no_programs.path())
            .output()
            .unwrap();
        let err = text(&out.stderr);
        assert_code(&out, 2);
        assert!(err.contains(needle), "case {name}: {err}");
        assert!(!err.contains("panicked"), "case {name}: {err}");
        if p.on_postgres() {
            let status = text(&p.run(&["status"]).stderr);
            assert!(status.contains("holds no sweeps"), "case {name}: {status}");
        } else {
            assert!(!p.db().exists(), "case {name}: the database was created");
        }
        assert!(!p.path().join("sweep-trials").exists(), "case {name}");
    }
}

#[test]
fn a_grid_that_is_not_utf8_names_the_byte_and_its_line() {
    let p = Project::new();
    std::fs::write(
        p.path().join("latin1.toml"),
        b"[sweep]\nname = \"caf\xe9\"\ncommand = [\"echo\"]\n",
    )
    .unwrap();
    let out = p.run(&["run", "latin1.toml"]);
    let err = text(&out.stderr);
    assert_code(&out, 2);
    assert!(err.contains("latin1.toml:2:12"), "{err}");
    assert!(err.contains("byte 0xe9 is not UTF-8"), "{err}");
    assert!(err.contains("save the grid as UTF-8"), "{err}");
    assert!(!err.contains("check the path"), "{err}");
}

/// Shell completions and the manual page come from the parser itself, so every command and
/// flag is in them.
#[test]
fn the_cli_prints_completions_and_a_man_page() {
    let p = Project::new();
    for shell in ["bash", "zsh", "fish"] {
        let out = p.run(&["completions", shell]);
        assert!(out.status.success(), "{shell}: {}", text(&out.stderr));
        let script = text(&out.stdout);
        for word in ["compare", "confirm", "eval", "subject-to"] {
            assert!(script.contains(word), "{shell}: no {word}");
        }
    }
    let out = p.run(&["man"]);
    assert!(out.status.success(), "{}", text(&out.stderr));
    let page = text(&out.stdout);
    assert!(
        page.contains(".TH sweep 1") && page.contains(".SH NAME"),
        "{page}"
    );
    let out = p.run(&["completions", "tcsh"]);
    assert_eq!(
        out.status.code(),
        Some(2),
        "an unknown shell is a usage error"
    );
}
