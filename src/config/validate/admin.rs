//! `[admin]`: the admin API's tokens, body size and listener limits.

use crate::config::issues::{Issues, conn_caps, env_secret, listener_timeout};
use crate::config::schema::AdminConfig;
use crate::config::valid::{AdminSettings, DEFAULT_MAX_BODY, Scope, Token};
use crate::conns::ConnLimits;

/// Defaults of the admin listener.
const DEFAULT_MAX_CONNECTIONS: usize = 64;
const DEFAULT_MAX_CONNECTIONS_PER_SOURCE: usize = 16;
const DEFAULT_HEADER_TIMEOUT: f64 = 5.0;
const DEFAULT_IDLE_TIMEOUT: f64 = 30.0;

/// `[admin]`.
pub(super) fn validate(a: &AdminConfig, issues: &mut Issues) -> AdminSettings {
    let mut tokens = Vec::new();
    for (i, t) in a.tokens.iter().enumerate() {
        let f = format!("admin.tokens[{i}]");
        let scope = match t.scope.as_str() {
            "read" => Some(Scope::Read),
            "admin" => Some(Scope::Admin),
            other => {
                issues.push(
                    format!("{f}.scope"),
                    format!("must be \"read\" or \"admin\" (got \"{other}\")"),
                );
                None
            }
        };
        let secret = match (&t.token, &t.token_env) {
            (Some(s), None) => Some(s.clone()),
            (None, Some(var)) => env_secret(var, format!("{f}.token_env"), issues),
            _ => {
                issues.push(f.clone(), "set exactly one of `token` and `token_env`");
                None
            }
        };
        if let Some(s) = &secret
            && s.len() < 16
        {
            issues.push(
                format!("{f}.token"),
                "must be at least 16 characters (use e.g. `openssl rand -hex 32`)",
            );
            continue;
        }
        if let (Some(scope), Some(secret)) = (scope, secret) {
            tokens.push(Token {
                name: t.name.clone().unwrap_or_else(|| format!("tokens[{i}]")),
                secret,
                scope,
            });
        }
    }
    let max_body = match a.max_body {
        Some(0) => {
            issues.push("admin.max_body", "must be positive");
            DEFAULT_MAX_BODY
        }
        Some(n) => n,
        None => DEFAULT_MAX_BODY,
    };
    let conns = limits(a, issues);
    AdminSettings {
        tokens,
        max_body,
        conns,
    }
}

/// The admin listener's limits.
fn limits(a: &AdminConfig, issues: &mut Issues) -> ConnLimits {
    let (max, per_source) = conn_caps(
        (
            a.max_connections,
            DEFAULT_MAX_CONNECTIONS,
            "admin.max_connections",
        ),
        (
            a.max_connections_per_source,
            DEFAULT_MAX_CONNECTIONS_PER_SOURCE,
            "admin.max_connections_per_source",
        ),
        1 << 16,
        issues,
    );
    ConnLimits {
        max,
        per_source,
        first_timeout: listener_timeout(
            a.header_timeout,
            DEFAULT_HEADER_TIMEOUT,
            "admin.header_timeout",
            issues,
        ),
        idle_timeout: listener_timeout(
            a.idle_timeout,
            DEFAULT_IDLE_TIMEOUT,
            "admin.idle_timeout",
            issues,
        ),
    }
}
