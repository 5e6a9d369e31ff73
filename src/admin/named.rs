//! The resources kept as named tables of the configuration (`[[targets]]`, `[[services]]`,
//! `[[zones]]`): one list, get, put and delete for all of them; each resource says only what
//! differs.

use std::sync::Arc;

use axum::Json;
use axum::body::Bytes;
use axum::extract::{Path, State};
use axum::http::{HeaderMap, StatusCode};
use axum::response::IntoResponse;
use serde_json::{Map, Value};
use toml_edit::{DocumentMut, Table};

use super::Api;
use super::doc::{
    json_find, json_list, json_to_table, name_body, remove, same_name, tables_mut, upsert,
};
use super::edit::{created_or_ok, edit, written};
use super::error::{ApiError, ApiResult, parse_body};
use super::store::StoreError;
use super::views::{Views, config_json, view, with_etag};
use crate::config::ValidConfig;

/// A resource kept as an array of tables, each with a `name`.
pub(super) trait Named: 'static {
    /// The resource in messages and answers ("target").
    const KIND: &'static str;
    /// Its array of tables, also the key of its list ("targets").
    const TABLES: &'static str;
    /// Names compare as DNS names (case-insensitive, trailing dot optional), else exactly.
    const DNS: bool;

    /// The table a PUT body describes (default: the body as a table, named by the path).
    fn table(body: Value, name: &str) -> Result<Table, ApiError> {
        body_table::<Self>(&body, name)
    }

    /// What else deleting `name` (already removed from `doc`) changes or refuses.
    fn on_delete(_doc: &mut DocumentMut, _name: &str) -> Result<(), StoreError> {
        Ok(())
    }
}

/// The view of a resource in force, given its configuration form (the last argument).
pub(super) type ViewFn<I> = fn(&Api, &Views, &ValidConfig, &I, Value) -> Value;

/// A named resource with a live view (health, answers) beside its configuration form.
pub(super) trait Live: Named {
    type Item;
    const VIEW: ViewFn<Self::Item>;
    /// The resources in force, in order.
    fn in_force(cfg: &ValidConfig) -> &[Self::Item];
    fn name_of(item: &Self::Item) -> String;
}

/// A JSON body as the table of the resource `name` (the body may name it too, the same way).
pub(super) fn body_table<R: Named + ?Sized>(body: &Value, name: &str) -> Result<Table, ApiError> {
    let mut table = json_to_table(body, R::KIND)?;
    name_body(&mut table, "name", name, R::DNS)?;
    Ok(table)
}

/// `{KEY: value}`.
fn object(key: &str, value: Value) -> Map<String, Value> {
    Map::from_iter([(key.to_string(), value)])
}

/// The configuration form of `name` in the document's JSON form `doc` (null: none).
fn config_of<R: Named>(doc: &Value, name: &str) -> Value {
    json_find(json_list(doc, R::TABLES), "name", name, R::DNS)
        .cloned()
        .unwrap_or(Value::Null)
}

/// `GET /v1/{TABLES}`: every resource in force, live, with its configuration form.
pub(super) async fn list_named<R: Live>(State(api): State<Arc<Api>>) -> ApiResult {
    view(&api, |api| {
        let cfg = api.control.config();
        let (doc, version) = config_json(api);
        let views = Views::now(api);
        let list: Vec<Value> = R::in_force(&cfg)
            .iter()
            .map(|item| {
                let c = config_of::<R>(&doc, &R::name_of(item));
                (R::VIEW)(api, &views, &cfg, item, c)
            })
            .collect();
        let body = object(R::TABLES, Value::Array(list));
        Ok(with_etag(Json(body).into_response(), version))
    })
    .await
}

/// `GET /v1/{TABLES}/{name}`: one resource in force, live, with its configuration form.
pub(super) async fn get_named<R: Live>(
    State(api): State<Arc<Api>>,
    Path(name): Path<String>,
) -> ApiResult {
    view(&api, move |api| {
        let cfg = api.control.config();
        let found = R::in_force(&cfg).iter().find(|i| {
            let n = R::name_of(i);
            if R::DNS {
                same_name(&n, &name)
            } else {
                n == name
            }
        });
        let Some(item) = found else {
            return Err(ApiError::new(
                StatusCode::NOT_FOUND,
                format!("no {} named \"{name}\"", R::KIND),
            ));
        };
        let (doc, version) = config_json(api);
        let c = config_of::<R>(&doc, &name);
        let views = Views::now(api);
        Ok(with_etag(
            Json((R::VIEW)(api, &views, &cfg, item, c)).into_response(),
            version,
        ))
    })
    .await
}

/// `PUT /v1/{TABLES}/{name}`: create or replace it (201 when created).
pub(super) async fn put_named<R: Named>(
    State(api): State<Arc<Api>>,
    Path(name): Path<String>,
    headers: HeaderMap,
    body: Bytes,
) -> ApiResult {
    let body: Value = parse_body(&body)?;
    let table = R::table(body, &name)?;
    let owned = name.clone();
    let what = format!("{} {name} written", R::KIND);
    let (w, created) = edit(&api, &headers, what, move |doc| {
        let a = tables_mut(doc.as_table_mut(), R::TABLES, R::TABLES)?;
        Ok(upsert(a, "name", &owned, R::DNS, table))
    })
    .await?;
    let mut extra = object(R::KIND, Value::from(name));
    extra.insert("created".into(), Value::from(created));
    Ok(written(w, created_or_ok(created), Value::Object(extra)))
}

/// `DELETE /v1/{TABLES}/{name}` (404 when there is none).
pub(super) async fn delete_named<R: Named>(
    State(api): State<Arc<Api>>,
    Path(name): Path<String>,
    headers: HeaderMap,
) -> ApiResult {
    let owned = name.clone();
    let what = format!("{} {name} deleted", R::KIND);
    let (w, _) = edit(&api, &headers, what, move |doc| {
        let a = tables_mut(doc.as_table_mut(), R::TABLES, R::TABLES)?;
        if !remove(a, "name", &owned, R::DNS) {
            let kind = R::KIND;
            return Err(StoreError::NotFound(format!("no {kind} named \"{owned}\"")));
        }
        R::on_delete(doc, &owned)?;
        Ok(false)
    })
    .await?;
    Ok(written(
        w,
        StatusCode::OK,
        serde_json::json!({ "deleted": name }),
    ))
}
