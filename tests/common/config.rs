//! TOML building blocks for test configurations: no GeoIP database, a zone and its records,
//! CNAME targets, health checks, failover services and the test client networks. Each block
//! starts with a blank line, so blocks can be concatenated in any order.

/// `[geo]` without a GeoIP database (more `[geo]` keys may follow it).
pub const NO_GEODB: &str = "[geo]\ndatabase = \"\"\n";

/// The zone `origin`: name server ns1.`origin` and its SOA; no records.
pub fn zone(origin: &str) -> String {
    format!(
        "\n[[zones]]\nname = \"{origin}\"\nns = [\"ns1.{origin}\"]\n\n[zones.soa]\nmname = \"ns1.{origin}\"\nrname = \"hostmaster.{origin}\"\n"
    )
}

/// A `[[zones.records]]` entry of the zone before it.
pub fn record(name: &str, rtype: &str, data: &str) -> String {
    record_toml(name, rtype, &format!("\"{data}\""))
}

/// Like [`record`], `data` written as TOML (an array of strings, …).
pub fn record_toml(name: &str, rtype: &str, data: &str) -> String {
    format!("\n[[zones.records]]\nname = \"{name}\"\ntype = \"{rtype}\"\ndata = {data}\n")
}

/// The zone `origin` with its name server's A record, ns1 → `ip`.
pub fn zone_ns1(origin: &str, ip: &str) -> String {
    format!("{}{}", zone(origin), record("ns1", "A", ip))
}

/// No GeoIP database and the zone example.com (ns1 at 127.0.0.1): the base that most tests
/// add targets and services to.
pub fn base() -> String {
    format!("\n{NO_GEODB}{}", zone_ns1("example.com", "127.0.0.1"))
}

/// A target `name` answered with the CNAME edge.`name`.example.net.
pub fn cname_target(name: &str) -> String {
    format!("\n[[targets]]\nname = \"{name}\"\ncname = \"edge.{name}.example.net\"\n")
}

/// The `[targets.check]` of the target before it: GET http://www.example.com/health from
/// `address`, then the `extra` keys (`levels = …`, [`FAST_CHECK`], …).
pub fn health_check(address: impl std::fmt::Display, extra: &str) -> String {
    format!(
        "\n[targets.check]\nurl = \"http://www.example.com/health\"\naddress = \"{address}\"\n{extra}"
    )
}

/// Check timing for tests: every second, a 0.5 s timeout, no jitter, no kept connection.
pub const FAST_CHECK: &str = "interval = 1\ntimeout = 0.5\njitter = 0\nwatch = false\n";

/// A failover service `name` over `targets`, in order.
pub fn failover(name: &str, targets: &[&str]) -> String {
    let list: Vec<String> = targets
        .iter()
        .map(|t| format!("{{ target = \"{t}\" }}"))
        .collect();
    format!(
        "\n[[services]]\nname = \"{name}\"\npolicy = \"failover\"\ntargets = [{}]\n",
        list.join(", ")
    )
}

/// A `[[geo.nets]]` override placing `cidr`; `place` is `country = "DE"` or `continent = "EU"`.
pub fn geo_net(cidr: &str, place: &str) -> String {
    format!("\n[[geo.nets]]\ncidr = \"{cidr}\"\n{place}\n")
}

/// A client subnet in DE (EU) and one in the US (NA), as placed by [`test_nets`].
pub const EU_NET: &str = "198.51.100.0/24";
pub const US_NET: &str = "203.0.113.0/24";

/// The two client networks of the tests, placed by `[[geo.nets]]` (there is no GeoIP database
/// in tests): [`EU_NET`] in DE, [`US_NET`] in the US.
pub fn test_nets() -> String {
    format!(
        "\n# Test networks (no GeoIP database in the tests).{}{}",
        geo_net(EU_NET, "country = \"DE\""),
        geo_net(US_NET, "country = \"US\"")
    )
}

/// The demo configuration with [`test_nets`].
pub fn demo_with_nets() -> String {
    format!("{}\n{}", super::DEMO, test_nets())
}

/// cdn-a and cdn-b (CNAME targets) and the failover service www.example.com over them;
/// `a_tables` are more tables of cdn-a (`[targets.cost]`, …).
pub fn www_over_a_b(a_tables: &str) -> String {
    format!(
        "{}{a_tables}{}{}",
        cname_target("cdn-a"),
        cname_target("cdn-b"),
        failover("www.example.com", &["cdn-a", "cdn-b"])
    )
}

/// A `[targets.cost]` that puts the target over its cap with its first answer: $1,000 per GB,
/// a $1 monthly cap, 1 GB per answer.
pub const CAPPED_AT_FIRST_ANSWER: &str =
    "\n[targets.cost]\nprice_per_gb = 1000\nmonthly_cap = 1\nbytes_per_answer = 1e9\n";
