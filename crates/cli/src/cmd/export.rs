//! `sweep export --csv FILE|-`.

use std::fs::File;
use std::io::{BufWriter, Write};
use std::path::PathBuf;

use anyhow::Context;
use clap::Args;
use sweep_report::write_csv;
use sweep_store::Store;

use crate::exit_codes;

/// `sweep export`.
#[derive(Debug, Args)]
pub struct ExportArgs {
    /// Export one sweep (default: every sweep).
    name: Option<String>,
    /// Write CSV to this file, or `-` for stdout.
    #[arg(long, value_name = "FILE")]
    csv: PathBuf,
}

pub async fn run(db: &str, args: ExportArgs) -> anyhow::Result<i32> {
    let store = Store::open_existing(db).await?;
    let sweep_id = match &args.name {
        Some(name) => Some(store.sweep(name).await?.id),
        None => None,
    };
    let rows = store.trial_rows(sweep_id).await?;
    store.close().await;
    let out: Box<dyn Write> = if args.csv.as_os_str() == "-" {
        Box::new(std::io::stdout().lock())
    } else {
        let file = File::create(&args.csv)
            .with_context(|| format!("cannot create {}", args.csv.display()))?;
        Box::new(file)
    };
    write_csv(&rows, BufWriter::new(out))?;
    Ok(exit_codes::OK)
}
