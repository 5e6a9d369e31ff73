//! Authoritative answer logic: (table, question, client) → which records go in which section.
//!
//! This is the one place that knows DNS semantics (NXDOMAIN/NODATA, referrals, CNAME, minimal ANY,
//! glue). It returns references into the routing table; `dns::encode` encodes them, for the
//! general path (`dns::handler`) per query and for the templates (`dns::precompute`) once per
//! name and type.

use hickory_proto::op::ResponseCode;
use hickory_proto::rr::{DNSClass, Name, RData, Record, RecordType};

use crate::table::labels::rcode_of;
use crate::table::{ClientAddr, Node, Proto, QueryKey, RoutingTable, suffixes, wire_key};

/// How to choose a steered answer.
#[derive(Debug, Clone, Copy)]
pub enum AnswerFor {
    /// Ask the service's selector for this client.
    Client(ClientAddr),
    /// Force this answer index (used to precompute every variant).
    Variant(usize),
}

/// The content of a response, by reference into the table.
#[derive(Debug, Default)]
pub struct Reply<'t> {
    pub rcode: ResponseCode,
    pub authoritative: bool,
    pub answers: Vec<&'t Record>,
    pub authority: Vec<&'t Record>,
    pub additional: Vec<&'t Record>,
    /// The steered service whose answer this is, if any (for the fast-path templates).
    pub service: Option<u32>,
    /// The index of that service's answer given (meaningful when `service` is set).
    pub variant: usize,
    /// The zone the answer comes from (`None`: REFUSED before any zone was found).
    pub zone: Option<u32>,
    /// ECS scope prefix: how much of the client's address the answer depends on (0 = none).
    pub scope: u8,
}

impl<'t> Reply<'t> {
    fn refused() -> Self {
        Self {
            rcode: ResponseCode::Refused,
            ..Self::default()
        }
    }

    /// The query-metrics key of this reply: the steered service and its answer's target, or
    /// the zone, with the rcode (see `dns::stats` for the label values).
    #[inline]
    pub fn stats_key(&self, table: &RoutingTable, proto: Proto, ecs: bool) -> QueryKey {
        let (service, target) = table
            .labels()
            .answer(self.service.map(|s| (s, self.variant)), self.zone);
        QueryKey::new(service, target, rcode_of(self.rcode), proto, ecs)
    }
}

const MAX_CNAME_CHAIN: usize = 8;

/// Answer one question.
pub fn answer<'t>(
    table: &'t RoutingTable,
    qname: &Name,
    qtype: RecordType,
    qclass: DNSClass,
    pick: AnswerFor,
) -> Reply<'t> {
    if qclass != DNSClass::IN && qclass != DNSClass::ANY {
        return Reply::refused();
    }
    // No zone transfers from this server (RFC 5936 §4.2 allows refusing them).
    if matches!(qtype, RecordType::AXFR | RecordType::IXFR) {
        return Reply::refused();
    }
    let key = wire_key(qname);
    let Some(zi) = table.find_zone(&key) else {
        return Reply::refused();
    };
    let zone = &table.zones[zi as usize];
    let mut reply = Reply {
        authoritative: true,
        zone: Some(zi),
        ..Reply::default()
    };

    // Delegation: the closest cut at or above the name (below the apex) answers with a referral,
    // except for DS at the cut itself, which belongs to the parent side (we hold none: NODATA).
    let apex_len = wire_key(&zone.apex).len();
    for s in suffixes(&key).take_while(|s| s.len() > apex_len) {
        if let Some(node) = table.nodes.get(s)
            && node.cut
        {
            if s.len() == key.len() && qtype == RecordType::DS {
                reply.authority.push(&zone.negative_soa);
                return reply;
            }
            reply.authoritative = false;
            if let Some(ns) = node.rrset(RecordType::NS) {
                reply.authority.extend(ns.iter());
                add_glue(table, ns, &mut reply.additional);
            }
            return reply;
        }
    }

    let Some(node) = table.nodes.get(&key) else {
        if !table.empty_non_terminals.contains(&key) {
            reply.rcode = ResponseCode::NXDomain;
        }
        reply.authority.push(&zone.negative_soa);
        return reply;
    };

    answer_node(table, node, qtype, pick, &mut reply, 0);
    if reply.answers.is_empty()
        && reply.authority.is_empty()
        && reply.rcode != ResponseCode::ServFail
    {
        reply.authority.push(&zone.negative_soa);
    }
    reply
}

fn answer_node<'t>(
    table: &'t RoutingTable,
    node: &'t Node,
    qtype: RecordType,
    pick: AnswerFor,
    reply: &mut Reply<'t>,
    depth: usize,
) {
    if let Some(si) = node.service {
        let svc = &table.services[si as usize];
        let idx = match pick {
            AnswerFor::Client(client) => {
                let (i, scope) = svc.select(
                    client,
                    table.settings.hash_prefix_v4,
                    table.settings.hash_prefix_v6,
                );
                reply.scope = reply.scope.max(scope);
                i
            }
            AnswerFor::Variant(i) => i,
        };
        let ans = &svc.answers[idx];
        if reply.service.is_none() {
            reply.service = Some(si);
            reply.variant = idx;
        }
        if ans.servfail {
            reply.rcode = ResponseCode::ServFail;
            reply.authoritative = false;
            return;
        }
        if let Some(cname) = &ans.cname {
            // The CDN host name is out of our zones: the CNAME alone, the resolver chases it.
            reply.answers.push(cname);
            return;
        }
        let set: &[Record] = match qtype {
            RecordType::A => &ans.a,
            RecordType::AAAA => &ans.aaaa,
            RecordType::ANY if !ans.a.is_empty() => &ans.a,
            RecordType::ANY => &ans.aaaa,
            _ => &[],
        };
        reply.answers.extend(set.iter());
        return;
    }

    if qtype != RecordType::CNAME
        && let Some(cname) = node.rrset(RecordType::CNAME)
    {
        reply.answers.extend(cname.iter());
        if depth + 1 >= MAX_CNAME_CHAIN || qtype == RecordType::ANY {
            return;
        }
        // Chase the alias while it stays inside this zone (and outside delegations).
        let RData::CNAME(target) = &cname[0].data else {
            return;
        };
        let tkey = wire_key(&target.0);
        if table.find_zone(&tkey) != Some(node.zone) {
            return;
        }
        // A service whose target points back into a chain: never repeat a record.
        if reply.answers.iter().any(|r| r.name == target.0) {
            return;
        }
        let apex_len = wire_key(&table.zones[node.zone as usize].apex).len();
        if suffixes(&tkey)
            .take_while(|s| s.len() > apex_len)
            .any(|s| table.nodes.get(s).is_some_and(|n| n.cut))
        {
            return;
        }
        match table.nodes.get(&tkey) {
            Some(next) => {
                let (answers, authority) = (reply.answers.len(), reply.authority.len());
                answer_node(table, next, qtype, pick, reply, depth + 1);
                if reply.answers.len() == answers && reply.authority.len() == authority {
                    // The chain ends at a name without this type: NODATA, SOA in authority
                    // (RFC 2308 §2.2).
                    reply
                        .authority
                        .push(&table.zones[node.zone as usize].negative_soa);
                }
            }
            None if !table.empty_non_terminals.contains(&tkey) => {
                // RFC 6604: the rcode describes the last name in the chain.
                reply.rcode = ResponseCode::NXDomain;
                reply
                    .authority
                    .push(&table.zones[node.zone as usize].negative_soa);
            }
            None => reply
                .authority
                .push(&table.zones[node.zone as usize].negative_soa),
        }
        return;
    }

    if qtype == RecordType::ANY {
        // RFC 8482: answer with one RRset rather than everything.
        if let Some((_, set)) = node.rrsets.first() {
            reply.answers.extend(set.iter());
        }
        return;
    }

    if let Some(set) = node.rrset(qtype) {
        reply.answers.extend(set.iter());
        if depth == 0 {
            match qtype {
                RecordType::NS => add_glue(table, set, &mut reply.additional),
                RecordType::MX => add_glue(table, set, &mut reply.additional),
                _ => {}
            }
        }
    }
}

/// Addresses we hold for the host names in NS/MX records.
fn add_glue<'t>(table: &'t RoutingTable, set: &'t [Record], out: &mut Vec<&'t Record>) {
    for r in set {
        let host = match &r.data {
            RData::NS(ns) => &ns.0,
            RData::MX(mx) => &mx.exchange,
            _ => continue,
        };
        if let Some(node) = table.nodes.get(&wire_key(host)) {
            for t in [RecordType::A, RecordType::AAAA] {
                if let Some(addrs) = node.rrset(t) {
                    for a in addrs {
                        if !out.iter().any(|x| std::ptr::eq(*x, a)) {
                            out.push(a);
                        }
                    }
                }
            }
        }
    }
}
