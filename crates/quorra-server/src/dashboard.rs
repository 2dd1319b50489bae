//! The web dashboard: one page of plain HTML, CSS and ES modules, embedded in the binary
//! and served by every node at `/` on its HTTP port, that shows the whole cluster from
//! whichever node it is opened on.
//!
//! The page itself carries no data, so `/` and `/dashboard/{file}` answer without a
//! token; every figure it shows comes from the protected `/v1/...` routes of
//! [`crate::http`], which it calls with the bearer token the user types in (kept in the
//! tab's `sessionStorage`, never in a cookie, so a cross-site request carries nothing).
//!
//! There is no build step and no third-party code: the files under `src/dashboard/` are
//! what the browser runs, charts included (hand-drawn SVG). Every response carries a
//! strict Content-Security-Policy (scripts and styles from this origin only, no inline
//! script, no framing), `X-Frame-Options: DENY`, `X-Content-Type-Options: nosniff` and
//! `Referrer-Policy: no-referrer`.

use std::sync::Arc;

use axum::Router;
use axum::extract::Path;
use axum::http::{HeaderName, HeaderValue, StatusCode, header};
use axum::response::{IntoResponse, Json, Response};
use axum::routing::get;
use quorra_node::shared::Shared;
use serde_json::json;

/// The files of the dashboard: name under `/dashboard/`, content type, content.
const FILES: &[(&str, &str, &[u8])] = &[
    (
        "style.css",
        "text/css; charset=utf-8",
        include_bytes!("dashboard/style.css"),
    ),
    (
        "app.js",
        "text/javascript; charset=utf-8",
        include_bytes!("dashboard/app.js"),
    ),
    (
        "api.js",
        "text/javascript; charset=utf-8",
        include_bytes!("dashboard/api.js"),
    ),
    (
        "format.js",
        "text/javascript; charset=utf-8",
        include_bytes!("dashboard/format.js"),
    ),
    (
        "chart.js",
        "text/javascript; charset=utf-8",
        include_bytes!("dashboard/chart.js"),
    ),
    (
        "overview.js",
        "text/javascript; charset=utf-8",
        include_bytes!("dashboard/overview.js"),
    ),
    (
        "nodes.js",
        "text/javascript; charset=utf-8",
        include_bytes!("dashboard/nodes.js"),
    ),
    (
        "ring.js",
        "text/javascript; charset=utf-8",
        include_bytes!("dashboard/ring.js"),
    ),
    (
        "keys.js",
        "text/javascript; charset=utf-8",
        include_bytes!("dashboard/keys.js"),
    ),
    (
        "namespaces.js",
        "text/javascript; charset=utf-8",
        include_bytes!("dashboard/namespaces.js"),
    ),
    (
        "console.js",
        "text/javascript; charset=utf-8",
        include_bytes!("dashboard/console.js"),
    ),
    (
        "favicon.svg",
        "image/svg+xml",
        include_bytes!("dashboard/favicon.svg"),
    ),
];

const INDEX: &str = include_str!("dashboard/index.html");

/// Only this origin's files and API; no inline script or style attribute, no plugins,
/// no framing, no form posts elsewhere. `img-src data:` is not needed: charts are SVG
/// elements built by the scripts.
const CONTENT_SECURITY_POLICY: &str = "default-src 'self'; script-src 'self'; \
     style-src 'self'; img-src 'self'; connect-src 'self'; object-src 'none'; \
     base-uri 'none'; form-action 'self'; frame-ancestors 'none'";

/// The dashboard's routes, public: the node's [`crate::http::router`] merges them
/// outside its token check.
pub fn routes() -> Router<Arc<Shared>> {
    Router::new()
        .route(
            "/",
            get(|| async { page("text/html; charset=utf-8", INDEX.as_bytes()) }),
        )
        .route("/dashboard/{file}", get(file))
}

async fn file(Path(name): Path<String>) -> Response {
    match FILES.iter().find(|(file, _, _)| *file == name) {
        Some((_, content_type, body)) => page(content_type, body),
        None => (
            StatusCode::NOT_FOUND,
            Json(json!({ "error": "no such dashboard file" })),
        )
            .into_response(),
    }
}

/// A dashboard file with its type and the security headers of the module docs. The files
/// change only with the binary, but a browser must not keep an old page after an
/// upgrade, so it revalidates (`no-cache`) rather than caching for a time.
fn page(content_type: &'static str, body: &'static [u8]) -> Response {
    let headers: [(HeaderName, HeaderValue); 7] = [
        (header::CONTENT_TYPE, HeaderValue::from_static(content_type)),
        (
            header::CONTENT_SECURITY_POLICY,
            HeaderValue::from_static(CONTENT_SECURITY_POLICY),
        ),
        (header::X_FRAME_OPTIONS, HeaderValue::from_static("DENY")),
        (
            header::X_CONTENT_TYPE_OPTIONS,
            HeaderValue::from_static("nosniff"),
        ),
        (
            header::REFERRER_POLICY,
            HeaderValue::from_static("no-referrer"),
        ),
        (header::CACHE_CONTROL, HeaderValue::from_static("no-cache")),
        (
            HeaderName::from_static("cross-origin-opener-policy"),
            HeaderValue::from_static("same-origin"),
        ),
    ];
    (headers, body).into_response()
}
