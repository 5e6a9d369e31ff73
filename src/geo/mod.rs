//! Geography: the GeoIP database (both the MaxMind and the flat `country_code` schema), the
//! country table, network overrides, and the per-service merged address blocks that give the
//! fast path an answer and an ECS scope with one binary search.

mod blocks;
mod countries;
mod db;
pub mod runs;

use std::net::IpAddr;
use std::path::Path;
use std::sync::Arc;

pub use blocks::{Blocks, build_blocks, scope};
pub use countries::{CountryInfo, CountryTable};
pub use db::GeoDb;

use runs::{Family, Runs};

/// Network override: a CIDR placed in a country or continent.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct NetOverride {
    pub net: ipnet::IpNet,
    pub country: Option<[u8; 2]>,
    pub continent: [u8; 2],
}

/// Continent codes, as GeoIP2 uses them.
pub const CONTINENTS: [&str; 7] = ["AF", "AN", "AS", "EU", "NA", "OC", "SA"];

/// Where a client is.
#[derive(Debug, Clone, Copy, PartialEq, Default)]
pub struct Location {
    pub country: Option<[u8; 2]>,
    pub continent: Option<[u8; 2]>,
    /// (latitude, longitude) in degrees.
    pub coords: Option<(f64, f64)>,
}

impl Location {
    pub fn country_str(&self) -> &str {
        self.country
            .as_ref()
            .and_then(|c| std::str::from_utf8(c).ok())
            .unwrap_or("-")
    }
    pub fn continent_str(&self) -> &str {
        self.continent
            .as_ref()
            .and_then(|c| std::str::from_utf8(c).ok())
            .unwrap_or("-")
    }
}

/// Which data placed an address.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum LocSource {
    Database,
    NetsOverride,
    Unknown,
}

/// An address range (inclusive) of one location, as u128 (IPv4 in 0..2^32).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Range {
    pub start: u128,
    pub end: u128,
    pub loc: u32,
}

/// The whole address space of each family as runs of location ids (gaps are location 0,
/// unknown).
#[derive(Debug, Clone)]
pub struct Partition {
    pub locations: Vec<Location>,
    /// Location ids at or above this come from network overrides.
    pub first_override: u32,
    pub v4: Runs<u32>,
    pub v6: Runs<u32>,
}

impl Default for Partition {
    fn default() -> Self {
        Self {
            locations: Vec::new(),
            first_override: 0,
            v4: Runs::whole(Family::V4, 0),
            v6: Runs::whole(Family::V6, 0),
        }
    }
}

impl Partition {
    /// Location id of an address (binary search).
    pub fn loc_id(&self, ip: IpAddr) -> u32 {
        match ip {
            IpAddr::V4(v4) => self.v4.get(u32::from(v4) as u128),
            IpAddr::V6(v6) => match v6.to_ipv4_mapped() {
                Some(v4) => self.v4.get(u32::from(v4) as u128),
                None => self.v6.get(u128::from(v6)),
            },
        }
    }

    /// Heap bytes held by the run tables.
    pub fn heap_bytes(&self) -> usize {
        self.v4.heap_bytes() + self.v6.heap_bytes()
    }
}

/// Everything geographic the compile step needs: built once per database/nets load.
#[derive(Debug, Default)]
pub struct GeoData {
    pub db: Option<Arc<GeoDb>>,
    pub countries: Arc<CountryTable>,
    pub nets: Vec<NetOverride>,
    pub partition: Partition,
    /// Merged blocks already built on this partition, by (choice per location, service nets):
    /// the control loop recompiles every second, and rebuilding blocks from hundreds of
    /// thousands of runs each time would cost more than everything else. Weak: blocks live
    /// only as long as a routing table uses them, and dead entries are dropped on insert.
    pub block_cache: parking_lot::Mutex<BlockCacheMap>,
}

/// See [`GeoData::block_cache`].
pub type BlockCacheMap =
    std::collections::HashMap<(Vec<u16>, Vec<(ipnet::IpNet, u16)>), std::sync::Weak<Blocks>>;

impl GeoData {
    /// Combine a database (optional), the country table and overrides (longest prefix wins,
    /// and overrides win over the database).
    pub fn new(
        db: Option<Arc<GeoDb>>,
        countries: Arc<CountryTable>,
        mut nets: Vec<NetOverride>,
    ) -> Self {
        let mut locations = vec![Location::default()];
        let (db, mut v4, mut v6) = match db {
            Some(db) => {
                locations.extend(db.locations.iter().skip(1).copied());
                // The database's runs become the partition: one copy, not two. A database
                // still shared (another load of the same file in flight) keeps its runs.
                let (db, v4, v6) = match Arc::try_unwrap(db) {
                    Ok(mut db) => {
                        let v4 = std::mem::replace(&mut db.v4, Runs::whole(Family::V4, 0));
                        let v6 = std::mem::replace(&mut db.v6, Runs::whole(Family::V6, 0));
                        (Arc::new(db), v4, v6)
                    }
                    Err(shared) => (
                        Arc::new(shared.without_runs()),
                        shared.v4.clone(),
                        shared.v6.clone(),
                    ),
                };
                (Some(db), v4, v6)
            }
            None => (None, Runs::whole(Family::V4, 0), Runs::whole(Family::V6, 0)),
        };
        let first_override = locations.len() as u32;
        nets.sort_by_key(|n| n.net.prefix_len());
        // The overrides, painted among themselves (longest prefix last, so it wins), then over
        // the database in one pass.
        let (mut top4, mut top6) = (Vec::new(), Vec::new());
        for n in &nets {
            let coords = n
                .country
                .and_then(|c| countries.get(c))
                .and_then(|i| i.coords);
            locations.push(Location {
                country: n.country,
                continent: Some(n.continent),
                coords,
            });
            let id = locations.len() as u32 - 1;
            let (start, end) = net_bounds(&n.net);
            match n.net {
                ipnet::IpNet::V4(_) => blocks::paint(&mut top4, start, end, id),
                ipnet::IpNet::V6(_) => blocks::paint(&mut top6, start, end, id),
            }
        }
        let flat = |t: &[Range]| -> Vec<(u128, u128, u32)> {
            t.iter().map(|r| (r.start, r.end, r.loc)).collect()
        };
        if !top4.is_empty() {
            v4 = v4.overlay(&flat(&top4));
        }
        if !top6.is_empty() {
            v6 = v6.overlay(&flat(&top6));
        }
        Self {
            block_cache: Default::default(),
            db,
            countries,
            nets,
            partition: Partition {
                locations,
                first_override,
                v4,
                v6,
            },
        }
    }

    /// Location of an address and where it came from.
    pub fn locate(&self, ip: IpAddr) -> (Location, LocSource) {
        let id = self.partition.loc_id(ip);
        let loc = self.partition.locations[id as usize];
        let src = if id == 0 {
            LocSource::Unknown
        } else if id >= self.partition.first_override {
            LocSource::NetsOverride
        } else {
            LocSource::Database
        };
        (loc, src)
    }

    /// Load the database named by the settings (if any) and build the data.
    pub fn load(
        database: Option<&Path>,
        countries: Arc<CountryTable>,
        nets: Vec<NetOverride>,
    ) -> Result<Self, String> {
        let db = match database {
            None => None,
            Some(p) => Some(GeoDb::open(p, &countries)?),
        };
        Ok(Self::new(db.map(Arc::new), countries, nets))
    }
}

/// First and last address of a network as u128.
pub fn net_bounds(net: &ipnet::IpNet) -> (u128, u128) {
    match net {
        ipnet::IpNet::V4(n) => (
            u32::from(n.network()) as u128,
            u32::from(n.broadcast()) as u128,
        ),
        ipnet::IpNet::V6(n) => (u128::from(n.network()), u128::from(n.broadcast())),
    }
}

/// Great-circle distance in kilometres (haversine).
pub fn distance_km(a: (f64, f64), b: (f64, f64)) -> f64 {
    let (lat1, lon1) = (a.0.to_radians(), a.1.to_radians());
    let (lat2, lon2) = (b.0.to_radians(), b.1.to_radians());
    let h = ((lat2 - lat1) / 2.0).sin().powi(2)
        + lat1.cos() * lat2.cos() * ((lon2 - lon1) / 2.0).sin().powi(2);
    2.0 * 6371.0 * h.sqrt().min(1.0).asin()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn haversine_known_distances() {
        // Frankfurt – New York ≈ 6,200 km; London – Paris ≈ 344 km.
        let fra = (50.11, 8.68);
        let nyc = (40.71, -74.01);
        let d = distance_km(fra, nyc);
        assert!((6150.0..6250.0).contains(&d), "{d}");
        let d = distance_km((51.507, -0.128), (48.857, 2.352));
        assert!((340.0..350.0).contains(&d), "{d}");
        assert_eq!(distance_km(fra, fra), 0.0);
    }

    #[test]
    fn overrides_win_longest_prefix_first() {
        let countries = Arc::new(CountryTable::parse(
            "iso,continent,latitude,longitude,name\nDE,EU,51,10,Germany\nUS,NA,37,-90,United States\nFR,EU,46,2,France\n",
        ).unwrap());
        let nets = vec![
            NetOverride {
                net: "10.1.2.0/24".parse().unwrap(),
                country: Some(*b"FR"),
                continent: *b"EU",
            },
            NetOverride {
                net: "10.0.0.0/8".parse().unwrap(),
                country: Some(*b"US"),
                continent: *b"NA",
            },
            NetOverride {
                net: "10.1.0.0/16".parse().unwrap(),
                country: Some(*b"DE"),
                continent: *b"EU",
            },
        ];
        let g = GeoData::new(None, countries, nets);
        let at = |s: &str| g.locate(s.parse().unwrap());
        assert_eq!(at("10.1.2.3").0.country, Some(*b"FR"));
        assert_eq!(at("10.1.3.3").0.country, Some(*b"DE"));
        assert_eq!(at("10.2.0.1").0.country, Some(*b"US"));
        assert_eq!(at("10.2.0.1").1, LocSource::NetsOverride);
        assert_eq!(at("11.0.0.1").1, LocSource::Unknown);
        assert_eq!(at("10.1.2.3").0.coords, Some((46.0, 2.0)));
    }
}
