//! Configuration validation: one test per rule; each checks that the error names the field (and
//! the line) and says why.

mod common;

use steerd::config::{self, ConfigIssue};

/// The zone example.com and two targets: cdn-a (a CNAME) and cdn-b (an address).
fn base() -> String {
    format!(
        "{}\n[[targets]]\nname = \"cdn-a\"\ncname = \"a.cdn.net\"\n\n[[targets]]\nname = \"cdn-b\"\na = [\"192.0.2.1\"]\n",
        common::config::zone("example.com")
    )
}

fn issues(extra: &str) -> Vec<ConfigIssue> {
    let text = format!("{}\n{extra}", base());
    match config::parse(&text, "test.toml") {
        Ok(_) => panic!("config should be rejected:\n{extra}"),
        Err(e) => {
            assert_eq!(e.source, "test.toml");
            e.issues
        }
    }
}

/// Exactly one issue, on `field`, whose message contains `needle`; returns it.
fn one_issue(extra: &str, field: &str, needle: &str) -> ConfigIssue {
    let all = issues(extra);
    let hit = all
        .iter()
        .find(|i| i.field == field)
        .unwrap_or_else(|| panic!("no issue on {field}: {all:?}"));
    assert!(
        hit.message.contains(needle),
        "message for {field} should mention {needle:?}: {:?}",
        hit.message
    );
    hit.clone()
}

#[test]
fn base_config_is_valid() {
    let cfg = config::parse(&base(), "base").expect("valid");
    assert_eq!(cfg.zones.len(), 1);
    assert_eq!(cfg.targets.len(), 2);
}

#[test]
fn demo_config_is_valid() {
    let cfg = config::load(std::path::Path::new("config/steerd.toml")).expect("demo config valid");
    assert_eq!(cfg.services.len(), 4);
}

#[test]
fn unknown_keys_are_errors_with_a_line() {
    let e = config::parse(
        &format!("{}\n[server]\nlisten = [\"x\"]\n", base()),
        "t.toml",
    )
    .unwrap_err();
    assert!(
        e.issues[0].message.contains("unknown field `listen`"),
        "{e}"
    );
    assert!(e.issues[0].line.is_some(), "{e}");
    let e = config::parse(&format!("{}\n[[services]]\nname = \"w.example.com\"\npolicy = \"failover\"\ntargets = [{{ target = \"cdn-a\", wieght = 3 }}]\n", base()), "t.toml").unwrap_err();
    assert!(e.to_string().contains("wieght"), "{e}");
}

#[test]
fn type_errors_name_the_field_and_the_line() {
    let e = config::parse(
        &format!("{}\n[[services]]\nname = \"w.example.com\"\npolicy = \"failover\"\nttl = -5\ntargets = [{{ target = \"cdn-a\" }}]\n", base()),
        "t.toml",
    )
    .unwrap_err();
    assert_eq!(e.issues[0].field, "services[0].ttl", "{e}");
    assert!(e.issues[0].line.is_some(), "{e}");
    let e = config::parse(
        &format!("{}\n[server]\nmax_udp_payload = \"big\"\n", base()),
        "t.toml",
    )
    .unwrap_err();
    assert_eq!(e.issues[0].field, "server.max_udp_payload", "{e}");
}

#[test]
fn syntax_errors_name_the_line() {
    let e = config::parse("[server]\ndns_listen = [\"127.0.0.1:53\"\n", "broken.toml").unwrap_err();
    let s = e.to_string();
    assert!(s.starts_with("broken.toml:"), "{s}");
    assert!(e.issues[0].line.is_some());
}

#[test]
fn record_name_outside_zone() {
    let i = one_issue(
        "[[zones.records]]\nname = \"www.example.org.\"\ntype = \"A\"\ndata = \"192.0.2.1\"\n",
        "zones[0].records[0].name",
        "outside the zone",
    );
    assert!(i.line.is_some(), "line found for {i:?}");
}

#[test]
fn service_outside_any_zone() {
    one_issue(
        "[[services]]\nname = \"www.example.org\"\npolicy = \"failover\"\ntargets = [{ target = \"cdn-a\" }]\n",
        "services[0].name",
        "not inside any configured zone",
    );
}

#[test]
fn cname_beside_other_data() {
    one_issue(
        "[[zones.records]]\nname = \"x\"\ntype = \"CNAME\"\ndata = \"y.example.net\"\n[[zones.records]]\nname = \"x\"\ntype = \"A\"\ndata = \"192.0.2.1\"\n",
        "zones[0].records[0].type",
        "CNAME beside other data",
    );
}

#[test]
fn cname_at_apex() {
    one_issue(
        "[[zones.records]]\nname = \"@\"\ntype = \"CNAME\"\ndata = \"y.example.net\"\n",
        "zones[0].records[0].name",
        "apex",
    );
}

#[test]
fn steered_name_beside_static_data() {
    one_issue(
        "[[zones.records]]\nname = \"www\"\ntype = \"TXT\"\ndata = \"hello\"\n[[services]]\nname = \"www.example.com\"\npolicy = \"failover\"\ntargets = [{ target = \"cdn-a\" }]\n",
        "services[0].name",
        "duplicate name",
    );
}

#[test]
fn unknown_target_reference() {
    let i = one_issue(
        "[[services]]\nname = \"www.example.com\"\npolicy = \"failover\"\ntargets = [{ target = \"cdn-z\" }]\n",
        "services[0].targets[0].target",
        "unknown target \"cdn-z\"",
    );
    assert!(i.line.is_some());
}

#[test]
fn duplicate_zone_target_and_service_names() {
    one_issue(
        "[[zones]]\nname = \"EXAMPLE.com.\"\nns = [\"ns1.example.com\"]\n[zones.soa]\nmname = \"a.b\"\nrname = \"c.d\"\n",
        "zones[1].name",
        "duplicate zone",
    );
    one_issue(
        "[[targets]]\nname = \"cdn-a\"\ncname = \"other.net\"\n",
        "targets[2].name",
        "duplicate target",
    );
    one_issue(
        "[[services]]\nname = \"www.example.com\"\npolicy = \"failover\"\ntargets = [{ target = \"cdn-a\" }]\n[[services]]\nname = \"WWW.example.com.\"\npolicy = \"failover\"\ntargets = [{ target = \"cdn-b\" }]\n",
        "services[1].name",
        "duplicate service",
    );
}

#[test]
fn zero_and_negative_weights() {
    let svc = |w: i64| {
        format!(
            "[[services]]\nname = \"www.example.com\"\npolicy = \"weighted\"\ntargets = [{{ target = \"cdn-a\", weight = 60 }}, {{ target = \"cdn-b\", weight = {w} }}]\n"
        )
    };
    one_issue(
        &svc(0),
        "services[0].targets[1].weight",
        "greater than 0 (got 0)",
    );
    one_issue(
        &svc(-5),
        "services[0].targets[1].weight",
        "greater than 0 (got -5)",
    );
    one_issue(
        "[[services]]\nname = \"www.example.com\"\npolicy = \"weighted\"\ntargets = [{ target = \"cdn-a\" }]\n",
        "services[0].targets[0].weight",
        "missing weight",
    );
    one_issue(
        "[[services]]\nname = \"www.example.com\"\npolicy = \"failover\"\ntargets = [{ target = \"cdn-a\", weight = 3 }]\n",
        "services[0].targets[0].weight",
        "only applies to policy = \"weighted\"",
    );
}

#[test]
fn bad_addresses() {
    one_issue(
        "[[zones.records]]\nname = \"x\"\ntype = \"A\"\ndata = [\"192.0.2.1\", \"192.0.2.300\"]\n",
        "zones[0].records[0].data[1]",
        "not a valid IPv4 address",
    );
    one_issue(
        "[[zones.records]]\nname = \"x\"\ntype = \"AAAA\"\ndata = \"192.0.2.1\"\n",
        "zones[0].records[0].data[0]",
        "not a valid IPv6 address",
    );
    one_issue(
        "[[targets]]\nname = \"c\"\naaaa = [\"2001:db8::zz\"]\n",
        "targets[2].aaaa[0]",
        "not a valid IPv6 address",
    );
    one_issue(
        "[server]\ndns_listen = [\"127.0.0.1\"]\n",
        "server.dns_listen[0]",
        "not a valid socket address",
    );
}

#[test]
fn target_needs_exactly_one_answer_kind() {
    one_issue(
        "[[targets]]\nname = \"c\"\ncname = \"x.net\"\na = [\"192.0.2.1\"]\n",
        "targets[2]",
        "not both",
    );
    one_issue("[[targets]]\nname = \"c\"\n", "targets[2]", "needs `cname`");
}

#[test]
fn bad_record_values_and_types() {
    one_issue(
        "[[zones.records]]\nname = \"@\"\ntype = \"MX\"\ndata = \"mail.example.com\"\n",
        "zones[0].records[0].data[0]",
        "not an MX value",
    );
    one_issue(
        "[[zones.records]]\nname = \"@\"\ntype = \"CAA\"\ndata = \"issue letsencrypt.org\"\n",
        "zones[0].records[0].data[0]",
        "not a CAA value",
    );
    one_issue(
        "[[zones.records]]\nname = \"x\"\ntype = \"SRV\"\ndata = \"0 0 1 x\"\n",
        "zones[0].records[0].type",
        "unsupported record type",
    );
    one_issue(
        "[[zones.records]]\nname = \"x..y\"\ntype = \"A\"\ndata = \"192.0.2.1\"\n",
        "zones[0].records[0].name",
        "not a valid domain name",
    );
}

#[test]
fn delegation_rules() {
    one_issue(
        "[[zones.records]]\nname = \"sub\"\ntype = \"NS\"\ndata = \"ns.sub.example.com\"\n[[zones.records]]\nname = \"sub\"\ntype = \"TXT\"\ndata = \"x\"\n",
        "zones[0].records[1].type",
        "beside NS at the delegation point",
    );
    one_issue(
        "[[zones.records]]\nname = \"sub\"\ntype = \"NS\"\ndata = \"ns.sub.example.com\"\n[[zones.records]]\nname = \"www.sub\"\ntype = \"TXT\"\ndata = \"x\"\n",
        "zones[0].records[1].name",
        "only glue",
    );
    one_issue(
        "[[zones.records]]\nname = \"@\"\ntype = \"NS\"\ndata = \"ns9.example.com\"\n",
        "zones[0].records[0].type",
        "apex NS records come from zones[0].ns",
    );
}

#[test]
fn all_issues_are_reported_at_once() {
    let all = issues(
        "[[services]]\nname = \"www.example.org\"\npolicy = \"weighted\"\ntargets = [{ target = \"nope\", weight = 1 }, { target = \"cdn-a\", weight = 0 }]\n",
    );
    assert!(all.len() >= 3, "{all:?}");
}

#[test]
fn server_settings_are_checked() {
    one_issue(
        "[server]\nmax_udp_payload = 100\n",
        "server.max_udp_payload",
        "between 512 and 4096",
    );
    one_issue(
        "[server]\nhash_prefix_v4 = 33\n",
        "server.hash_prefix_v4",
        "at most 32",
    );
}

#[test]
fn wildcards_are_rejected_with_a_clear_message() {
    one_issue(
        "[[zones.records]]\nname = \"*\"\ntype = \"A\"\ndata = \"192.0.2.1\"\n",
        "zones[0].records[0].name",
        "wildcard records are not supported",
    );
}

#[test]
fn cname_loops_are_rejected() {
    let i = one_issue(
        "[[zones.records]]\nname = \"a\"\ntype = \"CNAME\"\ndata = \"b.example.com\"\n[[zones.records]]\nname = \"b\"\ntype = \"CNAME\"\ndata = \"a.example.com\"\n",
        "zones[0].records[0].data",
        "CNAME loop: a.example.com. → b.example.com. → a.example.com.",
    );
    assert!(i.line.is_some());
    one_issue(
        "[[zones.records]]\nname = \"self\"\ntype = \"CNAME\"\ndata = \"self.example.com\"\n",
        "zones[0].records[0].data",
        "CNAME loop",
    );
}

#[test]
fn rrsets_larger_than_a_dns_message_are_rejected() {
    let values: Vec<String> = (0..20)
        .map(|i| format!("\"{i}{}\"", "x".repeat(3900)))
        .collect();
    one_issue(
        &format!(
            "[[zones.records]]\nname = \"huge\"\ntype = \"TXT\"\ndata = [{}]\n",
            values.join(", ")
        ),
        "zones[0].records[0].data",
        "must fit in one 64 KiB DNS message",
    );
}

#[test]
fn zone_below_a_delegation_is_rejected_and_bad_names_too() {
    one_issue(
        "[[zones.records]]\nname = \"lab\"\ntype = \"NS\"\ndata = \"ns.elsewhere.net\"\n[[zones]]\nname = \"x.lab.example.com\"\nns = [\"ns1.example.com\"]\n[zones.soa]\nmname = \"ns1.example.com\"\nrname = \"h.example.com\"\n",
        "zones[1].name",
        "is below the delegation \"lab.example.com.\"",
    );
    one_issue(
        "[[targets]]\nname = \"c\"\ncname = \"cdn.example.net..\"\n",
        "targets[2].cname",
        "empty label",
    );
}

// ---------------------------------------------------------------------------------------------
// Names (issue 12, item 17): the file and the admin API apply the same rules.

#[test]
fn target_names_are_short_plain_names() {
    for (bad, needle) in [
        ("cdn\\nx", "not allowed"),
        ("cdn\\\"x", "not allowed"),
        ("cdn x", "not allowed"),
        ("-cdn", "must start with a letter or a digit"),
    ] {
        let i = one_issue(
            &format!("[[targets]]\nname = \"{bad}\"\na = [\"192.0.2.9\"]\n"),
            "targets[2].name",
            needle,
        );
        assert!(i.line.is_some(), "{bad}: {i:?}");
    }
    let long = "c".repeat(10_000);
    let i = one_issue(
        &format!("[[targets]]\nname = \"{long}\"\na = [\"192.0.2.9\"]\n"),
        "targets[2].name",
        "at most 64 characters",
    );
    assert!(
        i.message.len() < 200,
        "the message does not echo 10 KB: {i:?}"
    );
    // The widest name allowed.
    let ok = format!(
        "{}\n[[targets]]\nname = \"C.d-e_{}\"\na = [\"192.0.2.9\"]\n",
        base(),
        "f".repeat(58)
    );
    config::parse(&ok, "ok").expect("64 characters of letters, digits, . - _ are a name");
}

#[test]
fn dns_names_hold_host_name_characters_only() {
    one_issue(
        "[[services]]\nname = \"w\\\"w.example.com\"\npolicy = \"failover\"\ntargets = [{ target = \"cdn-a\" }]\n",
        "services[0].name",
        "not a valid domain name",
    );
    one_issue(
        "[[zones.records]]\nname = \"a/b\"\ntype = \"A\"\ndata = \"192.0.2.1\"\n",
        "zones[0].records[0].name",
        "not a valid domain name",
    );
    // Nor through an escape: `\\.` would put a dot inside a label, `*` a wildcard in a name.
    one_issue(
        "[[zones.records]]\nname = \"a\\\\.b\"\ntype = \"A\"\ndata = \"192.0.2.1\"\n",
        "zones[0].records[0].name",
        "not allowed",
    );
    one_issue(
        "[[targets]]\nname = \"c\"\ncname = \"*x.cdn.net\"\n",
        "targets[2].cname",
        "not allowed",
    );
    one_issue(
        "[[zones]]\nname = \"bad!x.example\"\nns = [\"ns1.example.com\"]\n[zones.soa]\nmname = \"ns1.example.com\"\nrname = \"h.example.com\"\n",
        "zones[1].name",
        "not a valid domain name",
    );
    // Underscores stay allowed (_dmarc, _acme-challenge).
    let ok = format!(
        "{}\n[[zones.records]]\nname = \"_dmarc\"\ntype = \"TXT\"\ndata = \"v=DMARC1; p=none\"\n",
        base()
    );
    config::parse(&ok, "ok").expect("underscore labels");
}

#[test]
fn override_reasons_are_one_line_of_bounded_text() {
    let i = one_issue(
        "[[overrides]]\ntarget = \"cdn-a\"\nstate = \"drained\"\nreason = \"line one\\nline two\"\n",
        "overrides[0].reason",
        "control characters",
    );
    assert!(i.line.is_some());
    one_issue(
        &format!(
            "[[overrides]]\ntarget = \"cdn-a\"\nstate = \"drained\"\nreason = \"{}\"\n",
            "r".repeat(257)
        ),
        "overrides[0].reason",
        "at most 256 bytes",
    );
}

#[test]
fn vantage_names_follow_the_target_name_rule() {
    one_issue(
        "[probe]\nvantage = \"fra\\\"1\"\n",
        "probe.vantage",
        "not allowed",
    );
}

// ---------------------------------------------------------------------------------------------
// A configuration that would serve nothing (issue 12, item 15).

#[test]
fn a_configuration_without_zones_is_refused_unless_it_says_so() {
    let dir = tempfile::tempdir().unwrap();
    let p = dir.path().join("empty.toml");
    for text in [
        "",
        "# nothing yet\n",
        "[server]\ndns_listen = [\"127.0.0.1:5353\"]\n",
    ] {
        std::fs::write(&p, text).unwrap();
        let e = config::load(&p).expect_err("no zone");
        assert_eq!(e.issues.len(), 1, "{e}");
        assert_eq!(e.issues[0].field, "zones", "{e}");
        assert!(e.to_string().contains("REFUSED"), "{e}");
        assert!(e.to_string().contains("allow_no_zones = true"), "{e}");
    }
    std::fs::write(&p, "allow_no_zones = true\n").unwrap();
    let cfg = config::load(&p).expect("said so");
    assert!(cfg.zones.is_empty());
}

// ---------------------------------------------------------------------------------------------
// Relative paths start from the configuration's directory (issue 12, item 18).

/// A configuration file `steerd.toml` in a new directory.
fn file_in_dir(extra: &str) -> (tempfile::TempDir, std::path::PathBuf) {
    let dir = tempfile::tempdir().unwrap();
    let p = dir.path().join("steerd.toml");
    std::fs::write(&p, format!("{}\n{extra}", base())).unwrap();
    (dir, p)
}

#[test]
fn relative_paths_resolve_from_the_configuration_directory() {
    let (dir, p) = file_in_dir(
        "[server]\nstate_file = \"run/steerd.state.json\"\n\n[geo]\ndatabase = \"data/geo.mmdb\"\ncountries = \"data/countries.csv\"\nnets_file = \"nets.toml\"\n",
    );
    std::fs::create_dir(dir.path().join("data")).unwrap();
    std::fs::copy("geodb/countries.csv", dir.path().join("data/countries.csv")).unwrap();
    // Loaded from a working directory (the repository's) that holds none of these files.
    let cfg = config::load(&p).unwrap_or_else(|e| panic!("{e}"));
    assert_eq!(
        cfg.geo.database.as_deref(),
        Some(dir.path().join("data/geo.mmdb").as_path())
    );
    assert_eq!(cfg.geo.countries, dir.path().join("data/countries.csv"));
    assert_eq!(
        cfg.geo.nets_file.as_deref(),
        Some(dir.path().join("nets.toml").as_path())
    );
    assert_eq!(
        cfg.server.state_file.as_deref().map(std::path::Path::new),
        Some(dir.path().join("run/steerd.state.json").as_path())
    );
    // Absolute paths stay as written.
    let abs = dir.path().join("data/countries.csv");
    let (_d2, p2) = file_in_dir(&format!("[geo]\ncountries = \"{}\"\n", abs.display()));
    assert_eq!(config::load(&p2).unwrap().geo.countries, abs);
    // A relative country table that is not beside the file is an error naming it there.
    let (d3, p3) = file_in_dir("[geo]\ncountries = \"mine.csv\"\n");
    let e = config::load(&p3).expect_err("not beside the file");
    let i = e
        .issues
        .iter()
        .find(|i| i.field == "geo.countries")
        .expect("geo.countries");
    assert!(
        i.message
            .contains(&d3.path().join("mine.csv").display().to_string()),
        "{i:?}"
    );
}

#[test]
fn the_shipped_geo_files_are_found_from_the_working_directory_too() {
    // Written as shipped (`geodb/...`), not beside the file: the working directory's (the
    // repository root here, /usr/share/steerd for the packaged unit and image).
    let (_dir, p) = file_in_dir(
        "[geo]\ndatabase = \"geodb/geo-whois-asn-country.mmdb\"\ncountries = \"geodb/countries.csv\"\n",
    );
    let cfg = config::load(&p).unwrap();
    assert_eq!(
        cfg.geo.database.as_deref(),
        Some(std::path::Path::new("geodb/geo-whois-asn-country.mmdb"))
    );
    assert_eq!(
        cfg.geo.countries,
        std::path::Path::new("geodb/countries.csv")
    );
    // Left out: the same defaults.
    let (_dir, p) = file_in_dir("");
    let cfg = config::load(&p).unwrap();
    assert_eq!(
        cfg.geo.database.as_deref(),
        Some(std::path::Path::new("geodb/geo-whois-asn-country.mmdb"))
    );
}

#[test]
fn ca_files_resolve_from_the_configuration_directory() {
    let (dir, p) = file_in_dir("[probe]\nca_file = \"certs/ca.pem\"\n");
    std::fs::create_dir(dir.path().join("certs")).unwrap();
    let cert = rcgen::generate_simple_self_signed(vec!["ca.test".to_string()]).unwrap();
    std::fs::write(dir.path().join("certs/ca.pem"), cert.cert.pem()).unwrap();
    let cfg = config::load(&p).unwrap_or_else(|e| panic!("{e}"));
    assert_eq!(
        cfg.probe.ca_file.as_deref(),
        Some(dir.path().join("certs/ca.pem").as_path())
    );
}

#[test]
fn connection_limits_rrl_and_cookie_keys_name_the_field() {
    for (extra, field, needle) in [
        (
            "[server]\ntcp_max_connections = 0",
            "server.tcp_max_connections",
            "between 1 and",
        ),
        (
            "[server]\ntcp_max_connections = 10\ntcp_max_connections_per_source = 11",
            "server.tcp_max_connections_per_source",
            "at most server.tcp_max_connections",
        ),
        (
            "[server]\ntcp_message_timeout = 0",
            "server.tcp_message_timeout",
            "seconds between",
        ),
        (
            "[server]\nfd_reserve = 10",
            "server.fd_reserve",
            "between 64",
        ),
        (
            "[admin]\nheader_timeout = -1",
            "admin.header_timeout",
            "seconds between",
        ),
        (
            "[admin]\nmax_connections = 4\nmax_connections_per_source = 5",
            "admin.max_connections_per_source",
            "at most admin.max_connections",
        ),
        (
            "[server.rrl]\nresponses_per_second = 5000",
            "server.rrl.responses_per_second",
            "between 0 and 1000",
        ),
        (
            "[server.rrl]\nresponses_per_second = 5\nslip = 11",
            "server.rrl.slip",
            "between 0 and 10",
        ),
        (
            "[server.rrl]\nresponses_per_second = 5\nwindow = 0",
            "server.rrl.window",
            "between 1 and 3600",
        ),
        (
            "[server.rrl]\nresponses_per_second = 5\nipv4_prefix_length = 33",
            "server.rrl.ipv4_prefix_length",
            "at most 32",
        ),
        (
            "[server.rrl]\nresponses_per_second = 5\nexempt_clients = [\"10.1.2.3/8\"]",
            "server.rrl.exempt_clients[0]",
            "10.0.0.0/8",
        ),
        (
            "[server.rrl]\nresponses_per_second = 5\nexempt_clients = [\"nope\"]",
            "server.rrl.exempt_clients[0]",
            "not an address or a CIDR",
        ),
        (
            "[server.cookies]\nsecret_env = \"STEERD_TEST_COOKIE_SECRET_UNSET\"",
            "server.cookies.secret_env",
            "is not set",
        ),
    ] {
        one_issue(extra, field, needle);
    }
}
