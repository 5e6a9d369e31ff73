//! Validation of the listener protection keys: TCP connection limits and timeouts of the DNS
//! and admin listeners, the descriptor reserve, response rate limiting and DNS cookies.

use std::time::Duration;

use ipnet::IpNet;

use super::schema::{AdminConfig, CookiesConfig, RrlConfig, ServerConfig};
use super::validate::Issues;
use crate::conns::ConnLimits;
use crate::dns::cookie::CookieSettings;
use crate::dns::rrl::RrlSettings;

/// Defaults of the DNS TCP listeners.
pub const DEFAULT_TCP_MESSAGE_TIMEOUT: f64 = 2.0;
pub const DEFAULT_TCP_MAX_CONNECTIONS: usize = 1024;
pub const DEFAULT_TCP_MAX_CONNECTIONS_PER_SOURCE: usize = 32;
/// Default descriptors kept out of the listeners' reach.
pub const DEFAULT_FD_RESERVE: usize = 1024;
/// Defaults of the admin listener.
pub const DEFAULT_ADMIN_MAX_CONNECTIONS: usize = 64;
pub const DEFAULT_ADMIN_MAX_CONNECTIONS_PER_SOURCE: usize = 16;
pub const DEFAULT_ADMIN_HEADER_TIMEOUT: f64 = 5.0;
pub const DEFAULT_ADMIN_IDLE_TIMEOUT: f64 = 30.0;
/// The environment variable read for the cookie secret when `secret_env` is not set.
pub const DEFAULT_COOKIE_SECRET_ENV: &str = "STEERD_COOKIE_SECRET";

/// Highest rate BIND accepts (responses per second); with the longest window the balance of
/// an account fits the 24 bits it is kept in.
const MAX_RATE: u32 = 1000;
const MAX_WINDOW: u32 = 3600;

fn seconds(v: Option<f64>, default: f64, field: &str, issues: &mut Issues) -> Duration {
    let v = v.unwrap_or(default);
    if !v.is_finite() || !(0.001..=3600.0).contains(&v) {
        issues.push(
            field,
            format!("must be a number of seconds between 0.001 and 3600 (got {v})"),
        );
        return Duration::from_secs_f64(default);
    }
    Duration::from_secs_f64(v)
}

fn count(v: Option<usize>, default: usize, max: usize, field: &str, issues: &mut Issues) -> usize {
    let v = v.unwrap_or(default);
    if v == 0 || v > max {
        issues.push(field, format!("must be between 1 and {max} (got {v})"));
        return default;
    }
    v
}

/// The DNS TCP listeners' limits (`idle` is the existing `tcp_idle_timeout`).
pub(super) fn tcp_limits(s: &ServerConfig, issues: &mut Issues) -> ConnLimits {
    let max = count(
        s.tcp_max_connections,
        DEFAULT_TCP_MAX_CONNECTIONS,
        1 << 20,
        "server.tcp_max_connections",
        issues,
    );
    let per_source = count(
        s.tcp_max_connections_per_source,
        DEFAULT_TCP_MAX_CONNECTIONS_PER_SOURCE,
        1 << 20,
        "server.tcp_max_connections_per_source",
        issues,
    );
    if per_source > max {
        issues.push(
            "server.tcp_max_connections_per_source",
            format!("must be at most server.tcp_max_connections ({max}; got {per_source})"),
        );
    }
    ConnLimits {
        max,
        per_source: per_source.min(max),
        first_timeout: seconds(
            s.tcp_message_timeout,
            DEFAULT_TCP_MESSAGE_TIMEOUT,
            "server.tcp_message_timeout",
            issues,
        ),
        idle_timeout: Duration::from_secs(s.tcp_idle_timeout.clamp(1, 3600)),
    }
}

pub(super) fn fd_reserve(s: &ServerConfig, issues: &mut Issues) -> usize {
    let v = s.fd_reserve.unwrap_or(DEFAULT_FD_RESERVE);
    if !(64..=1 << 20).contains(&v) {
        issues.push(
            "server.fd_reserve",
            format!("must be between 64 and 1048576 (got {v})"),
        );
        return DEFAULT_FD_RESERVE;
    }
    v
}

pub(super) fn admin_limits(a: &AdminConfig, issues: &mut Issues) -> ConnLimits {
    let max = count(
        a.max_connections,
        DEFAULT_ADMIN_MAX_CONNECTIONS,
        1 << 16,
        "admin.max_connections",
        issues,
    );
    let per_source = count(
        a.max_connections_per_source,
        DEFAULT_ADMIN_MAX_CONNECTIONS_PER_SOURCE,
        1 << 16,
        "admin.max_connections_per_source",
        issues,
    );
    if per_source > max {
        issues.push(
            "admin.max_connections_per_source",
            format!("must be at most admin.max_connections ({max}; got {per_source})"),
        );
    }
    ConnLimits {
        max,
        per_source: per_source.min(max),
        first_timeout: seconds(
            a.header_timeout,
            DEFAULT_ADMIN_HEADER_TIMEOUT,
            "admin.header_timeout",
            issues,
        ),
        idle_timeout: seconds(
            a.idle_timeout,
            DEFAULT_ADMIN_IDLE_TIMEOUT,
            "admin.idle_timeout",
            issues,
        ),
    }
}

/// `[server.rrl]`; `None` when rate limiting is off (no rate above 0).
pub(super) fn rrl(r: &RrlConfig, issues: &mut Issues) -> Option<RrlSettings> {
    let f = "server.rrl";
    let rate = |v: Option<u32>, name: &str, default: u32, issues: &mut Issues| -> u32 {
        let v = v.unwrap_or(default);
        if v > MAX_RATE {
            issues.push(
                format!("{f}.{name}"),
                format!("must be between 0 and {MAX_RATE} (got {v})"),
            );
            return 0;
        }
        v
    };
    let responses = rate(r.responses_per_second, "responses_per_second", 0, issues);
    let nxdomains = rate(
        r.nxdomains_per_second,
        "nxdomains_per_second",
        responses,
        issues,
    );
    let nodata = rate(r.nodata_per_second, "nodata_per_second", responses, issues);
    let referrals = rate(
        r.referrals_per_second,
        "referrals_per_second",
        responses,
        issues,
    );
    let errors = rate(r.errors_per_second, "errors_per_second", responses, issues);
    let window = r.window.unwrap_or(15);
    if !(1..=MAX_WINDOW).contains(&window) {
        issues.push(
            format!("{f}.window"),
            format!("must be between 1 and {MAX_WINDOW} seconds (got {window})"),
        );
    }
    let slip = r.slip.unwrap_or(2);
    if slip > 10 {
        issues.push(
            format!("{f}.slip"),
            format!("must be between 0 and 10 (got {slip})"),
        );
    }
    let v4 = r.ipv4_prefix_length.unwrap_or(24);
    if v4 > 32 {
        issues.push(
            format!("{f}.ipv4_prefix_length"),
            format!("must be at most 32 (got {v4})"),
        );
    }
    let v6 = r.ipv6_prefix_length.unwrap_or(56);
    if v6 > 128 {
        issues.push(
            format!("{f}.ipv6_prefix_length"),
            format!("must be at most 128 (got {v6})"),
        );
    }
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
    if !(1024..=1 << 24).contains(&table_size) {
        issues.push(
            format!("{f}.table_size"),
            format!("must be between 1024 and 16777216 (got {table_size})"),
        );
    }
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

pub(super) fn cookies(c: &CookiesConfig, issues: &mut Issues) -> CookieSettings {
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
