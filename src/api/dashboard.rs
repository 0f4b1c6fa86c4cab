//! Serving the built dashboard: `/streaming` (and deeper paths: SPA fallback to
//! `index.html`), plus its assets wherever Vite's `base` put them (`/streaming/…`
//! or `/assets/…`).

use std::path::{Path, PathBuf};
use std::sync::Arc;

use axum::Router;
use axum::response::Redirect;
use axum::routing::get;
use tower_http::services::{ServeDir, ServeFile};

use super::AppState;
use super::error::ApiError;

/// Where a packaged install puts the dashboard.
pub const PACKAGED_DIR: &str = "/usr/share/contimg/dashboard";

/// `frontend/dist` in a checkout if built, else the packaged copy if present.
pub fn default_dir() -> Option<PathBuf> {
    [PathBuf::from("frontend/dist"), PathBuf::from(PACKAGED_DIR)]
        .into_iter()
        .find(|dir| dir.join("index.html").is_file())
}

pub fn mount(app: Router<Arc<AppState>>, dir: Option<&Path>) -> Router<Arc<AppState>> {
    let Some(dir) = dir.filter(|d| d.join("index.html").is_file()) else {
        let missing = dir.map(|d| d.display().to_string());
        let message = move || {
            let missing = missing.clone();
            async move {
                ApiError::NotFound(match missing {
                    Some(dir) => format!("no dashboard: {dir}/index.html does not exist (build the frontend)"),
                    None => "no dashboard: pass --dashboard-dir (e.g. frontend/dist after `npm run build`)".to_string(),
                })
            }
        };
        return app
            .route("/streaming", get(message.clone()))
            .route("/streaming/{*rest}", get(message.clone()))
            .fallback(message);
    };
    let index = dir.join("index.html");
    let spa = || ServeDir::new(dir).fallback(ServeFile::new(&index));
    app.route("/", get(|| async { Redirect::temporary("/streaming") }))
        .nest_service("/streaming", spa())
        .fallback_service(spa())
}
