use std::sync::Arc;
use std::time::Duration;

use super::latency::{NUM_BINS, bin_bounds, bin_value, latency_bin};
use super::*;
use crate::health::{CacheStatus, Level, Observation};
use rand::rngs::StdRng;
use rand::{Rng, SeedableRng};

/// A round second, in ms.
const T0: u64 = 1_700_000_000_000;

fn series() -> Series {
    Series::new(WindowConfig::default())
}

fn us(v: u64) -> Duration {
    Duration::from_micros(v)
}

fn ms(v: u64) -> Duration {
    Duration::from_millis(v)
}

fn rel_err(got: Duration, want: Duration) -> f64 {
    (got.as_secs_f64() - want.as_secs_f64()).abs() / want.as_secs_f64()
}

#[test]
fn win_accessors() {
    for (i, w) in WINDOWS.into_iter().enumerate() {
        assert_eq!(w.index(), i);
        assert_eq!(w.duration(), Duration::from_secs(w.secs()));
    }
    assert_eq!(WINDOWS.map(Win::secs), [60, 300, 600]);
    assert_eq!(WINDOWS.map(Win::as_str), ["1m", "5m", "10m"]);
    assert_eq!(Win::M5.to_string(), "5m");
    assert_eq!(WindowConfig::default().max_gap, Duration::from_secs(60));
}

#[test]
fn histogram_layout_and_error_bound() {
    assert_eq!(NUM_BINS, 432);
    // Bins tile [0, 2^30) µs without holes, in order.
    let mut next = 0;
    for bin in 0..NUM_BINS {
        let (lo, width) = bin_bounds(bin);
        assert_eq!(lo, next, "bin {bin}");
        assert_eq!(latency_bin(us(lo)), bin);
        assert_eq!(latency_bin(us(lo + width) - Duration::from_nanos(1)), bin);
        next = lo + width;
    }
    assert_eq!(next, 1 << 30);
    assert!(next > 600_000_000, "covers 10 minutes");
    assert!(latency_bin(Duration::from_secs(600)) < NUM_BINS - 1);
    assert_eq!(latency_bin(Duration::from_secs(3600)), NUM_BINS - 1);
    assert_eq!(latency_bin(Duration::MAX), NUM_BINS - 1);

    let check = |d: Duration| {
        let got = bin_value(latency_bin(d));
        let err = got.abs_diff(d).as_nanos();
        let ns = d.as_nanos();
        if ns >= 16_000 {
            assert!(err * 32 <= ns, "{d:?} reported as {got:?}");
        } else {
            assert!(err <= 500, "{d:?} reported as {got:?}");
        }
    };
    // Both edges of every bin, where the error is largest.
    for bin in 0..NUM_BINS {
        let (lo, width) = bin_bounds(bin);
        check(us(lo));
        check(us(lo + width) - Duration::from_nanos(1));
    }
    let mut rng = StdRng::seed_from_u64(1);
    let top = ((1u64 << 30) as f64 * 1000.0).log10();
    for _ in 0..100_000 {
        let ns = 10f64.powf(rng.gen_range(0.0..top)) as u64;
        check(Duration::from_nanos(ns));
    }
    // The bound is tight: the first value of an octave is reported 1/32 high.
    let d = us(1 << 20);
    assert_eq!(bin_value(latency_bin(d)), d + d / 32);
}

#[test]
fn window_edges_are_whole_seconds() {
    let now = T0 + 1_000_700;
    let now_s = now / 1000;
    for win in WINDOWS {
        let w = win.secs();
        let mut s = series();
        // Last millisecond of the second just outside the window.
        assert!(s.record("a", (now_s - w) * 1000 + 999, false, None, None));
        // First millisecond of the oldest second inside it.
        assert!(s.record("a", (now_s - w + 1) * 1000, true, None, None));
        // Last millisecond of the current second is inside (ahead of now_ms by 299 ms).
        assert!(s.record("a", now_s * 1000 + 999, false, None, None));
        let st = s.stats(now, win);
        assert_eq!(st.window, win.duration());
        assert_eq!((st.count, st.failures), (2, 1), "{win}");
        assert_eq!(st.error_rate, Some(0.5));
        // The next second starts: the oldest one leaves.
        let st = s.stats((now_s + 1) * 1000, win);
        assert_eq!((st.count, st.failures), (1, 1), "{win}");
    }
}

#[test]
fn stats_since_counts_only_what_came_after() {
    let mut s = series();
    // Failures over seconds 100..110, passes afterwards, one check a second.
    for sec in 100..200u64 {
        s.record("v", sec * 1000, sec >= 110, Some(ms(10)), None);
    }
    let now = 199_500;
    let all = s.stats(now, Win::M5);
    assert_eq!((all.count, all.failures), (100, 10));
    // Judged until second 120: only seconds 121..=199 count, availability from 120 s.
    let after = s.stats_since(now, Win::M5, Some(120_000));
    assert_eq!((after.count, after.failures), (79, 0));
    assert_eq!(after.availability, Some(1.0));
    assert_eq!(
        after.availability_known,
        Duration::from_millis(now - 120_000)
    );
    // A floor before the window changes nothing.
    let same = s.stats_since(now, Win::M1, Some(100_000));
    assert_eq!(same, s.stats(now, Win::M1));
    // A floor inside the outage sees its tail.
    let tail = s.stats_since(now, Win::M5, Some(105_000));
    assert_eq!((tail.count, tail.failures), (94, 4));
    assert!(tail.availability.unwrap() < 1.0);
}

#[test]
fn error_rate_per_window() {
    let mut s = series();
    let now_s = T0 / 1000 + 5000;
    // One observation per second over 10 minutes, `ago` seconds before now.
    for ago in (0..600).rev() {
        let fail = match ago {
            0..60 => ago % 10 == 0,
            60..300 => ago % 4 == 0,
            _ => true,
        };
        assert!(s.record("a", (now_s - ago) * 1000 + 250, !fail, None, None));
    }
    let [m1, m5, m10] = s.all_stats(now_s * 1000 + 500);
    assert_eq!((m1.count, m1.failures, m1.error_rate), (60, 6, Some(0.1)));
    assert_eq!(
        (m5.count, m5.failures, m5.error_rate),
        (300, 66, Some(0.22))
    );
    assert_eq!(
        (m10.count, m10.failures, m10.error_rate),
        (600, 366, Some(0.61))
    );
    assert_eq!(m1.cache_hit_ratio, None);
    assert_eq!(m1.p50, None);
    // Five minutes later only the newest five minutes are left in the 10-minute window.
    let m10 = s.stats((now_s + 300) * 1000 + 500, Win::M10);
    assert_eq!((m10.count, m10.failures), (300, 66));
    let m5 = s.stats((now_s + 300) * 1000 + 500, Win::M5);
    assert_eq!((m5.count, m5.error_rate), (0, None));
}

#[test]
fn availability_is_time_weighted() {
    let mut s = series();
    // Up for 540 s, down for the last 60 s, one observation every 10 s.
    for i in 0..60 {
        assert!(s.record("a", T0 + i * 10_000, i < 54, None, None));
    }
    let now = T0 + 600_000;
    let [m1, m5, m10] = s.all_stats(now);
    assert_eq!(m10.availability, Some(0.9));
    assert_eq!(m5.availability, Some(0.8));
    assert_eq!(m1.availability, Some(0.0));
    // Counting observations would say 54/60 too, but not with uneven spacing: a single down
    // observation answered for a whole minute.
    let mut s = series();
    for i in 0..540 {
        s.record("a", T0 + i * 1000, true, None, None);
    }
    s.record("a", T0 + 540_000, false, None, None);
    let st = s.stats(now, Win::M10);
    // (second T0 / 1000 itself is just outside the 10-minute window of seconds)
    assert_eq!((st.count, st.failures), (540, 1));
    assert_eq!(st.availability, Some(0.9));
}

#[test]
fn availability_gap_longer_than_max_gap_is_unknown() {
    let mut s = series();
    s.record("a", T0, true, None, None);
    s.record("a", T0 + 10_000, true, None, None);
    // Silent for 290 s (max_gap 60 s): up until T0 + 70 s, then unknown.
    s.record("a", T0 + 300_000, false, None, None);
    let st = s.stats(T0 + 330_000, Win::M10);
    assert_eq!(s.availability_ms(T0 + 330_000, Win::M10), (70_000, 30_000));
    assert_eq!(st.availability, Some(0.7));
    // The last observation speaks for at most max_gap.
    assert_eq!(s.availability_ms(T0 + 500_000, Win::M10), (70_000, 60_000));
    // Long silence: nothing known in the window.
    let st = s.stats(T0 + 1_000_000, Win::M10);
    assert_eq!(st.availability, None);

    // A shorter max_gap.
    let mut s = Series::new(WindowConfig {
        max_gap: Duration::from_secs(5),
    });
    for i in 0..10 {
        s.record("a", T0 + i * 10_000, true, None, None);
    }
    s.stats(T0 + 100_000, Win::M10);
    assert_eq!(s.availability_ms(T0 + 100_000, Win::M10), (50_000, 0));
}

#[test]
fn availability_of_two_vantages_is_weighted_by_time() {
    let mut s = series();
    for i in 0..60 {
        s.record("a", T0 + i * 10_000, true, None, None);
    }
    // "b" only reports during the last 200 s, all down.
    for i in 0..4 {
        s.record("b", T0 + 400_000 + i * 50_000, false, None, None);
    }
    let now = T0 + 600_000;
    assert_eq!(s.availability_ms(now, Win::M10), (600_000, 200_000));
    assert_eq!(s.stats(now, Win::M10).availability, Some(0.75));
    // Over the last minute: 60 s up, 60 s down.
    assert_eq!(s.stats(now, Win::M1).availability, Some(0.5));
}

/// (up, down) ms of one vantage's observations, from first principles.
fn brute_avail(obs: &[(u64, bool)], from: u64, to: u64, gap: u64) -> (u64, u64) {
    let mut v = obs.to_vec();
    v.sort_by_key(|o| o.0); // stable: at equal times the later arrival wins
    let (mut up, mut down) = (0, 0);
    for (k, &(t, ok)) in v.iter().enumerate() {
        let mut end = t.saturating_add(gap);
        if let Some(&(next, _)) = v.get(k + 1) {
            end = end.min(next);
        }
        let (start, end) = (t.max(from), end.min(to));
        if end > start {
            *if ok { &mut up } else { &mut down } += end - start;
        }
    }
    (up, down)
}

#[test]
fn late_observations_in_availability() {
    let gap = 60_000;
    let mut s = series();
    let mut seen = Vec::new();
    let mut rec = |s: &mut Series, t: u64, ok: bool| {
        assert!(s.record("a", T0 + t, ok, None, None));
        seen.push((T0 + t, ok));
    };
    for t in (0..=100_000).step_by(10_000) {
        rec(&mut s, t, true);
    }
    for t in (300_000..=400_000).step_by(10_000) {
        rec(&mut s, t, false);
    }
    // Late, in the unknown gap, the other state than the run before it: exact.
    rec(&mut s, 150_000, false);
    // Late, extending the run before it: exact.
    rec(&mut s, 140_000, true);
    // Late, bridging to the next run: exact.
    rec(&mut s, 250_000, false);
    // Late, inside a run and agreeing with it: exact (no change).
    rec(&mut s, 55_000, true);
    // Late, before everything.
    rec(&mut s, 0, true);
    let now = T0 + 420_000;
    s.stats(now, Win::M10);
    for win in WINDOWS {
        let from = now - win.secs() * 1000;
        assert_eq!(
            s.availability_ms(now, win),
            brute_avail(&seen, from, now, gap),
            "{win}"
        );
    }
    // Up [0, 150 s), down [150, 210), [250, 420).
    assert_eq!(s.availability_ms(now, Win::M10), (150_000, 230_000));

    // Late and contradicting the run around it: the run's observation times are not kept, so
    // the other state is assumed to last one mean spacing of the run (here 590/58 s instead
    // of the true 10 s).
    let mut s = series();
    for i in (0..60).filter(|&i| i != 30) {
        s.record("a", T0 + i * 10_000, true, None, None);
    }
    let now = T0 + 600_000;
    assert_eq!(s.stats(now, Win::M10).availability, Some(1.0));
    assert!(s.record("a", T0 + 300_000, false, None, None));
    let (up, down) = s.availability_ms(now, Win::M10);
    assert_eq!(up + down, 600_000);
    assert_eq!(down, 590_000 / 58);
    let runs = &s.vantages["a"].runs;
    assert_eq!(runs.len(), 3);
    assert!(
        runs.iter()
            .zip(runs.iter().skip(1))
            .all(|(a, b)| a.last <= b.start)
    );
}

#[test]
fn percentiles_of_a_uniform_distribution() {
    let mut s = series();
    let mut rng = StdRng::seed_from_u64(3);
    let mut values: Vec<u64> = (1..=1000).collect();
    // Shuffled, spread over 50 seconds, so that order and buckets do not matter.
    for i in (1..values.len()).rev() {
        values.swap(i, rng.gen_range(0..=i));
    }
    for (i, v) in values.iter().enumerate() {
        let at = T0 + (i as u64 % 50) * 1000;
        assert!(s.record("a", at, true, Some(ms(*v)), None));
    }
    let st = s.stats(T0 + 59_000, Win::M1);
    assert_eq!(st.count, 1000);
    for (got, want) in [(st.p50, 500), (st.p95, 950), (st.p99, 990)] {
        let got = got.expect("latencies recorded");
        assert!(rel_err(got, ms(want)) <= 1.0 / 32.0, "{got:?} vs {want} ms");
        assert_eq!(got, bin_value(latency_bin(ms(want))));
    }
}

#[test]
fn percentiles_are_nearest_rank() {
    // 990 fast, 10 slow: p99 is the 990th value, a fast one.
    let mut s = series();
    for i in 0..1000 {
        let lat = if i < 990 { ms(10) } else { ms(1000) };
        s.record("a", T0, true, Some(lat), None);
    }
    let st = s.stats(T0, Win::M1);
    let fast = bin_value(latency_bin(ms(10)));
    let slow = bin_value(latency_bin(ms(1000)));
    assert_eq!(
        (st.p50, st.p95, st.p99),
        (Some(fast), Some(fast), Some(fast))
    );
    // One more slow one moves the 990th value into the slow ones.
    let mut s = series();
    for i in 0..1000 {
        let lat = if i < 989 { ms(10) } else { ms(1000) };
        s.record("a", T0, true, Some(lat), None);
    }
    let st = s.stats(T0, Win::M1);
    assert_eq!((st.p95, st.p99), (Some(fast), Some(slow)));
    // A single sample is every percentile; observations without latency do not count.
    let mut s = series();
    s.record("a", T0, true, Some(ms(42)), None);
    s.record("a", T0, false, None, None);
    let st = s.stats(T0, Win::M1);
    let v = Some(bin_value(latency_bin(ms(42))));
    assert_eq!((st.count, st.p50, st.p95, st.p99), (2, v, v, v));
}

#[test]
fn cache_hit_ratio() {
    let mut s = series();
    let statuses = [
        Some(CacheStatus::Hit),
        Some(CacheStatus::Stale),
        Some(CacheStatus::Miss),
        Some(CacheStatus::Other),
        None,
        Some(CacheStatus::Hit),
    ];
    for (i, c) in statuses.into_iter().enumerate() {
        s.record("a", T0 + i as u64 * 20_000, true, None, c);
    }
    let now = T0 + 100_000;
    let m5 = s.stats(now, Win::M5);
    assert_eq!((m5.count, m5.cache_lookups, m5.cache_hits), (6, 5, 3));
    assert_eq!(m5.cache_hit_ratio, Some(0.6));
    // The last minute: Other (at 60 s, second 60 is inside), None, Hit.
    let m1 = s.stats(now, Win::M1);
    assert_eq!((m1.count, m1.cache_lookups, m1.cache_hits), (3, 2, 1));
    assert_eq!(m1.cache_hit_ratio, Some(0.5));
}

#[test]
fn out_of_order_observations() {
    let mut s = series();
    let now = T0 + 1_000_000;
    let head_s = now / 1000;
    assert!(s.record("a", now, true, None, None));
    assert!(s.record("b", now - 30_000, false, None, None));
    assert!(s.record("b", now - 90_000, true, None, None));
    // The oldest second still inside the 10-minute horizon, and the one before it.
    assert!(s.record("c", (head_s - 599) * 1000, true, None, None));
    assert!(!s.record("c", (head_s - 600) * 1000 + 999, true, None, None));
    assert!(!s.record("c", now - 3_600_000, true, None, None));
    let counts = |s: &mut Series| s.all_stats(now).map(|st| st.count);
    assert_eq!(counts(&mut s), [2, 3, 4]);
    // Late again, after a read moved the windows: lands only in the windows covering it.
    assert!(s.record("b", now - 70_000, false, None, None));
    assert!(s.record("b", now - 30_000, true, None, None)); // an existing second
    assert_eq!(counts(&mut s), [3, 5, 6]);
    assert_eq!(s.stats(now, Win::M1).failures, 1);
    assert_eq!(s.stats(now, Win::M5).failures, 2);
    // Rejection is relative to the newest time seen, reads included.
    s.stats(now + 500_000, Win::M1);
    assert!(!s.record("a", now - 100_000, true, None, None));
    assert!(s.record("a", now - 99_000, true, None, None));
}

#[test]
fn observations_ahead_of_now() {
    let mut s = series();
    let now = T0 + 1_000_000;
    assert!(s.record("a", now, true, None, None));
    // A vantage whose clock runs 3 s (and 20 s) ahead.
    assert!(s.record("b", now + 3_000, false, None, None));
    assert!(s.record("b", now + 20_000, false, None, None));
    assert_eq!(s.stats(now, Win::M1).count, 1);
    assert_eq!(s.stats(now + 3_000, Win::M1).count, 2);
    assert_eq!(s.stats(now + 20_000, Win::M1).count, 3);
    // Reading an earlier time again gives the same answer as before.
    assert_eq!(s.stats(now, Win::M1).count, 1);
    assert_eq!(s.stats(now + 62_000, Win::M1).count, 2);
    assert_eq!(s.stats(now, Win::M1).count, 1);
    // Observations from the future side of now do not count toward availability yet.
    assert_eq!(s.stats(now + 1_000, Win::M1).availability, Some(1.0));
}

#[test]
fn expiry_after_long_silence() {
    let mut s = series();
    for i in 0..600 {
        s.record(
            if i % 2 == 0 { "a" } else { "b" },
            T0 + i * 100,
            i % 3 != 0,
            Some(ms(i)),
            Some(CacheStatus::Miss),
        );
    }
    let st = s.stats(T0 + 60_000, Win::M10);
    assert_eq!(st.count, 600);
    assert!(st.availability.is_some() && st.p99.is_some());
    // The 1-minute window empties after a minute, availability after max_gap too.
    let m1 = s.stats(T0 + 60_000 + 120_000, Win::M1);
    assert_eq!((m1.count, m1.availability), (0, None));
    let later = T0 + 60_000 + 11 * 60_000;
    for st in s.all_stats(later) {
        let empty = WindowStats {
            window: st.window,
            count: 0,
            failures: 0,
            error_rate: None,
            availability: None,
            availability_known: Duration::ZERO,
            p50: None,
            p95: None,
            p99: None,
            cache_lookups: 0,
            cache_hits: 0,
            cache_hit_ratio: None,
        };
        assert_eq!(st, empty);
    }
    assert!(s.buckets.is_empty());
    assert!(s.vantages.is_empty());
    // And it starts again from nothing.
    assert!(s.record("a", later, false, Some(ms(5)), None));
    let st = s.stats(later, Win::M1);
    assert_eq!((st.count, st.failures, st.availability), (1, 1, None));
    assert_eq!(s.stats(later + 1000, Win::M1).availability, Some(0.0));
}

fn check_bounds(s: &Series) {
    assert!(s.buckets.len() <= MAX_BUCKETS);
    assert!(
        s.buckets
            .iter()
            .zip(s.buckets.iter().skip(1))
            .all(|(a, b)| a.second < b.second)
    );
    for b in &s.buckets {
        assert!(b.bins.len() <= NUM_BINS);
        assert!(b.bins.len() <= b.counts.count as usize);
    }
    assert!(s.spare.len() <= 4);
    assert!(s.vantages.len() <= MAX_VANTAGES);
    for tl in s.vantages.values() {
        assert!(tl.runs.len() <= MAX_RUNS_PER_VANTAGE);
    }
}

#[test]
fn memory_is_bounded() {
    let mut s = series();
    let mut rng = StdRng::seed_from_u64(7);
    let names: Vec<String> = (0..100).map(|i| format!("v{i}")).collect();
    // 100,000 observations over 10,000 s: 10 a second, half from a vantage flapping at every
    // observation, half from 100 vantages in turn (more than MAX_VANTAGES).
    for i in 0..100_000u64 {
        let at = T0 + i * 100;
        let (vantage, ok) = if i % 2 == 0 {
            ("flappy", i % 4 == 0)
        } else {
            (names[(i / 2 % 100) as usize].as_str(), rng.gen_bool(0.9))
        };
        let lat = Duration::from_nanos(rng.gen_range(1_000..5_000_000_000));
        assert!(s.record(vantage, at, ok, Some(lat), Some(CacheStatus::Hit)));
        if i % 997 == 0 {
            check_bounds(&s);
        }
        if i % 5003 == 0 {
            s.all_stats(at);
        }
    }
    check_bounds(&s);
    assert_eq!(s.buckets.len(), MAX_BUCKETS);
    assert_eq!(s.vantages.len(), MAX_VANTAGES);
    assert_eq!(s.vantages["flappy"].runs.len(), MAX_RUNS_PER_VANTAGE);
    let st = s.stats(T0 + 9_999_999, Win::M10);
    assert_eq!((st.count, st.cache_hits), (6000, 6000));
}

#[derive(Debug, Clone, Copy)]
struct Rec {
    at_ms: u64,
    ok: bool,
    lat: Option<Duration>,
    cache: Option<CacheStatus>,
}

/// (count, failures, cache lookups, cache hits, [p50, p95, p99]) from a plain list.
type Brute = (u64, u64, u64, u64, [Option<Duration>; 3]);

fn brute(recs: &[Rec], head_ms: u64, now_ms: u64, win: Win) -> Brute {
    let (head_s, now_s) = (head_ms / 1000, now_ms / 1000);
    let first = (now_s + 1).saturating_sub(win.secs());
    let inside: Vec<&Rec> = recs
        .iter()
        .filter(|r| {
            let s = r.at_ms / 1000;
            first <= s && s <= now_s && s + HORIZON_SECS > head_s
        })
        .collect();
    let count = inside.len() as u64;
    let failures = inside.iter().filter(|r| !r.ok).count() as u64;
    let lookups = inside.iter().filter(|r| r.cache.is_some()).count() as u64;
    let hits = inside
        .iter()
        .filter(|r| r.cache.is_some_and(|c| c.is_hit()))
        .count() as u64;
    let mut bins: Vec<usize> = inside
        .iter()
        .filter_map(|r| r.lat.map(latency_bin))
        .collect();
    bins.sort_unstable();
    let n = bins.len() as u64;
    let pct = [(50, 100), (95, 100), (99, 100)].map(|(num, den): (u64, u64)| {
        if n == 0 {
            return None;
        }
        let rank = (n * num).div_ceil(den).max(1);
        Some(bin_value(bins[rank as usize - 1]))
    });
    (count, failures, lookups, hits, pct)
}

#[test]
fn aggregates_match_brute_force() {
    let statuses = [
        None,
        Some(CacheStatus::Hit),
        Some(CacheStatus::Miss),
        Some(CacheStatus::Stale),
        Some(CacheStatus::Other),
    ];
    let mut compared = 0;
    for seed in 0..10 {
        let mut rng = StdRng::seed_from_u64(seed);
        let mut s = series();
        let mut kept: Vec<Rec> = Vec::new();
        let mut head_ms = 0u64;
        let mut cur = T0 + rng.gen_range(0..1000);
        for _ in 0..2500 {
            cur += match rng.gen_range(0..1000) {
                0..900 => rng.gen_range(0..300),
                900..970 => rng.gen_range(300..10_000),
                970..995 => rng.gen_range(10_000..120_000),
                _ => rng.gen_range(120_000..1_200_000),
            };
            for _ in 0..rng.gen_range(1..=8) {
                let at_ms = match rng.gen_range(0..20) {
                    0..14 => cur.saturating_sub(rng.gen_range(0..1000)),
                    14..17 => cur.saturating_sub(rng.gen_range(0..700_000)),
                    17 => cur + rng.gen_range(0..8000),
                    _ => cur,
                };
                let lat = rng
                    .gen_bool(0.85)
                    .then(|| Duration::from_nanos(10f64.powf(rng.gen_range(2.0..12.5)) as u64));
                let r = Rec {
                    at_ms,
                    ok: rng.gen_bool(0.8),
                    lat,
                    cache: statuses[rng.gen_range(0..statuses.len())],
                };
                let want = at_ms / 1000 + HORIZON_SECS > head_ms / 1000;
                let vantage = ["a", "b", "c"][rng.gen_range(0..3)];
                let got = s.record(vantage, r.at_ms, r.ok, r.lat, r.cache);
                assert_eq!(got, want, "seed {seed} record {r:?} head {head_ms}");
                if got {
                    kept.push(r);
                    head_ms = head_ms.max(at_ms);
                }
            }
            if rng.gen_bool(0.3) {
                let now = match rng.gen_range(0..10) {
                    0 => cur.saturating_sub(rng.gen_range(0..200_000)),
                    1 => cur + rng.gen_range(0..100_000),
                    _ => cur,
                };
                head_ms = head_ms.max(now);
                let mut order = WINDOWS;
                if rng.gen_bool(0.5) {
                    order.reverse();
                }
                for win in order {
                    let st = s.stats(now, win);
                    let got = (
                        st.count,
                        st.failures,
                        st.cache_lookups,
                        st.cache_hits,
                        [st.p50, st.p95, st.p99],
                    );
                    let want = brute(&kept, head_ms, now, win);
                    assert_eq!(got, want, "seed {seed} now {now} {win}");
                    let rate = (want.0 > 0).then(|| want.1 as f64 / want.0 as f64);
                    assert_eq!(st.error_rate, rate);
                    let ratio = (want.2 > 0).then(|| want.3 as f64 / want.2 as f64);
                    assert_eq!(st.cache_hit_ratio, ratio);
                    compared += 1;
                }
                check_bounds(&s);
            }
            if kept.len() > 1000 {
                kept.retain(|r| r.at_ms / 1000 + HORIZON_SECS > head_ms / 1000);
            }
        }
    }
    assert!(compared > 20_000, "{compared}");
}

#[test]
fn availability_matches_brute_force() {
    let mut compared = 0;
    for seed in 0..16 {
        let mut rng = StdRng::seed_from_u64(100 + seed);
        let gap = rng.gen_range(5_000..90_000);
        let mut s = Series::new(WindowConfig { max_gap: ms(gap) });
        let nv = rng.gen_range(1..=5);
        let names = ["a", "b", "c", "d", "e"];
        let mut vt = vec![T0; nv];
        let mut up = vec![true; nv];
        let mut seen: Vec<Vec<(u64, bool)>> = vec![Vec::new(); nv];
        let mut head = 0u64;
        for _ in 0..1500 {
            // Each vantage in order, the vantages interleaved out of order.
            let v = rng.gen_range(0..nv);
            let cur = *vt.iter().max().expect("vantages");
            let dt = match rng.gen_range(0..100) {
                0..5 => 0,
                5..80 => rng.gen_range(1..20_000),
                80..95 => rng.gen_range(20_000..150_000),
                _ => rng.gen_range(150_000..900_000),
            };
            vt[v] = (vt[v] + dt).max(cur.saturating_sub(rng.gen_range(0..40_000)));
            if rng.gen_bool(0.25) {
                up[v] = !up[v];
            }
            if s.record(names[v], vt[v], up[v], None, None) {
                seen[v].push((vt[v], up[v]));
                head = head.max(vt[v]);
            }
            if rng.gen_bool(0.3) {
                let now = head
                    + if rng.gen_bool(0.5) {
                        0
                    } else {
                        rng.gen_range(0..120_000)
                    };
                head = now;
                for win in WINDOWS {
                    let st = s.stats(now, win);
                    let from = now.saturating_sub(win.secs() * 1000);
                    let (mut u, mut d) = (0, 0);
                    for obs in &seen {
                        let (a, b) = brute_avail(obs, from, now, gap);
                        u += a;
                        d += b;
                    }
                    assert_eq!(s.availability_ms(now, win), (u, d), "seed {seed} {win}");
                    let want = (u + d > 0).then(|| u as f64 / (u + d) as f64);
                    assert_eq!(st.availability, want);
                    compared += 1;
                }
                for tl in s.vantages.values() {
                    let r = &tl.runs;
                    assert!(
                        r.iter()
                            .zip(r.iter().skip(1))
                            .all(|(a, b)| a.last <= b.start)
                    );
                }
            }
        }
    }
    assert!(compared > 10_000, "{compared}");
}

fn obs(target: &str, level: Level, vantage: &str, at_ms: u64, ok: bool, lat: u64) -> Observation {
    Observation {
        target: target.into(),
        level,
        vantage: vantage.into(),
        at_ms,
        ok,
        latency: ms(lat),
        detail: String::new(),
        cache: None,
    }
}

#[test]
fn target_health_and_store() {
    let mut store = HealthStore::new(WindowConfig::default());
    assert!(store.record(&obs("cdn-b", Level::Http, "zz", T0, true, 20)));
    assert!(store.record(&obs("cdn-b", Level::Http, "aa", T0 + 1000, true, 20)));
    // A failure's latency (a timeout) is not a latency sample.
    assert!(store.record(&obs("cdn-b", Level::Http, "aa", T0 + 2000, false, 5000)));
    // Older than the latest of its vantage: counted, but not the latest.
    assert!(store.record(&obs("cdn-b", Level::Http, "zz", T0 - 1000, false, 20)));
    assert!(store.record(&obs("cdn-a", Level::Dns, "aa", T0, true, 1)));
    assert_eq!(
        store.target_names(),
        vec![Arc::<str>::from("cdn-a"), Arc::from("cdn-b")]
    );
    let t = store.target("cdn-b").expect("created");
    let st = t.stats(Level::Http, T0 + 2000, Win::M1);
    assert_eq!((st.count, st.failures), (4, 2));
    let twenty = Some(bin_value(latency_bin(ms(20))));
    assert_eq!((st.p50, st.p99), (twenty, twenty));
    assert_eq!(t.stats(Level::Dns, T0 + 2000, Win::M1).count, 0);
    assert_eq!(t.series(Level::Http).stats(T0 + 2000, Win::M10).count, 4);
    let last: Vec<(&str, u64, bool)> = t
        .last(Level::Http)
        .iter()
        .map(|o| (&*o.vantage, o.at_ms, o.ok))
        .collect();
    assert_eq!(last, [("aa", T0 + 2000, false), ("zz", T0, true)]);
    assert_eq!(t.last_from(Level::Http, "zz").map(|o| o.at_ms), Some(T0));
    assert!(t.last_from(Level::Http, "nope").is_none());
    assert!(t.last(Level::Tls).is_empty());
    assert!(format!("{store:?}").contains("cdn-b"));
    // Too old for the windows: rejected.
    assert!(!store.record(&obs("cdn-b", Level::Http, "aa", T0 - 3_600_000, true, 1)));
    store.retain_targets(|name| name != "cdn-b");
    assert_eq!(store.target_names(), vec![Arc::<str>::from("cdn-a")]);
    assert!(store.target("cdn-b").is_none());
}

#[test]
fn latest_per_vantage_is_bounded() {
    let mut t = TargetHealth::new(WindowConfig::default());
    for i in 0..(MAX_VANTAGES as u64 + 10) {
        t.record(&obs(
            "x",
            Level::Check,
            &format!("v{i:03}"),
            T0 + i,
            true,
            1,
        ));
    }
    let last = t.last(Level::Check);
    assert_eq!(last.len(), MAX_VANTAGES);
    // The least recently seen went first.
    assert_eq!(&*last[0].vantage, "v010");
}

#[test]
fn types_are_send() {
    fn send<T: Send>() {}
    send::<Series>();
    send::<TargetHealth>();
    send::<HealthStore>();
}
