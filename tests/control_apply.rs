//! Configuration changes that add, remove or reorder targets keep the per-target answer counts
//! (the cost estimate's input) with the right target, and never break the control loop.

mod common;

use common::{DEMO, TestServer, query, udp};
use hickory_proto::rr::RecordType;

const EXTRA: &str = r#"
[[targets]]
name = "cdn-c"
cname = "edge.cdn-c.example.net"
[targets.cost]
price_per_gb = 0.05
monthly_cap = 1000

[[services]]
name = "c.example.com"
policy = "failover"
targets = [{ target = "cdn-c" }]
"#;

#[test]
fn adding_a_metered_target_keeps_counting_by_name() {
    let mut server = TestServer::start(DEMO);
    for _ in 0..5 {
        udp(
            server.udp,
            &query("assets.example.com.", RecordType::A, None),
        );
    }
    let control = server.server().control().clone();
    let before = control.table().load().counters.totals();
    assert_eq!(before[0], 5, "cdn-a answered assets 5 times: {before:?}");

    // A new metered target goes FIRST (every index shifts) and gets a service.
    let text = DEMO.replacen("[[targets]]", &format!("{EXTRA}\n[[targets]]"), 1);
    let mut cfg = steerd::config::parse(&text, "test").unwrap();
    for t in &mut cfg.targets {
        t.check = None;
    }
    cfg.server.dns_listen = vec![server.udp];
    cfg.server.admin_listen = None;
    cfg.server.udp_sockets = 2;
    cfg.server.udp_engine = steerd::config::UdpEngine::Fast;
    cfg.geo.database = None;
    server.server().apply(cfg).unwrap();
    // The control loop steps and compiles with the new list (this panicked before).
    control.tick();
    for _ in 0..3 {
        udp(server.udp, &query("c.example.com.", RecordType::A, None));
    }
    let names: Vec<String> = control
        .config()
        .targets
        .iter()
        .map(|t| t.name.clone())
        .collect();
    let totals = control.table().load().counters.totals();
    let of = |n: &str| totals[names.iter().position(|x| x == n).unwrap()];
    assert_eq!(of("cdn-a"), 5, "{names:?} {totals:?}");
    assert_eq!(of("cdn-c"), 3, "{names:?} {totals:?}");
    control.tick();
}
