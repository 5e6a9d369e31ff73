use super::*;
use crate::table::labels::{MAX_IDLE_LABELS, TableLabels, intern, label};

#[test]
fn counts_of_reclaimed_names_are_dropped_not_relabelled() {
    let stats = QueryStats::new();
    let held = TableLabels::from_names(["kept.example."], ["kept-svc.example."], [["kept"]]);
    let gone = TableLabels::from_names(["gone.example."], ["gone-svc.example."], [["gone"]]);
    for l in [&held, &gone] {
        let key = QueryKey::new(l.service(0), l.target(0, 0), 0, Proto::Udp, false);
        stats.record(key, Duration::from_micros(20));
    }
    let gone_ids = [gone.service(0), gone.target(0, 0)];
    assert_eq!(
        stats
            .snapshot()
            .count("gone-svc.example.", "gone", "noerror", Proto::Udp, false),
        1
    );
    drop(gone);
    // Still counted under its name while fewer names than the bound are idle…
    assert_eq!(
        stats
            .snapshot()
            .count("gone-svc.example.", "gone", "noerror", Proto::Udp, false),
        1
    );
    // … and dropped, not given to another name, once they are reclaimed.
    for i in 0..MAX_IDLE_LABELS + 300 {
        let svc = format!("new-{i}.example.");
        drop(TableLabels::from_names(
            ["new.example."],
            [svc],
            [["new-cdn"]],
        ));
    }
    let snap = stats.snapshot();
    assert_eq!(
        snap.count("gone-svc.example.", "gone", "noerror", Proto::Udp, false),
        0
    );
    assert_eq!(
        snap.count("kept-svc.example.", "kept", "noerror", Proto::Udp, false),
        1
    );
    assert_eq!(
        snap.total(),
        1,
        "no other name took the reclaimed counts: {snap:?}"
    );
    assert!(
        gone_ids
            .iter()
            .all(|&id| &*label(id) != "gone-svc.example.")
    );
}

#[test]
fn shards_of_many_threads_sum_up() {
    let stats = Arc::new(QueryStats::new());
    let svc = intern("stats-test-svc.example.");
    let tgt = intern("stats-test-cdn");
    let threads: Vec<_> = (0..6)
        .map(|t| {
            let stats = stats.clone();
            std::thread::spawn(move || {
                if t % 2 == 0 {
                    crate::table::set_counter_shard(t + 1);
                }
                let key = QueryKey::new(svc, tgt, 0, Proto::Udp, t % 3 == 0);
                for _ in 0..1000 {
                    stats.record(key, Duration::from_micros(20));
                }
                let batch = [key, key, QueryKey::formerr(Proto::Udp), key];
                stats.record_batch(&batch, Proto::Udp, 200_000_000);
            })
        })
        .collect();
    for t in threads {
        t.join().unwrap();
    }
    let s = stats.snapshot();
    let with_ecs = s.count(
        "stats-test-svc.example.",
        "stats-test-cdn",
        "noerror",
        Proto::Udp,
        true,
    );
    let without = s.count(
        "stats-test-svc.example.",
        "stats-test-cdn",
        "noerror",
        Proto::Udp,
        false,
    );
    // Threads 0 and 3 sent ECS.
    assert_eq!(with_ecs, 2 * 1003);
    assert_eq!(without, 4 * 1003);
    assert_eq!(s.count("", "", "formerr", Proto::Udp, false), 6);
    assert_eq!(s.total(), 6 * 1004);
    let udp = s.latency(Proto::Udp);
    assert_eq!(udp.count, 6 * 1004);
    // 20 µs lands in the 25 µs bucket; the 200 ms batch in no bucket but +Inf.
    assert_eq!(udp.buckets[0], (0.000_01, 0));
    assert_eq!(udp.buckets[1], (0.000_025, 6000));
    assert_eq!(udp.buckets.last().unwrap().1, 6000);
    assert!((udp.sum_seconds - (6000.0 * 20e-6 + 24.0 * 0.2)).abs() < 1e-6);
    assert_eq!(s.latency(Proto::Tcp).count, 0);
}

#[test]
fn bucket_bounds_are_inclusive() {
    let mut h = Latency::default();
    h.observe_n(10_000, 1);
    h.observe_n(10_001, 2);
    h.observe_n(0, 1);
    let counts = |h: &Latency| h.hist.bucket_counts().collect::<Vec<_>>();
    assert_eq!(counts(&h)[0], 2);
    assert_eq!(counts(&h)[1], 2);
    h.observe_n(u64::MAX, 1);
    assert_eq!(counts(&h)[LATENCY_BUCKETS.len()], 1);
    assert_eq!(h.sum_ns, u64::MAX);
}
