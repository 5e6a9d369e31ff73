//! The policy engine: the chain's steps (health → geo → cost → order → select) driven directly
//! with hand-made inputs, and through `policy::compile_with` / `policy::explain` on real
//! configurations: weighted splits and their stability, the latency stabilize band, cache-aware
//! scoring, cost caps, TTL shaping, explain traces, and a fail-closed SERVFAIL over UDP.
//!
//! Everything here is pure (no sleeping, no clock): time only enters as `now_ms` arguments.

mod common;

use std::net::{IpAddr, Ipv4Addr};
use std::str::FromStr;
use std::time::Duration;

use common::config::{NO_GEODB, geo_net, zone_ns1};
use hickory_proto::op::ResponseCode;
use hickory_proto::rr::{DNSClass, Name, RData, Record, RecordType};
use steerd::config::ValidConfig;
use steerd::config::schema::{AllDownMode, CostModeConfig};
use steerd::geo::GeoData;
use steerd::health::machine::EffectiveStatus;
use steerd::policy::chain::{
    self, CacheInputs, Cell, CellId, ChainSettings, Ctx, Memory, Order, Outcome, Pick, TargetInput,
    proximity_score,
};
use steerd::policy::cost::{self, CostInputs, CostModel, CostStatus, Month};
use steerd::policy::{PolicyInputs, compile_with, explain};
use steerd::table::{ClientAddr, CompiledService, RoutingTable, ServiceAnswer};

// ---------------------------------------------------------------------------------------------
// Configuration text builder
// ---------------------------------------------------------------------------------------------

/// Frankfurt, Ashburn, Singapore: A-record targets with coordinates; cdn-x is a CNAME target.
const TARGETS: &str = r#"
[[targets]]
name = "cdn-a"
a = ["192.0.2.1"]
latitude = 50.1
longitude = 8.7

[[targets]]
name = "cdn-b"
a = ["192.0.2.2"]
latitude = 39.0
longitude = -77.5

[[targets]]
name = "cdn-c"
a = ["192.0.2.3"]
latitude = 1.35
longitude = 103.8

[[targets]]
name = "cdn-x"
cname = "edge.cdn-x.example.net"
latitude = 48.9
longitude = 2.4
"#;

/// A configuration: the zone `example.com`, the four targets above, no GeoIP database, and
/// whatever network overrides and services the test adds.
#[derive(Default)]
struct Conf {
    nets: Vec<String>,
    services: Vec<String>,
}

impl Conf {
    fn new() -> Self {
        Self::default()
    }

    /// A `[[geo.nets]]` override: `place` is `country = "DE"` or `continent = "EU"`.
    fn net(mut self, cidr: &str, place: &str) -> Self {
        self.nets.push(geo_net(cidr, place));
        self
    }

    /// A service with unweighted members; `extra` is raw TOML lines (`ttl = 60`, …).
    fn service(self, name: &str, policy: &str, members: &[&str], extra: &str) -> Self {
        let list: Vec<String> = members
            .iter()
            .map(|m| format!("{{ target = \"{m}\" }}"))
            .collect();
        self.raw_service(name, policy, &list, extra)
    }

    /// A weighted service.
    fn weighted(self, name: &str, members: &[(&str, u32)], extra: &str) -> Self {
        let list: Vec<String> = members
            .iter()
            .map(|(m, w)| format!("{{ target = \"{m}\", weight = {w} }}"))
            .collect();
        self.raw_service(name, "weighted", &list, extra)
    }

    fn raw_service(mut self, name: &str, policy: &str, list: &[String], extra: &str) -> Self {
        self.services.push(format!(
            "[[services]]\nname = \"{name}\"\npolicy = \"{policy}\"\ntargets = [{}]\n{extra}\n",
            list.join(", ")
        ));
        self
    }

    fn text(&self) -> String {
        format!(
            "{NO_GEODB}{}\n{}\n{TARGETS}\n{}",
            self.nets.join("\n"),
            zone_ns1("example.com", "192.0.2.53"),
            self.services.join("\n")
        )
    }

    fn build(&self) -> ValidConfig {
        let text = self.text();
        match steerd::config::parse(&text, "test") {
            Ok(c) => c,
            Err(e) => panic!("test configuration is invalid:\n{e}\n---\n{text}"),
        }
    }
}

fn geo(cfg: &ValidConfig) -> GeoData {
    steerd::control::load_geo(cfg).expect("geo data loads")
}

fn target_index(cfg: &ValidConfig, name: &str) -> usize {
    cfg.targets
        .iter()
        .position(|t| t.name == name)
        .unwrap_or_else(|| panic!("no target {name}"))
}

/// Inputs with every target unknown, then `f` applied to each (by name).
fn inputs_with(cfg: &ValidConfig, mut f: impl FnMut(&str, &mut TargetInput)) -> PolicyInputs {
    let mut inputs = PolicyInputs::unknown(cfg);
    for (t, input) in cfg.targets.iter().zip(inputs.targets.iter_mut()) {
        f(&t.name, input);
    }
    inputs
}

/// An absolute name (the trailing dot is optional, as in the configuration).
fn name(s: &str) -> Name {
    let mut n = Name::from_str(s).unwrap();
    n.set_fqdn(true);
    n
}

fn service<'t>(table: &'t RoutingTable, svc: &str) -> &'t CompiledService {
    let n = name(svc);
    table
        .services
        .iter()
        .find(|s| s.name == n)
        .unwrap_or_else(|| panic!("no compiled service {svc}"))
}

fn answer_for(svc: &CompiledService, ip: IpAddr) -> &ServiceAnswer {
    let (i, _) = svc.select(ClientAddr::resolver(ip), 24, 56);
    &svc.answers[i]
}

/// Client i: a distinct /24 for every i < 2^24, spread over the address space.
fn client(i: u32) -> IpAddr {
    IpAddr::V4(Ipv4Addr::from(
        (i.wrapping_mul(2_654_435_761) & 0x00ff_ffff) << 8,
    ))
}

fn ip(s: &str) -> IpAddr {
    s.parse().unwrap()
}

fn ms(v: u64) -> Duration {
    Duration::from_millis(v)
}

// ---------------------------------------------------------------------------------------------
// Chain helpers
// ---------------------------------------------------------------------------------------------

fn names(n: &[&str]) -> Vec<String> {
    n.iter().map(|s| s.to_string()).collect()
}

fn cell(candidates: &[usize]) -> Cell {
    Cell {
        label: "all clients".into(),
        candidates: candidates.to_vec(),
        weights: None,
        region: None,
        distances: None,
        overrides: Vec::new(),
    }
}

fn state(s: EffectiveStatus, reason: &str) -> TargetInput {
    let mut t = TargetInput::unknown();
    t.state = s;
    t.reason = reason.into();
    t
}

/// Run the chain with tracing, check that a run without tracing picks the same, and return the
/// outcome and the incumbents it wrote.
fn run(
    cell: &Cell,
    order: Order,
    settings: &ChainSettings,
    names: &[String],
    targets: &[TargetInput],
    prev: &Memory,
) -> (Outcome, Memory) {
    let costs: Vec<CostStatus> = targets.iter().map(|t| t.cost.clone()).collect();
    let mut out = Vec::new();
    for trace in [true, false] {
        let ctx = Ctx {
            names,
            targets,
            costs: &costs,
            prev,
            trace,
        };
        let mut next = Memory::default();
        let o = chain::run(cell, order, settings, &ctx, "svc.example.com.", &mut next);
        out.push((o, next));
    }
    let (quiet, quiet_next) = out.pop().unwrap();
    let (traced, next) = out.pop().unwrap();
    assert_eq!(quiet.pick, traced.pick, "tracing changed the pick");
    assert_eq!(quiet.all_down, traced.all_down);
    assert_eq!(quiet.unstable, traced.unstable);
    assert_eq!(quiet_next, next, "tracing changed the incumbents");
    (traced, next)
}

/// Notes of one step of a trace (panics when the step is missing).
fn notes<'o>(o: &'o Outcome, step: &str) -> &'o [String] {
    &o.trace
        .iter()
        .find(|s| s.step == step)
        .unwrap_or_else(|| panic!("no step {step} in {:#?}", o.trace))
        .notes
}

fn steps(o: &Outcome) -> Vec<&'static str> {
    o.trace.iter().map(|s| s.step).collect()
}

fn has_note(o: &Outcome, step: &str, needle: &str) -> bool {
    notes(o, step).iter().any(|n| n.contains(needle))
}

fn fixed(o: &Outcome) -> Vec<usize> {
    match &o.pick {
        Pick::Fixed(v) => v.clone(),
        other => panic!("expected a fixed pick, got {other:?}"),
    }
}

fn settings() -> ChainSettings {
    ChainSettings::default()
}

// ---------------------------------------------------------------------------------------------
// 1. Health, all-down handling and select, on the chain itself
// ---------------------------------------------------------------------------------------------

#[test]
fn health_drops_down_forced_down_and_drained_and_demotes_degraded() {
    let n = names(&["cdn-a", "cdn-b", "cdn-c", "cdn-d", "cdn-e", "cdn-f"]);
    let targets = vec![
        state(EffectiveStatus::Degraded, "p95 812 ms > 500 ms over 1m"),
        state(EffectiveStatus::Down, "error rate 7.2 % > 5 % over 1m"),
        state(EffectiveStatus::ForcedDown, "forced down by alice"),
        state(EffectiveStatus::Drained, "drained by bob"),
        state(EffectiveStatus::Healthy, "all checks pass"),
        state(EffectiveStatus::ForcedUp, "forced up by carol"),
    ];
    let s = ChainSettings {
        select: 6,
        ..settings()
    };
    let (o, _) = run(
        &cell(&[0, 1, 2, 3, 4, 5]),
        Order::Failover,
        &s,
        &n,
        &targets,
        &Memory::default(),
    );
    // Healthy and forced-up in configured order, then the degraded one; the rest dropped.
    assert_eq!(fixed(&o), vec![4, 5, 0]);
    assert!(!o.all_down);
    assert!(!o.unstable);
    assert_eq!(
        steps(&o),
        ["health", "geo", "cost", "order: failover", "select"]
    );
    let health = notes(&o, "health");
    assert!(health.contains(&"cdn-a demoted: degraded (p95 812 ms > 500 ms over 1m)".into()));
    assert!(health.contains(&"cdn-b dropped: down (error rate 7.2 % > 5 % over 1m)".into()));
    assert!(health.contains(&"cdn-c dropped: forced_down (forced down by alice)".into()));
    assert!(health.contains(&"cdn-d dropped: drained (drained by bob)".into()));
    assert_eq!(health.len(), 4, "healthy targets get no note: {health:?}");
    assert_eq!(
        o.trace[0].output,
        ["cdn-e", "cdn-f", "cdn-a"],
        "health output"
    );

    // select 1: the first healthy one, although a degraded one is configured first.
    let (o, _) = run(
        &cell(&[0, 1, 4]),
        Order::Failover,
        &settings(),
        &n,
        &targets,
        &Memory::default(),
    );
    assert_eq!(fixed(&o), vec![4]);
    // Only degraded left: it still answers (degraded is usable), not an all-down case.
    let (o, _) = run(
        &cell(&[1, 0, 2]),
        Order::Failover,
        &settings(),
        &n,
        &targets,
        &Memory::default(),
    );
    assert_eq!(fixed(&o), vec![0]);
    assert!(!o.all_down);
}

#[test]
fn fail_open_answers_measured_down_before_operator_forced_ones() {
    let n = names(&["cdn-a", "cdn-b", "cdn-c", "cdn-d"]);
    let targets = vec![
        state(EffectiveStatus::ForcedDown, "forced down by alice"),
        state(EffectiveStatus::Down, "connect refused"),
        state(EffectiveStatus::Drained, "drained by bob"),
        state(EffectiveStatus::Down, "timed out"),
    ];
    let all = cell(&[0, 1, 2, 3]);
    for select in [1, 2] {
        let s = ChainSettings {
            select,
            all_down: AllDownMode::Open,
            ..settings()
        };
        let (o, _) = run(&all, Order::Failover, &s, &n, &targets, &Memory::default());
        assert!(o.all_down);
        // The measured-down ones, in configured order, come first.
        assert_eq!(fixed(&o), [1, 3][..select].to_vec(), "select {select}");
        assert!(has_note(
            &o,
            "health",
            "every candidate is down: fail-open, answering the least bad"
        ));
    }
    // However many are selected, no operator-forced target precedes a measured-down one.
    let s = ChainSettings {
        select: 4,
        ..settings()
    };
    let (o, _) = run(&all, Order::Failover, &s, &n, &targets, &Memory::default());
    let picked = fixed(&o);
    assert_eq!(picked[..2], [1, 3]);

    // Only operator-forced candidates: they answer, in configured order.
    let (o, _) = run(
        &cell(&[2, 0]),
        Order::Failover,
        &s,
        &n,
        &targets,
        &Memory::default(),
    );
    assert!(o.all_down);
    assert_eq!(fixed(&o), vec![2, 0]);

    // Not every candidate down: not an all-down case, the healthy one answers.
    let mut some_up = targets.clone();
    some_up[3] = TargetInput::unknown();
    let (o, _) = run(&all, Order::Failover, &s, &n, &some_up, &Memory::default());
    assert!(!o.all_down);
    assert_eq!(fixed(&o), vec![3]);
}

#[test]
fn fail_closed_is_servfail_or_the_fallback() {
    let n = names(&["cdn-a", "cdn-b"]);
    let targets = vec![
        state(EffectiveStatus::Down, "connect refused"),
        state(EffectiveStatus::ForcedDown, "forced down by alice"),
    ];
    let closed = ChainSettings {
        all_down: AllDownMode::Closed,
        ..settings()
    };
    for order in [
        Order::Failover,
        Order::Weighted,
        Order::Latency,
        Order::CacheAware,
    ] {
        let mut c = cell(&[0, 1]);
        if order == Order::Weighted {
            c.weights = Some(vec![60, 40]);
        }
        let (o, _) = run(&c, order, &closed, &n, &targets, &Memory::default());
        assert_eq!(o.pick, Pick::ServFail, "{order:?}");
        assert!(o.all_down);
        assert!(has_note(
            &o,
            "health",
            "every candidate is down: fail-closed, SERVFAIL"
        ));
        // The chain stops at the health step.
        assert_eq!(steps(&o), ["health"]);

        let with_fallback = ChainSettings {
            has_fallback: true,
            ..closed.clone()
        };
        let (o, _) = run(&c, order, &with_fallback, &n, &targets, &Memory::default());
        assert_eq!(o.pick, Pick::Fallback, "{order:?}");
        assert!(o.all_down);
        assert!(has_note(
            &o,
            "health",
            "every candidate is down: fail-closed, the fallback answer"
        ));
    }
    // Fail-closed only matters when every candidate is down.
    let mut one_up = targets.clone();
    one_up[1] = state(EffectiveStatus::Degraded, "slow");
    let (o, _) = run(
        &cell(&[0, 1]),
        Order::Failover,
        &closed,
        &n,
        &one_up,
        &Memory::default(),
    );
    assert_eq!(o.pick, Pick::Fixed(vec![1]));
    assert!(!o.all_down);
}

#[test]
fn weighted_keeps_degraded_members_and_drops_down_ones() {
    let n = names(&["cdn-a", "cdn-b", "cdn-c"]);
    let mut c = cell(&[0, 1, 2]);
    c.weights = Some(vec![50, 30, 20]);
    let targets = vec![
        state(EffectiveStatus::Degraded, "p95 900 ms"),
        TargetInput::unknown(),
        state(EffectiveStatus::Down, "HTTP 503"),
    ];
    let (o, _) = run(
        &c,
        Order::Weighted,
        &settings(),
        &n,
        &targets,
        &Memory::default(),
    );
    // The degraded member keeps its place and weight; the down one leaves the split.
    assert_eq!(o.pick, Pick::Weighted(vec![(0, 50), (1, 30)]));
    assert!(!o.all_down);
    assert_eq!(
        steps(&o),
        ["health", "geo", "cost", "order: weighted", "select"]
    );
    assert!(has_note(&o, "health", "cdn-c dropped: down (HTTP 503)"));
    let order = notes(&o, "order: weighted");
    assert_eq!(
        order,
        ["cdn-a 62.5 % (weight 50)", "cdn-b 37.5 % (weight 30)"]
    );
    assert!(has_note(
        &o,
        "select",
        "one per client subnet (rendezvous hashing)"
    ));

    // The same states under failover: the degraded one is demoted instead.
    let (o, _) = run(
        &cell(&[0, 1, 2]),
        Order::Failover,
        &settings(),
        &n,
        &targets,
        &Memory::default(),
    );
    assert_eq!(fixed(&o), vec![1]);

    // Every member healthy: the configured weights unchanged.
    let healthy = vec![TargetInput::unknown(); 3];
    let (o, _) = run(
        &c,
        Order::Weighted,
        &settings(),
        &n,
        &healthy,
        &Memory::default(),
    );
    assert_eq!(o.pick, Pick::Weighted(vec![(0, 50), (1, 30), (2, 20)]));
}

#[test]
fn select_n_picks_the_first_n_of_the_order() {
    let n = names(&["cdn-a", "cdn-b", "cdn-c", "cdn-d"]);
    let targets = vec![
        TargetInput::unknown(),
        state(EffectiveStatus::Degraded, "slow"),
        TargetInput::unknown(),
        TargetInput::unknown(),
    ];
    let c = cell(&[3, 1, 0, 2]);
    for (select, want) in [
        (1, vec![3]),
        (2, vec![3, 0]),
        (3, vec![3, 0, 2]),
        (4, vec![3, 0, 2, 1]),
        (9, vec![3, 0, 2, 1]),
    ] {
        let s = ChainSettings {
            select,
            ..settings()
        };
        let (o, _) = run(&c, Order::Failover, &s, &n, &targets, &Memory::default());
        assert_eq!(fixed(&o), want, "select {select}");
        assert!(has_note(&o, "select", &format!("first {select}")));
    }
    // An unstable candidate marks the outcome (short TTL) and says so.
    let mut unstable = targets.clone();
    unstable[0].unstable = true;
    let (o, _) = run(
        &c,
        Order::Failover,
        &settings(),
        &n,
        &unstable,
        &Memory::default(),
    );
    assert!(o.unstable);
    assert!(has_note(&o, "select", "short TTL"));
}

// ---------------------------------------------------------------------------------------------
// 2. Weighted splits through compile_with
// ---------------------------------------------------------------------------------------------

const N_CLIENTS: u32 = 10_000;

#[test]
fn weighted_60_40_split_over_10000_subnets_is_within_3_percent() {
    let cfg = Conf::new()
        .weighted("split.example.com", &[("cdn-a", 60), ("cdn-b", 40)], "")
        .build();
    let geo = geo(&cfg);
    let (table, _) = compile_with(&cfg, &geo, &PolicyInputs::unknown(&cfg), &Memory::default());
    let svc = service(&table, "split.example.com");
    let mut a = 0;
    for i in 0..N_CLIENTS {
        let ans = answer_for(svc, client(i));
        match ans.target.as_str() {
            "cdn-a" => {
                a += 1;
                assert_eq!(ans.a.len(), 1);
                assert_eq!(ans.a[0].data, RData::A(Ipv4Addr::new(192, 0, 2, 1).into()));
            }
            "cdn-b" => {
                assert_eq!(ans.a[0].data, RData::A(Ipv4Addr::new(192, 0, 2, 2).into()));
            }
            other => panic!("unexpected answer {other}"),
        }
    }
    let share = a as f64 / N_CLIENTS as f64;
    assert!(
        (share - 0.60).abs() <= 0.03,
        "cdn-a got {:.2} % of {N_CLIENTS} subnets, want 60 ± 3 %",
        share * 100.0
    );
}

#[test]
fn marking_a_member_down_moves_only_its_clients_in_proportion() {
    let cfg = Conf::new()
        .weighted(
            "split.example.com",
            &[("cdn-a", 50), ("cdn-b", 30), ("cdn-c", 20)],
            "",
        )
        .build();
    let geo = geo(&cfg);
    let (before, _) = compile_with(&cfg, &geo, &PolicyInputs::unknown(&cfg), &Memory::default());
    let down = inputs_with(&cfg, |n, t| {
        if n == "cdn-c" {
            t.state = EffectiveStatus::Down;
            t.reason = "connect refused".into();
        }
    });
    let (after, _) = compile_with(&cfg, &geo, &down, &Memory::default());
    let (sb, sa) = (
        service(&before, "split.example.com"),
        service(&after, "split.example.com"),
    );

    let mut count = std::collections::HashMap::<&str, u32>::new();
    let (mut moved, mut moved_to_a) = (0u32, 0u32);
    for i in 0..N_CLIENTS {
        let b = answer_for(sb, client(i)).target.as_str();
        let a = answer_for(sa, client(i)).target.as_str();
        *count.entry(b).or_default() += 1;
        assert_ne!(a, "cdn-c", "client {i} still sent to the down target");
        if b == "cdn-c" {
            moved += 1;
            if a == "cdn-a" {
                moved_to_a += 1;
            }
        } else {
            assert_eq!(a, b, "client {i} moved although its target ({b}) stayed up");
        }
    }
    for (t, want) in [("cdn-a", 0.50), ("cdn-b", 0.30), ("cdn-c", 0.20)] {
        let share = count.get(t).copied().unwrap_or(0) as f64 / N_CLIENTS as f64;
        assert!(
            (share - want).abs() <= 0.03,
            "{t} had {:.2} % before, want {:.0} ± 3 %",
            share * 100.0,
            want * 100.0
        );
    }
    // cdn-c's share goes to cdn-a and cdn-b as 50 : 30.
    let to_a = moved_to_a as f64 / moved as f64;
    assert!(
        (to_a - 50.0 / 80.0).abs() <= 0.03,
        "{:.2} % of cdn-c's {moved} clients went to cdn-a, want 62.5 ± 3 %",
        to_a * 100.0
    );

    // A degraded member keeps every client: the split does not change.
    let degraded = inputs_with(&cfg, |n, t| {
        if n == "cdn-c" {
            t.state = EffectiveStatus::Degraded;
        }
    });
    let (deg, _) = compile_with(&cfg, &geo, &degraded, &Memory::default());
    let sd = service(&deg, "split.example.com");
    for i in (0..N_CLIENTS).step_by(7) {
        assert_eq!(
            answer_for(sd, client(i)).target,
            answer_for(sb, client(i)).target,
            "client {i} moved because a member is degraded"
        );
    }
}

// ---------------------------------------------------------------------------------------------
// 3. Latency: stabilize band and per-region figures
// ---------------------------------------------------------------------------------------------

fn latencies(cfg: &ValidConfig, a: u64, b: u64) -> PolicyInputs {
    inputs_with(cfg, |n, t| match n {
        "cdn-a" => t.latency = Some(ms(a)),
        "cdn-b" => t.latency = Some(ms(b)),
        _ => {}
    })
}

#[test]
fn latency_incumbent_stays_inside_the_stabilize_band_via_compile() {
    let cfg = Conf::new()
        .service("fast.example.com", "latency", &["cdn-a", "cdn-b"], "")
        .build();
    let geo = geo(&cfg);
    let key = &CellId::new("fast.example.com.", "clients without a region");
    let pick = |t: &RoutingTable| {
        answer_for(service(t, "fast.example.com"), ip("203.0.113.7"))
            .target
            .clone()
    };

    // No incumbent: the fastest wins, and becomes the incumbent.
    let (t1, m1) = compile_with(&cfg, &geo, &latencies(&cfg, 100, 95), &Memory::default());
    assert_eq!(pick(&t1), "cdn-b");
    assert_eq!(m1.len(), 1, "{m1:?}");
    assert_eq!(m1.get(key).map(String::as_str), Some("cdn-b"), "{m1:?}");

    // cdn-a is now faster by 5 ms (5 %): inside the band, cdn-b stays, and stays remembered.
    let swapped = latencies(&cfg, 95, 100);
    let (t2, m2) = compile_with(&cfg, &geo, &swapped, &m1);
    assert_eq!(pick(&t2), "cdn-b");
    assert_eq!(m2.get(key).map(String::as_str), Some("cdn-b"));
    // Without the memory the same figures pick cdn-a: the band is what kept cdn-b.
    let (t2b, _) = compile_with(&cfg, &geo, &swapped, &Memory::default());
    assert_eq!(pick(&t2b), "cdn-a");

    // Faster by 11 ms (11 %): outside the band, cdn-a takes over.
    let (t3, m3) = compile_with(&cfg, &geo, &latencies(&cfg, 89, 100), &m2);
    assert_eq!(pick(&t3), "cdn-a");
    assert_eq!(m3.get(key).map(String::as_str), Some("cdn-a"));

    // Explain says why.
    let svc = name("fast.example.com");
    let e = explain(&cfg, &geo, &swapped, &m1, &svc, ip("203.0.113.7")).unwrap();
    let text = e.to_string();
    assert!(
        text.contains("cdn-b stays: cdn-a is faster by 5 ms (5.0 %), inside the stabilize band (50 ms or 10 %)"),
        "{text}"
    );
    let e = explain(
        &cfg,
        &geo,
        &latencies(&cfg, 89, 100),
        &m2,
        &svc,
        ip("203.0.113.7"),
    )
    .unwrap();
    let text = e.to_string();
    assert!(
        text.contains("cdn-a takes over from cdn-b: faster by 11 ms (11.0 %)"),
        "{text}"
    );
    assert_eq!(e.cell, "clients without a region");
}

#[test]
fn latency_stabilize_band_is_percent_or_milliseconds() {
    let n = names(&["cdn-a", "cdn-b"]);
    let c = cell(&[0, 1]);
    let key = &CellId::new("svc.example.com.", "all clients");
    let with = |a: u64, b: u64| {
        let mut t = vec![TargetInput::unknown(), TargetInput::unknown()];
        t[0].latency = Some(ms(a));
        t[1].latency = Some(ms(b));
        t
    };
    let mut incumbent_a = Memory::default();
    incumbent_a.insert(key.clone(), "cdn-a".to_string());
    let s = settings();

    // (incumbent cdn-a, challenger cdn-b) → who answers.
    for (a, b, want, why) in [
        (100, 95, 0, "5 ms, 5 %: stays"),
        (100, 91, 0, "9 ms, 9 %: stays"),
        (100, 89, 1, "11 ms, 11 %: takes over"),
        (1000, 951, 0, "49 ms, 4.9 %: stays"),
        (1000, 949, 1, "51 ms, 5.1 %: takes over"),
        (20, 19, 0, "1 ms, 5 %: stays"),
        (20, 17, 1, "3 ms, 15 %: takes over"),
        (90, 100, 0, "the incumbent is the fastest"),
    ] {
        let (o, next) = run(&c, Order::Latency, &s, &n, &with(a, b), &incumbent_a);
        assert_eq!(fixed(&o), vec![want], "{a} vs {b} ms ({why})");
        assert_eq!(
            next.get(key).map(String::as_str),
            Some(n[want].as_str()),
            "{why}: the answer is the next incumbent"
        );
        let order = notes(&o, "order: latency");
        if want == 0 && b < a {
            assert!(
                order
                    .iter()
                    .any(|x| x.starts_with("cdn-a stays: cdn-b is faster by")),
                "{why}: {order:?}"
            );
        }
        if want == 1 {
            assert!(
                order
                    .iter()
                    .any(|x| x.starts_with("cdn-b takes over from cdn-a: faster by")),
                "{why}: {order:?}"
            );
        }
    }

    // No incumbent: the fastest, whatever the margin.
    let (o, next) = run(
        &c,
        Order::Latency,
        &s,
        &n,
        &with(100, 99),
        &Memory::default(),
    );
    assert_eq!(fixed(&o), vec![1]);
    assert_eq!(next.get(key).map(String::as_str), Some("cdn-b"));
    // An incumbent that is down cannot stay.
    let mut down = with(100, 99);
    down[0].state = EffectiveStatus::Down;
    let (o, _) = run(&c, Order::Latency, &s, &n, &down, &incumbent_a);
    assert_eq!(fixed(&o), vec![1]);
    // Measured targets before unmeasured ones.
    let mut unmeasured = with(100, 99);
    unmeasured[1].latency = None;
    let (o, _) = run(&c, Order::Latency, &s, &n, &unmeasured, &Memory::default());
    assert_eq!(fixed(&o), vec![0]);
    assert!(has_note(&o, "order: latency", "cdn-b not measured"));
    // A band of zero: the fastest always takes over.
    let tight = ChainSettings {
        stabilize_pct: 0.0,
        stabilize_ms: 0,
        ..settings()
    };
    let (o, _) = run(&c, Order::Latency, &tight, &n, &with(100, 99), &incumbent_a);
    assert_eq!(fixed(&o), vec![1]);
    // A wide band: a 40 % gain is not enough.
    let wide = ChainSettings {
        stabilize_pct: 50.0,
        stabilize_ms: 500,
        ..settings()
    };
    let (o, _) = run(&c, Order::Latency, &wide, &n, &with(100, 60), &incumbent_a);
    assert_eq!(fixed(&o), vec![0]);
}

#[test]
fn latency_per_region_figure_overrides_the_global_one() {
    let n = names(&["cdn-a", "cdn-b"]);
    let mut targets = vec![TargetInput::unknown(), TargetInput::unknown()];
    targets[0].latency = Some(ms(100));
    targets[0].latency_by_region = vec![("EU".into(), ms(40)), ("AS".into(), ms(300))];
    targets[1].latency = Some(ms(80));
    let in_region = |r: Option<&str>| Cell {
        label: match r {
            Some(r) => format!("region {r}"),
            None => "clients without a region".into(),
        },
        region: r.map(str::to_string),
        ..cell(&[0, 1])
    };
    let s = settings();
    let m = Memory::default();

    let (o, _) = run(&in_region(Some("EU")), Order::Latency, &s, &n, &targets, &m);
    assert_eq!(fixed(&o), vec![0], "EU clients: cdn-a's 40 ms from EU wins");
    assert_eq!(
        notes(&o, "order: latency"),
        [
            "cdn-a p95 40 ms (from EU)",
            "cdn-b p95 80 ms (all vantage points)"
        ]
    );
    let (o, _) = run(&in_region(None), Order::Latency, &s, &n, &targets, &m);
    assert_eq!(fixed(&o), vec![1], "no region: the global figures");
    let (o, _) = run(&in_region(Some("NA")), Order::Latency, &s, &n, &targets, &m);
    assert_eq!(
        fixed(&o),
        vec![1],
        "a region without figures: the global ones"
    );
    let (o, _) = run(&in_region(Some("AS")), Order::Latency, &s, &n, &targets, &m);
    assert_eq!(
        fixed(&o),
        vec![1],
        "AS clients: cdn-a's 300 ms from AS loses"
    );

    // The same through compile_with: a network override places clients in EU.
    let cfg = Conf::new()
        .net("198.51.100.0/24", "continent = \"EU\"")
        .service("fast.example.com", "latency", &["cdn-a", "cdn-b"], "")
        .build();
    let geo = geo(&cfg);
    let inputs = inputs_with(&cfg, |n, t| match n {
        "cdn-a" => {
            t.latency = Some(ms(100));
            t.latency_by_region = vec![("EU".into(), ms(40))];
        }
        "cdn-b" => t.latency = Some(ms(80)),
        _ => {}
    });
    let (table, memory) = compile_with(&cfg, &geo, &inputs, &Memory::default());
    let svc = service(&table, "fast.example.com");
    assert_eq!(answer_for(svc, ip("198.51.100.7")).target, "cdn-a");
    assert_eq!(answer_for(svc, ip("203.0.113.7")).target, "cdn-b");
    assert_eq!(
        memory
            .get(&CellId::new("fast.example.com.", "region EU"))
            .map(String::as_str),
        Some("cdn-a"),
        "{memory:?}"
    );
    assert_eq!(
        memory
            .get(&CellId::new(
                "fast.example.com.",
                "clients without a region"
            ))
            .map(String::as_str),
        Some("cdn-b"),
        "{memory:?}"
    );
    let e = explain(
        &cfg,
        &geo,
        &inputs,
        &Memory::default(),
        &name("fast.example.com"),
        ip("198.51.100.7"),
    )
    .unwrap();
    assert_eq!(e.cell, "region EU");
    assert!(e.to_string().contains("cdn-a p95 40 ms (from EU)"), "{e}");
}

// ---------------------------------------------------------------------------------------------
// 4. Cache-aware scoring
// ---------------------------------------------------------------------------------------------

fn cache(popularity: f64, ttl_factor: f64, purge_ratio: f64) -> CacheInputs {
    CacheInputs {
        popularity,
        ttl_factor,
        purge_ratio,
        popularity_from: "reported",
        purge_ratio_from: "report",
    }
}

/// The score the documentation gives, computed here from scratch.
fn expected_score(pw: f64, cw: f64, distance_km: Option<f64>, c: CacheInputs) -> f64 {
    let proximity = match distance_km {
        Some(d) => (1.0 - d / 20_015.0).clamp(0.0, 1.0),
        None => 0.5,
    };
    let cache_score = (c.popularity + c.ttl_factor + (1.0 - c.purge_ratio)) / 3.0;
    pw * proximity + cw * cache_score
}

#[test]
fn cache_score_and_proximity_score_formulas() {
    assert_eq!(cache(0.9, 0.6, 0.3).score(), (0.9 + 0.6 + 0.7) / 3.0);
    assert_eq!(CacheInputs::default().score(), (0.5 + 0.5 + 1.0) / 3.0);
    assert_eq!(cache(1.0, 1.0, 0.0).score(), 1.0);
    assert_eq!(cache(0.0, 0.0, 1.0).score(), 0.0);
    assert_eq!(proximity_score(Some(0.0)), 1.0);
    assert_eq!(proximity_score(Some(20_015.0)), 0.0);
    assert_eq!(proximity_score(Some(30_000.0)), 0.0);
    assert_eq!(proximity_score(None), 0.5);
    assert!((proximity_score(Some(5_003.75)) - 0.75).abs() < 1e-12);
}

#[test]
fn cache_aware_ranking_follows_the_weighted_score() {
    let n = names(&["cdn-a", "cdn-b", "cdn-c"]);
    // cdn-a is nearest but caches badly; cdn-b is farther with a warm cache; cdn-c is far away
    // and unmeasured (default cache inputs).
    let dist = [Some(300.0), Some(6_500.0), Some(10_200.0)];
    let caches = [
        cache(0.2, 0.3, 0.5),
        cache(0.9, 0.8, 0.1),
        CacheInputs::default(),
    ];
    let mut targets = vec![TargetInput::unknown(); 3];
    for (t, c) in targets.iter_mut().zip(caches) {
        t.cache = c;
    }
    let c = Cell {
        label: "clients located in DE".into(),
        distances: Some(dist.to_vec()),
        region: Some("EU".into()),
        ..cell(&[0, 1, 2])
    };
    for (pw, cw) in [(0.4, 0.6), (0.9, 0.1), (0.0, 1.0), (1.0, 0.0), (0.5, 0.5)] {
        let s = ChainSettings {
            select: 3,
            proximity_weight: pw,
            cache_weight: cw,
            ..settings()
        };
        let (o, _) = run(&c, Order::CacheAware, &s, &n, &targets, &Memory::default());
        let scores: Vec<f64> = (0..3)
            .map(|i| expected_score(pw, cw, dist[i], caches[i]))
            .collect();
        let mut want = vec![0, 1, 2];
        want.sort_by(|a, b| scores[*b].total_cmp(&scores[*a]));
        assert_eq!(fixed(&o), want, "weights {pw}/{cw}, scores {scores:?}");
        // Each target's note shows the formula with its terms.
        let order = notes(&o, "order: cache_aware");
        for (k, &t) in want.iter().enumerate() {
            let p = proximity_score(dist[t]);
            let ci = caches[t];
            assert_eq!(
                order[k],
                format!(
                    "{} {:.3} = {pw} × proximity {p:.3} + {cw} × cache {:.3} (popularity {:.2}, ttl {:.2}, purge {:.2})",
                    n[t],
                    scores[t],
                    ci.score(),
                    ci.popularity,
                    ci.ttl_factor,
                    ci.purge_ratio
                )
            );
        }
    }
    // The defaults (0.4 / 0.6): the warm cache beats the short distance.
    let (o, _) = run(
        &c,
        Order::CacheAware,
        &settings(),
        &n,
        &targets,
        &Memory::default(),
    );
    assert_eq!(fixed(&o), vec![1]);
    // Proximity-heavy weights flip it.
    let near = ChainSettings {
        proximity_weight: 0.9,
        cache_weight: 0.1,
        ..settings()
    };
    let (o, _) = run(
        &c,
        Order::CacheAware,
        &near,
        &n,
        &targets,
        &Memory::default(),
    );
    assert_eq!(fixed(&o), vec![0]);
    // Unknown distances count as proximity 0.5 for everyone: the cache decides.
    let unlocated = Cell {
        distances: None,
        ..c.clone()
    };
    let (o, _) = run(
        &unlocated,
        Order::CacheAware,
        &near,
        &n,
        &targets,
        &Memory::default(),
    );
    assert_eq!(fixed(&o), vec![1]);
}

#[test]
fn cache_aware_weights_flip_the_answer_via_compile() {
    let base = |extra: &str| {
        Conf::new()
            .net("198.51.100.0/24", "country = \"DE\"")
            .service(
                "near.example.com",
                "cache_aware",
                &["cdn-a", "cdn-b"],
                extra,
            )
            .build()
    };
    let default_weights = base("");
    let near_weights = base("proximity_weight = 0.9\ncache_weight = 0.1");
    let inputs = |cfg: &ValidConfig| {
        inputs_with(cfg, |n, t| match n {
            "cdn-a" => t.cache = cache(0.1, 0.2, 0.6),
            "cdn-b" => t.cache = cache(0.95, 0.9, 0.0),
            _ => {}
        })
    };
    // The expected winner from the formula, with DE's point from the country table.
    let de = default_weights
        .countries
        .get(*b"DE")
        .and_then(|c| c.coords)
        .unwrap();
    let d = |t: &str| {
        let i = target_index(&default_weights, t);
        steerd::geo::distance_km(de, default_weights.targets[i].coords.unwrap())
    };
    let (da, db) = (d("cdn-a"), d("cdn-b"));
    assert!(da < db, "cdn-a (Frankfurt) is nearer to DE");
    let winner = |pw: f64, cw: f64| {
        let a = expected_score(pw, cw, Some(da), cache(0.1, 0.2, 0.6));
        let b = expected_score(pw, cw, Some(db), cache(0.95, 0.9, 0.0));
        if a >= b { "cdn-a" } else { "cdn-b" }
    };
    assert_eq!(winner(0.4, 0.6), "cdn-b");
    assert_eq!(winner(0.9, 0.1), "cdn-a");

    for (cfg, want) in [
        (&default_weights, winner(0.4, 0.6)),
        (&near_weights, winner(0.9, 0.1)),
    ] {
        let geo = geo(cfg);
        let (table, _) = compile_with(cfg, &geo, &inputs(cfg), &Memory::default());
        let svc = service(&table, "near.example.com");
        assert_eq!(answer_for(svc, ip("198.51.100.20")).target, want);
        // A client without a location: proximity 0.5 for both, the warm cache wins.
        assert_eq!(answer_for(svc, ip("203.0.113.7")).target, "cdn-b");
        let e = explain(
            cfg,
            &geo,
            &inputs(cfg),
            &Memory::default(),
            &name("near.example.com"),
            ip("198.51.100.20"),
        )
        .unwrap();
        assert_eq!(e.cell, "clients located in DE");
        let text = e.to_string();
        assert!(text.contains("(policy cache_aware)"), "{text}");
        assert!(
            text.contains("candidates of clients located in DE"),
            "{text}"
        );
        assert!(text.contains("order: cache_aware"), "{text}");
        assert!(text.contains("× proximity"), "{text}");
        assert!(text.contains("× cache"), "{text}");
        assert!(
            text.contains("cdn-b ") && text.contains("(popularity 0.95, ttl 0.90, purge 0.00)"),
            "{text}"
        );
    }
}

// ---------------------------------------------------------------------------------------------
// 5. Cost caps
// ---------------------------------------------------------------------------------------------

const HOUR_MS: u64 = 3_600_000;
/// 2027-05-01T00:00:00Z; May has 31 days (744 h).
const MAY_2027: u64 = 1_809_129_600_000;

/// cdn-a costs $1 per answer (1 GB at $1/GB) with a $10,416 monthly cap. Its answers: 10 an hour
/// for the first 240 h of May, then 30 an hour. Its projection is answers × 744 h / elapsed:
/// exactly $10,416 at 300 h (4,200 answers: equal, not over) and first above the cap at the
/// 1,801st surge answer, at 300 h 2 min.
fn capped_model() -> CostModel {
    CostModel {
        price_per_gb: 1.0,
        region_prices: Default::default(),
        monthly_cap: Some(10_416.0),
        commit: None,
        bytes_per_answer: 1e9,
    }
}

fn answers_at(elapsed_ms: u64) -> u64 {
    if elapsed_ms <= 240 * HOUR_MS {
        elapsed_ms * 10 / HOUR_MS
    } else {
        2400 + (elapsed_ms - 240 * HOUR_MS) * 30 / HOUR_MS
    }
}

fn capped_status(elapsed_ms: u64) -> CostStatus {
    let inputs = CostInputs {
        reported: None,
        answers: vec![("default".into(), answers_at(elapsed_ms))],
    };
    cost::evaluate(&capped_model(), &inputs, MAY_2027 + elapsed_ms)
}

#[test]
fn cost_cap_demotes_the_best_target_once_its_projection_crosses_the_cap() {
    let month = Month::containing(MAY_2027 + 12 * HOUR_MS);
    assert_eq!((month.start_ms, month.days()), (MAY_2027, 31));
    let crossing = 300 * HOUR_MS + 2 * 60_000;
    let at_cap = capped_status(300 * HOUR_MS);
    assert_eq!(at_cap.projected, 10_416.0);
    assert!(!at_cap.over_cap, "equal to the cap is not over it");

    let n = names(&["cdn-a", "cdn-b"]);
    let c = cell(&[0, 1]);
    let demote2 = ChainSettings {
        select: 2,
        ..settings()
    };
    let mut first_over = None;
    let mut e = 250 * HOUR_MS;
    while e <= 350 * HOUR_MS {
        let status = capped_status(e);
        // The projection, from scratch: spend so far × month length / elapsed.
        let spend = answers_at(e) as f64;
        let projected = spend * month.len_ms() as f64 / e as f64;
        assert!(
            (status.projected - projected).abs() < 1e-6,
            "projection at {e} ms: {} vs {projected}",
            status.projected
        );
        assert_eq!(status.over_cap, projected > 10_416.0, "at {e} ms");

        let mut targets = vec![TargetInput::unknown(), TargetInput::unknown()];
        targets[0].cost = status;
        let (o1, _) = run(
            &c,
            Order::Failover,
            &settings(),
            &n,
            &targets,
            &Memory::default(),
        );
        let (o2, _) = run(
            &c,
            Order::Failover,
            &demote2,
            &n,
            &targets,
            &Memory::default(),
        );
        if e < crossing {
            assert_eq!(fixed(&o1), vec![0], "demoted too early at {e} ms");
            assert_eq!(fixed(&o2), vec![0, 1]);
            assert!(notes(&o1, "cost").is_empty());
        } else {
            first_over.get_or_insert(e);
            assert_eq!(fixed(&o1), vec![1], "not demoted at {e} ms");
            assert_eq!(fixed(&o2), vec![1, 0], "demoted, not dropped");
            let cost_notes = notes(&o1, "cost");
            assert_eq!(cost_notes.len(), 1, "{cost_notes:?}");
            assert!(
                cost_notes[0].starts_with("cdn-a demoted: projected $1")
                    && cost_notes[0].contains(" > cap $10,416 (spend so far $"),
                "{cost_notes:?}"
            );
        }
        e += 60_000;
    }
    assert_eq!(first_over, Some(crossing));
}

#[test]
fn cost_drop_removes_over_cap_targets_and_all_over_cap_keeps_the_order() {
    let over = capped_status(320 * HOUR_MS);
    let under = capped_status(260 * HOUR_MS);
    assert!(over.over_cap && !under.over_cap);
    let n = names(&["cdn-a", "cdn-b", "cdn-c"]);
    let c = cell(&[0, 1, 2]);
    let mut targets = vec![TargetInput::unknown(); 3];
    targets[0].cost = over.clone();
    targets[2].cost = under.clone();
    let with = |cost, select| ChainSettings {
        cost,
        select,
        ..settings()
    };
    let m = Memory::default();

    let (o, _) = run(
        &c,
        Order::Failover,
        &with(CostModeConfig::Demote, 3),
        &n,
        &targets,
        &m,
    );
    assert_eq!(fixed(&o), vec![1, 2, 0]);
    let (o, _) = run(
        &c,
        Order::Failover,
        &with(CostModeConfig::Drop, 3),
        &n,
        &targets,
        &m,
    );
    assert_eq!(fixed(&o), vec![1, 2], "drop removes the over-cap target");
    assert!(has_note(&o, "cost", "cdn-a dropped: projected $"));
    let (o, _) = run(
        &c,
        Order::Failover,
        &with(CostModeConfig::Off, 3),
        &n,
        &targets,
        &m,
    );
    assert_eq!(fixed(&o), vec![0, 1, 2], "cost = off ignores caps");
    assert!(!steps(&o).contains(&"cost"), "no cost step when off");

    // Weighted: an over-cap member leaves the split (a demoted share would still be served).
    let mut w = c.clone();
    w.weights = Some(vec![50, 30, 20]);
    let (o, _) = run(
        &w,
        Order::Weighted,
        &with(CostModeConfig::Demote, 1),
        &n,
        &targets,
        &m,
    );
    assert_eq!(o.pick, Pick::Weighted(vec![(1, 30), (2, 20)]));

    // Every candidate over its cap: nothing demoted or dropped, the order stays.
    let all_over = vec![
        {
            let mut t = TargetInput::unknown();
            t.cost = over.clone();
            t
        };
        3
    ];
    for mode in [CostModeConfig::Demote, CostModeConfig::Drop] {
        let (o, _) = run(
            &cell(&[2, 0, 1]),
            Order::Failover,
            &with(mode, 3),
            &n,
            &all_over,
            &m,
        );
        assert_eq!(fixed(&o), vec![2, 0, 1], "{mode:?}");
        let cost_notes = notes(&o, "cost");
        assert_eq!(cost_notes.len(), 3);
        assert!(
            cost_notes[0].starts_with("cdn-c kept: every candidate is over its cap"),
            "{cost_notes:?}"
        );
    }

    // The same cap through compile_with and the service's `cost` key.
    for (mode, want) in [("demote", "cdn-b"), ("drop", "cdn-b"), ("off", "cdn-a")] {
        let cfg = Conf::new()
            .service(
                "capped.example.com",
                "failover",
                &["cdn-a", "cdn-b"],
                &format!("cost = \"{mode}\""),
            )
            .build();
        let geo = geo(&cfg);
        let inputs = inputs_with(&cfg, |n, t| {
            if n == "cdn-a" {
                t.cost = over.clone();
            }
        });
        let (table, _) = compile_with(&cfg, &geo, &inputs, &Memory::default());
        let svc = service(&table, "capped.example.com");
        assert_eq!(answer_for(svc, ip("203.0.113.7")).target, want, "{mode}");
        let (table, _) = compile_with(
            &cfg,
            &geo,
            &inputs_with(&cfg, |n, t| {
                if n == "cdn-a" {
                    t.cost = under.clone();
                }
            }),
            &Memory::default(),
        );
        let svc = service(&table, "capped.example.com");
        assert_eq!(
            answer_for(svc, ip("203.0.113.7")).target,
            "cdn-a",
            "{mode}: under its cap"
        );
    }
}

// ---------------------------------------------------------------------------------------------
// 6. TTL shaping
// ---------------------------------------------------------------------------------------------

fn ttls(records: &[Record]) -> Vec<u32> {
    records.iter().map(|r| r.ttl).collect()
}

#[test]
fn unstable_candidates_shorten_the_ttl() {
    let cfg = Conf::new()
        .service(
            "ttl.example.com",
            "failover",
            &["cdn-a", "cdn-b"],
            "ttl = 60\nunstable_ttl = 7",
        )
        .service(
            "alias.example.com",
            "failover",
            &["cdn-x"],
            "ttl = 120\nunstable_ttl = 9",
        )
        .service("short.example.com", "failover", &["cdn-c"], "ttl = 3")
        .weighted(
            "split.example.com",
            &[("cdn-a", 1), ("cdn-b", 1)],
            "ttl = 40\nunstable_ttl = 4",
        )
        .build();
    let geo = geo(&cfg);
    let c = ip("203.0.113.7");

    let (stable, _) = compile_with(&cfg, &geo, &PolicyInputs::unknown(&cfg), &Memory::default());
    let a = answer_for(service(&stable, "ttl.example.com"), c);
    assert_eq!((a.target.as_str(), ttls(&a.a)), ("cdn-a", vec![60]));
    let x = answer_for(service(&stable, "alias.example.com"), c);
    assert_eq!(x.cname.as_ref().map(|r| r.ttl), Some(120));
    assert_eq!(
        ttls(&answer_for(service(&stable, "short.example.com"), c).a),
        [3]
    );

    // The answered target is recovering: short TTL.
    let recovering = inputs_with(&cfg, |n, t| {
        t.unstable = matches!(n, "cdn-a" | "cdn-x" | "cdn-c");
    });
    let (t, _) = compile_with(&cfg, &geo, &recovering, &Memory::default());
    let a = answer_for(service(&t, "ttl.example.com"), c);
    assert_eq!((a.target.as_str(), ttls(&a.a)), ("cdn-a", vec![7]));
    let x = answer_for(service(&t, "alias.example.com"), c);
    assert_eq!(x.cname.as_ref().map(|r| r.ttl), Some(9));
    // unstable_ttl defaults to 5 but never exceeds the service TTL.
    assert_eq!(
        ttls(&answer_for(service(&t, "short.example.com"), c).a),
        [3]
    );
    // Every member of a weighted split that contains an unstable target.
    let split = service(&t, "split.example.com");
    for i in 0..200 {
        assert_eq!(ttls(&answer_for(split, client(i)).a), [4], "client {i}");
    }

    // The first choice just went down (unstable): the backup answers with the short TTL, so
    // clients come back quickly when the first choice recovers.
    let just_down = inputs_with(&cfg, |n, t| {
        if n == "cdn-a" {
            t.state = EffectiveStatus::Down;
            t.unstable = true;
        }
    });
    let (t, _) = compile_with(&cfg, &geo, &just_down, &Memory::default());
    let a = answer_for(service(&t, "ttl.example.com"), c);
    assert_eq!((a.target.as_str(), ttls(&a.a)), ("cdn-b", vec![7]));
    // Down but settled: the backup with the normal TTL.
    let settled = inputs_with(&cfg, |n, t| {
        if n == "cdn-a" {
            t.state = EffectiveStatus::Down;
        }
    });
    let (t, _) = compile_with(&cfg, &geo, &settled, &Memory::default());
    let a = answer_for(service(&t, "ttl.example.com"), c);
    assert_eq!((a.target.as_str(), ttls(&a.a)), ("cdn-b", vec![60]));
    // Explain reports the TTL.
    let e = explain(
        &cfg,
        &geo,
        &just_down,
        &Memory::default(),
        &name("ttl.example.com"),
        c,
    )
    .unwrap();
    assert_eq!(e.ttl, 7);
    assert!(e.to_string().contains("TTL 7"), "{e}");
}

// ---------------------------------------------------------------------------------------------
// 7. Explain
// ---------------------------------------------------------------------------------------------

#[test]
fn explain_names_every_step_and_its_reasons() {
    let cfg = Conf::new()
        .service("fo.example.com", "failover", &["cdn-a", "cdn-b"], "")
        .service(
            "closed.example.com",
            "failover",
            &["cdn-a", "cdn-c"],
            "all_down = \"closed\"",
        )
        .service(
            "fb.example.com",
            "failover",
            &["cdn-a", "cdn-c"],
            "all_down = \"closed\"\nfallback = \"origin.example.net\"",
        )
        .service(
            "free.example.com",
            "failover",
            &["cdn-a", "cdn-b"],
            "cost = \"off\"",
        )
        .weighted("split.example.com", &[("cdn-b", 60), ("cdn-c", 40)], "")
        .build();
    let geo = geo(&cfg);
    let c = ip("203.0.113.7");
    let inputs = inputs_with(&cfg, |n, t| match n {
        "cdn-a" => {
            t.state = EffectiveStatus::Down;
            t.reason = "error rate 7.2 % > 5 % over 1m".into();
        }
        "cdn-c" => {
            t.state = EffectiveStatus::Drained;
            t.reason = "drained by alice".into();
        }
        _ => {}
    });
    let text = |svc: &str, inputs: &PolicyInputs| {
        explain(&cfg, &geo, inputs, &Memory::default(), &name(svc), c)
            .unwrap_or_else(|| panic!("no explanation for {svc}"))
            .to_string()
    };
    let has = |t: &str, needles: &[&str]| {
        for n in needles {
            assert!(t.contains(n), "missing {n:?} in:\n{t}");
        }
    };

    let t = text("fo.example.com", &inputs);
    has(
        &t,
        &[
            "policy chain of fo.example.com. (policy failover), all clients:",
            "health",
            "geo",
            "cost",
            "order: failover",
            "select",
            "cdn-a dropped: down (error rate 7.2 % > 5 % over 1m)",
            "no region restriction: every client has these candidates",
            "configured order",
            "first 1",
            "[cdn-a, cdn-b] → [cdn-b]",
            "result: cdn-b, TTL 30",
        ],
    );
    assert!(!t.contains("every candidate down"), "{t}");
    // Steps in chain order.
    let pos = |s: &str| t.find(s).unwrap();
    assert!(pos("health") < pos("  geo") && pos("  geo") < pos("  cost"));
    assert!(pos("  cost") < pos("order: failover") && pos("order: failover") < pos("  select"));

    let t = text("closed.example.com", &inputs);
    has(
        &t,
        &[
            "health",
            "cdn-a dropped: down (error rate 7.2 % > 5 % over 1m)",
            "cdn-c dropped: drained (drained by alice)",
            "every candidate is down: fail-closed, SERVFAIL",
            "result: SERVFAIL",
            "(every candidate down)",
        ],
    );
    assert!(!t.contains("order:"), "fail-closed stops at health:\n{t}");

    let t = text("fb.example.com", &inputs);
    has(
        &t,
        &[
            "every candidate is down: fail-closed, the fallback answer",
            "result: the fallback CNAME",
        ],
    );

    let t = text("free.example.com", &inputs);
    has(&t, &["health", "geo", "order: failover", "select"]);
    assert!(!t.contains("  cost"), "cost = off has no cost step:\n{t}");

    let t = text("split.example.com", &inputs);
    has(
        &t,
        &[
            "order: weighted",
            "cdn-c dropped: drained (drained by alice)",
            "cdn-b 100.0 % (weight 60)",
            "one per client subnet (rendezvous hashing)",
            "result: a weighted pick per client subnet",
        ],
    );

    // Degraded, cost and instability reasons.
    let over = capped_status(320 * HOUR_MS);
    let mixed = inputs_with(&cfg, |n, t| match n {
        "cdn-a" => {
            t.cost = over.clone();
            t.unstable = true;
        }
        "cdn-b" => {
            t.state = EffectiveStatus::Degraded;
            t.reason = "p95 812 ms > 500 ms".into();
        }
        _ => {}
    });
    let t = text("fo.example.com", &mixed);
    has(
        &t,
        &[
            "cdn-b demoted: degraded (p95 812 ms > 500 ms)",
            "cdn-a demoted: projected $",
            "> cap $10,416",
            "estimated from",
            "a candidate is recovering or changed state recently: short TTL",
            "TTL 5",
        ],
    );

    // An unknown service has no explanation.
    assert!(
        explain(
            &cfg,
            &geo,
            &inputs,
            &Memory::default(),
            &name("nope.example.com"),
            c
        )
        .is_none()
    );
}

// ---------------------------------------------------------------------------------------------
// 8. Fail-closed SERVFAIL: in the answer logic and over real UDP
// ---------------------------------------------------------------------------------------------

fn all_down_conf() -> Conf {
    Conf::new()
        .service(
            "closed.example.com",
            "failover",
            &["cdn-a", "cdn-b"],
            "all_down = \"closed\"",
        )
        .service(
            "fb.example.com",
            "failover",
            &["cdn-a", "cdn-b"],
            "all_down = \"closed\"\nfallback = \"origin.example.net\"",
        )
        .service("open.example.com", "failover", &["cdn-a", "cdn-b"], "")
}

fn everything_down(cfg: &ValidConfig) -> PolicyInputs {
    inputs_with(cfg, |_, t| {
        t.state = EffectiveStatus::Down;
        t.reason = "connect refused".into();
    })
}

#[test]
fn fail_closed_service_with_every_target_down_answers_servfail() {
    use steerd::dns::answer::{AnswerFor, answer};
    let cfg = all_down_conf().build();
    let geo = geo(&cfg);
    let (table, _) = compile_with(&cfg, &geo, &everything_down(&cfg), &Memory::default());
    let client = AnswerFor::Client(ClientAddr::resolver(ip("203.0.113.7")));

    for qtype in [RecordType::A, RecordType::AAAA] {
        let reply = answer(
            &table,
            &name("closed.example.com"),
            qtype,
            DNSClass::IN,
            client,
        );
        assert_eq!(reply.rcode, ResponseCode::ServFail, "{qtype}");
        assert!(reply.answers.is_empty());
    }
    let reply = answer(
        &table,
        &name("fb.example.com"),
        RecordType::A,
        DNSClass::IN,
        client,
    );
    assert_eq!(reply.rcode, ResponseCode::NoError);
    assert_eq!(reply.answers.len(), 1);
    assert_eq!(
        reply.answers[0].data,
        RData::CNAME(hickory_proto::rr::rdata::CNAME(name("origin.example.net.")))
    );
    let reply = answer(
        &table,
        &name("open.example.com"),
        RecordType::A,
        DNSClass::IN,
        client,
    );
    assert_eq!(reply.rcode, ResponseCode::NoError);
    assert_eq!(
        reply.answers[0].data,
        RData::A(Ipv4Addr::new(192, 0, 2, 1).into()),
        "fail-open: the first measured-down target"
    );
}

/// Over real sockets: the compiled table served by steerd's own DNS listeners (both UDP
/// engines, and TCP). The listeners get a table handle of their own: a running `Server`
/// recompiles from its live health data every second, which would swap a hand-made table out.
#[test]
fn fail_closed_servfail_over_udp_and_tcp() {
    use steerd::config::UdpEngine;
    use steerd::dns::listener::DnsListeners;

    let mut cfg = all_down_conf().build();
    cfg.server.dns_listen = vec!["127.0.0.1:0".parse().unwrap()];
    cfg.server.udp_sockets = 1;
    let geo = geo(&cfg);
    let (table, _) = compile_with(&cfg, &geo, &everything_down(&cfg), &Memory::default());
    let handle = steerd::table::handle(table);
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .unwrap();

    for engine in [UdpEngine::Fast, UdpEngine::Hickory] {
        cfg.server.udp_engine = engine;
        let listeners = runtime
            .block_on(async { DnsListeners::start(&cfg.server, handle.clone()) })
            .expect("listeners start");
        let (udp, tcp) = (listeners.udp_addrs[0], listeners.tcp_addrs[0]);
        for edns in [None, Some(1232)] {
            let q = common::query("closed.example.com.", RecordType::A, edns);
            for (how, m) in [("udp", common::udp(udp, &q)), ("tcp", common::tcp(tcp, &q))] {
                assert_eq!(
                    m.metadata.response_code,
                    ResponseCode::ServFail,
                    "{engine:?} {how} edns {edns:?}"
                );
                assert!(m.answers.is_empty(), "{engine:?} {how}: {m:?}");
            }
        }
        let m = common::udp(
            udp,
            &common::query("fb.example.com.", RecordType::A, Some(1232)),
        );
        assert_eq!(
            m.metadata.response_code,
            ResponseCode::NoError,
            "{engine:?}"
        );
        match m.answers.first().map(|r| &r.data) {
            Some(RData::CNAME(c)) => assert_eq!(c.0, name("origin.example.net.")),
            other => panic!("{engine:?}: expected the fallback CNAME, got {other:?}"),
        }
        let m = common::udp(
            udp,
            &common::query("open.example.com.", RecordType::A, Some(1232)),
        );
        assert_eq!(
            m.metadata.response_code,
            ResponseCode::NoError,
            "{engine:?}"
        );
        assert_eq!(m.answers.len(), 1, "{engine:?}: fail-open answers");
        runtime.block_on(listeners.shutdown());
    }
}

// ---------------------------------------------------------------------------------------------
// Ordering steps keep the demotions of the steps before them
// ---------------------------------------------------------------------------------------------

/// What an earlier step does to one target.
#[derive(Debug, Clone, Copy)]
enum Demotion {
    /// The cost step demotes it: projected over its cap.
    OverCap,
    /// The health step demotes it: degraded (RUM complaints).
    Degraded,
    /// The cost step prefers another target, under its commit (`prefer_commit`).
    OtherUnderCommit,
}

/// For every ordering step × every demotion: cdn-a is the best by the ordering's own measure
/// (first in the configured order, lowest latency, highest cache-aware score) and an earlier
/// step demotes it (or prefers cdn-c); the ordering must keep that, and say why in the trace.
#[test]
fn every_ordering_keeps_every_earlier_demotion() {
    let names = names(&["cdn-a", "cdn-b", "cdn-c"]);
    for order in [Order::Failover, Order::Latency, Order::CacheAware] {
        for demotion in [
            Demotion::OverCap,
            Demotion::Degraded,
            Demotion::OtherUnderCommit,
        ] {
            let mut targets: Vec<TargetInput> = (0..3).map(|_| TargetInput::unknown()).collect();
            // The ordering's own measure: a best, b second, c last.
            for (i, t) in targets.iter_mut().enumerate() {
                t.latency = Some(ms(20 + 40 * i as u64));
                t.cache = cache(0.9 - 0.3 * i as f64, 0.9 - 0.3 * i as f64, 0.0);
            }
            let mut s = settings();
            let want_first = match demotion {
                Demotion::OverCap => {
                    targets[0].cost = capped_status(300 * HOUR_MS + 3 * 60_000);
                    assert!(targets[0].cost.over_cap);
                    1
                }
                Demotion::Degraded => {
                    targets[0].state = EffectiveStatus::Degraded;
                    targets[0].reason = "RUM complaints".into();
                    1
                }
                Demotion::OtherUnderCommit => {
                    s.prefer_commit = true;
                    let mut c = CostStatus::unmetered();
                    c.commit = Some(1000.0);
                    c.under_commit = true;
                    targets[2].cost = c;
                    2
                }
            };
            let (o, _) = run(
                &cell(&[0, 1, 2]),
                order,
                &s,
                &names,
                &targets,
                &Memory::default(),
            );
            assert_eq!(
                fixed(&o),
                vec![want_first],
                "{order:?} × {demotion:?}: {:#?}",
                o.trace
            );
            if let (Order::Latency | Order::CacheAware, Demotion::OverCap | Demotion::Degraded) =
                (order, demotion)
            {
                let step = if order == Order::Latency {
                    "order: latency"
                } else {
                    "order: cache_aware"
                };
                assert!(
                    has_note(&o, step, "cdn-a stays behind"),
                    "{order:?} × {demotion:?}: {:#?}",
                    o.trace
                );
            }
            // Without the demotion, cdn-a (the best) answers.
            let plain: Vec<TargetInput> = targets
                .iter()
                .map(|t| {
                    let mut t = t.clone();
                    t.state = EffectiveStatus::Healthy;
                    t.cost = CostStatus::unmetered();
                    t
                })
                .collect();
            let (o, _) = run(
                &cell(&[0, 1, 2]),
                order,
                &s,
                &names,
                &plain,
                &Memory::default(),
            );
            assert_eq!(fixed(&o), vec![0], "{order:?} without {demotion:?}");
        }
    }
}

/// The latency incumbent keeps the lead inside the stabilize band only among equals: an
/// incumbent demoted since (over its cap) gives way even to a slower target.
#[test]
fn a_demoted_latency_incumbent_does_not_keep_the_lead() {
    let names = names(&["cdn-a", "cdn-b"]);
    let mut targets: Vec<TargetInput> = (0..2).map(|_| TargetInput::unknown()).collect();
    targets[0].latency = Some(ms(20));
    targets[1].latency = Some(ms(25));
    targets[0].cost = capped_status(300 * HOUR_MS + 3 * 60_000);
    let mut prev = Memory::default();
    prev.insert(
        CellId::new("svc.example.com.", "all clients"),
        "cdn-a".to_string(),
    );
    let (o, next) = run(
        &cell(&[0, 1]),
        Order::Latency,
        &settings(),
        &names,
        &targets,
        &prev,
    );
    assert_eq!(fixed(&o), vec![1], "{:#?}", o.trace);
    assert_eq!(next.values().next().map(String::as_str), Some("cdn-b"));
}

#[test]
fn a_target_serving_stale_content_ranks_behind_fresh_ones_and_the_trace_says_why() {
    let n = names(&["cdn-a", "cdn-b", "cdn-c"]);
    let mut targets = vec![
        TargetInput::unknown(),
        TargetInput::unknown(),
        state(EffectiveStatus::Degraded, "slow"),
    ];
    let why = "stale content: /app.css etag \"v1\" vs origin \"v2\" for 95s";
    targets[0].stale = Some(why.into());
    let s = ChainSettings {
        select: 3,
        ..settings()
    };
    let (o, _) = run(
        &cell(&[0, 1, 2]),
        Order::Failover,
        &s,
        &n,
        &targets,
        &Memory::default(),
    );
    // Behind the fresh one, in configured order among the demoted (stale, then degraded).
    assert_eq!(fixed(&o), vec![1, 0, 2]);
    assert!(
        notes(&o, "health").contains(&format!("cdn-a behind: {why}")),
        "{:#?}",
        o.trace
    );
    // A latency order never undoes it, and says so.
    targets[0].latency = Some(Duration::from_millis(5));
    targets[1].latency = Some(Duration::from_millis(50));
    let (o, _) = run(
        &cell(&[0, 1]),
        Order::Latency,
        &s,
        &n,
        &targets[..2],
        &Memory::default(),
    );
    assert_eq!(fixed(&o), vec![1, 0]);
    assert!(
        notes(&o, "order: latency")
            .iter()
            .any(|l| l.contains("cdn-a stays behind: stale content")),
        "{:#?}",
        o.trace
    );
    // Every candidate stale: they still answer.
    let mut all = vec![TargetInput::unknown(), TargetInput::unknown()];
    all[0].stale = Some(why.into());
    all[1].stale = Some(why.into());
    let (o, _) = run(
        &cell(&[0, 1]),
        Order::Failover,
        &s,
        &n,
        &all,
        &Memory::default(),
    );
    assert_eq!(fixed(&o), vec![0, 1]);
    assert!(!o.all_down);
}
