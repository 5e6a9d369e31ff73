//! The layout rules of docs/architecture.md, checked on the source tree: no source file over
//! 700 lines (test-only files aside); no import cycle between modules — neither between the
//! crate's top-level modules nor between the submodules of one module; and no module importing
//! what the module table of docs/architecture.md says it may not import.

use std::collections::{BTreeMap, BTreeSet};
use std::path::{Path, PathBuf};

const MAX_LINES: usize = 700;

/// Every `.rs` file under `dir`.
fn rust_files(dir: &Path, out: &mut Vec<PathBuf>) {
    for e in std::fs::read_dir(dir).unwrap() {
        let p = e.unwrap().path();
        if p.is_dir() {
            rust_files(&p, out);
        } else if p.extension().is_some_and(|x| x == "rs") {
            out.push(p);
        }
    }
}

/// The module path of a file: `src/control/compile.rs` → ["control", "compile"].
fn module_of(src: &Path, file: &Path) -> Vec<String> {
    let rel = file.strip_prefix(src).unwrap().with_extension("");
    let mut parts: Vec<String> = rel
        .components()
        .map(|c| c.as_os_str().to_string_lossy().into_owned())
        .collect();
    if parts.last().is_some_and(|l| l == "mod") {
        parts.pop();
    }
    parts
}

/// A file holding only tests (`foo/tests.rs`, `tests/…`).
fn test_only(module: &[String]) -> bool {
    module.iter().any(|m| m == "tests" || m.ends_with("_tests"))
}

/// The code of a file without comments and without its `#[cfg(test)]` tail.
fn code_of(text: &str) -> String {
    let text = match text.find("#[cfg(test)]\nmod tests") {
        Some(i) => &text[..i],
        None => text,
    };
    text.lines()
        .map(|l| match l.find("//") {
            Some(i) if !l[..i].contains('"') => &l[..i],
            _ => l,
        })
        .collect::<Vec<_>>()
        .join("\n")
}

/// The names that follow `prefix` in `code`: `crate::a::…` gives `a`; `crate::{a, b::c}` gives
/// `a` and `b`.
fn names_after(code: &str, prefix: &str) -> BTreeSet<String> {
    let mut out = BTreeSet::new();
    let mut rest = code;
    while let Some(i) = rest.find(prefix) {
        let before = rest[..i].chars().last();
        rest = &rest[i + prefix.len()..];
        if before.is_some_and(|c| c.is_alphanumeric() || c == '_' || c == ':') {
            continue;
        }
        let ident = |s: &str| -> String {
            s.chars()
                .take_while(|c| c.is_alphanumeric() || *c == '_')
                .collect()
        };
        if let Some(list) = rest.strip_prefix('{') {
            let end = list.find('}').unwrap_or(list.len());
            let mut depth = 0;
            let mut start = 0;
            let body = &list[..end];
            for (j, c) in body.char_indices() {
                match c {
                    '{' => depth += 1,
                    '}' => depth -= 1,
                    ',' if depth == 0 => {
                        out.insert(ident(body[start..].trim_start()));
                        start = j + 1;
                    }
                    _ => {}
                }
            }
            out.insert(ident(body[start..].trim_start()));
        } else {
            out.insert(ident(rest));
        }
    }
    out.retain(|n| !n.is_empty());
    out
}

/// The strongly connected components of more than one node (Tarjan).
fn cycles(edges: &BTreeMap<String, BTreeSet<String>>) -> Vec<Vec<String>> {
    struct T<'a> {
        edges: &'a BTreeMap<String, BTreeSet<String>>,
        index: BTreeMap<&'a str, usize>,
        low: BTreeMap<&'a str, usize>,
        stack: Vec<&'a str>,
        out: Vec<Vec<String>>,
    }
    fn visit<'a>(t: &mut T<'a>, v: &'a str) {
        let n = t.index.len();
        t.index.insert(v, n);
        t.low.insert(v, n);
        t.stack.push(v);
        for w in t.edges.get(v).into_iter().flatten() {
            if !t.index.contains_key(w.as_str()) {
                visit(t, w);
                let lw = t.low[w.as_str()];
                let lv = t.low.get_mut(v).unwrap();
                *lv = (*lv).min(lw);
            } else if t.stack.contains(&w.as_str()) {
                let iw = t.index[w.as_str()];
                let lv = t.low.get_mut(v).unwrap();
                *lv = (*lv).min(iw);
            }
        }
        if t.low[v] == t.index[v] {
            let mut comp = Vec::new();
            while let Some(w) = t.stack.pop() {
                comp.push(w.to_string());
                if w == v {
                    break;
                }
            }
            if comp.len() > 1 {
                comp.sort();
                t.out.push(comp);
            }
        }
    }
    let mut t = T {
        edges,
        index: BTreeMap::new(),
        low: BTreeMap::new(),
        stack: Vec::new(),
        out: Vec::new(),
    };
    for v in edges.keys() {
        if !t.index.contains_key(v.as_str()) {
            visit(&mut t, v);
        }
    }
    t.out
}

struct Tree {
    /// (module path, code without comments and unit tests, line count).
    files: Vec<(Vec<String>, String, usize)>,
}

fn tree() -> Tree {
    let src = Path::new(env!("CARGO_MANIFEST_DIR")).join("src");
    let mut paths = Vec::new();
    rust_files(&src, &mut paths);
    paths.sort();
    let files = paths
        .iter()
        .map(|p| {
            let text = std::fs::read_to_string(p).unwrap();
            (module_of(&src, p), code_of(&text), text.lines().count())
        })
        .collect();
    Tree { files }
}

#[test]
fn no_source_file_is_over_700_lines() {
    let t = tree();
    let long: Vec<String> = t
        .files
        .iter()
        .filter(|(m, _, n)| !test_only(m) && *n > MAX_LINES)
        .map(|(m, _, n)| format!("src/{}: {n} lines", m.join("/")))
        .collect();
    assert!(long.is_empty(), "over {MAX_LINES} lines: {long:#?}");
}

/// The crate's top-level modules (without `lib` and `main`) and which of them each imports
/// outside its tests.
fn top_level_imports(t: &Tree) -> (BTreeSet<String>, BTreeMap<String, BTreeSet<String>>) {
    let tops: BTreeSet<String> = t
        .files
        .iter()
        .map(|(m, _, _)| m[0].clone())
        .filter(|m| m != "lib" && m != "main")
        .collect();
    let mut edges: BTreeMap<String, BTreeSet<String>> = BTreeMap::new();
    for (m, code, _) in &t.files {
        if test_only(m) || !tops.contains(&m[0]) {
            continue;
        }
        for n in names_after(code, "crate::") {
            if n != m[0] && tops.contains(&n) {
                edges.entry(m[0].clone()).or_default().insert(n);
            }
        }
    }
    (tops, edges)
}

#[test]
fn no_import_cycle_between_top_level_modules() {
    let (_, edges) = top_level_imports(&tree());
    let found = cycles(&edges);
    assert!(
        found.is_empty(),
        "modules that import each other: {found:?}\n{edges:#?}"
    );
}

/// The module table of docs/architecture.md: each row's module (`geo/` → `geo`, `clock.rs` →
/// `clock`) and the modules of its "may not import" cell (backquoted names, or every other
/// module for "any other module").
fn forbidden_imports(doc: &str, tops: &BTreeSet<String>) -> BTreeMap<String, BTreeSet<String>> {
    let mut out = BTreeMap::new();
    let backquoted = |cell: &str| -> Vec<String> {
        cell.split('`')
            .skip(1)
            .step_by(2)
            .map(str::to_string)
            .collect()
    };
    for line in doc.lines() {
        let cells: Vec<&str> = line.split('|').map(str::trim).collect();
        // "| module | owns | may not import |" splits into 5 cells, the outer two empty.
        if cells.len() != 5 || !cells[1].starts_with('`') {
            continue;
        }
        let name = backquoted(cells[1])[0]
            .trim_end_matches('/')
            .trim_end_matches(".rs")
            .to_string();
        let forbidden: BTreeSet<String> = if cells[3] == "any other module" {
            tops.iter().filter(|m| **m != name).cloned().collect()
        } else {
            backquoted(cells[3]).into_iter().collect()
        };
        out.insert(name, forbidden);
    }
    out
}

#[test]
fn every_module_keeps_to_the_architecture_table() {
    let (tops, edges) = top_level_imports(&tree());
    let doc =
        std::fs::read_to_string(Path::new(env!("CARGO_MANIFEST_DIR")).join("docs/architecture.md"))
            .unwrap();
    let table = forbidden_imports(&doc, &tops);
    let missing: Vec<&String> = tops.iter().filter(|m| !table.contains_key(*m)).collect();
    assert!(
        missing.is_empty(),
        "modules without a row in docs/architecture.md: {missing:?}"
    );
    let mut broken = Vec::new();
    for (module, forbidden) in &table {
        for f in forbidden {
            assert!(
                tops.contains(f),
                "docs/architecture.md: `{module}` forbids `{f}`, which is no module"
            );
        }
        for n in edges.get(module).into_iter().flatten() {
            if forbidden.contains(n) {
                broken.push(format!("{module} imports {n}"));
            }
        }
    }
    assert!(
        broken.is_empty(),
        "imports docs/architecture.md forbids: {broken:?}"
    );
}

#[test]
fn no_import_cycle_between_the_submodules_of_a_module() {
    let t = tree();
    let modules: BTreeSet<Vec<String>> = t.files.iter().map(|(m, _, _)| m.clone()).collect();
    let mut edges: BTreeMap<String, BTreeSet<String>> = BTreeMap::new();
    for (m, code, _) in &t.files {
        if m.len() < 2 || test_only(m) {
            continue;
        }
        let parent = &m[..m.len() - 1];
        let mut siblings = names_after(code, "super::");
        siblings.extend(names_after(
            code,
            &format!("crate::{}::", parent.join("::")),
        ));
        for s in siblings {
            let mut sib = parent.to_vec();
            sib.push(s);
            if sib != *m && modules.contains(&sib) && !test_only(&sib) {
                edges
                    .entry(m.join("::"))
                    .or_default()
                    .insert(sib.join("::"));
            }
        }
    }
    let found = cycles(&edges);
    assert!(
        found.is_empty(),
        "submodules that import each other: {found:?}"
    );
}

#[test]
fn the_table_parser_reads_rows_and_cells() {
    let tops: BTreeSet<String> = ["a", "b", "c"].map(String::from).into();
    let doc = "| module | owns | may not import |\n|---|---|---|\n\
               | `a/` | x | `b`, `c` |\n| `b.rs` | y | any other module |\n| `main.rs` | z | — |\n";
    let t = forbidden_imports(doc, &tops);
    assert_eq!(t["a"], ["b", "c"].map(String::from).into());
    assert_eq!(t["b"], ["a", "c"].map(String::from).into());
    assert!(t["main"].is_empty());
    assert!(!t.contains_key("module"));
}

#[test]
fn the_checks_see_imports_and_cycles() {
    let code =
        "use crate::{alpha, beta::x};\nuse crate::gamma::{y, z};\nlet v = crate::delta::f();";
    let names: Vec<String> = names_after(code, "crate::").into_iter().collect();
    assert_eq!(names, ["alpha", "beta", "delta", "gamma"]);
    assert_eq!(code_of("a // crate::x\n#[cfg(test)]\nmod tests {}"), "a ");
    let mut e: BTreeMap<String, BTreeSet<String>> = BTreeMap::new();
    e.entry("a".into()).or_default().insert("b".into());
    e.entry("b".into()).or_default().insert("c".into());
    assert!(cycles(&e).is_empty());
    e.entry("c".into()).or_default().insert("a".into());
    assert_eq!(cycles(&e), [vec!["a".to_string(), "b".into(), "c".into()]]);
}
