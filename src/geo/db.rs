//! A MaxMind DB file read into a partition of the address space. Reads the MaxMind schema
//! (`country.iso_code`, `registered_country.iso_code`, `continent.code`, `location.latitude`/
//! `longitude`) and the flat schema of the shipped CC0 database (`country_code`).

use std::collections::HashMap;
use std::path::{Path, PathBuf};

use maxminddb::{Reader, WithinOptions};
use serde::Deserialize;

use super::runs::{Family, RangesBuilder, Runs};
use super::{CountryTable, Location};

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

/// A loaded database: metadata, its locations and (until [`super::GeoData`] takes them as its
/// partition) its networks as runs of location ids.
#[derive(Debug)]
pub struct GeoDb {
    pub path: PathBuf,
    pub database_type: String,
    pub build_epoch: u64,
    /// Location 0 is "unknown".
    pub locations: Vec<Location>,
    /// Merged networks with a location, both families.
    ranges: usize,
    pub(super) v4: Runs<u32>,
    pub(super) v6: Runs<u32>,
}

impl GeoDb {
    /// This database's description and locations, without its runs (they went to a partition).
    pub(super) fn without_runs(&self) -> Self {
        Self {
            path: self.path.clone(),
            database_type: self.database_type.clone(),
            build_epoch: self.build_epoch,
            locations: self.locations.clone(),
            ranges: self.ranges,
            v4: Runs::whole(Family::V4, 0),
            v6: Runs::whole(Family::V6, 0),
        }
    }

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
        let mut ranges = 0usize;
        let mut read = |cidr: &str, skip_v4_in_v6: bool| -> Result<Runs<u32>, String> {
            let net: ipnetwork::IpNetwork = cidr.parse().expect("valid literal");
            let family = if skip_v4_in_v6 {
                Family::V6
            } else {
                Family::V4
            };
            // Gaps between the networks are location 0.
            let mut out = RangesBuilder::new(family, 0);
            // The last network with a location: (start, end, id), extended while adjacent.
            let mut last: Option<(u128, u128, u32)> = None;
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
                match &mut last {
                    Some(l) if l.2 == id && l.1.checked_add(1) == Some(start) => l.1 = end,
                    Some(l) if start <= l.1 => {
                        return Err(ctx(&"networks out of order in the search tree"));
                    }
                    _ => {
                        if let Some((s, e, id)) = last.replace((start, end, id)) {
                            out.push(s, e, id);
                            ranges += 1;
                        }
                    }
                }
            }
            if let Some((s, e, id)) = last {
                out.push(s, e, id);
                ranges += 1;
            }
            Ok(out.finish())
        };
        let v4 = read("0.0.0.0/0", false)?;
        let v6 = if ip_version == 6 {
            read("::/0", true)?
        } else {
            Runs::whole(Family::V6, 0)
        };
        if ranges == 0 {
            return Err(ctx(
                &"the database holds no network with a country or continent",
            ));
        }
        Ok(Self {
            path: path.to_path_buf(),
            database_type,
            build_epoch,
            locations,
            ranges,
            v4,
            v6,
        })
    }

    /// Number of merged networks with a location, both families.
    pub fn ranges(&self) -> usize {
        self.ranges
    }
}
