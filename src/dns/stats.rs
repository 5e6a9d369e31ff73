//! DNS query metrics: queries by service, answer target, rcode, protocol and ECS presence, and
//! the response latency per protocol, counted on the DNS path at a cost of a few nanoseconds.
//!
//! # How queries are counted
//!
//! Every label value is a small integer on the query path:
//!
//! - service and target names are *interned* process-wide into ids: while a routing table
//!   holds a name (its [`TableLabels`](crate::table::TableLabels), computed once when it is compiled by
//!   `dns::precompute`; the fast path's precomputed answers carry the ids) its id does not
//!   change, so a count is never relabelled by a configuration change (targets renamed,
//!   reordered, services added or removed). A name no table holds any more keeps its id and
//!   series until more than [`MAX_IDLE_LABELS`](crate::table::labels::MAX_IDLE_LABELS) such names pile up (configurations with
//!   ever-new names); then the oldest are reclaimed with their series, so the names and
//!   series kept are bounded by the configuration plus that many;
//! - rcode, protocol and ECS presence are a few bits.
//!
//! They are packed into one `u64` ([`QueryKey`]). The counts live in [`QueryStats`], which the
//! routing table carries inside its `Arc<AnswerCounters>` (shared by every table of a
//! configuration, as the answer counters are). It is split into per-thread shards (the
//! thread's counter shard, see `table::counter_shard`), each an uncontended mutex over a hash
//! map from key to count plus the latency histograms, padded to its own cache lines. The UDP
//! workers take their shard's lock once per `recvmmsg` batch; TCP and the hickory engine once per
//! query.
//! Names are looked up only when the metrics are read ([`QueryStats::snapshot`], the
//! [`collector`]). The ids and keys are `table::labels`, the counts `table::queries`; this
//! module exposes them to Prometheus.
//!
//! # Label values
//!
//! - `service`: the steered service the answer came from (`www.example.com.`, lower case,
//!   with the final dot), also when a static CNAME led to it; for every other answer from a
//!   zone we serve (static records, NODATA, NXDOMAIN, referrals) the zone's apex
//!   (`example.com.`); `""` when no zone was consulted: REFUSED (a name outside our zones, a
//!   zone transfer, a class other than IN), FORMERR, NOTIMP and BADVERS.
//! - `target`: the target(s) of a steered answer, by configuration name, joined with `+` in
//!   the answer's order when it names several (so every query counts once); `(fallback)` for
//!   the fallback CNAME of a fail-closed service whose targets are all down; `""` for
//!   everything else (static data, errors, SERVFAIL of an all-down service).
//! - `rcode`: `noerror`, `nxdomain`, `servfail`, `refused`, `formerr`, `notimp`, or `other`
//!   (BADVERS and anything else).
//! - `proto`: `udp` or `tcp`.
//! - `ecs`: `true` when the query carried a well-formed EDNS Client Subnet option (the one the
//!   response echoes), else `false` (a malformed one is answered FORMERR with `false`).
//!
//! The latency is measured from the moment the query was taken from the socket to the moment
//! the response was handed back to the kernel. The UDP fast engine measures it per
//! `recvmmsg`/`sendmmsg` batch (every query of a batch gets the batch's time: from the end of
//! `recvmmsg` to the end of `sendmmsg`); TCP from a message read to its answer being ready; the
//! hickory UDP engine (`ServerSettings::udp_engine`, for tests and benchmarks) from our handler
//! being called, after hickory-server parsed the query, to the response being queued.
//!
//! Packets hickory-server cannot parse at all are answered FORMERR by the hickory UDP engine
//! itself without reaching our handler, so they are not counted there; the fast UDP engine and
//! TCP count them (`formerr`, service `""`).

use prometheus::core::{Collector, Desc};
use prometheus::proto;

use crate::table::TableHandle;
pub use crate::table::labels::{Proto, QueryKey};
pub use crate::table::queries::{LATENCY_BUCKETS, QueryStats, Snapshot};

/// `CLOCK_MONOTONIC` in nanoseconds: what `Instant::now` reads, without its checks (the UDP
/// workers read it twice per batch).
#[inline]
pub fn monotonic_ns() -> u64 {
    let mut ts = libc::timespec {
        tv_sec: 0,
        tv_nsec: 0,
    };
    // SAFETY: `ts` is a valid timespec for the call to fill; CLOCK_MONOTONIC always exists.
    unsafe { libc::clock_gettime(libc::CLOCK_MONOTONIC, &mut ts) };
    (ts.tv_sec as u64)
        .wrapping_mul(1_000_000_000)
        .wrapping_add(ts.tv_nsec as u64)
}

/// The query statistics of the table in force.
pub fn snapshot(table: &TableHandle) -> Snapshot {
    table.load().counters.queries.snapshot()
}

// ---------------------------------------------------------------------------------------------
// Prometheus
// ---------------------------------------------------------------------------------------------

pub const QUERIES_METRIC: &str = "steerd_dns_queries_total";
pub const LATENCY_METRIC: &str = "steerd_dns_response_duration_seconds";
const QUERIES_HELP: &str =
    "DNS queries answered, by service, answer target, response code, protocol and ECS presence.";
const LATENCY_HELP: &str =
    "Time from taking a DNS query off the socket to handing its response to the kernel.";

/// A Prometheus collector of the query statistics carried by the table in force, read at
/// collect time: `steerd_dns_queries_total{ecs,proto,rcode,service,target}` and
/// `steerd_dns_response_duration_seconds{proto}`.
pub struct DnsCollector {
    table: TableHandle,
    descs: [Desc; 2],
}

impl std::fmt::Debug for DnsCollector {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("DnsCollector").finish_non_exhaustive()
    }
}

const QUERY_LABELS: [&str; 5] = ["ecs", "proto", "rcode", "service", "target"];

/// The collector to register (e.g. `registry.register(Box::new(collector(table)))`).
pub fn collector(table: TableHandle) -> DnsCollector {
    let desc = |name: &str, help: &str, labels: &[&str]| {
        Desc::new(
            name.into(),
            help.into(),
            labels.iter().map(|l| l.to_string()).collect(),
            Default::default(),
        )
        .expect("valid metric description")
    };
    DnsCollector {
        table,
        descs: [
            desc(QUERIES_METRIC, QUERIES_HELP, &QUERY_LABELS),
            desc(LATENCY_METRIC, LATENCY_HELP, &["proto"]),
        ],
    }
}

fn label_pair(name: &str, value: &str) -> proto::LabelPair {
    let mut l = proto::LabelPair::default();
    l.set_name(name.into());
    l.set_value(value.into());
    l
}

/// The two metric families of a snapshot.
pub fn families(snap: &Snapshot) -> Vec<proto::MetricFamily> {
    let mut queries = proto::MetricFamily::default();
    queries.set_name(QUERIES_METRIC.into());
    queries.set_help(QUERIES_HELP.into());
    queries.set_field_type(proto::MetricType::COUNTER);
    let metrics = snap
        .queries
        .iter()
        .map(|(l, v)| {
            let mut m = proto::Metric::default();
            // Sorted by label name, as prometheus' own vectors are.
            m.set_label(vec![
                label_pair("ecs", if l.ecs { "true" } else { "false" }),
                label_pair("proto", l.proto),
                label_pair("rcode", l.rcode),
                label_pair("service", &l.service),
                label_pair("target", &l.target),
            ]);
            let mut c = proto::Counter::default();
            c.set_value(*v as f64);
            m.set_counter(c);
            m
        })
        .collect();
    queries.set_metric(metrics);

    let mut latency = proto::MetricFamily::default();
    latency.set_name(LATENCY_METRIC.into());
    latency.set_help(LATENCY_HELP.into());
    latency.set_field_type(proto::MetricType::HISTOGRAM);
    let metrics = Proto::ALL
        .iter()
        .map(|p| {
            let s = snap.latency(*p);
            let mut h = proto::Histogram::default();
            h.set_sample_count(s.count);
            h.set_sample_sum(s.sum_seconds);
            h.set_bucket(
                s.buckets
                    .iter()
                    .map(|(le, n)| {
                        let mut b = proto::Bucket::default();
                        b.set_upper_bound(*le);
                        b.set_cumulative_count(*n);
                        b
                    })
                    .collect(),
            );
            let mut m = proto::Metric::default();
            m.set_label(vec![label_pair("proto", p.as_str())]);
            m.set_histogram(h);
            m
        })
        .collect();
    latency.set_metric(metrics);
    vec![queries, latency]
}

impl Collector for DnsCollector {
    fn desc(&self) -> Vec<&Desc> {
        self.descs.iter().collect()
    }

    fn collect(&self) -> Vec<proto::MetricFamily> {
        families(&snapshot(&self.table))
    }
}

#[cfg(test)]
mod tests;
