//! `GET /api/openapi.json`: the machine-readable contract (docs/api.md is the
//! prose), assembled from every handler's `#[utoipa::path]`.

use std::sync::OnceLock;

use axum::http::{HeaderValue, header};
use axum::response::{IntoResponse, Response};
use utoipa::openapi::security::{HttpAuthScheme, HttpBuilder, SecurityScheme};
use utoipa::{Modify, OpenApi};

use crate::disk::DirUsage;
use crate::error::{ControlFailure, ErrorBody, FieldProblem};
use crate::handlers;
use crate::handlers::disk::DiskResponse;
use crate::history::{DiskTrend, FreeSample, HistoryPoint, HistoryResponse};
use crate::models::{
    AttemptView, ControlResponse, GroupDetailView, GroupFileView, GroupList, GroupLogView,
    GroupView, HealthCheck, HealthResponse, JobView, LimitsRequest, LimitsView, LogLine,
    LogsResponse, MetricsResponse, RetryResponse, ServerSentEvent, StatusResponse,
};
use contimg_control::alerts::{Alert, AlertList, Severity};

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
        handlers::status::status, handlers::status::health, handlers::config::get_config,
        handlers::config::post_config, handlers::control::start, handlers::control::stop,
        handlers::control::restart, handlers::metrics::metrics, handlers::sse::events,
        handlers::logs::logs, handlers::history::history, handlers::groups::groups,
        handlers::groups::group, handlers::groups::group_log, handlers::groups::retry_group, handlers::limits::get_limits,
        handlers::limits::post_limits, handlers::alerts::alerts, handlers::metrics::prometheus,
        handlers::disk::disk,
    ),
    components(schemas(
        StatusResponse, HealthResponse, HealthCheck, MetricsResponse, ControlResponse,
        LogLine, LogsResponse, GroupView, GroupList, GroupDetailView, GroupFileView,
        AttemptView, JobView, GroupLogView, RetryResponse, LimitsView, Alert, AlertList, Severity,
        HistoryPoint, HistoryResponse, ErrorBody, FieldProblem, LimitsRequest, ControlFailure,
        ServerSentEvent, DiskResponse, DirUsage, DiskTrend, FreeSample,
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

#[cfg(test)]
mod tests {
    use serde_json::Value;

    fn document() -> Value {
        serde_json::from_str(super::document()).expect("the document is JSON")
    }

    fn responses<'a>(doc: &'a Value, path: &str, method: &str) -> &'a Value {
        &doc["paths"][path][method]["responses"]
    }

    #[test]
    fn documents_what_the_server_answers() {
        let doc = document();
        let limits = responses(&doc, "/api/streaming/limits", "post");
        for status in ["200", "400", "401", "403", "413", "422", "501"] {
            assert!(limits.get(status).is_some(), "POST /limits lacks {status}");
        }
        for op in ["start", "restart", "config"] {
            let path = format!("/api/streaming/{op}");
            let documented = responses(&doc, &path, "post");
            for status in ["200", "400", "401", "403", "412", "422", "500", "503"] {
                assert!(
                    documented.get(status).is_some(),
                    "POST {path} lacks {status}"
                );
            }
        }
        for path in ["/api/streaming/events", "/api/streaming/logs"] {
            let ok = &responses(&doc, path, "get")["200"]["content"];
            assert!(
                ok.get("text/event-stream").is_some(),
                "GET {path}: no text/event-stream in {ok}"
            );
        }
    }

    #[test]
    fn validation_details_are_declared_as_the_array_the_server_sends() {
        let doc = document();
        let details = &doc["components"]["schemas"]["ErrorBody"]["properties"]["details"];
        let types = details["type"].to_string();
        assert!(types.contains("array"), "details: {details}");
        let body = crate::error::ApiError::Validation(contimg_core::config::ValidationErrors {
            errors: vec![contimg_core::config::FieldError {
                field: "input_dir".to_string(),
                message: "must be absolute".to_string(),
            }],
        })
        .body();
        let sent = serde_json::to_value(&body).expect("serializes");
        assert!(sent["details"].is_array(), "{sent}");
        assert_eq!(sent["details"][0]["field"], "input_dir");
    }
}
