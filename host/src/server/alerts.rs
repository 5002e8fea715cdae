//! The alerts only the running gateway can see: a deployment going down (into cooldown)
//! and coming back, and a plugin file failing to load (at start, or on a hot reload).
//!
//! One background task looks every [`TICK`] at [`Gateway::deployment_health`] and at the
//! registry's plugin rows (where load errors are recorded, `GET /plugins`), and raises an
//! alert on each change: cheap reads of counters, nothing on the request path. The task
//! holds the gateway weakly and ends with it.

use std::collections::{HashMap, HashSet};
use std::sync::{Arc, Weak};
use std::time::Duration;

use crate::gateway::{Gateway, Health, State};
use crate::observe::alerts::{self, Alerter};
use crate::plugins::Registry;

/// How often the task looks.
pub const TICK: Duration = Duration::from_millis(250);

/// What the task last saw of one deployment.
#[derive(Default)]
struct Seen {
    /// Down (a cooldown) and not answered since.
    down: bool,
    /// Cooldowns by status, as last read.
    cooldowns: Vec<(u16, u64)>,
}

/// Start watching `gw` for deployment and plugin alerts.
pub fn watch(gw: &Arc<Gateway>, alerter: Arc<Alerter>) {
    let weak = Arc::downgrade(gw);
    tokio::spawn(run(weak, alerter));
}

async fn run(gw: Weak<Gateway>, alerter: Arc<Alerter>) {
    let mut deployments: HashMap<String, Seen> = HashMap::new();
    let mut plugins = Plugins::default();
    let mut tick = tokio::time::interval(TICK);
    tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    loop {
        tick.tick().await;
        let Some(gw) = gw.upgrade() else { return };
        for (d, health) in gw.deployment_health() {
            let seen = deployments.entry(d.id.clone()).or_default();
            deployment(&alerter, seen, &d.id, &d.model_name, &health);
        }
        plugins.check(&alerter, &gw.registry());
    }
}

/// Raise an alert when a deployment goes down or comes back, and remember what was seen.
fn deployment(alerter: &Alerter, seen: &mut Seen, id: &str, group: &str, h: &Health) {
    let down = h.state == State::CompleteOutage;
    if down && !seen.down {
        let status = new_cooldown_status(&seen.cooldowns, &h.cooldowns);
        let left = h
            .cooldown_until_ms
            .map(|until| until.saturating_sub(now_ms()));
        alerter.raise(alerts::deployment_down(id, group, status, left));
        seen.down = true;
    } else if seen.down && h.state == State::Healthy {
        alerter.raise(alerts::deployment_up(id, group));
        seen.down = false;
    }
    seen.cooldowns.clone_from(&h.cooldowns);
}

/// The status whose cooldown count grew since `before`.
fn new_cooldown_status(before: &[(u16, u64)], now: &[(u16, u64)]) -> Option<u16> {
    now.iter()
        .find(|(status, n)| {
            before
                .iter()
                .find(|(s, _)| s == status)
                .is_none_or(|(_, m)| n > m)
        })
        .map(|(status, _)| *status)
}

fn now_ms() -> u64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| u64::try_from(d.as_millis()).unwrap_or(u64::MAX))
}

/// The plugin load errors already alerted on, and the registry they were read from.
#[derive(Default)]
struct Plugins {
    registry: Option<Arc<Registry>>,
    errors: HashSet<(String, String)>,
}

impl Plugins {
    /// Alert on every load error of `registry` not seen before (a new registry only).
    fn check(&mut self, alerter: &Alerter, registry: &Arc<Registry>) {
        if self
            .registry
            .as_ref()
            .is_some_and(|r| Arc::ptr_eq(r, registry))
        {
            return;
        }
        let mut now = HashSet::new();
        for s in &registry.status {
            let Some(error) = &s.last_error else { continue };
            let file = s.origin.file.display().to_string();
            let key = (file, error.clone());
            if !self.errors.contains(&key) {
                alerter.raise(alerts::plugin_failed(&key.0, error));
            }
            now.insert(key);
        }
        self.errors = now;
        self.registry = Some(registry.clone());
    }
}
