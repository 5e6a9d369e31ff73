use super::month::DAY_MS;
use super::spend::{HOUR_MS, money};
use super::*;

/// Builders of a model, for the tests (the configuration builds models field by field).
impl CostModel {
    /// A flat price, no region prices, no cap, no commit and the default bytes per answer.
    fn new(price_per_gb: f64) -> Self {
        CostModel {
            price_per_gb,
            region_prices: Default::default(),
            monthly_cap: None,
            commit: None,
            bytes_per_answer: DEFAULT_BYTES_PER_ANSWER,
        }
    }

    fn with_region_price(mut self, region: &str, price_per_gb: f64) -> Self {
        self.region_prices.insert(region.to_string(), price_per_gb);
        self
    }

    fn with_cap(mut self, usd: f64) -> Self {
        self.monthly_cap = Some(usd);
        self
    }

    fn with_commit(mut self, usd: f64) -> Self {
        self.commit = Some(usd);
        self
    }

    fn with_bytes_per_answer(mut self, bytes: f64) -> Self {
        self.bytes_per_answer = bytes;
        self
    }
}

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
        let (order, reasons) = apply_cost(&[0, 1], &st, CostMode::Demote, Commit::Ignore);
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
    let (order, reasons) = apply_cost(&[0, 1, 2, 3], &st, CostMode::Demote, Commit::Ignore);
    assert_eq!(order, vec![1, 3, 0, 2]);
    assert_eq!(reasons.len(), 2);
    assert!(reasons[0].starts_with("target 0 demoted: projected $300.00 > cap $200.00"));
    assert!(reasons[1].starts_with("target 2 demoted"));

    let (order, reasons) = apply_cost(&[0, 1, 2, 3], &st, CostMode::Drop, Commit::Ignore);
    assert_eq!(order, vec![1, 3]);
    assert!(reasons[0].starts_with("target 0 dropped"));
    assert!(reasons[1].starts_with("target 2 dropped"));

    // Candidate order is the caller's, not the status order.
    let (order, _) = apply_cost(&[2, 3, 0], &st, CostMode::Demote, Commit::Ignore);
    assert_eq!(order, vec![3, 2, 0]);
    // Targets beyond `status` are unmetered.
    let (order, reasons) = apply_cost(&[0, 9], &st, CostMode::Drop, Commit::Ignore);
    assert_eq!((order, reasons.len()), (vec![9], 1));
    // Nothing over cap: unchanged, no reasons.
    let (order, reasons) = apply_cost(&[3, 1], &st, CostMode::Drop, Commit::Prefer);
    assert_eq!(order, vec![3, 1]);
    assert!(reasons.is_empty());
    assert_eq!(
        apply_cost(&[], &st, CostMode::Drop, Commit::Prefer),
        (vec![], vec![])
    );
}

#[test]
fn all_over_cap_keeps_everyone() {
    let st = vec![status(true, false), status(true, false), status(true, true)];
    for mode in [CostMode::Demote, CostMode::Drop] {
        let (order, reasons) = apply_cost(&[2, 0, 1], &st, mode, Commit::Prefer);
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
    let (order, reasons) = apply_cost(&[0, 1, 2, 3, 4], &st, CostMode::Demote, Commit::Prefer);
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
    let (order, _) = apply_cost(&[0, 1, 2, 3, 4], &st, CostMode::Drop, Commit::Prefer);
    assert_eq!(order, vec![1, 3, 0]);
    // Without prefer_commit the commit is ignored.
    let (order, _) = apply_cost(&[0, 1, 2, 3, 4], &st, CostMode::Demote, Commit::Ignore);
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
    let (order, _) = apply_cost(
        &[1, 0],
        &[s, plain.clone()],
        CostMode::Demote,
        Commit::Prefer,
    );
    assert_eq!(order, vec![0, 1]);
    let (order, _) = apply_cost(&[1, 0], &[s2, plain], CostMode::Demote, Commit::Prefer);
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
