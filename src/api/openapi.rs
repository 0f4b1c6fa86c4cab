//! `GET /api/openapi.json`: the machine-readable contract (docs/api.md is the prose).

use std::sync::OnceLock;

use axum::http::{HeaderValue, header};
use axum::response::{IntoResponse, Response};
use utoipa::openapi::security::{HttpAuthScheme, HttpBuilder, SecurityScheme};
use utoipa::{Modify, OpenApi};

use super::alerts::{Alert, AlertList, Severity};
use super::error::ErrorBody;
use super::handlers;
use super::history::{HistoryPoint, HistoryResponse};
use super::models::{
    AttemptView, ControlResponse, GroupDetailView, GroupFileView, GroupList, GroupView,
    HealthCheck, HealthResponse, LimitsView, LogLine, LogsResponse, MetricsResponse, RetryResponse,
    StatusResponse,
};

struct BearerAuth;

impl Modify for BearerAuth {
    fn modify(&self, openapi: &mut utoipa::openapi::OpenApi) {
        let components = openapi.components.get_or_insert_with(Default::default);
        components.add_security_scheme(
            "bearer",
            SecurityScheme::Http(HttpBuilder::new().scheme(HttpAuthScheme::Bearer).build()),
        );
    }
}

#[derive(OpenApi)]
#[openapi(
    info(title = "contimg-api", description = "Control plane of the DSA-110 continuum-imaging streaming service. Prose: docs/api.md."),
    paths(
        handlers::status, handlers::health, handlers::get_config, handlers::post_config,
        handlers::start, handlers::stop, handlers::restart, handlers::metrics,
        handlers::events, handlers::logs, handlers::history, handlers::groups,
        handlers::group, handlers::retry_group, handlers::get_limits, handlers::post_limits,
        handlers::alerts, handlers::prometheus,
    ),
    components(schemas(
        StatusResponse, HealthResponse, HealthCheck, MetricsResponse, ControlResponse,
        LogLine, LogsResponse, GroupView, GroupList, GroupDetailView, GroupFileView,
        AttemptView, RetryResponse, LimitsView, Alert, AlertList, Severity,
        HistoryPoint, HistoryResponse, ErrorBody,
    )),
    modifiers(&BearerAuth),
)]
pub struct ApiDoc;

/// Rendered once; the document never changes at run time.
pub fn document() -> &'static str {
    static DOC: OnceLock<String> = OnceLock::new();
    DOC.get_or_init(|| {
        ApiDoc::openapi()
            .to_json()
            .unwrap_or_else(|_| "{}".to_string())
    })
}

#[utoipa::path(get, path = "/api/openapi.json", tag = "meta",
    responses((status = 200, description = "This OpenAPI document")))]
pub async fn serve() -> Response {
    (
        [(
            header::CONTENT_TYPE,
            HeaderValue::from_static("application/json"),
        )],
        document(),
    )
        .into_response()
}
