//! Local resource errors: the prober's own machine ran out of something (descriptors, buffer
//! space, memory, ephemeral ports). Such a run says nothing about the target, so it is no
//! observation: no failed check, no confirmation, no down. It is counted
//! (`steerd_probe_local_errors_total`) and logged, at most one line per [`LOG_EVERY`].

use parking_lot::Mutex;
use std::future::Future;
use std::net::SocketAddr;
use std::pin::Pin;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, Instant};

use hickory_net::runtime::RuntimeProvider;
use prometheus::proto::MetricFamily;
use prometheus::{IntCounterVec, Opts, Registry};
use tracing::warn;

/// A resource of this machine that ran out.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum LocalError {
    /// EMFILE: the process's descriptor limit.
    ProcessFiles,
    /// ENFILE: the system's descriptor limit.
    SystemFiles,
    /// ENOBUFS: socket buffer space.
    Buffers,
    /// ENOMEM: kernel memory.
    Memory,
    /// EADDRNOTAVAIL: no free ephemeral port (or local address) to connect from.
    Ports,
}

impl LocalError {
    /// The errno name, used as the metric's `error` label.
    pub fn name(self) -> &'static str {
        match self {
            LocalError::ProcessFiles => "EMFILE",
            LocalError::SystemFiles => "ENFILE",
            LocalError::Buffers => "ENOBUFS",
            LocalError::Memory => "ENOMEM",
            LocalError::Ports => "EADDRNOTAVAIL",
        }
    }

    pub fn describe(self) -> &'static str {
        match self {
            LocalError::ProcessFiles => "too many open files in this process",
            LocalError::SystemFiles => "too many open files in the system",
            LocalError::Buffers => "no socket buffer space",
            LocalError::Memory => "out of kernel memory",
            LocalError::Ports => "no local address or ephemeral port free",
        }
    }

    fn from_errno(errno: i32) -> Option<Self> {
        match errno {
            libc::EMFILE => Some(LocalError::ProcessFiles),
            libc::ENFILE => Some(LocalError::SystemFiles),
            libc::ENOBUFS => Some(LocalError::Buffers),
            libc::ENOMEM => Some(LocalError::Memory),
            libc::EADDRNOTAVAIL => Some(LocalError::Ports),
            _ => None,
        }
    }

    /// The local error behind `e`, if that is what it is.
    pub fn of_io(e: &std::io::Error) -> Option<Self> {
        if let Some(l) = e.raw_os_error().and_then(Self::from_errno) {
            return Some(l);
        }
        e.get_ref().and_then(|inner| Self::of(inner))
    }

    /// The local error anywhere in `e`'s chain of sources (hyper, rustls and hickory wrap the
    /// I/O error of the socket call that failed).
    pub fn of(e: &(dyn std::error::Error + 'static)) -> Option<Self> {
        let mut cur: Option<&(dyn std::error::Error + 'static)> = Some(e);
        while let Some(err) = cur {
            if let Some(io) = err.downcast_ref::<std::io::Error>()
                && let Some(l) = io.raw_os_error().and_then(Self::from_errno)
            {
                return Some(l);
            }
            if let Some(net) = err.downcast_ref::<hickory_net::NetError>()
                && let Some(l) = Self::of_net(net)
            {
                return Some(l);
            }
            cur = err.source();
        }
        None
    }

    /// hickory keeps the I/O error of a failed socket call in `NetError::Io`, which is not
    /// exposed as a source.
    pub fn of_net(e: &hickory_net::NetError) -> Option<Self> {
        match e {
            hickory_net::NetError::Io(io) => Self::of_io(io),
            _ => None,
        }
    }
}

impl std::fmt::Display for LocalError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{} ({})", self.describe(), self.name())
    }
}

/// The socket calls of the dns level's resolver, watched for local errors: hickory keeps a
/// failed socket call's error only when nothing else went wrong ("no connections available"
/// is what it reports when it could not open a socket at all).
#[derive(Clone, Default)]
pub struct WatchedRuntime {
    inner: hickory_net::runtime::TokioRuntimeProvider,
    seen: Arc<Seen>,
}

/// Local errors of the resolver's socket calls: how many so far, and the last one.
#[derive(Default)]
pub struct Seen {
    count: AtomicU64,
    last: Mutex<Option<LocalError>>,
}

impl Seen {
    fn note(&self, e: &std::io::Error) {
        if let Some(l) = LocalError::of_io(e) {
            *self.last.lock() = Some(l);
            self.count.fetch_add(1, Ordering::SeqCst);
        }
    }

    /// The number of local errors so far (take it before a lookup).
    pub fn mark(&self) -> u64 {
        self.count.load(Ordering::SeqCst)
    }

    /// The last local error, if there was one since `mark`.
    pub fn since(&self, mark: u64) -> Option<LocalError> {
        if self.count.load(Ordering::SeqCst) > mark {
            *self.last.lock()
        } else {
            None
        }
    }
}

impl WatchedRuntime {
    pub fn seen(&self) -> Arc<Seen> {
        self.seen.clone()
    }
}

type Inner = hickory_net::runtime::TokioRuntimeProvider;
type Io<T> = Pin<Box<dyn Send + Future<Output = Result<T, std::io::Error>>>>;

impl RuntimeProvider for WatchedRuntime {
    type Handle = <Inner as RuntimeProvider>::Handle;
    type Timer = <Inner as RuntimeProvider>::Timer;
    type Udp = <Inner as RuntimeProvider>::Udp;
    type Tcp = <Inner as RuntimeProvider>::Tcp;

    fn create_handle(&self) -> Self::Handle {
        self.inner.create_handle()
    }

    fn connect_tcp(
        &self,
        server_addr: SocketAddr,
        bind_addr: Option<SocketAddr>,
        timeout: Option<Duration>,
    ) -> Io<Self::Tcp> {
        let connect = self.inner.connect_tcp(server_addr, bind_addr, timeout);
        let seen = self.seen.clone();
        Box::pin(async move {
            let r = connect.await;
            if let Err(e) = &r {
                seen.note(e);
            }
            r
        })
    }

    fn bind_udp(&self, local_addr: SocketAddr, server_addr: SocketAddr) -> Io<Self::Udp> {
        let bind = self.inner.bind_udp(local_addr, server_addr);
        let seen = self.seen.clone();
        Box::pin(async move {
            let r = bind.await;
            if let Err(e) = &r {
                seen.note(e);
            }
            r
        })
    }
}

/// At most one log line about local errors per this period (all targets together).
pub const LOG_EVERY: Duration = Duration::from_secs(10);

/// The prober's own metrics, exposed on `GET /metrics` beside the control plane's.
pub struct ProbeMetrics {
    registry: Registry,
    local_errors: IntCounterVec,
    log: Mutex<LogState>,
}

#[derive(Default)]
struct LogState {
    last: Option<Instant>,
    suppressed: u64,
}

impl Default for ProbeMetrics {
    fn default() -> Self {
        Self::new()
    }
}

impl ProbeMetrics {
    pub fn new() -> Self {
        let registry = Registry::new();
        let local_errors = IntCounterVec::new(
            Opts::new(
                "steerd_probe_local_errors_total",
                "Check runs that could not be made for a local reason (descriptors, buffers, \
                 memory, ports of this machine): not counted as observations of the target.",
            ),
            &["target", "level", "error"],
        )
        .expect("valid metric");
        registry
            .register(Box::new(local_errors.clone()))
            .expect("unique metric");
        Self {
            registry,
            local_errors,
            log: Mutex::new(LogState::default()),
        }
    }

    /// Count one local error and log it unless a line was logged less than [`LOG_EVERY`] ago.
    pub fn local_error(&self, target: &str, level: &str, error: LocalError, detail: &str) {
        self.local_errors
            .with_label_values(&[target, level, error.name()])
            .inc();
        let mut log = self.log.lock();
        let now = Instant::now();
        if log.last.is_some_and(|t| now.duration_since(t) < LOG_EVERY) {
            log.suppressed += 1;
            return;
        }
        let more = std::mem::take(&mut log.suppressed);
        log.last = Some(now);
        drop(log);
        let more = if more > 0 {
            format!(" ({more} more local errors since the last line)")
        } else {
            String::new()
        };
        warn!(
            target_name = %target,
            level,
            error = error.name(),
            "check not run for a local reason, not counted against the target: {detail}{more}"
        );
    }

    pub fn gather(&self) -> Vec<MetricFamily> {
        self.registry.gather()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn errno_values_are_local() {
        for (errno, want) in [
            (libc::EMFILE, "EMFILE"),
            (libc::ENFILE, "ENFILE"),
            (libc::ENOBUFS, "ENOBUFS"),
            (libc::ENOMEM, "ENOMEM"),
            (libc::EADDRNOTAVAIL, "EADDRNOTAVAIL"),
        ] {
            let e = std::io::Error::from_raw_os_error(errno);
            assert_eq!(LocalError::of_io(&e).map(LocalError::name), Some(want));
        }
        for errno in [
            libc::ECONNREFUSED,
            libc::ECONNRESET,
            libc::ETIMEDOUT,
            libc::EHOSTUNREACH,
        ] {
            let e = std::io::Error::from_raw_os_error(errno);
            assert_eq!(LocalError::of_io(&e), None, "errno {errno}");
        }
    }

    #[test]
    fn wrapped_errors_are_found() {
        // An io::Error inside an io::Error (tokio-rustls), and inside hickory's NetError.
        let inner = std::io::Error::from_raw_os_error(libc::EMFILE);
        let outer = std::io::Error::other(inner);
        assert_eq!(LocalError::of_io(&outer), Some(LocalError::ProcessFiles));
        let net = hickory_net::NetError::from(std::io::Error::from_raw_os_error(libc::ENOBUFS));
        assert_eq!(LocalError::of(&net), Some(LocalError::Buffers));
        let refused =
            hickory_net::NetError::from(std::io::Error::from_raw_os_error(libc::ECONNREFUSED));
        assert_eq!(LocalError::of(&refused), None);
    }

    /// Local errors counted for `target`, `level` and `error` so far.
    fn counted(m: &ProbeMetrics, target: &str, level: &str, error: LocalError) -> u64 {
        m.local_errors
            .get_metric_with_label_values(&[target, level, error.name()])
            .map(|c| c.get())
            .unwrap_or(0)
    }

    #[test]
    fn counted_per_label_and_logged_rarely() {
        let m = ProbeMetrics::new();
        for _ in 0..3 {
            m.local_error("a", "tcp", LocalError::ProcessFiles, "x");
        }
        m.local_error("a", "dns", LocalError::Ports, "x");
        assert_eq!(counted(&m, "a", "tcp", LocalError::ProcessFiles), 3);
        assert_eq!(counted(&m, "a", "dns", LocalError::Ports), 1);
        assert_eq!(counted(&m, "b", "tcp", LocalError::ProcessFiles), 0);
        // One line logged, three suppressed.
        assert_eq!(m.log.lock().suppressed, 3);
        let fams = m.gather();
        assert_eq!(fams[0].name(), "steerd_probe_local_errors_total");
    }
}
