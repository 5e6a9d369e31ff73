//! DNS over TCP (RFC 7766): the accept loop and one task per connection, reading 2-byte
//! length-prefixed messages and answering them in order (pipelined queries are read as they
//! come) with the general path (`handler::answer_tcp`).
//!
//! Each listener's connections are tracked by a [`conns::Tracker`]: a cap per listener (a new
//! connection evicts the least active one of the busiest source) and per source; a query must be
//! complete within `first_timeout` of the connection opening or of its first byte, and a
//! connection waits `idle_timeout` at most for the next query once its answers are sent.
//! Memory per connection: the bytes of the message being read (it grows with what arrives,
//! up to 64 KiB) and the answer being written.

use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Instant;

use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpListener, TcpStream};
use tokio::time::timeout_at;
use tracing::debug;

use crate::conns::{self, Closed, Permit, Tracker};
use crate::dns::guard::GuardHandle;
use crate::dns::handler;
use crate::table::TableHandle;

/// What a connection task needs.
#[derive(Clone)]
pub struct TcpContext {
    pub table: TableHandle,
    pub guard: Arc<GuardHandle>,
    pub tracker: Arc<Tracker>,
}

/// Accept connections until `stop` fires; each gets its own task (tracked in `tasks`, so that
/// shutdown can end them).
pub async fn serve(
    listener: TcpListener,
    cx: TcpContext,
    mut stop: tokio::sync::watch::Receiver<bool>,
) {
    let mut tasks = tokio::task::JoinSet::new();
    let mut last_log = None;
    loop {
        let (stream, peer) = tokio::select! {
            r = listener.accept() => match r {
                Ok(x) => x,
                Err(e) => {
                    conns::accept_error("dns", &e, &mut last_log).await;
                    continue;
                }
            },
            _ = stop.changed() => break,
        };
        // Reap finished tasks so the set does not grow.
        while tasks.try_join_next().is_some() {}
        let Ok(permit) = cx.tracker.admit(peer.ip()) else {
            debug!(%peer, "TCP connection refused (connection limit)");
            drop(stream);
            continue;
        };
        let _ = stream.set_nodelay(true);
        let cx = cx.clone();
        tasks.spawn(async move {
            let evicted = permit.conn().clone();
            tokio::select! {
                _ = connection(stream, peer, &cx, &permit) => {}
                _ = evicted.evicted() => debug!(%peer, "TCP connection evicted"),
            }
        });
    }
    tasks.shutdown().await;
}

/// Why reading the next message stopped.
enum ReadEnd {
    /// Clean close (EOF before a length prefix) or an I/O error.
    Closed,
    Timeout(Closed),
}

/// Read one length-prefixed message: its first byte must come before `start_deadline`, the
/// rest within `first_timeout` of it (for the first message of a connection, both deadlines
/// are `first_timeout` after the accept).
async fn read_message(
    s: &mut TcpStream,
    start_deadline: tokio::time::Instant,
    first: Option<tokio::time::Instant>,
    limits: &conns::ConnLimits,
) -> Result<Vec<u8>, ReadEnd> {
    let mut len = [0u8; 2];
    let idle_kind = if first.is_some() {
        Closed::MessageTimeout
    } else {
        Closed::IdleTimeout
    };
    match timeout_at(start_deadline, s.read(&mut len[..1])).await {
        Err(_) => return Err(ReadEnd::Timeout(idle_kind)),
        Ok(Ok(0)) | Ok(Err(_)) => return Err(ReadEnd::Closed),
        Ok(Ok(_)) => {}
    }
    let deadline = first.unwrap_or_else(|| tokio::time::Instant::now() + limits.first_timeout);
    let body = async {
        s.read_exact(&mut len[1..]).await?;
        let n = u16::from_be_bytes(len) as usize;
        // Grows with the bytes that arrive, not with what the prefix promises.
        let mut buf = Vec::with_capacity(n.min(512));
        (&mut *s).take(n as u64).read_to_end(&mut buf).await?;
        if buf.len() < n {
            return Err(std::io::ErrorKind::UnexpectedEof.into());
        }
        Ok::<_, std::io::Error>(buf)
    };
    match timeout_at(deadline, body).await {
        Err(_) => Err(ReadEnd::Timeout(Closed::MessageTimeout)),
        Ok(Err(_)) => Err(ReadEnd::Closed),
        Ok(Ok(buf)) => Ok(buf),
    }
}

async fn connection(mut s: TcpStream, peer: SocketAddr, cx: &TcpContext, permit: &Permit) {
    let limits = *cx.tracker.limits();
    let accepted = tokio::time::Instant::now();
    let mut first = Some(accepted + limits.first_timeout);
    loop {
        let start_deadline =
            first.unwrap_or_else(|| tokio::time::Instant::now() + limits.idle_timeout);
        let msg = match read_message(&mut s, start_deadline, first, &limits).await {
            Ok(m) => m,
            Err(ReadEnd::Closed) => return,
            Err(ReadEnd::Timeout(why)) => {
                debug!(%peer, ?why, "TCP connection timed out");
                permit.closing(why);
                return;
            }
        };
        first = None;
        permit.progress();
        let start = Instant::now();
        let answer = {
            let table = cx.table.load();
            let guard = cx.guard.load();
            handler::answer_tcp(&table, &guard, msg, peer, cx.guard.now()).map(|(resp, key)| {
                table.counters.queries.record(key, start.elapsed());
                resp
            })
        };
        let Some(resp) = answer else { continue };
        let mut framed = Vec::with_capacity(resp.len() + 2);
        framed.extend_from_slice(&(resp.len() as u16).to_be_bytes());
        framed.extend_from_slice(&resp);
        drop(resp);
        // A client that does not read its answers is closed like an idle one.
        let deadline = tokio::time::Instant::now() + limits.idle_timeout;
        match timeout_at(deadline, s.write_all(&framed)).await {
            Ok(Ok(())) => {}
            Ok(Err(_)) => return,
            Err(_) => {
                permit.closing(Closed::IdleTimeout);
                return;
            }
        }
    }
}
