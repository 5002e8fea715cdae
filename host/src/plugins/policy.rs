//! Routing policy plugins: load and self-check, and one `route` call per request.

use std::sync::Arc;

use wasmtime::component::Component;

use super::bindings::policy_api::{Attempt, Candidate, RouteRequest};
use super::bindings::policy_world::RoutingPolicyPre;
use super::bindings::types::GatewayError;
use super::{Fault, Origin, PluginStatus, Runtime, State};

/// Most attempts a policy may plan for one request.
pub const MAX_ATTEMPTS: usize = 64;

/// A loaded routing policy.
pub struct PolicyPlugin {
    /// Policy name (what config refers to).
    pub name: String,
    /// Policy version.
    pub version: String,
    /// Where it came from.
    pub origin: Origin,
    id: Arc<str>,
    pre: RoutingPolicyPre<State>,
    runtime: Arc<Runtime>,
}

impl PolicyPlugin {
    /// Link `component`, instantiate it once and ask it to describe itself.
    pub(super) async fn load(
        runtime: Arc<Runtime>,
        component: &Component,
        origin: Origin,
    ) -> anyhow::Result<Self> {
        let pre = RoutingPolicyPre::new(runtime.linker.instantiate_pre(component)?)?;
        let file_id: Arc<str> = Arc::from(origin.file.display().to_string());
        let mut store = runtime.store(&file_id);
        let world = pre.instantiate_async(&mut store).await?;
        let (name, version) = world
            .llmgate_plugin_policy()
            .call_describe(&mut store)
            .await
            .map_err(|e| anyhow::anyhow!(runtime.fault(&store, &e).message))?;
        anyhow::ensure!(!name.is_empty(), "describe() returned an empty name");
        Ok(Self {
            id: Arc::from(format!("{name}@{version}")),
            name,
            version,
            origin,
            pre,
            runtime,
        })
    }

    /// `name@version`.
    pub fn id(&self) -> &Arc<str> {
        &self.id
    }

    /// Its row in `GET /plugins`.
    pub fn status(&self) -> PluginStatus {
        PluginStatus {
            name: self.name.clone(),
            version: Some(self.version.clone()),
            kind: Some("policy"),
            prefixes: Vec::new(),
            origin: self.origin.clone(),
            last_error: None,
        }
    }

    /// Plan the attempts for one request. The plan is checked: every id must be a candidate.
    pub async fn route(
        &self,
        config_json: &str,
        req: &RouteRequest,
        candidates: &[Candidate],
    ) -> Result<Result<Vec<Attempt>, GatewayError>, Fault> {
        let rt = &self.runtime;
        let mut store = rt.store(&self.id);
        let world = self
            .pre
            .instantiate_async(&mut store)
            .await
            .map_err(|e| rt.fault(&store, &e))?;
        let r = world
            .llmgate_plugin_policy()
            .call_route(&mut store, config_json, req, candidates)
            .await
            .map_err(|e| rt.fault(&store, &e))?;
        if let Ok(plan) = &r {
            if plan.len() > MAX_ATTEMPTS {
                return Err(Fault {
                    plugin: self.id.clone(),
                    message: format!("planned {} attempts (cap {MAX_ATTEMPTS})", plan.len()),
                });
            }
            if let Some(bad) = plan
                .iter()
                .find(|a| !candidates.iter().any(|c| c.id == a.candidate_id))
            {
                return Err(Fault {
                    plugin: self.id.clone(),
                    message: format!(
                        "named deployment `{}`, which is not a candidate",
                        bad.candidate_id.chars().take(80).collect::<String>()
                    ),
                });
            }
        }
        Ok(r)
    }
}
