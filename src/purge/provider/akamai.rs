//! Akamai Fast Purge v3 with EdgeGrid signing.
use super::{Batch, ItemResult};
use crate::config::purge::{AkamaiNetwork, EdgeGridCredentials, PurgeTarget};

pub const MAX_OBJECTS_PER_REQUEST: usize = 500;

pub async fn send(
    _http: &reqwest::Client,
    _c: &PurgeTarget,
    _network: AkamaiNetwork,
    _creds: &EdgeGridCredentials,
    _cp_codes: &[u64],
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
