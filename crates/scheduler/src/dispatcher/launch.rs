//! From a claimed trial to a running attempt: its command line, its environment (the
//! protocol's `SWEEP_*` variables), its directory.

use std::path::Path;

use super::*;

impl<E: Executor> Dispatcher<'_, E> {
    /// Starts an attempt of `claimed` on `gpus`, under the supervisor.
    pub(super) fn launch(
        &mut self,
        claimed: Claimed,
        gpus: Vec<String>,
    ) -> Result<(), SchedulerError> {
        let sweep_dir = self.config.trials_root.join(&self.sweep.name);
        let trial_dir = sweep_dir.join(&claimed.id);
        std::fs::create_dir_all(&trial_dir)
            .map_err(|e| SchedulerError::TrialDir(trial_dir.clone(), e))?;
        let mut all = claimed.params.clone();
        all.extend(self.grid.fixed.clone());
        let trial_dir_text = trial_dir.display().to_string();
        let attempt_text = claimed.attempt.to_string();
        let argv = match &self.grid.command {
            Some(template) => template.render(|name| match name {
                "trial_id" => Some(claimed.id.clone()),
                "trial_dir" => Some(trial_dir_text.clone()),
                "attempt" => Some(attempt_text.clone()),
                other => all.get(other).map(ToString::to_string),
            }),
            // The built-in trainer is this same binary's hidden `trial` subcommand.
            None => vec![
                self.config.builtin_trial.display().to_string(),
                "trial".to_string(),
            ],
        };
        let mut env = vec![
            (env::SWEEP.to_string(), self.sweep.name.clone()),
            (env::TRIAL_ID.to_string(), claimed.id.clone()),
            (env::TRIAL_DIR.to_string(), trial_dir_text.clone()),
            (env::PARAMS.to_string(), params_to_json(&all)),
            (env::ATTEMPT.to_string(), attempt_text.clone()),
            // The `sweep` binary itself, for a command's trial to end with `sweep eval`.
            (
                env::BIN.to_string(),
                self.config.builtin_trial.display().to_string(),
            ),
            (process::RUNNER_VAR.to_string(), self.runner_id.clone()),
            (
                env::RESUME.to_string(),
                if claimed.attempt > 1 { "1" } else { "0" }.to_string(),
            ),
            self.axes.var(self.grid, &claimed.params, &sweep_dir)?,
            (
                oom::SPLIT_VAR.to_string(),
                oom::split_after(claimed.out_of_memory).to_string(),
            ),
        ];
        if let Some(devices) = self.executor.visible_devices(&gpus) {
            env.push(("CUDA_VISIBLE_DEVICES".to_string(), devices));
        }
        if let Some(trainer) = &self.grid.trainer {
            env.push((env::TRAINER.to_string(), trainer.settings.to_string()));
        }
        let launch = Launch {
            trial_id: claimed.id.clone(),
            attempt: claimed.attempt,
            argv,
            env,
            workdir: self.config.workdir.clone(),
            log_dir: trial_dir.join("logs"),
            timeout: self.grid.timeout,
            grace: self.grid.grace,
        };
        let resume = if claimed.attempt > 1 {
            " (resuming)"
        } else {
            ""
        };
        let on = if gpus.is_empty() {
            String::new()
        } else {
            format!(" on GPU {}", gpus.join(","))
        };
        tracing::debug!(
            "start {} attempt {}{on}{resume}",
            claimed.id,
            claimed.attempt
        );
        supervisor::spawn(
            self.executor.clone(),
            launch,
            self.tx.clone(),
            self.stop.clone(),
        );
        self.running.insert(
            (claimed.id, claimed.attempt),
            Running {
                job: None,
                gpus,
                params: claimed.params,
                results: BTreeMap::new(),
            },
        );
        self.progress.running = self.running.len() as u64;
        Ok(())
    }
}

/// `SWEEP_AXES` for each trial, computed once for each combination of the zipped
/// parameters' values (the only ones it depends on): an axis can have thousands of values,
/// and then working it out again for every trial costs more than starting the trial.
#[derive(Default)]
pub(super) struct AxesMemo {
    by_zipped: HashMap<String, (String, String)>,
}

/// The longest `SWEEP_AXES` passed in the environment; a longer one goes into a file
/// (`SWEEP_AXES_FILE`), as Linux refuses any one variable over 128 KiB.
const AXES_IN_ENV: usize = 64 * 1024;

impl AxesMemo {
    /// The variable that gives the trial with `params` its axes: `SWEEP_AXES`,
    /// `{"name": [values...], ...}` for every swept parameter, as far as the axes zipped with
    /// it allow (see [`Grid::axis_values_beside`]); or, where that is too long,
    /// `SWEEP_AXES_FILE`, naming a file under `dir` that holds it.
    pub(super) fn var(
        &mut self,
        grid: &Grid,
        params: &Params,
        dir: &Path,
    ) -> Result<(String, String), SchedulerError> {
        let zipped: Params = grid
            .zipped_names()
            .filter_map(|name| Some((name.to_string(), params.get(name)?.clone())))
            .collect();
        let key = params_to_json(&zipped);
        if let Some(var) = self.by_zipped.get(&key) {
            return Ok(var.clone());
        }
        let axes: serde_json::Map<String, serde_json::Value> = grid
            .axis_values_beside(&zipped)
            .into_iter()
            .map(|(name, values)| (name, values.iter().map(|v| v.to_json()).collect()))
            .collect();
        let json = serde_json::Value::Object(axes).to_string();
        let var = if json.len() <= AXES_IN_ENV {
            (env::AXES.to_string(), json)
        } else {
            // Named by its content, so runners sharing the sweep write the same file, and
            // written whole before it is renamed into place.
            let name = &TrialKey::of_canonical(&json).to_hex()[..16];
            let path = dir.join(format!(".axes-{name}.json"));
            let partial = dir.join(format!(".axes-{name}.{}.partial", std::process::id()));
            std::fs::create_dir_all(dir)
                .and_then(|()| std::fs::write(&partial, &json))
                .and_then(|()| std::fs::rename(&partial, &path))
                .map_err(|e| SchedulerError::AxesFile(path.clone(), e))?;
            (env::AXES_FILE.to_string(), path.display().to_string())
        };
        self.by_zipped.insert(key, var.clone());
        Ok(var)
    }
}
