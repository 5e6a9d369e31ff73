//! The levels over HTTP/1.1: http (status, TTFB), content (SHA-256, substring or regex of the
//! body) and cache (the headers of the response or of a canary object), on the connection the
//! levels below opened.

use std::time::{Duration, Instant};

use bytes::Bytes;
use http_body_util::{BodyExt, Empty};
use hyper::client::conn::http1;
use hyper_util::rt::TokioIo;
use sha2::{Digest, Sha256};
use tokio::io::{AsyncRead, AsyncWrite};

use super::cache::read_cache_headers;
use super::local::LocalError;
use super::run::{Budget, Failure, LevelResult, Outcome, Run, fmt_ms};
use crate::config::check::{ContentMatch, HttpSpec};
use crate::health::Level;

const USER_AGENT: &str = concat!("steerd-probe/", env!("CARGO_PKG_VERSION"));
/// Body bytes the http level reads when no content check sets a limit.
const DEFAULT_BODY_LIMIT: u64 = 1 << 20;

/// A connection the http level speaks over: TCP, or TLS over TCP.
pub(super) trait Conn: AsyncRead + AsyncWrite + Unpin + Send {}
impl<T: AsyncRead + AsyncWrite + Unpin + Send> Conn for T {}

/// An HTTP/1.1 connection kept after the levels: its sender and the task driving it.
pub(super) type Kept = (
    http1::SendRequest<Empty<Bytes>>,
    tokio::task::JoinHandle<Result<(), hyper::Error>>,
);

struct AbortOnDrop<T>(Option<tokio::task::JoinHandle<T>>);
impl<T> Drop for AbortOnDrop<T> {
    fn drop(&mut self) {
        if let Some(h) = &self.0 {
            h.abort();
        }
    }
}

/// Run the http level and the content and cache levels above it over `stream`; the
/// connection when every level passed and the server did not say it will close it.
pub(super) async fn levels(
    run: &mut Run<'_>,
    http: &HttpSpec,
    stream: Box<dyn Conn>,
    budget: Budget,
) -> Option<Kept> {
    let spec = run.spec;
    let t = Instant::now();
    let handshake = budget
        .within(
            http1::handshake::<_, Empty<Bytes>>(TokioIo::new(stream)),
            |e| Failure {
                detail: format!("HTTP/1.1 setup: {e}"),
                local: LocalError::of(&e),
            },
        )
        .await;
    let (mut sender, conn) = run.step(Level::Http, t, handshake)?;
    // The connection task ends when the check is over and `sender` is dropped; abort it
    // anyway so nothing outlives the run.
    let mut conn = AbortOnDrop(Some(tokio::spawn(conn)));

    let limit = spec
        .content
        .as_ref()
        .map(|c| c.max_bytes)
        .unwrap_or(DEFAULT_BODY_LIMIT);
    let method = if http.head {
        http::Method::HEAD
    } else {
        http::Method::GET
    };
    let main = fetch(&mut sender, http, &http.path, method, limit, budget).await;
    let resp = run.step(Level::Http, t, main)?;
    let total = t.elapsed();
    let closing = says_close(&resp.headers);
    let status_ok = http.expect.iter().any(|m| m.matches(resp.status));
    let body_note = match (&resp.body, resp.truncated) {
        (_, true) => format!("more than {limit} bytes"),
        (b, false) => format!("{} bytes", b.len()),
    };
    let detail = format!(
        "{} {}; ttfb {}; total {}; {body_note}",
        resp.status,
        resp.reason,
        fmt_ms(resp.ttfb),
        fmt_ms(total)
    );
    if !status_ok {
        let expected: Vec<String> = http.expect.iter().map(ToString::to_string).collect();
        run.fail(
            Level::Http,
            total,
            format!("{detail} (expected {})", expected.join(", ")),
        );
        return None;
    }
    run.push(Level::Http, Outcome::Ok, total, detail);

    if spec.has(Level::Content) {
        let c = spec.content.as_ref().expect("validated: content spec");
        let tc = Instant::now();
        let verdict = if resp.truncated {
            Err(format!(
                "body larger than max_bytes ({} bytes)",
                c.max_bytes
            ))
        } else {
            judge(&c.matcher, &resp.body)
        };
        let latency = resp.body_time + tc.elapsed();
        match verdict {
            Ok(d) => run.push(Level::Content, Outcome::Ok, latency, d),
            Err(e) => {
                run.fail(Level::Content, latency, e);
                return None;
            }
        }
    }

    if spec.has(Level::Cache) {
        let tc = Instant::now();
        let (headers, latency) = match &http.cache_path {
            None => (resp.headers, resp.ttfb),
            Some(path) => {
                let canary = fetch(&mut sender, http, path, http::Method::GET, limit, budget)
                    .await
                    .map_err(|e| Failure {
                        detail: format!("canary {path}: {}", e.detail),
                        local: e.local,
                    });
                let r = run.step(Level::Cache, tc, canary)?;
                if !http.expect.iter().any(|m| m.matches(r.status)) {
                    run.fail(
                        Level::Cache,
                        tc.elapsed(),
                        format!("canary {path}: status {} {}", r.status, r.reason),
                    );
                    return None;
                }
                (r.headers, tc.elapsed())
            }
        };
        let (obs, detail) = read_cache_headers(&headers);
        run.levels.push(LevelResult {
            level: Level::Cache,
            outcome: Outcome::Ok,
            latency,
            detail,
            cache: obs,
        });
    }
    // Keep the connection unless the server said it will close it.
    match conn.0.take() {
        Some(handle) if !closing => Some((sender, handle)),
        Some(handle) => {
            handle.abort();
            None
        }
        None => None,
    }
}

/// The response says `Connection: close`.
pub(super) fn says_close(headers: &http::HeaderMap) -> bool {
    headers
        .get(http::header::CONNECTION)
        .and_then(|v| v.to_str().ok())
        .is_some_and(|v| v.to_ascii_lowercase().contains("close"))
}

struct Fetched {
    status: u16,
    reason: String,
    headers: http::HeaderMap,
    ttfb: Duration,
    body: Vec<u8>,
    truncated: bool,
    body_time: Duration,
}

/// The check's request for `path`: its Host header, User-Agent and extra headers.
pub(super) fn request(
    spec: &HttpSpec,
    path: &str,
    method: http::Method,
) -> Result<http::Request<Empty<Bytes>>, String> {
    let mut req = http::Request::builder()
        .method(method)
        .uri(path)
        .header(http::header::HOST, &spec.host_header);
    let has_ua = spec
        .headers
        .iter()
        .any(|(k, _)| k.eq_ignore_ascii_case("user-agent"));
    if !has_ua {
        req = req.header(http::header::USER_AGENT, USER_AGENT);
    }
    for (k, v) in &spec.headers {
        req = req.header(k.as_str(), v.as_str());
    }
    req.body(Empty::<Bytes>::new())
        .map_err(|e| format!("bad request: {e}"))
}

/// Send the request for `path` and read the body (none for HEAD), at most `limit` bytes.
async fn fetch(
    sender: &mut http1::SendRequest<Empty<Bytes>>,
    spec: &HttpSpec,
    path: &str,
    method: http::Method,
    limit: u64,
    budget: Budget,
) -> Result<Fetched, Failure> {
    let head = method == http::Method::HEAD;
    let req = request(spec, path, method)?;
    budget
        .within(sender.ready(), |e| Failure {
            detail: format!("connection closed: {e}"),
            local: LocalError::of(&e),
        })
        .await?;
    let t = Instant::now();
    let resp = budget
        .within(sender.send_request(req), |e| Failure {
            detail: format!("no response: {}", hyper_reason(&e)),
            local: LocalError::of(&e),
        })
        .await?;
    let ttfb = t.elapsed();
    let status = resp.status();
    let (parts, mut body) = resp.into_parts();
    let tb = Instant::now();
    let mut buf = Vec::new();
    let mut truncated = false;
    if !head {
        loop {
            let frame = budget.until(body.frame()).await?;
            match frame {
                None => break,
                Some(Err(e)) => {
                    return Err(Failure {
                        detail: format!("body: {}", hyper_reason(&e)),
                        local: LocalError::of(&e),
                    });
                }
                Some(Ok(f)) => {
                    if let Ok(data) = f.into_data() {
                        if buf.len() as u64 + data.len() as u64 > limit {
                            truncated = true;
                            break;
                        }
                        buf.extend_from_slice(&data);
                    }
                }
            }
        }
    }
    Ok(Fetched {
        status: status.as_u16(),
        reason: status.canonical_reason().unwrap_or("").to_string(),
        headers: parts.headers,
        ttfb,
        body: buf,
        truncated,
        body_time: tb.elapsed(),
    })
}

/// The content level: does the body match?
fn judge(m: &ContentMatch, body: &[u8]) -> Result<String, String> {
    match m {
        ContentMatch::Sha256(want) => {
            let got: [u8; 32] = Sha256::digest(body).into();
            if &got == want {
                Ok(format!("sha256 matches ({} bytes)", body.len()))
            } else {
                Err(format!(
                    "sha256 {} differs from the expected {}",
                    hex::encode(&got[..8]),
                    hex::encode(&want[..8])
                ))
            }
        }
        ContentMatch::Contains(s) => {
            let found = !s.is_empty() && body.windows(s.len()).any(|w| w == s.as_bytes());
            if found {
                Ok(format!("body contains {s:?}"))
            } else {
                Err(format!("body does not contain {s:?}"))
            }
        }
        ContentMatch::Regex(re) => {
            let r = re.0.as_str();
            if re.0.is_match(body) {
                Ok(format!("body matches /{r}/"))
            } else {
                Err(format!("body does not match /{r}/"))
            }
        }
    }
}

/// A hyper error with its chain of sources.
pub(super) fn hyper_reason(e: &hyper::Error) -> String {
    use std::error::Error;
    let mut s = e.to_string();
    let mut src = e.source();
    while let Some(inner) = src {
        s.push_str(": ");
        s.push_str(&inner.to_string());
        src = inner.source();
    }
    s
}
