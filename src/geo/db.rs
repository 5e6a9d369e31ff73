//! A MaxMind DB file read into a partition of the address space. Reads the MaxMind schema
//! (`country.iso_code`, `registered_country.iso_code`, `continent.code`, `location.latitude`/
//! `longitude`) and the flat schema of the shipped CC0 database (`country_code`).

use std::collections::HashMap;
use std::net::IpAddr;
use std::path::{Path, PathBuf};

use maxminddb::{Reader, WithinOptions};
use serde::Deserialize;

use super::{CountryTable, Location, Range};

#[derive(Deserialize, Default)]
struct Names<'a> {
    #[serde(borrow)]
    iso_code: Option<&'a str>,
}

#[derive(Deserialize, Default)]
struct Continent<'a> {
    #[serde(borrow)]
    code: Option<&'a str>,
}

#[derive(Deserialize, Default)]
struct Coords {
    latitude: Option<f64>,
    longitude: Option<f64>,
}

/// The fields of either schema that we use; everything else is ignored.
#[derive(Deserialize, Default)]
struct Record<'a> {
    #[serde(borrow)]
    country_code: Option<&'a str>,
    #[serde(borrow)]
    country: Option<Names<'a>>,
    #[serde(borrow)]
    registered_country: Option<Names<'a>>,
    #[serde(borrow)]
    continent: Option<Continent<'a>>,
    location: Option<Coords>,
}

fn code2(s: Option<&str>) -> Option<[u8; 2]> {
    let b = s?.as_bytes();
    (b.len() == 2).then(|| [b[0].to_ascii_uppercase(), b[1].to_ascii_uppercase()])
}

impl Record<'_> {
    fn location(&self, countries: &CountryTable) -> Location {
        let country = code2(self.country_code)
            .or_else(|| code2(self.country.as_ref().and_then(|c| c.iso_code)))
            .or_else(|| code2(self.registered_country.as_ref().and_then(|c| c.iso_code)));
        let info = country.and_then(|c| countries.get(c));
        let continent =
            code2(self.continent.as_ref().and_then(|c| c.code)).or(info.map(|i| i.continent));
        let coords = match &self.location {
            Some(Coords {
                latitude: Some(lat),
                longitude: Some(lon),
            }) => Some((*lat, *lon)),
            _ => info.and_then(|i| i.coords),
        };
        Location {
            country,
            continent,
            coords,
        }
    }
}

/// A loaded database: metadata and the partition of both address families.
#[derive(Debug)]
pub struct GeoDb {
    pub path: PathBuf,
    pub database_type: String,
    pub build_epoch: u64,
    /// Location 0 is "unknown".
    pub locations: Vec<Location>,
    pub v4: Vec<Range>,
    pub v6: Vec<Range>,
}

impl GeoDb {
    /// Open and fully read a database; any structural problem is an error (the caller keeps
    /// the previous database).
    pub fn open(path: &Path, countries: &CountryTable) -> Result<Self, String> {
        let ctx = |e: &dyn std::fmt::Display| format!("{}: {e}", path.display());
        let bytes = std::fs::read(path).map_err(|e| ctx(&e))?;
        Self::from_bytes(path, bytes, countries)
    }

    pub fn from_bytes(
        path: &Path,
        bytes: Vec<u8>,
        countries: &CountryTable,
    ) -> Result<Self, String> {
        let ctx = |e: &dyn std::fmt::Display| format!("{}: {e}", path.display());
        let reader = Reader::from_source(bytes).map_err(|e| ctx(&e))?;
        let meta = reader.metadata();
        let (database_type, build_epoch, ip_version) = (
            meta.database_type.clone(),
            meta.build_epoch,
            meta.ip_version,
        );

        let mut locations = vec![Location::default()];
        let mut by_offset: HashMap<usize, u32> = HashMap::new();
        type LocKey = (Option<[u8; 2]>, Option<[u8; 2]>, Option<(u64, u64)>);
        let mut by_location: HashMap<LocKey, u32> = HashMap::new();
        let mut read = |cidr: &str, skip_v4_in_v6: bool| -> Result<Vec<Range>, String> {
            let net: ipnetwork::IpNetwork = cidr.parse().expect("valid literal");
            let mut out: Vec<Range> = Vec::new();
            for item in reader
                .within(net, WithinOptions::default())
                .map_err(|e| ctx(&e))?
            {
                let item = item.map_err(|e| ctx(&e))?;
                let n = item.network().map_err(|e| ctx(&e))?;
                let (start, end) = match n {
                    ipnetwork::IpNetwork::V4(n) => (
                        u32::from(n.network()) as u128,
                        u32::from(n.broadcast()) as u128,
                    ),
                    ipnetwork::IpNetwork::V6(n) => {
                        let s = u128::from(n.network());
                        // The IPv4 subtree (::/96) is read separately as IPv4.
                        if skip_v4_in_v6 && s >> 32 == 0 {
                            continue;
                        }
                        (s, u128::from(n.broadcast()))
                    }
                };
                let Some(off) = item.offset() else { continue };
                let id = match by_offset.get(&off) {
                    Some(id) => *id,
                    None => {
                        let rec: Record = item.decode().map_err(|e| ctx(&e))?.unwrap_or_default();
                        let loc = rec.location(countries);
                        let id = if loc.country.is_none() && loc.continent.is_none() {
                            0
                        } else {
                            let key = (
                                loc.country,
                                loc.continent,
                                loc.coords.map(|(a, b)| (a.to_bits(), b.to_bits())),
                            );
                            *by_location.entry(key).or_insert_with(|| {
                                locations.push(loc);
                                locations.len() as u32 - 1
                            })
                        };
                        by_offset.insert(off, id);
                        id
                    }
                };
                if id == 0 {
                    continue;
                }
                match out.last_mut() {
                    Some(last) if last.loc == id && last.end.checked_add(1) == Some(start) => {
                        last.end = end
                    }
                    Some(last) if start <= last.end => {
                        return Err(ctx(&"networks out of order in the search tree"));
                    }
                    _ => out.push(Range {
                        start,
                        end,
                        loc: id,
                    }),
                }
            }
            Ok(out)
        };
        let v4 = read("0.0.0.0/0", false)?;
        let v6 = if ip_version == 6 {
            read("::/0", true)?
        } else {
            Vec::new()
        };
        if v4.is_empty() && v6.is_empty() {
            return Err(ctx(
                &"the database holds no network with a country or continent",
            ));
        }
        Ok(Self {
            path: path.to_path_buf(),
            database_type,
            build_epoch,
            locations,
            v4,
            v6,
        })
    }

    /// Number of ranges in both families.
    pub fn ranges(&self) -> usize {
        self.v4.len() + self.v6.len()
    }

    /// Location of an address in this database alone (no overrides).
    pub fn lookup(&self, ip: IpAddr) -> Location {
        let (ranges, x) = match ip {
            IpAddr::V4(a) => (&self.v4, u32::from(a) as u128),
            IpAddr::V6(a) => (&self.v6, u128::from(a)),
        };
        let i = ranges.partition_point(|r| r.start <= x);
        match ranges.get(i.wrapping_sub(1)) {
            Some(r) if x <= r.end => self.locations[r.loc as usize],
            _ => Location::default(),
        }
    }
}
