//! The fail rules applied to one step's [`Signals`]: which of them trip, and where each
//! recovery condition stands.

use std::time::Duration;

use super::rules::Thresholds;
use super::signals::Signals;
use super::text::{dur_th, pct, pct_th, secs};

/// Lower bound of the Wilson score interval of `failures / n` (0 when `n == 0`).
pub(super) fn wilson_lower(failures: u64, n: u64, z: f64) -> f64 {
    if n == 0 {
        return 0.0;
    }
    let nf = n as f64;
    let p = failures.min(n) as f64 / nf;
    let z2 = z * z;
    let centre = p + z2 / (2.0 * nf);
    let margin = z * (p * (1.0 - p) / nf + z2 / (4.0 * nf * nf)).sqrt();
    ((centre - margin) / (1.0 + z2 / nf)).max(0.0)
}

/// A fail rule with a recovery condition.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Rule {
    ErrorRate,
    Latency,
    Availability,
}

impl Rule {
    pub const ALL: [Rule; 3] = [Rule::ErrorRate, Rule::Latency, Rule::Availability];

    fn index(self) -> usize {
        self as usize
    }
}

/// Where one recovery condition stands (as of the last step).
#[derive(Debug, Clone, PartialEq)]
pub struct RecoveryCheck {
    pub rule: Rule,
    /// "error rate < 1 %".
    pub condition: String,
    /// Enabled and has data in its recovery window: only active rules gate a recovery.
    pub active: bool,
    /// How long the condition has held (counted from the hard failure at the earliest, while
    /// Down after one); None when it does not hold.
    pub held: Option<Duration>,
    pub need: Duration,
    /// The figure now: "1.7 % over 1m"; None without data.
    pub current: Option<String>,
}

impl RecoveryCheck {
    pub fn met(&self) -> bool {
        self.held.is_some_and(|h| h >= self.need)
    }
}

/// Per fail rule, as of the last step.
#[derive(Debug, Clone, Copy, Default)]
struct Track {
    active: bool,
    /// Since when the recovery condition has held.
    since: Option<u64>,
    /// The recovery window's figure (error rate, p95 in seconds, availability).
    value: Option<f64>,
}

/// The recovery trackers of the fail rules, by [`Rule::index`].
#[derive(Debug, Clone, Copy, Default)]
pub(super) struct Tracks([Track; 3]);

impl Tracks {
    /// Updates the recovery trackers; returns the fail rules that trip.
    pub(super) fn evaluate(&mut self, sig: &Signals, th: &Thresholds, now: u64) -> Vec<String> {
        let mut fails = Vec::new();
        let e = &th.error_rate;
        let (active, holds, value) = if e.enabled {
            let s = &sig.stats[e.window.index()];
            if s.count >= e.min_samples.max(1) {
                let lb = wilson_lower(s.failures, s.count, e.z);
                if lb > e.fail_above {
                    fails.push(format!(
                        "error rate {} > {} over {} (lower bound {}, {} checks)",
                        pct(s.failures as f64 / s.count as f64),
                        pct_th(e.fail_above),
                        e.window,
                        pct(lb),
                        s.count
                    ));
                }
            }
            let r = &sig.stats[e.recover_window.index()];
            let v = r.error_rate.filter(|_| r.count > 0);
            (v.is_some(), v.is_some_and(|x| x < e.recover_below), v)
        } else {
            (false, false, None)
        };
        self.track(Rule::ErrorRate, active, holds, value, now);

        let l = &th.latency;
        let (active, holds, value) = if l.enabled {
            let s = &sig.stats[l.window.index()];
            if let Some(p) = s.p95
                && s.count >= l.min_samples
                && p > l.fail_above
            {
                fails.push(format!(
                    "p95 {} > {} over {}",
                    secs(p),
                    dur_th(l.fail_above),
                    l.window
                ));
            }
            let v = sig.stats[l.recover_window.index()].p95;
            (
                v.is_some(),
                v.is_some_and(|p| p < l.recover_below),
                v.map(|p| p.as_secs_f64()),
            )
        } else {
            (false, false, None)
        };
        self.track(Rule::Latency, active, holds, value, now);

        let a = &th.availability;
        let (active, holds, value) = if a.enabled {
            let s = &sig.stats[a.window.index()];
            // A target seen for a few seconds says little about its availability over
            // minutes: the rule needs a fifth of its window known.
            if let Some(av) = s.availability
                && s.count >= a.min_samples
                && s.availability_known >= a.window.duration() / 5
                && av < a.fail_below
            {
                fails.push(format!(
                    "availability {} < {} over {}",
                    pct(av),
                    pct_th(a.fail_below),
                    a.window
                ));
            }
            let v = sig.stats[a.recover_window.index()].availability;
            (v.is_some(), v.is_some_and(|x| x > a.recover_above), v)
        } else {
            (false, false, None)
        };
        self.track(Rule::Availability, active, holds, value, now);

        fails
    }

    fn track(&mut self, rule: Rule, active: bool, holds: bool, value: Option<f64>, now: u64) {
        let t = &mut self.0[rule.index()];
        t.active = active;
        t.value = value;
        t.since = if holds {
            Some(t.since.unwrap_or(now))
        } else {
            None
        };
    }

    /// Where each enabled fail rule's recovery condition stands: whether it held at the last
    /// step (of thresholds `th`), and for how long by `now_ms`, counted from `floor` at the
    /// earliest.
    pub(super) fn checks(
        &self,
        th: &Thresholds,
        floor: Option<u64>,
        now_ms: u64,
    ) -> Vec<RecoveryCheck> {
        let mut out = Vec::new();
        for rule in Rule::ALL {
            let t = &self.0[rule.index()];
            let (enabled, condition, need, win) = match rule {
                Rule::ErrorRate => {
                    let e = &th.error_rate;
                    let c = format!("error rate < {}", pct_th(e.recover_below));
                    (e.enabled, c, e.recover_for, e.recover_window)
                }
                Rule::Latency => {
                    let l = &th.latency;
                    let c = format!("p95 < {}", dur_th(l.recover_below));
                    (l.enabled, c, l.recover_for, l.recover_window)
                }
                Rule::Availability => {
                    let a = &th.availability;
                    let c = format!("availability > {}", pct_th(a.recover_above));
                    (a.enabled, c, a.recover_for, a.recover_window)
                }
            };
            if !enabled {
                continue;
            }
            let held = t.since.map(|s| {
                let s = floor.map_or(s, |f| s.max(f));
                Duration::from_millis(now_ms.saturating_sub(s))
            });
            let current = t.value.map(|v| match rule {
                Rule::Latency => format!("{} over {win}", secs(Duration::from_secs_f64(v))),
                _ => format!("{} over {win}", pct(v)),
            });
            out.push(RecoveryCheck {
                rule,
                condition,
                active: t.active,
                held,
                need,
                current,
            });
        }
        out
    }
}
