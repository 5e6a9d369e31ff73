//! Resolve a name for a given client without a server: the answer, where the client was
//! placed, and the ECS scope. Used by `steerd resolve` (and later by the admin API).

use std::fmt;
use std::net::IpAddr;

use hickory_proto::op::ResponseCode;
use hickory_proto::rr::{DNSClass, Name, RecordType};

use crate::dns::answer::{self, AnswerFor};
use crate::geo::{GeoData, LocSource, Location};
use crate::table::{ClientAddr, RoutingTable};

/// A client as given on the command line: `ADDR` (a resolver) or `ADDR/PREFIX` (an ECS subnet).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ClientSpec {
    pub addr: IpAddr,
    /// Source prefix when the client stands for an ECS subnet.
    pub ecs_prefix: Option<u8>,
}

impl std::str::FromStr for ClientSpec {
    type Err = String;
    fn from_str(s: &str) -> Result<Self, String> {
        let (a, p) = match s.split_once('/') {
            Some((a, p)) => (a, Some(p)),
            None => (s, None),
        };
        let addr: IpAddr = a
            .parse()
            .map_err(|_| format!("\"{a}\" is not an IP address"))?;
        let max = if addr.is_ipv4() { 32 } else { 128 };
        let ecs_prefix = match p {
            None => None,
            Some(p) => match p.parse::<u8>() {
                Ok(n) if n <= max => Some(n),
                _ => return Err(format!("\"{p}\" is not a prefix length 0-{max}")),
            },
        };
        // Like an ECS option: the address is truncated to the prefix. With prefix 0 the query is
        // located by the resolver, so the address stays whole and stands for the resolver.
        let addr = match ecs_prefix.filter(|n| *n > 0) {
            Some(n) => ipnet::IpNet::new(addr, n).map_or(addr, |net| net.network()),
            None => addr,
        };
        Ok(Self { addr, ecs_prefix })
    }
}

/// The outcome of a resolution, printable for operators.
#[derive(Debug, Clone)]
pub struct Resolution {
    pub name: Name,
    pub qtype: RecordType,
    pub client: ClientSpec,
    /// How the query was located: "ECS" or "resolver" (an ECS prefix of 0 means the resolver).
    pub located_by: &'static str,
    pub location: Location,
    pub location_source: LocSource,
    pub rcode: ResponseCode,
    pub authoritative: bool,
    pub answers: Vec<String>,
    pub authority: Vec<String>,
    pub additional: Vec<String>,
    /// Steered service and the target it picked.
    pub steered: Option<(String, String)>,
    /// The ECS scope a response would carry (only for ECS clients).
    pub scope: Option<u8>,
}

/// Resolve `name`/`qtype` for `client` against a compiled table and its geo data.
pub fn resolve(
    table: &RoutingTable,
    geo: &GeoData,
    client: ClientSpec,
    name: &Name,
    qtype: RecordType,
) -> Resolution {
    let from_ecs = client.ecs_prefix.is_some_and(|p| p > 0);
    let ca = ClientAddr {
        ip: client.addr,
        from_ecs,
    };
    let (location, location_source) = geo.locate(client.addr);
    let reply = answer::answer(table, name, qtype, DNSClass::IN, AnswerFor::Client(ca));
    let steered = reply.service.map(|si| {
        let svc = &table.services[si as usize];
        (
            svc.name.to_string(),
            svc.answers[reply.variant].target.clone(),
        )
    });
    let show = |v: &[&hickory_proto::rr::Record]| v.iter().map(|r| r.to_string()).collect();
    Resolution {
        name: name.clone(),
        qtype,
        client,
        located_by: if from_ecs { "ECS" } else { "resolver" },
        location,
        location_source,
        rcode: reply.rcode,
        authoritative: reply.authoritative,
        answers: show(&reply.answers),
        authority: show(&reply.authority),
        additional: show(&reply.additional),
        steered,
        scope: client
            .ecs_prefix
            .map(|p| if p == 0 { 0 } else { reply.scope }),
    }
}

impl fmt::Display for Resolution {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        writeln!(f, "query:     {} {}", self.name, self.qtype)?;
        match self.client.ecs_prefix {
            Some(0) => writeln!(
                f,
                "client:    {} (resolver address; ECS with source prefix 0)",
                self.client.addr
            )?,
            Some(p) => writeln!(f, "client:    {}/{p} (ECS subnet)", self.client.addr)?,
            None => writeln!(f, "client:    {} (resolver address)", self.client.addr)?,
        }
        let src = match self.location_source {
            LocSource::Database => "database",
            LocSource::NetsOverride => "nets override",
            LocSource::Unknown => "not found: default region",
        };
        write!(
            f,
            "location:  country {}, continent {} (located by {}, source: {src})",
            self.location.country_str(),
            self.location.continent_str(),
            self.located_by,
        )?;
        if let Some((lat, lon)) = self.location.coords {
            write!(f, ", at {lat:.2},{lon:.2}")?;
        }
        writeln!(f)?;
        writeln!(
            f,
            "response:  {}{}",
            rcode_mnemonic(self.rcode),
            if self.authoritative {
                ", authoritative"
            } else {
                ""
            }
        )?;
        for (label, set) in [
            ("answer", &self.answers),
            ("authority", &self.authority),
            ("additional", &self.additional),
        ] {
            for r in set {
                writeln!(f, "  {label:<10} {r}")?;
            }
        }
        if let Some((svc, target)) = &self.steered {
            writeln!(f, "steering:  {svc} → target {target}")?;
        }
        match self.scope {
            Some(s) => writeln!(f, "ecs scope: /{s}"),
            None => writeln!(f, "ecs scope: - (no ECS in this query)"),
        }
    }
}

/// The response code as dig and the RFCs spell it (RFC 6895 §2.3): `NOERROR`, `NXDOMAIN`, …
pub fn rcode_mnemonic(code: ResponseCode) -> String {
    let n = u16::from(code);
    let name = match n {
        0 => "NOERROR",
        1 => "FORMERR",
        2 => "SERVFAIL",
        3 => "NXDOMAIN",
        4 => "NOTIMP",
        5 => "REFUSED",
        6 => "YXDOMAIN",
        7 => "YXRRSET",
        8 => "NXRRSET",
        9 => "NOTAUTH",
        10 => "NOTZONE",
        11 => "DSOTYPENI",
        16 => "BADVERS",
        23 => "BADCOOKIE",
        _ => return format!("RCODE{n}"),
    };
    name.to_string()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn client_specs_parse_and_truncate_like_ecs() {
        let c: ClientSpec = "81.2.69.160/24".parse().unwrap();
        assert_eq!(c.addr, "81.2.69.0".parse::<IpAddr>().unwrap());
        assert_eq!(c.ecs_prefix, Some(24));
        let c: ClientSpec = "2001:db8::1".parse().unwrap();
        assert_eq!(c.ecs_prefix, None);
        let c: ClientSpec = "10.1.2.3/0".parse().unwrap();
        assert_eq!(c.addr, "10.1.2.3".parse::<IpAddr>().unwrap());
        assert!("10.0.0.1/33".parse::<ClientSpec>().is_err());
        assert!("nope".parse::<ClientSpec>().is_err());
    }

    #[test]
    fn rcodes_are_spelled_as_dig_does() {
        use hickory_proto::op::ResponseCode;
        assert_eq!(rcode_mnemonic(ResponseCode::NoError), "NOERROR");
        assert_eq!(rcode_mnemonic(ResponseCode::NXDomain), "NXDOMAIN");
        assert_eq!(rcode_mnemonic(ResponseCode::ServFail), "SERVFAIL");
        assert_eq!(rcode_mnemonic(ResponseCode::Refused), "REFUSED");
        assert_eq!(rcode_mnemonic(ResponseCode::BADVERS), "BADVERS");
        assert_eq!(rcode_mnemonic(ResponseCode::Unknown(4000)), "RCODE4000");
    }
}
