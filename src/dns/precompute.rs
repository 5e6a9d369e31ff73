//! The templates of a routing table, built when it is compiled: the general answer logic
//! (`answer::answer`) runs once for every (name, type) pair the table holds — once per answer
//! variant for steered names, on first use — and its records are encoded (`encode::sections`)
//! to follow the question. Names the table does not hold get their zone's NXDOMAIN template.

use hickory_proto::rr::{DNSClass, Name, RecordType};
use rustc_hash::FxHashMap;

use crate::dns::answer::{self, AnswerFor, Reply};
use crate::dns::encode;
use crate::dns::rrl;
use crate::table::{
    Account, Class, FastEntry, FastNode, Proto, QueryKey, RoutingTable, Template, WireKey,
    labels::rcode_of, wire_key,
};
use hickory_proto::op::ResponseCode;

/// Types answered from templates. Others take the general path.
const FAST_TYPES: [RecordType; 10] = [
    RecordType::A,
    RecordType::AAAA,
    RecordType::CNAME,
    RecordType::NS,
    RecordType::SOA,
    RecordType::MX,
    RecordType::TXT,
    RecordType::CAA,
    RecordType::HTTPS,
    RecordType::ANY,
];

/// Largest response built on the fast path.
pub const MAX_FAST_RESPONSE: usize = 4096;

/// The template of `reply`, the answer to `name`/`qtype`: `None` if it does not leave room in
/// [`MAX_FAST_RESPONSE`] for an OPT record.
pub fn template(
    table: &RoutingTable,
    name: &Name,
    qtype: RecordType,
    reply: &Reply<'_>,
) -> Option<Template> {
    Some(Template {
        sections: encode::sections(name, qtype, reply, MAX_FAST_RESPONSE - 11)?,
        key: reply.stats_key(table, Proto::Udp, false),
        rrl: rrl::account_of(table, reply, name, qtype),
    })
}

/// The template of answer `variant` of a steered name: the name given by its wire key.
pub fn steered(table: &RoutingTable, key: &[u8], qtype: u16, variant: usize) -> Option<Template> {
    let name = name_from_key(key)?;
    let qtype = RecordType::from(qtype);
    let reply = answer::answer(
        table,
        &name,
        qtype,
        DNSClass::IN,
        AnswerFor::Variant(variant),
    );
    template(table, &name, qtype, &reply)
}

/// Per zone, the NXDOMAIN answer for names the table does not hold: the negative SOA in
/// authority (see `encode::nxdomain`).
pub fn precompute_nxdomain(table: &RoutingTable) -> Vec<Option<Template>> {
    let labels = table.labels();
    table
        .zones
        .iter()
        .enumerate()
        .map(|(zi, z)| {
            Some(Template {
                sections: encode::nxdomain(&z.negative_soa)?,
                key: QueryKey::new(
                    labels.zone(zi as u32),
                    0,
                    rcode_of(ResponseCode::NXDomain),
                    Proto::Udp,
                    false,
                ),
                rrl: Account::new(Class::NxDomain, &wire_key(&z.apex), 0),
            })
        })
        .collect()
}

/// Build the fast-path map for every name of the table.
pub fn precompute(table: &RoutingTable) -> FxHashMap<WireKey, FastNode> {
    // Intern the table's metric labels now rather than on the first query.
    let _ = table.labels();
    let mut out = FxHashMap::default();
    let lazy = |si: u32| -> FastEntry {
        let n = table.services[si as usize].answers.len();
        FastEntry::Steered {
            service: si,
            variants: (0..n).map(|_| std::sync::OnceLock::new()).collect(),
        }
    };
    for (key, node) in &table.nodes {
        let mut fnode = FastNode::default();
        if let Some(si) = node.service {
            fnode.entries = FAST_TYPES
                .iter()
                .map(|t| (u16::from(*t), lazy(si)))
                .collect();
            out.insert(key.clone(), fnode);
            continue;
        }
        let Some(name) = name_from_key(key) else {
            continue;
        };
        for qtype in FAST_TYPES {
            let reply = answer::answer(table, &name, qtype, DNSClass::IN, AnswerFor::Variant(0));
            let entry = match reply.service {
                None => template(table, &name, qtype, &reply).map(FastEntry::Static),
                // A static alias of a steered name.
                Some(si) => Some(lazy(si)),
            };
            if let Some(e) = entry {
                fnode.entries.push((u16::from(qtype), e));
            }
        }
        out.insert(key.clone(), fnode);
    }
    for key in &table.empty_non_terminals {
        let Some(name) = name_from_key(key) else {
            continue;
        };
        let mut fnode = FastNode::default();
        for qtype in FAST_TYPES {
            let reply = answer::answer(table, &name, qtype, DNSClass::IN, AnswerFor::Variant(0));
            if let Some(t) = template(table, &name, qtype, &reply) {
                fnode.entries.push((u16::from(qtype), FastEntry::Static(t)));
            }
        }
        out.insert(key.clone(), fnode);
    }
    out
}

fn name_from_key(key: &[u8]) -> Option<Name> {
    let mut labels = Vec::new();
    let mut pos = 0;
    while pos < key.len() && key[pos] != 0 {
        let l = key[pos] as usize;
        labels.push(&key[pos + 1..pos + 1 + l]);
        pos += l + 1;
    }
    let mut n = Name::from_labels(labels).ok()?;
    n.set_fqdn(true);
    Some(n)
}
