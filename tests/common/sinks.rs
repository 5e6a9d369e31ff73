//! Alert sinks for tests: a local HTTP receiver that records every request (and answers with
//! scripted statuses), a reserved port nothing listens on yet, the `[alerts]` TOML for them,
//! and waiting for deliveries.

use std::collections::VecDeque;
use std::net::SocketAddr;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use axum::Router;
use axum::body::Bytes;
use axum::extract::State;
use axum::http::{HeaderMap, Method, StatusCode, Uri};
use serde_json::Value;
use steerd::alert::{AlertSettings, Alerter, SinkStats};

/// One request the receiver got; a body that is not JSON is kept as a JSON string.
#[derive(Debug, Clone)]
pub struct Req {
    pub method: Method,
    pub path: String,
    pub headers: HeaderMap,
    pub body: Value,
}

/// In a receiver's script: answer only after [`HANG_FOR`].
pub const HANG: u16 = 999;
/// How long a [`HANG`] answer takes: far longer than the sink timeout of the test using it, and
/// shorter than [`wait_for`]'s 10 s, so a timeout that never fires shows up as a late delivery.
pub const HANG_FOR: Duration = Duration::from_secs(8);

#[derive(Default)]
struct RecvState {
    reqs: Mutex<Vec<Req>>,
    /// Statuses to answer, in order; 200 once empty.
    script: Mutex<VecDeque<u16>>,
}

/// A local HTTP receiver recording every request, on any path and method.
#[derive(Clone)]
pub struct Receiver {
    pub addr: SocketAddr,
    st: Arc<RecvState>,
}

async fn record(
    State(st): State<Arc<RecvState>>,
    method: Method,
    uri: Uri,
    headers: HeaderMap,
    body: Bytes,
) -> (StatusCode, String) {
    let body = serde_json::from_slice(&body)
        .unwrap_or_else(|_| Value::String(String::from_utf8_lossy(&body).into()));
    st.reqs.lock().unwrap().push(Req {
        method,
        path: uri.path().to_string(),
        headers,
        body,
    });
    let mut code = st.script.lock().unwrap().pop_front().unwrap_or(200);
    if code == HANG {
        tokio::time::sleep(HANG_FOR).await;
        code = 200;
    }
    (
        StatusCode::from_u16(code).unwrap(),
        format!("status {code} from the test receiver"),
    )
}

impl Receiver {
    /// Listen on 127.0.0.1 (a kernel-chosen port), answering `script`'s statuses in order,
    /// then 200. Served on the current tokio runtime.
    pub async fn start(script: &[u16]) -> Receiver {
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        Self::serve(listener, script)
    }

    /// Listen on a port reserved earlier by [`down`].
    pub async fn start_on(down: Down) -> Receiver {
        down.sock.listen(128).unwrap();
        down.sock.set_nonblocking(true).unwrap();
        let std: std::net::TcpListener = down.sock.into();
        Self::serve(tokio::net::TcpListener::from_std(std).unwrap(), &[])
    }

    fn serve(listener: tokio::net::TcpListener, script: &[u16]) -> Receiver {
        let addr = listener.local_addr().unwrap();
        let st = Arc::new(RecvState::default());
        st.script.lock().unwrap().extend(script.iter().copied());
        let app = Router::new().fallback(record).with_state(st.clone());
        tokio::spawn(async move {
            axum::serve(listener, app).await.unwrap();
        });
        Receiver { addr, st }
    }

    pub fn url(&self, path: &str) -> String {
        format!("http://{}{path}", self.addr)
    }

    pub fn reqs(&self) -> Vec<Req> {
        self.st.reqs.lock().unwrap().clone()
    }

    pub fn count(&self) -> usize {
        self.st.reqs.lock().unwrap().len()
    }
}

/// A 127.0.0.1 port nothing listens on: connections are refused until a receiver takes it
/// over ([`Receiver::start_on`]). The port stays bound meanwhile (not listening), so no other
/// socket of the test run gets it.
pub struct Down {
    pub addr: SocketAddr,
    sock: socket2::Socket,
}

impl Down {
    pub fn url(&self, path: &str) -> String {
        format!("http://{}{path}", self.addr)
    }
}

pub fn down() -> Down {
    let sock = socket2::Socket::new(socket2::Domain::IPV4, socket2::Type::STREAM, None).unwrap();
    let any: SocketAddr = "127.0.0.1:0".parse().unwrap();
    sock.bind(&any.into()).unwrap();
    let addr = sock.local_addr().unwrap().as_socket().unwrap();
    Down { addr, sock }
}

/// Fast retries for tests (keys of `[alerts]`).
pub const FAST: &str = "node = \"steerd-test\"\nretry_initial = 0.01\nretry_max = 0.05\n";

/// A `[[alerts.sinks]]` entry; `extra` is more of its keys (`timeout = 1`, …).
pub fn sink(name: &str, kind: &str, url: &str, extra: &str) -> String {
    format!("\n[[alerts.sinks]]\nname = \"{name}\"\nkind = \"{kind}\"\nurl = \"{url}\"\n{extra}")
}

/// `[alerts]` (TOML, without the header) through the whole configuration parser.
pub fn settings(alerts: &str) -> AlertSettings {
    let text = format!("[alerts]\n{alerts}");
    match steerd::config::parse(&text, "test.toml") {
        Ok(cfg) => cfg.alerts,
        Err(e) => panic!("config rejected: {e}\n{text}"),
    }
}

/// `[alerts]` with [`FAST`] retries, more of its keys `top` (`queue = 2`, …) and `sinks`.
pub fn alerts(top: &str, sinks: &[String]) -> AlertSettings {
    settings(&format!("{FAST}{top}{}", sinks.concat()))
}

/// An alerter started on [`alerts`]`(top, sinks)`.
pub fn alerter(top: &str, sinks: &[String]) -> Alerter {
    Alerter::start(&alerts(top, sinks))
}

/// A receiver answering `script` (see [`Receiver::start`]) and an alerter with [`FAST`]
/// retries and one sink, `name` of `kind`, posting to the receiver's `path`; `extra` is more
/// keys of the sink.
pub async fn receiver_and_alerter(
    script: &[u16],
    name: &str,
    kind: &str,
    path: &str,
    extra: &str,
) -> (Receiver, Alerter) {
    let rx = Receiver::start(script).await;
    let a = alerter("", &[sink(name, kind, &rx.url(path), extra)]);
    (rx, a)
}

/// Poll `cond` every 20 ms for up to 10 s.
pub async fn wait_for(what: &str, mut cond: impl FnMut() -> bool) {
    let deadline = tokio::time::Instant::now() + Duration::from_secs(10);
    while !cond() {
        if tokio::time::Instant::now() > deadline {
            panic!("timed out waiting for {what}");
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

/// The counters of sink `sink`.
pub fn stats(a: &Alerter, sink: &str) -> SinkStats {
    a.stats()
        .into_iter()
        .find(|s| s.sink == sink)
        .unwrap_or_else(|| panic!("no sink {sink}"))
}

/// Wait until sink `sink` has counted `n` deliveries.
pub async fn delivered(a: &Alerter, sink: &str, n: u64) {
    wait_for(&format!("{n} deliveries counted by {sink}"), || {
        stats(a, sink).delivered == n
    })
    .await;
}

/// The `id` of each request's JSON body.
pub fn ids(reqs: &[Req]) -> Vec<u64> {
    reqs.iter()
        .map(|r| r.body["id"].as_u64().unwrap())
        .collect()
}
