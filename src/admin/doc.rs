//! Editing the configuration document: JSON bodies become TOML tables, resources are found by
//! name in the arrays of tables (`[[targets]]`, `[[services]]`, `[[zones]]`,
//! `[[zones.records]]`, `[[overrides]]`).

use serde_json::Value as Json;
use toml_edit::{ArrayOfTables, DocumentMut, InlineTable, Item, Table, Value};

use super::store::StoreError;

/// A DNS name compared the way the configuration means it: case-insensitive, trailing dot
/// optional.
pub fn same_name(a: &str, b: &str) -> bool {
    a.trim_end_matches('.')
        .eq_ignore_ascii_case(b.trim_end_matches('.'))
}

fn json_value(v: &Json, path: &str) -> Result<Option<Value>, StoreError> {
    Ok(Some(match v {
        Json::Null => return Ok(None),
        Json::Bool(b) => Value::from(*b),
        Json::Number(n) => match n.as_i64() {
            Some(i) => Value::from(i),
            None => match n.as_f64() {
                Some(f) => Value::from(f),
                None => {
                    return Err(StoreError::BadRequest(format!(
                        "{path}: number {n} is out of range"
                    )));
                }
            },
        },
        Json::String(s) => Value::from(s.as_str()),
        Json::Array(items) => {
            let mut a = toml_edit::Array::new();
            for (i, x) in items.iter().enumerate() {
                if let Some(v) = json_value(x, &format!("{path}[{i}]"))? {
                    a.push(v);
                }
            }
            Value::Array(a)
        }
        Json::Object(map) => {
            let mut t = InlineTable::new();
            for (k, x) in map {
                if let Some(v) = json_value(x, &format!("{path}.{k}"))? {
                    t.insert(k, v);
                }
            }
            Value::InlineTable(t)
        }
    }))
}

/// A JSON object as a TOML table: nested objects become sub-tables (`[targets.check]`),
/// objects inside arrays inline tables, nulls are left out.
pub fn json_to_table(v: &Json, what: &str) -> Result<Table, StoreError> {
    let Json::Object(map) = v else {
        return Err(StoreError::BadRequest(format!(
            "the body must be a JSON object (a {what} as in the configuration file)"
        )));
    };
    let mut t = Table::new();
    for (k, x) in map {
        match x {
            Json::Object(_) => {
                let mut sub = json_to_table(x, what)?;
                sub.set_implicit(false);
                t.insert(k, Item::Table(sub));
            }
            other => {
                if let Some(v) = json_value(other, k)? {
                    t.insert(k, Item::Value(v));
                }
            }
        }
    }
    Ok(t)
}

/// The configuration's array of tables `key` (created when absent).
pub fn tables_mut<'a>(
    parent: &'a mut Table,
    key: &str,
    field: &str,
) -> Result<&'a mut ArrayOfTables, StoreError> {
    let convert = match parent.get(key) {
        None => true,
        Some(Item::Value(Value::Array(a))) => a.is_empty(),
        _ => false,
    };
    if convert {
        parent.insert(key, Item::ArrayOfTables(ArrayOfTables::new()));
    }
    match parent.get_mut(key) {
        Some(Item::ArrayOfTables(a)) => Ok(a),
        _ => Err(StoreError::Conflict(format!(
            "`{field}` is written as an inline array in the configuration file; the API edits \
             [[{field}]] tables only: rewrite it as tables"
        ))),
    }
}

/// Index of the table whose `key` field matches `name`.
pub fn find(a: &ArrayOfTables, key: &str, name: &str, dns: bool) -> Option<usize> {
    a.iter().position(|t| {
        t.get(key)
            .and_then(Item::as_str)
            .is_some_and(|n| if dns { same_name(n, name) } else { n == name })
    })
}

/// Replace the table named `name` (keeping its place) or append it. True when created.
pub fn upsert(a: &mut ArrayOfTables, key: &str, name: &str, dns: bool, table: Table) -> bool {
    match find(a, key, name, dns) {
        Some(i) => {
            // Keep the comment above the old table.
            let decor = a.get(i).map(|t| t.decor().clone());
            let mut table = table;
            if let Some(d) = decor {
                *table.decor_mut() = d;
            }
            *a.get_mut(i).expect("index found") = table;
            false
        }
        None => {
            a.push(table);
            true
        }
    }
}

/// Remove the table named `name`. True when there was one.
pub fn remove(a: &mut ArrayOfTables, key: &str, name: &str, dns: bool) -> bool {
    match find(a, key, name, dns) {
        Some(i) => {
            a.remove(i);
            true
        }
        None => false,
    }
}

/// The whole document as JSON (the configuration form of every resource).
pub fn to_json(doc: &DocumentMut) -> Json {
    let t: toml::Table = toml::from_str(&doc.to_string()).unwrap_or_default();
    serde_json::to_value(t).unwrap_or(Json::Null)
}

/// The array `key` of the document's JSON form.
pub fn json_list<'a>(doc: &'a Json, key: &str) -> &'a [Json] {
    doc.get(key)
        .and_then(Json::as_array)
        .map(Vec::as_slice)
        .unwrap_or(&[])
}

/// The entry of `list` whose `key` matches `name`.
pub fn json_find<'a>(list: &'a [Json], key: &str, name: &str, dns: bool) -> Option<&'a Json> {
    list.iter().find(|x| {
        x.get(key)
            .and_then(Json::as_str)
            .is_some_and(|n| if dns { same_name(n, name) } else { n == name })
    })
}

/// Set `table[key] = name` unless the body names it already; an error when it names another.
pub fn name_body(table: &mut Table, key: &str, name: &str, dns: bool) -> Result<(), StoreError> {
    match table.get(key).and_then(Item::as_str) {
        Some(n) if (dns && same_name(n, name)) || n == name => Ok(()),
        Some(n) => Err(StoreError::BadRequest(format!(
            "the body's {key} \"{n}\" differs from the one in the path \"{name}\""
        ))),
        None => {
            // Put the name first, as a person would write it.
            let rest: Vec<(String, Item)> = table
                .iter()
                .map(|(k, v)| (k.to_string(), v.clone()))
                .collect();
            table.clear();
            table.insert(key, toml_edit::value(name));
            for (k, v) in rest {
                table.insert(&k, v);
            }
            Ok(())
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn json_becomes_tables_and_back() {
        let mut doc: DocumentMut = "# top\n[[targets]]\nname = \"a\"\ncname = \"a.cdn.net\"\n"
            .parse()
            .unwrap();
        let body = serde_json::json!({
            "cname": "b.cdn.net",
            "check": {"url": "https://www.example.com/", "levels": ["tcp", "http"]},
            "latitude": 50.1, "longitude": null
        });
        let mut t = json_to_table(&body, "target").unwrap();
        name_body(&mut t, "name", "b", false).unwrap();
        let a = tables_mut(doc.as_table_mut(), "targets", "targets").unwrap();
        assert!(upsert(a, "name", "b", false, t));
        let text = doc.to_string();
        assert!(text.starts_with("# top\n"), "{text}");
        assert!(text.contains("[targets.check]"), "{text}");
        assert!(!text.contains("longitude"), "{text}");
        let j = to_json(&doc);
        let b = json_find(json_list(&j, "targets"), "name", "b", false).unwrap();
        assert_eq!(b["check"]["levels"][1], "http");
        assert_eq!(b["latitude"], 50.1);
        let a = tables_mut(doc.as_table_mut(), "targets", "targets").unwrap();
        assert!(remove(a, "name", "a", false));
        assert!(!remove(a, "name", "a", false));
    }

    #[test]
    fn a_body_naming_another_resource_is_refused() {
        let mut t = json_to_table(&serde_json::json!({"name": "x"}), "target").unwrap();
        assert!(name_body(&mut t, "name", "y", false).is_err());
        let mut t = json_to_table(&serde_json::json!({"name": "WWW.example.com."}), "s").unwrap();
        assert!(name_body(&mut t, "name", "www.example.com", true).is_ok());
    }
}
