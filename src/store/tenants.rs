//! The per-tenant rows of the store (`tenant_state`, `meta`): committing one tenant's
//! judgement ([`Store::commit_tenant`]), removing a tenant, assembling the whole alert
//! state and history from the rows, and moving the first schema's two single rows into
//! per-tenant rows when an old database is opened.
//!
//! **Write only what changed**: the store remembers, in memory, a fingerprint (length and
//! hash) of the JSON it last wrote to each tenant's `alerts` and `history`, and skips a
//! column whose JSON is unchanged. Nothing is remembered across an open: a tenant's first
//! commit after open always writes. A commit never deletes a row, even when the tenant's
//! alert part is empty and it has no history (the empty part is written, a few dozen
//! bytes); only [`Store::remove_tenant`] does (and [`Store::commit_round`], for a tenant it
//! is told has neither).
//!
//! Not here: the outbox, silences and the round record (`store.rs`), and deciding anything.

use super::{
    RoundRecord, Store, StoreError, forget_dead, from_json, queue_outbox, to_json, write_round,
};
use crate::alert::{AlertState, Notification};
use crate::detect::history::{History, TenantHistory};
use crate::model::Timestamp;
use rusqlite::{OptionalExtension, Transaction, params};
use std::collections::BTreeSet;
use std::hash::{DefaultHasher, Hash, Hasher};

/// One tenant's judgement, committed by [`Store::commit_tenant`].
#[derive(Debug, Clone, Copy)]
pub struct TenantCommit<'a> {
    pub tenant: &'a str,
    /// The tenant's alert state part after this judgement.
    pub alerts: &'a AlertState,
    /// The tenant's history after this judgement; None: leave the stored one.
    pub history: Option<&'a TenantHistory>,
    /// History::first_recorded, stored when Some.
    pub first_recorded: Option<Timestamp>,
    pub outbox: &'a [(String, Notification)],
    /// A completed full round, if this round completed one.
    pub round: Option<RoundRecord>,
}

/// What this process last wrote to a tenant's row.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) struct Written {
    alerts: Fingerprint,
    /// `None`: not known (not written since open).
    history: Option<Fingerprint>,
}

/// A column's JSON (or NULL), short enough to keep per tenant.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
struct Fingerprint {
    len: usize,
    hash: u64,
}

fn fingerprint(json: Option<&str>) -> Fingerprint {
    let mut h = DefaultHasher::new();
    json.hash(&mut h);
    Fingerprint {
        len: json.map_or(0, str::len),
        hash: h.finish(),
    }
}

/// What a commit does with a row's `history`.
#[derive(Debug, Clone, Copy)]
enum HistoryWrite<'a> {
    Keep,
    Set(&'a TenantHistory),
    /// NULL: the tenant has no history (any more); only a whole-state commit says so.
    #[cfg(test)]
    Clear,
}

const UPSERT_BOTH: &str = "INSERT INTO tenant_state (tenant, history, alerts, updated_at)
     VALUES (?1, ?2, ?3, ?4)
     ON CONFLICT (tenant) DO UPDATE SET history = excluded.history, alerts = excluded.alerts,
         updated_at = excluded.updated_at";
/// A new row gets a NULL history; an existing one keeps its own.
const UPSERT_ALERTS: &str = "INSERT INTO tenant_state (tenant, history, alerts, updated_at)
     VALUES (?1, ?2, ?3, ?4)
     ON CONFLICT (tenant) DO UPDATE SET alerts = excluded.alerts, updated_at = excluded.updated_at";
const UPDATE_HISTORY: &str =
    "UPDATE tenant_state SET history = ?2, updated_at = ?3 WHERE tenant = ?1";

/// Writes `tenant`'s row where it differs from `known` (what this process last wrote to
/// it). Returns what the row holds afterwards and the bytes of JSON written (`None`:
/// nothing was written).
fn write_row(
    tx: &Transaction<'_>,
    now: Timestamp,
    tenant: &str,
    known: Option<Written>,
    alerts: &AlertState,
    history: HistoryWrite<'_>,
) -> Result<(Written, Option<usize>), StoreError> {
    let alerts_json = to_json(alerts);
    let alerts_fp = fingerprint(Some(&alerts_json));
    let history_json: Option<Option<String>> = match history {
        HistoryWrite::Keep => None,
        HistoryWrite::Set(h) => Some(Some(to_json(h))),
        #[cfg(test)]
        HistoryWrite::Clear => Some(None),
    };
    let history_fp = history_json.as_ref().map(|j| fingerprint(j.as_deref()));
    let write_alerts = known.map(|k| k.alerts) != Some(alerts_fp);
    let write_history = history_fp.is_some() && known.and_then(|k| k.history) != history_fp;
    let after = Written {
        alerts: alerts_fp,
        history: history_fp.or(known.and_then(|k| k.history)),
    };
    let history_text = history_json.flatten();
    let history_len = history_text.as_ref().map_or(0, String::len);
    if !write_alerts && !write_history {
        return Ok((after, None));
    }
    if !write_alerts {
        // This process wrote the row's alerts, so the row is there; should it not be
        // (nothing else writes it), the upsert below makes it.
        let n = tx
            .prepare_cached(UPDATE_HISTORY)?
            .execute(params![tenant, history_text, now.0])?;
        if n == 1 {
            return Ok((after, Some(history_len)));
        }
    }
    let (sql, history_text, history_len) = if write_history {
        (UPSERT_BOTH, history_text, history_len)
    } else {
        (UPSERT_ALERTS, None, 0)
    };
    tx.prepare_cached(sql)?
        .execute(params![tenant, history_text, alerts_json, now.0])?;
    Ok((after, Some(alerts_json.len() + history_len)))
}

/// Stores `History::first_recorded` when given and different from what was last written.
/// Returns the value to remember once the transaction commits.
fn write_first_recorded(
    tx: &Transaction<'_>,
    known: Option<Option<Timestamp>>,
    first_recorded: Option<Timestamp>,
) -> Result<Option<Option<Timestamp>>, StoreError> {
    let Some(t) = first_recorded else {
        return Ok(known);
    };
    if known != Some(Some(t)) {
        tx.prepare_cached(
            "INSERT INTO meta (id, first_recorded) VALUES (1, ?1)
             ON CONFLICT (id) DO UPDATE SET first_recorded = excluded.first_recorded",
        )?
        .execute(params![t.0])?;
    }
    Ok(Some(Some(t)))
}

/// The tenants with an episode or an incident in `state`, each once per entry.
fn alert_tenants(state: &AlertState) -> impl Iterator<Item = &str> {
    state
        .episodes
        .iter()
        .map(|e| e.finding.subject.tenant.as_str())
        .chain(state.incidents.iter().map(|i| i.group.tenant.as_str()))
}

/// The whole alert state from tenants' parts: both lists sorted by their keys, as
/// [`AlertState::with_tenant_part`] keeps them.
fn assemble(parts: impl IntoIterator<Item = AlertState>) -> AlertState {
    let mut state = AlertState::default();
    for part in parts {
        state.episodes.extend(part.episodes);
        state.incidents.extend(part.incidents);
    }
    state.episodes.sort_by(|a, b| {
        (a.finding.code, &a.finding.subject).cmp(&(b.finding.code, &b.finding.subject))
    });
    state.incidents.sort_by(|a, b| a.group.cmp(&b.group));
    state
}

/// Moves the first schema's single rows (`alert_state`, `history`), if they hold data, into
/// per-tenant rows (split with [`History::tenants`] and [`AlertState::tenant_part`]) and
/// empties them; part of the migration's transaction, so it happens once, wholly or not.
pub(super) fn move_single_rows(tx: &Transaction<'_>) -> Result<(), StoreError> {
    let old = |sql| {
        tx.query_row(sql, [], |r| {
            Ok((r.get::<_, String>(0)?, r.get::<_, i64>(1)?))
        })
        .optional()
    };
    let old_alerts = old("SELECT state, updated_at FROM alert_state WHERE id = 1")?;
    let old_history = old("SELECT history, updated_at FROM history WHERE id = 1")?;
    if old_alerts.is_none() && old_history.is_none() {
        return Ok(());
    }
    let updated_at = old_alerts.iter().chain(&old_history).map(|(_, t)| *t).max();
    let alerts: AlertState = match &old_alerts {
        Some((json, _)) => from_json("alert state", json)?,
        None => AlertState::default(),
    };
    let history: History = match &old_history {
        Some((json, _)) => from_json("history", json)?,
        None => History::default(),
    };
    let tenants: BTreeSet<&str> = history
        .tenants()
        .map(|(t, _)| t)
        .chain(alert_tenants(&alerts))
        .collect();
    for tenant in tenants {
        tx.prepare_cached(UPSERT_BOTH)?.execute(params![
            tenant,
            history.tenant(tenant).map(to_json),
            to_json(&alerts.tenant_part(tenant)),
            updated_at.unwrap_or(0)
        ])?;
    }
    write_first_recorded(tx, None, history.first_recorded())?;
    tx.execute("DELETE FROM alert_state", [])?;
    tx.execute("DELETE FROM history", [])?;
    Ok(())
}

impl Store {
    /// Commits one tenant's judgement in one transaction, at `now`: its alert part, its
    /// history when given, `first_recorded` when given, the record of a completed full
    /// round, and one outbox row per `(channel, notification)` (due at once; a row already
    /// there is left alone). Also drops dead letters that died before
    /// `forget_dead_before`. Returns the number of rows queued.
    ///
    /// Writes only the tenant's own row, and of it only what changed since this process
    /// last wrote it; the outbox statements search indexes. So the cost is the tenant's
    /// size, whatever the number of tenants stored.
    ///
    /// Either all of it is stored or none: a notification is never queued without the
    /// state that produced it, nor the state advanced without its notifications.
    pub fn commit_tenant(
        &mut self,
        now: Timestamp,
        c: &TenantCommit<'_>,
        forget_dead_before: Timestamp,
    ) -> Result<usize, StoreError> {
        debug_assert!(
            alert_tenants(c.alerts).all(|t| t == c.tenant),
            "the alert part of {} holds another tenant's entries",
            c.tenant
        );
        let tx = self.conn.transaction()?;
        let history = c.history.map_or(HistoryWrite::Keep, HistoryWrite::Set);
        let known = self.written.get(c.tenant).copied();
        let (after, bytes) = write_row(&tx, now, c.tenant, known, c.alerts, history)?;
        let first = write_first_recorded(&tx, self.first_recorded_written, c.first_recorded)?;
        if let Some(round) = &c.round {
            write_round(&tx, round)?;
        }
        let queued = queue_outbox(&tx, now, c.outbox)?;
        forget_dead(&tx, forget_dead_before)?;
        tx.commit()?;
        self.written.insert(c.tenant.to_owned(), after);
        self.first_recorded_written = first;
        self.count_write(bytes);
        Ok(queued)
    }

    /// Deletes `tenant`'s row (the tenant is gone from the config and its incidents are
    /// resolved). Nothing else is touched: its outbox rows are still delivered.
    pub fn remove_tenant(&mut self, tenant: &str) -> Result<(), StoreError> {
        self.conn.execute(
            "DELETE FROM tenant_state WHERE tenant = ?1",
            params![tenant],
        )?;
        self.written.remove(tenant);
        Ok(())
    }

    /// Commits the whole alert state (and, when given, the whole history) with a round's
    /// or a tick's outbox rows, as [`Store::commit_tenant`] does for one tenant: every
    /// tenant stored or present is brought to its part of `alert_state` (and of `history`;
    /// a tenant with neither an alert part nor, in a given history, a history loses its
    /// row). Only changed columns are written, but every tenant's part is serialised: the
    /// cost is the fleet's size, so only tests use it, to set a whole state up in one go;
    /// the daemon commits tenant by tenant with [`Store::commit_tenant`].
    #[cfg(test)]
    pub(crate) fn commit_round(
        &mut self,
        now: Timestamp,
        round: Option<RoundRecord>,
        alert_state: &AlertState,
        history: Option<&History>,
        outbox: &[(String, Notification)],
        forget_dead_before: Timestamp,
    ) -> Result<usize, StoreError> {
        let tx = self.conn.transaction()?;
        let stored: Vec<String> = tx
            .prepare_cached("SELECT tenant FROM tenant_state")?
            .query_map([], |r| r.get(0))?
            .collect::<Result<_, _>>()?;
        let mut parts = alert_state.clone().by_tenant();
        let mut tenants: BTreeSet<&str> = stored.iter().map(String::as_str).collect();
        let part_names: Vec<String> = parts.keys().cloned().collect();
        tenants.extend(part_names.iter().map(String::as_str));
        if let Some(h) = history {
            tenants.extend(h.tenants().map(|(t, _)| t));
        }
        let mut after = Vec::with_capacity(tenants.len());
        let mut bytes = Vec::new();
        for tenant in tenants {
            let part = parts.remove(tenant).unwrap_or_default();
            let write = match history {
                None => HistoryWrite::Keep,
                Some(h) => h
                    .tenant(tenant)
                    .map_or(HistoryWrite::Clear, HistoryWrite::Set),
            };
            if part == AlertState::default() && matches!(write, HistoryWrite::Clear) {
                tx.prepare_cached("DELETE FROM tenant_state WHERE tenant = ?1")?
                    .execute(params![tenant])?;
                after.push((tenant, None));
                continue;
            }
            let known = self.written.get(tenant).copied();
            let (written, b) = write_row(&tx, now, tenant, known, &part, write)?;
            after.push((tenant, Some(written)));
            bytes.push(b);
        }
        let first = write_first_recorded(
            &tx,
            self.first_recorded_written,
            history.and_then(History::first_recorded),
        )?;
        if let Some(round) = &round {
            write_round(&tx, round)?;
        }
        let queued = queue_outbox(&tx, now, outbox)?;
        forget_dead(&tx, forget_dead_before)?;
        tx.commit()?;
        for (tenant, written) in after {
            match written {
                Some(w) => self.written.insert(tenant.to_owned(), w),
                None => self.written.remove(tenant),
            };
        }
        self.first_recorded_written = first;
        for b in bytes {
            self.count_write(b);
        }
        Ok(queued)
    }

    fn count_write(&mut self, bytes: Option<usize>) {
        if let Some(b) = bytes {
            self.tenant_writes.0 += 1;
            self.tenant_writes.1 += b as u64;
        }
    }

    /// `tenant_state` rows written by this process so far, and the bytes of JSON in them
    /// (tests and diagnostics: a tenant's commit adds one row at most, and its own bytes).
    pub fn tenant_rows_written(&self) -> (u64, u64) {
        self.tenant_writes
    }

    /// The whole alert state and history, assembled from the tenants' rows.
    pub(super) fn load_tenants(&self) -> Result<(AlertState, History), StoreError> {
        let first_recorded: Option<i64> = self
            .conn
            .query_row("SELECT first_recorded FROM meta WHERE id = 1", [], |r| {
                r.get(0)
            })
            .optional()?
            .flatten();
        let mut stmt = self
            .conn
            .prepare("SELECT tenant, alerts, history FROM tenant_state ORDER BY tenant")?;
        let rows = stmt.query_map([], |r| {
            Ok((
                r.get::<_, String>(0)?,
                r.get::<_, String>(1)?,
                r.get::<_, Option<String>>(2)?,
            ))
        })?;
        let mut parts = Vec::new();
        let mut histories = Vec::new();
        for row in rows {
            let (tenant, alerts, history) = row?;
            parts.push(from_json::<AlertState>("alert state", &alerts)?);
            if let Some(h) = history {
                histories.push((tenant, from_json::<TenantHistory>("history", &h)?));
            }
        }
        let history = History::from_tenants(first_recorded.map(Timestamp), histories);
        Ok((assemble(parts), history))
    }

    /// The whole alert state, assembled from the tenants' rows (histories are not read).
    pub(super) fn alert_state(&self) -> Result<AlertState, StoreError> {
        let mut stmt = self.conn.prepare("SELECT alerts FROM tenant_state")?;
        let texts = stmt
            .query_map([], |r| r.get::<_, String>(0))?
            .collect::<Result<Vec<_>, _>>()?;
        let parts = texts
            .iter()
            .map(|t| from_json::<AlertState>("alert state", t))
            .collect::<Result<Vec<_>, _>>()?;
        Ok(assemble(parts))
    }
}

#[cfg(test)]
mod tests;
