//! The token that guards a dashboard other machines can reach. A request carries it as
//! `Authorization: Bearer TOKEN`, as the `sweep_token` cookie, or once as `?token=TOKEN` (the
//! address `sweep serve` prints), which answers with the cookie so the page's own requests
//! carry it from then on.

use axum::extract::Request;
use axum::http::{header, HeaderValue, StatusCode};
use axum::middleware::{self, Next};
use axum::response::{IntoResponse, Response};
use axum::Router;

const COOKIE: &str = "sweep_token";

/// `routes`, answering 401 to any request without `token`.
pub(crate) fn guard(routes: Router, token: String) -> Router {
    routes.layer(middleware::from_fn(move |request: Request, next: Next| {
        let token = token.clone();
        async move { check(&token, request, next).await }
    }))
}

async fn check(token: &str, request: Request, next: Next) -> Response {
    let headers = request.headers();
    let bearer = headers
        .get(header::AUTHORIZATION)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.strip_prefix("Bearer "));
    let cookie = headers
        .get_all(header::COOKIE)
        .iter()
        .filter_map(|v| v.to_str().ok())
        .flat_map(|v| v.split(';'))
        .filter_map(|c| c.trim().strip_prefix(COOKIE)?.strip_prefix('='))
        .find(|c| same(c, token));
    let query = request
        .uri()
        .query()
        .into_iter()
        .flat_map(|q| q.split('&'))
        .filter_map(|p| p.strip_prefix("token="))
        .find(|q| same(q, token));
    if bearer.is_some_and(|b| same(b, token)) || cookie.is_some() {
        return next.run(request).await;
    }
    if query.is_some() {
        let mut response = next.run(request).await;
        let set = format!("{COOKIE}={token}; HttpOnly; SameSite=Strict; Path=/");
        if let Ok(value) = HeaderValue::from_str(&set) {
            response.headers_mut().append(header::SET_COOKIE, value);
        }
        return response;
    }
    (
        StatusCode::UNAUTHORIZED,
        "this dashboard needs its token: open the address `sweep serve` printed (with ?token=…)\n",
    )
        .into_response()
}

/// Compares in time that does not depend on where the two differ.
fn same(given: &str, token: &str) -> bool {
    given.len() == token.len()
        && given
            .bytes()
            .zip(token.bytes())
            .fold(0u8, |acc, (a, b)| acc | (a ^ b))
            == 0
}

#[cfg(test)]
mod tests {
    use super::same;

    #[test]
    fn only_the_same_token_is_the_same() {
        assert!(same("abc", "abc"));
        assert!(!same("abd", "abc"));
        assert!(!same("ab", "abc"));
        assert!(!same("", "abc"));
    }
}
