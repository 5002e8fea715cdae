//! Key management with LiteLLM's field names: generate, update, delete, regenerate, list
//! (the answers are rendered by the API, `api::keys`). Every change is committed to the
//! store before the in-memory ledger changes, so a failed write leaves the key as it was,
//! in memory and on disk.

use std::sync::Arc;

use serde_json::{Map, Value, json};

use super::{KeyEntry, Ledger, hash_key, key_name, unix_now, window};
use crate::error::Error;
use crate::store::{KeyRecord, ModelBudgets, Overwrite};

/// A new random key: `sk-` and 32 URL-safe characters (~190 bits).
pub fn new_key() -> String {
    let a = uuid::Uuid::new_v4().simple().to_string();
    let b = uuid::Uuid::new_v4().simple().to_string();
    // 2 x 122 random bits as hex; keep 48 hex characters (~180 bits of randomness).
    format!("sk-{}{}", &a[..24], &b[..24])
}

fn bad(field: &str, what: &str) -> Error {
    Error::BadRequest(format!("`{field}` {what}"))
}

fn opt_f64(body: &Map<String, Value>, k: &str) -> Result<Option<Option<f64>>, Error> {
    match body.get(k) {
        None => Ok(None),
        Some(Value::Null) => Ok(Some(None)),
        Some(v) => {
            let n = v
                .as_f64()
                .or_else(|| v.as_str().and_then(|s| s.trim().parse().ok()))
                .filter(|n| n.is_finite() && *n >= 0.0)
                .ok_or_else(|| bad(k, "must be a number of USD, 0 or more"))?;
            Ok(Some(Some(n)))
        }
    }
}

fn opt_u64(body: &Map<String, Value>, k: &str) -> Result<Option<Option<u64>>, Error> {
    match body.get(k) {
        None => Ok(None),
        Some(Value::Null) => Ok(Some(None)),
        Some(v) => {
            let n = v
                .as_u64()
                .or_else(|| {
                    v.as_f64()
                        .filter(|f| f.fract() == 0.0 && *f >= 0.0)
                        .map(|f| f as u64)
                })
                .ok_or_else(|| bad(k, "must be a whole number, 0 or more"))?;
            Ok(Some(Some(n)))
        }
    }
}

fn opt_str(body: &Map<String, Value>, k: &str) -> Result<Option<Option<String>>, Error> {
    match body.get(k) {
        None => Ok(None),
        Some(Value::Null) => Ok(Some(None)),
        Some(Value::String(s)) => Ok(Some(Some(s.clone()))),
        Some(_) => Err(bad(k, "must be a string")),
    }
}

fn opt_bool(body: &Map<String, Value>, k: &str) -> Result<Option<bool>, Error> {
    match body.get(k) {
        None | Some(Value::Null) => Ok(None),
        Some(Value::Bool(b)) => Ok(Some(*b)),
        Some(_) => Err(bad(k, "must be true or false")),
    }
}

/// Apply the settable fields of `body` to `rec` (generate, update, regenerate).
fn apply(rec: &mut KeyRecord, body: &Map<String, Value>, now: i64) -> Result<(), Error> {
    if let Some(alias) = opt_str(body, "key_alias")? {
        rec.key_alias = alias.filter(|a| !a.is_empty());
    }
    if let Some(b) = opt_f64(body, "max_budget")? {
        rec.max_budget = b;
    }
    if let Some(b) = opt_f64(body, "soft_budget")? {
        rec.soft_budget = b;
    }
    if let Some(d) = opt_str(body, "budget_duration")? {
        match d.filter(|d| !d.is_empty()) {
            Some(d) => {
                let p = window::parse(&d).map_err(|e| bad("budget_duration", &e))?;
                rec.budget_reset_at = Some(window::next_reset(p, now));
                rec.budget_duration = Some(d);
            }
            None => {
                rec.budget_duration = None;
                rec.budget_reset_at = None;
            }
        }
    }
    if let Some(d) = opt_str(body, "duration")? {
        rec.expires = match d.filter(|d| !d.is_empty() && d != "-1") {
            Some(d) => Some(window::after(
                window::parse(&d).map_err(|e| bad("duration", &e))?,
                now,
            )),
            None => None,
        };
    }
    if let Some(v) = body.get("models") {
        rec.models = match v {
            Value::Null => Vec::new(),
            Value::Array(a) => a
                .iter()
                .map(|m| m.as_str().map(str::to_string))
                .collect::<Option<Vec<_>>>()
                .ok_or_else(|| bad("models", "must be a list of model names"))?,
            _ => return Err(bad("models", "must be a list of model names")),
        };
    }
    if let Some(v) = body.get("metadata") {
        rec.metadata = match v {
            Value::Null => json!({}),
            Value::Object(_) => v.clone(),
            _ => return Err(bad("metadata", "must be a JSON object")),
        };
    }
    if let Some(v) = opt_u64(body, "tpm_limit")? {
        rec.tpm_limit = v;
    }
    if let Some(v) = opt_u64(body, "rpm_limit")? {
        rec.rpm_limit = v;
    }
    if let Some(v) = opt_u64(body, "max_parallel_requests")? {
        rec.max_parallel_requests = v;
    }
    if let Some(v) = body.get("model_max_budget") {
        let budgets = ModelBudgets::parse(v).map_err(|e| bad("model_max_budget", &e))?;
        for (model, b) in budgets.iter() {
            if let Some(w) = &b.window {
                window::parse(w)
                    .map_err(|e| bad("model_max_budget", &format!("entry `{model}`: {e}")))?;
            }
        }
        rec.model_max_budget = budgets;
        // Windows of models whose budget changed start over.
        rec.model_spend.clear();
    }
    if let Some(b) = opt_bool(body, "blocked")? {
        rec.blocked = b;
    }
    if let Some(v) = opt_str(body, "user_id")? {
        rec.user_id = v;
    }
    if let Some(v) = opt_str(body, "team_id")? {
        rec.team_id = v;
    }
    if let Some(Some(s)) = opt_f64(body, "spend")? {
        rec.spend = s;
    }
    rec.updated_at = now;
    Ok(())
}

/// A key just made (generate, regenerate): its record and the key itself, which is shown
/// only in this answer.
pub struct Issued {
    /// The key (`sk-...`).
    pub key: String,
    /// Its record as stored.
    pub record: KeyRecord,
}

/// One page of `/key/list`.
pub struct KeyPage {
    /// The keys on this page, newest first.
    pub records: Vec<KeyRecord>,
    /// Keys matching the filters, on every page.
    pub total: usize,
    /// This page (from 1).
    pub page: usize,
    /// How many pages there are (at least 1).
    pub pages: usize,
}

fn store_error(e: &anyhow::Error) -> Error {
    let msg = format!("{e:#}");
    if msg.contains("alias")
        && (msg.contains("taken") || msg.contains("UNIQUE") || msg.contains("exists"))
    {
        Error::BadRequest(format!("key_alias is already used by another key: {msg}"))
    } else {
        Error::Internal(format!("the key store failed; nothing was changed: {msg}"))
    }
}

impl Ledger {
    /// Find a key by the key itself (`sk-...`) or its hash.
    pub fn find(&self, key_or_token: &str) -> Option<Arc<KeyEntry>> {
        let k = key_or_token.trim();
        self.key_by_token(k)
            .or_else(|| self.key_by_token(&hash_key(k)))
    }

    fn find_alias(&self, alias: &str) -> Option<Arc<KeyEntry>> {
        self.keys_read()
            .values()
            .find(|e| e.lock().rec.key_alias.as_deref() == Some(alias))
            .cloned()
    }

    /// The alias of `rec` must not belong to another key (`own` is the key being changed).
    fn check_alias(&self, rec: &KeyRecord, own: Option<&Arc<KeyEntry>>) -> Result<(), Error> {
        if let Some(alias) = &rec.key_alias
            && let Some(other) = self.find_alias(alias)
            && !own.is_some_and(|o| Arc::ptr_eq(o, &other))
        {
            return Err(Error::BadRequest(format!(
                "key_alias `{alias}` is already used by another key"
            )));
        }
        Ok(())
    }

    /// `POST /key/generate`.
    pub async fn generate(&self, body: &Map<String, Value>) -> Result<Issued, Error> {
        let _admin = self.admin.lock().await;
        let now = unix_now();
        let key = match opt_str(body, "key")? {
            Some(Some(k)) => {
                if !k.starts_with("sk-") || k.len() < 8 {
                    return Err(bad(
                        "key",
                        "must start with `sk-` and be at least 8 characters",
                    ));
                }
                k
            }
            _ => new_key(),
        };
        let token = hash_key(&key);
        if self.key_by_token(&token).is_some() {
            return Err(bad("key", "is already in use"));
        }
        let mut rec = KeyRecord::new(token, key_name(&key), now);
        apply(&mut rec, body, now)?;
        self.check_alias(&rec, None)?;
        self.store
            .put_key(rec.clone())
            .await
            .map_err(|e| store_error(&e))?;
        let token = rec.token.clone();
        self.keys_write()
            .insert(token, Arc::new(KeyEntry::new(rec.clone())));
        Ok(Issued { key, record: rec })
    }

    /// `POST /key/update`: `key` names the key (the key or its hash); other fields change.
    pub async fn update(&self, body: &Map<String, Value>) -> Result<KeyRecord, Error> {
        let _admin = self.admin.lock().await;
        let entry = self.entry_for(body)?;
        let now = unix_now();
        self.roll(&entry, now);
        let mut rec = entry.record();
        apply(&mut rec, body, now)?;
        self.check_alias(&rec, Some(&entry))?;
        let spend_patched = body.get("spend").is_some_and(|v| !v.is_null());
        let overwrite = Overwrite {
            spend: spend_patched,
            model_spend: body.contains_key("model_max_budget"),
        };
        self.store
            .put_key_with(rec.clone(), overwrite)
            .await
            .map_err(|e| store_error(&e))?;
        let (record, lease) = {
            let mut st = entry.lock();
            let spend = if spend_patched {
                rec.spend
            } else {
                st.rec.spend
            };
            let model_spend = if body.contains_key("model_max_budget") {
                rec.model_spend.clone()
            } else {
                st.rec.model_spend.clone()
            };
            let budget_changed = st.rec.max_budget != rec.max_budget
                || st.rec.budget_reset_at != rec.budget_reset_at;
            st.rec = KeyRecord {
                spend,
                model_spend,
                ..rec
            };
            // A lease granted under the old budget is given back: the next request leases
            // under the new one.
            let lease = budget_changed.then(|| st.lease.forget()).flatten();
            (st.rec.clone(), lease)
        };
        self.give_back(lease).await;
        Ok(record)
    }

    /// `POST /key/block` and `POST /key/unblock`: sets `blocked` on the key `body["key"]`
    /// names (the key or its hash); the key's next request is refused (or served again).
    pub async fn set_blocked(
        &self,
        body: &Map<String, Value>,
        blocked: bool,
    ) -> Result<KeyRecord, Error> {
        let key = body
            .get("key")
            .and_then(Value::as_str)
            .ok_or_else(|| bad("key", "is required: the key (sk-...) or its hash"))?;
        let mut patch = Map::new();
        patch.insert("key".into(), Value::String(key.to_string()));
        patch.insert("blocked".into(), Value::Bool(blocked));
        self.update(&patch).await
    }

    /// Starts the key's budget windows over if due, writing the reset, before an admin
    /// change reads its record.
    fn roll(&self, entry: &KeyEntry, now: i64) {
        if let Some(reset) = entry.lock().roll(now) {
            self.store.record(reset);
        }
    }

    fn entry_for(&self, body: &Map<String, Value>) -> Result<Arc<KeyEntry>, Error> {
        let key = body
            .get("key")
            .and_then(Value::as_str)
            .ok_or_else(|| bad("key", "is required: the key (sk-...) or its hash"))?;
        self.find(key)
            .ok_or_else(|| Error::NotFound(format!("key {} not found", key_name(key))))
    }

    /// `POST /key/delete`: `keys` (keys or hashes) and/or `key_aliases`. All or nothing:
    /// if one is unknown, nothing is deleted. Returns what was named, keys and aliases as
    /// given.
    pub async fn delete(&self, body: &Map<String, Value>) -> Result<Vec<String>, Error> {
        let _admin = self.admin.lock().await;
        let list = |k: &str| -> Result<Vec<String>, Error> {
            match body.get(k) {
                None | Some(Value::Null) => Ok(Vec::new()),
                Some(Value::Array(a)) => a
                    .iter()
                    .map(|v| v.as_str().map(str::to_string))
                    .collect::<Option<Vec<_>>>()
                    .ok_or_else(|| bad(k, "must be a list of strings")),
                Some(_) => Err(bad(k, "must be a list of strings")),
            }
        };
        let keys = list("keys")?;
        let aliases = list("key_aliases")?;
        if keys.is_empty() && aliases.is_empty() {
            return Err(bad(
                "keys",
                "is required: a list of keys (or `key_aliases`) to delete",
            ));
        }
        let mut entries = Vec::new();
        for k in &keys {
            entries.push(self.find(k).ok_or_else(|| {
                Error::NotFound(format!(
                    "key {} not found; nothing was deleted",
                    key_name(k)
                ))
            })?);
        }
        for a in &aliases {
            entries.push(self.find_alias(a).ok_or_else(|| {
                Error::NotFound(format!("no key has key_alias `{a}`; nothing was deleted"))
            })?);
        }
        let tokens: Vec<String> = entries.iter().map(|e| e.token()).collect();
        self.store
            .delete_keys(tokens.clone())
            .await
            .map_err(|e| store_error(&e))?;
        let mut map = self.keys_write();
        for (e, t) in entries.iter().zip(&tokens) {
            e.lock().deleted = true;
            map.remove(t);
        }
        drop(map);
        let mut shown: Vec<String> = keys;
        shown.extend(aliases);
        Ok(shown)
    }

    /// `POST /key/{key}/regenerate`: a new key with the same settings and spend; the old
    /// key stops working at once. The body may change settings too.
    pub async fn regenerate(&self, old: &str, body: &Map<String, Value>) -> Result<Issued, Error> {
        let _admin = self.admin.lock().await;
        let entry = self
            .find(old)
            .ok_or_else(|| Error::NotFound(format!("key {} not found", key_name(old))))?;
        let now = unix_now();
        self.roll(&entry, now);
        let key = match opt_str(body, "new_key")? {
            Some(Some(k)) if k.starts_with("sk-") && k.len() >= 8 => k,
            Some(Some(_)) => {
                return Err(bad(
                    "new_key",
                    "must start with `sk-` and be at least 8 characters",
                ));
            }
            _ => new_key(),
        };
        let mut rec = entry.record();
        let old_token = rec.token.clone();
        apply(&mut rec, body, now)?;
        rec.token = hash_key(&key);
        rec.key_name = key_name(&key);
        self.check_alias(&rec, Some(&entry))?;
        self.store
            .replace_key(old_token.clone(), rec.clone())
            .await
            .map_err(|e| store_error(&e))?;
        let mut map = self.keys_write();
        let mut st = entry.lock();
        let spend = st.rec.spend;
        let model_spend = st.rec.model_spend.clone();
        st.rec = KeyRecord {
            spend,
            model_spend,
            ..rec
        };
        let record = st.rec.clone();
        drop(st);
        map.remove(&old_token);
        map.insert(record.token.clone(), entry.clone());
        Ok(Issued { key, record })
    }

    /// `GET /key/list`: the keys with `alias` and `user` (when given), paged (`size` from 1
    /// to 1000), newest first.
    pub fn list(
        &self,
        page: usize,
        size: usize,
        alias: Option<&str>,
        user: Option<&str>,
    ) -> KeyPage {
        let mut recs: Vec<KeyRecord> = self
            .keys_read()
            .values()
            .map(|e| e.record())
            .filter(|r| alias.is_none_or(|a| r.key_alias.as_deref() == Some(a)))
            .filter(|r| user.is_none_or(|u| r.user_id.as_deref() == Some(u)))
            .collect();
        recs.sort_by(|a, b| b.created_at.cmp(&a.created_at).then(a.token.cmp(&b.token)));
        let total = recs.len();
        let size = size.clamp(1, 1000);
        let pages = total.div_ceil(size).max(1);
        let page = page.max(1);
        let records = recs
            .into_iter()
            .skip((page - 1) * size)
            .take(size)
            .collect();
        KeyPage {
            records,
            total,
            page,
            pages,
        }
    }
}
