//! `docs/openapi.json` against the admin API's source: the document is well formed, lists
//! exactly the routes and methods `router()` registers (with the resources' routers it
//! merges), every `$ref` resolves, every operation is documented (responses, 401/403 where
//! auth applies, tags, ids), and the request bodies and query parameters match the handlers'
//! serde structs.

use std::collections::{BTreeMap, BTreeSet};
use std::sync::OnceLock;

use serde_json::Value;

const DOC: &str = include_str!("../docs/openapi.json");

/// The files of src/admin that are not the handlers' (the store, the document editing, the
/// accept loop).
const NOT_HANDLERS: [&str; 3] = ["store", "doc", "listen"];

/// The admin API's handler sources: module name ("mod", "targets", …) → text.
fn admin_files() -> &'static BTreeMap<String, String> {
    static FILES: OnceLock<BTreeMap<String, String>> = OnceLock::new();
    FILES.get_or_init(|| {
        let dir = concat!(env!("CARGO_MANIFEST_DIR"), "/src/admin");
        let mut files = BTreeMap::new();
        for e in std::fs::read_dir(dir).expect("src/admin") {
            let path = e.expect("a directory entry").path();
            let Some(module) = path.file_stem().and_then(|s| s.to_str()) else {
                continue;
            };
            if path.extension().is_some_and(|x| x == "rs") && !NOT_HANDLERS.contains(&module) {
                let text = std::fs::read_to_string(&path).expect("a source file");
                files.insert(module.to_string(), text);
            }
        }
        assert!(files.contains_key("mod"), "src/admin/mod.rs not found");
        files
    })
}

/// Every handler source file of src/admin, one after the other.
fn admin_src() -> &'static str {
    static SRC: OnceLock<String> = OnceLock::new();
    SRC.get_or_init(|| {
        let files: Vec<&str> = admin_files().values().map(String::as_str).collect();
        files.join("\n")
    })
}

const METHODS: [&str; 8] = [
    "get", "put", "post", "delete", "patch", "head", "options", "trace",
];
const TAGS: [&str; 10] = [
    "status",
    "targets",
    "services",
    "zones",
    "overrides",
    "inputs",
    "events",
    "purges",
    "config",
    "metrics",
];

fn doc() -> Value {
    serde_json::from_str(DOC).expect("docs/openapi.json is valid JSON")
}

// ---------------------------------------------------------------------------------------------
// Reading the Rust source

/// `src` without comments (`//…` and `/* … */`); string literals are kept as they are.
fn strip_comments(src: &str) -> String {
    let b = src.as_bytes();
    let mut out = String::with_capacity(src.len());
    let mut i = 0;
    let mut in_str = false;
    while i < b.len() {
        let c = b[i];
        if in_str {
            out.push(c as char);
            if c == b'\\' && i + 1 < b.len() {
                out.push(b[i + 1] as char);
                i += 2;
                continue;
            }
            if c == b'"' {
                in_str = false;
            }
            i += 1;
        } else if c == b'"' {
            in_str = true;
            out.push('"');
            i += 1;
        } else if b[i..].starts_with(b"//") {
            while i < b.len() && b[i] != b'\n' {
                i += 1;
            }
        } else if b[i..].starts_with(b"/*") {
            i += 2;
            while i < b.len() && !b[i..].starts_with(b"*/") {
                i += 1;
            }
            i += 2;
        } else {
            // Non-ASCII only occurs in comments and strings; copy whole characters.
            let ch = src[i..].chars().next().expect("in bounds");
            out.push(ch);
            i += ch.len_utf8();
        }
    }
    out
}

/// Index just past the bracket closing the one opened at `open` (`(`/`{`), skipping strings.
fn matching(s: &str, open: usize) -> usize {
    let b = s.as_bytes();
    let (o, c) = match b[open] {
        b'(' => (b'(', b')'),
        b'{' => (b'{', b'}'),
        x => panic!("not an opening bracket: {:?}", x as char),
    };
    let mut depth = 0usize;
    let mut i = open;
    let mut in_str = false;
    while i < b.len() {
        let x = b[i];
        if in_str {
            if x == b'\\' {
                i += 1;
            } else if x == b'"' {
                in_str = false;
            }
        } else if x == b'"' {
            in_str = true;
        } else if x == o {
            depth += 1;
        } else if x == c {
            depth -= 1;
            if depth == 0 {
                return i + 1;
            }
        }
        i += 1;
    }
    panic!("unbalanced brackets from offset {open}");
}

/// The bodies of every `fn NAME` in `src` (comments removed; declarations without a body,
/// as in a trait, left out).
fn fn_bodies(src: &str, name: &str) -> Vec<String> {
    let src = strip_comments(src);
    let def = regex::Regex::new(&format!(r"\bfn\s+{name}\s*[(<]")).unwrap();
    let mut out = Vec::new();
    for m in def.find_iter(&src) {
        let params = m.start() + src[m.start()..].find('(').expect("parameters");
        let after = matching(&src, params);
        // The body's `{`, or the `;` of a declaration (`[T; N]` in the return type skipped).
        let mut square = 0usize;
        for (i, c) in src[after..].char_indices() {
            match c {
                '[' => square += 1,
                ']' => square = square.saturating_sub(1),
                ';' if square == 0 => break,
                '{' => {
                    let open = after + i;
                    out.push(src[open..matching(&src, open)].to_string());
                    break;
                }
                _ => {}
            }
        }
    }
    out
}

/// The body of the first `fn NAME` in `src` (comments removed).
fn fn_body(src: &str, name: &str) -> String {
    fn_bodies(src, name)
        .into_iter()
        .next()
        .unwrap_or_else(|| panic!("fn {name} not found in src/admin"))
}

/// What handler `name` does: its body and the bodies of every admin function it calls,
/// directly or through others (the shared helpers do much of it). Methods and associated
/// functions (`.f(`, `Type::f(`) are not followed: only free functions (`f(`, `module::f(`).
fn handler_src(name: &str) -> String {
    let src = strip_comments(admin_src());
    let def = regex::Regex::new(r"\bfn\s+([A-Za-z_][A-Za-z0-9_]*)\s*[(<]").unwrap();
    let defined: BTreeSet<String> = def.captures_iter(&src).map(|c| c[1].to_string()).collect();
    let call =
        regex::Regex::new(r"([.]|[A-Z][A-Za-z0-9_]*::)?\b([A-Za-z_][A-Za-z0-9_]*)\s*(?:\(|::<)")
            .unwrap();
    let mut seen = BTreeSet::from([name.to_string()]);
    let mut todo = vec![name.to_string()];
    let mut out = String::new();
    while let Some(f) = todo.pop() {
        let bodies = fn_bodies(&src, &f);
        assert!(!bodies.is_empty(), "fn {f} not found in src/admin");
        for body in bodies {
            for c in call.captures_iter(&body) {
                let free = c.get(1).is_none();
                if free && defined.contains(&c[2]) && seen.insert(c[2].to_string()) {
                    todo.push(c[2].to_string());
                }
            }
            out.push_str(&body);
            out.push('\n');
        }
    }
    out
}

/// Every `.route("PATH", get(..).put(..)…)` of `router()` in src/admin/mod.rs and of the
/// routers it merges (`.merge(MODULE::router())`): path → method (lower case) → handler
/// function.
fn router_routes() -> Routes {
    let files = admin_files();
    let mut routes = routes_in(&files["mod"]);
    for module in merged(&files["mod"]) {
        let src = files.get(&module).unwrap_or_else(|| {
            panic!("router() merges {module}::router(): no src/admin/{module}.rs")
        });
        for (path, methods) in routes_in(src) {
            assert!(
                routes.insert(path.clone(), methods).is_none(),
                "{path} is routed twice"
            );
        }
    }
    routes
}

/// The modules whose routers `fn router` in `src` merges, in order.
fn merged(src: &str) -> Vec<String> {
    let body = fn_body(src, "router");
    let re = regex::Regex::new(r"^\.merge\(\s*([a-z_][a-z0-9_]*)::router\([a-z_]*\)\s*\)").unwrap();
    let mut out = Vec::new();
    for (at, _) in body.match_indices(".merge(") {
        let c = re.captures(&body[at..]).unwrap_or_else(|| {
            panic!("router() merges something other than MODULE::router(): teach tests/openapi.rs to read it")
        });
        out.push(c[1].to_string());
    }
    out
}

type Routes = BTreeMap<String, BTreeMap<String, String>>;

/// The routes of `fn router` in `src`.
fn routes_in(src: &str) -> Routes {
    let body = fn_body(src, "router");
    for unsupported in [".nest(", ".route_service(", ".nest_service("] {
        assert!(
            !body.contains(unsupported),
            "router() uses {unsupported}: teach tests/openapi.rs to read it"
        );
    }
    let method_call =
        regex::Regex::new(r"\b(get|put|post|delete|patch|head|options|trace|any|on)\s*\(").unwrap();
    let handler = regex::Regex::new(r"^\(\s*([A-Za-z_][A-Za-z0-9_:]*)\s*\)").unwrap();
    let mut routes = Routes::new();
    let mut rest = body.as_str();
    while let Some(at) = rest.find(".route(") {
        let open = at + ".route".len();
        let end = matching(rest, open);
        let args = rest[open + 1..end - 1].trim_start();
        assert!(
            args.starts_with('"'),
            "a route path that is not a string literal: {args}"
        );
        let close = args[1..].find('"').expect("closing quote") + 1;
        let path = args[1..close].to_string();
        let handlers = &args[close + 1..];
        let mut methods = BTreeMap::new();
        for m in method_call.captures_iter(handlers) {
            let name = m[1].to_string();
            assert!(
                name != "any" && name != "on",
                "{path}: `{name}(..)` routing is not understood by tests/openapi.rs"
            );
            let call = &handlers[m.get(0).unwrap().end() - 1..];
            let h = handler
                .captures(call)
                .unwrap_or_else(|| panic!("{path}: {name}(..) does not name a handler: {call}"));
            assert!(
                methods.insert(name.clone(), h[1].to_string()).is_none(),
                "{path}: {name} registered twice"
            );
        }
        assert!(!methods.is_empty(), "{path}: no method found in {handlers}");
        assert!(
            routes.insert(path.clone(), methods).is_none(),
            "{path} is routed twice"
        );
        rest = &rest[end..];
    }
    routes
}

fn methods_of(routes: &Routes, path: &str) -> BTreeSet<String> {
    routes
        .get(path)
        .unwrap_or_else(|| panic!("{path} is not routed"))
        .keys()
        .cloned()
        .collect()
}

/// The paths the auth middleware lets through without a token (`let public = path == "…" || …`).
fn public_paths() -> BTreeSet<String> {
    let body = fn_body(admin_src(), "auth");
    let at = body
        .find("let public =")
        .expect("auth() decides `let public = …`");
    let stmt = &body[at..at + body[at..].find(';').expect("statement end")];
    let re = regex::Regex::new(r#"path\s*==\s*"([^"]+)""#).unwrap();
    let out: BTreeSet<String> = re.captures_iter(stmt).map(|c| c[1].to_string()).collect();
    assert!(!out.is_empty(), "no public path found in {stmt}");
    out
}

/// A serde struct's fields: JSON name → required (not `Option`, no `#[serde(default)]`), and
/// whether the struct denies unknown fields.
fn serde_struct(name: &str) -> (BTreeMap<String, bool>, bool) {
    let src = strip_comments(admin_src());
    let at = src
        .find(&format!("struct {name} {{"))
        .unwrap_or_else(|| panic!("struct {name} not found in src/admin"));
    let attrs_start = src[..at].rfind("\n\n").unwrap_or(0);
    let deny = src[attrs_start..at].contains("deny_unknown_fields");
    let open = at + src[at..].find('{').expect("struct body");
    let body = &src[open + 1..matching(&src, open) - 1];
    let rename = regex::Regex::new(r#"rename\s*=\s*"([^"]+)""#).unwrap();
    let mut fields = BTreeMap::new();
    let mut pending_rename: Option<String> = None;
    let mut pending_default = false;
    for line in body.lines().map(str::trim).filter(|l| !l.is_empty()) {
        if line.starts_with("#[") {
            if line.contains("serde(") {
                if let Some(c) = rename.captures(line) {
                    pending_rename = Some(c[1].to_string());
                }
                if line.contains("default") {
                    pending_default = true;
                }
            }
            continue;
        }
        let (field, ty) = line
            .trim_start_matches("pub ")
            .split_once(':')
            .unwrap_or_else(|| panic!("struct {name}: cannot read field line {line:?}"));
        let json = pending_rename
            .take()
            .unwrap_or_else(|| field.trim().to_string());
        let required = !ty.trim().starts_with("Option<") && !pending_default;
        pending_default = false;
        fields.insert(json, required);
    }
    assert!(!fields.is_empty(), "struct {name} has no fields?");
    (fields, deny)
}

// ---------------------------------------------------------------------------------------------
// Reading the document

/// Follow `$ref`s (local JSON pointers) to the value they name.
fn resolve<'a>(doc: &'a Value, mut v: &'a Value) -> &'a Value {
    for _ in 0..32 {
        let Some(r) = v.get("$ref").and_then(Value::as_str) else {
            return v;
        };
        v = pointer(doc, r).unwrap_or_else(|| panic!("unresolved $ref {r}"));
    }
    panic!("$ref chain too long");
}

fn pointer<'a>(doc: &'a Value, r: &str) -> Option<&'a Value> {
    let p = r.strip_prefix('#')?;
    doc.pointer(p)
}

/// Every operation: (path, method, operation).
fn operations(doc: &Value) -> Vec<(String, String, &Value)> {
    let mut out = Vec::new();
    for (path, item) in doc["paths"].as_object().expect("paths is an object") {
        for (m, op) in item.as_object().expect("a path item is an object") {
            if METHODS.contains(&m.as_str()) {
                out.push((path.clone(), m.clone(), op));
            }
        }
    }
    out
}

/// Parameters of an operation (path-level ones first), `$ref`s resolved.
fn parameters<'a>(doc: &'a Value, path: &str, op: &'a Value) -> Vec<&'a Value> {
    let item = &doc["paths"][path];
    item.get("parameters")
        .and_then(Value::as_array)
        .into_iter()
        .flatten()
        .chain(
            op.get("parameters")
                .and_then(Value::as_array)
                .into_iter()
                .flatten(),
        )
        .map(|p| resolve(doc, p))
        .collect()
}

fn walk_refs<'a>(v: &'a Value, at: String, out: &mut Vec<(String, &'a str)>) {
    match v {
        Value::Object(m) => {
            for (k, x) in m {
                if k == "$ref"
                    && let Some(s) = x.as_str()
                {
                    out.push((at.clone(), s));
                }
                walk_refs(x, format!("{at}/{k}"), out);
            }
        }
        Value::Array(a) => {
            for (i, x) in a.iter().enumerate() {
                walk_refs(x, format!("{at}/{i}"), out);
            }
        }
        _ => {}
    }
}

fn schema_of<'a>(doc: &'a Value, name: &str) -> &'a Value {
    doc["components"]["schemas"]
        .get(name)
        .unwrap_or_else(|| panic!("components.schemas.{name} is missing"))
}

// ---------------------------------------------------------------------------------------------
// Tests

#[test]
fn document_is_openapi_3_1_with_bearer_auth() {
    let d = doc();
    let v = d["openapi"].as_str().expect("openapi is a string");
    assert!(v.starts_with("3.1."), "openapi is {v}, want 3.1.x");
    assert!(d["info"]["title"].as_str().is_some_and(|t| !t.is_empty()));
    assert!(d["info"]["version"].as_str().is_some_and(|t| !t.is_empty()));
    assert!(d["paths"].as_object().is_some_and(|p| !p.is_empty()));
    let bearer = &d["components"]["securitySchemes"]["bearer"];
    assert_eq!(bearer["type"], "http", "{bearer}");
    assert_eq!(bearer["scheme"], "bearer", "{bearer}");
    // The tags the operations use are declared, once each.
    let declared: Vec<&str> = d["tags"]
        .as_array()
        .expect("top-level tags")
        .iter()
        .map(|t| t["name"].as_str().expect("tag name"))
        .collect();
    let unique: BTreeSet<&str> = declared.iter().copied().collect();
    assert_eq!(unique.len(), declared.len(), "duplicate tags: {declared:?}");
    assert_eq!(unique, TAGS.into_iter().collect(), "top-level tags");
}

#[test]
fn served_document_is_this_file() {
    assert_eq!(steerd::admin::OPENAPI, DOC);
}

#[test]
fn paths_and_methods_match_the_router() {
    let routes = router_routes();
    assert!(
        routes.len() >= 20,
        "only {} routes read from router(): is the parser still right? {routes:?}",
        routes.len()
    );
    let d = doc();
    let mut documented: BTreeMap<String, BTreeSet<String>> = BTreeMap::new();
    for (path, method, _) in operations(&d) {
        documented.entry(path).or_default().insert(method);
    }
    let mut problems = Vec::new();
    for (path, methods) in &routes {
        let methods: BTreeSet<String> = methods.keys().cloned().collect();
        match documented.get(path) {
            None => problems.push(format!("{path} is routed but not in paths")),
            Some(doc_methods) => {
                for m in methods.difference(doc_methods) {
                    problems.push(format!(
                        "{} {path} is routed but not documented",
                        m.to_uppercase()
                    ));
                }
                for m in doc_methods.difference(&methods) {
                    problems.push(format!(
                        "{} {path} is documented but not routed",
                        m.to_uppercase()
                    ));
                }
            }
        }
    }
    for path in documented.keys() {
        if !routes.contains_key(path) {
            problems.push(format!("{path} is documented but not routed"));
        }
    }
    assert!(problems.is_empty(), "{}", problems.join("\n"));
}

#[test]
fn router_parser_reads_multi_line_chains() {
    // The parser itself, on a router written across lines with comments in between.
    let routes = router_routes();
    assert_eq!(
        methods_of(&routes, "/v1/targets/{name}"),
        ["delete", "get", "put"].map(String::from).into()
    );
    assert_eq!(routes["/v1/targets/{name}"]["put"], "put_target");
    assert_eq!(
        methods_of(&routes, "/v1/observations"),
        ["post"].map(String::from).into()
    );
    assert_eq!(
        methods_of(&routes, "/v1/zones/{zone}/records/{name}/{rtype}"),
        ["delete", "get", "put"].map(String::from).into()
    );
    let src = "fn other() { x.route(\"/no\", get(n)); }\n\
               pub fn router(api: Arc<Api>) -> Router {\n\
               Router::new()\n\
               .route(\n \"/a/{x}\", // .route(\"/commented\", get(c))\n\
               get(get_a) /* .put(p) */\n\
               .delete(delete_a),\n\
               )\n\
               // .route(\"/old\", get(old))\n\
               .route(\"/b\", post(post_b))\n\
               .with_state(api)\n}";
    let want: Routes = [
        (
            "/a/{x}".to_string(),
            [("delete", "delete_a"), ("get", "get_a")]
                .map(|(m, h)| (m.to_string(), h.to_string()))
                .into(),
        ),
        (
            "/b".to_string(),
            [("post".to_string(), "post_b".to_string())].into(),
        ),
    ]
    .into();
    assert_eq!(routes_in(src), want);
}

#[test]
fn every_ref_resolves() {
    let d = doc();
    let mut refs = Vec::new();
    walk_refs(&d, String::new(), &mut refs);
    assert!(!refs.is_empty());
    let bad: Vec<String> = refs
        .iter()
        .filter(|(_, r)| pointer(&d, r).is_none())
        .map(|(at, r)| format!("{at}: {r}"))
        .collect();
    assert!(bad.is_empty(), "unresolved $refs:\n{}", bad.join("\n"));
}

#[test]
fn every_component_is_used() {
    let d = doc();
    let mut refs = Vec::new();
    walk_refs(&d, String::new(), &mut refs);
    let used: BTreeSet<&str> = refs.iter().map(|(_, r)| *r).collect();
    let mut unused = Vec::new();
    for kind in ["schemas", "parameters", "responses", "headers"] {
        for name in d["components"][kind]
            .as_object()
            .into_iter()
            .flatten()
            .map(|(k, _)| k)
        {
            let r = format!("#/components/{kind}/{name}");
            if !used.contains(r.as_str()) {
                unused.push(r);
            }
        }
    }
    assert!(unused.is_empty(), "unused components: {unused:?}");
}

#[test]
fn every_operation_is_documented_with_its_responses() {
    let d = doc();
    let public = public_paths();
    let routes = router_routes();
    for p in &public {
        assert!(routes.contains_key(p), "public path {p} is not routed");
    }
    let mut ids = BTreeSet::new();
    let mut problems = Vec::new();
    for (path, method, op) in operations(&d) {
        let what = format!("{} {path}", method.to_uppercase());
        let id = op["operationId"].as_str().unwrap_or("");
        if id.is_empty() {
            problems.push(format!("{what}: no operationId"));
        } else if !ids.insert(id.to_string()) {
            problems.push(format!("{what}: operationId {id} is used twice"));
        }
        for key in ["summary", "description"] {
            if op[key].as_str().is_none_or(|s| s.trim().is_empty()) {
                problems.push(format!("{what}: no {key}"));
            }
        }
        match op["tags"].as_array() {
            Some(t) if !t.is_empty() => {
                for tag in t {
                    if !tag.as_str().is_some_and(|t| TAGS.contains(&t)) {
                        problems.push(format!("{what}: unknown tag {tag}"));
                    }
                }
            }
            _ => problems.push(format!("{what}: no tags")),
        }
        let Some(responses) = op["responses"].as_object() else {
            problems.push(format!("{what}: no responses"));
            continue;
        };
        for (code, r) in responses {
            let ok_code =
                code.len() == 3 && code.parse::<u16>().is_ok_and(|c| (100..600).contains(&c));
            if !ok_code {
                problems.push(format!("{what}: response {code} is not a status code"));
            }
            if resolve(&d, r)["description"].as_str().is_none() {
                problems.push(format!("{what}: response {code} has no description"));
            }
        }
        if !responses.keys().any(|c| c.starts_with('2')) {
            problems.push(format!("{what}: no 2xx response"));
        }
        // Auth: public routes need nothing; the others need the bearer scheme, and list 401;
        // reads accept a read token, writes need admin (and list 403).
        let security = op
            .get("security")
            .or_else(|| d.get("security"))
            .and_then(Value::as_array)
            .cloned()
            .unwrap_or_default();
        if public.contains(&path) {
            if !security.is_empty() {
                problems.push(format!("{what}: public, but its security is {security:?}"));
            }
            continue;
        }
        if !responses.contains_key("401") {
            problems.push(format!("{what}: no 401 response"));
        } else if resolve(&d, &responses["401"])["headers"]
            .get("WWW-Authenticate")
            .is_none()
        {
            problems.push(format!("{what}: its 401 does not declare WWW-Authenticate"));
        }
        let scopes: Vec<Vec<&str>> = security
            .iter()
            .map(|req| {
                req.get("bearer")
                    .and_then(Value::as_array)
                    .map(|s| s.iter().filter_map(Value::as_str).collect())
                    .unwrap_or_else(|| vec!["<no bearer>"])
            })
            .collect();
        if scopes.is_empty() {
            problems.push(format!("{what}: no security requirement"));
        }
        // Reads of ADMIN_READS (the raw configuration, with its secrets) need admin too.
        let admin_reads: Vec<String> = {
            let src = admin_src();
            let at = src
                .find("const ADMIN_READS")
                .expect("ADMIN_READS in src/admin");
            let line = &src[at..at + src[at..].find(';').unwrap()];
            line.split('"')
                .skip(1)
                .step_by(2)
                .map(str::to_string)
                .collect()
        };
        let read = (method == "get" || method == "head") && !admin_reads.contains(&path);
        if read {
            if !scopes.iter().any(|s| s.contains(&"read")) {
                problems.push(format!(
                    "{what}: a read must accept the read scope ({scopes:?})"
                ));
            }
        } else {
            if !scopes.iter().all(|s| s == &vec!["admin"]) {
                problems.push(format!(
                    "{what}: a write needs the admin scope only ({scopes:?})"
                ));
            }
            if !responses.contains_key("403") {
                problems.push(format!("{what}: a write must list 403 (read token)"));
            }
        }
        // Bodies are parsed by the handler: malformed → 400, too large → 413.
        if op.get("requestBody").is_some() {
            for code in ["400", "413"] {
                if !responses.contains_key(code) {
                    problems.push(format!("{what}: has a body but no {code} response"));
                }
            }
            let content = &resolve(&d, &op["requestBody"])["content"]["application/json"];
            if content.get("schema").is_none() {
                problems.push(format!("{what}: body without an application/json schema"));
            }
            if content["examples"].as_object().is_none_or(|e| e.is_empty()) {
                problems.push(format!("{what}: body without examples"));
            }
        }
        // Conditional writes: If-Match → 412, and the new version as ETag.
        let params = parameters(&d, &path, op);
        if params
            .iter()
            .any(|p| p["name"] == "If-Match" && p["in"] == "header")
        {
            if !responses.contains_key("412") {
                problems.push(format!("{what}: takes If-Match but lists no 412"));
            }
            for (code, r) in responses.iter().filter(|(c, _)| c.starts_with('2')) {
                if resolve(&d, r)["headers"].get("ETag").is_none() {
                    problems.push(format!("{what}: {code} does not declare the ETag"));
                }
            }
        }
    }
    assert!(problems.is_empty(), "{}", problems.join("\n"));
}

/// What each handler does, read from its source, against what its operation documents: an
/// ETag on success (`with_etag` / `written`), `If-Match` (configuration edits through `edit`),
/// a JSON body (`parse_body`).
#[test]
fn operations_match_their_handlers() {
    let d = doc();
    let mut problems = Vec::new();
    for (path, methods) in router_routes() {
        for (method, handler) in methods {
            let what = format!("{} {path} ({handler})", method.to_uppercase());
            let src = handler_src(&handler);
            let op = &d["paths"][&path][&method];
            if op.is_null() {
                continue; // reported by paths_and_methods_match_the_router
            }
            let responses = op["responses"].as_object().cloned().unwrap_or_default();
            let etag = src.contains("with_etag(") || src.contains("written(");
            for (code, r) in responses.iter().filter(|(c, _)| c.starts_with('2')) {
                let documented = resolve(&d, r)["headers"].get("ETag").is_some();
                if documented != etag {
                    problems.push(format!(
                        "{what}: {code} {} an ETag but the handler {}",
                        if documented {
                            "declares"
                        } else {
                            "does not declare"
                        },
                        if etag { "sets one" } else { "does not set one" }
                    ));
                }
            }
            // Through edit(), directly or through the shared helpers.
            let edits = src.contains("edit(");
            let if_match = parameters(&d, &path, op)
                .iter()
                .any(|p| p["name"] == "If-Match" && p["in"] == "header");
            if edits != if_match {
                problems.push(format!(
                    "{what}: If-Match {} but the handler {} the configuration through edit()",
                    if if_match {
                        "documented"
                    } else {
                        "not documented"
                    },
                    if edits { "edits" } else { "does not edit" }
                ));
            }
            if edits {
                for code in ["409", "412", "422", "500"] {
                    if !responses.contains_key(code) {
                        problems.push(format!(
                            "{what}: edits the configuration but lists no {code}"
                        ));
                    }
                }
            }
            let body = src.contains("parse_body(");
            if body != op.get("requestBody").is_some() {
                problems.push(format!(
                    "{what}: requestBody {} but the handler {} a body",
                    if body { "missing" } else { "documented" },
                    if body { "parses" } else { "does not parse" }
                ));
            }
            if src.contains("StatusCode::CREATED") && !responses.contains_key("201") {
                problems.push(format!(
                    "{what}: the handler answers 201 but it is not listed"
                ));
            }
            if src.contains("StatusCode::NOT_FOUND") && !responses.contains_key("404") {
                problems.push(format!(
                    "{what}: the handler answers 404 but it is not listed"
                ));
            }
            if src.contains("batch_response(") {
                for code in ["202", "422"] {
                    if !responses.contains_key(code) {
                        problems.push(format!("{what}: a batch answers {code}; not listed"));
                    }
                }
            }
        }
    }
    assert!(problems.is_empty(), "{}", problems.join("\n"));
}

#[test]
fn path_parameters_match_the_templates() {
    let d = doc();
    let re = regex::Regex::new(r"\{([^}]+)\}").unwrap();
    let mut problems = Vec::new();
    for (path, method, op) in operations(&d) {
        let in_path: BTreeSet<String> = re.captures_iter(&path).map(|c| c[1].to_string()).collect();
        let declared: BTreeSet<String> = parameters(&d, &path, op)
            .iter()
            .filter(|p| p["in"] == "path")
            .map(|p| {
                if p["required"] != true {
                    problems.push(format!(
                        "{method} {path}: path parameter {} not required",
                        p["name"]
                    ));
                }
                p["name"].as_str().unwrap_or("").to_string()
            })
            .collect();
        if in_path != declared {
            problems.push(format!(
                "{} {path}: template has {in_path:?}, parameters declare {declared:?}",
                method.to_uppercase()
            ));
        }
    }
    assert!(problems.is_empty(), "{}", problems.join("\n"));
}

#[test]
fn request_bodies_match_the_handlers_structs() {
    let d = doc();
    // Handler struct → schema of the body (or of its items).
    for (rust, schema) in [
        ("OverrideBody", "OverrideBody"),
        ("UsageBody", "UsageBody"),
        ("CacheBody", "CacheMetricsBody"),
        ("RecordBody", "RecordBody"),
        ("ObservationsBody", "ObservationsBatch"),
        ("ObservationBody", "Observation"),
        ("RumBody", "RumBatch"),
        ("BeaconBody", "RumBeacon"),
        ("PurgeBody", "PurgeBody"),
        ("KeyUrlsBody", "PurgeKeyBody"),
    ] {
        let (fields, deny) = serde_struct(rust);
        let s = schema_of(&d, schema);
        let props: BTreeSet<String> = s["properties"]
            .as_object()
            .unwrap_or_else(|| panic!("{schema} has no properties"))
            .keys()
            .cloned()
            .collect();
        let want: BTreeSet<String> = fields.keys().cloned().collect();
        assert_eq!(props, want, "{schema} properties vs struct {rust}");
        let required: BTreeSet<String> = s["required"]
            .as_array()
            .into_iter()
            .flatten()
            .filter_map(|x| x.as_str().map(String::from))
            .collect();
        let want_required: BTreeSet<String> = fields
            .iter()
            .filter(|(_, r)| **r)
            .map(|(k, _)| k.clone())
            .collect();
        assert_eq!(
            required, want_required,
            "{schema} required vs struct {rust}"
        );
        if deny {
            assert_eq!(
                s["additionalProperties"], false,
                "{rust} denies unknown fields: {schema} needs additionalProperties: false"
            );
        }
    }
    // The configuration-form bodies: the resource tables of the configuration file, whose
    // structs (src/config/schema.rs) deny unknown fields too.
    for schema in [
        "TargetConfig",
        "ServiceConfig",
        "ZoneConfig",
        "RecordConfig",
    ] {
        assert_eq!(
            schema_of(&d, schema)["additionalProperties"],
            false,
            "{schema}"
        );
    }
    // Which operation takes which body.
    let body = |path: &str, m: &str| {
        let r =
            &d["paths"][path][m]["requestBody"]["content"]["application/json"]["schema"]["$ref"];
        r.as_str()
            .unwrap_or_default()
            .rsplit('/')
            .next()
            .unwrap_or_default()
            .to_string()
    };
    assert_eq!(body("/v1/targets/{name}", "put"), "TargetConfig");
    assert_eq!(body("/v1/services/{name}", "put"), "ServiceConfig");
    assert_eq!(body("/v1/zones/{zone}", "put"), "ZoneConfig");
    assert_eq!(
        body("/v1/zones/{zone}/records/{name}/{rtype}", "put"),
        "RecordBody"
    );
    assert_eq!(body("/v1/targets/{name}/override", "put"), "OverrideBody");
    assert_eq!(body("/v1/targets/{name}/usage", "put"), "UsageBody");
    assert_eq!(
        body("/v1/targets/{name}/cache-metrics", "put"),
        "CacheMetricsBody"
    );
    assert_eq!(body("/v1/observations", "post"), "ObservationsBatch");
    assert_eq!(body("/v1/rum", "post"), "RumBatch");
    assert_eq!(body("/v1/purges", "post"), "PurgeBody");
}

#[test]
fn query_parameters_match_the_handlers_structs() {
    let d = doc();
    for (rust, path, method) in [
        ("ResolveQuery", "/v1/resolve", "get"),
        ("EventsQuery", "/v1/events", "get"),
        ("RegionQuery", "/v1/targets/{name}/override", "delete"),
        ("ListQuery", "/v1/purges", "get"),
        ("OneQuery", "/v1/purges/{id}", "get"),
        ("UsageQuery", "/v1/purges/usage", "get"),
        ("KeysQuery", "/v1/purges/keys", "get"),
        ("KeyQuery", "/v1/purges/keys/{key}", "get"),
    ] {
        let (fields, _) = serde_struct(rust);
        let op = &d["paths"][path][method];
        let documented: BTreeMap<String, bool> = parameters(&d, path, op)
            .iter()
            .filter(|p| p["in"] == "query")
            .map(|p| {
                (
                    p["name"].as_str().unwrap_or("").to_string(),
                    p["required"] == true,
                )
            })
            .collect();
        assert_eq!(
            documented, fields,
            "{method} {path} query parameters vs {rust}"
        );
    }
}

#[test]
fn error_shapes_match_the_source() {
    let d = doc();
    // `{"error"}` everywhere; 422 from validation adds issues [{field, line, message}].
    assert!(admin_src().contains(r#"json!({ "error": msg.into() })"#));
    assert!(
        admin_src().contains(r#"json!({"field": i.field, "line": i.line, "message": i.message})"#)
    );
    let issue = schema_of(&d, "ConfigIssue");
    let props: BTreeSet<&str> = issue["properties"]
        .as_object()
        .unwrap()
        .keys()
        .map(String::as_str)
        .collect();
    assert_eq!(props, ["field", "line", "message"].into());
    let v = resolve(&d, &d["components"]["responses"]["ValidationFailed"]);
    let s = resolve(&d, &v["content"]["application/json"]["schema"]);
    assert!(
        s["required"]
            .as_array()
            .unwrap()
            .iter()
            .any(|x| x == "issues"),
        "{s}"
    );
    // 412 carries the current version, in the body and as ETag.
    assert!(admin_src().contains(r#"err.body["version"] = json!(current);"#));
    let p = resolve(&d, &d["components"]["responses"]["PreconditionFailed"]);
    assert!(p["headers"].get("ETag").is_some(), "{p}");
    // Event kinds: the enum lists exactly the kinds the API parses.
    let kinds: BTreeSet<String> = steerd::events::EventKind::ALL
        .iter()
        .map(|k| k.as_str().to_string())
        .collect();
    let documented: BTreeSet<String> = schema_of(&d, "EventKind")["enum"]
        .as_array()
        .unwrap()
        .iter()
        .filter_map(|k| k.as_str().map(String::from))
        .collect();
    assert_eq!(documented, kinds, "EventKind enum");
}
