//! Stand-ins for the five purge APIs: one local HTTP server per provider (axum on
//! 127.0.0.1, port 0, on its own runtime thread, so sync and async tests can use it alike)
//! that checks the documented request shape and the credentials the way the real API does,
//! records what it saw, and can be told to misbehave.
//!
//! ```ignore
//! let api = CdnApi::start(ProviderKind::Cloudflare);      // or Fastly, Akamai, Cloudfront, Http
//! let target: PurgeTarget = api.target();                  // points at it, test credentials
//! // ... purge through steerd ...
//! assert_eq!(api.purged(), vec!["https://www.example.com/a.css"]);
//! ```
//!
//! API (every method takes `&self`; the server stops when the `CdnApi` drops):
//! - `CdnApi::start(kind) -> CdnApi`; `CdnApi::start_edges(n) -> Vec<CdnApi>` (`Http` edges);
//! - `base_url() -> String` (`http://127.0.0.1:PORT`, no trailing slash);
//! - `target() -> PurgeTarget` (provider config with the test credentials below, the
//!   provider's default rate and `max_per_request`, timeout 2 s); `http_target(&[CdnApi])`
//!   for several edges; `wrong_credentials(&PurgeTarget)` the same target with bad secrets;
//! - `requests() -> Vec<Recorded>`: every purge request answered 2xx, in arrival order;
//!   `seen()`: every request that reached the provider logic, with its status;
//!   `calls() -> usize`: every request received (polls, refused and failed ones too);
//! - `purged() -> Vec<String>`: the items of `requests()`, in order, without failed ones;
//! - `fail_next(status, n, retry_after: Option<u64>)`: the next `n` requests answer `status`
//!   (with `Retry-After: <s>` when given) in the provider's error shape; `set_down(bool)`:
//!   every request answers 503 until set back; `set_delay(Duration)`: each answer waits;
//! - `fail_items(&[&str])`: those items fail the provider's way: Cloudflare and CloudFront
//!   refuse the whole request (400), Akamai answers 403, Fastly leaves a key out of its answer
//!   (a URL purge answers 400), an `Http` edge answers 500 for that item;
//! - CloudFront: `set_in_progress_polls(k)` (new invalidations answer `InProgress` to the first
//!   `k` polls, then `Completed`; default 0), `set_completed_on_create(bool)`, `polls()`.
//!
//! Items as recorded: Cloudflare the JSON values (`everything` for purge_everything); Fastly
//! the URL without scheme, the keys, `everything`; Akamai the objects (CP codes as decimal);
//! CloudFront the paths; `Http` `host+path` for URLs and prefixes, the key for keys.
//! `Recorded.kind` says which: `files|tags|prefixes|hosts|everything` (Cloudflare),
//! `url|keys|everything` (Fastly), `url|tag|cpcode` (Akamai), `invalidation` (CloudFront),
//! `url|key|prefix` (`Http`).
#![allow(dead_code)]

use std::collections::{HashMap, HashSet};
use std::sync::atomic::{AtomicBool, AtomicU64, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use axum::Router;
use axum::extract::{Request, State};
use axum::http::{HeaderMap, StatusCode};
use axum::response::{IntoResponse, Response};
use base64::Engine;
use base64::engine::general_purpose::STANDARD as B64;
use hmac::{Hmac, KeyInit, Mac};
use serde_json::{Value, json};
use sha2::{Digest, Sha256};
use steerd::config::purge::{
    AkamaiNetwork, AwsCredentials, EdgeGridCredentials, EdgeMethod, ProviderConfig, PurgeTarget,
    RateLimit, Secret,
};

pub const CF_ZONE: &str = "zone-0123456789";
pub const CF_TOKEN: &str = "cf-token-Zq8w2SECRET";
pub const FASTLY_SERVICE: &str = "svc-0123456789";
pub const FASTLY_TOKEN: &str = "fastly-key-Lm4k7SECRET";
pub const AKAMAI_CLIENT_TOKEN: &str = "akab-client-token-Jx3SECRET";
pub const AKAMAI_CLIENT_SECRET: &str = "akamai-client-secret-Qp9SECRET=";
pub const AKAMAI_ACCESS_TOKEN: &str = "akab-access-token-Vb6SECRET";
pub const AKAMAI_CP_CODES: [u64; 2] = [12345, 67890];
pub const CF_DISTRIBUTION: &str = "EDFDVBD6EXAMPLE";
pub const AWS_KEY_ID: &str = "AKIDSTEERDTEST01";
pub const AWS_SECRET: &str = "aws-secret-Tr5yE1SECRET";
pub const EDGE_TOKEN: &str = "edge-token-Hh2SECRET";
/// The key header of `Http` targets (the default `xkey`).
pub const EDGE_KEY_HEADER: &str = "xkey";

/// Every test credential (right and wrong), for "never printed" checks.
pub fn secrets() -> Vec<&'static str> {
    vec![
        CF_TOKEN,
        FASTLY_TOKEN,
        AKAMAI_CLIENT_TOKEN,
        AKAMAI_CLIENT_SECRET,
        AKAMAI_ACCESS_TOKEN,
        AWS_KEY_ID,
        AWS_SECRET,
        EDGE_TOKEN,
        WRONG,
    ]
}

/// What [`wrong_credentials`] puts in place of every secret.
pub const WRONG: &str = "wrong-Ww0SECRET";

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ProviderKind {
    Cloudflare,
    Fastly,
    Akamai,
    Cloudfront,
    Http,
}

/// One request as the stand-in understood it.
#[derive(Debug, Clone)]
pub struct Recorded {
    pub method: String,
    /// Path and query as received.
    pub path: String,
    /// Lower-case names.
    pub headers: Vec<(String, String)>,
    pub body: String,
    pub kind: String,
    pub items: Vec<String>,
    /// Items the stand-in failed (see `fail_items`).
    pub failed: Vec<String>,
    /// Fastly-Soft-Purge, Akamai invalidate.
    pub soft: bool,
    pub status: u16,
}

impl Recorded {
    pub fn header(&self, name: &str) -> Option<&str> {
        self.headers
            .iter()
            .find(|(k, _)| k == name)
            .map(|(_, v)| v.as_str())
    }
}

#[derive(Default)]
struct Shared {
    calls: AtomicUsize,
    seen: Mutex<Vec<Recorded>>,
    fail_next: Mutex<Option<(u16, usize, Option<u64>)>>,
    down: AtomicBool,
    delay: Mutex<Duration>,
    fail_items: Mutex<HashSet<String>>,
    in_progress_polls: AtomicUsize,
    completed_on_create: AtomicBool,
    /// CloudFront: invalidation id → polls still to answer InProgress.
    invalidations: Mutex<HashMap<String, usize>>,
    caller_refs: Mutex<HashSet<String>>,
    akamai_nonces: Mutex<HashSet<String>>,
    polls: AtomicUsize,
    next_id: AtomicU64,
}

struct St {
    kind: ProviderKind,
    s: Shared,
}

/// A running stand-in.
pub struct CdnApi {
    pub kind: ProviderKind,
    addr: std::net::SocketAddr,
    st: Arc<St>,
    runtime: Option<tokio::runtime::Runtime>,
}

impl Drop for CdnApi {
    fn drop(&mut self) {
        if let Some(rt) = self.runtime.take() {
            rt.shutdown_background();
        }
    }
}

impl CdnApi {
    pub fn start(kind: ProviderKind) -> CdnApi {
        let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        listener.set_nonblocking(true).unwrap();
        let addr = listener.local_addr().unwrap();
        let st = Arc::new(St {
            kind,
            s: Shared::default(),
        });
        let runtime = tokio::runtime::Builder::new_multi_thread()
            .worker_threads(1)
            .enable_all()
            .build()
            .unwrap();
        let app = Router::new().fallback(handle).with_state(st.clone());
        runtime.spawn(async move {
            let l = tokio::net::TcpListener::from_std(listener).unwrap();
            let _ = axum::serve(l, app).await;
        });
        CdnApi {
            kind,
            addr,
            st,
            runtime: Some(runtime),
        }
    }

    /// `n` self-run edges.
    pub fn start_edges(n: usize) -> Vec<CdnApi> {
        (0..n).map(|_| CdnApi::start(ProviderKind::Http)).collect()
    }

    pub fn base_url(&self) -> String {
        format!("http://{}", self.addr)
    }

    pub fn target(&self) -> PurgeTarget {
        if self.kind == ProviderKind::Http {
            return http_target(std::slice::from_ref(self));
        }
        let provider = match self.kind {
            ProviderKind::Cloudflare => ProviderConfig::Cloudflare {
                zone_id: CF_ZONE.into(),
                token: Secret::new(CF_TOKEN),
            },
            ProviderKind::Fastly => ProviderConfig::Fastly {
                service_id: FASTLY_SERVICE.into(),
                token: Secret::new(FASTLY_TOKEN),
            },
            ProviderKind::Akamai => ProviderConfig::Akamai {
                network: AkamaiNetwork::Production,
                credentials: EdgeGridCredentials {
                    client_token: Secret::new(AKAMAI_CLIENT_TOKEN),
                    client_secret: Secret::new(AKAMAI_CLIENT_SECRET),
                    access_token: Secret::new(AKAMAI_ACCESS_TOKEN),
                },
                cp_codes: AKAMAI_CP_CODES.to_vec(),
            },
            ProviderKind::Cloudfront => ProviderConfig::Cloudfront {
                distribution_id: CF_DISTRIBUTION.into(),
                credentials: AwsCredentials {
                    access_key_id: Secret::new(AWS_KEY_ID),
                    secret_access_key: Secret::new(AWS_SECRET),
                    session_token: None,
                },
            },
            ProviderKind::Http => unreachable!(),
        };
        with_defaults(provider, self.base_url())
    }

    pub fn seen(&self) -> Vec<Recorded> {
        self.st.s.seen.lock().unwrap().clone()
    }

    pub fn requests(&self) -> Vec<Recorded> {
        self.seen()
            .into_iter()
            .filter(|r| (200..300).contains(&r.status))
            .collect()
    }

    pub fn purged(&self) -> Vec<String> {
        self.requests()
            .into_iter()
            .flat_map(|r| {
                let failed = r.failed;
                r.items.into_iter().filter(move |i| !failed.contains(i))
            })
            .collect()
    }

    pub fn calls(&self) -> usize {
        self.st.s.calls.load(Ordering::SeqCst)
    }

    pub fn fail_next(&self, status: u16, n: usize, retry_after: Option<u64>) {
        *self.st.s.fail_next.lock().unwrap() = Some((status, n, retry_after));
    }

    pub fn set_down(&self, down: bool) {
        self.st.s.down.store(down, Ordering::SeqCst);
    }

    pub fn set_delay(&self, d: Duration) {
        *self.st.s.delay.lock().unwrap() = d;
    }

    pub fn fail_items(&self, items: &[&str]) {
        *self.st.s.fail_items.lock().unwrap() = items.iter().map(|s| s.to_string()).collect();
    }

    pub fn set_in_progress_polls(&self, k: usize) {
        self.st.s.in_progress_polls.store(k, Ordering::SeqCst);
    }

    pub fn set_completed_on_create(&self, yes: bool) {
        self.st.s.completed_on_create.store(yes, Ordering::SeqCst);
    }

    pub fn polls(&self) -> usize {
        self.st.s.polls.load(Ordering::SeqCst)
    }
}

/// A target purging every edge of `edges` (with [`EDGE_TOKEN`], `ban` for keys, `xkey`).
pub fn http_target(edges: &[CdnApi]) -> PurgeTarget {
    let provider = ProviderConfig::Http {
        edges: edges.iter().map(CdnApi::base_url).collect(),
        key_method: EdgeMethod::Ban,
        key_header: EDGE_KEY_HEADER.into(),
        token: Some(Secret::new(EDGE_TOKEN)),
    };
    with_defaults(provider, String::new())
}

fn with_defaults(provider: ProviderConfig, base_url: String) -> PurgeTarget {
    let d = steerd::config::purge_defaults::for_provider(provider.name()).unwrap();
    let provider_name = provider.name();
    PurgeTarget {
        provider,
        base_url,
        rate: RateLimit {
            per_second: d.rate.per_second,
            burst: d.rate.burst,
        },
        max_per_request: d.max_per_request,
        timeout: Duration::from_secs(2),
        host: None,
        pricing: steerd::config::purge_defaults::pricing(provider_name),
        purge_ratio_half: steerd::config::purge_defaults::PURGE_RATIO_HALF,
    }
}

/// `t` with every credential replaced by [`WRONG`] (a wrong token, key or secret).
pub fn wrong_credentials(t: &PurgeTarget) -> PurgeTarget {
    let w = || Secret::new(WRONG);
    let mut t = t.clone();
    match &mut t.provider {
        ProviderConfig::Cloudflare { token, .. } | ProviderConfig::Fastly { token, .. } => {
            *token = w()
        }
        ProviderConfig::Akamai { credentials, .. } => credentials.client_secret = w(),
        ProviderConfig::Cloudfront { credentials, .. } => credentials.secret_access_key = w(),
        ProviderConfig::Http { token, .. } => *token = Some(w()),
    }
    t
}

// ---------------------------------------------------------------------------------------------
// The server
// ---------------------------------------------------------------------------------------------

/// What a request was, before the provider logic answered it.
struct Req {
    method: String,
    path: String,
    headers: HeaderMap,
    body: String,
}

impl Req {
    fn header(&self, name: &str) -> Option<&str> {
        self.headers.get(name).and_then(|v| v.to_str().ok())
    }

    fn record(&self, kind: &str, items: Vec<String>, failed: Vec<String>, soft: bool) -> Recorded {
        Recorded {
            method: self.method.clone(),
            path: self.path.clone(),
            headers: self
                .headers
                .iter()
                .map(|(k, v)| (k.to_string(), v.to_str().unwrap_or("").to_string()))
                .collect(),
            body: self.body.clone(),
            kind: kind.into(),
            items,
            failed,
            soft,
            status: 0,
        }
    }
}

/// An answer and, when the request reached the provider logic, what it was.
type Answer = (Response, Option<Recorded>);

async fn handle(State(st): State<Arc<St>>, req: Request) -> Response {
    let s = &st.s;
    s.calls.fetch_add(1, Ordering::SeqCst);
    let (parts, body) = req.into_parts();
    let body = axum::body::to_bytes(body, 1 << 20)
        .await
        .unwrap_or_default();
    let req = Req {
        method: parts.method.to_string(),
        path: parts
            .uri
            .path_and_query()
            .map(|p| p.as_str().to_string())
            .unwrap_or_default(),
        headers: parts.headers,
        body: String::from_utf8_lossy(&body).into_owned(),
    };
    let delay = *s.delay.lock().unwrap();
    if !delay.is_zero() {
        tokio::time::sleep(delay).await;
    }
    if s.down.load(Ordering::SeqCst) {
        return error(st.kind, 503, None, "down");
    }
    let injected = {
        let mut f = s.fail_next.lock().unwrap();
        match f.as_mut() {
            Some((status, n, ra)) if *n > 0 => {
                *n -= 1;
                Some((*status, *ra))
            }
            _ => None,
        }
    };
    if let Some((status, ra)) = injected {
        return error(st.kind, status, ra, "injected failure");
    }
    let (response, recorded) = match st.kind {
        ProviderKind::Cloudflare => cloudflare(s, &req),
        ProviderKind::Fastly => fastly(s, &req),
        ProviderKind::Akamai => akamai(s, &req),
        ProviderKind::Cloudfront => cloudfront(s, &req),
        ProviderKind::Http => edge(s, &req),
    };
    if let Some(mut r) = recorded {
        r.status = response.status().as_u16();
        s.seen.lock().unwrap().push(r);
    }
    response
}

fn status(code: u16) -> StatusCode {
    StatusCode::from_u16(code).unwrap()
}

fn json_answer(code: u16, v: Value) -> Response {
    (status(code), axum::Json(v)).into_response()
}

/// The provider's error shape, with `Retry-After` when given.
fn error(kind: ProviderKind, code: u16, retry_after: Option<u64>, msg: &str) -> Response {
    let msg = format!("stand-in: {msg} (HTTP {code})");
    let mut r = match kind {
        ProviderKind::Cloudflare => json_answer(
            code,
            json!({"success": false, "errors": [{"code": 10000 + code, "message": msg}],
                   "messages": [], "result": null}),
        ),
        ProviderKind::Fastly => json_answer(code, json!({"msg": msg})),
        ProviderKind::Akamai => json_answer(
            code,
            json!({"type": "about:blank", "title": "stand-in error", "httpStatus": code,
                   "detail": msg}),
        ),
        ProviderKind::Cloudfront => {
            let c = match code {
                429 => "Throttling",
                400 => "TooManyInvalidationsInProgress",
                403 => "AccessDenied",
                _ => "ServiceUnavailable",
            };
            xml_error(code, c, &msg)
        }
        ProviderKind::Http => (status(code), msg).into_response(),
    };
    if let Some(s) = retry_after {
        r.headers_mut()
            .insert("retry-after", s.to_string().parse().unwrap());
    }
    r
}

fn failed_of(s: &Shared, items: &[String]) -> Vec<String> {
    let f = s.fail_items.lock().unwrap();
    items.iter().filter(|i| f.contains(*i)).cloned().collect()
}

fn next_id(s: &Shared, prefix: &str) -> String {
    format!("{prefix}{}", s.next_id.fetch_add(1, Ordering::SeqCst) + 1)
}

fn strings(v: &Value) -> Option<Vec<String>> {
    v.as_array()?
        .iter()
        .map(|x| x.as_str().map(str::to_string))
        .collect()
}

// --- Cloudflare ------------------------------------------------------------------------------

fn cloudflare(s: &Shared, req: &Req) -> Answer {
    let refuse = |code: u16, c: u32, m: &str| {
        json_answer(
            code,
            json!({"success": false, "errors": [{"code": c, "message": m}], "messages": [],
                   "result": null}),
        )
    };
    if req.method != "POST" || req.path != format!("/zones/{CF_ZONE}/purge_cache") {
        return (refuse(404, 7003, "Could not route to this path"), None);
    }
    let presented = req.header("authorization").unwrap_or("");
    if presented != format!("Bearer {CF_TOKEN}") {
        // Echoes what it was sent, so a client that prints bodies would leak it.
        let m = format!("Authentication error: invalid token {presented:?}");
        return (refuse(403, 10000, &m), None);
    }
    let Ok(body) = serde_json::from_str::<Value>(&req.body) else {
        return (refuse(400, 1012, "body is not JSON"), None);
    };
    let obj = body.as_object().cloned().unwrap_or_default();
    let (kind, items) = if obj.len() == 1 && body.get("purge_everything") == Some(&json!(true)) {
        ("everything", vec!["everything".to_string()])
    } else {
        let found: Vec<_> = ["files", "tags", "prefixes", "hosts"]
            .into_iter()
            .filter(|k| obj.contains_key(*k))
            .collect();
        let items = (found.len() == 1 && obj.len() == 1)
            .then(|| strings(&obj[found[0]]))
            .flatten();
        match items {
            Some(items) if !items.is_empty() && items.len() <= 100 => (found[0], items),
            _ => return (refuse(400, 1012, "Request must contain one of ..."), None),
        }
    };
    let failed = failed_of(s, &items);
    let rec = req.record(kind, items, failed.clone(), false);
    if !failed.is_empty() {
        let m = format!("stand-in refused {}", failed.join(", "));
        return (refuse(400, 1012, &m), Some(rec));
    }
    let id = next_id(s, "cf-purge-");
    let ok = json!({"success": true, "errors": [], "messages": [], "result": {"id": id}});
    (json_answer(200, ok), Some(rec))
}

// --- Fastly ----------------------------------------------------------------------------------

fn fastly(s: &Shared, req: &Req) -> Answer {
    if req.method != "POST" {
        return (json_answer(405, json!({"msg": "Method not allowed"})), None);
    }
    let presented = req.header("fastly-key").unwrap_or("");
    if presented != FASTLY_TOKEN {
        let m = json!({"msg": "Provided credentials are missing or invalid",
                       "detail": format!("key {presented}")});
        return (json_answer(401, m), None);
    }
    let soft = req.header("fastly-soft-purge") == Some("1");
    let service = format!("/service/{FASTLY_SERVICE}/");
    if let Some(url) = req.path.strip_prefix("/purge/") {
        let items = vec![url.to_string()];
        let failed = failed_of(s, &items);
        let rec = req.record("url", items, failed.clone(), soft);
        if !failed.is_empty() {
            let m = json!({"msg": "stand-in refused", "detail": url});
            return (json_answer(400, m), Some(rec));
        }
        let ok = json!({"status": "ok", "id": next_id(s, "fastly-")});
        return (json_answer(200, ok), Some(rec));
    }
    match req.path.strip_prefix(&service) {
        Some("purge") => {
            let keys = serde_json::from_str::<Value>(&req.body)
                .ok()
                .and_then(|v| strings(v.get("surrogate_keys")?));
            let Some(keys) = keys.filter(|k| !k.is_empty() && k.len() <= 256) else {
                let m = json!({"msg": "Bad request", "detail": "surrogate_keys: 1 to 256"});
                return (json_answer(400, m), None);
            };
            let failed = failed_of(s, &keys);
            let mut answer = serde_json::Map::new();
            for k in keys.iter().filter(|k| !failed.contains(k)) {
                answer.insert(k.clone(), Value::from(next_id(s, "fastly-")));
            }
            let rec = req.record("keys", keys, failed, soft);
            (json_answer(200, Value::Object(answer)), Some(rec))
        }
        Some("purge_all") => {
            let rec = req.record("everything", vec!["everything".into()], vec![], soft);
            (json_answer(200, json!({"status": "ok"})), Some(rec))
        }
        _ => (json_answer(404, json!({"msg": "Record not found"})), None),
    }
}

// --- Akamai ----------------------------------------------------------------------------------

fn problem(code: u16, title: &str, detail: &str) -> Response {
    json_answer(
        code,
        json!({"type": "about:blank", "title": title, "httpStatus": code, "detail": detail}),
    )
}

fn b64_hmac(key: &[u8], data: &[u8]) -> String {
    let mut m = <Hmac<Sha256> as KeyInit>::new_from_slice(key).unwrap();
    m.update(data);
    B64.encode(m.finalize().into_bytes())
}

fn raw_hmac(key: &[u8], data: &[u8]) -> Vec<u8> {
    let mut m = <Hmac<Sha256> as KeyInit>::new_from_slice(key).unwrap();
    m.update(data);
    m.finalize().into_bytes().to_vec()
}

/// Unix seconds of `yyyyMMddTHHmmss` digits (separators removed by the caller).
fn unix_of(d: &str) -> Option<i64> {
    let n = |r: std::ops::Range<usize>| d.get(r)?.parse::<u32>().ok();
    let month = time::Month::try_from(n(4..6)? as u8).ok()?;
    let date = time::Date::from_calendar_date(n(0..4)? as i32, month, n(6..8)? as u8).ok()?;
    let t = time::Time::from_hms(n(9..11)? as u8, n(11..13)? as u8, n(13..15)? as u8).ok()?;
    Some(
        time::PrimitiveDateTime::new(date, t)
            .assume_utc()
            .unix_timestamp(),
    )
}

fn fresh(unix: i64) -> bool {
    (time::OffsetDateTime::now_utc().unix_timestamp() - unix).abs() <= 300
}

/// Checks an EdgeGrid `Authorization` header the way Akamai documents it.
fn edgegrid_ok(s: &Shared, req: &Req) -> Result<(), String> {
    let auth = req.header("authorization").ok_or("no Authorization")?;
    let rest = auth
        .strip_prefix("EG1-HMAC-SHA256 ")
        .ok_or("not EG1-HMAC-SHA256")?;
    let (head, signature) = auth.rsplit_once("signature=").ok_or("no signature")?;
    let field = |name: &str| {
        rest.split(';')
            .find_map(|kv| kv.strip_prefix(&format!("{name}=")))
            .map(str::to_string)
    };
    if field("client_token").as_deref() != Some(AKAMAI_CLIENT_TOKEN)
        || field("access_token").as_deref() != Some(AKAMAI_ACCESS_TOKEN)
    {
        return Err("Invalid client or access token".into());
    }
    let ts = field("timestamp").ok_or("no timestamp")?;
    let digits = ts.replace(':', "");
    let unix =
        unix_of(digits.strip_suffix("+0000").ok_or("timestamp not UTC")?).ok_or("bad timestamp")?;
    if !fresh(unix) {
        return Err("timestamp too far from now".into());
    }
    let nonce = field("nonce").ok_or("no nonce")?;
    let host = req.header("host").ok_or("no Host")?;
    let hash = if req.body.is_empty() {
        String::new()
    } else {
        B64.encode(Sha256::digest(req.body.as_bytes()))
    };
    let data = [&req.method, "http", host, &req.path, "", &hash, head].join("\t");
    let key = b64_hmac(AKAMAI_CLIENT_SECRET.as_bytes(), ts.as_bytes());
    if b64_hmac(key.as_bytes(), data.as_bytes()) != signature {
        return Err("The signature does not match".into());
    }
    if !s.akamai_nonces.lock().unwrap().insert(nonce) {
        return Err("nonce used before".into());
    }
    Ok(())
}

fn akamai(s: &Shared, req: &Req) -> Answer {
    let parts: Vec<&str> = req.path.split('/').collect();
    let shape = match parts.as_slice() {
        ["", "ccu", "v3", action, kind, network]
            if matches!(*action, "invalidate" | "delete")
                && matches!(*kind, "url" | "tag" | "cpcode")
                && matches!(*network, "production" | "staging") =>
        {
            Some((*action == "invalidate", kind.to_string()))
        }
        _ => None,
    };
    let Some((soft, kind)) = shape.filter(|_| req.method == "POST") else {
        return (problem(404, "Not found", "no such resource"), None);
    };
    if let Err(e) = edgegrid_ok(s, req) {
        return (problem(401, "Unauthorized", &e), None);
    }
    if req.body.len() > 50_000 {
        return (
            problem(413, "Request entity too large", "over 50,000 bytes"),
            None,
        );
    }
    if req.header("content-type") != Some("application/json") {
        return (problem(415, "Unsupported media type", "JSON only"), None);
    }
    let objects = serde_json::from_str::<Value>(&req.body).ok().and_then(|v| {
        v.get("objects")?
            .as_array()?
            .iter()
            .map(|o| match o {
                Value::String(s) => Some(s.clone()),
                Value::Number(n) if kind == "cpcode" => Some(n.to_string()),
                _ => None,
            })
            .collect::<Option<Vec<String>>>()
    });
    let Some(objects) = objects.filter(|o| !o.is_empty()) else {
        return (
            problem(400, "Bad request", "objects: a non-empty list"),
            None,
        );
    };
    let failed = failed_of(s, &objects);
    let rec = req.record(&kind, objects, failed.clone(), soft);
    if !failed.is_empty() {
        let d = format!("not authorized to purge {}", failed.join(", "));
        return (problem(403, "Forbidden", &d), Some(rec));
    }
    let ok = json!({"httpStatus": 201, "detail": "Request accepted", "estimatedSeconds": 5,
                    "purgeId": next_id(s, "akamai-purge-"), "supportId": "stand-in"});
    (json_answer(201, ok), Some(rec))
}

// --- CloudFront ------------------------------------------------------------------------------

fn xml_error(code: u16, c: &str, msg: &str) -> Response {
    let body = format!(
        "<?xml version=\"1.0\"?><ErrorResponse xmlns=\"http://cloudfront.amazonaws.com/doc/\
         2020-05-31/\"><Error><Type>Sender</Type><Code>{c}</Code><Message>{}</Message></Error>\
         <RequestId>stand-in</RequestId></ErrorResponse>",
        quick_xml::escape::escape(msg)
    );
    (status(code), [("content-type", "text/xml")], body).into_response()
}

fn aws_encode(s: &str) -> String {
    s.bytes()
        .map(|b| {
            if b.is_ascii_alphanumeric() || b"-._~".contains(&b) {
                (b as char).to_string()
            } else {
                format!("%{b:02X}")
            }
        })
        .collect()
}

/// Checks a SigV4 `Authorization` header (service cloudfront, region us-east-1).
fn sigv4_ok(req: &Req) -> Result<(), (&'static str, String)> {
    let bad = |c: &'static str, m: &str| (c, m.to_string());
    let auth = req
        .header("authorization")
        .ok_or(bad("MissingAuthenticationToken", "no Authorization"))?;
    let rest = auth
        .strip_prefix("AWS4-HMAC-SHA256 ")
        .ok_or(bad("IncompleteSignature", "not AWS4-HMAC-SHA256"))?;
    let field = |name: &str| {
        rest.split(", ")
            .find_map(|kv| kv.strip_prefix(&format!("{name}=")))
            .map(str::to_string)
    };
    let credential = field("Credential").ok_or(bad("IncompleteSignature", "no Credential"))?;
    let signed = field("SignedHeaders").ok_or(bad("IncompleteSignature", "no SignedHeaders"))?;
    let signature = field("Signature").ok_or(bad("IncompleteSignature", "no Signature"))?;
    let amz_date = req
        .header("x-amz-date")
        .ok_or(bad("IncompleteSignature", "no X-Amz-Date"))?;
    let scope: Vec<&str> = credential.split('/').collect();
    if scope.first() != Some(&AWS_KEY_ID) {
        return Err(bad("InvalidClientTokenId", "unknown access key"));
    }
    let date = amz_date.get(..8).unwrap_or("");
    if scope[1..] != [date, "us-east-1", "cloudfront", "aws4_request"] {
        return Err(bad("SignatureDoesNotMatch", "credential scope"));
    }
    let unix = unix_of(amz_date.strip_suffix('Z').unwrap_or(""))
        .ok_or(bad("IncompleteSignature", "bad X-Amz-Date"))?;
    if !fresh(unix) {
        return Err(bad("SignatureDoesNotMatch", "Signature expired"));
    }
    let names: Vec<&str> = signed.split(';').collect();
    if !names.contains(&"host") || !names.contains(&"x-amz-date") {
        return Err(bad(
            "SignatureDoesNotMatch",
            "host and x-amz-date must be signed",
        ));
    }
    let (path, query) = req.path.split_once('?').unwrap_or((&req.path, ""));
    let cpath = path
        .split('/')
        .map(aws_encode)
        .collect::<Vec<_>>()
        .join("/");
    let mut q: Vec<&str> = query.split('&').filter(|p| !p.is_empty()).collect();
    q.sort();
    let mut headers = String::new();
    for n in &names {
        let v = req.header(n).unwrap_or("");
        headers.push_str(&format!(
            "{n}:{}\n",
            v.split_whitespace().collect::<Vec<_>>().join(" ")
        ));
    }
    let canonical = format!(
        "{}\n{cpath}\n{}\n{headers}\n{signed}\n{}",
        req.method,
        q.join("&"),
        hex::encode(Sha256::digest(req.body.as_bytes()))
    );
    let to_sign = format!(
        "AWS4-HMAC-SHA256\n{amz_date}\n{date}/us-east-1/cloudfront/aws4_request\n{}",
        hex::encode(Sha256::digest(canonical.as_bytes()))
    );
    let mut k = raw_hmac(format!("AWS4{AWS_SECRET}").as_bytes(), date.as_bytes());
    for part in ["us-east-1", "cloudfront", "aws4_request"] {
        k = raw_hmac(&k, part.as_bytes());
    }
    if hex::encode(raw_hmac(&k, to_sign.as_bytes())) != signature {
        return Err(bad(
            "SignatureDoesNotMatch",
            "The request signature we calculated does not match the signature you provided",
        ));
    }
    Ok(())
}

/// Texts of every element named `name`, in order.
fn xml_all(xml: &str, name: &str) -> Option<Vec<String>> {
    use quick_xml::events::Event;
    let mut r = quick_xml::Reader::from_str(xml);
    let (mut out, mut cur): (Vec<String>, Option<String>) = (Vec::new(), None);
    loop {
        match r.read_event().ok()? {
            Event::Start(e) if e.local_name().as_ref() == name => cur = Some(String::new()),
            Event::Text(t) => {
                if let Some(c) = cur.as_mut() {
                    c.push_str(&t.xml10_content());
                }
            }
            Event::GeneralRef(g) => {
                if let Some(c) = cur.as_mut() {
                    match g.resolve_char_ref() {
                        Ok(Some(ch)) => c.push(ch),
                        _ => c.push_str(quick_xml::escape::resolve_xml_entity(&g)?),
                    }
                }
            }
            Event::End(e) if e.local_name().as_ref() == name => out.extend(cur.take()),
            Event::Eof => return Some(out),
            _ => {}
        }
    }
}

fn invalidation_xml(id: &str, status: &str, paths: &[String]) -> String {
    let items: String = paths
        .iter()
        .map(|p| format!("<Path>{}</Path>", quick_xml::escape::escape(p.as_str())))
        .collect();
    format!(
        "<?xml version=\"1.0\"?><Invalidation xmlns=\"http://cloudfront.amazonaws.com/doc/\
         2020-05-31/\"><Id>{id}</Id><Status>{status}</Status><CreateTime>2024-01-01T00:00:00Z\
         </CreateTime><InvalidationBatch><Paths><Quantity>{}</Quantity><Items>{items}</Items>\
         </Paths><CallerReference>x</CallerReference></InvalidationBatch></Invalidation>",
        paths.len()
    )
}

fn cloudfront(s: &Shared, req: &Req) -> Answer {
    let base = format!("/2020-05-31/distribution/{CF_DISTRIBUTION}/invalidation");
    let is_create = req.method == "POST" && req.path == base;
    let poll_id = req
        .path
        .strip_prefix(&format!("{base}/"))
        .filter(|_| req.method == "GET")
        .map(str::to_string);
    if !is_create && poll_id.is_none() {
        let m = "The specified distribution does not exist.";
        return (xml_error(404, "NoSuchDistribution", m), None);
    }
    if let Err((code, m)) = sigv4_ok(req) {
        return (xml_error(403, code, &m), None);
    }
    if let Some(id) = poll_id {
        s.polls.fetch_add(1, Ordering::SeqCst);
        let mut inv = s.invalidations.lock().unwrap();
        let Some(left) = inv.get_mut(&id) else {
            let m = "The specified invalidation does not exist.";
            return (xml_error(404, "NoSuchInvalidation", m), None);
        };
        let status = if *left > 0 {
            *left -= 1;
            "InProgress"
        } else {
            "Completed"
        };
        return (
            (StatusCode::OK, invalidation_xml(&id, status, &[])).into_response(),
            None,
        );
    }
    let Some(paths) = xml_all(&req.body, "Path") else {
        return (xml_error(400, "MalformedXML", "not XML"), None);
    };
    let quantity = xml_all(&req.body, "Quantity").and_then(|q| q.first()?.parse::<usize>().ok());
    let reference = xml_all(&req.body, "CallerReference").and_then(|r| r.first().cloned());
    let root_ok = req
        .body
        .contains("<InvalidationBatch xmlns=\"http://cloudfront.amazonaws.com/doc/2020-05-31/\">");
    if !root_ok || paths.is_empty() || reference.as_deref().unwrap_or("").is_empty() {
        return (
            xml_error(400, "MalformedInput", "an InvalidationBatch"),
            None,
        );
    }
    if quantity != Some(paths.len()) {
        let m = "The value of Quantity and the size of Items don't match.";
        return (xml_error(400, "InconsistentQuantities", m), None);
    }
    if paths.len() > 3000 || paths.iter().filter(|p| p.ends_with('*')).count() > 15 {
        return (xml_error(400, "BatchTooLarge", "too many paths"), None);
    }
    if paths.iter().any(|p| !p.starts_with('/')) {
        return (
            xml_error(400, "InvalidArgument", "a path must start with /"),
            None,
        );
    }
    if !s
        .caller_refs
        .lock()
        .unwrap()
        .insert(reference.unwrap_or_default())
    {
        let m = "CallerReference used before";
        return (xml_error(409, "InvalidationBatchAlreadyExists", m), None);
    }
    let failed = failed_of(s, &paths);
    let rec = req.record("invalidation", paths.clone(), failed.clone(), false);
    if !failed.is_empty() {
        let m = format!("stand-in refused {}", failed.join(", "));
        return (xml_error(400, "InvalidArgument", &m), Some(rec));
    }
    let id = next_id(s, "I2J0STANDIN");
    let done = s.completed_on_create.load(Ordering::SeqCst);
    let polls = s.in_progress_polls.load(Ordering::SeqCst);
    s.invalidations
        .lock()
        .unwrap()
        .insert(id.clone(), if done { 0 } else { polls });
    let status = if done { "Completed" } else { "InProgress" };
    let location = format!("https://cloudfront.amazonaws.com{base}/{id}");
    let r = (
        StatusCode::CREATED,
        [
            ("location", location.as_str()),
            ("content-type", "text/xml"),
        ],
        invalidation_xml(&id, status, &paths),
    )
        .into_response();
    (r, Some(rec))
}

// --- Self-run edges --------------------------------------------------------------------------

fn edge(s: &Shared, req: &Req) -> Answer {
    if req.header("authorization") != Some(&format!("Bearer {EDGE_TOKEN}")) {
        return (
            (StatusCode::UNAUTHORIZED, "token required").into_response(),
            None,
        );
    }
    let host = req.header("host").unwrap_or("").to_string();
    let key = req.header(EDGE_KEY_HEADER).map(str::to_string);
    let prefix = req.header("x-ban-prefix").map(str::to_string);
    let (kind, item) = match (req.method.as_str(), key, prefix) {
        ("BAN" | "PURGE", Some(k), None) if req.path == "/" => ("key", k),
        ("BAN", None, Some(p)) if req.path == "/" => ("prefix", format!("{host}{p}")),
        ("PURGE", None, None) => ("url", format!("{host}{}", req.path)),
        _ => {
            return (
                (StatusCode::METHOD_NOT_ALLOWED, "not a purge").into_response(),
                None,
            );
        }
    };
    let failed = failed_of(s, std::slice::from_ref(&item));
    let rec = req.record(kind, vec![item], failed.clone(), false);
    if !failed.is_empty() {
        return (
            (StatusCode::INTERNAL_SERVER_ERROR, "purge failed").into_response(),
            Some(rec),
        );
    }
    ((StatusCode::OK, "Purged").into_response(), Some(rec))
}
