//! Key changes made on other instances (PostgreSQL: the store's key listener, wired up in
//! `lib.rs`), applied to this instance's ledger.
//!
//! A remote change replaces a key's settings (budget, limits, models, blocked, expiry,
//! alias, metadata, ...) and keeps its live state (reservations, requests in flight, the
//! rpm/tpm counters of the minute): requests in flight settle into the same entry. A
//! remote delete marks the entry deleted and removes it, as a local delete does; a new
//! token gets a new entry, or, for a regeneration, takes over the replaced token's entry.
//!
//! Spend: the database's `spend` (and a model's window in `model_spend`) is taken only when
//! it is larger than the local value or the budget window changed (another
//! `budget_duration`, or a later `budget_reset_at`); else the local value stays.
//!
//! Every change is applied under the ledger's admin lock, so it never interleaves with a
//! change this instance makes. A change this instance made itself comes back as a
//! notification too and changes nothing: the row is what the local change left in memory.

use std::collections::HashSet;
use std::sync::Arc;

use super::{KeyEntry, KeyState, Ledger};
use crate::store::{KeyRecord, KeySink, ModelSpend};

impl Ledger {
    /// Applies key `token` as the database has it now (`None`: deleted), under the admin
    /// lock (see the module docs).
    pub async fn sync_key(&self, token: &str, rec: Option<KeyRecord>) {
        let _admin = self.admin.lock().await;
        self.apply_remote(token, rec, None);
    }

    /// Applies every key the database has; a key not among `recs` is gone.
    pub async fn sync_all(&self, recs: Vec<KeyRecord>) {
        let _admin = self.admin.lock().await;
        self.apply_every(recs);
    }

    /// One key; the admin lock is held.
    fn apply_remote(&self, token: &str, rec: Option<KeyRecord>, replaced: Option<&str>) {
        let Some(rec) = rec else {
            self.forget(token);
            return;
        };
        if let Some(entry) = self.key_by_token(token) {
            let dropped = entry.lock().take_remote(rec);
            self.drop_lease(dropped);
            return;
        }
        let mut map = self.keys_write();
        let entry = match replaced.and_then(|old| map.remove(old)) {
            Some(moved) => {
                let dropped = moved.lock().take_remote(rec);
                self.drop_lease(dropped);
                moved
            }
            None => Arc::new(KeyEntry::new(rec)),
        };
        map.insert(token.to_owned(), entry);
    }

    /// Every key; the admin lock is held.
    fn apply_every(&self, recs: Vec<KeyRecord>) {
        let present: HashSet<String> = recs.iter().map(|r| r.token.clone()).collect();
        for rec in recs {
            let token = rec.token.clone();
            self.apply_remote(&token, Some(rec), None);
        }
        let gone: Vec<String> = self
            .keys_read()
            .keys()
            .filter(|t| !present.contains(*t))
            .cloned()
            .collect();
        for token in gone {
            self.forget(&token);
        }
    }

    /// A key deleted elsewhere: refused from now on; requests in flight still settle.
    fn forget(&self, token: &str) {
        if let Some(entry) = self.keys_write().remove(token) {
            entry.lock().deleted = true;
        }
    }
}

impl KeySink for Ledger {
    fn admin_lock(&self) -> &tokio::sync::Mutex<()> {
        &self.admin
    }

    fn apply_key(&self, token: &str, rec: Option<KeyRecord>, replaced: Option<&str>) {
        self.apply_remote(token, rec, replaced);
    }

    fn apply_all(&self, recs: Vec<KeyRecord>) {
        self.apply_every(recs);
    }
}

impl KeyState {
    /// The database's row of this key: its settings, and its spend where it is ahead.
    /// A changed budget drops this instance's lease (granted under the old one): its id is
    /// returned, to be given back.
    fn take_remote(&mut self, mut db: KeyRecord) -> Option<String> {
        let budget_changed =
            self.rec.max_budget != db.max_budget || self.rec.budget_duration != db.budget_duration;
        let (spend, reset_at) = merged_spend(&self.rec, &db);
        db.model_spend = merged_model_spend(&self.rec, &db);
        db.spend = spend;
        db.budget_reset_at = reset_at;
        self.rec = db;
        budget_changed.then(|| self.lease.forget()).flatten()
    }
}

/// The key's spend and window end: the database's if its window is another (a changed
/// `budget_duration`, or a later reset), the larger spend if it is the same window, else
/// (this instance already rolled into the next window) the local ones.
fn merged_spend(local: &KeyRecord, db: &KeyRecord) -> (f64, Option<i64>) {
    if local.budget_duration != db.budget_duration || db.budget_reset_at > local.budget_reset_at {
        return (db.spend, db.budget_reset_at);
    }
    if db.budget_reset_at == local.budget_reset_at {
        return (local.spend.max(db.spend), local.budget_reset_at);
    }
    (local.spend, local.budget_reset_at)
}

/// Per model group, the same rule as [`merged_spend`]; changed model budgets start their
/// windows over, so the database's windows are taken whole.
fn merged_model_spend(local: &KeyRecord, db: &KeyRecord) -> ModelSpend {
    if local.model_max_budget != db.model_max_budget {
        return db.model_spend.clone();
    }
    let mut out = local.model_spend.clone();
    for (model, theirs) in &db.model_spend {
        let Some(ours) = out.get_mut(model) else {
            out.insert(model.clone(), *theirs);
            continue;
        };
        if theirs.reset_at > ours.reset_at {
            *ours = *theirs;
        } else if theirs.reset_at == ours.reset_at {
            ours.spend = ours.spend.max(theirs.spend);
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::store::ModelWindow;

    fn rec(spend: f64, duration: Option<&str>, reset_at: Option<i64>) -> KeyRecord {
        let mut r = KeyRecord::new("t".into(), "sk-...t".into(), 1);
        r.spend = spend;
        r.budget_duration = duration.map(str::to_owned);
        r.budget_reset_at = reset_at;
        r
    }

    #[test]
    fn spend_is_taken_when_larger_or_in_another_window() {
        let same = |l: f64, d: f64| {
            merged_spend(&rec(l, Some("1d"), Some(9)), &rec(d, Some("1d"), Some(9)))
        };
        assert_eq!(same(2.0, 1.0), (2.0, Some(9)), "local ahead stays");
        assert_eq!(same(1.0, 3.0), (3.0, Some(9)), "database ahead is taken");
        // A later window in the database (another instance rolled first), a changed duration.
        let later = merged_spend(
            &rec(5.0, Some("1d"), Some(9)),
            &rec(0.5, Some("1d"), Some(99)),
        );
        assert_eq!(later, (0.5, Some(99)));
        let other = merged_spend(
            &rec(5.0, Some("30d"), Some(99)),
            &rec(0.5, Some("1d"), Some(9)),
        );
        assert_eq!(other, (0.5, Some(9)));
        // This instance rolled already: its new window stays.
        let rolled = merged_spend(
            &rec(0.1, Some("1d"), Some(99)),
            &rec(7.0, Some("1d"), Some(9)),
        );
        assert_eq!(rolled, (0.1, Some(99)));
    }

    #[test]
    fn model_windows_merge_like_the_key_and_start_over_when_budgets_change() {
        let w = |reset_at, spend| ModelWindow { reset_at, spend };
        let mut local = rec(0.0, None, None);
        local.model_spend.insert("a".into(), w(Some(5), 2.0));
        local.model_spend.insert("b".into(), w(Some(5), 1.0));
        let mut db = local.clone();
        db.model_spend.insert("a".into(), w(Some(5), 1.0));
        db.model_spend.insert("b".into(), w(Some(5), 4.0));
        db.model_spend.insert("c".into(), w(None, 0.5));
        let m = merged_model_spend(&local, &db);
        assert_eq!(m["a"], w(Some(5), 2.0));
        assert_eq!(m["b"], w(Some(5), 4.0));
        assert_eq!(m["c"], w(None, 0.5));
        db.model_max_budget =
            crate::store::ModelBudgets::parse(&serde_json::json!({"a": 1.0})).unwrap();
        db.model_spend.clear();
        assert!(merged_model_spend(&local, &db).is_empty());
    }
}
