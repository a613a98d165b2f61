//! The web dashboard, on the `/metrics` listener: a page, its script and
//! style (all served from the binary: no CDN, our users' PCs may be
//! offline), `/api/view` (the [`crate::state::dashboard_view`] document)
//! and `/api/stream`, a server-sent-event stream that sends the view
//! whenever it changes (looked at every [`STREAM_EVERY`]), so the page
//! follows the mesh without reloading. Read-only: nothing here changes the
//! mesh.

use std::convert::Infallible;
use std::time::Duration;

use axum::extract::State;
use axum::http::{header, StatusCode};
use axum::response::sse::{Event, KeepAlive, Sse};
use axum::response::IntoResponse;
use axum::routing::get;
use axum::Router;
use tokio::sync::mpsc;
use tokio_stream::wrappers::ReceiverStream;

use super::metrics_http::HttpState;
use crate::state::dashboard_view;

/// How often a stream looks for a change: a change reaches the page
/// within this and the heartbeat that carried it.
pub const STREAM_EVERY: Duration = Duration::from_millis(250);

const PAGE: &str = include_str!("../../assets/dashboard.html");
const SCRIPT: &str = include_str!("../../assets/dashboard.js");
const STYLE: &str = include_str!("../../assets/dashboard.css");

fn asset(body: &'static str, content_type: &'static str) -> impl IntoResponse {
    (
        StatusCode::OK,
        [
            (header::CONTENT_TYPE, content_type),
            (header::CACHE_CONTROL, "no-cache"),
        ],
        body,
    )
}

async fn view_json(State(s): State<HttpState>) -> impl IntoResponse {
    match serde_json::to_string(&dashboard_view::view(&s.shared)) {
        Ok(body) => (
            StatusCode::OK,
            [(header::CONTENT_TYPE, "application/json")],
            body,
        ),
        Err(e) => (
            StatusCode::INTERNAL_SERVER_ERROR,
            [(header::CONTENT_TYPE, "text/plain; charset=utf-8")],
            format!("encoding the view failed: {e}"),
        ),
    }
}

/// The view at once, then each time it differs from the last one sent.
/// Ends when the client goes or the coordinator shuts down (so a page left
/// open does not hold the shutdown up).
async fn stream(State(s): State<HttpState>) -> impl IntoResponse {
    let (tx, rx) = mpsc::channel(4);
    tokio::spawn(async move {
        let mut last = String::new();
        let mut tick = tokio::time::interval(STREAM_EVERY);
        tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        loop {
            tokio::select! {
                _ = s.shutdown.cancelled() => return,
                _ = tx.closed() => return,
                _ = tick.tick() => {}
            }
            let Ok(json) = serde_json::to_string(&dashboard_view::view(&s.shared)) else {
                continue;
            };
            if json == last {
                continue;
            }
            if tx
                .send(Ok(Event::default().event("view").data(json.clone())))
                .await
                .is_err()
            {
                return;
            }
            last = json;
        }
    });
    let rx: ReceiverStream<Result<Event, Infallible>> = ReceiverStream::new(rx);
    Sse::new(rx).keep_alive(KeepAlive::default())
}

/// `/`, its assets, `/api/view` and `/api/stream`.
pub fn routes() -> Router<HttpState> {
    Router::new()
        .route(
            "/",
            get(|| async { asset(PAGE, "text/html; charset=utf-8") }),
        )
        .route(
            "/dashboard.js",
            get(|| async { asset(SCRIPT, "text/javascript; charset=utf-8") }),
        )
        .route(
            "/dashboard.css",
            get(|| async { asset(STYLE, "text/css; charset=utf-8") }),
        )
        .route("/api/view", get(view_json))
        .route("/api/stream", get(stream))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_page_names_only_assets_the_coordinator_serves() {
        // No CDN: every src/href of the page is one of our routes.
        for part in PAGE.split(['"', '\'']) {
            if part.starts_with("http") || part.starts_with("//") {
                panic!("the page loads {part} from elsewhere");
            }
        }
        assert!(PAGE.contains("dashboard.js") && PAGE.contains("dashboard.css"));
        // The script writes text, never markup it was sent.
        assert!(!SCRIPT.contains("innerHTML"), "use textContent");
        assert!(SCRIPT.contains("api/stream"));
    }
}
