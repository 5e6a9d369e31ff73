//! The admin API's accept loop (hyper HTTP/1.1 serving the axum router), with the connection
//! limits of `[admin]`: a cap per listener (a new connection evicts the least active one of the
//! busiest source) and per source, a header timeout (a request head must be complete within
//! `header_timeout` of the connection opening or of its first byte) and an idle timeout
//! between requests. Request heads are read into a buffer of 64 KiB at most; bodies are
//! bounded by `admin.max_body`.

use std::io;
use std::pin::Pin;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::task::{Context, Poll};
use std::time::{Duration, Instant};

use axum::Router;
use hyper::body::Incoming;
use hyper_util::rt::TokioIo;
use hyper_util::service::TowerToHyperService;
use tokio::io::{AsyncRead, AsyncWrite, ReadBuf};
use tokio::net::{TcpListener, TcpStream};
use tracing::debug;

use crate::conns::{self, Closed, ConnLimits, Permit, Tracker};

/// Largest request head.
const MAX_HEAD: usize = 64 * 1024;

const HEAD: u64 = 0;
const BUSY: u64 = 1;
const IDLE: u64 = 2;

/// Where a connection is: reading a request head (since), handling a request, or idle between
/// requests (since its last write), packed as `since_ms << 2 | phase`.
struct Phase {
    word: AtomicU64,
    start: Instant,
    /// Wakes the watchdog when a head starts (its deadline may be sooner).
    changed: tokio::sync::Notify,
}

impl Phase {
    fn now_ms(&self) -> u64 {
        self.start.elapsed().as_millis() as u64
    }
    fn set(&self, phase: u64) {
        self.word
            .store(self.now_ms() << 2 | phase, Ordering::Relaxed);
    }
    fn get(&self) -> (u64, u64) {
        let w = self.word.load(Ordering::Relaxed);
        (w & 3, w >> 2)
    }
    fn on_read(&self) {
        if self.get().0 == IDLE {
            self.set(HEAD);
            self.changed.notify_one();
        }
    }
    fn on_write(&self) {
        if self.get().0 == IDLE {
            self.set(IDLE);
        }
    }
    /// When the connection times out if nothing changes, and why; None while busy.
    fn deadline(&self, limits: &ConnLimits) -> Option<(Instant, Closed)> {
        let (phase, since) = self.get();
        let at = |d: Duration| self.start + Duration::from_millis(since) + d;
        match phase {
            HEAD => Some((at(limits.first_timeout), Closed::MessageTimeout)),
            IDLE => Some((at(limits.idle_timeout), Closed::IdleTimeout)),
            _ => None,
        }
    }
}

/// The TCP stream, telling the phase about the bytes that pass.
struct Watched {
    inner: TcpStream,
    phase: Arc<Phase>,
}

impl AsyncRead for Watched {
    fn poll_read(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> Poll<io::Result<()>> {
        let before = buf.filled().len();
        let r = Pin::new(&mut self.inner).poll_read(cx, buf);
        if matches!(r, Poll::Ready(Ok(()))) && buf.filled().len() > before {
            self.phase.on_read();
        }
        r
    }
}

impl AsyncWrite for Watched {
    fn poll_write(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &[u8],
    ) -> Poll<io::Result<usize>> {
        let r = Pin::new(&mut self.inner).poll_write(cx, buf);
        if matches!(r, Poll::Ready(Ok(n)) if n > 0) {
            self.phase.on_write();
        }
        r
    }
    fn poll_flush(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.inner).poll_flush(cx)
    }
    fn poll_shutdown(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.inner).poll_shutdown(cx)
    }
    fn poll_write_vectored(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        bufs: &[io::IoSlice<'_>],
    ) -> Poll<io::Result<usize>> {
        let r = Pin::new(&mut self.inner).poll_write_vectored(cx, bufs);
        if matches!(r, Poll::Ready(Ok(n)) if n > 0) {
            self.phase.on_write();
        }
        r
    }
    fn is_write_vectored(&self) -> bool {
        self.inner.is_write_vectored()
    }
}

/// Serve `app` on `listener` until the task is aborted (which ends every connection too).
pub async fn serve(listener: TcpListener, app: Router, tracker: Arc<Tracker>) {
    let mut tasks = tokio::task::JoinSet::new();
    let mut last_log = None;
    loop {
        let (stream, peer) = match listener.accept().await {
            Ok(x) => x,
            Err(e) => {
                conns::accept_error("admin", &e, &mut last_log).await;
                continue;
            }
        };
        while tasks.try_join_next().is_some() {}
        let Ok(permit) = tracker.admit(peer.ip()) else {
            debug!(%peer, "admin connection refused (connection limit)");
            drop(stream);
            continue;
        };
        let app = app.clone();
        let limits = *tracker.limits();
        tasks.spawn(async move { connection(stream, app, permit, limits).await });
    }
}

async fn connection(stream: TcpStream, app: Router, permit: Permit, limits: ConnLimits) {
    let phase = Arc::new(Phase {
        word: AtomicU64::new(HEAD),
        start: Instant::now(),
        changed: tokio::sync::Notify::new(),
    });
    let io = TokioIo::new(Watched {
        inner: stream,
        phase: phase.clone(),
    });
    let inner = TowerToHyperService::new(app);
    let permit = Arc::new(permit);
    let (p, pm) = (phase.clone(), permit.clone());
    let svc = hyper::service::service_fn(move |req: hyper::Request<Incoming>| {
        // The head is complete: no timeout while the request is handled.
        p.set(BUSY);
        pm.progress();
        let fut = hyper::service::Service::call(&inner, req);
        let p = p.clone();
        async move {
            let r = fut.await;
            p.set(IDLE);
            r
        }
    });
    let conn = hyper::server::conn::http1::Builder::new()
        .max_buf_size(MAX_HEAD)
        .serve_connection(io, svc);
    tokio::pin!(conn);
    let evicted = permit.conn().clone();
    loop {
        let deadline = phase.deadline(&limits);
        let sleep = async {
            match deadline {
                Some((at, _)) => tokio::time::sleep_until(at.into()).await,
                None => std::future::pending().await,
            }
        };
        tokio::select! {
            r = &mut conn => {
                if let Err(e) = r {
                    debug!(error = %e, "admin connection");
                }
                return;
            }
            _ = evicted.evicted() => return,
            _ = phase.changed.notified() => {}
            _ = sleep => {
                if let Some((at, why)) = phase.deadline(&limits)
                    && Instant::now() >= at
                {
                    permit.closing(why);
                    return;
                }
            }
        }
    }
}
