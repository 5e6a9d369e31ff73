//! Self-run edges (Varnish, nginx): every item is sent to every edge of `edges`, at once.
//! - a URL: `PURGE {edge}{path and query}` with `Host:` the target's `host`, else the URL's;
//! - a key: `BAN {edge}/` (method `ban`) or `PURGE {edge}/` (method `purge`) with
//!   `{key_header}: <key>` (Varnish xkey, bans on a tag header);
//! - a prefix (`host/path`): `BAN {edge}/` with `X-Ban-Prefix: <path>` and `Host:` the
//!   prefix's host (else the target's), for a VCL that bans `req.url ~ "^" + X-Ban-Prefix`.
//!
//! With a `token`, every request carries `Authorization: Bearer <token>`. An item is confirmed
//! when every edge answered 2xx; otherwise it fails naming the edges that did not, retryable
//! unless one of them refused it for good (purging again is harmless: the edges that did purge
//! purge again).

use std::time::Duration;

use tokio::task::JoinSet;

use super::{Batch, Failure, Item, ItemResult, Kind, Results};
use crate::config::purge::{EdgeMethod, PurgeTarget, Secret};

/// The header a prefix ban names its path in.
pub const PREFIX_HEADER: &str = "X-Ban-Prefix";

/// One request to one edge, owned so it can run as its own task.
struct EdgeRequest {
    method: reqwest::Method,
    url: String,
    headers: Vec<(String, String)>,
}

pub async fn send(
    http: &reqwest::Client,
    c: &PurgeTarget,
    edges: &[String],
    key_method: EdgeMethod,
    key_header: &str,
    token: Option<&Secret>,
    batch: &Batch,
) -> Vec<ItemResult> {
    let mut out = Results::new(batch.items.len());
    if edges.is_empty() {
        let r = ItemResult::Failed(super::refused("no edges configured"));
        return super::all(batch, r);
    }
    let mut tasks = JoinSet::new();
    for (i, item) in batch.items.iter().enumerate() {
        if !matches!(item.kind(), Kind::Url | Kind::Key | Kind::Prefix) {
            out.set(i, super::unsupported("http", item.kind()));
            continue;
        }
        for (e, edge) in edges.iter().enumerate() {
            let mut req = request(c, edge, key_method, key_header, item);
            if let Some(t) = token {
                req.headers
                    .push(("authorization".into(), format!("Bearer {}", t.expose())));
            }
            let (http, timeout) = (http.clone(), c.timeout);
            tasks.spawn(async move { (i, e, one(&http, timeout, req).await) });
        }
    }
    let mut failures: Vec<Vec<(usize, Failure)>> = vec![Vec::new(); batch.items.len()];
    let mut answered = vec![0usize; batch.items.len()];
    while let Some(joined) = tasks.join_next().await {
        let Ok((i, e, r)) = joined else { continue };
        answered[i] += 1;
        if let Err(f) = r {
            failures[i].push((e, f));
        }
    }
    for (i, mut fs) in failures.into_iter().enumerate() {
        if out.0[i].is_some() {
            continue;
        }
        fs.sort_by_key(|(e, _)| *e);
        let r = if fs.is_empty() && answered[i] == edges.len() {
            ItemResult::Confirmed { provider_id: None }
        } else {
            let mut secrets = Vec::new();
            secrets.extend(token);
            ItemResult::Failed(super::redact(combine(edges, &fs), &secrets))
        };
        out.set(i, r);
    }
    out.done()
}

/// One failure from the edges that failed an item.
fn combine(edges: &[String], fs: &[(usize, Failure)]) -> Failure {
    if fs.is_empty() {
        return Failure {
            error: "an edge request did not finish".into(),
            retryable: true,
            retry_after: None,
        };
    }
    let error = fs
        .iter()
        .map(|(e, f)| format!("edge {}: {}", edges[*e], f.error))
        .collect::<Vec<_>>()
        .join("; ");
    Failure {
        error,
        retryable: fs.iter().all(|(_, f)| f.retryable),
        retry_after: fs.iter().filter_map(|(_, f)| f.retry_after).max(),
    }
}

async fn one(http: &reqwest::Client, timeout: Duration, req: EdgeRequest) -> Result<(), Failure> {
    let mut b = http.request(req.method, &req.url).timeout(timeout);
    for (k, v) in &req.headers {
        b = b.header(k.as_str(), v.as_str());
    }
    let r = b.send().await.map_err(super::transport_failure)?;
    let (status, headers, text) = super::read_answer(r).await;
    if status.is_success() {
        Ok(())
    } else {
        Err(super::http_failure(status, &headers, &text))
    }
}

fn method(name: &str) -> reqwest::Method {
    reqwest::Method::from_bytes(name.as_bytes()).expect("a valid method name")
}

/// The request telling `edge` to drop `item`.
fn request(
    c: &PurgeTarget,
    edge: &str,
    key_method: EdgeMethod,
    key_header: &str,
    item: &Item,
) -> EdgeRequest {
    let edge = edge.trim_end_matches('/');
    let mut headers = Vec::new();
    let (m, path) = match item {
        Item::Url(u) => {
            let (host, path) = split_url(u);
            if let Some(h) = c.host.as_deref().or(host.as_deref()) {
                headers.push(("host".to_string(), h.to_string()));
            }
            ("PURGE", path)
        }
        Item::Key(k) => {
            if let Some(h) = &c.host {
                headers.push(("host".to_string(), h.clone()));
            }
            headers.push((key_header.to_string(), k.clone()));
            let m = match key_method {
                EdgeMethod::Ban => "BAN",
                // `urls`: keys are expanded before they get here; sent as `purge` otherwise.
                EdgeMethod::Purge | EdgeMethod::Urls => "PURGE",
            };
            (m, "/".to_string())
        }
        Item::Prefix(p) => {
            let (host, path) = split_prefix(p);
            if let Some(h) = host.as_deref().or(c.host.as_deref()) {
                headers.push(("host".to_string(), h.to_string()));
            }
            headers.push((PREFIX_HEADER.to_string(), path));
            ("BAN", "/".to_string())
        }
        Item::Host(_) | Item::Everything => ("PURGE", "/".to_string()),
    };
    EdgeRequest {
        method: method(m),
        url: format!("{edge}{path}"),
        headers,
    }
}

/// A URL's host (with its port) and its path and query; a relative path has no host.
fn split_url(u: &str) -> (Option<String>, String) {
    match reqwest::Url::parse(u) {
        Ok(url) => {
            let host = url.host_str().map(|h| match url.port() {
                Some(p) => format!("{h}:{p}"),
                None => h.to_string(),
            });
            let path = match url.query() {
                Some(q) => format!("{}?{q}", url.path()),
                None => url.path().to_string(),
            };
            (host, path)
        }
        Err(_) if u.starts_with('/') => (None, u.to_string()),
        Err(_) => (None, format!("/{u}")),
    }
}

/// A prefix's host and path: `www.example.com/blog/` → (`www.example.com`, `/blog/`).
fn split_prefix(p: &str) -> (Option<String>, String) {
    let p = p
        .strip_prefix("https://")
        .or_else(|| p.strip_prefix("http://"))
        .unwrap_or(p);
    if p.starts_with('/') {
        return (None, p.to_string());
    }
    match p.find('/') {
        Some(i) => (Some(p[..i].to_string()), p[i..].to_string()),
        None => (Some(p.to_string()), "/".to_string()),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn splits() {
        assert_eq!(
            split_url("https://www.example.com:8443/a?b=1"),
            (Some("www.example.com:8443".into()), "/a?b=1".into())
        );
        assert_eq!(split_url("/x"), (None, "/x".into()));
        assert_eq!(
            split_prefix("www.example.com/blog/"),
            (Some("www.example.com".into()), "/blog/".into())
        );
        assert_eq!(split_prefix("/blog"), (None, "/blog".into()));
        assert_eq!(split_prefix("h"), (Some("h".into()), "/".into()));
    }

    #[test]
    fn failures_name_edges() {
        let edges = vec!["http://a".to_string(), "http://b".to_string()];
        let f = |r, s| Failure {
            error: "HTTP 500".into(),
            retryable: r,
            retry_after: s,
        };
        let c = combine(
            &edges,
            &[
                (1, f(true, Some(Duration::from_secs(2)))),
                (0, f(true, None)),
            ],
        );
        assert!(c.retryable && c.error.contains("edge http://b: HTTP 500"));
        assert_eq!(c.retry_after, Some(Duration::from_secs(2)));
        assert!(!combine(&edges, &[(0, f(true, None)), (1, f(false, None))]).retryable);
    }
}
