//! End-to-end tests: the real `llmgate` binary, started with a config, driven over HTTP
//! against in-process mock upstreams that speak each provider's wire format.
//!
//! Needs the plugins built first: `scripts/build-plugins.sh && scripts/build-plugins.sh --tests`.

#![expect(clippy::unwrap_used, clippy::expect_used, reason = "tests")]

mod admission;
mod alerts;
mod anthropic;
mod clients;
mod cluster_keys;
mod config_reload;
mod database;
mod db_copy;
mod faults;
mod harness;
mod health;
mod keys;
mod logging;
mod loops;
mod metrics;
mod openai;
mod otel;
mod policy_js;
mod provider_js;
mod providers;
mod redis;
mod reload;
mod router;
mod routing;
mod sandbox;
mod secrets;
mod startup;
mod support;
mod template;
