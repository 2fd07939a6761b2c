//! Checks a grid meant for the built-in trial before anything is stored or run, so a typo
//! fails once, at `sweep run`, naming the file, line and grid point, and not in every trial.

use std::path::Path;

use sweep_core::value::params_to_json;
use sweep_core::{Expansion, Grid};

use crate::config::TrainerConfig;
use crate::judge::Judge;
use crate::setup::Setup;
use crate::sizes::ModelSource;
use crate::spec::{check_names, TrialParamError, TrialSpec};

/// Why a grid cannot run the built-in trial.
#[derive(Debug, thiserror::Error)]
pub enum GridError {
    /// A swept or fixed name the trial does not take.
    #[error("{path}:{line}: {error}")]
    Name {
        /// The grid file.
        path: String,
        /// Where the name is given (1 when it cannot be found).
        line: usize,
        /// Which name.
        error: crate::spec::TrialParamError,
    },
    /// The `[trainer]` table is malformed, or names data files that cannot be read.
    #[error("{path}:{line}: {message}")]
    Trainer {
        /// The grid file.
        path: String,
        /// Line of the `[trainer]` table.
        line: usize,
        /// What is wrong and what to do.
        message: String,
    },
    /// One grid point has a value the trial refuses (a negative learning rate, say).
    #[error("{path}:{line}: {error} (in the point {point})")]
    Point {
        /// The grid file.
        path: String,
        /// Where the parameter at fault is given (1 when it cannot be found).
        line: usize,
        /// The point's parameters as JSON.
        point: String,
        /// What is wrong with it.
        error: crate::spec::TrialParamError,
    },
}

/// Checks the names, the `[trainer]` table (with its data files, read relative to
/// `workdir`, where trials run) and every point of `expansion`.
pub fn check_grid(grid: &Grid, expansion: &Expansion, workdir: &Path) -> Result<(), GridError> {
    let path = grid.path.display().to_string();
    let names = grid
        .swept_names()
        .into_iter()
        .chain(grid.fixed.keys().map(String::as_str));
    let line_of = |name: &str| grid.param_line(name).unwrap_or(1);
    check_names(names).map_err(|error| GridError::Name {
        path: path.clone(),
        line: line_of(&error.name),
        error,
    })?;
    // The model's shapes, for the LoRA ranks (the miniature's default without a table).
    let mut arch = crate::model::ModelConfig::default().arch();
    if let Some(table) = &grid.trainer {
        // Each complaint names the line of the key at fault where it is known.
        let at = |key: Option<&str>, message: String| GridError::Trainer {
            path: path.clone(),
            line: key.map_or(table.line, |k| grid.trainer_key_line(k)),
            message,
        };
        let config = TrainerConfig::from_json(&table.settings.to_string())
            .map_err(|e| at(e.key(None).as_deref(), e.to_string()))?;
        let help = |key: Option<&str>, e: &dyn std::fmt::Display| {
            at(
                key,
                format!(
                    "{e}\nhelp: relative paths are read from {}",
                    workdir.display()
                ),
            )
        };
        if let Some(judge) = Judge::from_config(
            config.judge.as_ref(),
            config.judge_name.as_deref(),
            config.judge_timeout,
        ) {
            judge
                .find_program(workdir)
                .map_err(|e| at(Some("judge"), format!("[trainer] {e}")))?;
        }
        let relative = config.relative_to(workdir);
        let setup = Setup::new(relative.clone())
            .map_err(|e| help(e.key(Some(&relative)).as_deref(), &e))?;
        let names_base =
            grid.swept_names().contains(&"base_seed") || grid.fixed.contains_key("base_seed");
        if names_base && !setup.config.trains_its_base() {
            return Err(GridError::Name {
                path: path.clone(),
                line: line_of("base_seed"),
                error: crate::spec::base_seed_needs_a_trained_base(),
            });
        }
        if let Some(file) = &setup.config.base_model {
            crate::base::check_base_file(file, &setup.config).map_err(|e| {
                help(
                    Some("base_model"),
                    &format!("base_model {}: {}", e.0.display(), e.1),
                )
            })?;
        }
        // A checkpoint that cannot load is refused now, from its headers, not by every trial.
        arch = match &setup.config.model {
            ModelSource::Hf(hf) => {
                crate::hf::check(&hf.dir)
                    .map_err(|e| help(Some("model.hf"), &format!("[trainer.model] hf: {e}")))?
                    .arch
            }
            ModelSource::Builtin(miniature) => miniature.arch(),
        };
    }
    for trial in &expansion.trials {
        let mut all = trial.params.clone();
        all.extend(grid.fixed.clone());
        let json: serde_json::Map<String, serde_json::Value> =
            all.iter().map(|(k, v)| (k.clone(), v.to_json())).collect();
        let point = |error: TrialParamError| GridError::Point {
            path: path.clone(),
            line: line_of(&error.name),
            point: params_to_json(&trial.params),
            error,
        };
        let spec = TrialSpec::from_params(&json).map_err(point)?;
        spec.check_model(&arch).map_err(point)?;
    }
    Ok(())
}
