//! RUM complaint spikes: the complaint rate, its time-weighted baseline and the spike state
//! (Degraded, never Down).

use std::time::Duration;

use super::rules::RumRule;
use super::signals::Signals;
use super::text::{num, pct, pct_th};

/// The RUM complaint rate, its baseline and whether it is spiking, as of the last step.
#[derive(Debug, Clone, Copy)]
pub(super) struct RumTrack {
    pub(super) spiking: bool,
    /// Since when it has not been spiking.
    calm_since: Option<u64>,
    /// Bias-corrected EWMA of the rate: `sum / weight` (a mean of what was seen while that is
    /// short next to the half-life).
    sum: f64,
    weight: f64,
    baseline_at: u64,
    /// The baseline the last step judged the rate by.
    judged_by: f64,
    rate: Option<f64>,
    count: u64,
}

impl RumTrack {
    /// No baseline yet, calm since `now`.
    pub(super) fn new(now: u64) -> RumTrack {
        RumTrack {
            spiking: false,
            calm_since: Some(now),
            sum: 0.0,
            weight: 0.0,
            baseline_at: now,
            judged_by: 0.0,
            rate: None,
            count: 0,
        }
    }

    pub(super) fn baseline(&self) -> Option<f64> {
        (self.weight > 0.0).then(|| self.sum / self.weight)
    }

    /// Time-weighted EWMA: the rate counts for the time since the previous sample (the first
    /// one for at least a millisecond).
    fn add_sample(&mut self, rate: f64, now: u64, half_life: Duration) {
        let mut dt = now.saturating_sub(self.baseline_at) as f64;
        if self.weight == 0.0 {
            dt = dt.max(1.0);
        }
        let hl = half_life.as_secs_f64() * 1000.0;
        let decay = if hl > 0.0 { 0.5f64.powf(dt / hl) } else { 0.0 };
        self.sum = self.sum * decay + (1.0 - decay) * rate;
        self.weight = self.weight * decay + (1.0 - decay);
        self.baseline_at = now;
    }

    /// Updates the rate, the spike state and the baseline from this step's RUM windows.
    pub(super) fn evaluate(&mut self, sig: &Signals, r: &RumRule, now: u64) {
        let stats = sig
            .rum
            .as_ref()
            .filter(|_| r.enabled)
            .map(|s| &s[r.window.index()]);
        let rt = self;
        // Time not sampled (spiking, too few beacons, no data) does not count toward the
        // baseline: the next sample weighs one step, not the whole gap.
        let skip = |rt: &mut RumTrack| rt.baseline_at = now;
        let Some(s) = stats else {
            skip(rt);
            rt.rate = None;
            rt.count = 0;
            if rt.spiking {
                rt.spiking = false;
                rt.calm_since = Some(now);
            }
            return;
        };
        let rate = if s.count > 0 {
            s.failures as f64 / s.count as f64
        } else {
            0.0
        };
        rt.rate = (s.count > 0).then_some(rate);
        rt.count = s.count;
        let enough = s.count >= r.min_samples.max(1);
        let Some(base) = rt.baseline() else {
            if enough {
                rt.add_sample(rate, now, r.baseline_half_life);
            } else {
                skip(rt);
            }
            return;
        };
        rt.judged_by = base;
        let spike = enough && rate >= r.min_rate && rate > r.spike_factor * base;
        let back = !enough || rate < r.min_rate || rate <= r.back_factor * base;
        if rt.spiking && back {
            rt.spiking = false;
            rt.calm_since = Some(now);
        } else if !rt.spiking && spike {
            rt.spiking = true;
            rt.calm_since = None;
        }
        if !rt.spiking && enough {
            rt.add_sample(rate, now, r.baseline_half_life);
        } else {
            skip(rt);
        }
    }

    /// How long it has not been spiking; None while spiking.
    pub(super) fn calm_for(&self, now: u64) -> Option<u64> {
        self.calm_since.map(|c| now.saturating_sub(c))
    }

    pub(super) fn spike_text(&self, r: &RumRule) -> String {
        format!(
            "RUM complaint rate {} > {} × baseline {} over {} ({} beacons)",
            pct(self.rate.unwrap_or(0.0)),
            num(r.spike_factor),
            pct(self.judged_by),
            r.window,
            self.count
        )
    }

    pub(super) fn back_text(&self, r: &RumRule) -> String {
        let base = self.judged_by;
        match self.rate {
            _ if !r.enabled => "RUM complaints no longer watched".into(),
            None if self.count == 0 => "no RUM data".into(),
            _ if self.count < r.min_samples => format!(
                "too few RUM beacons ({} < {} over {})",
                self.count, r.min_samples, r.window
            ),
            Some(rate) if rate < r.min_rate => format!(
                "RUM complaint rate {} < {} over {}",
                pct(rate),
                pct_th(r.min_rate),
                r.window
            ),
            rate => format!(
                "RUM complaints back to baseline: {} ≤ {} × baseline {} over {}",
                pct(rate.unwrap_or(0.0)),
                num(r.back_factor),
                pct(base),
                r.window
            ),
        }
    }

    /// What would end a Degraded state: "healthy again when …".
    pub(super) fn healthy_again_text(&self, r: &RumRule) -> String {
        format!(
            "healthy again when the RUM complaint rate is ≤ {} × baseline {} or < {} \
             (now {} over {}, {} beacons)",
            num(r.back_factor),
            pct(self.baseline().unwrap_or(0.0)),
            pct_th(r.min_rate),
            self.rate.map_or_else(|| "-".into(), pct),
            r.window,
            self.count
        )
    }
}
