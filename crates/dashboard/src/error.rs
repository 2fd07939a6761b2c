//! What can go wrong serving the dashboard, and what one request can get wrong.

use std::net::SocketAddr;

use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use axum::Json;
use sweep_report::OpenError;
use sweep_store::StoreError;

/// Why the dashboard cannot start or stopped.
#[derive(Debug, thiserror::Error)]
pub enum DashboardError {
    /// A non-loopback address without a token.
    #[error(
        "{0} is reachable from other machines, so the dashboard needs a token: give --token \
         (or SWEEP_SERVE_TOKEN), or bind 127.0.0.1 to keep it on this machine"
    )]
    TokenRequired(SocketAddr),
    /// The address cannot be listened on.
    #[error("cannot listen on {0}: {1} (is another server using it? try --bind 127.0.0.1:0)")]
    Bind(SocketAddr, #[source] std::io::Error),
    /// The server failed while running.
    #[error("the dashboard stopped: {0}")]
    Serve(#[source] std::io::Error),
}

/// A request's failure, answered as JSON `{"error": "..."}` with its status.
#[derive(Debug, thiserror::Error)]
pub(crate) enum ApiError {
    /// No such sweep, trial or file.
    #[error("{0}")]
    NotFound(String),
    /// The query cannot be answered as asked.
    #[error("{0}")]
    BadRequest(String),
    /// The store failed.
    #[error(transparent)]
    Store(#[from] StoreError),
}

impl From<OpenError> for ApiError {
    fn from(e: OpenError) -> ApiError {
        match e {
            OpenError::Store(e) => ApiError::Store(e),
            OpenError::Filter(e) => ApiError::BadRequest(e.to_string()),
        }
    }
}

impl IntoResponse for ApiError {
    fn into_response(self) -> Response {
        let status = match &self {
            ApiError::NotFound(_) => StatusCode::NOT_FOUND,
            ApiError::BadRequest(_) => StatusCode::BAD_REQUEST,
            ApiError::Store(StoreError::UnknownSweep(..)) => StatusCode::NOT_FOUND,
            ApiError::Store(_) => StatusCode::INTERNAL_SERVER_ERROR,
        };
        if status == StatusCode::INTERNAL_SERVER_ERROR {
            tracing::warn!("dashboard: {self}");
        }
        (
            status,
            Json(serde_json::json!({ "error": self.to_string() })),
        )
            .into_response()
    }
}
