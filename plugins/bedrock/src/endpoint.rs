//! Where a Converse request goes.
//!
//! `{base}/model/{modelId}/converse` (or `/converse-stream`), with the model id
//! percent-encoded as one path segment: `anthropic.claude-3-5-sonnet-20240620-v1:0` becomes
//! `anthropic.claude-3-5-sonnet-20240620-v1%3A0`, and an inference-profile ARN keeps its `/`
//! only as `%2F`. (The host's SigV4 signer encodes the path once more for the canonical
//! request, as AWS expects of every service but S3.) The encoding is the SDK's
//! [`path_segment`], which also refuses a `.` or `..` model id.

/// The prefix's `default-api-base`: the us-east-1 runtime endpoint.
pub const DEFAULT_API_BASE: &str = "https://bedrock-runtime.us-east-1.amazonaws.com";

use llmgate_sdk::url::{NotASegment, path_segment};

/// The Bedrock model id of a deployment model: LiteLLM's route prefixes `converse/` and
/// `invoke/` are dropped (this plugin always speaks Converse).
pub fn model_id(deployment_model: &str) -> &str {
    deployment_model
        .strip_prefix("converse/")
        .or_else(|| deployment_model.strip_prefix("invoke/"))
        .unwrap_or(deployment_model)
}

/// The runtime endpoint to use.
///
/// The deployment's `api_base` wins. Without it, the regional endpoint
/// `https://bedrock-runtime.{region}.amazonaws.com` is built from `aws_region_name`
/// (default us-east-1). Note that the host only lets a plugin reach the origin of the
/// deployment's `api_base`, or else the prefix's `default-api-base` (the us-east-1
/// endpoint): a deployment in any other region must therefore also set `api_base`
/// (e.g. `https://bedrock-runtime.eu-west-1.amazonaws.com`), or the host refuses the
/// request this builds. The URL is still built from the region so that the refusal names
/// the endpoint the deployment meant.
pub fn base_url(api_base: Option<&str>, region: Option<&str>) -> Result<String, String> {
    if let Some(base) = api_base.map(str::trim).filter(|b| !b.is_empty()) {
        return Ok(base.trim_end_matches('/').to_string());
    }
    match region.map(str::trim).filter(|r| !r.is_empty()) {
        None => Ok(DEFAULT_API_BASE.to_string()),
        Some(r)
            if r.bytes()
                .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'-') =>
        {
            Ok(format!("https://bedrock-runtime.{r}.amazonaws.com"))
        }
        Some(r) => Err(format!("aws_region_name `{r}` is not an AWS region name")),
    }
}

/// `{base}/model/{encoded model id}/converse[-stream]`.
pub fn converse_url(base: &str, model_id: &str, stream: bool) -> Result<String, NotASegment> {
    Ok(format!(
        "{}/model/{}/{}",
        base.trim_end_matches('/'),
        path_segment(model_id)?,
        if stream {
            "converse-stream"
        } else {
            "converse"
        }
    ))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn encodes_model_ids() {
        assert_eq!(
            path_segment("anthropic.claude-3-5-sonnet-20240620-v1:0").unwrap(),
            "anthropic.claude-3-5-sonnet-20240620-v1%3A0"
        );
        assert_eq!(
            path_segment(
                "arn:aws:bedrock:us-east-1:123456789012:inference-profile/us.anthropic.claude-3-7-sonnet-20250219-v1:0"
            )
            .unwrap(),
            "arn%3Aaws%3Abedrock%3Aus-east-1%3A123456789012%3Ainference-profile%2Fus.anthropic.claude-3-7-sonnet-20250219-v1%3A0"
        );
        assert_eq!(path_segment("a b~é").unwrap(), "a%20b~%C3%A9");
        assert!(converse_url("http://x", "..", false).is_err());
    }

    #[test]
    fn urls() {
        assert_eq!(
            converse_url(
                DEFAULT_API_BASE,
                "us.anthropic.claude-3-5-sonnet-20241022-v2:0",
                false
            )
            .unwrap(),
            "https://bedrock-runtime.us-east-1.amazonaws.com/model/us.anthropic.claude-3-5-sonnet-20241022-v2%3A0/converse"
        );
        assert_eq!(
            converse_url(
                "http://127.0.0.1:9000/",
                "meta.llama3-70b-instruct-v1:0",
                true
            )
            .unwrap(),
            "http://127.0.0.1:9000/model/meta.llama3-70b-instruct-v1%3A0/converse-stream"
        );
    }

    #[test]
    fn bases() {
        assert_eq!(
            base_url(Some("http://mock:1/"), Some("eu-west-1")).unwrap(),
            "http://mock:1"
        );
        assert_eq!(
            base_url(None, Some("eu-west-1")).unwrap(),
            "https://bedrock-runtime.eu-west-1.amazonaws.com"
        );
        assert_eq!(base_url(None, None).unwrap(), DEFAULT_API_BASE);
        assert_eq!(base_url(Some(" "), Some("")).unwrap(), DEFAULT_API_BASE);
        assert!(base_url(None, Some("evil.com/x")).is_err());
    }

    #[test]
    fn route_prefixes() {
        assert_eq!(
            model_id("converse/anthropic.claude-v2:1"),
            "anthropic.claude-v2:1"
        );
        assert_eq!(
            model_id("invoke/amazon.nova-pro-v1:0"),
            "amazon.nova-pro-v1:0"
        );
        assert_eq!(
            model_id("us.amazon.nova-lite-v1:0"),
            "us.amazon.nova-lite-v1:0"
        );
    }
}
