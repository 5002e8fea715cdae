//! Routing policy plugins: load and self-check, and one `route` call per request.
//!
//! `route` is a pure function of its arguments, so unlike provider instances (one per
//! attempt) a policy instance is reused: a few idle instances are kept per policy. An
//! instance goes back to the pool only after a call that returned normally, with an empty
//! stderr, a valid plan, its memory grown by less than [`POOLED_GROWTH_CAP`] and fewer than
//! [`POOLED_MAX_USES`] calls behind it. Anything else (a trap, a timeout, a call abandoned
//! half-way because the request was dropped) discards it with its store. Every call still
//! runs under the memory cap and the CPU deadline.

use std::sync::{Arc, Mutex};

use wasmtime::Store;
use wasmtime::component::Component;

use super::{Fault, LOG_LINES_PER_STORE, Origin, PluginStatus, Runtime, State};
use crate::error::Error;
use crate::wit::policy_api::{Attempt, Candidate, RouteRequest};
use crate::wit::policy_world::{RoutingPolicy, RoutingPolicyPre};
use crate::wit::types::GatewayError;

/// Most attempts a policy may plan for one request.
pub const MAX_ATTEMPTS: usize = 64;
/// A pooled policy instance whose memories grew by more than this is not reused.
pub const POOLED_GROWTH_CAP: usize = 4 << 20;
/// A pooled policy instance is retired after this many calls.
pub const POOLED_MAX_USES: u32 = 10_000;

/// An idle, reusable policy instance and its store.
struct Warm {
    store: Store<State>,
    world: RoutingPolicy,
    uses: u32,
}

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
    /// Idle instances, reused by [`PolicyPlugin::route`].
    idle: Mutex<Vec<Warm>>,
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
            idle: Mutex::new(Vec::new()),
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
    /// A fault is [`Error::Plugin`]; a full instance pool is [`Error::PluginCapacity`].
    pub async fn route(
        &self,
        config_json: &str,
        req: &RouteRequest,
        candidates: &[Candidate],
    ) -> Result<Result<Vec<Attempt>, GatewayError>, Error> {
        let rt = &self.runtime;
        let mut warm = match self.take_idle() {
            Some(w) => w,
            None => {
                let mut store = rt.store(&self.id);
                let world = self
                    .pre
                    .instantiate_async(&mut store)
                    .await
                    .map_err(|e| rt.refuse(&self.id, rt.no_instance(&store, &e)))?;
                Warm {
                    store,
                    world,
                    uses: 0,
                }
            }
        };
        rt.arm(&mut warm.store);
        warm.store.data_mut().log_budget = LOG_LINES_PER_STORE;
        let r = warm
            .world
            .llmgate_plugin_policy()
            .call_route(&mut warm.store, config_json, req, candidates)
            .await
            .map_err(|e| rt.refuse(&self.id, rt.no_instance(&warm.store, &e)))?;
        if let Ok(plan) = &r {
            if plan.len() > MAX_ATTEMPTS {
                return Err(Fault {
                    plugin: self.id.clone(),
                    message: format!("planned {} attempts (cap {MAX_ATTEMPTS})", plan.len()),
                }
                .into());
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
                }
                .into());
            }
        }
        warm.uses += 1;
        self.put_idle(warm);
        Ok(r)
    }

    /// An idle instance, if one is pooled.
    fn take_idle(&self) -> Option<Warm> {
        self.idle.lock().ok()?.pop()
    }

    /// Keep `warm` for the next call if it is still clean and the pool has room; otherwise
    /// drop it (and its store).
    fn put_idle(&self, warm: Warm) {
        let state = warm.store.data();
        let clean = warm.uses < POOLED_MAX_USES
            && state.limits.grown <= POOLED_GROWTH_CAP
            && state.stderr.contents().is_empty();
        if !clean {
            return;
        }
        let cap = self.runtime.policy_pool_cap();
        if let Ok(mut idle) = self.idle.lock()
            && idle.len() < cap
        {
            idle.push(warm);
        }
    }
}
