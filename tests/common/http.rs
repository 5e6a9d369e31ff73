//! A blocking HTTP client for the admin API in tests (reqwest on its own runtime).

use std::net::SocketAddr;
use std::time::Duration;

use serde_json::Value;

/// A blocking facade over an async reqwest client, on its own runtime.
pub struct Http {
    rt: tokio::runtime::Runtime,
    client: reqwest::Client,
    base: String,
    token: Option<String>,
}

pub enum Body {
    None,
    Json(Value),
    Raw(Vec<u8>),
}

pub struct Resp {
    pub status: u16,
    pub headers: reqwest::header::HeaderMap,
    pub text: String,
    pub what: String,
}

impl Resp {
    /// Assert the status (the body is shown on failure).
    #[track_caller]
    pub fn expect(self, status: u16) -> Self {
        assert_eq!(
            self.status, status,
            "{}: status (body: {})",
            self.what, self.text
        );
        self
    }

    #[track_caller]
    pub fn json(&self) -> Value {
        serde_json::from_str(&self.text).unwrap_or_else(|e| {
            panic!(
                "{}: body is not JSON ({e}): {:?}",
                self.what,
                &self.text[..self.text.len().min(300)]
            )
        })
    }

    pub fn header(&self, name: &str) -> Option<String> {
        self.headers
            .get(name)
            .map(|v| v.to_str().expect("ASCII header").to_string())
    }

    /// The ETag as a version: `"7"` → 7.
    #[track_caller]
    pub fn etag(&self) -> u64 {
        let e = self
            .header("etag")
            .unwrap_or_else(|| panic!("{}: no ETag header", self.what));
        assert!(
            e.starts_with('"') && e.ends_with('"') && e.len() > 2,
            "{}: ETag {e:?} is not a quoted version",
            self.what
        );
        e.trim_matches('"')
            .parse()
            .unwrap_or_else(|_| panic!("{}: ETag {e:?} is not a number", self.what))
    }

    /// The `error` string of a JSON error body.
    #[track_caller]
    pub fn error(&self) -> String {
        let j = self.json();
        j["error"]
            .as_str()
            .unwrap_or_else(|| panic!("{}: no \"error\" string in {j}", self.what))
            .to_string()
    }
}

impl Http {
    pub fn new(addr: SocketAddr) -> Self {
        let rt = tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
            .unwrap();
        let client = reqwest::Client::builder()
            .no_proxy()
            // A bound for a stuck server, not a speed check: a reload that loads the shipped
            // GeoIP database takes ~10 s in a debug build on a busy machine.
            .timeout(Duration::from_secs(60))
            .build()
            .unwrap();
        Http {
            rt,
            client,
            base: format!("http://{addr}"),
            token: None,
        }
    }

    pub fn with_token(addr: SocketAddr, token: &str) -> Self {
        let mut h = Self::new(addr);
        h.token = Some(token.to_string());
        h
    }

    pub fn send(&self, method: &str, path: &str, body: Body, headers: &[(&str, &str)]) -> Resp {
        self.try_send(method, path, body, headers)
            .unwrap_or_else(|e| panic!("{e}"))
    }

    /// Like [`Http::send`]; a request that gets no response (connection refused or reset, the
    /// server gone) is an error instead of a panic.
    pub fn try_send(
        &self,
        method: &str,
        path: &str,
        body: Body,
        headers: &[(&str, &str)],
    ) -> Result<Resp, String> {
        let what = format!("{method} {path}");
        let m = reqwest::Method::from_bytes(method.as_bytes()).unwrap();
        let mut req = self.client.request(m, format!("{}{path}", self.base));
        if let Some(t) = &self.token {
            req = req.bearer_auth(t);
        }
        for (k, v) in headers {
            req = req.header(*k, *v);
        }
        req = match body {
            Body::None => req,
            Body::Json(v) => req
                .header("content-type", "application/json")
                .body(serde_json::to_vec(&v).unwrap()),
            Body::Raw(b) => req.header("content-type", "application/json").body(b),
        };
        self.rt.block_on(async {
            let r = req
                .send()
                .await
                .map_err(|e| format!("{what}: request failed: {e}"))?;
            let status = r.status().as_u16();
            let headers = r.headers().clone();
            let text = r
                .text()
                .await
                .map_err(|e| format!("{what}: reading the body failed: {e}"))?;
            Ok(Resp {
                status,
                headers,
                text,
                what,
            })
        })
    }

    pub fn get(&self, path: &str) -> Resp {
        self.send("GET", path, Body::None, &[])
    }

    pub fn put(&self, path: &str, body: Value) -> Resp {
        self.send("PUT", path, Body::Json(body), &[])
    }

    pub fn put_if(&self, path: &str, body: Value, version: u64) -> Resp {
        let v = format!("\"{version}\"");
        self.send("PUT", path, Body::Json(body), &[("if-match", &v)])
    }

    pub fn post(&self, path: &str, body: Value) -> Resp {
        self.send("POST", path, Body::Json(body), &[])
    }

    pub fn delete(&self, path: &str) -> Resp {
        self.send("DELETE", path, Body::None, &[])
    }
}
