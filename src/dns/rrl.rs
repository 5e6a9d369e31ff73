//! Response rate limiting as BIND 9 does it: an account per (client prefix, response), where
//! the response is the query name and type for positive answers, the zone for NXDOMAIN and
//! NODATA, the delegation for referrals, and one account for every error. Each account earns
//! `rate` credits a second (at most `rate` in hand) and spends one per response; below zero the
//! response is limited (dropped, or every `slip`-th one sent truncated), and the balance goes
//! down to `-window × rate`, so a flooded account recovers `window` seconds after the flood.
//!
//! The accounts are a fixed table of atomic words shared by every worker (no lock): the bucket
//! of an account is chosen by a keyed hash, a 12-bit tag tells its account from another that
//! maps there (which then takes the bucket over, starting with a full balance).

use std::net::IpAddr;
use std::sync::atomic::{AtomicU64, Ordering};

use hickory_proto::op::ResponseCode;
use hickory_proto::rr::{Name, RecordType};

use crate::dns::answer::Reply;
use crate::table::{Account, Class, RoutingTable, wire_key};

/// What to do with a response.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Verdict {
    Send,
    Drop,
    /// Send it truncated (TC=1 and no records), or BADCOOKIE to a client with a cookie.
    Slip,
}

pub use crate::config::RrlSettings;

/// The account of an answer from the answer logic: the query name and type for an answer, the
/// zone for NXDOMAIN and NODATA, the delegation for a referral, one for all errors.
pub fn account_of(
    table: &RoutingTable,
    reply: &Reply<'_>,
    qname: &Name,
    qtype: RecordType,
) -> Account {
    let zone = || {
        reply
            .zone
            .map(|z| wire_key(&table.zones[z as usize].apex))
            .unwrap_or_default()
    };
    match reply.rcode {
        ResponseCode::NXDomain => Account::new(Class::NxDomain, &zone(), 0),
        ResponseCode::NoError if !reply.answers.is_empty() => {
            Account::new(Class::Answer, &wire_key(qname), u16::from(qtype))
        }
        ResponseCode::NoError if !reply.authoritative && !reply.authority.is_empty() => {
            Account::new(Class::Referral, &wire_key(&reply.authority[0].name), 0)
        }
        ResponseCode::NoError => Account::new(Class::NoData, &zone(), 0),
        _ => Account::new(Class::Error, b"", 0),
    }
}

const TAG_BITS: u32 = 12;
const SLIP_BITS: u32 = 4;
const TIME_BITS: u32 = 24;
const BAL_BITS: u32 = 24;
const TIME_MASK: u64 = (1 << TIME_BITS) - 1;
const BAL_MASK: u64 = (1 << BAL_BITS) - 1;

fn pack(tag: u64, slip: u64, time: u64, balance: i64) -> u64 {
    (tag << (SLIP_BITS + TIME_BITS + BAL_BITS))
        | (slip << (TIME_BITS + BAL_BITS))
        | ((time & TIME_MASK) << BAL_BITS)
        | (balance as u64 & BAL_MASK)
}

fn unpack(w: u64) -> (u64, u64, u64, i64) {
    let tag = w >> (SLIP_BITS + TIME_BITS + BAL_BITS);
    let slip = (w >> (TIME_BITS + BAL_BITS)) & ((1 << SLIP_BITS) - 1);
    let time = (w >> BAL_BITS) & TIME_MASK;
    // Sign-extend the 24-bit balance.
    let balance = (((w & BAL_MASK) << 40) as i64) >> 40;
    (tag, slip, time, balance)
}

/// splitmix64's finalizer.
#[inline]
fn mix(mut z: u64) -> u64 {
    z = (z ^ (z >> 30)).wrapping_mul(0xbf58_476d_1ce4_e5b9);
    z = (z ^ (z >> 27)).wrapping_mul(0x94d0_49bb_1331_11eb);
    z ^ (z >> 31)
}

/// The rate limiter of a running server.
pub struct Rrl {
    settings: RrlSettings,
    seed: u64,
    buckets: Box<[AtomicU64]>,
}

impl std::fmt::Debug for Rrl {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "Rrl({:?})", self.settings)
    }
}

impl Rrl {
    pub fn new(settings: RrlSettings) -> Self {
        let buckets = (0..settings.table_size)
            .map(|_| AtomicU64::new(0))
            .collect();
        Self {
            seed: rand::random(),
            settings,
            buckets,
        }
    }

    pub fn settings(&self) -> &RrlSettings {
        &self.settings
    }

    /// Is this client never limited?
    #[inline]
    pub fn exempt(&self, ip: IpAddr) -> bool {
        !self.settings.exempt.is_empty() && self.settings.exempt.iter().any(|n| n.contains(&ip))
    }

    /// The client's prefix as one number (IPv4 and IPv6 kept apart).
    #[inline]
    fn prefix(&self, ip: IpAddr) -> u128 {
        match ip {
            IpAddr::V4(a) => {
                let p = self.settings.ipv4_prefix;
                let bits = u32::from(a).checked_shr(32 - u32::from(p)).unwrap_or(0);
                (1u128 << 64) | (u128::from(bits) << 8) | u128::from(p)
            }
            IpAddr::V6(a) => {
                let p = self.settings.ipv6_prefix;
                let bits = u128::from(a).checked_shr(128 - u32::from(p)).unwrap_or(0);
                bits ^ (2u128 << 120) ^ u128::from(p)
            }
        }
    }

    /// Account one response to `ip` at `now` (seconds of a monotonic clock).
    #[inline]
    pub fn check(&self, ip: IpAddr, account: Account, now: u32) -> Verdict {
        let rate = i64::from(self.settings.rates[account.class as usize]);
        if rate == 0 {
            return Verdict::Send;
        }
        let p = self.prefix(ip);
        let h = mix(mix(self.seed ^ account.key ^ (p as u64)) ^ ((p >> 64) as u64))
            ^ account.class as u64;
        let h = mix(h);
        let bucket = &self.buckets[h as usize & (self.buckets.len() - 1)];
        let tag = h >> (64 - TAG_BITS);
        let floor = -(i64::from(self.settings.window) * rate);
        let slip = u64::from(self.settings.slip);
        let now = u64::from(now) & TIME_MASK;
        let mut old = bucket.load(Ordering::Relaxed);
        loop {
            let (otag, oslip, otime, obal) = unpack(old);
            let (balance, mut slips) = if old == 0 || otag != tag {
                (rate, 0)
            } else {
                let elapsed = (now.wrapping_sub(otime) & TIME_MASK) as i64;
                ((obal + elapsed.saturating_mul(rate)).min(rate), oslip)
            };
            let balance = (balance - 1).max(floor);
            let verdict = if balance >= 0 {
                Verdict::Send
            } else if slip == 0 {
                Verdict::Drop
            } else {
                slips += 1;
                if slips >= slip {
                    slips = 0;
                    Verdict::Slip
                } else {
                    Verdict::Drop
                }
            };
            let new = pack(tag, slips, now, balance);
            match bucket.compare_exchange_weak(old, new, Ordering::Relaxed, Ordering::Relaxed) {
                Ok(_) => return verdict,
                Err(cur) => old = cur,
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn settings(rate: u32, slip: u8) -> RrlSettings {
        RrlSettings {
            rates: [rate, rate, rate, rate, rate],
            window: 5,
            slip,
            ipv4_prefix: 24,
            ipv6_prefix: 56,
            exempt: vec!["10.0.0.0/8".parse().unwrap()],
            log_only: false,
            table_size: 1024,
        }
    }

    #[test]
    fn pack_round_trips() {
        for (t, s, time, b) in [
            (0, 0, 0, 0),
            (4095, 15, TIME_MASK, -1),
            (7, 3, 99, -8_000_000),
        ] {
            assert_eq!(unpack(pack(t, s, time, b)), (t, s, time, b));
        }
        assert_eq!(unpack(pack(1, 1, 1, 1000)).3, 1000);
    }

    #[test]
    fn rate_per_second_then_slip_every_second_answer() {
        let r = Rrl::new(settings(5, 2));
        let ip: IpAddr = "192.0.2.1".parse().unwrap();
        let a = Account::new(Class::Answer, b"\x03www\x00", 1);
        let v: Vec<Verdict> = (0..11).map(|_| r.check(ip, a, 100)).collect();
        use Verdict::*;
        assert_eq!(
            v,
            [
                Send, Send, Send, Send, Send, Drop, Slip, Drop, Slip, Drop, Slip
            ]
        );
        // The same /24, another name: its own account. Another /24: its own too.
        assert_eq!(
            r.check(ip, Account::new(Class::Answer, b"\x03ftp\x00", 1), 100),
            Send
        );
        assert_eq!(r.check("192.0.3.1".parse().unwrap(), a, 100), Send);
        // The same /24 shares the limited account (the last answer above was a slip).
        assert_eq!(r.check("192.0.2.200".parse().unwrap(), a, 100), Drop);
        assert!(r.exempt("10.1.2.3".parse().unwrap()));
        assert!(!r.exempt(ip));
    }

    #[test]
    fn a_flooded_account_recovers_after_the_window() {
        let r = Rrl::new(settings(10, 0));
        let ip: IpAddr = "2001:db8::1".parse().unwrap();
        let a = Account::new(Class::NxDomain, b"\x07example\x00", 0);
        for _ in 0..1000 {
            r.check(ip, a, 10);
        }
        // Balance at the floor (-window × rate = -50): 5 seconds of credit to get back to 0.
        assert_eq!(r.check(ip, a, 14), Verdict::Drop);
        assert_eq!(r.check(ip, a, 16), Verdict::Send);
        // The same /56 shares the account.
        assert_eq!(
            r.check("2001:db8:0:ff::2".parse().unwrap(), a, 16),
            Verdict::Send
        );
    }

    #[test]
    fn unlimited_classes_and_slip_one() {
        let mut s = settings(2, 1);
        s.rates[Class::Error as usize] = 0;
        let r = Rrl::new(s);
        let ip: IpAddr = "198.51.100.7".parse().unwrap();
        let e = Account::new(Class::Error, b"", 0);
        assert!((0..100).all(|_| r.check(ip, e, 1) == Verdict::Send));
        let a = Account::new(Class::Answer, b"\x01a\x00", 16);
        let v: Vec<Verdict> = (0..5).map(|_| r.check(ip, a, 1)).collect();
        use Verdict::*;
        assert_eq!(v, [Send, Send, Slip, Slip, Slip]);
    }
}
