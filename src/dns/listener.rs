//! Sockets: per-core UDP sockets with SO_REUSEPORT on every listen address, plus one TCP listener
//! per address registered with hickory-server's `Server`.

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
use crate::dns::fast::{self, FastOutcome};
use crate::dns::handler::{self, DnsHandler};
use crate::table::TableHandle;

/// Running DNS listeners.
pub struct DnsListeners {
    pub udp_addrs: Vec<SocketAddr>,
    pub tcp_addrs: Vec<SocketAddr>,
    udp_sockets_per_addr: usize,
    stop: Arc<AtomicBool>,
    workers: Vec<JoinHandle<()>>,
    server: Server<DnsHandler>,
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
    /// Bind every listen address and start serving. Must run inside a tokio runtime.
    pub fn start(settings: &ServerSettings, table: TableHandle) -> anyhow::Result<Self> {
        let cores = std::thread::available_parallelism()
            .map(|n| n.get())
            .unwrap_or(1);
        let per_addr = if settings.udp_sockets == 0 {
            cores
        } else {
            settings.udp_sockets
        };
        let stop = Arc::new(AtomicBool::new(false));
        let mut server = Server::new(DnsHandler::new(table.clone()));
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
                        workers.push(
                            std::thread::Builder::new()
                                .name(format!("udp-{local}-{i}"))
                                .spawn(move || udp_worker(sock, table, stop))
                                .context("spawning UDP worker")?,
                        );
                    }
                    UdpEngine::Hickory => {
                        sock.set_nonblocking(true)?;
                        server.register_socket(tokio::net::UdpSocket::from_std(sock)?);
                    }
                }
            }
            server.register_listener(
                tokio::net::TcpListener::from_std(tcp)?,
                settings.tcp_idle_timeout,
                64,
            );
            info!(%local, udp_sockets = per_addr, engine = ?settings.udp_engine, "DNS listening on UDP and TCP");
        }
        Ok(Self {
            udp_addrs,
            tcp_addrs,
            udp_sockets_per_addr: per_addr,
            stop,
            workers,
            server,
        })
    }

    pub fn udp_sockets_per_addr(&self) -> usize {
        self.udp_sockets_per_addr
    }

    /// Stop accepting queries and wait for the workers to finish.
    pub async fn shutdown(mut self) {
        self.stop.store(true, Ordering::SeqCst);
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

/// One UDP worker: blocking receive, answer, send; one table `load()` per query.
fn udp_worker(sock: UdpSocket, table: TableHandle, stop: Arc<AtomicBool>) {
    // The timeout only bounds how long shutdown waits.
    let _ = sock.set_read_timeout(Some(Duration::from_millis(200)));
    let mut buf = [0u8; 65535];
    let mut out = Box::new([0u8; fast::MAX_FAST_RESPONSE]);
    while !stop.load(Ordering::Relaxed) {
        let (n, src) = match sock.recv_from(&mut buf) {
            Ok(x) => x,
            Err(e)
                if matches!(
                    e.kind(),
                    io::ErrorKind::WouldBlock
                        | io::ErrorKind::TimedOut
                        | io::ErrorKind::Interrupted
                ) =>
            {
                continue;
            }
            Err(e) => {
                // ICMP errors from earlier sends surface here (ECONNREFUSED); keep serving.
                debug!(error = %e, "UDP receive error");
                continue;
            }
        };
        if src.port() == 0 {
            continue;
        }
        let packet = &buf[..n];
        let t = table.load();
        let result = match fast::try_answer(&t, packet, src.ip(), &mut out) {
            FastOutcome::Answered(len) => sock.send_to(&out[..len], src),
            FastOutcome::Drop => continue,
            FastOutcome::Slow => match handler::answer_udp_slow(&t, packet, src) {
                Some(resp) => sock.send_to(&resp, src),
                None => continue,
            },
        };
        if let Err(e) = result {
            debug!(%src, error = %e, "UDP send failed");
        }
    }
}
