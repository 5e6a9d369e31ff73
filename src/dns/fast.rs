//! The UDP fast path: precomputed wire-format answers, patched per query.
//!
//! At compile time `precompute` runs the general answer logic (`answer::answer`) once for every
//! (name, type) pair the table holds — once per answer variant for steered names — and stores the
//! encoded response after the question. At query time `try_answer` parses the header, the single
//! question and an optional OPT record straight from the packet, looks the lower-case name up, and
//! writes: the query's ID and RD/CD bits, the query's own question bytes (so 0x20 case is kept),
//! the stored sections, and an OPT record when the query had one. Anything unusual (other
//! opcodes, EDNS version > 0, several questions, names not in the table, answers too large for the
//! client) returns `Slow` and goes through the hickory `RequestHandler` path instead, which is
//! the reference behaviour; both paths answer from the same `answer::answer` logic.

use std::net::IpAddr;

use hickory_proto::op::{Message, MessageType, Metadata, OpCode, Query, ResponseCode};
use hickory_proto::rr::{DNSClass, Name, RecordType};

use crate::dns::answer::{self, AnswerFor, Reply};
use crate::dns::cookie;
use crate::dns::ecs;
use crate::dns::guard::{CookieCheck, Guard, Now};
use crate::dns::rrl::{self, Account, Class, Verdict};
use crate::dns::stats::{Proto, QueryKey, rcode_index, rcode_of};
use crate::table::ClientAddr;
use crate::table::{RoutingTable, WireKey};

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

/// Largest response we build on the fast path.
pub const MAX_FAST_RESPONSE: usize = 4096;

/// A response without header ID and question, ready to be patched.
#[derive(Debug, Clone)]
pub struct Template {
    /// Header flags (QR, AA, TC=0, RCODE); RD and CD are copied from the query.
    flags: u16,
    an: u16,
    ns: u16,
    ar: u16,
    /// Answer, authority and additional sections as encoded after the canonical question.
    body: Box<[u8]>,
    /// The query-metrics key of this answer (service, target, rcode; UDP, no ECS).
    key: QueryKey,
    /// Its response-rate-limiting account.
    rrl: Account,
}

#[derive(Debug, Clone)]
pub enum FastEntry {
    Static(Template),
    /// A steered answer: one template per answer of the service, encoded by the first query
    /// that needs it (a table holds only the answers its chain results can give, but a big
    /// configuration has many names: encoding them all would slow every compile).
    Steered {
        service: u32,
        variants: Box<[std::sync::OnceLock<Option<Template>>]>,
    },
}

/// The precomputed answers of one name.
#[derive(Debug, Clone, Default)]
pub struct FastNode {
    entries: Vec<(u16, FastEntry)>,
}

impl FastNode {
    #[inline]
    fn get(&self, qtype: u16) -> Option<&FastEntry> {
        self.entries
            .iter()
            .find(|(t, _)| *t == qtype)
            .map(|(_, e)| e)
    }
}

fn encode_template(
    table: &RoutingTable,
    name: &Name,
    qtype: RecordType,
    reply: &Reply<'_>,
) -> Option<Template> {
    let mut metadata = Metadata::new(0, MessageType::Response, OpCode::Query);
    metadata.authoritative = reply.authoritative;
    metadata.response_code = reply.rcode;
    let mut msg = Message::new(0, MessageType::Response, OpCode::Query);
    msg.metadata = metadata;
    msg.add_query(Query::query(name.clone(), qtype));
    msg.answers = reply.answers.iter().map(|r| (*r).clone()).collect();
    msg.authorities = reply.authority.iter().map(|r| (*r).clone()).collect();
    msg.additionals = reply.additional.iter().map(|r| (*r).clone()).collect();
    let bytes = msg.to_vec().ok()?;
    let qlen = crate::table::wire_key(name).len() + 4;
    if bytes.len() > MAX_FAST_RESPONSE - 11 || bytes.len() < 12 + qlen {
        return None;
    }
    let be = |i: usize| u16::from_be_bytes([bytes[i], bytes[i + 1]]);
    Some(Template {
        flags: be(2),
        an: be(6),
        ns: be(8),
        ar: be(10),
        body: bytes[12 + qlen..].into(),
        key: reply.stats_key(table, Proto::Udp, false),
        rrl: rrl::account_of(table, reply, name, qtype),
    })
}

/// Per zone, the NXDOMAIN answer for names the table does not hold: the negative SOA in
/// authority, encoded without compression so it does not depend on where the question ends.
pub fn precompute_nxdomain(table: &RoutingTable) -> Vec<Option<Template>> {
    use hickory_proto::serialize::binary::{BinEncodable, BinEncoder, NameEncoding};
    let labels = table.labels();
    table
        .zones
        .iter()
        .enumerate()
        .map(|(zi, z)| {
            let mut body = Vec::new();
            let mut enc = BinEncoder::new(&mut body);
            enc.set_name_encoding(NameEncoding::Uncompressed);
            z.negative_soa.emit(&mut enc).ok()?;
            Some(Template {
                // QR, AA, RCODE 3 (NXDOMAIN).
                flags: QR | AA | u16::from(ResponseCode::NXDomain.low()),
                an: 0,
                ns: 1,
                ar: 0,
                body: body.into_boxed_slice(),
                key: QueryKey::new(
                    labels.zone(zi as u32),
                    0,
                    rcode_of(ResponseCode::NXDomain),
                    Proto::Udp,
                    false,
                ),
                rrl: Account::new(Class::NxDomain, &crate::table::wire_key(&z.apex), 0),
            })
        })
        .collect()
}

/// Build the fast-path map for every name of the table.
pub fn precompute(table: &RoutingTable) -> rustc_hash::FxHashMap<WireKey, FastNode> {
    // Intern the table's metric labels now rather than on the first query.
    let _ = table.labels();
    let mut out = rustc_hash::FxHashMap::default();
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
                None => encode_template(table, &name, qtype, &reply).map(FastEntry::Static),
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
            if let Some(t) = encode_template(table, &name, qtype, &reply) {
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

/// The NXDOMAIN template for a name that is not in the table, if the answer is NXDOMAIN.
#[inline]
fn nxdomain<'t>(table: &'t RoutingTable, key: &[u8], qtype: u16) -> Option<&'t Template> {
    if qtype == u16::from(RecordType::AXFR) || qtype == u16::from(RecordType::IXFR) {
        return None;
    }
    let mut zone = None;
    let mut apex_len = 0;
    for s in crate::table::suffixes(key) {
        if let Some(z) = table.zone_index.get(s) {
            zone = Some(*z);
            apex_len = s.len();
            break;
        }
    }
    let zone = zone?;
    if crate::table::suffixes(key)
        .take_while(|s| s.len() > apex_len)
        .any(|s| table.cuts.contains(s))
    {
        return None;
    }
    table.fast_nx.get(zone as usize)?.as_ref()
}

/// What the fast path did with a packet.
#[derive(Debug, PartialEq, Eq)]
pub enum FastOutcome {
    /// A response of this many bytes is in the output buffer; the query's metrics key.
    Answered(usize, QueryKey),
    /// Not a query we answer at all (a response, or shorter than a header): drop it.
    Drop,
    /// Needs the general path.
    Slow,
}

const QR: u16 = 0x8000;
const OPCODE_MASK: u16 = 0x7800;
const RD: u16 = 0x0100;
const AA: u16 = 0x0400;
const CD: u16 = 0x0010;
const TC: u16 = 0x0200;

/// [`answer`] without DNS cookies and rate limiting.
pub fn try_answer(
    table: &RoutingTable,
    q: &[u8],
    client: IpAddr,
    out: &mut [u8; MAX_FAST_RESPONSE],
) -> FastOutcome {
    static NONE: std::sync::LazyLock<Guard> = std::sync::LazyLock::new(Guard::none);
    answer(table, &NONE, Now::read(), q, client, out)
}

/// Try to answer a UDP query from the precomputed templates, applying DNS cookies and
/// response rate limiting (`guard`) once the answer is known to fit.
#[inline]
pub fn answer(
    table: &RoutingTable,
    guard: &Guard,
    now: Now,
    q: &[u8],
    client: IpAddr,
    out: &mut [u8; MAX_FAST_RESPONSE],
) -> FastOutcome {
    if q.len() < 12 {
        return FastOutcome::Drop;
    }
    let be = |i: usize| u16::from_be_bytes([q[i], q[i + 1]]);
    let flags = be(2);
    if flags & QR != 0 {
        return FastOutcome::Drop;
    }
    if flags & OPCODE_MASK != 0 || be(4) != 1 || be(6) != 0 || be(8) != 0 || be(10) > 1 {
        return FastOutcome::Slow;
    }
    // Question name, lower-cased into the lookup key.
    let mut key = [0u8; 256];
    let mut pos = 12;
    let mut klen = 0;
    loop {
        let Some(&l) = q.get(pos) else {
            return FastOutcome::Slow;
        };
        if l & 0xc0 != 0 || klen + l as usize + 1 > 255 {
            return FastOutcome::Slow;
        }
        key[klen] = l;
        klen += 1;
        pos += 1;
        if l == 0 {
            break;
        }
        let Some(label) = q.get(pos..pos + l as usize) else {
            return FastOutcome::Slow;
        };
        for (d, s) in key[klen..klen + l as usize].iter_mut().zip(label) {
            *d = s.to_ascii_lowercase();
        }
        klen += l as usize;
        pos += l as usize;
    }
    if q.len() < pos + 4 {
        return FastOutcome::Slow;
    }
    let qtype = be(pos);
    if be(pos + 2) != u16::from(DNSClass::IN) {
        return FastOutcome::Slow;
    }
    let qend = pos + 4;

    // Optional OPT record (RFC 6891): root owner, type 41, version 0, well-formed options, at
    // most one valid ECS option, a well-formed COOKIE option (anything else goes to the general
    // path, which answers FORMERR or BADVERS).
    let mut edns_limit = None;
    let mut do_bit = 0u8;
    let mut opts = ecs::EdnsOpts::default();
    if be(10) == 1 {
        let o = qend;
        if q.len() < o + 11 || q[o] != 0 || be(o + 1) != 41 {
            return FastOutcome::Slow;
        }
        let udp = be(o + 3);
        if q[o + 6] != 0 {
            return FastOutcome::Slow;
        }
        let rdlen = be(o + 9) as usize;
        if q.len() != o + 11 + rdlen {
            return FastOutcome::Slow;
        }
        match ecs::options(&q[o + 11..]) {
            Ok(e) => opts = e,
            Err(_) => return FastOutcome::Slow,
        }
        edns_limit = Some(udp.clamp(512, table.settings.max_udp_payload) as usize);
        do_bit = q[o + 7] & 0x80;
    } else if q.len() != qend {
        return FastOutcome::Slow;
    }
    let ecs = opts.ecs;
    let with_cookie = match opts.cookie {
        Some(c) if guard.cookies.is_some() => {
            if opts.cookies > 1 || cookie::well_formed(c).is_err() {
                return FastOutcome::Slow;
            }
            true
        }
        _ => false,
    };

    let mut scope = 0u8;
    let mut counted = None;
    let tpl = match table.fast.get(&key[..klen]).map(|node| node.get(qtype)) {
        Some(None) => return FastOutcome::Slow,
        // Not a name of the table: NXDOMAIN, unless it is outside our zones, at or below a
        // delegation, or a zone transfer (the general path answers those).
        None => match nxdomain(table, &key[..klen], qtype) {
            Some(t) => t,
            None => return FastOutcome::Slow,
        },
        Some(Some(FastEntry::Static(t))) => t,
        Some(Some(FastEntry::Steered { service, variants })) => {
            let s = &table.services[*service as usize];
            let client = match ecs.and_then(|e| e.location_addr()) {
                Some(ip) => ClientAddr { ip, from_ecs: true },
                None => ClientAddr::resolver(client),
            };
            let (i, sc) = s.select(
                client,
                table.settings.hash_prefix_v4,
                table.settings.hash_prefix_v6,
            );
            if client.from_ecs {
                scope = sc;
            }
            let Some(slot) = variants.get(i) else {
                return FastOutcome::Slow;
            };
            counted = Some((*service as usize, i));
            let tpl = slot.get_or_init(|| {
                let name = name_from_key(&key[..klen])?;
                let qt = RecordType::from(qtype);
                let r = answer::answer(table, &name, qt, DNSClass::IN, AnswerFor::Variant(i));
                encode_template(table, &name, qt, &r)
            });
            match tpl {
                Some(t) => t,
                None => return FastOutcome::Slow,
            }
        }
    };

    let ecs_len = ecs.map_or(0, |e| 4 + e.data_len());
    let cookie_len = if with_cookie {
        4 + cookie::REPLY_LEN
    } else {
        0
    };
    let opt_len = if edns_limit.is_some() {
        11 + ecs_len + cookie_len
    } else {
        0
    };
    let total = qend + tpl.body.len() + opt_len;
    if total > edns_limit.unwrap_or(512) {
        return FastOutcome::Slow;
    }

    // The answer fits: now the cookie and the rate limit (counted once, here).
    let cookie = if with_cookie {
        guard.cookie(&opts, client, now)
    } else {
        CookieCheck::None
    };
    let verdict = if guard.rrl.is_some() {
        guard.limit(client, &cookie, tpl.rrl, now)
    } else {
        Verdict::Send
    };
    let (hflags, body, an, ns, ar, ext_rcode, qkey) = match verdict {
        Verdict::Drop => return FastOutcome::Drop,
        Verdict::Send => {
            if let Some((si, i)) = counted {
                table.count_answer(si, i);
            }
            (
                tpl.flags,
                &tpl.body[..],
                tpl.an,
                tpl.ns,
                tpl.ar,
                0u8,
                tpl.key,
            )
        }
        // RFC 7873 §5.2.3: a client with a cookie gets BADCOOKIE and our cookie, and retries
        // with it (then passes the limiter).
        Verdict::Slip if matches!(cookie, CookieCheck::Ok(_)) => {
            let code = u16::from(ResponseCode::BADCOOKIE);
            (
                QR | (code & 0x0f),
                &[][..],
                0,
                0,
                0,
                (code >> 4) as u8,
                QueryKey::new(0, 0, rcode_index(code), Proto::Udp, false),
            )
        }
        Verdict::Slip => (tpl.flags | TC, &[][..], 0, 0, 0, 0, tpl.key),
    };
    out[0..2].copy_from_slice(&q[0..2]);
    out[2..4].copy_from_slice(&(hflags | (flags & (RD | CD))).to_be_bytes());
    out[4..6].copy_from_slice(&1u16.to_be_bytes());
    out[6..8].copy_from_slice(&an.to_be_bytes());
    out[8..10].copy_from_slice(&ns.to_be_bytes());
    out[10..12].copy_from_slice(&(ar + u16::from(opt_len != 0)).to_be_bytes());
    out[12..qend].copy_from_slice(&q[12..qend]);
    let mut w = qend;
    out[w..w + body.len()].copy_from_slice(body);
    w += body.len();
    if opt_len != 0 {
        let size = table.settings.max_udp_payload.to_be_bytes();
        let rdlen = ((ecs_len + cookie_len) as u16).to_be_bytes();
        // Extended RCODE, version 0, the query's DO bit copied (RFC 3225 §3).
        out[w..w + 11].copy_from_slice(&[
            0, 0, 41, size[0], size[1], ext_rcode, 0, do_bit, 0, rdlen[0], rdlen[1],
        ]);
        w += 11;
        if let Some(e) = ecs {
            // RFC 7871 §7.2.1: family, source prefix and address echoed, our scope.
            w += e.write_into(scope, &mut out[w..]);
        }
        if let CookieCheck::Ok(o) = cookie {
            out[w..w + 4].copy_from_slice(&[
                0,
                cookie::OPTION_CODE as u8,
                0,
                cookie::REPLY_LEN as u8,
            ]);
            out[w + 4..w + 4 + cookie::REPLY_LEN].copy_from_slice(&o.reply);
            w += 4 + cookie::REPLY_LEN;
        }
    }
    FastOutcome::Answered(w, qkey.with_ecs(ecs.is_some()))
}
