//! The subcommands, one module each.

mod compare;
mod confirm;
mod eval;
mod export;
mod generate;
mod logs;
mod report;
mod run;
mod serve;
mod status;
mod trial;

use clap::{Parser, Subcommand};

/// Sweep fine-tuning settings and record each trial's safety and utility metrics.
#[derive(Debug, Parser)]
#[command(name = "sweep", version, about, long_about = None)]
pub struct Cli {
    /// The database: a SQLite file path (or sqlite:// URL), or a postgres:// URL of a server
    /// that every node of a cluster reaches.
    #[arg(long, global = true, env = "SWEEP_DB", default_value = "sweep.db")]
    db: String,
    #[command(subcommand)]
    command: Command,
}

#[derive(Debug, Subcommand)]
enum Command {
    /// Run (or resume) the sweep a grid file describes.
    Run(run::RunArgs),
    /// Resume a sweep from the grid stored in the database.
    Resume(run::ResumeArgs),
    /// Show trial counts by state and a per-trial table.
    Status(status::StatusArgs),
    /// Print a trial's attempt logs (stdout and stderr), found by its id.
    Logs(logs::LogsArgs),
    /// Export trials to CSV.
    Export(export::ExportArgs),
    /// Serve a live, read-only dashboard of the store's sweeps in the browser.
    ///
    /// The Pareto front with colour by any parameter, parallel coordinates, learning curves,
    /// a trial table sorted and paged by the database, and each trial's attempts, logs and
    /// answers beside the base model's; it follows running sweeps as trials finish.
    Serve(serve::ServeArgs),
    /// Rank configurations by non-dominated sorting: the safety/utility Pareto front.
    Report(report::ReportArgs),
    /// Compare two configurations prompt by prompt, seed by seed.
    ///
    /// Paired verdicts over the same seeds, an exact McNemar test and a two-level bootstrap
    /// interval (seeds, then prompts) for the difference in a rate.
    Compare(compare::CompareArgs),
    /// Run the configuration `report --best` chooses again on new seeds, and report it there.
    ///
    /// The chosen configuration (and a baseline) on seeds no trial used, as a sweep of their
    /// own (resumable), reported on those seeds only: no winner's curse.
    Confirm(confirm::ConfirmArgs),
    /// Train (once) and cache the safety-aligned base model of the built-in trainer.
    Base(trial::BaseArgs),
    /// Evaluate a Hugging Face checkpoint as a built-in trial would.
    ///
    /// Safety, over-refusal, benchmarks and the judge of a `[trainer]` table: the last step of
    /// a trial script that trains with its own code.
    Eval(eval::EvalArgs),
    /// Greedy answers of a Hugging Face checkpoint to prompts, through its chat template.
    Generate(generate::GenerateArgs),
    /// Print a shell's completion script for sweep (bash, zsh, fish, elvish, powershell).
    ///
    /// e.g. `sweep completions bash > ~/.local/share/bash-completion/completions/sweep`.
    Completions {
        /// The shell.
        shell: clap_complete::Shell,
    },
    /// Print sweep's manual page (roff): `sweep man > sweep.1 && man ./sweep.1`.
    Man,
    /// Run one built-in trial (started by `sweep run` for grids without a command).
    #[command(hide = true)]
    Trial(trial::TrialArgs),
    /// Watch a run's attempts and take their process groups down if the orchestrator dies
    /// (started by `sweep run`, once).
    #[command(hide = true)]
    Guard(GuardArgs),
}

/// `sweep guard`: the guard's arguments (`--grace-ms MS`), read by
/// `sweep_scheduler::guard::GuardArgs`.
#[derive(Debug, clap::Args)]
pub struct GuardArgs {
    /// `--grace-ms MS`
    #[arg(trailing_var_arg = true, allow_hyphen_values = true, required = true)]
    args: Vec<String>,
}

impl Cli {
    /// Runs `sweep guard`, if that is the command, and returns its exit code: before the
    /// async runtime starts, which the guard has no use for.
    pub fn run_guard(&self) -> Option<i32> {
        let Command::Guard(args) = &self.command else {
            return None;
        };
        Some(sweep_scheduler::guard::main(args.args.iter().cloned()))
    }

    /// Runs the chosen subcommand; returns the process exit code.
    pub async fn run(self) -> anyhow::Result<i32> {
        match self.command {
            Command::Run(args) => run::run(&self.db, args).await,
            Command::Resume(args) => run::resume(&self.db, args).await,
            Command::Status(args) => status::run(&self.db, args).await,
            Command::Export(args) => export::run(&self.db, args).await,
            Command::Logs(args) => logs::run(&self.db, args).await,
            Command::Serve(args) => serve::run(&self.db, args).await,
            Command::Report(args) => report::run(&self.db, args).await,
            Command::Compare(args) => compare::run(&self.db, args).await,
            Command::Confirm(args) => confirm::run(&self.db, args).await,
            Command::Base(args) => tokio::task::block_in_place(|| trial::base(args)),
            Command::Eval(args) => tokio::task::block_in_place(|| eval::run(args)),
            Command::Generate(args) => tokio::task::block_in_place(|| generate::run(args)),
            Command::Trial(args) => tokio::task::block_in_place(|| trial::trial(args)),
            Command::Completions { shell } => {
                let mut command = <Cli as clap::CommandFactory>::command();
                clap_complete::generate(shell, &mut command, "sweep", &mut std::io::stdout());
                Ok(crate::exit_codes::OK)
            }
            Command::Man => {
                let command = <Cli as clap::CommandFactory>::command();
                clap_mangen::Man::new(command).render(&mut std::io::stdout())?;
                Ok(crate::exit_codes::OK)
            }
            Command::Guard(_) => unreachable!("`sweep guard` runs before the runtime starts"),
        }
    }
}

/// `--replicate`, shared by `report` and `export`.
#[derive(Debug, clap::Args)]
pub struct ReplicateArgs {
    /// The parameters whose values are replicates, averaged into one configuration
    /// (`seed,base_seed` when each seed fine-tunes a base model of its own).
    #[arg(
        long = "replicate",
        value_delimiter = ',',
        value_name = "PARAM,...",
        default_value = "seed"
    )]
    pub names: Vec<String>,
}
