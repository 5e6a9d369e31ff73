//! How the machine writes figures, thresholds, spans and times in its reasons.

use std::time::Duration;

/// A measured fraction: "7.2 %".
pub(super) fn pct(x: f64) -> String {
    format!("{:.1} %", x * 100.0)
}

/// A number without trailing zeros: 3 → "3", 1.5 → "1.5".
pub(super) fn num(x: f64) -> String {
    let s = format!("{x:.3}");
    let s = s.trim_end_matches('0').trim_end_matches('.');
    s.to_string()
}

/// A configured fraction: 0.05 → "5 %", 0.999 → "99.9 %".
pub(super) fn pct_th(x: f64) -> String {
    format!("{} %", num(x * 100.0))
}

/// A measured latency: "2.31 s", "312 ms".
pub(super) fn secs(d: Duration) -> String {
    let s = d.as_secs_f64();
    if s >= 1.0 {
        format!("{s:.2} s")
    } else {
        format!("{:.0} ms", s * 1000.0)
    }
}

/// A configured latency: "2 s", "500 ms", "1.5 s".
pub(super) fn dur_th(d: Duration) -> String {
    let s = d.as_secs_f64();
    if s >= 1.0 {
        format!("{} s", num(s))
    } else {
        format!("{} ms", num(s * 1000.0))
    }
}

/// A span: "5m0s", "2m10s", "45s", "1h2m3s" (whole seconds, rounded down).
pub(super) fn hms(d: Duration) -> String {
    let t = d.as_secs();
    let (h, m, s) = (t / 3600, t / 60 % 60, t % 60);
    if h > 0 {
        format!("{h}h{m}m{s}s")
    } else if m > 0 {
        format!("{m}m{s}s")
    } else {
        format!("{s}s")
    }
}

/// "12:03:10 UTC", or "2024-05-01 12:03:10 UTC" when `at_ms` is not on the same UTC day as
/// `ref_ms`.
pub(super) fn fmt_utc(at_ms: u64, ref_ms: u64) -> String {
    let secs = at_ms / 1000;
    let (day, tod) = (secs / 86_400, secs % 86_400);
    let clock = format!("{:02}:{:02}:{:02}", tod / 3600, tod / 60 % 60, tod % 60);
    if day == ref_ms / 1000 / 86_400 {
        return format!("{clock} UTC");
    }
    let date = time::OffsetDateTime::from_unix_timestamp(day as i64 * 86_400)
        .map_or(time::OffsetDateTime::UNIX_EPOCH.date(), |t| t.date());
    let (y, m, d) = (date.year(), u8::from(date.month()), date.day());
    format!("{y:04}-{m:02}-{d:02} {clock} UTC")
}
