//! A steered service as the table holds it: its answers and how it picks one for a client
//! (fixed, weighted rendezvous hashing, or by location).

use std::net::IpAddr;
use std::sync::Arc;

use hickory_proto::rr::{Name, Record};

/// How a service picks its answer for a client.
#[derive(Debug, Clone)]
pub enum Selector {
    /// Always the same answer (failover: first target; later: health decides).
    Fixed(usize),
    /// Weighted rendezvous hashing over the client's subnet.
    Weighted(Vec<WeightedMember>),
    /// Location-dependent: merged address blocks → a choice, each fixed or weighted.
    Geo {
        blocks: Arc<crate::geo::Blocks>,
        choices: Vec<Choice>,
    },
}

/// A region's pick: one answer, or a weighted split.
#[derive(Debug, Clone)]
pub enum Choice {
    Fixed(usize),
    Weighted(Vec<WeightedMember>),
}

#[derive(Debug, Clone)]
pub struct WeightedMember {
    /// Hash seed derived from the target name: stable across restarts and across nodes.
    pub seed: u64,
    pub weight: f64,
    /// Index into [`CompiledService::answers`].
    pub answer: usize,
}

/// Who is asking: the address that locates the query (the ECS subnet when the query carries
/// one with a source prefix > 0, else the resolver) and whether it came from ECS.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ClientAddr {
    pub ip: IpAddr,
    pub from_ecs: bool,
}

impl ClientAddr {
    pub fn resolver(ip: IpAddr) -> Self {
        Self {
            ip,
            from_ecs: false,
        }
    }
}

/// What a target answers, as ready records with the service's TTL and owner name.
#[derive(Debug, Clone)]
pub struct ServiceAnswer {
    /// The target(s) answered, for logs and `resolve`.
    pub target: String,
    pub cname: Option<Record>,
    pub a: Vec<Record>,
    pub aaaa: Vec<Record>,
    /// Every target is down and the service fails closed without a fallback: SERVFAIL.
    pub servfail: bool,
    /// Indices of the configuration's targets this answer sends clients to (counted).
    pub targets: Vec<usize>,
}

#[derive(Debug, Clone)]
pub struct CompiledService {
    pub name: Name,
    pub ttl: u32,
    pub selector: Selector,
    pub answers: Vec<ServiceAnswer>,
}

impl CompiledService {
    /// Index of the answer this client gets, and the ECS scope prefix of that answer (0 when
    /// it does not depend on the client). Pure and cheap: a binary search and a few hashes.
    #[inline]
    pub fn select(&self, client: ClientAddr, prefix_v4: u8, prefix_v6: u8) -> (usize, u8) {
        let hash_prefix = if client.ip.is_ipv4() {
            prefix_v4
        } else {
            prefix_v6
        };
        match &self.selector {
            Selector::Fixed(i) => (*i, 0),
            Selector::Weighted(members) => (
                weighted_pick(members, client.ip, prefix_v4, prefix_v6),
                hash_prefix,
            ),
            Selector::Geo { blocks, choices } => {
                let (c, scope) = blocks.lookup(client.ip);
                match choices.get(c as usize) {
                    Some(Choice::Fixed(i)) => (*i, scope),
                    Some(Choice::Weighted(members)) => (
                        weighted_pick(members, client.ip, prefix_v4, prefix_v6),
                        scope.max(hash_prefix),
                    ),
                    None => (0, scope),
                }
            }
        }
    }
}

/// Weighted rendezvous hashing: the member with the largest ln(u)/w wins, u uniform in (0, 1]
/// from a hash of the client's subnet and the member's seed, so each member wins with
/// probability proportional to its weight.
#[inline]
fn weighted_pick(members: &[WeightedMember], ip: IpAddr, prefix_v4: u8, prefix_v6: u8) -> usize {
    let key = client_key(ip, prefix_v4, prefix_v6);
    let mut best = 0;
    let mut best_score = f64::NEG_INFINITY;
    for m in members {
        let h = xxhash_rust::xxh3::xxh3_64_with_seed(&key, m.seed);
        let u = ((h >> 11) as f64 + 1.0) / ((1u64 << 53) as f64);
        let score = u.ln() / m.weight;
        if score > best_score {
            best_score = score;
            best = m.answer;
        }
    }
    best
}

/// The bytes that identify a client for stable picks: its address masked to the hash prefix.
#[inline]
fn client_key(client: IpAddr, prefix_v4: u8, prefix_v6: u8) -> [u8; 17] {
    let mut key = [0u8; 17];
    match client {
        IpAddr::V4(v4) => {
            let masked = ipnet::Ipv4Net::new(v4, prefix_v4).map_or(v4, |n| n.network());
            key[0] = 4;
            key[1..5].copy_from_slice(&masked.octets());
        }
        IpAddr::V6(v6) => {
            let masked = ipnet::Ipv6Net::new(v6, prefix_v6).map_or(v6, |n| n.network());
            key[0] = 6;
            key[1..17].copy_from_slice(&masked.octets());
        }
    }
    key
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn client_key_masks_to_prefix() {
        let a = client_key("192.0.2.1".parse().unwrap(), 24, 56);
        let b = client_key("192.0.2.200".parse().unwrap(), 24, 56);
        let c = client_key("192.0.3.1".parse().unwrap(), 24, 56);
        assert_eq!(a, b);
        assert_ne!(a, c);
        let d = client_key("2001:db8:0:1::1".parse().unwrap(), 24, 56);
        let e = client_key("2001:db8:0:1:ffff::1".parse().unwrap(), 24, 56);
        assert_eq!(d, e);
        assert_eq!(client_key("10.0.0.1".parse().unwrap(), 0, 0)[1..5], [0; 4]);
    }
}
