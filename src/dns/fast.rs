//! The UDP fast path: precomputed wire-format answers (`dns::precompute`), patched per query.
//!
//! `answer` reads the header, the single question and an optional OPT record straight from the
//! packet (`dns::query`), looks the lower-case name up in the table's templates, and writes
//! (`dns::encode`): the query's ID and RD/CD bits, the query's own question bytes (so 0x20 case
//! is kept), the stored sections, and an OPT record when the query had one. Anything unusual
//! (other opcodes, EDNS version > 0, several questions, names not in the table, answers too
//! large for the client) returns `Slow` and goes through the general path (`dns::handler`)
//! instead, which is the reference behaviour; both answer from the same `answer::answer` logic.

use std::net::IpAddr;

use hickory_proto::op::ResponseCode;
use hickory_proto::rr::{DNSClass, RecordType};

use crate::dns::cookie;
use crate::dns::encode::{self, Content, OPCODE, Opt, QR};
use crate::dns::guard::{CookieCheck, Guard, Now};
use crate::dns::precompute::{self, MAX_FAST_RESPONSE};
use crate::dns::query;
use crate::dns::rrl::Verdict;
use crate::table::{
    ClientAddr, FastEntry, Proto, QueryKey, RoutingTable, Template, labels::rcode_of, suffixes,
};

/// The NXDOMAIN template for a name that is not in the table, if the answer is NXDOMAIN.
#[inline]
fn nxdomain<'t>(table: &'t RoutingTable, key: &[u8], qtype: u16) -> Option<&'t Template> {
    if qtype == u16::from(RecordType::AXFR) || qtype == u16::from(RecordType::IXFR) {
        return None;
    }
    let mut zone = None;
    let mut apex_len = 0;
    for s in suffixes(key) {
        if let Some(z) = table.zone_index.get(s) {
            zone = Some(*z);
            apex_len = s.len();
            break;
        }
    }
    let zone = zone?;
    if suffixes(key)
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
    if flags & OPCODE != 0 || be(4) != 1 || be(6) != 0 || be(8) != 0 || be(10) > 1 {
        return FastOutcome::Slow;
    }
    let mut key = [0u8; 256];
    let Some((klen, pos)) = query::question_name(q, &mut key) else {
        return FastOutcome::Slow;
    };
    let key = &key[..klen];
    if q.len() < pos + 4 {
        return FastOutcome::Slow;
    }
    let qtype = be(pos);
    if be(pos + 2) != u16::from(DNSClass::IN) {
        return FastOutcome::Slow;
    }
    let qend = pos + 4;

    // Optional OPT record: at most one valid ECS option, a well-formed COOKIE option (anything
    // else goes to the general path, which answers FORMERR or BADVERS).
    let edns = if be(10) == 1 {
        match query::opt_record(q, qend) {
            Some(o) => Some(o),
            None => return FastOutcome::Slow,
        }
    } else if q.len() != qend {
        return FastOutcome::Slow;
    } else {
        None
    };
    let opts = edns.map(|e| e.options).unwrap_or_default();
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
    let tpl = match table.fast.get(key).map(|node| node.get(qtype)) {
        Some(None) => return FastOutcome::Slow,
        // Not a name of the table: NXDOMAIN, unless it is outside our zones, at or below a
        // delegation, or a zone transfer (the general path answers those).
        None => match nxdomain(table, key, qtype) {
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
            match slot.get_or_init(|| precompute::steered(table, key, qtype, i)) {
                Some(t) => t,
                None => return FastOutcome::Slow,
            }
        }
    };

    let question = &q[12..qend];
    let content = Content::of(&tpl.sections);
    if let Some(e) = edns {
        let limit = e.udp_size.clamp(512, table.settings.max_udp_payload) as usize;
        let opt_len = encode::opt_len(ecs, with_cookie);
        if encode::len(question, &content, None) + opt_len > limit {
            return FastOutcome::Slow;
        }
    } else if encode::len(question, &content, None) > 512 {
        return FastOutcome::Slow;
    }

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
    let (content, qkey) = match verdict {
        Verdict::Drop => return FastOutcome::Drop,
        Verdict::Send => {
            if let Some((si, i)) = counted {
                table.count_answer(si, i);
            }
            (content, tpl.key)
        }
        // RFC 7873 §5.2.3: a client with a cookie gets BADCOOKIE and our cookie, and retries
        // with it (then passes the limiter).
        Verdict::Slip if matches!(cookie, CookieCheck::Ok(_)) => (
            Content::empty(ResponseCode::BADCOOKIE, false),
            QueryKey::new(0, 0, rcode_of(ResponseCode::BADCOOKIE), Proto::Udp, false),
        ),
        Verdict::Slip => (content.truncated(), tpl.key),
    };
    let reply_cookie = match &cookie {
        CookieCheck::Ok(o) => Some(&o.reply),
        _ => None,
    };
    let opt = edns.map(|e| Opt {
        payload: table.settings.max_udp_payload,
        dnssec_ok: e.dnssec_ok,
        ecs: ecs.map(|e| (e, scope)),
        cookie: reply_cookie,
    });
    let n = encode::write(out, q, question, 1, &content, opt.as_ref());
    FastOutcome::Answered(n, qkey.with_ecs(ecs.is_some()))
}
