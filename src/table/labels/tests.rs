use super::*;

#[test]
fn key_packs_and_unpacks_every_field() {
    let k = QueryKey::new(ID_MASK as u32, 12345, 6, Proto::Tcp, true);
    assert_eq!(k.service(), ID_MASK as u32);
    assert_eq!(k.target(), 12345);
    assert_eq!(k.rcode(), 6);
    assert_eq!(k.proto(), Proto::Tcp);
    assert!(k.ecs());
    let k = k.with_ecs(false).with_proto(Proto::Udp);
    assert_eq!(
        (k.service(), k.target(), k.rcode()),
        (ID_MASK as u32, 12345, 6)
    );
    assert_eq!(k.proto(), Proto::Udp);
    assert!(!k.ecs());
    let f = QueryKey::formerr(Proto::Udp);
    assert_eq!((f.service(), f.target()), (0, 0));
    assert_eq!(RCODES[f.rcode() as usize], "formerr");
}

#[test]
fn rcodes_map_to_their_names() {
    let names: Vec<&str> = [
        ResponseCode::NoError,
        ResponseCode::NXDomain,
        ResponseCode::ServFail,
        ResponseCode::Refused,
        ResponseCode::FormErr,
        ResponseCode::NotImp,
        ResponseCode::BADVERS,
        ResponseCode::YXDomain,
    ]
    .into_iter()
    .map(|c| RCODES[rcode_of(c) as usize])
    .collect();
    assert_eq!(
        names,
        [
            "noerror", "nxdomain", "servfail", "refused", "formerr", "notimp", "other", "other"
        ]
    );
}

#[test]
fn interned_ids_are_stable_and_distinct() {
    let a = intern("stats-test-a.example.");
    let b = intern("stats-test-b.example.");
    assert_ne!(a, b);
    assert_ne!(a, 0);
    assert_eq!(intern("stats-test-a.example."), a);
    assert_eq!(intern(""), 0);
    assert_eq!(&*label(a), "stats-test-a.example.");
    assert_eq!(&*label(u32::MAX), "");
}

#[test]
fn interner_reclaims_the_oldest_idle_names_beyond_its_bound() {
    let mut i = Interner::new(2);
    let [a, b, c, d] = ["a", "b", "c", "d"].map(|n| i.acquire(n));
    let pinned = i.pin("p");
    assert_eq!(i.acquire("a"), a, "the same text, the same id");
    i.release(a);
    for id in [a, b, c, d, pinned] {
        i.release(id);
    }
    // Idle in the order a, b, c, d (a was held twice); two idle names are kept.
    i.reclaim();
    assert_eq!(i.len(), 1 + 2 + 1, "\"\", c, d and the pinned name");
    assert_eq!(i.name(a), None);
    assert_eq!(i.name(b), None);
    assert_eq!(i.name(c).map(|n| &**n), Some("c"));
    assert_eq!(i.name(pinned).map(|n| &**n), Some("p"));
    // A held idle name is no longer idle: d is reclaimed before it.
    assert_eq!(i.acquire("c"), c);
    let e = i.acquire("e");
    assert!([a, b].contains(&e), "a freed id is given again");
    i.release(e);
    let f = i.acquire("f");
    i.release(f);
    i.reclaim();
    assert_eq!(i.name(d), None, "the oldest idle name went first");
    assert_eq!(i.name(c).map(|n| &**n), Some("c"));
    assert_eq!(i.len(), 1 + 1 + 2 + 1, "\"\", c held, e and f idle, p");
}

#[test]
fn names_no_table_holds_are_bounded() {
    // Configurations with ever-new names (reloads, API writes): the names of dropped
    // tables do not pile up beyond the bound.
    let before = interned_labels();
    for i in 0..3 * MAX_IDLE_LABELS {
        let svc = format!("churn-{i}.example.");
        let tgt = format!("churn-cdn-{i}");
        drop(TableLabels::from_names(["churn.example."], [svc], [[tgt]]));
    }
    // Slack for the names the other tests intern meanwhile.
    assert!(
        interned_labels() <= before + MAX_IDLE_LABELS + 256,
        "{} names interned, {before} before",
        interned_labels()
    );
}
