//! DNS cookies (RFC 7873) with the interoperable server cookie of RFC 9018: version 1, three
//! reserved bytes, a 32-bit timestamp and SipHash-2-4 over the client cookie, those 8 bytes and
//! the client address, keyed with the server secret. Nodes sharing the secret accept each
//! other's cookies.

use std::hash::Hasher;
use std::net::IpAddr;

use siphasher::sip::SipHasher24;

/// EDNS option code of COOKIE.
pub const OPTION_CODE: u16 = 10;
/// Length of a client cookie, and of the whole option when it holds only that.
pub const CLIENT_LEN: usize = 8;
/// Length of our server cookies, and of the option we answer (client + server cookie).
pub const SERVER_LEN: usize = 16;
pub const REPLY_LEN: usize = CLIENT_LEN + SERVER_LEN;

/// A server cookie is accepted up to an hour after it was made and 5 minutes before (clock
/// skew between nodes), and re-issued once it is half an hour old (RFC 9018 §4.3).
const MAX_AGE: i64 = 3600;
const MAX_AHEAD: i64 = 300;
const REFRESH_AGE: i64 = 1800;

pub use crate::config::CookieSettings;

impl Default for CookieSettings {
    fn default() -> Self {
        Self {
            enabled: true,
            secrets: None,
        }
    }
}

impl std::fmt::Debug for CookieSettings {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let secrets = self.secrets.as_ref().map(|s| s.len());
        write!(
            f,
            "CookieSettings {{ enabled: {}, secrets: {secrets:?} }}",
            self.enabled
        )
    }
}

/// What a query's COOKIE option was.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum State {
    /// A client cookie alone (the client does not know our cookie yet).
    ClientOnly,
    /// A server cookie of ours, valid for this client.
    Valid,
    /// A server cookie we did not make for this client, or an expired one.
    Invalid,
}

/// The result of a well-formed COOKIE option: its state and the option data to answer
/// (the client cookie and a server cookie).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Outcome {
    pub state: State,
    pub reply: [u8; REPLY_LEN],
}

/// The server side of DNS cookies.
#[derive(Clone)]
pub struct Cookies {
    secrets: Vec<[u8; 16]>,
}

impl std::fmt::Debug for Cookies {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "Cookies({} secrets)", self.secrets.len())
    }
}

/// Check the length of a COOKIE option's data (RFC 7873 §5.2.2: a client cookie of 8 bytes,
/// optionally followed by a server cookie of 8 to 32 bytes).
pub fn well_formed(data: &[u8]) -> Result<(), &'static str> {
    match data.len() {
        CLIENT_LEN | 16..=40 => Ok(()),
        0..CLIENT_LEN => Err("COOKIE option shorter than a client cookie (8 bytes)"),
        41.. => Err("COOKIE option longer than 40 bytes"),
        _ => Err("COOKIE option with a server cookie shorter than 8 bytes"),
    }
}

/// Serial-number difference `now - then` (RFC 1982), in seconds.
fn age(now: u32, then: u32) -> i64 {
    i64::from(now.wrapping_sub(then) as i32)
}

impl Cookies {
    /// `secrets` must not be empty; the first one signs new cookies.
    pub fn new(secrets: Vec<[u8; 16]>) -> Self {
        assert!(!secrets.is_empty(), "at least one cookie secret");
        Self { secrets }
    }

    /// SipHash-2-4 of the client cookie, the first 8 bytes of the server cookie (version,
    /// reserved bytes as received, timestamp) and the client address (RFC 9018 §4.4).
    fn hash(secret: &[u8; 16], client: &[u8], head: &[u8], ip: IpAddr) -> [u8; 8] {
        let mut h = SipHasher24::new_with_key(secret);
        h.write(&client[..CLIENT_LEN]);
        h.write(&head[..8]);
        match ip {
            IpAddr::V4(a) => h.write(&a.octets()),
            IpAddr::V6(a) => match a.to_ipv4_mapped() {
                Some(v4) => h.write(&v4.octets()),
                None => h.write(&a.octets()),
            },
        }
        h.finish().to_le_bytes()
    }

    /// A new server cookie: version 1, reserved bytes zero, the time, the hash.
    fn make(secret: &[u8; 16], client: &[u8], ip: IpAddr, now: u32) -> [u8; SERVER_LEN] {
        let mut out = [0u8; SERVER_LEN];
        out[0] = 1;
        out[4..8].copy_from_slice(&now.to_be_bytes());
        let hash = Self::hash(secret, client, &out[..8], ip);
        out[8..].copy_from_slice(&hash);
        out
    }

    /// Judge a well-formed COOKIE option (see [`well_formed`]) from `ip` at Unix time `now`,
    /// and the option to answer with.
    pub fn process(&self, data: &[u8], ip: IpAddr, now: u32) -> Outcome {
        let client = &data[..CLIENT_LEN];
        let mut reply = [0u8; REPLY_LEN];
        reply[..CLIENT_LEN].copy_from_slice(client);
        let fresh = |reply: &mut [u8; REPLY_LEN]| {
            reply[CLIENT_LEN..].copy_from_slice(&Self::make(&self.secrets[0], client, ip, now));
        };
        if data.len() == CLIENT_LEN {
            fresh(&mut reply);
            return Outcome {
                state: State::ClientOnly,
                reply,
            };
        }
        let server = &data[CLIENT_LEN..];
        let ts = |s: &[u8]| u32::from_be_bytes([s[4], s[5], s[6], s[7]]);
        // Another implementation may set the reserved bytes: they are hashed as received.
        let valid = server.len() == SERVER_LEN
            && server[0] == 1
            && (-MAX_AHEAD..=MAX_AGE).contains(&age(now, ts(server)))
            && self
                .secrets
                .iter()
                .any(|s| Self::hash(s, client, &server[..8], ip) == server[8..]);
        if !valid {
            fresh(&mut reply);
            return Outcome {
                state: State::Invalid,
                reply,
            };
        }
        if (0..REFRESH_AGE).contains(&age(now, ts(server))) && server[1..4] == [0, 0, 0] {
            reply[CLIENT_LEN..].copy_from_slice(server);
        } else {
            fresh(&mut reply);
        }
        Outcome {
            state: State::Valid,
            reply,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn unhex(s: &str) -> Vec<u8> {
        hex::decode(s).unwrap()
    }

    fn secret() -> [u8; 16] {
        unhex("e5e973e5a6b2a43f48e7dc849e37bfcf")
            .try_into()
            .unwrap()
    }

    /// RFC 9018 appendix A: the server cookies of its examples.
    #[test]
    fn rfc9018_test_vectors() {
        let c = Cookies::new(vec![secret()]);
        // A.1: a client learns a new server cookie.
        let o = c.process(
            &unhex("2464c4abcf10c957"),
            "198.51.100.100".parse().unwrap(),
            1559731985,
        );
        assert_eq!(o.state, State::ClientOnly);
        assert_eq!(
            hex::encode(o.reply),
            "2464c4abcf10c957010000005cf79f111f8130c3eee29480"
        );
        // A.2: the same client, 40 minutes later, gets a fresh one.
        let o = c.process(
            &unhex("2464c4abcf10c957010000005cf79f111f8130c3eee29480"),
            "198.51.100.100".parse().unwrap(),
            1559734385,
        );
        assert_eq!(o.state, State::Valid);
        assert_eq!(
            hex::encode(o.reply),
            "2464c4abcf10c957010000005cf7a871d4a564a1442aca77"
        );
        // A.3: another implementation's cookie, with reserved bytes set: valid (the bytes
        // are hashed as received) while young; expired at the time of the example, so a
        // fresh one with zero reserved bytes is returned.
        let a3 = unhex("fc93fc62807ddb8601abcdef5cf78f71a314227b6679ebf5");
        let ip3: IpAddr = "203.0.113.203".parse().unwrap();
        let young = c.process(&a3, ip3, 1559727985 + 60);
        assert_eq!(young.state, State::Valid);
        assert_ne!(
            young.reply[..],
            a3[..],
            "re-issued with zero reserved bytes"
        );
        let o = c.process(&a3, ip3, 1559734700);
        assert_eq!(o.state, State::Invalid);
        assert_eq!(
            hex::encode(o.reply),
            "fc93fc62807ddb86010000005cf7a9acf73a7810aca2381e"
        );
        // A.4: IPv6, after the secret rolled over.
        let c4 = Cookies::new(vec![
            unhex("445536bcd2513298075a5d379663c962")
                .try_into()
                .unwrap(),
        ]);
        let o = c4.process(
            &unhex("22681ab97d52c298"),
            "2001:db8:220:1:59de:d0f4:8769:82b8".parse().unwrap(),
            1559741961,
        );
        assert_eq!(
            hex::encode(o.reply),
            "22681ab97d52c298010000005cf7c609a6bb79d16625507a"
        );
    }

    #[test]
    fn validity_rules() {
        let ip: IpAddr = "192.0.2.1".parse().unwrap();
        let c = Cookies::new(vec![secret()]);
        let now = 1_700_000_000;
        let first = c.process(b"abcdefgh", ip, now).reply;
        // Valid and young: the same cookie comes back.
        let o = c.process(&first, ip, now + 60);
        assert_eq!((o.state, o.reply), (State::Valid, first));
        // Another address, another client cookie, a flipped bit: invalid.
        assert_eq!(
            c.process(&first, "192.0.2.2".parse().unwrap(), now).state,
            State::Invalid
        );
        let mut other = first;
        other[0] ^= 1;
        assert_eq!(c.process(&other, ip, now).state, State::Invalid);
        let mut flipped = first;
        flipped[23] ^= 1;
        assert_eq!(c.process(&flipped, ip, now).state, State::Invalid);
        // Too old, or too far ahead.
        assert_eq!(c.process(&first, ip, now + 3601).state, State::Invalid);
        assert_eq!(c.process(&first, ip, now - 301).state, State::Invalid);
        // Older than half an hour: valid, re-issued.
        let o = c.process(&first, ip, now + 2000);
        assert_eq!(o.state, State::Valid);
        assert_ne!(o.reply, first);
        // Another node with the secret among its previous ones accepts it.
        let rotated = Cookies::new(vec![[7; 16], secret()]);
        assert_eq!(rotated.process(&first, ip, now).state, State::Valid);
        assert_eq!(
            Cookies::new(vec![[7; 16]]).process(&first, ip, now).state,
            State::Invalid
        );
        // Server cookies that are not ours (other lengths) are invalid, not errors.
        let mut long = first.to_vec();
        long.extend_from_slice(&[0; 8]);
        assert_eq!(c.process(&long, ip, now).state, State::Invalid);
    }

    #[test]
    fn lengths() {
        for ok in [8, 16, 24, 40] {
            assert!(well_formed(&vec![0; ok]).is_ok(), "{ok}");
        }
        for bad in [0, 1, 7, 9, 15, 41, 100] {
            assert!(well_formed(&vec![0; bad]).is_err(), "{bad}");
        }
    }
}
