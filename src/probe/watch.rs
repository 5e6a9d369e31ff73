//! A passing check's connection, kept open until the next check: it tells when the target
//! closes it, and carries heartbeats.

use std::time::{Duration, Instant};

use bytes::Bytes;
use http_body_util::Empty;
use hyper::client::conn::http1;

use super::http::{Conn, hyper_reason, request, says_close};
use crate::config::check::HttpSpec;

enum Kept {
    Http {
        /// Heartbeats go out on it; dropping it would close the connection.
        sender: http1::SendRequest<Empty<Bytes>>,
        conn: tokio::task::JoinHandle<Result<(), hyper::Error>>,
    },
    Stream(Box<dyn Conn>),
}

/// What a heartbeat on a kept connection found.
#[derive(Debug)]
pub enum Beat {
    /// An answer, whatever its status: the edge is alive. `closing`: it said it will close the
    /// connection.
    Answered { latency: Duration, closing: bool },
    /// The connection closed or failed.
    Lost(String),
    /// No answer by the deadline.
    TimedOut,
}

/// A passing check's connection, kept open until the next check. [`Watch::closed`] completes
/// when the target closes or resets it — an edge that crashed or was killed — so the prober
/// re-checks at once instead of at the next interval; [`Watch::beat`] asks on it whether the
/// edge still answers (an edge that hangs keeps its connections open). Dropping it closes the
/// connection.
pub struct Watch {
    kept: Kept,
    since: Instant,
}

impl Watch {
    fn new(kept: Kept) -> Self {
        Self {
            kept,
            since: Instant::now(),
        }
    }

    /// An HTTP/1.1 connection: its sender and the task driving it.
    pub(super) fn http(
        sender: http1::SendRequest<Empty<Bytes>>,
        conn: tokio::task::JoinHandle<Result<(), hyper::Error>>,
    ) -> Self {
        Self::new(Kept::Http { sender, conn })
    }

    /// A TCP or TLS connection no request was sent on.
    pub(super) fn stream(s: Box<dyn Conn>) -> Self {
        Self::new(Kept::Stream(s))
    }

    /// How long the connection has been watched.
    pub fn age(&self) -> Duration {
        self.since.elapsed()
    }

    /// Heartbeats need an HTTP connection.
    pub fn can_beat(&self) -> bool {
        matches!(self.kept, Kept::Http { .. })
    }

    /// Send `HEAD <path>` on the kept connection and wait for the answer until `deadline`.
    pub async fn beat(&mut self, spec: &HttpSpec, deadline: tokio::time::Instant) -> Beat {
        let Kept::Http { sender, .. } = &mut self.kept else {
            return Beat::Lost("not an HTTP connection".into());
        };
        let req = match request(spec, &spec.path, http::Method::HEAD) {
            Ok(r) => r,
            Err(e) => return Beat::Lost(e),
        };
        let t = Instant::now();
        let answer = tokio::time::timeout_at(deadline, async {
            sender
                .ready()
                .await
                .map_err(|e| format!("connection closed: {e}"))?;
            sender
                .send_request(req)
                .await
                .map_err(|e| format!("no response: {}", hyper_reason(&e)))
        })
        .await;
        match answer {
            Err(_) => Beat::TimedOut,
            Ok(Err(e)) => Beat::Lost(e),
            Ok(Ok(resp)) => Beat::Answered {
                latency: t.elapsed(),
                closing: says_close(resp.headers()),
            },
        }
    }

    /// Completes when the peer closes or resets the connection.
    pub async fn closed(&mut self) {
        match &mut self.kept {
            Kept::Http { conn, .. } => {
                let _ = conn.await;
            }
            Kept::Stream(s) => {
                use tokio::io::AsyncReadExt;
                let mut buf = [0u8; 256];
                loop {
                    match s.read(&mut buf).await {
                        Ok(0) | Err(_) => return,
                        Ok(_) => {}
                    }
                }
            }
        }
    }
}

impl Drop for Watch {
    fn drop(&mut self) {
        if let Kept::Http { conn, .. } = &self.kept {
            conn.abort();
        }
    }
}
