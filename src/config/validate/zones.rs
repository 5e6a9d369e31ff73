//! `[[zones]]`: apex names, SOA and NS, the static records and the rules between them (CNAME
//! alone at its name, delegations, RRset size, CNAME loops).

use std::collections::{BTreeMap, HashMap};
use std::net::{IpAddr, Ipv4Addr};

use hickory_proto::rr::rdata::{A, AAAA, CNAME, MX, NS, SOA, TXT};
use hickory_proto::rr::{Name, RData, Record, RecordType};

use crate::config::issues::{Context, Issues, check_labels, excerpt, name_at, parse_name, ttl};
use crate::config::schema::{Config, RecordConfig, SoaConfig, ZoneConfig};
use crate::config::valid::StaticZone;

/// The zones that passed, each with its position in the file, and every valid apex (to find
/// the zone of a name even when its zone has other errors).
pub(super) struct Zones {
    apexes: Vec<(usize, Name)>,
    valid: Vec<(usize, StaticZone)>,
}

impl Zones {
    /// Position of the most specific zone containing `name`.
    pub(super) fn zone_for(&self, name: &Name) -> Option<usize> {
        most_specific(&self.apexes, name)
    }

    /// The zone at position `i` in the file, when it passed.
    pub(super) fn get(&self, i: usize) -> Option<&StaticZone> {
        self.valid.iter().find(|(k, _)| *k == i).map(|(_, z)| z)
    }

    /// The zones, in file order (every one of them when there was no issue).
    pub(super) fn into_vec(self) -> Vec<StaticZone> {
        self.valid.into_iter().map(|(_, z)| z).collect()
    }
}

fn most_specific(apexes: &[(usize, Name)], name: &Name) -> Option<usize> {
    apexes
        .iter()
        .filter(|(_, apex)| apex.zone_of(name))
        .max_by_key(|(_, apex)| apex.num_labels())
        .map(|(i, _)| *i)
}

/// `[[zones]]` (and a served configuration's need of one).
pub(super) fn validate(cfg: &Config, ctx: &Context, issues: &mut Issues) -> Zones {
    if ctx.serve && cfg.zones.is_empty() && !cfg.allow_no_zones {
        issues.push(
            "zones",
            "no zone: this configuration would answer every query REFUSED; add a [[zones]] \
             table, or set `allow_no_zones = true` (at the top of the file) to serve nothing on \
             purpose",
        );
    }

    // Apex names first, so records can be checked against every zone.
    let mut apexes: Vec<Option<Name>> = Vec::new();
    let mut seen_zone: HashMap<Name, usize> = HashMap::new();
    for (i, z) in cfg.zones.iter().enumerate() {
        match parse_name(&z.name) {
            Ok(n) if n.is_root() => {
                issues.push(format!("zones[{i}].name"), "the root zone cannot be served");
                apexes.push(None);
            }
            Ok(n) => {
                if let Some(j) = seen_zone.insert(n.clone(), i) {
                    issues.push(
                        format!("zones[{i}].name"),
                        format!("duplicate zone \"{n}\" (also zones[{j}])"),
                    );
                }
                apexes.push(Some(n));
            }
            Err(e) => {
                issues.push(format!("zones[{i}].name"), e);
                apexes.push(None);
            }
        }
    }
    let known: Vec<(usize, Name)> = apexes
        .iter()
        .enumerate()
        .filter_map(|(i, a)| a.clone().map(|a| (i, a)))
        .collect();

    let mut valid = Vec::new();
    for (i, z) in cfg.zones.iter().enumerate() {
        let Some(apex) = apexes[i].clone() else {
            continue;
        };
        if let Some(zone) = zone(i, z, apex, &known, issues) {
            valid.push((i, zone));
        }
    }

    // A zone cannot start below a delegation of a less specific zone we also serve.
    for (i, z) in &valid {
        for (j, other) in &valid {
            if let Some(cut) = other
                .cuts
                .iter()
                .find(|c| **c != z.apex && c.zone_of(&z.apex))
            {
                issues.push(
                    format!("zones[{i}].name"),
                    format!(
                        "\"{}\" is below the delegation \"{cut}\" of zones[{j}]: serve it from the delegated servers, or remove the delegation",
                        z.apex
                    ),
                );
            }
        }
    }
    Zones {
        apexes: known,
        valid,
    }
}

/// One zone, `zones[i]`; `known` holds every valid apex.
fn zone(
    i: usize,
    z: &ZoneConfig,
    apex: Name,
    known: &[(usize, Name)],
    issues: &mut Issues,
) -> Option<StaticZone> {
    let f = format!("zones[{i}]");
    let before = issues.len();
    let soa_ttl = ttl(z.soa.ttl, format!("{f}.soa.ttl"), issues);
    let ns_ttl = ttl(z.ns_ttl, format!("{f}.ns_ttl"), issues);
    let default_ttl = ttl(z.default_ttl, format!("{f}.default_ttl"), issues);
    let soa = soa(&z.soa, &apex, soa_ttl, &f, issues);
    if z.ns.is_empty() {
        issues.push(format!("{f}.ns"), "a zone needs at least one name server");
    }
    let mut ns = Vec::new();
    for (k, n) in z.ns.iter().enumerate() {
        match parse_name(n) {
            Ok(n) => {
                let rec = Record::from_rdata(apex.clone(), ns_ttl, RData::NS(NS(n)));
                if ns.contains(&rec) {
                    issues.push(format!("{f}.ns[{k}]"), "duplicate name server");
                } else {
                    ns.push(rec);
                }
            }
            Err(e) => issues.push(format!("{f}.ns[{k}]"), e),
        }
    }

    let mut sets = RRsets::default();
    for (k, r) in z.records.iter().enumerate() {
        let rf = format!("{f}.records[{k}]");
        let Some(owner) = owner_name(&r.name, &apex, &format!("{rf}.name"), issues) else {
            continue;
        };
        if !apex.zone_of(&owner) {
            issues.push(
                format!("{rf}.name"),
                format!("\"{owner}\" is outside the zone \"{apex}\""),
            );
            continue;
        }
        if let Some(zi) = most_specific(known, &owner)
            && zi != i
        {
            issues.push(
                format!("{rf}.name"),
                format!(
                    "\"{owner}\" belongs to the more specific zone zones[{zi}]; configure it there"
                ),
            );
            continue;
        }
        let ttl = ttl(r.ttl.unwrap_or(default_ttl), format!("{rf}.ttl"), issues);
        let Some((rtype, rdatas)) = parse_rdata(r, &rf, issues) else {
            continue;
        };
        if owner == apex && rtype == RecordType::NS {
            issues.push(
                format!("{rf}.type"),
                format!("apex NS records come from {f}.ns, not from records"),
            );
            continue;
        }
        sets.add(owner, rtype, ttl, rdatas, rf, issues);
    }
    sets.check_cnames(&apex, issues);
    let cuts = sets.check_delegations(&apex, issues);
    sets.check_sizes(issues);
    sets.check_cname_loops(issues);

    if issues.len() != before {
        return None;
    }
    Some(StaticZone {
        apex,
        soa: soa?,
        ns,
        rrsets: sets.sets,
        cuts,
    })
}

/// `zones[i].soa` (field prefix `f`): the SOA record, when its names parse.
fn soa(s: &SoaConfig, apex: &Name, ttl: u32, f: &str, issues: &mut Issues) -> Option<Record> {
    let mname = name_at(&s.mname, format!("{f}.soa.mname"), issues);
    let rname = name_at(&s.rname, format!("{f}.soa.rname"), issues);
    for (k, v) in [
        ("refresh", s.refresh),
        ("retry", s.retry),
        ("expire", s.expire),
    ] {
        if v > i32::MAX as u32 {
            issues.push(
                format!("{f}.soa.{k}"),
                format!("must be at most {} (got {v})", i32::MAX),
            );
        }
    }
    Some(Record::from_rdata(
        apex.clone(),
        ttl,
        RData::SOA(SOA::new(
            mname?,
            rname?,
            s.serial,
            s.refresh as i32,
            s.retry as i32,
            s.expire as i32,
            s.minimum,
        )),
    ))
}

/// A zone's static RRsets, with the field of the first record of each (where rules between
/// records report).
#[derive(Default)]
struct RRsets {
    /// owner → type → records
    sets: BTreeMap<Name, BTreeMap<RecordType, Vec<Record>>>,
    first_field: HashMap<(Name, RecordType), String>,
}

impl RRsets {
    /// Add the records of `records[k]` (field `rf`): no duplicate, one TTL per RRset.
    fn add(
        &mut self,
        owner: Name,
        rtype: RecordType,
        ttl: u32,
        rdatas: Vec<RData>,
        rf: String,
        issues: &mut Issues,
    ) {
        let set = self
            .sets
            .entry(owner.clone())
            .or_default()
            .entry(rtype)
            .or_default();
        self.first_field
            .entry((owner.clone(), rtype))
            .or_insert(rf.clone());
        for (d, rdata) in rdatas.into_iter().enumerate() {
            let rec = Record::from_rdata(owner.clone(), ttl, rdata);
            if set.iter().any(|x| x.data == rec.data) {
                issues.push(format!("{rf}.data[{d}]"), "duplicate record");
                continue;
            }
            if let Some(first) = set.first()
                && first.ttl != ttl
            {
                issues.push(
                    format!("{rf}.ttl"),
                    format!(
                        "TTL {ttl} differs from the TTL {} of the same {rtype} set at \"{owner}\" (RFC 2181 §5.2)",
                        first.ttl
                    ),
                );
                continue;
            }
            set.push(rec);
        }
    }

    fn field(&self, owner: &Name, rtype: RecordType) -> &str {
        &self.first_field[&(owner.clone(), rtype)]
    }

    /// A CNAME is alone at its name, one record, not at the apex.
    fn check_cnames(&self, apex: &Name, issues: &mut Issues) {
        for (owner, types) in &self.sets {
            let Some(cnames) = types.get(&RecordType::CNAME) else {
                continue;
            };
            let field = self.field(owner, RecordType::CNAME);
            if owner == apex {
                issues.push(
                    format!("{field}.name"),
                    "CNAME at the zone apex is not allowed (it would sit beside SOA and NS)",
                );
            }
            if cnames.len() > 1 {
                issues.push(
                    format!("{field}.data"),
                    "a name can hold only one CNAME record",
                );
            }
            if types.len() > 1 {
                let others: Vec<String> = types
                    .keys()
                    .filter(|t| **t != RecordType::CNAME)
                    .map(ToString::to_string)
                    .collect();
                issues.push(
                    format!("{field}.type"),
                    format!(
                        "CNAME beside other data: \"{owner}\" also has {} record(s)",
                        others.join("/")
                    ),
                );
            }
        }
    }

    /// NS below the apex makes a cut: only NS at the cut, only glue below it. Returns the cuts.
    fn check_delegations(&self, apex: &Name, issues: &mut Issues) -> Vec<Name> {
        let cuts: Vec<Name> = self
            .sets
            .iter()
            .filter(|(n, t)| *n != apex && t.contains_key(&RecordType::NS))
            .map(|(n, _)| n.clone())
            .collect();
        for (owner, types) in &self.sets {
            for cut in &cuts {
                if !cut.zone_of(owner) {
                    continue;
                }
                if owner == cut {
                    for t in types.keys().filter(|t| **t != RecordType::NS) {
                        issues.push(
                            format!("{}.type", self.field(owner, *t)),
                            format!("{t} beside NS at the delegation point \"{cut}\""),
                        );
                    }
                } else {
                    for t in types
                        .keys()
                        .filter(|t| !matches!(t, RecordType::A | RecordType::AAAA))
                    {
                        issues.push(
                            format!("{}.name", self.field(owner, *t)),
                            format!(
                                "\"{owner}\" is below the delegation \"{cut}\": only glue A/AAAA records are allowed there"
                            ),
                        );
                    }
                }
            }
        }
        cuts
    }

    /// An RRset must fit in one DNS message (64 KiB, even over TCP).
    fn check_sizes(&self, issues: &mut Issues) {
        for (owner, types) in &self.sets {
            for (t, recs) in types {
                let size: usize = recs
                    .iter()
                    .map(|r| {
                        let rdata = match &r.data {
                            RData::TXT(txt) => txt.txt_data.iter().map(|s| s.len() + 1).sum(),
                            RData::CAA(_) => 512,
                            _ => 256,
                        };
                        owner.len() + 10 + rdata
                    })
                    .sum();
                if size > 60_000 {
                    issues.push(
                        format!("{}.data", self.field(owner, *t)),
                        format!(
                            "the {t} set at \"{owner}\" is about {size} bytes: an answer must fit in one 64 KiB DNS message"
                        ),
                    );
                }
            }
        }
    }

    /// CNAME chains inside the zone must end.
    fn check_cname_loops(&self, issues: &mut Issues) {
        for (owner, types) in &self.sets {
            if !types.contains_key(&RecordType::CNAME) {
                continue;
            }
            let mut seen = vec![owner.clone()];
            let mut cur = owner.clone();
            while let Some(RData::CNAME(next)) = self
                .sets
                .get(&cur)
                .and_then(|t| t.get(&RecordType::CNAME))
                .and_then(|v| v.first())
                .map(|r| &r.data)
            {
                if seen.contains(&next.0) {
                    issues.push(
                        format!("{}.data", self.field(owner, RecordType::CNAME)),
                        format!(
                            "CNAME loop: {}",
                            seen.iter()
                                .chain(std::iter::once(&next.0))
                                .map(ToString::to_string)
                                .collect::<Vec<_>>()
                                .join(" → ")
                        ),
                    );
                    break;
                }
                seen.push(next.0.clone());
                cur = next.0.clone();
            }
        }
    }
}

/// A record's owner: `@`, relative to the apex, or absolute.
fn owner_name(s: &str, apex: &Name, field: &str, issues: &mut Issues) -> Option<Name> {
    let t = s.trim();
    if t.split('.').any(|l| l == "*") {
        issues.push(
            field,
            format!("\"{s}\": wildcard records are not supported; list each name explicitly"),
        );
        return None;
    }
    if t == "@" {
        return Some(apex.clone());
    }
    if t.ends_with('.') {
        return name_at(t, field, issues);
    }
    if t.is_empty() {
        issues.push(field, "empty owner name (use \"@\" for the zone apex)");
        return None;
    }
    let rel = match Name::from_ascii(t) {
        Ok(n) => n,
        Err(e) => {
            issues.push(
                field,
                format!("\"{}\" is not a valid domain name: {e}", excerpt(s)),
            );
            return None;
        }
    };
    if let Err(e) = check_labels(&rel, t) {
        issues.push(field, e);
        return None;
    }
    match rel.append_domain(apex) {
        Ok(n) => Some(n.to_lowercase()),
        Err(e) => {
            issues.push(
                field,
                format!(
                    "\"{}\" under \"{apex}\" is not a valid name: {e}",
                    excerpt(s)
                ),
            );
            None
        }
    }
}

/// A record's type and values.
fn parse_rdata(
    r: &RecordConfig,
    rf: &str,
    issues: &mut Issues,
) -> Option<(RecordType, Vec<RData>)> {
    let rtype = match r.rtype.trim().to_ascii_uppercase().as_str() {
        "A" => RecordType::A,
        "AAAA" => RecordType::AAAA,
        "CNAME" => RecordType::CNAME,
        "TXT" => RecordType::TXT,
        "MX" => RecordType::MX,
        "CAA" => RecordType::CAA,
        "NS" => RecordType::NS,
        "SOA" => {
            issues.push(
                format!("{rf}.type"),
                "the SOA record comes from the zone's [zones.soa] table",
            );
            return None;
        }
        other => {
            issues.push(
                format!("{rf}.type"),
                format!(
                    "unsupported record type \"{other}\" (supported: A, AAAA, CNAME, TXT, MX, CAA, NS)"
                ),
            );
            return None;
        }
    };
    if r.data.is_empty() {
        issues.push(format!("{rf}.data"), "at least one value is needed");
        return None;
    }
    let mut out = Vec::new();
    let before = issues.len();
    for (d, v) in r.data.iter().enumerate() {
        let df = format!("{rf}.data[{d}]");
        let v = v.as_str();
        let parsed: Result<RData, String> = match rtype {
            RecordType::A => v
                .trim()
                .parse::<Ipv4Addr>()
                .map(|ip| RData::A(A(ip)))
                .map_err(|_| format!("\"{v}\" is not a valid IPv4 address")),
            RecordType::AAAA => match v.trim().parse::<IpAddr>() {
                Ok(IpAddr::V6(ip)) => Ok(RData::AAAA(AAAA(ip))),
                _ => Err(format!("\"{v}\" is not a valid IPv6 address")),
            },
            RecordType::CNAME => parse_name(v).map(|n| RData::CNAME(CNAME(n))),
            RecordType::NS => parse_name(v).map(|n| RData::NS(NS(n))),
            RecordType::MX => {
                let mut it = v.split_whitespace();
                match (it.next(), it.next(), it.next()) {
                    (Some(p), Some(host), None) => match p.parse::<u16>() {
                        Ok(p) => parse_name(host).map(|h| RData::MX(MX::new(p, h))),
                        Err(_) => Err(format!("MX preference \"{p}\" is not a number 0-65535")),
                    },
                    _ => Err(format!(
                        "\"{v}\" is not an MX value: expected \"PREFERENCE HOST\", e.g. \"10 mail.example.com\""
                    )),
                }
            }
            RecordType::TXT => {
                if v.len() > 4000 {
                    Err("TXT value longer than 4000 bytes".to_string())
                } else {
                    // Long texts are split into 255-byte character-strings (RFC 1035 §3.3.14).
                    let bytes = v.as_bytes();
                    let mut parts = Vec::new();
                    let mut start = 0;
                    while start < bytes.len() || parts.is_empty() {
                        let mut end = (start + 255).min(bytes.len());
                        while !v.is_char_boundary(end) {
                            end -= 1;
                        }
                        parts.push(v[start..end].to_string());
                        start = end;
                    }
                    Ok(RData::TXT(TXT::new(parts)))
                }
            }
            RecordType::CAA => RData::try_from_str(RecordType::CAA, v)
                .map_err(|e| {
                    format!("\"{v}\" is not a CAA value (FLAGS TAG \"VALUE\", e.g. 0 issue \"letsencrypt.org\"): {e}")
                }),
            _ => unreachable!(),
        };
        match parsed {
            Ok(rd) => out.push(rd),
            Err(e) => issues.push(df, e),
        }
    }
    (issues.len() == before).then_some((rtype, out))
}
