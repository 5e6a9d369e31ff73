//! Configuration validation: one test per rule; each checks that the error names the field (and
//! the line) and says why.

use steerd::config::{self, ConfigIssue};

const BASE: &str = r#"
[[zones]]
name = "example.com"
ns = ["ns1.example.com"]
[zones.soa]
mname = "ns1.example.com"
rname = "hostmaster.example.com"

[[targets]]
name = "cdn-a"
cname = "a.cdn.net"

[[targets]]
name = "cdn-b"
a = ["192.0.2.1"]
"#;

fn issues(extra: &str) -> Vec<ConfigIssue> {
    let text = format!("{BASE}\n{extra}");
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
    let cfg = config::parse(BASE, "base").expect("valid");
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
    let e = config::parse(&format!("{BASE}\n[server]\nlisten = [\"x\"]\n"), "t.toml").unwrap_err();
    assert!(
        e.issues[0].message.contains("unknown field `listen`"),
        "{e}"
    );
    assert!(e.issues[0].line.is_some(), "{e}");
    let e = config::parse(&format!("{BASE}\n[[services]]\nname = \"w.example.com\"\npolicy = \"failover\"\ntargets = [{{ target = \"cdn-a\", wieght = 3 }}]\n"), "t.toml").unwrap_err();
    assert!(e.to_string().contains("wieght"), "{e}");
}

#[test]
fn type_errors_name_the_field_and_the_line() {
    let e = config::parse(
        &format!("{BASE}\n[[services]]\nname = \"w.example.com\"\npolicy = \"failover\"\nttl = -5\ntargets = [{{ target = \"cdn-a\" }}]\n"),
        "t.toml",
    )
    .unwrap_err();
    assert_eq!(e.issues[0].field, "services[0].ttl", "{e}");
    assert!(e.issues[0].line.is_some(), "{e}");
    let e = config::parse(
        &format!("{BASE}\n[server]\nmax_udp_payload = \"big\"\n"),
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
