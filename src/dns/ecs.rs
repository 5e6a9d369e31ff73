//! EDNS Client Subnet (RFC 7871): strict parsing of the query option, and writing the response
//! option. Both DNS paths parse it from the raw bytes (`dns::query`), so they agree on what is
//! malformed.

use std::net::{IpAddr, Ipv4Addr, Ipv6Addr};

/// EDNS option code of ECS.
pub const OPTION_CODE: u16 = 8;

/// A valid ECS option from a query.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Ecs {
    /// 1 = IPv4, 2 = IPv6.
    pub family: u16,
    pub source_prefix: u8,
    /// The address (bits beyond the source prefix are zero).
    pub addr: IpAddr,
}

impl Ecs {
    /// Bytes of address the option carries: ceil(source / 8).
    pub fn addr_len(&self) -> usize {
        self.source_prefix.div_ceil(8) as usize
    }

    /// Length of the option data in a response.
    pub fn data_len(&self) -> usize {
        4 + self.addr_len()
    }

    /// Write the option (code, length, data) into `out`; the bytes written. `out` must hold
    /// `4 + data_len()` bytes.
    pub fn write_into(&self, scope: u8, out: &mut [u8]) -> usize {
        let n = self.addr_len();
        out[0..2].copy_from_slice(&OPTION_CODE.to_be_bytes());
        out[2..4].copy_from_slice(&(self.data_len() as u16).to_be_bytes());
        out[4..6].copy_from_slice(&self.family.to_be_bytes());
        out[6] = self.source_prefix;
        out[7] = scope;
        match self.addr {
            IpAddr::V4(a) => out[8..8 + n].copy_from_slice(&a.octets()[..n]),
            IpAddr::V6(a) => out[8..8 + n].copy_from_slice(&a.octets()[..n]),
        }
        8 + n
    }

    /// The address whose location steers the answer: the ECS address when its source prefix is
    /// above 0, else `None` (use the resolver's address).
    pub fn location_addr(&self) -> Option<IpAddr> {
        (self.source_prefix > 0).then_some(self.addr)
    }
}

/// Parse the data of an ECS option, enforcing RFC 7871 §6/§7.1: known family, source prefix
/// within the family, exactly ceil(source/8) address octets, no address bits set beyond the
/// source prefix, scope 0 in queries.
pub fn parse(data: &[u8]) -> Result<Ecs, &'static str> {
    if data.len() < 4 {
        return Err("ECS option shorter than 4 bytes");
    }
    let family = u16::from_be_bytes([data[0], data[1]]);
    let source = data[2];
    let scope = data[3];
    let addr = &data[4..];
    let max = match family {
        1 => 32,
        2 => 128,
        _ => return Err("ECS family is neither 1 (IPv4) nor 2 (IPv6)"),
    };
    if source > max {
        return Err("ECS source prefix longer than the address family allows");
    }
    if scope != 0 {
        return Err("ECS scope prefix must be 0 in queries");
    }
    let n = source.div_ceil(8) as usize;
    if addr.len() != n {
        return Err("ECS address length does not match the source prefix");
    }
    let mut buf = [0u8; 16];
    buf[..n].copy_from_slice(addr);
    if !source.is_multiple_of(8) && n > 0 && buf[n - 1] & (0xffu8 >> (source % 8)) != 0 {
        return Err("ECS address has bits set beyond the source prefix");
    }
    let addr = if family == 1 {
        IpAddr::V4(Ipv4Addr::new(buf[0], buf[1], buf[2], buf[3]))
    } else {
        IpAddr::V6(Ipv6Addr::from(buf))
    };
    Ok(Ecs {
        family,
        source_prefix: source,
        addr,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn valid_options_parse_and_write_back() {
        let e = parse(&[0, 1, 24, 0, 81, 2, 69]).unwrap();
        assert_eq!(e.addr, "81.2.69.0".parse::<IpAddr>().unwrap());
        assert_eq!(e.source_prefix, 24);
        let mut buf = [0u8; 16];
        assert_eq!(e.write_into(16, &mut buf), 11);
        assert_eq!(&buf[..11], &[0, 8, 0, 7, 0, 1, 24, 16, 81, 2, 69]);
        let e = parse(&[0, 2, 56, 0, 0x20, 1, 0xd, 0xb8, 0, 0, 0x10]).unwrap();
        assert_eq!(e.addr, "2001:db8:0:1000::".parse::<IpAddr>().unwrap());
        let zero = parse(&[0, 1, 0, 0]).unwrap();
        assert_eq!(zero.location_addr(), None);
        let e = parse(&[0, 1, 20, 0, 10, 1, 0x70]).unwrap();
        assert_eq!(e.addr, "10.1.112.0".parse::<IpAddr>().unwrap());
    }

    #[test]
    fn malformed_options_are_rejected() {
        assert!(parse(&[0, 1, 33, 0, 1, 2, 3, 4, 5]).is_err(), "prefix > 32");
        assert!(parse(&[0, 2, 129, 0]).is_err(), "prefix > 128");
        assert!(parse(&[0, 3, 8, 0, 1]).is_err(), "unknown family");
        assert!(
            parse(&[0, 1, 24, 0, 81, 2, 69, 1]).is_err(),
            "bits beyond prefix"
        );
        assert!(
            parse(&[0, 1, 20, 0, 10, 1, 0x71]).is_err(),
            "bits beyond /20"
        );
        assert!(parse(&[0, 1, 24, 0, 81, 2]).is_err(), "too few octets");
        assert!(parse(&[0, 1, 16, 0, 81, 2, 0]).is_err(), "too many octets");
        assert!(parse(&[0, 1, 24, 8, 81, 2, 69]).is_err(), "scope in query");
        assert!(parse(&[0, 1]).is_err(), "short");
    }
}
