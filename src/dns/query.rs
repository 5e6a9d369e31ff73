//! Reading a query from its bytes: the question name as a lookup key, the OPT record, and the
//! EDNS options steerd reads (ECS, COOKIE). The fast path reads every query it answers with
//! these; the general path, after hickory-proto parsed the message, still reads the options
//! here, since hickory keeps neither an ECS option's length nor a malformed option list, both
//! of which are answered with FORMERR (RFC 7871 §7.1.1, RFC 7873 §5.2.2).

use hickory_proto::rr::RecordType;

use crate::dns::cookie;
use crate::dns::ecs::{self, Ecs};

#[inline]
fn be16(m: &[u8], i: usize) -> u16 {
    u16::from_be_bytes([m[i], m[i + 1]])
}

/// The question name at offset 12, lower-cased into `key` (wire format): its length in `key`,
/// and where the name ends in `q`. `None` for a name with a compression pointer, a name longer
/// than 255 bytes, or one that runs past the end.
#[inline]
pub fn question_name(q: &[u8], key: &mut [u8; 256]) -> Option<(usize, usize)> {
    let mut pos = 12;
    let mut klen = 0;
    loop {
        let l = *q.get(pos)?;
        if l & 0xc0 != 0 || klen + l as usize + 1 > 255 {
            return None;
        }
        key[klen] = l;
        klen += 1;
        pos += 1;
        if l == 0 {
            return Some((klen, pos));
        }
        let label = q.get(pos..pos + l as usize)?;
        for (d, s) in key[klen..klen + l as usize].iter_mut().zip(label) {
            *d = s.to_ascii_lowercase();
        }
        klen += l as usize;
        pos += l as usize;
    }
}

/// A query's OPT record.
#[derive(Debug, Clone, Copy)]
pub struct QueryOpt<'a> {
    /// The requestor's UDP payload size.
    pub udp_size: u16,
    pub dnssec_ok: bool,
    pub options: EdnsOpts<'a>,
}

/// The OPT record at `at` that ends the message (RFC 6891): root owner, version 0, options
/// that parse. `None` otherwise (the general path answers FORMERR or BADVERS).
#[inline]
pub fn opt_record(q: &[u8], at: usize) -> Option<QueryOpt<'_>> {
    if q.len() < at + 11
        || q[at] != 0
        || be16(q, at + 1) != u16::from(RecordType::OPT)
        || q[at + 6] != 0
    {
        return None;
    }
    if q.len() != at + 11 + be16(q, at + 9) as usize {
        return None;
    }
    Some(QueryOpt {
        udp_size: be16(q, at + 3),
        dnssec_ok: q[at + 7] & 0x80 != 0,
        options: options(&q[at + 11..]).ok()?,
    })
}

/// The options of a query's OPT record that steerd reads.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct EdnsOpts<'a> {
    /// The valid ECS option, if any.
    pub ecs: Option<Ecs>,
    /// The data of the first COOKIE option, if any (judged by `dns::guard`).
    pub cookie: Option<&'a [u8]>,
    /// COOKIE options in the record (more than one is malformed, when cookies are on).
    pub cookies: u8,
}

/// Walk the options of an OPT record's RDATA: at most one ECS option, which must be valid, and
/// the COOKIE options.
pub fn options(rdata: &[u8]) -> Result<EdnsOpts<'_>, &'static str> {
    let mut p = 0;
    let mut out = EdnsOpts::default();
    while p < rdata.len() {
        if p + 4 > rdata.len() {
            return Err("truncated EDNS option header");
        }
        let code = be16(rdata, p);
        let len = be16(rdata, p + 2) as usize;
        let end = p + 4 + len;
        if end > rdata.len() {
            return Err("EDNS option longer than the OPT record");
        }
        if code == ecs::OPTION_CODE {
            if out.ecs.is_some() {
                return Err("more than one ECS option");
            }
            out.ecs = Some(ecs::parse(&rdata[p + 4..end])?);
        } else if code == cookie::OPTION_CODE {
            out.cookies = out.cookies.saturating_add(1);
            out.cookie = out.cookie.or(Some(&rdata[p + 4..end]));
        }
        p = end;
    }
    Ok(out)
}

/// Skip a (possibly compressed) name starting at `p`; the offset after it.
fn skip_name(m: &[u8], mut p: usize) -> Option<usize> {
    loop {
        let l = *m.get(p)?;
        match l & 0xc0 {
            0x00 if l == 0 => return Some(p + 1),
            0x00 => p += 1 + l as usize,
            0xc0 => return Some(p + 2),
            _ => return None,
        }
    }
}

/// Find the OPT record of a whole query message (in the additional section) and read its
/// options.
pub fn options_of_message(m: &[u8]) -> Result<EdnsOpts<'_>, &'static str> {
    const BAD: &str = "malformed message";
    if m.len() < 12 {
        return Err(BAD);
    }
    let count = |i: usize| be16(m, i) as usize;
    let (qd, an, ns, ar) = (count(4), count(6), count(8), count(10));
    let mut p = 12;
    for _ in 0..qd {
        p = skip_name(m, p).ok_or(BAD)? + 4;
    }
    for i in 0..an + ns + ar {
        p = skip_name(m, p).ok_or(BAD)?;
        if p + 10 > m.len() {
            return Err(BAD);
        }
        let rtype = be16(m, p);
        let rdlen = be16(m, p + 8) as usize;
        let start = p + 10;
        if start + rdlen > m.len() {
            return Err(BAD);
        }
        if rtype == u16::from(RecordType::OPT) && i >= an + ns {
            return options(&m[start..start + rdlen]);
        }
        p = start + rdlen;
    }
    Ok(EdnsOpts::default())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn two_ecs_options_are_malformed() {
        let two = [0, 8, 0, 4, 0, 1, 0, 0, 0, 8, 0, 4, 0, 1, 0, 0];
        assert!(options(&two).is_err(), "two ECS options");
        let one = options(&two[..8]).unwrap();
        assert_eq!(one.ecs.map(|e| e.source_prefix), Some(0));
    }

    #[test]
    fn question_names_are_lower_cased_and_pointers_refused() {
        let mut key = [0u8; 256];
        let mut q = vec![0u8; 12];
        q.extend_from_slice(b"\x03WwW\x07example\x00\x00\x01\x00\x01");
        assert_eq!(question_name(&q, &mut key), Some((13, 25)));
        assert_eq!(&key[..13], b"\x03www\x07example\x00");
        q.truncate(16);
        q.extend_from_slice(&[0xc0, 0x0c]);
        assert_eq!(question_name(&q, &mut key), None);
    }
}
