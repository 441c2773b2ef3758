//! ApiVersions: the table of APIs and versions this broker serves (`api::SUPPORTED`).

use kafka_protocol::messages::api_versions_response::ApiVersion;
use kafka_protocol::messages::{ApiKey, ApiVersionsRequest, ApiVersionsResponse};

use super::{encode_frame, ResponseFrame, SUPPORTED, UNSUPPORTED_VERSION};

/// Answers ApiVersions with every supported API and version range.
pub(crate) fn handle(_request: ApiVersionsRequest) -> ApiVersionsResponse {
    ApiVersionsResponse::default()
        .with_error_code(0)
        .with_api_keys(api_keys())
}

/// The v0 response with UNSUPPORTED_VERSION and the full table, which Kafka sends to a
/// client asking for an ApiVersions version newer than the broker knows; the client then
/// retries with a version from the table.
pub(crate) fn unsupported_version_frame(correlation_id: i32) -> ResponseFrame {
    let body = ApiVersionsResponse::default()
        .with_error_code(UNSUPPORTED_VERSION)
        .with_api_keys(api_keys());
    encode_frame(ApiKey::ApiVersions, 0, correlation_id, &body)
}

fn api_keys() -> Vec<ApiVersion> {
    SUPPORTED
        .iter()
        .map(|r| {
            ApiVersion::default()
                .with_api_key(r.key as i16)
                .with_min_version(r.advertised_min)
                .with_max_version(r.max)
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn produce_advertises_min_zero_and_every_api_is_listed_once() {
        let response = handle(ApiVersionsRequest::default());
        let produce = response
            .api_keys
            .iter()
            .find(|k| k.api_key == ApiKey::Produce as i16)
            .unwrap();
        assert_eq!(produce.min_version, 0);
        let mut keys: Vec<i16> = response.api_keys.iter().map(|k| k.api_key).collect();
        keys.sort();
        keys.dedup();
        assert_eq!(keys.len(), response.api_keys.len());
    }

    #[test]
    fn every_advertised_version_is_encodable() {
        for r in SUPPORTED {
            let valid = r.key.valid_versions();
            assert!(
                r.answered_min >= valid.min && r.max <= valid.max,
                "{:?}",
                r.key
            );
        }
    }
}
