//! A sweep derived from another for fresh-seed confirmation: the same command, trainer and
//! `[fixed]` values, only the given configurations, each on new seeds. Written as a grid file
//! of its own, so it runs, resumes and reports like any sweep, and the original's trials are
//! never touched or run again.

use crate::value::{ParamValue, Params};

/// The grid text of `source` (a grid file's text) reduced to `configs` (their swept
/// parameters, replicates left out), each crossed with `seed_name = seeds`, named `name`.
pub fn confirmation_grid(
    source: &str,
    name: &str,
    configs: &[Params],
    seed_name: &str,
    seeds: &[i64],
) -> Result<String, String> {
    let mut table: toml::Table =
        toml::from_str(source).map_err(|e| format!("the stored grid does not parse: {e}"))?;
    let Some(first) = configs.first() else {
        return Err("no configuration to confirm".into());
    };
    for (i, c) in configs.iter().enumerate() {
        let (a, b): (Vec<&String>, Vec<&String>) = (first.keys().collect(), c.keys().collect());
        if a != b {
            return Err(format!(
                "configuration {} has parameters {b:?}, the first {a:?}; they cannot share a grid",
                i + 1
            ));
        }
    }
    match table.get_mut("sweep").and_then(toml::Value::as_table_mut) {
        Some(sweep) => {
            sweep.insert("name".into(), toml::Value::String(name.into()));
        }
        None => return Err("the stored grid has no [sweep] table".into()),
    }
    for key in ["grid", "zip", "exclude"] {
        table.remove(key);
    }
    if let Some(fixed) = table.get_mut("fixed").and_then(toml::Value::as_table_mut) {
        fixed.remove(seed_name);
    }
    let mut grid = toml::Table::new();
    grid.insert(
        seed_name.into(),
        toml::Value::Array(seeds.iter().map(|&s| toml::Value::Integer(s)).collect()),
    );
    table.insert("grid".into(), toml::Value::Table(grid));
    let mut zip = toml::Table::new();
    for key in first.keys() {
        let values = configs.iter().map(|c| toml_value(&c[key])).collect();
        zip.insert(key.clone(), toml::Value::Array(values));
    }
    if !zip.is_empty() {
        table.insert(
            "zip".into(),
            toml::Value::Array(vec![toml::Value::Table(zip)]),
        );
    }
    Ok(format!(
        "# Fresh-seed confirmation, written by `sweep confirm`: the configurations below, each on\n\
         # seeds no trial of the original sweep used.\n{}",
        toml::to_string(&table).map_err(|e| e.to_string())?
    ))
}

fn toml_value(v: &ParamValue) -> toml::Value {
    match v {
        ParamValue::Bool(b) => toml::Value::Boolean(*b),
        ParamValue::Int(i) => toml::Value::Integer(*i),
        ParamValue::Float(f) => toml::Value::Float(*f),
        ParamValue::Str(s) => toml::Value::String(s.clone()),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::{expand, Grid};

    const SOURCE: &str = r#"
[sweep]
name = "paper"
parallel = 2

[grid]
learning_rate = [1e-5, 1e-4]
seed = [0, 1]

[[zip]]
steps = [100, 200]
ema_decay = [0, 0.99]

[[exclude]]
learning_rate = 1e-4
steps = 200

[fixed]
batch_size = 8

[trainer]
eval_harmful = 64
"#;

    #[test]
    fn only_the_configurations_on_the_new_seeds() {
        let config = |lr: f64, steps: i64, decay: ParamValue| -> Params {
            [
                ("learning_rate".to_string(), ParamValue::Float(lr)),
                ("steps".to_string(), ParamValue::Int(steps)),
                ("ema_decay".to_string(), decay),
            ]
            .into_iter()
            .collect()
        };
        let chosen = config(1e-5, 200, ParamValue::Float(0.99));
        let baseline = config(1e-4, 100, ParamValue::Int(0));
        let text = confirmation_grid(
            SOURCE,
            "paper-confirm",
            &[chosen.clone(), baseline.clone()],
            "seed",
            &[2, 3, 4],
        )
        .unwrap();
        let grid = Grid::parse(std::path::Path::new("c.toml"), &text).unwrap();
        assert_eq!(grid.name, "paper-confirm");
        assert_eq!(grid.parallel, 2);
        assert!(grid.trainer.is_some());
        assert_eq!(grid.fixed["batch_size"], ParamValue::Int(8));
        let trials = expand(&grid).trials;
        assert_eq!(trials.len(), 6);
        for t in &trials {
            let mut config = t.params.clone();
            let seed = config.remove("seed").unwrap();
            assert!([2, 3, 4].map(ParamValue::Int).contains(&seed), "{seed:?}");
            // Ints stay ints (the same trial key as the original's spelling).
            assert!(config == chosen || config == baseline, "{config:?}");
        }
        let one = confirmation_grid(SOURCE, "c", &[chosen], "seed", &[7]).unwrap();
        let grid = Grid::parse(std::path::Path::new("c.toml"), &one).unwrap();
        assert_eq!(expand(&grid).trials.len(), 1);
    }

    #[test]
    fn configurations_must_share_their_parameters() {
        let a: Params = [("lr".to_string(), ParamValue::Float(1e-5))].into();
        let b: Params = [("steps".to_string(), ParamValue::Int(3))].into();
        assert!(confirmation_grid(SOURCE, "c", &[a, b], "seed", &[1]).is_err());
        assert!(confirmation_grid(SOURCE, "c", &[], "seed", &[1]).is_err());
    }
}
