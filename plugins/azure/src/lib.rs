//! llmgate provider plugin for Azure OpenAI.
//!
//! It behaves exactly like the `openai` plugin (the SDK's
//! [`OpenAiExchange`]: `model` rewrite, `litellm_params` defaults, streamed usage injected
//! and its chunk hidden, Anthropic `/v1/messages` translation, image generations and edits
//! passed through, errors read), except for where requests go and how they authenticate:
//!
//! - `{api_base}/openai/deployments/{deployment}/{chat/completions|embeddings|images/...}`
//!   `?api-version={api_version}` (default [`DEFAULT_API_VERSION`]); the deployment is the
//!   deployment's model (`azure/<deployment>`), so `api_base` is required;
//! - the key in the `api-key` header (`AZURE_API_KEY`, else `AZURE_OPENAI_API_KEY`).
//!
//! Azure errors are OpenAI-shaped, sometimes with string codes (`{"error": {"code": "429",
//! ...}}`); API Management front ends answer `{"statusCode": 401, "message": ...}`, which is
//! read too.

use llmgate_sdk::openai_compat::{APIS, Endpoint, NATIVE_APIS, OpenAiExchange, Operation};
use llmgate_sdk::plugin::{Answer, Description, Prefix, Provider, Request};
use llmgate_sdk::url::{NotASegment, path_segment};
use llmgate_sdk::via_chat::ViaChat;
use llmgate_sdk::{Auth, GatewayError};

/// The plugin.
pub struct Azure;

/// The `api-version` used when the deployment sets none (the GA version of October 2024).
pub const DEFAULT_API_VERSION: &str = "2024-10-21";

impl Provider for Azure {
    const DESCRIPTION: Description = Description {
        name: "azure",
        version: env!("CARGO_PKG_VERSION"),
        prefixes: &[Prefix::new(
            "azure",
            None,
            &["AZURE_API_KEY", "AZURE_OPENAI_API_KEY"],
        )],
        apis: APIS,
        native_apis: NATIVE_APIS,
    };
    type Exchange = ViaChat<OpenAiExchange<AzureEndpoint>>;
}

/// `{api_base}/openai/deployments/{deployment}{path}?api-version={version}`. An `api_base`
/// that already ends in `/openai` is accepted. The deployment is one path segment (the SDK's
/// [`path_segment`]): a `.` or `..` deployment is refused.
pub fn azure_url(
    api_base: &str,
    deployment: &str,
    op: Operation,
    api_version: &str,
) -> Result<String, NotASegment> {
    let base = api_base.trim().trim_end_matches('/');
    let base = base.strip_suffix("/openai").unwrap_or(base);
    Ok(format!(
        "{base}/openai/deployments/{}{}?api-version={}",
        path_segment(deployment)?,
        op.path(),
        path_segment(api_version)?
    ))
}

/// Azure OpenAI: deployment URLs, the key in `api-key`, API Management error bodies.
pub struct AzureEndpoint;

impl Endpoint for AzureEndpoint {
    fn url(req: &Request, op: Operation) -> Result<String, GatewayError> {
        let dep = &req.deployment;
        let base = dep.api_base.as_deref().filter(|b| !b.trim().is_empty());
        let base = base.ok_or_else(|| {
            GatewayError::bad_request(format!(
                "deployment {} needs api_base (https://<resource>.openai.azure.com) for provider azure",
                dep.id
            ))
        })?;
        // The deployment's `api_version`, else an `api_version` param, else the default.
        let version = dep.api_version.as_deref().filter(|v| !v.trim().is_empty());
        let version = version.or_else(|| req.param_str("api_version"));
        Ok(azure_url(
            base,
            &dep.model,
            op,
            version.unwrap_or(DEFAULT_API_VERSION),
        )?)
    }

    fn auth() -> Auth {
        Auth::Header("api-key".into())
    }

    /// OpenAI-shaped, or API Management's `{"statusCode", "message"}`.
    fn error(answer: &Answer) -> GatewayError {
        let mut e = GatewayError::from_status(answer.status, &answer.headers, &answer.body);
        if e.code.is_none()
            && let Ok(v) = serde_json::from_slice::<serde_json::Value>(&answer.body)
            && v.get("error").is_none()
            && let Some(m) = v.get("message").or_else(|| v.get("Message"))
            && let Some(m) = m.as_str()
        {
            e.message = m.to_string();
        }
        e
    }
}

llmgate_sdk::export_provider!(Azure);

#[cfg(test)]
mod tests;
