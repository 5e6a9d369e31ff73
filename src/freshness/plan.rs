//! What the runner does with a configuration: per canary, the targets it is fetched through and
//! how each is reached, and which canaries a purge covers.

use std::path::PathBuf;

use crate::config::check::Connect;
use crate::config::purge::Canary;
use crate::config::{TargetAnswer, ValidConfig};
use crate::probe::canary::Via;
use crate::purge::provider::Item;

/// One target a canary is fetched through.
#[derive(Debug, Clone)]
pub struct Route {
    pub target: String,
    pub via: Via,
    pub ca_file: Option<PathBuf>,
}

/// One canary and its routes.
#[derive(Debug, Clone)]
pub struct Watched {
    pub canary: Canary,
    pub routes: Vec<Route>,
}

/// The canaries of a configuration.
#[derive(Debug, Clone, Default)]
pub struct Plan {
    pub settings: crate::config::purge::Freshness,
    pub watched: Vec<Watched>,
    /// Per purge target, the host its purged URLs belong to (`[targets.purge] host`).
    pub purge_hosts: Vec<(String, Option<String>)>,
}

impl Plan {
    pub fn from_config(cfg: &ValidConfig) -> Plan {
        let s = &cfg.purge.freshness;
        let purge_targets: Vec<&str> = cfg
            .targets
            .iter()
            .filter(|t| t.purge.is_some())
            .map(|t| t.name.as_str())
            .collect();
        let watched = s
            .canaries
            .iter()
            .map(|c| {
                let names: Vec<&str> = if !c.targets.is_empty() {
                    c.targets.iter().map(String::as_str).collect()
                } else if !purge_targets.is_empty() {
                    purge_targets.clone()
                } else {
                    cfg.targets.iter().map(|t| t.name.as_str()).collect()
                };
                let routes = names.into_iter().filter_map(|n| route(cfg, c, n)).collect();
                Watched {
                    canary: c.clone(),
                    routes,
                }
            })
            .collect();
        Plan {
            settings: s.clone(),
            watched,
            purge_hosts: cfg
                .targets
                .iter()
                .filter_map(|t| t.purge.as_ref().map(|p| (t.name.clone(), p.host.clone())))
                .collect(),
        }
    }
}

/// How canary `c` is reached through target `name`: its `via` address, else the target's
/// check address, else its A/AAAA records or CNAME on the canary's port.
fn route(cfg: &ValidConfig, c: &Canary, name: &str) -> Option<Route> {
    let t = cfg.targets.iter().find(|t| t.name == name)?;
    let ca_file = t.check.as_ref().and_then(|k| k.ca_file.clone());
    if let Some((_, a)) = c.via.iter().find(|(v, _)| v == name) {
        return Some(Route {
            target: name.to_string(),
            via: Via::Addr(*a),
            ca_file,
        });
    }
    let checked = t.check.as_ref().and_then(|k| match &k.connect {
        Some(Connect::Fixed(a)) => Some(Via::Addr(*a)),
        Some(Connect::Addrs(ips, port)) => ips.first().map(|ip| Via::Addr((*ip, *port).into())),
        Some(Connect::Resolved(port)) => k
            .dns_host
            .as_ref()
            .map(|h| Via::Host(h.to_ascii().trim_end_matches('.').to_string(), *port)),
        None => None,
    });
    let port = c.at.port;
    let via = checked.or_else(|| match &t.answer {
        TargetAnswer::Addrs { a, aaaa } => a
            .first()
            .map(|ip| Via::Addr((*ip, port).into()))
            .or_else(|| aaaa.first().map(|ip| Via::Addr((*ip, port).into()))),
        TargetAnswer::Cname(n) => Some(Via::Host(
            n.to_ascii().trim_end_matches('.').to_string(),
            port,
        )),
    })?;
    Some(Route {
        target: name.to_string(),
        via,
        ca_file,
    })
}

/// "host/path" of a URL written with or without a scheme, the host lower-cased.
fn host_path(u: &str) -> String {
    let u = u.trim();
    let rest = u
        .strip_prefix("https://")
        .or_else(|| u.strip_prefix("http://"))
        .unwrap_or(u);
    match rest.split_once('/') {
        Some((h, p)) => format!("{}/{p}", h.to_ascii_lowercase()),
        None => rest.to_ascii_lowercase(),
    }
}

/// Whether purging `item` on a CDN whose URLs belong to `purge_host` drops canary `c`; `keys`
/// are the surrogate keys the origin tagged it with, when known.
pub fn covers(item: &Item, c: &Canary, purge_host: Option<&str>, keys: Option<&[String]>) -> bool {
    let own = format!("{}{}", c.at.host_header.to_ascii_lowercase(), c.at.path);
    match item {
        Item::Everything => true,
        Item::Url(u) => {
            let u = host_path(u);
            u == own || (u.starts_with('/') && purge_host.is_some_and(|h| format!("{h}{u}") == own))
        }
        Item::Prefix(p) => own.starts_with(&host_path(p)),
        Item::Host(h) => h.trim().eq_ignore_ascii_case(&c.at.host),
        Item::Key(k) => match keys {
            // The origin said which keys tag it: a key covers it, and so does a key above
            // one of them (`site:acme` covers `site:acme:blog`).
            Some(keys) => keys
                .iter()
                .any(|t| t == k || t.starts_with(&format!("{k}:"))),
            // Unknown: every canary of the CDN's host (every canary when it has none).
            None => purge_host.is_none_or(|h| h.eq_ignore_ascii_case(&c.at.host)),
        },
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::config::purge::{CanaryUrl, VersionSource};

    fn canary() -> Canary {
        let at = |host: &str, path: &str| CanaryUrl {
            https: true,
            host: host.into(),
            port: 443,
            host_header: host.into(),
            path: path.into(),
        };
        Canary {
            url: "https://www.example.com/static/app.css".into(),
            at: at("www.example.com", "/static/app.css"),
            origin: at("origin.example.com", "/"),
            origin_address: None,
            version: VersionSource::ETag,
            targets: vec![],
            via: vec![],
        }
    }

    #[test]
    fn which_purges_cover_a_canary() {
        let c = canary();
        let yes = |i: Item| covers(&i, &c, None, None);
        assert!(yes(Item::Url(
            "https://www.example.com/static/app.css".into()
        )));
        assert!(yes(Item::Url(
            "http://WWW.example.com/static/app.css".into()
        )));
        assert!(!yes(Item::Url("https://www.example.com/other.css".into())));
        assert!(covers(
            &Item::Url("/static/app.css".into()),
            &c,
            Some("www.example.com"),
            None
        ));
        assert!(yes(Item::Prefix("www.example.com/static/".into())));
        assert!(yes(Item::Prefix("https://www.example.com/static".into())));
        assert!(!yes(Item::Prefix("www.example.com/img/".into())));
        assert!(yes(Item::Host("www.example.com".into())));
        assert!(!yes(Item::Host("img.example.com".into())));
        assert!(yes(Item::Everything));
        // Keys: what the origin tagged it with, else the CDN's host.
        let keys = vec!["site:acme:static".to_string()];
        assert!(covers(
            &Item::Key("site:acme".into()),
            &c,
            None,
            Some(&keys)
        ));
        assert!(covers(
            &Item::Key("site:acme:static".into()),
            &c,
            None,
            Some(&keys)
        ));
        assert!(!covers(
            &Item::Key("site:acme:blog".into()),
            &c,
            None,
            Some(&keys)
        ));
        assert!(covers(
            &Item::Key("k".into()),
            &c,
            Some("www.example.com"),
            None
        ));
        assert!(!covers(
            &Item::Key("k".into()),
            &c,
            Some("img.example.com"),
            None
        ));
        assert!(yes(Item::Key("k".into())));
    }
}
