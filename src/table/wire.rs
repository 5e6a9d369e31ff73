//! Precomputed wire-format answers, per name and type: the encoded sections that follow the
//! question, with the metrics key and rate-limiting account of each answer. Built when a table
//! is compiled (`dns::precompute`) and patched per query by the UDP fast path (`dns::fast`).

use std::sync::OnceLock;

use super::labels::QueryKey;

/// A response's header flags and records after its question, encoded.
#[derive(Debug, Clone)]
pub struct Sections {
    /// AA, TC and the RCODE's low 4 bits (QR, the opcode, RD and CD are added per response).
    pub flags: u16,
    /// ANCOUNT, NSCOUNT, ARCOUNT (without an OPT record).
    pub counts: [u16; 3],
    /// The records, encoded to follow the question at offset 12.
    pub body: Box<[u8]>,
}

/// A response without header ID and question, ready to be patched.
#[derive(Debug, Clone)]
pub struct Template {
    pub sections: Sections,
    /// The query-metrics key of this answer (service, target, rcode; UDP, no ECS).
    pub key: QueryKey,
    /// Its response-rate-limiting account.
    pub rrl: Account,
}

#[derive(Debug, Clone)]
pub enum FastEntry {
    Static(Template),
    /// A steered answer: one template per answer of the service, encoded by the first query
    /// that needs it (a table holds only the answers its chain results can give, but a big
    /// configuration has many names: encoding them all would slow every compile).
    Steered {
        service: u32,
        variants: Box<[OnceLock<Option<Template>>]>,
    },
}

/// The precomputed answers of one name, by query type.
#[derive(Debug, Clone, Default)]
pub struct FastNode {
    pub entries: Vec<(u16, FastEntry)>,
}

impl FastNode {
    #[inline]
    pub fn get(&self, qtype: u16) -> Option<&FastEntry> {
        self.entries
            .iter()
            .find(|(t, _)| *t == qtype)
            .map(|(_, e)| e)
    }
}

/// The kinds of response that response rate limiting accounts separately (as BIND does).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[repr(u8)]
pub enum Class {
    Answer = 0,
    Referral = 1,
    NoData = 2,
    NxDomain = 3,
    Error = 4,
}

/// The rate-limiting account of a response (`dns::rrl`): its class and a hash of the name
/// (and type) it is about.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Account {
    pub class: Class,
    pub key: u64,
}

impl Account {
    /// `name` is a lower-case wire-format name; `qtype` counts for positive answers only.
    pub fn new(class: Class, name: &[u8], qtype: u16) -> Self {
        let key = match class {
            Class::Error => 0,
            Class::Answer => {
                xxhash_rust::xxh3::xxh3_64_with_seed(name, u64::from(qtype) << 8 | class as u64)
            }
            _ => xxhash_rust::xxh3::xxh3_64_with_seed(name, class as u64),
        };
        Self { class, key }
    }
}
