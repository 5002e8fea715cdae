//! Provider plugins: load and self-check, and [`Exchange`], one attempt's live instance.
//!
//! Every attempt gets a fresh instance: nothing of one request can be seen by the next. To
//! keep instantiation and teardown off the request path, a few fresh, never-used instances
//! per plugin are made ahead of need ([`ProviderPlugin::refill`]), and a finished exchange
//! is torn down after its response has been handed over ([`ProviderPlugin::recycle`]).

use std::sync::{Arc, Mutex};

use wasmtime::Store;
use wasmtime::component::{Component, ResourceAny};

use super::{Fault, NoInstance, Origin, PluginStatus, Runtime, State};
use crate::error::Error;
use crate::wit::provider_api::{ClientResponse, Inbound, Prefix, UpstreamRequest};
use crate::wit::provider_world::{ProviderPlugin as World, ProviderPluginPre};
use crate::wit::types::{Api, GatewayError, SseEvent, Usage};

/// Most bytes a plugin may hand back in one body or event batch.
const MAX_OUTPUT_BYTES: usize = 64 << 20;
/// Most headers a plugin may set.
const MAX_HEADERS: usize = 128;
/// How long after its response a finished instance is torn down and a spare made. Done at
/// once, that work (tens of microseconds) runs on the CPU that just wrote the response, in
/// the way of whatever reads it there (the client, when it shares the machine, or the next
/// request); 2 ms later the response has been read. It holds one more pooled instance per
/// request in those 2 ms, and under load a request that finds no spare makes its own.
const RECYCLE_DELAY: std::time::Duration = std::time::Duration::from_millis(2);

/// A fresh instance made ahead of need: instantiated, never called.
struct Ready {
    store: Store<State>,
    world: World,
}

/// A loaded provider plugin.
pub struct ProviderPlugin {
    /// Plugin name.
    pub name: String,
    /// Plugin version.
    pub version: String,
    /// Prefixes it serves, with their defaults.
    pub prefixes: Vec<Prefix>,
    /// Inbound APIs it serves.
    pub apis: Vec<Api>,
    /// Inbound APIs it passes through natively.
    pub native_apis: Vec<Api>,
    /// Where it came from.
    pub origin: Origin,
    id: Arc<str>,
    pre: ProviderPluginPre<State>,
    runtime: Arc<Runtime>,
    /// Fresh instances waiting for an attempt (at most [`Runtime::ready_cap`]).
    ready: Mutex<Vec<Ready>>,
}

impl ProviderPlugin {
    /// Link `component`, instantiate it once and ask it to describe itself.
    pub(super) async fn load(
        runtime: Arc<Runtime>,
        component: &Component,
        origin: Origin,
    ) -> anyhow::Result<Self> {
        let pre = ProviderPluginPre::new(runtime.linker.instantiate_pre(component)?)?;
        let file_id: Arc<str> = Arc::from(origin.file.display().to_string());
        let mut store = runtime.store(&file_id);
        let world = pre.instantiate_async(&mut store).await?;
        let info = world
            .llmgate_plugin_provider()
            .call_describe(&mut store)
            .await
            .map_err(|e| anyhow::anyhow!(runtime.fault(&store, &e).message))?;
        anyhow::ensure!(!info.name.is_empty(), "describe() returned an empty name");
        anyhow::ensure!(
            !info.prefixes.is_empty(),
            "describe() lists no provider prefixes"
        );
        for p in &info.prefixes {
            anyhow::ensure!(
                !p.name.is_empty() && !p.name.contains('/'),
                "describe() lists an invalid prefix `{}`",
                p.name
            );
            if let Some(base) = &p.default_api_base {
                anyhow::ensure!(
                    crate::net::origin_of(base).is_some(),
                    "prefix {} has an invalid default-api-base `{base}`",
                    p.name
                );
            }
        }
        Ok(Self {
            id: Arc::from(format!("{}@{}", info.name, info.version)),
            name: info.name,
            version: info.version,
            prefixes: info.prefixes,
            apis: info.apis,
            native_apis: info.native_apis,
            origin,
            pre,
            runtime,
            ready: Mutex::new(Vec::new()),
        })
    }

    /// `name@version`.
    pub fn id(&self) -> &Arc<str> {
        &self.id
    }

    /// The prefix entry for `name`.
    pub fn prefix(&self, name: &str) -> Option<&Prefix> {
        self.prefixes.iter().find(|p| p.name == name)
    }

    /// Its row in `GET /plugins`.
    pub fn status(&self) -> PluginStatus {
        PluginStatus {
            name: self.name.clone(),
            version: Some(self.version.clone()),
            kind: Some("provider"),
            prefixes: self.prefixes.iter().map(|p| p.name.clone()).collect(),
            origin: self.origin.clone(),
            last_error: None,
        }
    }

    /// A fresh store and instance, never used.
    async fn instantiate(&self) -> Result<Ready, NoInstance> {
        let rt = &self.runtime;
        let mut store = rt.store(&self.id);
        match self.pre.instantiate_async(&mut store).await {
            Ok(world) => Ok(Ready { store, world }),
            Err(e) => Err(rt.no_instance(&store, &e)),
        }
    }

    /// Make fresh instances until [`Runtime::ready_cap`] wait for the next attempts.
    pub async fn refill(&self) {
        let cap = self.runtime.ready_cap();
        while self.ready.lock().is_ok_and(|r| r.len() < cap) {
            match self.instantiate().await {
                Ok(r) => match self.ready.lock() {
                    Ok(mut ready) if ready.len() < cap => ready.push(r),
                    _ => return,
                },
                // Spares are made only from free slots; a full pool is for requests.
                Err(NoInstance::PoolFull) => return,
                Err(NoInstance::Fault(f)) => {
                    tracing::warn!(plugin = %f.plugin, "making a spare instance failed: {}", f.message);
                    return;
                }
            }
        }
    }

    /// After an attempt's response is handed over: tear its instance down and make a fresh
    /// one for a later attempt, in a task of its own, [`RECYCLE_DELAY`] later (off the
    /// request's path, and out of the way of the response on its way to the client).
    pub fn recycle(self: &Arc<Self>, exchange: Exchange) {
        let plugin = self.clone();
        tokio::spawn(async move {
            tokio::time::sleep(RECYCLE_DELAY).await;
            drop(exchange);
            plugin.refill().await;
        });
    }

    /// Start one attempt: a fresh instance (made ahead of need when one is waiting), and the
    /// plugin's `exchange` resource. A plugin fault is [`Error::Plugin`]; a full instance
    /// pool is [`Error::PluginCapacity`].
    pub async fn exchange(self: &Arc<Self>, req: &Inbound) -> Result<Exchange, Error> {
        let rt = &self.runtime;
        let waiting = self.ready.lock().ok().and_then(|mut r| r.pop());
        let Ready { mut store, world } = match waiting {
            Some(r) => r,
            None => self
                .instantiate()
                .await
                .map_err(|why| rt.refuse(&self.id, why))?,
        };
        rt.arm(&mut store);
        let res = match world
            .llmgate_plugin_provider()
            .exchange()
            .call_constructor(&mut store, req)
            .await
        {
            Ok(r) => r,
            Err(e) => return Err(rt.refuse(&self.id, rt.no_instance(&store, &e))),
        };
        Ok(Exchange {
            store,
            world,
            res,
            plugin: self.clone(),
        })
    }
}

/// One attempt's plugin instance. Holds stream state between calls; dropped with its store.
pub struct Exchange {
    store: Store<State>,
    world: World,
    res: ResourceAny,
    plugin: Arc<ProviderPlugin>,
}

impl Exchange {
    /// The plugin serving this attempt.
    pub fn plugin(&self) -> &Arc<ProviderPlugin> {
        &self.plugin
    }

    /// Arm the deadline, then map a call's trap to a fault.
    fn after<R>(&self, r: wasmtime::Result<R>) -> Result<R, Fault> {
        r.map_err(|e| self.plugin.runtime.fault(&self.store, &e))
    }

    fn invalid(&self, what: String) -> Fault {
        Fault {
            plugin: self.plugin.id.clone(),
            message: what,
        }
    }

    /// `build-request`.
    pub async fn build_request(&mut self) -> Result<Result<UpstreamRequest, GatewayError>, Fault> {
        let r = {
            self.plugin.runtime.arm(&mut self.store);
            let r = self
                .world
                .llmgate_plugin_provider()
                .exchange()
                .call_build_request(&mut self.store, self.res)
                .await;
            self.after(r)?
        };
        if let Ok(req) = &r {
            self.check_headers(&req.headers)?;
            if req.body.len() > MAX_OUTPUT_BYTES {
                return Err(self.invalid(format!(
                    "request body of {} bytes is over the cap",
                    req.body.len()
                )));
            }
        }
        Ok(r)
    }

    /// `on-body`.
    pub async fn on_body(
        &mut self,
        status: u16,
        headers: &[(String, String)],
        body: &[u8],
    ) -> Result<Result<ClientResponse, GatewayError>, Fault> {
        let headers = headers.to_vec();
        let r = {
            self.plugin.runtime.arm(&mut self.store);
            let r = self
                .world
                .llmgate_plugin_provider()
                .exchange()
                .call_on_body(&mut self.store, self.res, status, &headers, body)
                .await;
            self.after(r)?
        };
        if let Ok(resp) = &r {
            self.check_headers(&resp.headers)?;
            if !(100..=599).contains(&resp.status) {
                return Err(self.invalid(format!("returned invalid HTTP status {}", resp.status)));
            }
            if resp.body.len() > MAX_OUTPUT_BYTES {
                return Err(self.invalid(format!(
                    "response body of {} bytes is over the cap",
                    resp.body.len()
                )));
            }
        }
        Ok(r)
    }

    /// `on-stream-start`.
    pub async fn on_stream_start(
        &mut self,
        status: u16,
        headers: &[(String, String)],
    ) -> Result<Result<Vec<(String, String)>, GatewayError>, Fault> {
        let headers = headers.to_vec();
        let r = {
            self.plugin.runtime.arm(&mut self.store);
            let r = self
                .world
                .llmgate_plugin_provider()
                .exchange()
                .call_on_stream_start(&mut self.store, self.res, status, &headers)
                .await;
            self.after(r)?
        };
        if let Ok(h) = &r {
            self.check_headers(h)?;
        }
        Ok(r)
    }

    /// `on-event`.
    pub async fn on_event(
        &mut self,
        event: &SseEvent,
    ) -> Result<Result<Vec<SseEvent>, GatewayError>, Fault> {
        let r = {
            self.plugin.runtime.arm(&mut self.store);
            let r = self
                .world
                .llmgate_plugin_provider()
                .exchange()
                .call_on_event(&mut self.store, self.res, event)
                .await;
            self.after(r)?
        };
        if let Ok(events) = &r {
            self.check_events(events)?;
        }
        Ok(r)
    }

    /// `finish`.
    pub async fn finish(
        &mut self,
    ) -> Result<Result<(Vec<SseEvent>, Option<Usage>), GatewayError>, Fault> {
        let r = {
            self.plugin.runtime.arm(&mut self.store);
            let r = self
                .world
                .llmgate_plugin_provider()
                .exchange()
                .call_finish(&mut self.store, self.res)
                .await;
            self.after(r)?
        };
        if let Ok((events, _)) = &r {
            self.check_events(events)?;
        }
        Ok(r)
    }

    fn check_headers(&self, headers: &[(String, String)]) -> Result<(), Fault> {
        if headers.len() > MAX_HEADERS {
            return Err(self.invalid(format!(
                "returned {} headers (cap {MAX_HEADERS})",
                headers.len()
            )));
        }
        for (k, v) in headers {
            if http::HeaderName::from_bytes(k.as_bytes()).is_err()
                || http::HeaderValue::from_str(v).is_err()
            {
                return Err(self.invalid(format!("returned an invalid header `{k}`")));
            }
        }
        Ok(())
    }

    fn check_events(&self, events: &[SseEvent]) -> Result<(), Fault> {
        let total: usize = events.iter().map(|e| e.data.len()).sum();
        if total > MAX_OUTPUT_BYTES {
            return Err(self.invalid(format!(
                "returned {total} bytes of events (cap {MAX_OUTPUT_BYTES})"
            )));
        }
        if events
            .iter()
            .any(|e| e.event.as_deref().is_some_and(|n| n.contains(['\n', '\r'])))
        {
            return Err(self.invalid("returned an event name with a line break".into()));
        }
        Ok(())
    }
}
