//! `sweep serve`: a live, read-only web dashboard over a sweep store (SQLite or PostgreSQL).
//!
//! The server answers a small JSON API (`api`) that a single page (`assets/`) draws: the
//! sweeps, a sweep's progress and time to finish, its Pareto front with colour by any parameter,
//! parallel coordinates, learning curves, a trial table paged and sorted by the database, and a
//! trial's attempts, logs and answers beside the base model's. It never writes to the store,
//! and everything it serves is built into the binary, so it works offline.

mod answers;
mod api;
mod assets;
mod auth;
mod error;
mod front;
mod json;
mod pace;
mod table;

use std::net::SocketAddr;
use std::path::PathBuf;
use std::sync::Arc;

use axum::Router;
use sweep_store::Store;

pub use error::DashboardError;

/// What the dashboard serves, and to whom.
pub struct Dashboard {
    /// The store, opened read-only.
    pub store: Store,
    /// Where the trial directories are (logs, answers).
    pub trials_root: PathBuf,
    /// The token every request must carry; `None` only on a loopback address.
    pub token: Option<String>,
}

/// What every request handler shares.
struct Shared {
    store: Store,
    trials_root: PathBuf,
    fronts: front::FrontCache,
    pace: pace::Pace,
}

/// Listens on `addr`, refusing an address other machines can reach unless a token guards it.
pub async fn bind(
    addr: SocketAddr,
    token: Option<&str>,
) -> Result<tokio::net::TcpListener, DashboardError> {
    if !addr.ip().is_loopback() && token.is_none_or(str::is_empty) {
        return Err(DashboardError::TokenRequired(addr));
    }
    tokio::net::TcpListener::bind(addr)
        .await
        .map_err(|e| DashboardError::Bind(addr, e))
}

/// The dashboard's routes: the page, its assets and the API, behind the token if there is one.
pub fn router(dashboard: Dashboard) -> Router {
    routes(
        shared(dashboard.store, dashboard.trials_root),
        dashboard.token,
    )
}

fn shared(store: Store, trials_root: PathBuf) -> Arc<Shared> {
    Arc::new(Shared {
        store,
        trials_root,
        fronts: front::FrontCache::default(),
        pace: pace::Pace::default(),
    })
}

fn routes(shared: Arc<Shared>, token: Option<String>) -> Router {
    let routes = api::routes(shared).merge(assets::routes());
    match token {
        Some(token) => auth::guard(routes, token),
        None => routes,
    }
}

/// Serves `dashboard` on `listener` until `shutdown` resolves. Each sweep's default front is
/// computed as the server starts, so the first page over a large sweep finds it ready.
pub async fn serve(
    listener: tokio::net::TcpListener,
    dashboard: Dashboard,
    shutdown: impl std::future::Future<Output = ()> + Send + 'static,
) -> Result<(), DashboardError> {
    let shared = shared(dashboard.store, dashboard.trials_root);
    let warming = tokio::spawn(api::prewarm(shared.clone()));
    let served = axum::serve(listener, routes(shared, dashboard.token))
        .with_graceful_shutdown(shutdown)
        .await
        .map_err(DashboardError::Serve);
    warming.abort();
    served
}
