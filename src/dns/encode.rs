//! The response wire format, written here for every path: the header (the query's ID, and its
//! opcode, RD and CD), the question as received, the records, the OPT record (our payload size,
//! the query's DO bit, the extended RCODE, the ECS option with our scope, our COOKIE), and the
//! UDP size limit: an answer that does not fit is sent with TC=1 and no records. Records are
//! encoded once by hickory-proto's `BinEncoder`: into templates when a table is compiled
//! ([`sections`], [`nxdomain`]), or per query on the general path ([`response`]).

use hickory_proto::op::{Query, ResponseCode};
use hickory_proto::rr::{Name, Record, RecordType};
use hickory_proto::serialize::binary::{BinEncodable, BinEncoder, NameEncoding};

use crate::dns::answer::Reply;
use crate::dns::cookie;
use crate::dns::ecs::Ecs;
use crate::table::Sections;

/// Bytes of a DNS header.
const HEADER_LEN: usize = 12;
/// Bytes of an OPT record without options.
const OPT_LEN: usize = 11;

/// Header flags: a response, and the opcode's bits.
pub const QR: u16 = 0x8000;
pub const OPCODE: u16 = 0x7800;
const AA: u16 = 0x0400;
const TC: u16 = 0x0200;
const RD: u16 = 0x0100;
const CD: u16 = 0x0010;

/// What a response's header says besides the query's ID, opcode, RD and CD, and its encoded
/// records after the question.
#[derive(Debug, Clone, Copy)]
pub struct Content<'a> {
    /// AA, TC and the RCODE's low 4 bits.
    pub flags: u16,
    /// The RCODE's upper 8 bits (sent in the OPT record).
    pub ext_rcode: u8,
    /// ANCOUNT, NSCOUNT, ARCOUNT (without the OPT record).
    pub counts: [u16; 3],
    pub body: &'a [u8],
}

impl<'a> Content<'a> {
    /// A precomputed answer.
    #[inline]
    pub fn of(s: &'a Sections) -> Self {
        Self {
            flags: s.flags,
            ext_rcode: 0,
            counts: s.counts,
            body: &s.body,
        }
    }

    /// No records, with this RCODE.
    #[inline]
    pub fn empty(rcode: ResponseCode, authoritative: bool) -> Content<'static> {
        Content {
            flags: flags(rcode, authoritative),
            ext_rcode: rcode.high(),
            counts: [0; 3],
            body: &[],
        }
    }

    /// The same header with TC=1 and no records: the client retries over TCP.
    #[inline]
    pub fn truncated(self) -> Content<'static> {
        Content {
            flags: self.flags | TC,
            ext_rcode: self.ext_rcode,
            counts: [0; 3],
            body: &[],
        }
    }
}

/// AA and the RCODE's low bits.
fn flags(rcode: ResponseCode, authoritative: bool) -> u16 {
    (if authoritative { AA } else { 0 }) | u16::from(rcode.low())
}

/// The OPT record of a response to a query that had one.
#[derive(Debug, Clone, Copy)]
pub struct Opt<'a> {
    /// Our maximum UDP payload.
    pub payload: u16,
    /// The query's DO bit, copied (RFC 3225 §3).
    pub dnssec_ok: bool,
    /// The query's valid ECS option and our scope prefix: family, source prefix and address
    /// echoed (RFC 7871 §7.2.1).
    pub ecs: Option<(Ecs, u8)>,
    /// Our COOKIE option: the client cookie and our server cookie (RFC 7873 §5.2).
    pub cookie: Option<&'a [u8; cookie::REPLY_LEN]>,
}

impl Opt<'_> {
    #[inline]
    fn encoded_len(&self) -> usize {
        opt_len(self.ecs.map(|(e, _)| e), self.cookie.is_some())
    }
}

/// Bytes of an OPT record with these options.
#[inline]
pub fn opt_len(ecs: Option<Ecs>, cookie: bool) -> usize {
    OPT_LEN + ecs.map_or(0, |e| 4 + e.data_len()) + if cookie { 4 + cookie::REPLY_LEN } else { 0 }
}

/// Bytes of a response with this question, content and OPT record.
#[inline]
pub fn len(question: &[u8], content: &Content<'_>, opt: Option<&Opt<'_>>) -> usize {
    HEADER_LEN + question.len() + content.body.len() + opt.map_or(0, Opt::encoded_len)
}

/// The header: the query's ID; QR, the query's opcode and `flags`; RD and CD copied for a
/// QUERY, the one opcode that defines them (RFC 1035 §4.1.1, RFC 4035 §3.2.2); the counts.
#[inline]
fn header(out: &mut [u8], query: &[u8], flags: u16, counts: [u16; 4]) {
    let qflags = u16::from_be_bytes([query[2], query[3]]);
    let copied = if qflags & OPCODE == 0 {
        qflags & (RD | CD)
    } else {
        0
    };
    out[0..2].copy_from_slice(&query[0..2]);
    out[2..4].copy_from_slice(&(QR | (qflags & OPCODE) | flags | copied).to_be_bytes());
    for (i, c) in counts.iter().enumerate() {
        out[4 + 2 * i..6 + 2 * i].copy_from_slice(&c.to_be_bytes());
    }
}

/// Write the OPT record into `out` (which holds `opt.encoded_len()` bytes); the bytes written.
#[inline]
fn write_opt(out: &mut [u8], opt: &Opt<'_>, ext_rcode: u8) -> usize {
    let size = opt.payload.to_be_bytes();
    let rdlen = ((opt.encoded_len() - OPT_LEN) as u16).to_be_bytes();
    let [t0, t1] = u16::from(RecordType::OPT).to_be_bytes();
    let dnssec_ok = if opt.dnssec_ok { 0x80 } else { 0 };
    // Root owner, type, payload size, extended RCODE, version 0, flags, RDATA length.
    out[..OPT_LEN].copy_from_slice(&[
        0, t0, t1, size[0], size[1], ext_rcode, 0, dnssec_ok, 0, rdlen[0], rdlen[1],
    ]);
    let mut w = OPT_LEN;
    if let Some((e, scope)) = opt.ecs {
        w += e.write_into(scope, &mut out[w..]);
    }
    if let Some(c) = opt.cookie {
        out[w..w + 2].copy_from_slice(&cookie::OPTION_CODE.to_be_bytes());
        out[w + 2..w + 4].copy_from_slice(&(cookie::REPLY_LEN as u16).to_be_bytes());
        out[w + 4..w + 4 + cookie::REPLY_LEN].copy_from_slice(c);
        w += 4 + cookie::REPLY_LEN;
    }
    w
}

/// Write a response into `out`, which holds at least [`len`] bytes: the header for `query`
/// (its first 4 bytes: ID and flags), `question` as received (`qdcount` questions), the
/// content's records and the OPT record. The bytes written.
#[inline]
pub fn write(
    out: &mut [u8],
    query: &[u8],
    question: &[u8],
    qdcount: u16,
    content: &Content<'_>,
    opt: Option<&Opt<'_>>,
) -> usize {
    let [an, ns, ar] = content.counts;
    let ar = ar + u16::from(opt.is_some());
    header(out, query, content.flags, [qdcount, an, ns, ar]);
    let mut w = HEADER_LEN;
    out[w..w + question.len()].copy_from_slice(question);
    w += question.len();
    out[w..w + content.body.len()].copy_from_slice(content.body);
    w += content.body.len();
    if let Some(o) = opt {
        w += write_opt(&mut out[w..], o, content.ext_rcode);
    }
    w
}

/// Encode the reply's sections at the end of `enc`: the counts, or `None` when they do not fit
/// in a DNS message.
fn emit_records(enc: &mut BinEncoder<'_>, reply: &Reply<'_>) -> Option<[u16; 3]> {
    let mut counts = [0u16; 3];
    for (c, set) in counts
        .iter_mut()
        .zip([&reply.answers, &reply.authority, &reply.additional])
    {
        *c = u16::try_from(enc.emit_all(set.iter().copied()).ok()?).ok()?;
    }
    Some(counts)
}

/// The answer `reply` for `name`/`qtype` as a template: its records encoded after that
/// question, names compressed against it. The query's own question has the same length (the
/// fast path echoes it, 0x20 case and all), so the pointers hold. `None` when it does not fit
/// in `max` bytes with its question.
pub fn sections(name: &Name, qtype: RecordType, reply: &Reply<'_>, max: usize) -> Option<Sections> {
    let mut buf = vec![0u8; HEADER_LEN];
    let mut enc = BinEncoder::with_offset(&mut buf, HEADER_LEN as u32);
    Query::query(name.clone(), qtype).emit(&mut enc).ok()?;
    let start = enc.offset();
    let counts = emit_records(&mut enc, reply)?;
    if buf.len() > max {
        return None;
    }
    Some(Sections {
        flags: flags(reply.rcode, reply.authoritative),
        counts,
        body: buf[start..].into(),
    })
}

/// The NXDOMAIN answer of a zone for any name in it: the negative SOA in authority, encoded
/// without compression so it does not depend on where the question ends.
pub fn nxdomain(negative_soa: &Record) -> Option<Sections> {
    let mut body = Vec::new();
    let mut enc = BinEncoder::new(&mut body);
    enc.set_name_encoding(NameEncoding::Uncompressed);
    negative_soa.emit(&mut enc).ok()?;
    Some(Sections {
        flags: flags(ResponseCode::NXDomain, true),
        counts: [0, 1, 0],
        body: body.into_boxed_slice(),
    })
}

/// The general path's response: `head`'s header (no records) and, when given, the reply's
/// records encoded after the question as received, names compressed among the records (as
/// hickory-server encodes, so these answers stay what they have always been), then the OPT
/// record; within `limit` bytes, else TC=1 and no records. `None` when not even that fits.
pub fn response(
    query: &[u8],
    question: &[u8],
    qdcount: u16,
    head: Content<'static>,
    reply: Option<&Reply<'_>>,
    opt: Option<&Opt<'_>>,
    limit: usize,
) -> Option<Vec<u8>> {
    let start = HEADER_LEN + question.len();
    let opt_len = opt.map_or(0, Opt::encoded_len);
    let mut buf = Vec::with_capacity(512);
    buf.resize(HEADER_LEN, 0);
    buf.extend_from_slice(question);
    let mut content = head;
    if let Some(r) = reply {
        let counts = {
            let mut enc = BinEncoder::with_offset(&mut buf, start as u32);
            // The echoed question is a compression candidate that no name matches, as in
            // hickory-server's encoding (it takes one of the encoder's candidate slots).
            enc.store_label_pointer(HEADER_LEN, start);
            emit_records(&mut enc, r)
        };
        match counts {
            Some(counts) if buf.len() + opt_len <= limit => content.counts = counts,
            _ => {
                buf.truncate(start);
                content = content.truncated();
            }
        }
    }
    // Not even the OPT record fits (a FORMERR echoing many questions): it goes without it,
    // with TC=1, as hickory-server's encoder sends it.
    let opt = match opt {
        Some(_) if buf.len() + opt_len > limit && buf.len() <= limit => {
            content = content.truncated();
            None
        }
        o => o,
    };
    if buf.len() > limit {
        return None;
    }
    let [an, ns, ar] = content.counts;
    let ar = ar + u16::from(opt.is_some());
    header(&mut buf, query, content.flags, [qdcount, an, ns, ar]);
    if let Some(o) = opt {
        let at = buf.len();
        buf.resize(at + opt_len, 0);
        write_opt(&mut buf[at..], o, content.ext_rcode);
    }
    Some(buf)
}

#[cfg(test)]
mod tests {
    use super::*;

    const QUERY_RD_CD: [u8; 4] = [0xab, 0xcd, 0x01, 0x10];
    const NOTIFY_RD_CD: [u8; 4] = [0xab, 0xcd, 0x21, 0x10];

    fn opt() -> Opt<'static> {
        Opt {
            payload: 1232,
            dnssec_ok: true,
            ecs: None,
            cookie: None,
        }
    }

    #[test]
    fn headers_copy_rd_and_cd_of_a_query_only() {
        let r = response(
            &QUERY_RD_CD,
            &[],
            0,
            Content::empty(ResponseCode::FormErr, false),
            None,
            None,
            512,
        )
        .unwrap();
        assert_eq!(r, [0xab, 0xcd, 0x81, 0x11, 0, 0, 0, 0, 0, 0, 0, 0]);
        let r = response(
            &NOTIFY_RD_CD,
            &[],
            0,
            Content::empty(ResponseCode::NotImp, false),
            None,
            None,
            512,
        )
        .unwrap();
        assert_eq!(r, [0xab, 0xcd, 0xa0, 0x04, 0, 0, 0, 0, 0, 0, 0, 0]);
    }

    #[test]
    fn the_extended_rcode_goes_in_the_opt_record() {
        let head = Content::empty(ResponseCode::BADVERS, false);
        let o = opt();
        let r = response(&QUERY_RD_CD, &[], 0, head, None, Some(&o), 512).unwrap();
        assert_eq!(&r[2..4], &[0x81, 0x10], "BADVERS' low bits are 0");
        assert_eq!(&r[10..12], &[0, 1], "ARCOUNT: the OPT");
        assert_eq!(&r[12..], &[0, 0, 41, 0x04, 0xd0, 1, 0, 0x80, 0, 0, 0]);
        let mut out = [0u8; 64];
        let n = write(&mut out, &QUERY_RD_CD, &[], 0, &head, Some(&o));
        assert_eq!(&out[..n], &r[..], "both writers agree");
    }

    #[test]
    fn what_does_not_fit_goes_truncated_then_without_its_opt_then_not_at_all() {
        let question = vec![0u8; 490];
        let head = Content::empty(ResponseCode::FormErr, false);
        let o = opt();
        let r = response(&QUERY_RD_CD, &question, 1, head, None, Some(&o), 512).unwrap();
        assert_eq!(r.len(), 502);
        assert_eq!(&r[2..4], &[0x83, 0x11], "TC=1");
        assert_eq!(&r[10..12], &[0, 0], "no OPT");
        let r = response(&QUERY_RD_CD, &question, 1, head, None, Some(&o), 1232).unwrap();
        assert_eq!(r.len(), 513, "with room, the OPT is there");
        assert_eq!(
            response(&QUERY_RD_CD, &question, 1, head, None, None, 500),
            None
        );
    }
}
