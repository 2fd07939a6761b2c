//! Property-based fuzzing of the two parsers that read untrusted text: grid files and trial
//! stdout lines. Whatever they are given, they return (never panic), and a grid error always
//! says where. `cargo test` runs a modest number of cases; `scripts/fuzz` runs many more
//! (`PROPTEST_CASES`).

use std::path::Path;

use proptest::prelude::*;
use sweep_core::protocol::{parse_line, ParseOutcome};
use sweep_core::{expand, Grid};

/// Numbers as a grid might hold them, extremes included.
fn number() -> impl Strategy<Value = String> {
    prop_oneof![
        any::<i64>().prop_map(|n| n.to_string()),
        (-5i64..5).prop_map(|n| n.to_string()),
        any::<f64>().prop_map(|f| format!("{f:?}")),
        Just("nan".to_string()),
        Just("inf".to_string()),
        Just("-0.0".to_string()),
        Just("1e-300".to_string()),
        Just("4294967297".to_string()),
        Just("9223372036854775807".to_string()),
        Just("-9223372036854775808".to_string()),
    ]
}

/// Durations, well and badly formed.
fn duration() -> impl Strategy<Value = String> {
    prop_oneof![
        Just("0s".to_string()),
        Just("90s".to_string()),
        Just("2h 30m".to_string()),
        Just("500000000000years".to_string()),
        Just("18446744073709551615s".to_string()),
        Just("-1s".to_string()),
        "[0-9a-z ]{0,12}",
    ]
}

fn value() -> impl Strategy<Value = String> {
    prop_oneof![
        number(),
        "\"[a-z{}]{0,6}\"",
        Just("true".to_string()),
        Just("[]".to_string()),
        proptest::collection::vec(number(), 0..4).prop_map(|v| format!("[{}]", v.join(", "))),
        (number(), number(), number())
            .prop_map(|(a, b, n)| format!("{{ lin = [{a}, {b}], num = {n} }}")),
        (number(), number(), 0i64..40)
            .prop_map(|(a, b, n)| format!("{{ log = [{a}, {b}], num = {n} }}")),
        Just("{ lin = [0, 1] }".to_string()),
        Just("[[1, 2]]".to_string()),
    ]
}

/// One line of a grid file, from the grammar's vocabulary with random values.
fn line() -> impl Strategy<Value = String> {
    let key = prop_oneof![
        Just("lr"),
        Just("bs"),
        Just("seed"),
        Just("steps"),
        Just("trial_id"),
        Just("x"),
    ];
    prop_oneof![
        Just("[sweep]".to_string()),
        Just("[grid]".to_string()),
        Just("[[zip]]".to_string()),
        Just("[[exclude]]".to_string()),
        Just("[fixed]".to_string()),
        Just("[trainer]".to_string()),
        Just("name = \"g\"".to_string()),
        Just("command = [\"echo\", \"{lr}\", \"{bs}\"]".to_string()),
        Just("command = [\"echo\", \"{\"]".to_string()),
        Just("command = []".to_string()),
        number().prop_map(|n| format!("parallel = {n}")),
        number().prop_map(|n| format!("max_attempts = {n}")),
        number().prop_map(|n| format!("max_trials = {n}")),
        number().prop_map(|n| format!("gpus_per_trial = {n}")),
        duration().prop_map(|d| format!("timeout = \"{d}\"")),
        duration().prop_map(|d| format!("grace = \"{d}\"")),
        duration().prop_map(|d| format!("backoff = \"{d}\"")),
        (key, value()).prop_map(|(k, v)| format!("{k} = {v}")),
        "[ -~]{0,20}",
    ]
}

/// A grid file: mostly well-shaped (a [sweep] table, then axes) with random values, some
/// of it shuffled vocabulary, so both the checks and the TOML parser are exercised.
fn grid_text() -> impl Strategy<Value = String> {
    // Mostly plausible values, sometimes anything.
    let count = || prop_oneof![3 => (1i64..8).prop_map(|n| n.to_string()), 1 => number()];
    let span = || prop_oneof![3 => Just("90s".to_string()), 1 => duration()];
    let axis = || {
        prop_oneof![
            3 => proptest::collection::vec(-3i64..1000, 1..4)
                .prop_map(|v| format!("{v:?}")),
            2 => value(),
        ]
    };
    let shaped = (
        (
            proptest::option::of(count()),
            proptest::option::of(count()),
            proptest::option::of(span()),
            proptest::option::of(span()),
        ),
        (
            proptest::option::of(axis()),
            proptest::option::of(axis()),
            proptest::option::of(axis()),
        ),
        proptest::option::weighted(0.3, line()),
    )
        .prop_map(
            |((parallel, attempts, timeout, grace), (lr, bs, seed), noise)| {
                let mut text = "[sweep]\nname = \"g\"\ncommand = [\"echo\"]\n".to_string();
                for (key, value) in [("parallel", parallel), ("max_attempts", attempts)] {
                    if let Some(v) = value {
                        text.push_str(&format!("{key} = {v}\n"));
                    }
                }
                for (key, value) in [("timeout", timeout), ("grace", grace)] {
                    if let Some(v) = value {
                        text.push_str(&format!("{key} = \"{v}\"\n"));
                    }
                }
                text.push_str("[grid]\n");
                for (name, value) in [("lr", lr), ("bs", bs), ("seed", seed)] {
                    if let Some(v) = value {
                        text.push_str(&format!("{name} = {v}\n"));
                    }
                }
                text + &noise.unwrap_or_default() + "\n"
            },
        );
    let shuffled =
        proptest::collection::vec(line(), 0..14).prop_map(|lines| lines.join("\n") + "\n");
    prop_oneof![3 => shaped, 1 => shuffled]
}

proptest! {
    // A failure prints its minimal input; there is no source tree to keep regressions in
    // for an integration test, so none is written.
    #![proptest_config(ProptestConfig {
        failure_persistence: None,
        ..ProptestConfig::with_cases(
            std::env::var("PROPTEST_CASES").ok().and_then(|c| c.parse().ok()).unwrap_or(512)
        )
    })]

    #[test]
    fn grid_files_parse_or_fail_with_a_located_error(text in grid_text()) {
        match Grid::parse(Path::new("g.toml"), &text) {
            Ok(grid) => {
                let expansion = expand(&grid);
                prop_assert!(expansion.trials.len() as u64 <= grid.max_trials);
                prop_assert!(grid.max_attempts >= 1 && grid.parallel >= 1);
            }
            Err(e) => {
                let lines = text.lines().count().max(1);
                let (line, column) = e.position.expect("every grid error has a position");
                prop_assert!((1..=lines + 1).contains(&line), "line {} of {}: {}", line, lines, e);
                prop_assert!(column >= 1);
                let shown = e.to_string();
                let prefix = format!("g.toml:{line}:");
                prop_assert!(shown.starts_with(&prefix), "{}", shown);
            }
        }
    }

    #[test]
    fn arbitrary_text_never_panics_the_grid_parser(text in "\\PC{0,200}") {
        let _ = Grid::parse(Path::new("g.toml"), &text);
    }

    #[test]
    fn arbitrary_lines_never_panic_the_protocol_parser(line in "\\PC{0,300}") {
        let looks_like_event = line.trim().starts_with('{') && line.contains("\"event\"");
        match parse_line(&line) {
            ParseOutcome::Output => prop_assert!(!looks_like_event),
            ParseOutcome::Event(_) | ParseOutcome::Lenient { .. } => prop_assert!(looks_like_event),
            ParseOutcome::Invalid(why) => prop_assert!(looks_like_event && !why.is_empty()),
        }
    }

    #[test]
    fn event_shaped_lines_are_events_or_say_why_not(
        kind in prop_oneof![Just("metric"), Just("result"), Just("checkpoint"), Just("other")],
        step in prop_oneof![any::<i64>().prop_map(|n| n.to_string()), Just("1.5".into()), Just("\"3\"".into())],
        value in prop_oneof![number(), Just("NaN".into()), Just("-Infinity".into()), Just("null".into()), Just("\"x\"".into())],
        name in "[a-z_\"\\\\]{0,8}",
        extra in prop_oneof![Just(String::new()), Just(",\"junk\":1".into()), Just(",\"params\":{\"lr\":[1]}".into())],
    ) {
        let line = match kind {
            "metric" => format!("{{\"event\":\"metric\",\"step\":{step},\"name\":\"{name}\",\"value\":{value}{extra}}}"),
            "result" => format!("{{\"event\":\"result\",\"metrics\":{{\"{name}\":{value}}}{extra}}}"),
            "checkpoint" => format!("{{\"event\":\"checkpoint\",\"step\":{step}{extra}}}"),
            _ => format!("{{\"event\":\"{name}\"{extra}}}"),
        };
        match parse_line(&line) {
            ParseOutcome::Output => prop_assert!(false, "an event-shaped line was taken as output: {}", line),
            ParseOutcome::Invalid(why) => prop_assert!(!why.is_empty()),
            ParseOutcome::Event(_) | ParseOutcome::Lenient { .. } => {}
        }
    }
}

/// The grid generator reaches both outcomes, and grids with swept axes among those that
/// parse: a generator that only ever made syntax errors would fuzz nothing past the TOML
/// parser.
#[test]
fn the_grid_generator_reaches_past_the_syntax() {
    use proptest::strategy::ValueTree;
    use proptest::test_runner::TestRunner;
    let mut runner = TestRunner::deterministic();
    let strategy = grid_text();
    let (mut ok, mut with_axes, mut located) = (0, 0, 0);
    for _ in 0..2000 {
        let text = strategy.new_tree(&mut runner).unwrap().current();
        match Grid::parse(Path::new("g.toml"), &text) {
            Ok(grid) => {
                ok += 1;
                with_axes += usize::from(!grid.axes.is_empty());
            }
            Err(e) => located += usize::from(e.position.is_some_and(|(line, _)| line > 3)),
        }
    }
    assert!(ok >= 100, "{ok} of 2000 generated grids parse");
    assert!(with_axes >= 20, "{with_axes} parsed grids sweep an axis");
    assert!(located >= 100, "{located} errors lie past the header");
}
