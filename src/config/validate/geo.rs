//! `[geo]`: the country table, the GeoIP database and network overrides (also those of a nets
//! file), and the region keys (`"EU"`, `"EU/DE"`, `"default"`) that maps and overrides use.

use std::sync::Arc;
use std::time::Duration;

use crate::config::issues::{ConfigIssue, Context, Issues, cidr};
use crate::config::schema::{GeoConfig, NetConfig};
use crate::config::valid::{GeoSettings, NetOverride, RegionKey};
use crate::geo::{CONTINENTS, CountryTable};

/// `[geo]`: the settings and the country table, None when it cannot be loaded.
pub(super) fn validate(
    g: &GeoConfig,
    ctx: &Context,
    issues: &mut Issues,
) -> (GeoSettings, Option<Arc<CountryTable>>) {
    let shipped = GeoConfig::default();
    let countries_path = ctx.path(&g.countries, Some(&shipped.countries));
    let countries = match CountryTable::load(&countries_path) {
        Ok(t) => Some(Arc::new(t)),
        Err(e) => {
            issues.push("geo.countries", e);
            None
        }
    };
    let nets = match &countries {
        Some(t) => match validate_nets(&g.nets, "geo.nets", t) {
            Ok(n) => n,
            Err(e) => {
                issues.extend(e);
                Vec::new()
            }
        },
        None => Vec::new(),
    };
    if g.reload_interval > 86400 {
        issues.push(
            "geo.reload_interval",
            format!("must be at most 86400 seconds (got {})", g.reload_interval),
        );
    }
    let settings = GeoSettings {
        database: (!g.database.trim().is_empty())
            .then(|| ctx.path(g.database.trim(), Some(&shipped.database))),
        countries: countries_path,
        nets_file: g.nets_file.as_deref().map(|p| ctx.path(p, None)),
        reload_interval: Duration::from_secs(g.reload_interval),
        nets,
    };
    (settings, countries)
}

/// Parse network overrides (from the config or a nets file).
pub fn validate_nets(
    nets: &[NetConfig],
    prefix: &str,
    countries: &CountryTable,
) -> Result<Vec<NetOverride>, Vec<ConfigIssue>> {
    let mut issues = Issues::default();
    let mut out: Vec<NetOverride> = Vec::new();
    for (i, n) in nets.iter().enumerate() {
        let f = format!("{prefix}[{i}]");
        let Some(net) = cidr(&n.cidr, &format!("{f}.cidr"), &mut issues) else {
            continue;
        };
        if out.iter().any(|o| o.net == net) {
            issues.push(format!("{f}.cidr"), format!("duplicate network {net}"));
            continue;
        }
        let entry = match (&n.country, &n.continent) {
            (Some(c), None) => {
                let b = c.as_bytes();
                match (b.len() == 2)
                    .then(|| [b[0], b[1]])
                    .and_then(|cc| countries.get(cc).map(|i| (cc, i)))
                {
                    Some((cc, info)) => Some(NetOverride {
                        net,
                        country: Some(cc),
                        continent: info.continent,
                    }),
                    None => {
                        issues.push(
                            format!("{f}.country"),
                            format!("unknown country \"{c}\" (not in the country table)"),
                        );
                        None
                    }
                }
            }
            (None, Some(c)) => match parse_continent(c) {
                Some(cont) => Some(NetOverride {
                    net,
                    country: None,
                    continent: cont,
                }),
                None => {
                    issues.push(
                        format!("{f}.continent"),
                        format!(
                            "\"{c}\" is not a continent code ({})",
                            CONTINENTS.join(", ")
                        ),
                    );
                    None
                }
            },
            _ => {
                issues.push(f.clone(), "set exactly one of `country` or `continent`");
                None
            }
        };
        out.extend(entry);
    }
    if issues.is_empty() {
        Ok(out)
    } else {
        Err(issues.into_vec())
    }
}

/// A continent code.
fn parse_continent(s: &str) -> Option<[u8; 2]> {
    let b = s.as_bytes();
    (b.len() == 2 && CONTINENTS.iter().any(|c| c.as_bytes() == b)).then(|| [b[0], b[1]])
}

/// `"EU"`, `"EU/DE"` or `"default"`, checked against the country table.
pub(super) fn region_key(
    key: &str,
    countries: Option<&CountryTable>,
    field: &str,
    issues: &mut Issues,
) -> Option<RegionKey> {
    if key == "default" {
        return Some(RegionKey::Default);
    }
    let (cont, country) = match key.split_once('/') {
        Some((a, b)) => (a, Some(b)),
        None => (key, None),
    };
    let Some(c) = parse_continent(cont) else {
        issues.push(
            field,
            format!("\"{cont}\" is not a continent code ({}); keys are CONTINENT, CONTINENT/COUNTRY or default", CONTINENTS.join(", ")),
        );
        return None;
    };
    let Some(country) = country else {
        return Some(RegionKey::Continent(c));
    };
    let cc = country.as_bytes();
    if cc.len() != 2 || !cc.iter().all(u8::is_ascii_uppercase) {
        issues.push(
            field,
            format!("\"{country}\" is not an ISO 3166-1 alpha-2 country code (e.g. DE)"),
        );
        return None;
    }
    let cc = [cc[0], cc[1]];
    if let Some(table) = countries {
        match table.get(cc) {
            None => {
                issues.push(
                    field,
                    format!("unknown country \"{country}\" (not in the country table)"),
                );
                return None;
            }
            Some(info) if info.continent != c => {
                issues.push(
                    field,
                    format!(
                        "{country} is in {}, not {cont}: write \"{}/{country}\"",
                        String::from_utf8_lossy(&info.continent),
                        String::from_utf8_lossy(&info.continent)
                    ),
                );
                return None;
            }
            Some(_) => {}
        }
    }
    Some(RegionKey::Country(c, cc))
}
