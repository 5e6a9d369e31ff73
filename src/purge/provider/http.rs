//! Self-run edges: Varnish-style PURGE and BAN.
use super::{Batch, ItemResult};
use crate::config::purge::{EdgeMethod, PurgeTarget, Secret};

pub async fn send(
    _http: &reqwest::Client,
    _c: &PurgeTarget,
    _edges: &[String],
    _key_method: EdgeMethod,
    _key_header: &str,
    _token: Option<&Secret>,
    batch: &Batch,
) -> Vec<ItemResult> {
    super::all(
        batch,
        ItemResult::Failed(super::Failure {
            error: "not built yet".into(),
            retryable: false,
            retry_after: None,
        }),
    )
}
