//! Bearer tokens: the configuration's and the environment's, their scope compared in constant
//! time, and the middleware that checks every request (reads need `read` or `admin`, writes
//! `admin`), counts it, and turns axum's rejections into the JSON error shape.

use std::sync::Arc;

use axum::extract::{Request, State};
use axum::http::{HeaderValue, Method, StatusCode, header};
use axum::middleware::Next;
use axum::response::{IntoResponse, Response};
use sha2::{Digest, Sha256};
use subtle::ConstantTimeEq;
use tracing::warn;

use super::error::{ApiError, json_rejection};
use super::{Api, Tokens};
use crate::config::{Scope, Token};

/// Reads that need an admin token: the raw configuration holds the tokens and sink secrets.
const ADMIN_READS: &[&str] = &["/v1/config"];

/// The tokens a request may present.
pub(super) struct Keys {
    /// From the configuration in force.
    config: Tokens,
    /// From the environment.
    env: Vec<Token>,
}

impl Keys {
    /// The configuration's tokens and the environment's (read now).
    pub(super) fn new(config: Tokens) -> Self {
        Self {
            config,
            env: tokens_from_env(),
        }
    }

    /// The scope of a presented token (None: no token matches). Every configured token is
    /// compared, in constant time, whatever matched before.
    fn scope_of(&self, presented: &str) -> Option<Scope> {
        let p = Sha256::digest(presented.as_bytes());
        let mut best: Option<Scope> = None;
        let cfg = self.config.load();
        for t in cfg.iter().chain(self.env.iter()) {
            let s = Sha256::digest(t.secret.as_bytes());
            let eq: bool = p.as_slice().ct_eq(s.as_slice()).into();
            if eq {
                best = best.max(Some(t.scope));
            }
        }
        best
    }

    pub(super) fn enabled(&self) -> bool {
        !self.config.load().is_empty() || !self.env.is_empty()
    }
}

/// Tokens from `STEERD_ADMIN_TOKEN` and `STEERD_READ_TOKEN` (comma-separated lists).
fn tokens_from_env() -> Vec<Token> {
    let mut out = Vec::new();
    for (var, scope) in [
        ("STEERD_ADMIN_TOKEN", Scope::Admin),
        ("STEERD_READ_TOKEN", Scope::Read),
    ] {
        if let Ok(v) = std::env::var(var) {
            for (i, t) in v
                .split(',')
                .map(str::trim)
                .filter(|t| !t.is_empty())
                .enumerate()
            {
                if t.len() < 16 {
                    warn!("{var}: token {i} is shorter than 16 characters: ignored");
                    continue;
                }
                out.push(Token {
                    name: format!("{var}[{i}]"),
                    secret: t.to_string(),
                    scope,
                });
            }
        }
    }
    out
}

/// Checks the bearer token (reads need `read` or `admin`, writes `admin`), counts the
/// request, and turns axum's plain-text rejections into JSON errors.
pub(super) async fn auth(State(api): State<Arc<Api>>, req: Request, next: Next) -> Response {
    let method = req.method().clone();
    let path = req.uri().path().to_string();
    let route = req
        .extensions()
        .get::<axum::extract::MatchedPath>()
        .map(|m| m.as_str().to_string())
        .unwrap_or_else(|| "unmatched".into());
    let public = path == "/metrics" || path == "/v1/openapi.json";
    let write = !matches!(method, Method::GET | Method::HEAD | Method::OPTIONS)
        || ADMIN_READS.contains(&path.as_str());
    let denied = if public || !api.keys.enabled() {
        None
    } else {
        let presented = req
            .headers()
            .get(header::AUTHORIZATION)
            .and_then(|v| v.to_str().ok())
            .and_then(|v| {
                v.strip_prefix("Bearer ")
                    .or_else(|| v.strip_prefix("bearer "))
            })
            .map(str::trim);
        match presented {
            None => Some((
                StatusCode::UNAUTHORIZED,
                "missing bearer token (Authorization: Bearer TOKEN)".to_string(),
            )),
            Some(t) => match api.keys.scope_of(t) {
                None => Some((StatusCode::UNAUTHORIZED, "unknown token".to_string())),
                Some(Scope::Read) if write => Some((
                    StatusCode::FORBIDDEN,
                    format!("this token has the read scope; {method} {path} needs an admin token"),
                )),
                Some(_) => None,
            },
        }
    };
    let response = match denied {
        Some((status, msg)) => {
            let mut e = ApiError::new(status, msg);
            if status == StatusCode::UNAUTHORIZED {
                e = e.with_header(
                    header::WWW_AUTHENTICATE,
                    HeaderValue::from_static("Bearer realm=\"steerd\""),
                );
            }
            e.into_response()
        }
        None => {
            let r = next.run(req).await;
            json_rejection(r).await
        }
    };
    api.control
        .metrics()
        .admin_requests
        .with_label_values(&[
            &route,
            crate::metrics::method_label(&method),
            response.status().as_str(),
        ])
        .inc();
    response
}
