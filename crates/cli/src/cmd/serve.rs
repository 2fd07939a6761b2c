//! `sweep serve`: the live dashboard over the store, until Ctrl-C.

use std::net::SocketAddr;
use std::path::PathBuf;

use clap::Args;
use sweep_dashboard::Dashboard;
use sweep_store::Store;

use crate::exit_codes;
use crate::location::default_trials_root;
use crate::output::say;

/// `sweep serve`.
#[derive(Debug, Args)]
pub struct ServeArgs {
    /// The address to listen on; port 0 picks a free one. Anything but a loopback address
    /// needs --token.
    #[arg(long, default_value = "127.0.0.1:8731")]
    bind: SocketAddr,
    /// The token every request must carry (the printed address holds it once; the page keeps
    /// it in a cookie). Required when other machines can reach --bind.
    #[arg(long, env = "SWEEP_SERVE_TOKEN", hide_env_values = true)]
    token: Option<String>,
    /// Where the trial directories are (default: sweep-trials/ beside the database).
    #[arg(long)]
    trials_dir: Option<PathBuf>,
}

pub async fn run(db: &str, args: ServeArgs) -> anyhow::Result<i32> {
    let token = args.token.filter(|t| !t.is_empty());
    let listener = sweep_dashboard::bind(args.bind, token.as_deref()).await?;
    let store = Store::open_read_only(db).await?;
    let address = listener.local_addr()?;
    let url = match &token {
        Some(t) => format!("http://{address}/?token={t}"),
        None => format!("http://{address}/"),
    };
    say!(
        "dashboard of {} at {url} (Ctrl-C stops it)",
        sweep_store::redact(db)
    );
    let dashboard = Dashboard {
        store,
        trials_root: args.trials_dir.unwrap_or_else(|| default_trials_root(db)),
        token,
    };
    let stop = async {
        let _ = tokio::signal::ctrl_c().await;
    };
    sweep_dashboard::serve(listener, dashboard, stop).await?;
    Ok(exit_codes::OK)
}
