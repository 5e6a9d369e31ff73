//! Sockets: per-core UDP sockets with SO_REUSEPORT on every listen address, plus one TCP listener
//! per address served by `dns::tcp` (connection caps and timeouts). The UDP sockets are served
//! by `ServerSettings::udp_engine`: the fast engine (a blocking worker per socket, fast path
//! first) in production, or the hickory engine (hickory-server's `Server` calling
//! `dns::handler` for every query), which tests and benchmarks set to compare against.

use std::io;
use std::net::{SocketAddr, UdpSocket};
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::thread::JoinHandle;
use std::time::Duration;

use anyhow::{Context, bail};
use hickory_server::Server;
use socket2::{Domain, Protocol, Socket, Type};
use tracing::{debug, info, warn};

use crate::config::{ServerSettings, UdpEngine};
use crate::conns::{ConnLimits, Registry, Tracker};
use crate::dns::fast::{self, FastOutcome};
use crate::dns::guard::GuardHandle;
use crate::dns::handler::{self, DnsHandler};
use crate::dns::precompute::MAX_FAST_RESPONSE;
use crate::dns::stats;
use crate::dns::tcp::{self, TcpContext};
use crate::table::{Proto, QueryKey, TableHandle, queries::QueryStats};

/// Running DNS listeners.
pub struct DnsListeners {
    pub udp_addrs: Vec<SocketAddr>,
    pub tcp_addrs: Vec<SocketAddr>,
    stop: Arc<AtomicBool>,
    workers: Vec<JoinHandle<()>>,
    server: Server<DnsHandler>,
    tcp_stop: tokio::sync::watch::Sender<bool>,
    tcp_tasks: Vec<tokio::task::JoinHandle<()>>,
    guard: Arc<GuardHandle>,
}

fn udp_socket(addr: SocketAddr) -> io::Result<Socket> {
    let s = Socket::new(Domain::for_address(addr), Type::DGRAM, Some(Protocol::UDP))?;
    if addr.is_ipv6() {
        s.set_only_v6(true)?;
    }
    s.set_reuse_port(true)?;
    // Room for bursts: the kernel caps this at net.core.rmem_max.
    let _ = s.set_recv_buffer_size(8 << 20);
    let _ = s.set_send_buffer_size(4 << 20);
    s.bind(&addr.into())?;
    Ok(s)
}

fn tcp_listener(addr: SocketAddr) -> io::Result<std::net::TcpListener> {
    let s = Socket::new(Domain::for_address(addr), Type::STREAM, Some(Protocol::TCP))?;
    if addr.is_ipv6() {
        s.set_only_v6(true)?;
    }
    s.set_reuse_address(true)?;
    s.bind(&addr.into())?;
    s.listen(1024)?;
    s.set_nonblocking(true)?;
    Ok(s.into())
}

/// Bind the UDP sockets of one address (all on the same port, also when the port is 0) and the
/// TCP listener on that same port.
fn bind_address(
    addr: SocketAddr,
    count: usize,
) -> anyhow::Result<(Vec<Socket>, std::net::TcpListener)> {
    // With port 0, the kernel picks the UDP port; TCP may find it taken, so retry a few times.
    for attempt in 0..16 {
        let first = udp_socket(addr).with_context(|| format!("binding UDP {addr}"))?;
        let local = first
            .local_addr()?
            .as_socket()
            .context("UDP socket has no inet address")?;
        let mut socks = vec![first];
        for _ in 1..count {
            socks.push(udp_socket(local).with_context(|| format!("binding UDP {local}"))?);
        }
        match tcp_listener(local) {
            Ok(t) => return Ok((socks, t)),
            Err(e) if addr.port() == 0 && attempt < 15 => {
                debug!(%local, error = %e, "TCP port taken, retrying");
                continue;
            }
            Err(e) => return Err(e).with_context(|| format!("binding TCP {local}")),
        }
    }
    bail!("could not bind UDP and TCP on the same port for {addr}")
}

impl DnsListeners {
    /// Bind every listen address and start serving, with the TCP limits of `settings`. Must run
    /// inside a tokio runtime.
    pub fn start(settings: &ServerSettings, table: TableHandle) -> anyhow::Result<Self> {
        Self::start_with(
            settings,
            table,
            settings.tcp,
            &Registry::default(),
            crate::clock::SystemClock::shared(),
        )
    }

    /// [`DnsListeners::start`], each TCP listener with `tcp_limits` (its connections tracked in
    /// `registry`), the rate limiter and cookies reading the time from `clock`.
    pub fn start_with(
        settings: &ServerSettings,
        table: TableHandle,
        tcp_limits: ConnLimits,
        registry: &Registry,
        clock: crate::clock::SharedClock,
    ) -> anyhow::Result<Self> {
        let cores = std::thread::available_parallelism()
            .map(|n| n.get())
            .unwrap_or(1);
        let per_addr = if settings.udp_sockets == 0 {
            cores
        } else {
            settings.udp_sockets
        };
        let stop = Arc::new(AtomicBool::new(false));
        let guard = GuardHandle::new(settings, clock);
        let mut server = Server::new(DnsHandler::new(table.clone(), guard.clone()));
        let (tcp_stop, tcp_stop_rx) = tokio::sync::watch::channel(false);
        let mut tcp_tasks = Vec::new();
        let mut udp_addrs = Vec::new();
        let mut tcp_addrs = Vec::new();
        let mut workers = Vec::new();
        for addr in &settings.dns_listen {
            let (socks, tcp) = bind_address(*addr, per_addr)?;
            let local = tcp.local_addr()?;
            udp_addrs.push(local);
            tcp_addrs.push(local);
            for (i, s) in socks.into_iter().enumerate() {
                let sock: UdpSocket = s.into();
                match settings.udp_engine {
                    UdpEngine::Fast => {
                        let table = table.clone();
                        let stop = stop.clone();
                        let guard = guard.clone();
                        let shard = 1 + workers.len();
                        workers.push(
                            std::thread::Builder::new()
                                .name(format!("udp-{local}-{i}"))
                                .spawn(move || {
                                    crate::table::set_counter_shard(shard);
                                    udp_worker(sock, table, guard, stop)
                                })
                                .context("spawning UDP worker")?,
                        );
                    }
                    UdpEngine::Hickory => {
                        sock.set_nonblocking(true)?;
                        server.register_socket(tokio::net::UdpSocket::from_std(sock)?);
                    }
                }
            }
            let tracker = Tracker::new("dns", tcp_limits);
            registry.add(tracker.clone());
            let cx = TcpContext {
                table: table.clone(),
                guard: guard.clone(),
                tracker,
            };
            tcp_tasks.push(tokio::spawn(tcp::serve(
                tokio::net::TcpListener::from_std(tcp)?,
                cx,
                tcp_stop_rx.clone(),
            )));
            info!(%local, udp_sockets = per_addr, engine = ?settings.udp_engine, "DNS listening on UDP and TCP");
        }
        Ok(Self {
            udp_addrs,
            tcp_addrs,
            stop,
            workers,
            server,
            tcp_stop,
            tcp_tasks,
            guard,
        })
    }

    /// The rate limiter and cookies (updated by [`GuardHandle::apply`] on reload).
    pub fn guard(&self) -> &Arc<GuardHandle> {
        &self.guard
    }

    /// Stop accepting queries and wait for the workers to finish.
    pub async fn shutdown(mut self) {
        self.stop.store(true, Ordering::SeqCst);
        let _ = self.tcp_stop.send(true);
        for t in std::mem::take(&mut self.tcp_tasks) {
            let _ = t.await;
        }
        if let Err(e) = self.server.shutdown_gracefully().await {
            warn!(error = %e, "hickory server shutdown");
        }
        let workers = std::mem::take(&mut self.workers);
        let _ = tokio::task::spawn_blocking(move || {
            for w in workers {
                let _ = w.join();
            }
        })
        .await;
    }
}

/// Queries received (and answers sent) per system call.
const BATCH: usize = 32;
/// Receive buffer per datagram; a larger query is answered with FORMERR.
const RECV_BUF: usize = 4096;

/// Per-worker buffers for `recvmmsg`/`sendmmsg`.
struct Batch {
    rbufs: Vec<[u8; RECV_BUF]>,
    obufs: Vec<[u8; MAX_FAST_RESPONSE]>,
    addrs: Vec<libc::sockaddr_storage>,
    riov: Vec<libc::iovec>,
    rhdr: Vec<libc::mmsghdr>,
    siov: Vec<libc::iovec>,
    shdr: Vec<libc::mmsghdr>,
    /// Answers from the general path, kept alive until sent.
    slow: Vec<Vec<u8>>,
}

impl Batch {
    fn new() -> Box<Self> {
        // SAFETY: all-zero is a valid value for these plain C structs.
        let zeroed_hdr = || unsafe { std::mem::zeroed::<libc::mmsghdr>() };
        let zeroed_iov = libc::iovec {
            iov_base: std::ptr::null_mut(),
            iov_len: 0,
        };
        Box::new(Self {
            rbufs: vec![[0u8; RECV_BUF]; BATCH],
            obufs: vec![[0u8; MAX_FAST_RESPONSE]; BATCH],
            // SAFETY: as above.
            addrs: vec![unsafe { std::mem::zeroed() }; BATCH],
            riov: vec![zeroed_iov; BATCH],
            rhdr: (0..BATCH).map(|_| zeroed_hdr()).collect(),
            siov: vec![zeroed_iov; BATCH],
            shdr: (0..BATCH).map(|_| zeroed_hdr()).collect(),
            slow: Vec::with_capacity(BATCH),
        })
    }
}

/// One UDP worker: receive a batch (`recvmmsg`), answer each query (one table `load()` per
/// query, fast path first), send the batch of answers (`sendmmsg`).
fn udp_worker(sock: UdpSocket, table: TableHandle, guard: Arc<GuardHandle>, stop: Arc<AtomicBool>) {
    use std::os::fd::AsRawFd;
    // The timeout only bounds how long shutdown waits.
    let _ = sock.set_read_timeout(Some(Duration::from_millis(200)));
    let fd = sock.as_raw_fd();
    let mut b = Batch::new();
    let mut sends: Vec<(usize, usize, bool)> = Vec::with_capacity(BATCH);
    // The metrics key of each answer of the batch, counted once the batch is sent into the
    // query statistics of the latest table seen (kept here: no extra `load()` per batch, no
    // shared reference count touched per query).
    let mut keys: Vec<QueryKey> = Vec::with_capacity(BATCH);
    let mut stats: Arc<QueryStats> = table.load().counters.queries.clone();
    while !stop.load(Ordering::Relaxed) {
        for i in 0..BATCH {
            b.riov[i] = libc::iovec {
                iov_base: b.rbufs[i].as_mut_ptr().cast(),
                iov_len: RECV_BUF,
            };
            let h = &mut b.rhdr[i].msg_hdr;
            h.msg_name = (&mut b.addrs[i] as *mut libc::sockaddr_storage).cast();
            h.msg_namelen = std::mem::size_of::<libc::sockaddr_storage>() as libc::socklen_t;
            h.msg_iov = &mut b.riov[i];
            h.msg_iovlen = 1;
            h.msg_control = std::ptr::null_mut();
            h.msg_controllen = 0;
            h.msg_flags = 0;
            b.rhdr[i].msg_len = 0;
        }
        // SAFETY: every header points into buffers owned by `b`, which outlives the call.
        let n = unsafe {
            libc::recvmmsg(
                fd,
                b.rhdr.as_mut_ptr(),
                BATCH as libc::c_uint,
                libc::MSG_WAITFORONE,
                std::ptr::null_mut(),
            )
        };
        if n < 0 {
            let e = io::Error::last_os_error();
            if !matches!(
                e.kind(),
                io::ErrorKind::WouldBlock | io::ErrorKind::TimedOut | io::ErrorKind::Interrupted
            ) {
                // ICMP errors from earlier sends surface here (ECONNREFUSED); keep serving.
                debug!(error = %e, "UDP receive error");
            }
            continue;
        }
        let received = stats::monotonic_ns();
        let now = guard.now();
        // One reference count per batch; a reload swaps the guard between batches.
        let g = guard.load_full();
        sends.clear();
        keys.clear();
        b.slow.clear();
        for i in 0..n as usize {
            let len = b.rhdr[i].msg_len as usize;
            let truncated = b.rhdr[i].msg_hdr.msg_flags & libc::MSG_TRUNC != 0;
            // SAFETY: the kernel filled `addrs[i]` with `msg_namelen` bytes of a socket address.
            let src = unsafe { socket2::SockAddr::new(b.addrs[i], b.rhdr[i].msg_hdr.msg_namelen) }
                .as_socket();
            let Some(src) = src else { continue };
            if src.port() == 0 {
                continue;
            }
            let packet = &b.rbufs[i][..len];
            if truncated {
                if let Some(resp) = handler::formerr_from_header(packet) {
                    b.slow.push(resp);
                    sends.push((i, b.slow.len() - 1, true));
                    keys.push(QueryKey::formerr(Proto::Udp));
                }
                continue;
            }
            let t = table.load();
            if !Arc::ptr_eq(&t.counters.queries, &stats) {
                stats = t.counters.queries.clone();
            }
            match fast::answer(&t, &g, now, packet, src.ip(), &mut b.obufs[i]) {
                FastOutcome::Answered(olen, key) => {
                    sends.push((i, olen, false));
                    keys.push(key);
                }
                FastOutcome::Drop => {}
                FastOutcome::Slow => {
                    if let Some((resp, key)) = handler::answer_udp_slow(&t, &g, packet, src, now) {
                        b.slow.push(resp);
                        sends.push((i, b.slow.len() - 1, true));
                        keys.push(key);
                    }
                }
            }
        }
        for (k, &(i, x, slow)) in sends.iter().enumerate() {
            b.siov[k] = if slow {
                libc::iovec {
                    iov_base: b.slow[x].as_mut_ptr().cast(),
                    iov_len: b.slow[x].len(),
                }
            } else {
                libc::iovec {
                    iov_base: b.obufs[i].as_mut_ptr().cast(),
                    iov_len: x,
                }
            };
            let h = &mut b.shdr[k].msg_hdr;
            h.msg_name = (&mut b.addrs[i] as *mut libc::sockaddr_storage).cast();
            h.msg_namelen = b.rhdr[i].msg_hdr.msg_namelen;
            h.msg_iov = &mut b.siov[k];
            h.msg_iovlen = 1;
            h.msg_control = std::ptr::null_mut();
            h.msg_controllen = 0;
            h.msg_flags = 0;
        }
        let mut sent = 0;
        while sent < sends.len() {
            // SAFETY: headers `sent..` point into buffers owned by `b` and `sends`' targets.
            let r = unsafe {
                libc::sendmmsg(
                    fd,
                    b.shdr[sent..].as_mut_ptr(),
                    (sends.len() - sent) as libc::c_uint,
                    0,
                )
            };
            if r <= 0 {
                let e = io::Error::last_os_error();
                if e.kind() == io::ErrorKind::Interrupted {
                    continue;
                }
                // Skip the datagram that failed (e.g. an unreachable source) and go on.
                debug!(error = %e, "UDP send failed");
                sent += 1;
            } else {
                sent += r as usize;
            }
        }
        if !keys.is_empty() {
            // One lock of this worker's own shard per batch; every answer of the batch took
            // from the end of `recvmmsg` to the end of `sendmmsg`.
            let elapsed = stats::monotonic_ns().saturating_sub(received);
            stats.record_batch(&keys, Proto::Udp, elapsed);
        }
    }
}
