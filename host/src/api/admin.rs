//! Admin routes: `GET /plugins`.

use std::path::Path;
use std::sync::Arc;

use axum::Json;
use axum::extract::State;
use axum::response::{IntoResponse as _, Response};
use serde::Serialize;

use super::{Admin, by_name};
use crate::gateway::Gateway;
use crate::plugins::PluginStatus;

/// `GET /plugins`'s answer (fields by name, the order clients have always seen).
#[derive(Serialize)]
pub struct PluginsView<'a> {
    hot_reload: HotReload,
    instance_pool: InstancePool,
    /// One row per plugin file.
    #[serde(serialize_with = "by_name")]
    plugins: &'a [PluginStatus],
    plugins_dir: &'a Path,
}

/// Whether the plugins folder is watched, and how many rescans have run.
#[derive(Serialize)]
pub struct HotReload {
    enabled: bool,
    rescans: u64,
}

/// The plugin instance pool: its size, and how many requests it refused because it was
/// full.
#[derive(Serialize)]
pub struct InstancePool {
    exhausted_total: u64,
    max_instances: u32,
}

/// `GET /plugins`: every plugin file with name, version, kind, hash, load time, last error,
/// how many hot-reload rescans have run, and the instance pool (its size, and how many
/// requests were refused because it was full).
pub async fn plugins(State(gw): State<Arc<Gateway>>, _: Admin) -> Response {
    let reg = gw.registry();
    let config = gw.config();
    Json(PluginsView {
        hot_reload: HotReload {
            enabled: config.hot_reload,
            rescans: gw
                .reload_stats()
                .scans
                .load(std::sync::atomic::Ordering::Relaxed),
        },
        instance_pool: InstancePool {
            exhausted_total: gw.runtime().pool_exhausted_total(),
            max_instances: gw.runtime().max_instances(),
        },
        plugins: &reg.status,
        plugins_dir: &config.plugins_dir,
    })
    .into_response()
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::api::assert_keys_by_name;
    use crate::plugins::Origin;

    #[test]
    fn plugins_view_shows_its_fields_by_name() {
        let status = PluginStatus {
            name: "openai".into(),
            version: Some("1.0.0".into()),
            kind: Some("provider"),
            prefixes: vec!["openai".into()],
            origin: Origin {
                file: "plugins/openai.wasm".into(),
                sha256: "ab".into(),
                loaded_at: 1,
            },
            last_error: None,
        };
        let v = PluginsView {
            hot_reload: HotReload {
                enabled: true,
                rescans: 2,
            },
            instance_pool: InstancePool {
                exhausted_total: 0,
                max_instances: 8,
            },
            plugins: &[status],
            plugins_dir: Path::new("plugins"),
        };
        assert_keys_by_name(&v);
    }
}
