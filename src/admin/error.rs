//! The one error shape of every admin answer (`{"error": "..."}`, plus `issues` for a refused
//! configuration and `version` for a failed `If-Match`), the ETag of a configuration version,
//! JSON bodies parsed with errors that name the position, and axum's plain-text rejections
//! turned into the same shape.

use axum::Json;
use axum::http::{HeaderValue, StatusCode, header};
use axum::response::{IntoResponse, Response};
use serde_json::{Value, json};

use super::store::StoreError;

/// A JSON error response.
pub(super) struct ApiError {
    status: StatusCode,
    body: Value,
    headers: Vec<(header::HeaderName, HeaderValue)>,
}

impl ApiError {
    pub(super) fn new(status: StatusCode, msg: impl Into<String>) -> Self {
        Self {
            status,
            body: json!({ "error": msg.into() }),
            headers: Vec::new(),
        }
    }

    /// The same error with the header `name: value`.
    pub(super) fn with_header(mut self, name: header::HeaderName, value: HeaderValue) -> Self {
        self.headers.push((name, value));
        self
    }
}

impl IntoResponse for ApiError {
    fn into_response(self) -> Response {
        let mut r = (self.status, Json(self.body)).into_response();
        for (k, v) in self.headers {
            r.headers_mut().insert(k, v);
        }
        r
    }
}

impl From<StoreError> for ApiError {
    fn from(e: StoreError) -> Self {
        match e {
            StoreError::VersionMismatch { current, .. } => {
                let mut err = ApiError::new(StatusCode::PRECONDITION_FAILED, e.to_string());
                err.body["version"] = json!(current);
                err.with_header(header::ETAG, etag_value(current))
            }
            StoreError::Invalid {
                ref file,
                ref issues,
            } => {
                let list: Vec<Value> = issues
                    .iter()
                    .map(|i| json!({"field": i.field, "line": i.line, "message": i.message}))
                    .collect();
                // The first issue as the message: FILE:LINE: FIELD: reason for a reload,
                // FIELD: reason for a write.
                let first = StoreError::Invalid {
                    file: file.clone(),
                    issues: issues.iter().take(1).cloned().collect(),
                };
                let mut body = json!({
                    "error": format!("the configuration would not be valid: {first}"),
                    "issues": list,
                });
                if let Some(f) = file {
                    body["file"] = json!(f);
                }
                ApiError {
                    status: StatusCode::UNPROCESSABLE_ENTITY,
                    body,
                    headers: Vec::new(),
                }
            }
            StoreError::BadRequest(m) => ApiError::new(StatusCode::BAD_REQUEST, m),
            StoreError::NotFound(m) => ApiError::new(StatusCode::NOT_FOUND, m),
            StoreError::Conflict(m) => ApiError::new(StatusCode::CONFLICT, m),
            StoreError::Internal(m) => ApiError::new(StatusCode::INTERNAL_SERVER_ERROR, m),
        }
    }
}

pub(super) type ApiResult = Result<Response, ApiError>;

/// The ETag of configuration version `version`: `"7"`.
pub(super) fn etag_value(version: u64) -> HeaderValue {
    HeaderValue::from_str(&format!("\"{version}\"")).expect("digits are a valid header")
}

/// Parse a JSON body ourselves (clear errors naming the position).
pub(super) fn parse_body<T: serde::de::DeserializeOwned>(body: &[u8]) -> Result<T, ApiError> {
    let de = &mut serde_json::Deserializer::from_slice(body);
    serde_path_to_error::deserialize(de).map_err(|e| {
        let path = e.path().to_string();
        let inner = e.into_inner();
        let msg = if path == "." || path.is_empty() {
            format!("invalid JSON body: {inner}")
        } else {
            format!("invalid JSON body: {path}: {inner}")
        };
        ApiError::new(StatusCode::BAD_REQUEST, msg)
    })
}

/// axum's extractor rejections are plain text: wrap them as `{"error": ...}`.
pub(super) async fn json_rejection(r: Response) -> Response {
    let content_type = r
        .headers()
        .get(header::CONTENT_TYPE)
        .and_then(|v| v.to_str().ok());
    let is_text = content_type.is_some_and(|v| v.starts_with("text/plain"));
    if r.status() == StatusCode::METHOD_NOT_ALLOWED && content_type.is_none() {
        let allow = r.headers().get(header::ALLOW).cloned();
        let mut e = ApiError::new(
            StatusCode::METHOD_NOT_ALLOWED,
            "method not allowed on this route (see /v1/openapi.json)",
        );
        if let Some(a) = allow {
            e = e.with_header(header::ALLOW, a);
        }
        return e.into_response();
    }
    if !(r.status().is_client_error() && is_text) {
        return r;
    }
    let status = r.status();
    let body = axum::body::to_bytes(r.into_body(), 64 * 1024)
        .await
        .unwrap_or_default();
    let mut msg = String::from_utf8_lossy(&body).trim().to_string();
    if status == StatusCode::PAYLOAD_TOO_LARGE {
        msg = format!("request body too large ({msg}); see [admin] max_body");
    }
    ApiError::new(status, msg).into_response()
}

/// The fallback route.
pub(super) async fn not_found() -> ApiError {
    ApiError::new(
        StatusCode::NOT_FOUND,
        "no such route (see /v1/openapi.json)",
    )
}
