//! A target's spend this month: its prices, cap and commit, the usage known, and the status
//! they give (spend so far, month-end projection, over cap, under commit).

use std::fmt;

use super::month::{DAY_MS, Month};

const BYTES_PER_GB: f64 = 1e9;
pub(super) const HOUR_MS: u64 = 3_600_000;

pub use crate::config::{CostModel, DEFAULT_BYTES_PER_ANSWER};

impl CostModel {
    /// Price per GB for a region key: the most specific configured key among `region` and its
    /// `/`-separated prefixes (`"EU/DE"` → `"EU/DE"`, `"EU"`), else the flat price.
    pub fn price_for(&self, region: &str) -> f64 {
        let mut key = region;
        loop {
            if let Some((_, p)) = self
                .region_prices
                .iter()
                .find(|(k, _)| k.eq_ignore_ascii_case(key))
            {
                return *p;
            }
            match key.rfind('/') {
                Some(i) => key = &key[..i],
                None => return self.price_per_gb,
            }
        }
    }

    /// Evaluate this model at `now_ms`; see [`evaluate`].
    pub fn status(&self, inputs: &CostInputs, now_ms: u64) -> CostStatus {
        evaluate(self, inputs, now_ms)
    }
}

/// Usage pushed by a CDN's billing.
#[derive(Debug, Clone, PartialEq, serde::Serialize, serde::Deserialize)]
pub struct Usage {
    /// Spend this month in USD.
    pub spend_usd: Option<f64>,
    /// Bytes delivered this month.
    pub bytes: Option<u64>,
    /// Time the figures describe (Unix ms).
    pub as_of_ms: u64,
}

/// What is known about one target's usage this month.
#[derive(Debug, Clone, PartialEq, Default)]
pub struct CostInputs {
    /// Latest billing report, if any.
    pub reported: Option<Usage>,
    /// Answers steerd gave with this target this month, per region key (`"EU/DE"`, `"EU"`,
    /// `"default"`).
    pub answers: Vec<(String, u64)>,
}

/// Where the spend figure comes from.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Source {
    /// The billing report's spend.
    ReportedSpend,
    /// The billing report's bytes × price.
    ReportedBytes,
    /// steerd's own answer counts × bytes per answer × price.
    Estimated { answers: u64 },
    /// No cost model for this target ([`CostStatus::unmetered`]).
    Unmetered,
}

impl fmt::Display for Source {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Source::ReportedSpend => f.write_str("reported spend"),
            Source::ReportedBytes => f.write_str("reported bytes"),
            Source::Estimated { answers } => write!(f, "estimated from {answers} answers"),
            Source::Unmetered => f.write_str("no cost model"),
        }
    }
}

/// The cost figures of one target at one time.
#[derive(Debug, Clone, PartialEq)]
pub struct CostStatus {
    /// USD spent so far this month (as of the figure's time).
    pub spend_so_far: f64,
    /// USD projected for the whole month.
    pub projected: f64,
    pub cap: Option<f64>,
    pub commit: Option<f64>,
    /// `projected > cap`.
    pub over_cap: bool,
    /// `projected < commit`.
    pub under_commit: bool,
    pub source: Source,
    /// Days of the month the projection extrapolates from (after the one-hour floor).
    pub elapsed_days: f64,
    /// Days in the current month.
    pub month_days: u32,
    /// A billing report was present but described another month, so it was ignored.
    pub stale_report_ignored: bool,
}

impl CostStatus {
    /// Status of a target without a cost model: never over a cap, never under a commit.
    pub fn unmetered() -> Self {
        CostStatus {
            spend_so_far: 0.0,
            projected: 0.0,
            cap: None,
            commit: None,
            over_cap: false,
            under_commit: false,
            source: Source::Unmetered,
            elapsed_days: 0.0,
            month_days: 0,
            stale_report_ignored: false,
        }
    }

    /// One line for operators, e.g.
    /// `projected $12,339 > cap $10,000 (spend so far $4,113 over 10.0 days of 30; reported by billing)`.
    pub fn explain(&self) -> String {
        if self.source == Source::Unmetered {
            return "no cost model".to_string();
        }
        let mut s = format!("projected {}", money(self.projected));
        match self.cap {
            Some(c) if self.over_cap => s += &format!(" > cap {}", money(c)),
            Some(c) => s += &format!(" <= cap {}", money(c)),
            None => s += ", no cap",
        }
        match self.commit {
            Some(c) if self.under_commit => s += &format!(", < commit {}", money(c)),
            Some(c) => s += &format!(", >= commit {}", money(c)),
            None => {}
        }
        let source = match self.source {
            Source::ReportedSpend => "reported by billing".to_string(),
            Source::ReportedBytes => "bytes reported by billing × price".to_string(),
            Source::Estimated { answers } => format!("estimated from {answers} answers"),
            Source::Unmetered => unreachable!(),
        };
        s += &format!(
            " (spend so far {} over {:.1} days of {}; {source}",
            money(self.spend_so_far),
            self.elapsed_days,
            self.month_days
        );
        if self.stale_report_ignored {
            s += "; billing report from another month ignored";
        }
        s.push(')');
        s
    }
}

/// USD: whole dollars with thousands separators from $1,000 up, cents below.
pub(super) fn money(v: f64) -> String {
    if !v.is_finite() {
        return format!("${v}");
    }
    if v.abs() < 1000.0 {
        return format!("${v:.2}");
    }
    let digits = (v.abs().round() as u64).to_string();
    let mut out = String::with_capacity(digits.len() + digits.len() / 3 + 2);
    if v < 0.0 {
        out.push('-');
    }
    out.push('$');
    for (i, ch) in digits.chars().enumerate() {
        if i > 0 && (digits.len() - i).is_multiple_of(3) {
            out.push(',');
        }
        out.push(ch);
    }
    out
}

/// Spend so far, projection and cap/commit verdicts of one target at `now_ms`.
/// See the module documentation for the exact rules.
pub fn evaluate(model: &CostModel, inputs: &CostInputs, now_ms: u64) -> CostStatus {
    let month = Month::containing(now_ms);

    let mut n_answers = 0u64;
    let mut est_gb = 0.0;
    let mut est_spend = 0.0;
    for (region, n) in &inputs.answers {
        let gb = *n as f64 * model.bytes_per_answer / BYTES_PER_GB;
        n_answers = n_answers.saturating_add(*n);
        est_gb += gb;
        est_spend += gb * model.price_for(region);
    }

    let mut stale_report_ignored = false;
    let mut figure = None;
    if let Some(u) = &inputs.reported {
        if !month.contains(u.as_of_ms) {
            stale_report_ignored = u.spend_usd.is_some() || u.bytes.is_some();
        } else if let Some(spend) = u.spend_usd.filter(|s| s.is_finite() && *s >= 0.0) {
            figure = Some((spend, Source::ReportedSpend, u.as_of_ms));
        } else if let Some(bytes) = u.bytes {
            let price = if est_gb > 0.0 {
                est_spend / est_gb
            } else {
                model.price_per_gb
            };
            let spend = bytes as f64 / BYTES_PER_GB * price;
            figure = Some((spend, Source::ReportedBytes, u.as_of_ms));
        }
    }
    let (spend_so_far, source, at_ms) =
        figure.unwrap_or((est_spend, Source::Estimated { answers: n_answers }, now_ms));

    // `at_ms` is in the month (reports outside it were dropped), so this cannot underflow.
    let elapsed_ms = (at_ms.min(now_ms) - month.start_ms).max(HOUR_MS);
    let projected = spend_so_far * month.len_ms() as f64 / elapsed_ms as f64;
    let over_cap = model.monthly_cap.is_some_and(|c| projected > c);
    let under_commit = model.commit.is_some_and(|c| projected < c);

    CostStatus {
        spend_so_far,
        projected,
        cap: model.monthly_cap,
        commit: model.commit,
        over_cap,
        under_commit,
        source,
        elapsed_days: elapsed_ms as f64 / DAY_MS as f64,
        month_days: month.days(),
        stale_report_ignored,
    }
}
