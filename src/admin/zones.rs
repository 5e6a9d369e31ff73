//! `/v1/zones`: the zones' configuration, and their static records by name and type (a PUT
//! replaces the whole RRset).

use std::sync::Arc;

use axum::body::Bytes;
use axum::extract::{Path, State};
use axum::http::{HeaderMap, StatusCode};
use axum::response::IntoResponse;
use axum::routing::get;
use axum::{Json, Router};
use serde::Deserialize;
use serde_json::{Value, json};
use toml_edit::{ArrayOfTables, DocumentMut, Table};

use super::Api;
use super::doc::{self, json_find, json_list, json_to_table, same_name, tables_mut};
use super::edit::{created_or_ok, edit, written};
use super::error::{ApiError, ApiResult, parse_body};
use super::named::{Named, body_table, delete_named, put_named};
use super::store::StoreError;
use super::views::{config_json, with_etag};

pub(super) fn router() -> Router<Arc<Api>> {
    Router::new()
        .route("/v1/zones", get(list_zones))
        .route(
            "/v1/zones/{zone}",
            get(get_zone).put(put_zone).delete(delete_zone),
        )
        .route("/v1/zones/{zone}/records", get(list_records))
        .route(
            "/v1/zones/{zone}/records/{name}/{rtype}",
            get(get_record).put(put_record).delete(delete_record),
        )
}

struct Zones;

impl Named for Zones {
    const KIND: &'static str = "zone";
    const TABLES: &'static str = "zones";
    const DNS: bool = true;

    /// Records are arrays of tables in the file: written as `[[zones.records]]`.
    fn table(mut body: Value, name: &str) -> Result<Table, ApiError> {
        let mut records = Vec::new();
        match body.as_object_mut().and_then(|o| o.remove("records")) {
            Some(Value::Array(rs)) => {
                for (i, r) in rs.iter().enumerate() {
                    records.push(json_to_table(r, &format!("record (records[{i}])"))?);
                }
            }
            None | Some(Value::Null) => {}
            Some(_) => {
                return Err(ApiError::new(
                    StatusCode::BAD_REQUEST,
                    "records: must be an array of records",
                ));
            }
        }
        let mut table = body_table::<Self>(&body, name)?;
        if !records.is_empty() {
            let mut a = ArrayOfTables::new();
            for r in records {
                a.push(r);
            }
            table.insert("records", toml_edit::Item::ArrayOfTables(a));
        }
        Ok(table)
    }
}

async fn list_zones(State(api): State<Arc<Api>>) -> ApiResult {
    let (doc, version) = config_json(&api);
    Ok(with_etag(
        Json(json!({ "zones": json_list(&doc, "zones") })).into_response(),
        version,
    ))
}

/// The configuration form of `zone` and the version it is of (404: no such zone).
fn zone_config(api: &Api, zone: &str) -> Result<(Value, u64), ApiError> {
    let (doc, version) = config_json(api);
    json_find(json_list(&doc, "zones"), "name", zone, true)
        .cloned()
        .map(|z| (z, version))
        .ok_or_else(|| ApiError::new(StatusCode::NOT_FOUND, format!("no zone named \"{zone}\"")))
}

async fn get_zone(State(api): State<Arc<Api>>, Path(zone): Path<String>) -> ApiResult {
    let (z, version) = zone_config(&api, &zone)?;
    Ok(with_etag(Json(z).into_response(), version))
}

async fn put_zone(api: State<Arc<Api>>, z: Path<String>, h: HeaderMap, b: Bytes) -> ApiResult {
    put_named::<Zones>(api, z, h, b).await
}

async fn delete_zone(api: State<Arc<Api>>, zone: Path<String>, h: HeaderMap) -> ApiResult {
    delete_named::<Zones>(api, zone, h).await
}

async fn list_records(State(api): State<Arc<Api>>, Path(zone): Path<String>) -> ApiResult {
    let (z, version) = zone_config(&api, &zone)?;
    Ok(with_etag(
        Json(json!({ "zone": zone, "records": z.get("records").cloned().unwrap_or(json!([])) }))
            .into_response(),
        version,
    ))
}

fn record_matches(r: &Table, name: &str, rtype: &str) -> bool {
    let n = r.get("name").and_then(|v| v.as_str()).unwrap_or("");
    let t = r.get("type").and_then(|v| v.as_str()).unwrap_or("");
    same_name(n, name) && t.eq_ignore_ascii_case(rtype)
}

/// The records of `zone` in `doc` (a 404 when there is no such zone).
fn zone_records<'a>(
    doc: &'a mut DocumentMut,
    zone: &str,
) -> Result<&'a mut ArrayOfTables, StoreError> {
    let zones = tables_mut(doc.as_table_mut(), "zones", "zones")?;
    let Some(zi) = doc::find(zones, "name", zone, true) else {
        return Err(StoreError::NotFound(format!("no zone named \"{zone}\"")));
    };
    let z = zones.get_mut(zi).expect("found");
    tables_mut(z, "records", "zones.records")
}

async fn get_record(
    State(api): State<Arc<Api>>,
    Path((zone, name, rtype)): Path<(String, String, String)>,
) -> ApiResult {
    let (z, version) = zone_config(&api, &zone)?;
    let list: Vec<Value> = z
        .get("records")
        .and_then(Value::as_array)
        .into_iter()
        .flatten()
        .filter(|r| {
            r.get("name")
                .and_then(Value::as_str)
                .is_some_and(|n| same_name(n, &name))
                && r.get("type")
                    .and_then(Value::as_str)
                    .is_some_and(|t| t.eq_ignore_ascii_case(&rtype))
        })
        .cloned()
        .collect();
    if list.is_empty() {
        return Err(ApiError::new(
            StatusCode::NOT_FOUND,
            format!("no {rtype} record named \"{name}\" in zone {zone}"),
        ));
    }
    Ok(with_etag(
        Json(json!({ "zone": zone, "name": name, "type": rtype.to_ascii_uppercase(), "records": list }))
            .into_response(),
        version,
    ))
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct RecordBody {
    data: Value,
    ttl: Option<Value>,
}

async fn put_record(
    State(api): State<Arc<Api>>,
    Path((zone, name, rtype)): Path<(String, String, String)>,
    headers: HeaderMap,
    body: Bytes,
) -> ApiResult {
    let b: RecordBody = parse_body(&body)?;
    let mut t = Table::new();
    t.insert("name", toml_edit::value(name.as_str()));
    t.insert("type", toml_edit::value(rtype.to_ascii_uppercase()));
    let body = json!({ "data": b.data, "ttl": b.ttl });
    let rest = json_to_table(&body, "record")?;
    for (k, v) in rest.iter() {
        t.insert(k, v.clone());
    }
    let what = format!("{name} {rtype} in zone {zone} written");
    let (w, created) = edit(&api, &headers, what, {
        let (name, zone, rtype) = (name.clone(), zone.clone(), rtype.clone());
        move |doc| {
            let recs = zone_records(doc, &zone)?;
            let before = recs.len();
            // Replace the whole RRset: its first entry keeps its place.
            let first = recs.iter().position(|r| record_matches(r, &name, &rtype));
            recs.retain(|r| !record_matches(r, &name, &rtype));
            let created = recs.len() == before;
            match first {
                Some(i) if i <= recs.len() => {
                    let mut all: Vec<Table> = recs.iter().cloned().collect();
                    all.insert(i, t);
                    recs.clear();
                    for r in all {
                        recs.push(r);
                    }
                }
                _ => recs.push(t),
            }
            Ok(created)
        }
    })
    .await?;
    Ok(written(
        w,
        created_or_ok(created),
        json!({ "zone": zone, "name": name, "type": rtype.to_ascii_uppercase(), "created": created }),
    ))
}

async fn delete_record(
    State(api): State<Arc<Api>>,
    Path((zone, name, rtype)): Path<(String, String, String)>,
    headers: HeaderMap,
) -> ApiResult {
    let what = format!("{name} {rtype} in zone {zone} deleted");
    let (w, _) = edit(&api, &headers, what, {
        let (name, zone, rtype) = (name.clone(), zone.clone(), rtype.clone());
        move |doc| {
            let recs = zone_records(doc, &zone)?;
            let before = recs.len();
            recs.retain(|r| !record_matches(r, &name, &rtype));
            if recs.len() == before {
                return Err(StoreError::NotFound(format!(
                    "no {rtype} record named \"{name}\" in zone {zone}"
                )));
            }
            Ok(false)
        }
    })
    .await?;
    Ok(written(
        w,
        StatusCode::OK,
        json!({ "deleted": format!("{name} {rtype}") }),
    ))
}
