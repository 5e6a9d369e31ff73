//! The country table: ISO 3166-1 alpha-2 code → continent and a representative point, for
//! databases that carry only a country code.

use std::collections::HashMap;
use std::path::Path;

/// The table shipped in `geodb/countries.csv`, compiled in as the fallback.
const EMBEDDED: &str = include_str!("../../geodb/countries.csv");
const DEFAULT_PATH: &str = "geodb/countries.csv";

#[derive(Debug, Clone, PartialEq)]
pub struct CountryInfo {
    pub continent: [u8; 2],
    pub coords: Option<(f64, f64)>,
    pub name: String,
}

#[derive(Debug, Clone, Default, PartialEq)]
pub struct CountryTable {
    map: HashMap<[u8; 2], CountryInfo>,
}

impl CountryTable {
    pub fn get(&self, iso: [u8; 2]) -> Option<&CountryInfo> {
        self.map.get(&iso)
    }

    pub fn len(&self) -> usize {
        self.map.len()
    }

    pub fn is_empty(&self) -> bool {
        self.map.is_empty()
    }

    /// Read a table from a file; the shipped default path falls back to the compiled-in copy
    /// when the file is not there (e.g. the binary runs outside the repository).
    pub fn load(path: &Path) -> Result<Self, String> {
        match std::fs::read_to_string(path) {
            Ok(text) => Self::parse(&text).map_err(|e| format!("{}: {e}", path.display())),
            Err(_) if path == Path::new(DEFAULT_PATH) => Self::parse(EMBEDDED),
            Err(e) => Err(format!("cannot read {}: {e}", path.display())),
        }
    }

    /// Parse `iso,continent,latitude,longitude,name` CSV (header line first).
    pub fn parse(text: &str) -> Result<Self, String> {
        let mut map = HashMap::new();
        for (n, line) in text.lines().enumerate().skip(1) {
            if line.trim().is_empty() {
                continue;
            }
            let mut f = line.splitn(5, ',');
            let (iso, cont, lat, lon) = (
                f.next().unwrap_or(""),
                f.next().unwrap_or(""),
                f.next().unwrap_or(""),
                f.next().unwrap_or(""),
            );
            let name = f.next().unwrap_or("").trim_matches('"').to_string();
            let bad = |what: &str| format!("line {}: {what}", n + 1);
            let iso = iso.as_bytes();
            if iso.len() != 2 {
                return Err(bad("country code must have 2 letters"));
            }
            let cont = cont.as_bytes();
            if !super::CONTINENTS.iter().any(|c| c.as_bytes() == cont) {
                return Err(bad("unknown continent code"));
            }
            let coords = match (lat.trim(), lon.trim()) {
                ("", "") => None,
                (a, b) => Some((
                    a.parse::<f64>().map_err(|_| bad("bad latitude"))?,
                    b.parse::<f64>().map_err(|_| bad("bad longitude"))?,
                )),
            };
            map.insert(
                [iso[0], iso[1]],
                CountryInfo {
                    continent: [cont[0], cont[1]],
                    coords,
                    name,
                },
            );
        }
        if map.is_empty() {
            return Err("no countries in the table".into());
        }
        Ok(Self { map })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn shipped_table_parses_and_knows_the_big_ones() {
        let t = CountryTable::parse(EMBEDDED).unwrap();
        assert!(t.len() > 240, "{}", t.len());
        assert_eq!(t.get(*b"DE").unwrap().continent, *b"EU");
        assert_eq!(t.get(*b"US").unwrap().continent, *b"NA");
        assert_eq!(t.get(*b"JP").unwrap().continent, *b"AS");
        assert_eq!(t.get(*b"AU").unwrap().continent, *b"OC");
        let (lat, lon) = t.get(*b"DE").unwrap().coords.unwrap();
        assert!((47.0..55.0).contains(&lat) && (6.0..15.0).contains(&lon));
    }

    #[test]
    fn errors_name_the_line() {
        let e = CountryTable::parse("h\nDE,XX,1,2,x\n").unwrap_err();
        assert!(e.contains("line 2") && e.contains("continent"), "{e}");
    }
}
