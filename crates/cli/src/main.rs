//! `sweep`: the thin binary. Parses arguments, runs one subcommand, maps the outcome to an
//! exit code, and prints any error chain once.

mod cmd;
mod exit_codes;
mod location;
mod output;
mod progress;

use clap::Parser;

#[global_allocator]
static ALLOCATOR: mimalloc::MiMalloc = mimalloc::MiMalloc;

fn main() {
    let cli = cmd::Cli::parse();
    if let Some(code) = cli.run_guard() {
        std::process::exit(code);
    }
    // RUST_LOG=debug asks about sweep, not for every SQL statement: sqlx stays at warn
    // unless RUST_LOG names it.
    let asked = std::env::var("RUST_LOG").unwrap_or_default();
    let mut filter = tracing_subscriber::EnvFilter::try_from_default_env()
        .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new("info"));
    if !asked.contains("sqlx") {
        filter = filter.add_directive("sqlx=warn".parse().expect("a valid directive"));
    }
    // Colour only for a terminal, and never under NO_COLOR (no-color.org).
    let color = std::io::IsTerminal::is_terminal(&std::io::stderr())
        && std::env::var_os("NO_COLOR").is_none_or(|v| v.is_empty());
    tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_writer(std::io::stderr)
        .with_ansi(color)
        .with_target(false)
        // Its own complaint about a closed stderr would be an `eprintln!`, which panics.
        .log_internal_errors(false)
        .init();
    let runtime = match tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
    {
        Ok(rt) => rt,
        Err(e) => {
            output::say!("error: cannot start the async runtime: {e}");
            std::process::exit(exit_codes::ERROR);
        }
    };
    let code = match runtime.block_on(cli.run()) {
        Ok(code) => code,
        // The reader of our output has read all it wanted.
        Err(e) if output::is_broken_pipe(&e) => exit_codes::OK,
        Err(e) => {
            output::say!("error: {e:#}");
            exit_codes::ERROR
        }
    };
    std::process::exit(code);
}
