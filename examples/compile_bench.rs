//! Compile-time benchmark: N services × M targets (default 10,000 × 20), each service a
//! failover over its M targets. Prints the time of `policy::compile` (the config is parsed
//! and validated first, outside the measurement).
//!
//!     cargo run --release --example compile_bench -- [SERVICES] [TARGETS] [ROUNDS]
use std::fmt::Write;
use std::time::Instant;

fn main() {
    let args: Vec<usize> = std::env::args()
        .skip(1)
        .map(|a| a.parse().expect("numbers"))
        .collect();
    let services = args.first().copied().unwrap_or(10_000);
    let targets = args.get(1).copied().unwrap_or(20);
    let rounds = args.get(2).copied().unwrap_or(10);
    let mut cfg = String::from(
        "[server]\ndns_listen = [\"127.0.0.1:0\"]\n[geo]\ndatabase = \"\"\n[[zones]]\nname = \"example.com\"\nns = [\"ns1.example.com\"]\n[zones.soa]\nmname = \"ns1.example.com\"\nrname = \"h.example.com\"\n",
    );
    for t in 0..targets {
        writeln!(
            cfg,
            "[[targets]]\nname = \"cdn{t}\"\ncname = \"edge{t}.cdn{t}.example.net\""
        )
        .unwrap();
    }
    let members: Vec<String> = (0..targets)
        .map(|t| format!("{{ target = \"cdn{t}\" }}"))
        .collect();
    let members = members.join(", ");
    for s in 0..services {
        writeln!(
            cfg,
            "[[services]]\nname = \"s{s}.example.com\"\npolicy = \"failover\"\ntargets = [{members}]"
        )
        .unwrap();
    }
    let t = Instant::now();
    let valid = steerd::config::parse(&cfg, "bench").expect("valid config");
    eprintln!("parse+validate: {:?}", t.elapsed());
    let geo = steerd::control::load_geo(&valid).expect("geo");
    let mut times = Vec::new();
    for _ in 0..rounds {
        let t = Instant::now();
        let table = steerd::policy::compile(&valid, &geo);
        times.push(t.elapsed());
        std::hint::black_box(table);
    }
    times.sort();
    println!(
        "compile {services} services x {targets} targets: median {:?}, min {:?}, max {:?} ({rounds} rounds)",
        times[times.len() / 2],
        times[0],
        times[times.len() - 1]
    );
}
