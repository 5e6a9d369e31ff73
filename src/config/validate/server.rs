//! `[server]`: the DNS listeners, their connection limits and timeouts, the descriptor reserve,
//! response rate limiting and DNS cookies.

use std::net::SocketAddr;
use std::time::Duration;

use ipnet::IpNet;

use crate::config::CookieSettings;
use crate::config::RrlSettings;
use crate::config::issues::{Context, Issues, at_most, between, conn_caps, listener_timeout};
use crate::config::schema::{CookiesConfig, RrlConfig, ServerConfig};
use crate::config::valid::{ServerSettings, UdpEngine};
use crate::conns::ConnLimits;

/// Defaults of the DNS TCP listeners.
const DEFAULT_TCP_MESSAGE_TIMEOUT: f64 = 2.0;
const DEFAULT_TCP_MAX_CONNECTIONS: usize = 1024;
const DEFAULT_TCP_MAX_CONNECTIONS_PER_SOURCE: usize = 32;
/// Default descriptors kept out of the listeners' reach.
const DEFAULT_FD_RESERVE: usize = 1024;
/// The environment variable read for the cookie secret when `secret_env` is not set.
const DEFAULT_COOKIE_SECRET_ENV: &str = "STEERD_COOKIE_SECRET";

/// Highest rate BIND accepts (responses per second); with the longest window the balance of
/// an account fits the 24 bits it is kept in.
const MAX_RATE: u32 = 1000;
const MAX_WINDOW: u32 = 3600;

/// `[server]`; None when any of it is wrong.
pub(super) fn validate(
    s: &ServerConfig,
    ctx: &Context,
    issues: &mut Issues,
) -> Option<ServerSettings> {
    // Relative to the configuration's directory ("" = no state file).
    let state_file = s
        .state_file
        .as_deref()
        .map(|p| ctx.path(p, None).to_string_lossy().into_owned());
    let before = issues.len();
    let mut dns_listen = Vec::new();
    if s.dns_listen.is_empty() {
        issues.push("server.dns_listen", "at least one listen address is needed");
    }
    for (i, a) in s.dns_listen.iter().enumerate() {
        match a.trim().parse::<SocketAddr>() {
            Ok(sa) if dns_listen.contains(&sa) => issues.push(
                format!("server.dns_listen[{i}]"),
                format!("duplicate address {sa}"),
            ),
            Ok(sa) => dns_listen.push(sa),
            Err(_) => issues.push(
                format!("server.dns_listen[{i}]"),
                format!("\"{a}\" is not a valid socket address (IP:port, [IPv6]:port)"),
            ),
        }
    }
    let admin_listen = match &s.admin_listen {
        None => None,
        Some(a) => match a.trim().parse::<SocketAddr>() {
            Ok(sa) => Some(sa),
            Err(_) => {
                issues.push(
                    "server.admin_listen",
                    format!("\"{a}\" is not a valid socket address (IP:port, [IPv6]:port)"),
                );
                None
            }
        },
    };
    between(
        s.max_udp_payload,
        512,
        4096,
        "server.max_udp_payload",
        issues,
    );
    if s.tcp_idle_timeout == 0 || s.tcp_idle_timeout > 3600 {
        issues.push(
            "server.tcp_idle_timeout",
            format!(
                "must be between 1 and 3600 seconds (got {})",
                s.tcp_idle_timeout
            ),
        );
    }
    at_most(s.hash_prefix_v4, 32, "server.hash_prefix_v4", issues);
    at_most(s.hash_prefix_v6, 128, "server.hash_prefix_v6", issues);
    if let Some(p) = state_file.as_deref().filter(|p| !p.is_empty())
        && (p.ends_with('/') || std::path::Path::new(p).is_dir())
    {
        issues.push(
            "server.state_file",
            format!("\"{p}\" is a directory; name a file (or \"\" to keep no state)"),
        );
    }
    at_most(s.udp_sockets, 1024, "server.udp_sockets", issues);
    let tcp = tcp_limits(s, issues);
    let fd_reserve = fd_reserve(s, issues);
    let rrl = rrl(&s.rrl, issues);
    let cookies = cookies(&s.cookies, issues);
    (issues.len() == before).then(|| ServerSettings {
        dns_listen,
        admin_listen,
        udp_sockets: s.udp_sockets,
        udp_engine: UdpEngine::Fast,
        max_udp_payload: s.max_udp_payload,
        tcp_idle_timeout: Duration::from_secs(s.tcp_idle_timeout),
        hash_prefix_v4: s.hash_prefix_v4,
        hash_prefix_v6: s.hash_prefix_v6,
        state_file,
        tcp,
        fd_reserve,
        rrl,
        cookies,
    })
}

/// The DNS TCP listeners' limits (`idle` is the existing `tcp_idle_timeout`).
fn tcp_limits(s: &ServerConfig, issues: &mut Issues) -> ConnLimits {
    let (max, per_source) = conn_caps(
        (
            s.tcp_max_connections,
            DEFAULT_TCP_MAX_CONNECTIONS,
            "server.tcp_max_connections",
        ),
        (
            s.tcp_max_connections_per_source,
            DEFAULT_TCP_MAX_CONNECTIONS_PER_SOURCE,
            "server.tcp_max_connections_per_source",
        ),
        1 << 20,
        issues,
    );
    ConnLimits {
        max,
        per_source,
        first_timeout: listener_timeout(
            s.tcp_message_timeout,
            DEFAULT_TCP_MESSAGE_TIMEOUT,
            "server.tcp_message_timeout",
            issues,
        ),
        idle_timeout: Duration::from_secs(s.tcp_idle_timeout.clamp(1, 3600)),
    }
}

fn fd_reserve(s: &ServerConfig, issues: &mut Issues) -> usize {
    let v = s.fd_reserve.unwrap_or(DEFAULT_FD_RESERVE);
    if between(v, 64, 1 << 20, "server.fd_reserve", issues) {
        v
    } else {
        DEFAULT_FD_RESERVE
    }
}

/// `[server.rrl]`; `None` when rate limiting is off (no rate above 0).
fn rrl(r: &RrlConfig, issues: &mut Issues) -> Option<RrlSettings> {
    let f = "server.rrl";
    let rate = |v: Option<u32>, name: &str, default: u32, issues: &mut Issues| -> u32 {
        let v = v.unwrap_or(default);
        if between(v, 0, MAX_RATE, format!("{f}.{name}"), issues) {
            v
        } else {
            0
        }
    };
    let responses = rate(r.responses_per_second, "responses_per_second", 0, issues);
    // The others default to `responses_per_second`.
    let [nxdomains, nodata, referrals, errors] = [
        (r.nxdomains_per_second, "nxdomains_per_second"),
        (r.nodata_per_second, "nodata_per_second"),
        (r.referrals_per_second, "referrals_per_second"),
        (r.errors_per_second, "errors_per_second"),
    ]
    .map(|(v, name)| rate(v, name, responses, issues));
    let window = r.window.unwrap_or(15);
    if !(1..=MAX_WINDOW).contains(&window) {
        issues.push(
            format!("{f}.window"),
            format!("must be between 1 and {MAX_WINDOW} seconds (got {window})"),
        );
    }
    let slip = r.slip.unwrap_or(2);
    between(slip, 0, 10, format!("{f}.slip"), issues);
    let v4 = r.ipv4_prefix_length.unwrap_or(24);
    at_most(v4, 32, format!("{f}.ipv4_prefix_length"), issues);
    let v6 = r.ipv6_prefix_length.unwrap_or(56);
    at_most(v6, 128, format!("{f}.ipv6_prefix_length"), issues);
    let mut exempt = Vec::new();
    for (i, c) in r.exempt_clients.iter().enumerate() {
        match c.trim().parse::<IpNet>() {
            Ok(n) if n.trunc() == n => exempt.push(n),
            Ok(n) => issues.push(
                format!("{f}.exempt_clients[{i}]"),
                format!("host bits set in \"{c}\" (did you mean \"{}\"?)", n.trunc()),
            ),
            Err(_) => match c.trim().parse::<std::net::IpAddr>() {
                Ok(ip) => exempt.push(IpNet::from(ip)),
                Err(_) => issues.push(
                    format!("{f}.exempt_clients[{i}]"),
                    format!("\"{c}\" is not an address or a CIDR"),
                ),
            },
        }
    }
    let table_size = r.table_size.unwrap_or(65_536);
    between(table_size, 1024, 1 << 24, format!("{f}.table_size"), issues);
    let rates = [responses, referrals, nodata, nxdomains, errors];
    (rates.iter().any(|&r| r > 0)).then(|| RrlSettings {
        rates,
        window: window.clamp(1, MAX_WINDOW),
        slip: slip.min(10) as u8,
        ipv4_prefix: v4.min(32),
        ipv6_prefix: v6.min(128),
        exempt,
        log_only: r.log_only.unwrap_or(false),
        table_size: table_size.clamp(1024, 1 << 24).next_power_of_two(),
    })
}

/// Parse a cookie secret: comma-separated 32-hex-digit keys.
fn secrets(text: &str) -> Result<Vec<[u8; 16]>, String> {
    let mut out = Vec::new();
    for (i, part) in text.split(',').map(str::trim).enumerate() {
        let bytes = hex::decode(part).map_err(|_| format!("secret {i} is not hex"))?;
        let key: [u8; 16] = bytes.try_into().map_err(|_| {
            format!("secret {i} must be 32 hex digits, a 128-bit key (e.g. `openssl rand -hex 16`)")
        })?;
        out.push(key);
    }
    Ok(out)
}

fn cookies(c: &CookiesConfig, issues: &mut Issues) -> CookieSettings {
    let f = "server.cookies.secret_env";
    let enabled = c.enabled.unwrap_or(true);
    let var = c.secret_env.as_deref().unwrap_or(DEFAULT_COOKIE_SECRET_ENV);
    let secrets = match std::env::var(var) {
        Ok(v) if !v.trim().is_empty() => match secrets(&v) {
            Ok(s) => Some(s),
            Err(e) => {
                issues.push(f, format!("environment variable {var}: {e}"));
                None
            }
        },
        // A variable named in the file must be there; the default one may be absent.
        _ if c.secret_env.is_some() && enabled => {
            issues.push(
                f,
                format!("environment variable {var} is not set (or empty)"),
            );
            None
        }
        _ => None,
    };
    CookieSettings { enabled, secrets }
}
