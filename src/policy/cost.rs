//! Cost model for the cost-cap policy step (DESIGN §6): per target, the spend so far this calendar
//! month, its projection to month end, and whether that projection is over the target's cap or
//! under its commit.
//!
//! Pure: no I/O and no clock. The caller passes `now_ms` (Unix milliseconds, UTC) along with the
//! inputs, so the same inputs and time always give the same figures.
//!
//! Rules:
//! - **Month**: the calendar month in UTC that contains `now_ms` (leap years handled).
//! - **Spend so far**, first that applies:
//!   1. the billing report's `spend_usd` ("reported spend");
//!   2. the billing report's `bytes` × price per GB ("reported bytes"); the price is the
//!      answer-weighted average of the region prices (from steerd's own answer counts), or the
//!      flat price when no answers were counted;
//!   3. Σ answers × `bytes_per_answer` / 1e9 × region price ("estimated from N answers").
//!
//!   A billing report is used only when its `as_of_ms` falls in the current month; one from an
//!   earlier (or later) month is ignored and the estimate is used instead.
//! - **Projection**: `spend_so_far × month_length / elapsed`, where `elapsed` runs from the
//!   month start to the time the figure describes (the report's `as_of_ms`, at most `now_ms`, for
//!   reported figures; `now_ms` for the estimate), and is at least one hour, so that a few cents
//!   spent in the first minutes of a month do not project to an absurd figure.
//! - **Over cap**: `projected > monthly_cap` (strictly). **Under commit**: `projected < commit`.
//! - GB are decimal (10⁹ bytes), as CDNs bill.

use std::collections::BTreeMap;
use std::fmt;

/// Default traffic one DNS answer is estimated to send to a CDN: 2 MB (2 × 10⁶ bytes).
///
/// This is only an estimate: real traffic per answer depends on the content, the TTL and how
/// many clients sit behind each resolver. Operators should tune it per target from billing data
/// (billed bytes ÷ answers over a past month).
pub const DEFAULT_BYTES_PER_ANSWER: f64 = 2e6;

const BYTES_PER_GB: f64 = 1e9;
const HOUR_MS: u64 = 3_600_000;
const DAY_MS: u64 = 86_400_000;

/// Prices, cap and commit of one target.
#[derive(Debug, Clone, PartialEq)]
pub struct CostModel {
    /// Flat price in USD per GB, used for regions without a price of their own.
    pub price_per_gb: f64,
    /// Region key (`"EU"`, `"EU/DE"`, `"default"`) → USD per GB. The most specific key wins:
    /// `"EU/DE"`, then `"EU"`, then the flat price. Keys compare ASCII-case-insensitively.
    pub region_prices: BTreeMap<String, f64>,
    /// Monthly spending cap in USD.
    pub monthly_cap: Option<f64>,
    /// Minimum monthly spend in USD already committed (paid for whether used or not).
    pub commit: Option<f64>,
    /// Estimated bytes one DNS answer sends to this target (see [`DEFAULT_BYTES_PER_ANSWER`]).
    pub bytes_per_answer: f64,
}

impl CostModel {
    /// A model with a flat price, no region prices, no cap, no commit and the default
    /// bytes per answer.
    pub fn new(price_per_gb: f64) -> Self {
        CostModel {
            price_per_gb,
            region_prices: BTreeMap::new(),
            monthly_cap: None,
            commit: None,
            bytes_per_answer: DEFAULT_BYTES_PER_ANSWER,
        }
    }

    pub fn with_region_price(mut self, region: &str, price_per_gb: f64) -> Self {
        self.region_prices.insert(region.to_string(), price_per_gb);
        self
    }

    pub fn with_cap(mut self, usd: f64) -> Self {
        self.monthly_cap = Some(usd);
        self
    }

    pub fn with_commit(mut self, usd: f64) -> Self {
        self.commit = Some(usd);
        self
    }

    pub fn with_bytes_per_answer(mut self, bytes: f64) -> Self {
        self.bytes_per_answer = bytes;
        self
    }

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
fn money(v: f64) -> String {
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

/// A calendar month in UTC.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Month {
    pub year: i64,
    /// 1–12.
    pub month: u32,
    /// First millisecond of the month (Unix ms).
    pub start_ms: u64,
    /// First millisecond of the next month.
    pub end_ms: u64,
}

impl Month {
    /// The month containing `t_ms`.
    pub fn containing(t_ms: u64) -> Month {
        let (year, month, _) = civil_from_days((t_ms / DAY_MS) as i64);
        let (ny, nm) = if month == 12 {
            (year + 1, 1)
        } else {
            (year, month + 1)
        };
        Month {
            year,
            month,
            start_ms: days_from_civil(year, month, 1) as u64 * DAY_MS,
            end_ms: days_from_civil(ny, nm, 1) as u64 * DAY_MS,
        }
    }

    pub fn len_ms(&self) -> u64 {
        self.end_ms - self.start_ms
    }

    pub fn days(&self) -> u32 {
        (self.len_ms() / DAY_MS) as u32
    }

    pub fn contains(&self, t_ms: u64) -> bool {
        (self.start_ms..self.end_ms).contains(&t_ms)
    }
}

/// Days since 1970-01-01 of a proleptic Gregorian date (H. Hinnant's algorithm).
fn days_from_civil(y: i64, m: u32, d: u32) -> i64 {
    let y = if m <= 2 { y - 1 } else { y };
    let era = y.div_euclid(400);
    let yoe = y - era * 400;
    let m = i64::from(m);
    let doy = (153 * (if m > 2 { m - 3 } else { m + 9 }) + 2) / 5 + i64::from(d) - 1;
    let doe = yoe * 365 + yoe / 4 - yoe / 100 + doy;
    era * 146_097 + doe - 719_468
}

/// (year, month 1–12, day 1–31) of a day count since 1970-01-01 (H. Hinnant's algorithm).
fn civil_from_days(z: i64) -> (i64, u32, u32) {
    let z = z + 719_468;
    let era = z.div_euclid(146_097);
    let doe = z - era * 146_097;
    let yoe = (doe - doe / 1460 + doe / 36_524 - doe / 146_096) / 365;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let d = (doy - (153 * mp + 2) / 5 + 1) as u32;
    let m = if mp < 10 { mp + 3 } else { mp - 9 } as u32;
    let y = yoe + era * 400 + i64::from(m <= 2);
    (y, m, d)
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

/// What the cost step does with over-cap targets.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum CostMode {
    /// Move them after the others (stable order otherwise).
    #[default]
    Demote,
    /// Remove them.
    Drop,
}

/// Where the cost step puts a candidate, first to last (see [`apply_cost`]).
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
pub enum CostPlace {
    /// Under its commit, with `prefer_commit`: ahead of the others.
    Ahead,
    InPlace,
    /// Over its cap, with [`CostMode::Demote`]: behind the others.
    Behind,
    /// Over its cap, with [`CostMode::Drop`]: removed.
    Out,
}

/// The place of a candidate with status `s`, among candidates not all over their caps (when
/// every candidate is over its cap, every one stays in place).
pub fn cost_place(s: &CostStatus, mode: CostMode, prefer_commit: bool) -> CostPlace {
    if s.over_cap {
        match mode {
            CostMode::Demote => CostPlace::Behind,
            CostMode::Drop => CostPlace::Out,
        }
    } else if prefer_commit && s.under_commit {
        CostPlace::Ahead
    } else {
        CostPlace::InPlace
    }
}

/// The cost step of the policy chain: the seed rule `if spend(best) > cap: best = next_best`,
/// generalised to the whole candidate list.
///
/// `candidates` are target indices; `status` is indexed by **target index** (not by position in
/// `candidates`), so one slice computed per service serves every region's candidate list. A
/// target index beyond `status` counts as [`CostStatus::unmetered`].
///
/// Order of the result, stable within each group:
/// 1. with `prefer_commit`, targets under their commit (and not over their cap);
/// 2. the other targets not over their cap;
/// 3. with [`CostMode::Demote`], targets over their cap ([`CostMode::Drop`] removes them).
///
/// A target both over its cap and under its commit counts as over its cap. When every candidate
/// is over its cap, the list is returned unchanged (nothing demoted, dropped or preferred) and
/// each candidate's reason says so. The reasons list has one line per affected target, in
/// candidate order, starting with `target {index}`.
pub fn apply_cost(
    candidates: &[usize],
    status: &[CostStatus],
    mode: CostMode,
    prefer_commit: bool,
) -> (Vec<usize>, Vec<String>) {
    let unmetered = CostStatus::unmetered();
    let st = |t: usize| status.get(t).unwrap_or(&unmetered);
    let mut reasons = Vec::new();

    if !candidates.is_empty() && candidates.iter().all(|&t| st(t).over_cap) {
        for &t in candidates {
            reasons.push(format!(
                "target {t} kept: every candidate is over its cap; {}",
                st(t).explain()
            ));
        }
        return (candidates.to_vec(), reasons);
    }

    let mut front = Vec::with_capacity(candidates.len());
    let mut middle = Vec::with_capacity(candidates.len());
    let mut back = Vec::new();
    for &t in candidates {
        let s = st(t);
        match cost_place(s, mode, prefer_commit) {
            CostPlace::Behind => {
                back.push(t);
                reasons.push(format!("target {t} demoted: {}", s.explain()));
            }
            CostPlace::Out => reasons.push(format!("target {t} dropped: {}", s.explain())),
            CostPlace::Ahead => {
                front.push(t);
                reasons.push(format!("target {t} preferred: {}", s.explain()));
            }
            CostPlace::InPlace => middle.push(t),
        }
    }
    front.append(&mut middle);
    front.append(&mut back);
    (front, reasons)
}

#[cfg(test)]
mod tests {
    use super::*;

    const S: u64 = 1000;
    /// 2027-04-01T00:00:00Z; April has 30 days.
    const APR_2027: u64 = 1_806_537_600 * S;

    fn close(a: f64, b: f64) -> bool {
        (a - b).abs() < 1e-9 * b.abs().max(1.0)
    }

    fn reported_spend(usd: f64, as_of_ms: u64) -> CostInputs {
        CostInputs {
            reported: Some(Usage {
                spend_usd: Some(usd),
                bytes: None,
                as_of_ms,
            }),
            answers: vec![],
        }
    }

    #[test]
    fn month_boundaries() {
        // Jan 31 2027 23:59:59 is still January; one second later is February (28 days).
        let jan = Month::containing(1_801_439_999 * S);
        assert_eq!((jan.year, jan.month, jan.days()), (2027, 1, 31));
        assert_eq!(jan.start_ms, 1_798_761_600 * S);
        assert_eq!(jan.end_ms, 1_801_440_000 * S);
        let jan_last_ms = Month::containing(1_801_440_000 * S - 1);
        assert_eq!(jan_last_ms.month, 1);
        let feb = Month::containing(1_801_440_000 * S);
        assert_eq!((feb.year, feb.month, feb.days()), (2027, 2, 28));
        assert_eq!(feb.end_ms, 1_803_859_200 * S);

        // Leap February 2028: 29 days; Feb 29 is in it, Mar 1 is not.
        let feb28 = Month::containing(1_832_976_000 * S);
        assert_eq!((feb28.year, feb28.month, feb28.days()), (2028, 2, 29));
        assert_eq!(Month::containing(1_835_395_200 * S).month, 2);
        assert_eq!(Month::containing(1_835_481_600 * S - 1), feb28);
        let mar = Month::containing(1_835_481_600 * S);
        assert_eq!((mar.month, mar.start_ms), (3, 1_835_481_600 * S));

        // December → January crosses the year.
        let dec = Month::containing(1_830_297_600 * S - 1);
        assert_eq!((dec.year, dec.month, dec.days()), (2027, 12, 31));
        assert_eq!(dec.start_ms, 1_827_619_200 * S);
        let jan28 = Month::containing(1_830_297_600 * S);
        assert_eq!(
            (jan28.year, jan28.month, jan28.start_ms),
            (2028, 1, 1_830_297_600 * S)
        );

        // Century rules: 2000 is a leap year, 2100 is not.
        assert_eq!(Month::containing(949_363_200 * S).days(), 29);
        assert_eq!(Month::containing(4_105_123_200 * S).days(), 28);
        assert_eq!(Month::containing(0), Month::containing(DAY_MS * 31 - 1));
        assert_eq!(Month::containing(0).start_ms, 0);
    }

    #[test]
    fn civil_round_trip() {
        for z in -1000..200_000 {
            let (y, m, d) = civil_from_days(z);
            assert!((1..=12).contains(&m) && (1..=31).contains(&d));
            assert_eq!(days_from_civil(y, m, d), z);
        }
    }

    #[test]
    fn projection_figures() {
        let m = CostModel::new(0.05).with_cap(10_000.0);
        // $4,000 after 10 of 30 days → $12,000.
        let s = m.status(
            &reported_spend(4000.0, APR_2027 + 10 * DAY_MS),
            APR_2027 + 10 * DAY_MS,
        );
        assert_eq!(s.spend_so_far, 4000.0);
        assert_eq!(s.projected, 12_000.0);
        assert_eq!((s.elapsed_days, s.month_days), (10.0, 30));
        assert!(s.over_cap);
        // $1,000 after 15 days → $2,000.
        let s = m.status(
            &reported_spend(1000.0, APR_2027 + 15 * DAY_MS),
            APR_2027 + 15 * DAY_MS,
        );
        assert_eq!(s.projected, 2000.0);
        assert!(!s.over_cap);
        // February 2027 (28 days): $700 after 7 days → $2,800.
        let feb = 1_801_440_000 * S;
        let s = m.status(&reported_spend(700.0, feb + 7 * DAY_MS), feb + 7 * DAY_MS);
        assert_eq!((s.projected, s.month_days), (2800.0, 28));
    }

    #[test]
    fn first_hour_floor() {
        let m = CostModel::new(0.05);
        // $1 one minute into a 30-day month projects as if one hour had passed: $720, not $43,200.
        let now = APR_2027 + 60 * S;
        let s = m.status(&reported_spend(1.0, now), now);
        assert_eq!(s.projected, 720.0);
        // Exactly at the month start too.
        let s = m.status(&reported_spend(1.0, APR_2027), APR_2027);
        assert_eq!(s.projected, 720.0);
        // Past the first hour the real elapsed time is used.
        let now = APR_2027 + 2 * HOUR_MS;
        assert_eq!(m.status(&reported_spend(1.0, now), now).projected, 360.0);
    }

    #[test]
    fn stale_report_within_month_projects_from_its_own_time() {
        let m = CostModel::new(0.05);
        // Report as of day 10 read on day 20: $1,000 over 10 days, → $3,000 (not $1,500).
        let s = m.status(
            &reported_spend(1000.0, APR_2027 + 10 * DAY_MS),
            APR_2027 + 20 * DAY_MS,
        );
        assert_eq!(s.projected, 3000.0);
        // A report timestamped after `now` (clock skew) is read as of `now`.
        let s = m.status(
            &reported_spend(1000.0, APR_2027 + 11 * DAY_MS),
            APR_2027 + 10 * DAY_MS,
        );
        assert_eq!(s.projected, 3000.0);
    }

    fn priced() -> CostModel {
        CostModel::new(0.08)
            .with_region_price("EU", 0.05)
            .with_region_price("EU/DE", 0.03)
            .with_region_price("na", 0.04)
    }

    #[test]
    fn region_price_most_specific_wins() {
        let m = priced();
        assert_eq!(m.price_for("EU/DE"), 0.03);
        assert_eq!(m.price_for("EU/FR"), 0.05);
        assert_eq!(m.price_for("EU"), 0.05);
        assert_eq!(m.price_for("eu/de"), 0.03);
        assert_eq!(m.price_for("NA/US"), 0.04);
        assert_eq!(m.price_for("AS/JP"), 0.08);
        assert_eq!(m.price_for("default"), 0.08);
        assert_eq!(m.price_for(""), 0.08);
        assert_eq!(
            m.clone()
                .with_region_price("default", 0.07)
                .price_for("default"),
            0.07
        );
    }

    fn answers() -> Vec<(String, u64)> {
        vec![
            ("EU/DE".into(), 1_000_000), // 2,000 GB × 0.03 = $60
            ("EU/FR".into(), 500_000),   // 1,000 GB × 0.05 = $50
            ("default".into(), 250_000), //   500 GB × 0.08 = $40
            ("AS/JP".into(), 250_000),   //   500 GB × 0.08 = $40
        ]
    }

    #[test]
    fn estimated_from_answers_with_region_prices() {
        let now = APR_2027 + 10 * DAY_MS;
        let inputs = CostInputs {
            reported: None,
            answers: answers(),
        };
        let s = priced().status(&inputs, now);
        assert!(close(s.spend_so_far, 190.0), "{}", s.spend_so_far);
        assert!(close(s.projected, 570.0));
        assert_eq!(s.source, Source::Estimated { answers: 2_000_000 });
        assert_eq!(s.source.to_string(), "estimated from 2000000 answers");
        // bytes_per_answer scales the estimate.
        let s = priced().with_bytes_per_answer(1e6).status(&inputs, now);
        assert!(close(s.spend_so_far, 95.0));
        // No answers, no report: zero.
        let s = priced().status(&CostInputs::default(), now);
        assert_eq!((s.spend_so_far, s.projected), (0.0, 0.0));
        assert_eq!(s.source, Source::Estimated { answers: 0 });
    }

    #[test]
    fn reported_spend_beats_bytes_beats_estimate() {
        let now = APR_2027 + 10 * DAY_MS;
        let usage = |spend_usd, bytes| Usage {
            spend_usd,
            bytes,
            as_of_ms: now,
        };
        let m = priced();

        let both = CostInputs {
            reported: Some(usage(Some(500.0), Some(8_000_000_000_000))),
            answers: answers(),
        };
        let s = m.status(&both, now);
        assert_eq!((s.spend_so_far, s.source), (500.0, Source::ReportedSpend));
        assert_eq!(s.source.to_string(), "reported spend");

        // Bytes only: priced at the answer-weighted region price ($190 / 4,000 GB = $0.0475).
        let bytes = CostInputs {
            reported: Some(usage(None, Some(8_000_000_000_000))),
            answers: answers(),
        };
        let s = m.status(&bytes, now);
        assert!(close(s.spend_so_far, 380.0), "{}", s.spend_so_far);
        assert_eq!(s.source, Source::ReportedBytes);
        assert_eq!(s.source.to_string(), "reported bytes");
        // Bytes without answers: flat price.
        let s = m.status(
            &CostInputs {
                reported: Some(usage(None, Some(8_000_000_000_000))),
                answers: vec![],
            },
            now,
        );
        assert!(close(s.spend_so_far, 640.0));

        // A report with neither figure, or an unusable spend, falls through.
        let s = m.status(
            &CostInputs {
                reported: Some(usage(None, None)),
                answers: answers(),
            },
            now,
        );
        assert_eq!(s.source, Source::Estimated { answers: 2_000_000 });
        let s = m.status(
            &CostInputs {
                reported: Some(usage(Some(f64::NAN), Some(8_000_000_000_000))),
                answers: answers(),
            },
            now,
        );
        assert_eq!(s.source, Source::ReportedBytes);
    }

    #[test]
    fn report_from_previous_month_is_ignored() {
        let now = APR_2027 + 2 * DAY_MS;
        let inputs = CostInputs {
            reported: Some(Usage {
                spend_usd: Some(9_000.0),
                bytes: None,
                as_of_ms: APR_2027 - 1,
            }),
            answers: answers(),
        };
        let s = priced().with_cap(5_000.0).status(&inputs, now);
        assert_eq!(s.source, Source::Estimated { answers: 2_000_000 });
        assert!(s.stale_report_ignored);
        assert!(!s.over_cap);
        assert!(
            s.explain()
                .contains("billing report from another month ignored")
        );
    }

    /// Target 0 (best) has a $10,080 cap, 1 GB per answer at $1/GB (so $1 per answer): 10
    /// answers/h for the first 240 h of April, then 30/h. After the k-th surge answer the
    /// projection is 21600 × (2400 + k) / (7200 + k), which equals the cap at k = 1800
    /// (h = 300, exactly $10,080: not over) and first exceeds it at k = 1801, i.e. at
    /// 300 h + 2 min.
    #[test]
    fn cap_demotes_best_exactly_when_projection_crosses() {
        let m0 = CostModel::new(1.0)
            .with_bytes_per_answer(1e9)
            .with_cap(10_080.0);
        let m1 = CostModel::new(0.01);
        let answers_at = |e: u64| -> u64 {
            if e <= 240 * HOUR_MS {
                e * 10 / HOUR_MS
            } else {
                2400 + (e - 240 * HOUR_MS) * 30 / HOUR_MS
            }
        };
        let statuses = |e: u64| -> Vec<CostStatus> {
            let inputs = |n| CostInputs {
                reported: None,
                answers: vec![("default".into(), n)],
            };
            vec![
                m0.status(&inputs(answers_at(e)), APR_2027 + e),
                m1.status(&inputs(answers_at(e) / 3), APR_2027 + e),
            ]
        };

        let at_cap = statuses(300 * HOUR_MS);
        assert_eq!(at_cap[0].projected, 10_080.0);
        assert!(!at_cap[0].over_cap, "equal to the cap is not over it");

        let crossing = 300 * HOUR_MS + 120_000;
        assert!(!statuses(crossing - 1)[0].over_cap);
        assert!(statuses(crossing)[0].over_cap);

        let mut first_over = None;
        let mut e = 0;
        while e <= 400 * HOUR_MS {
            let st = statuses(e);
            let (order, reasons) = apply_cost(&[0, 1], &st, CostMode::Demote, false);
            if e < crossing {
                assert_eq!(order, vec![0, 1], "demoted too early at {e} ms");
                assert!(reasons.is_empty());
            } else {
                first_over.get_or_insert(e);
                assert_eq!(order, vec![1, 0], "not demoted at {e} ms");
                assert_eq!(reasons.len(), 1);
                assert!(reasons[0].starts_with("target 0 demoted: projected $1"));
                assert!(reasons[0].contains(" > cap $10,080 (spend so far $"));
            }
            e += 60_000;
        }
        assert_eq!(first_over, Some(crossing));
    }

    fn status(over_cap: bool, under_commit: bool) -> CostStatus {
        CostStatus {
            spend_so_far: 100.0,
            projected: 300.0,
            cap: Some(if over_cap { 200.0 } else { 1000.0 }),
            commit: Some(if under_commit { 400.0 } else { 50.0 }),
            over_cap,
            under_commit,
            source: Source::ReportedSpend,
            elapsed_days: 10.0,
            month_days: 30,
            stale_report_ignored: false,
        }
    }

    #[test]
    fn drop_vs_demote() {
        let st = vec![
            status(true, false),
            status(false, false),
            status(true, false),
            status(false, false),
        ];
        let (order, reasons) = apply_cost(&[0, 1, 2, 3], &st, CostMode::Demote, false);
        assert_eq!(order, vec![1, 3, 0, 2]);
        assert_eq!(reasons.len(), 2);
        assert!(reasons[0].starts_with("target 0 demoted: projected $300.00 > cap $200.00"));
        assert!(reasons[1].starts_with("target 2 demoted"));

        let (order, reasons) = apply_cost(&[0, 1, 2, 3], &st, CostMode::Drop, false);
        assert_eq!(order, vec![1, 3]);
        assert!(reasons[0].starts_with("target 0 dropped"));
        assert!(reasons[1].starts_with("target 2 dropped"));

        // Candidate order is the caller's, not the status order.
        let (order, _) = apply_cost(&[2, 3, 0], &st, CostMode::Demote, false);
        assert_eq!(order, vec![3, 2, 0]);
        // Targets beyond `status` are unmetered.
        let (order, reasons) = apply_cost(&[0, 9], &st, CostMode::Drop, false);
        assert_eq!((order, reasons.len()), (vec![9], 1));
        // Nothing over cap: unchanged, no reasons.
        let (order, reasons) = apply_cost(&[3, 1], &st, CostMode::Drop, true);
        assert_eq!(order, vec![3, 1]);
        assert!(reasons.is_empty());
        assert_eq!(apply_cost(&[], &st, CostMode::Drop, true), (vec![], vec![]));
    }

    #[test]
    fn all_over_cap_keeps_everyone() {
        let st = vec![status(true, false), status(true, false), status(true, true)];
        for mode in [CostMode::Demote, CostMode::Drop] {
            let (order, reasons) = apply_cost(&[2, 0, 1], &st, mode, true);
            assert_eq!(order, vec![2, 0, 1]);
            assert_eq!(reasons.len(), 3);
            assert!(reasons[0].starts_with("target 2 kept: every candidate is over its cap"));
            assert!(reasons.iter().all(|r| r.contains("> cap $200.00")));
        }
    }

    #[test]
    fn prefer_commit_ordering() {
        let st = vec![
            status(false, false), // 0: plain
            status(false, true),  // 1: under commit
            status(true, false),  // 2: over cap
            status(false, true),  // 3: under commit
            status(true, true),   // 4: both: the cap wins
        ];
        let (order, reasons) = apply_cost(&[0, 1, 2, 3, 4], &st, CostMode::Demote, true);
        assert_eq!(order, vec![1, 3, 0, 2, 4]);
        assert_eq!(
            reasons
                .iter()
                .map(|r| &r[..r.find(':').unwrap()])
                .collect::<Vec<_>>(),
            [
                "target 1 preferred",
                "target 2 demoted",
                "target 3 preferred",
                "target 4 demoted"
            ]
        );
        assert!(reasons[0].contains("< commit $400.00"));
        let (order, _) = apply_cost(&[0, 1, 2, 3, 4], &st, CostMode::Drop, true);
        assert_eq!(order, vec![1, 3, 0]);
        // Without prefer_commit the commit is ignored.
        let (order, _) = apply_cost(&[0, 1, 2, 3, 4], &st, CostMode::Demote, false);
        assert_eq!(order, vec![0, 1, 3, 2, 4]);
    }

    #[test]
    fn prefer_commit_from_real_figures() {
        let now = APR_2027 + 15 * DAY_MS;
        let committed = CostModel::new(0.02).with_commit(5_000.0);
        let s = committed.status(&reported_spend(2_000.0, now), now);
        assert_eq!(s.projected, 4_000.0);
        assert!(s.under_commit);
        let s2 = committed.status(&reported_spend(3_000.0, now), now);
        assert!(!s2.under_commit);
        let plain = CostModel::new(0.01).status(&reported_spend(100.0, now), now);
        let (order, _) = apply_cost(&[1, 0], &[s, plain.clone()], CostMode::Demote, true);
        assert_eq!(order, vec![0, 1]);
        let (order, _) = apply_cost(&[1, 0], &[s2, plain], CostMode::Demote, true);
        assert_eq!(order, vec![1, 0]);
    }

    #[test]
    fn explain_text() {
        let now = APR_2027 + 10 * DAY_MS;
        let s = CostModel::new(0.05)
            .with_cap(10_000.0)
            .status(&reported_spend(4_113.0, now), now);
        assert_eq!(
            s.explain(),
            "projected $12,339 > cap $10,000 (spend so far $4,113 over 10.0 days of 30; \
             reported by billing)"
        );

        let s = priced().with_cap(1_000.0).with_commit(600.0).status(
            &CostInputs {
                reported: None,
                answers: answers(),
            },
            now,
        );
        assert_eq!(
            s.explain(),
            "projected $570.00 <= cap $1,000, < commit $600.00 (spend so far $190.00 over \
             10.0 days of 30; estimated from 2000000 answers)"
        );

        let s = CostModel::new(0.05).status(&reported_spend(1_234_567.0, now), now);
        assert_eq!(
            s.explain(),
            "projected $3,703,701, no cap (spend so far $1,234,567 over 10.0 days of 30; \
             reported by billing)"
        );
        assert_eq!(CostStatus::unmetered().explain(), "no cost model");
    }

    #[test]
    fn money_format() {
        assert_eq!(money(0.0), "$0.00");
        assert_eq!(money(999.994), "$999.99");
        assert_eq!(money(1000.0), "$1,000");
        assert_eq!(money(12_339.4), "$12,339");
        assert_eq!(money(100_000.0), "$100,000");
        assert_eq!(money(-1_500.0), "-$1,500");
    }
}
