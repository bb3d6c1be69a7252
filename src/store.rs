//! Durable state: one SQLite file (`state.db`) in the configured `state_dir`, plus a lock
//! file so that two daemons never share it.
//!
//! What is kept (see [`MIGRATIONS`] for the schema):
//! - `tenant_state`: one row per tenant: its part of the alert state machine's
//!   [`AlertState`] and its [`TenantHistory`](crate::detect::history::TenantHistory), as
//!   JSON (the history pruned by the daemon to `retention` before it is written). A tenant's round writes only its own row, and only
//!   the columns whose JSON changed ([`Store::commit_tenant`], in `tenants.rs`), so a round
//!   costs the size of its tenant, not of the fleet;
//! - `meta`: [`History::first_recorded`];
//! - `last_round`: number and times of the latest full round, every tenant probed once
//!   (for `keycanary status`);
//! - `silences`: silences made through the API (`/v1/silences`), read by the daemon each round;
//! - `outbox`: one row per notification × channel, written in the **same transaction** as
//!   the alert state that produced it, deleted only once the receiver accepted it. A row
//!   whose send failed permanently stays as a *dead letter* (`dead_at` set) until it is
//!   older than `retention`.
//!
//! The first schema kept the whole alert state and the whole history as one row each
//! (`alert_state`, `history`); opening such a database moves them into per-tenant rows,
//! once, in the migration's transaction, and leaves those tables empty.
//!
//! Durability: WAL journal with `synchronous = FULL`. NORMAL would survive a process
//! crash (`kill -9`) but may lose the last commits on power loss; FULL makes "queued"
//! mean "queued" even then, and at one transaction per round plus one per delivery the
//! extra fsync costs nothing measurable.
//!
//! This is the only module that talks SQL. It does no I/O besides the database file and
//! the lock, reads no clock (callers pass times) and sends nothing.

use crate::alert::{AlertState, Notification, Silence};
use crate::detect::history::History;
use crate::model::Timestamp;
use rusqlite::{Connection, OpenFlags, OptionalExtension, Transaction, params};
use std::collections::HashMap;
use std::fs::File;
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex};

/// The database file inside `state_dir`.
pub const DB_FILE: &str = "state.db";
/// Held (an exclusive `flock`) by the daemon that owns `state_dir`.
pub const LOCK_FILE: &str = "keycanary.lock";

/// Schema migrations, applied in order; `PRAGMA user_version` is the number applied.
/// Only ever append: a released migration is never edited.
///
/// Hand-rolled rather than `rusqlite_migration`: its 2.x releases pin an older rusqlite
/// (0.40), which cannot link beside the 0.43 we use; the whole mechanism is
/// [`Store::migrate`], a dozen lines.
pub const MIGRATIONS: &[&str] = &[
    // 1: the first schema.
    "CREATE TABLE alert_state (
        id         INTEGER PRIMARY KEY CHECK (id = 1),
        state      TEXT NOT NULL,            -- alert::AlertState as JSON
        updated_at INTEGER NOT NULL          -- ms since the epoch, the round's time
    );
    CREATE TABLE history (
        id         INTEGER PRIMARY KEY CHECK (id = 1),
        history    TEXT NOT NULL,            -- detect::History as JSON
        updated_at INTEGER NOT NULL
    );
    CREATE TABLE last_round (
        id          INTEGER PRIMARY KEY CHECK (id = 1),
        number      INTEGER NOT NULL,        -- rounds committed since the state was created
        started_at  INTEGER NOT NULL,
        finished_at INTEGER NOT NULL
    );
    CREATE TABLE silences (
        id         TEXT PRIMARY KEY,
        silence    TEXT NOT NULL,            -- alert::Silence as JSON
        created_at INTEGER NOT NULL,
        ends_at    INTEGER NOT NULL
    );
    CREATE TABLE outbox (
        id              TEXT PRIMARY KEY,    -- <notification id>@<channel>
        seq             INTEGER NOT NULL,    -- queue order among the rows present
        channel         TEXT NOT NULL,
        dedup_key       TEXT NOT NULL,       -- the incident: rows of one incident and channel go in seq order
        payload         TEXT NOT NULL,       -- alert::Notification as JSON
        created_at      INTEGER NOT NULL,
        attempts        INTEGER NOT NULL DEFAULT 0,
        next_attempt_at INTEGER NOT NULL,
        last_error      TEXT,
        dead_at         INTEGER              -- set: a dead letter, never attempted again
    );
    CREATE INDEX outbox_due ON outbox (next_attempt_at) WHERE dead_at IS NULL;
    CREATE INDEX outbox_chain ON outbox (channel, dedup_key, seq);",
    // 2: one row per tenant, so that a tenant's round writes only its own state; indexes
    // for the two outbox statements every commit runs (the next `seq`, forgetting dead
    // letters), so a commit never scans the outbox. `alert_state` and `history` are left
    // empty (their rows move into `tenant_state` when the database is opened).
    "CREATE TABLE tenant_state (
        tenant     TEXT PRIMARY KEY,
        history    TEXT,                     -- detect::history::TenantHistory as JSON; NULL: none
        alerts     TEXT NOT NULL,            -- the tenant's part of alert::AlertState as JSON
        updated_at INTEGER NOT NULL          -- ms since the epoch, the last write's time
    );
    CREATE TABLE meta (
        id             INTEGER PRIMARY KEY CHECK (id = 1),
        first_recorded INTEGER               -- detect::History::first_recorded, ms
    );
    CREATE INDEX outbox_seq ON outbox (seq);
    CREATE INDEX outbox_dead ON outbox (dead_at) WHERE dead_at IS NOT NULL;",
];

#[derive(Debug, thiserror::Error)]
pub enum StoreError {
    #[error("cannot create the state directory {}: {source}: create it or set `state_dir`", path.display())]
    CreateDir {
        path: PathBuf,
        source: std::io::Error,
    },
    #[error("another keycanary is using the state directory {}: stop it, or give this one its own `state_dir`", path.display())]
    Locked { path: PathBuf },
    #[error("cannot lock {}: {source}", path.display())]
    Lock {
        path: PathBuf,
        source: std::io::Error,
    },
    #[error("no state in {}: `keycanary run` has not run with this `state_dir` yet", path.display())]
    Missing { path: PathBuf },
    #[error("cannot open the state database {}: {source}", path.display())]
    Open {
        path: PathBuf,
        source: rusqlite::Error,
    },
    #[error("the state database {} has schema version {found}, newer than this keycanary knows ({known}): run the newer keycanary, or point `state_dir` elsewhere", path.display())]
    TooNew {
        path: PathBuf,
        found: usize,
        known: usize,
    },
    #[error("state database: {0}")]
    Sql(#[from] rusqlite::Error),
    #[error("the state database holds an unreadable {what}: {source}")]
    Json {
        what: &'static str,
        source: serde_json::Error,
    },
}

/// Exclusive ownership of a state directory, released when dropped (or when the process
/// dies, however it dies: it is an OS file lock).
#[derive(Debug)]
pub struct StateLock {
    _file: File,
}

impl StateLock {
    /// Creates `dir` if needed and takes its lock, or fails at once if another process
    /// holds it.
    pub fn acquire(dir: &Path) -> Result<StateLock, StoreError> {
        std::fs::create_dir_all(dir).map_err(|source| StoreError::CreateDir {
            path: dir.to_owned(),
            source,
        })?;
        let path = dir.join(LOCK_FILE);
        let file = File::options()
            .create(true)
            .truncate(false)
            .write(true)
            .open(&path)
            .map_err(|source| StoreError::Lock {
                path: path.clone(),
                source,
            })?;
        match file.try_lock() {
            Ok(()) => Ok(StateLock { _file: file }),
            Err(std::fs::TryLockError::WouldBlock) => Err(StoreError::Locked {
                path: dir.to_owned(),
            }),
            Err(std::fs::TryLockError::Error(source)) => Err(StoreError::Lock { path, source }),
        }
    }
}

/// The latest round as committed.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct RoundRecord {
    pub number: u64,
    pub started_at: Timestamp,
    pub finished_at: Timestamp,
}

/// What a daemon resumes from.
#[derive(Debug, Clone, Default)]
pub struct Persisted {
    pub alert_state: AlertState,
    pub history: History,
    pub last_round: Option<RoundRecord>,
}

/// One row of the outbox.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct OutboxRow {
    /// `<notification id>@<channel>`.
    pub id: String,
    pub channel: String,
    pub dedup_key: String,
    /// The notification as JSON; [`OutboxRow::notification`] parses it.
    pub payload: String,
    pub created_at: Timestamp,
    /// Sends tried so far.
    pub attempts: u32,
    pub next_attempt_at: Timestamp,
    pub last_error: Option<String>,
    pub dead_at: Option<Timestamp>,
}

impl OutboxRow {
    pub fn notification(&self) -> Result<Notification, StoreError> {
        serde_json::from_str(&self.payload).map_err(|source| StoreError::Json {
            what: "outbox payload",
            source,
        })
    }
}

/// The outbox id of `notification_id` on `channel`.
pub fn outbox_id(notification_id: &str, channel: &str) -> String {
    format!("{notification_id}@{channel}")
}

/// What `keycanary status` shows.
#[derive(Debug, Clone, Default)]
pub struct StatusReport {
    pub last_round: Option<RoundRecord>,
    pub alert_state: AlertState,
    /// Rows waiting to be sent (not dead).
    pub pending: u64,
    /// Of those, rows that failed at least once.
    pub retrying: u64,
    pub oldest_pending: Option<Timestamp>,
    /// Dead letters, oldest first.
    pub dead: Vec<OutboxRow>,
}

/// An open state database. Synchronous: async callers go through [`SharedStore`] and
/// [`blocking`].
#[derive(Debug)]
pub struct Store {
    conn: Connection,
    /// Per tenant, what this process last wrote to its row (see `tenants.rs`).
    written: HashMap<String, tenants::Written>,
    /// `meta.first_recorded` as this process last wrote it.
    first_recorded_written: Option<Option<Timestamp>>,
    /// `tenant_state` writes so far: (rows, bytes of JSON) (tests and diagnostics).
    tenant_writes: (u64, u64),
}

/// The store shared by the daemon's tasks.
pub type SharedStore = Arc<Mutex<Store>>;

/// Runs `f` on the store on tokio's blocking pool (SQLite calls block on disk).
pub async fn blocking<T, F>(store: &SharedStore, f: F) -> T
where
    F: FnOnce(&mut Store) -> T + Send + 'static,
    T: Send + 'static,
{
    let store = store.clone();
    let call = tokio::task::spawn_blocking(move || {
        let mut guard = store.lock().unwrap_or_else(|e| e.into_inner());
        f(&mut guard)
    });
    match call.await {
        Ok(v) => v,
        Err(e) if e.is_panic() => std::panic::resume_unwind(e.into_panic()),
        // Cancelled: the runtime is shutting down, and the caller's task goes with it.
        Err(_) => std::future::pending().await,
    }
}

/// A live row `o` with no earlier live row of the same channel and incident.
const CHAIN_HEAD: &str = "o.dead_at IS NULL
    AND NOT EXISTS (SELECT 1 FROM outbox p
                    WHERE p.channel = o.channel AND p.dedup_key = o.dedup_key
                      AND p.dead_at IS NULL AND p.seq < o.seq)";

const ROW_COLUMNS: &str =
    "id, channel, dedup_key, payload, created_at, attempts, next_attempt_at, last_error, dead_at";

fn row(r: &rusqlite::Row<'_>) -> rusqlite::Result<OutboxRow> {
    Ok(OutboxRow {
        id: r.get(0)?,
        channel: r.get(1)?,
        dedup_key: r.get(2)?,
        payload: r.get(3)?,
        created_at: Timestamp(r.get(4)?),
        attempts: r.get(5)?,
        next_attempt_at: Timestamp(r.get(6)?),
        last_error: r.get(7)?,
        dead_at: r.get::<_, Option<i64>>(8)?.map(Timestamp),
    })
}

fn schema_version(conn: &Connection) -> rusqlite::Result<usize> {
    let v: i64 = conn.query_row("PRAGMA user_version", [], |r| r.get(0))?;
    Ok(usize::try_from(v).unwrap_or(usize::MAX))
}

fn to_json<T: serde::Serialize>(value: &T) -> String {
    serde_json::to_string(value).expect("plain data serialises")
}

fn from_json<T: serde::de::DeserializeOwned>(
    what: &'static str,
    text: &str,
) -> Result<T, StoreError> {
    serde_json::from_str(text).map_err(|source| StoreError::Json { what, source })
}

impl Store {
    /// Opens (creating if needed) `dir/state.db` for the daemon: WAL, `synchronous=FULL`,
    /// migrations applied. Take the [`StateLock`] first.
    pub fn open(dir: &Path) -> Result<Store, StoreError> {
        std::fs::create_dir_all(dir).map_err(|source| StoreError::CreateDir {
            path: dir.to_owned(),
            source,
        })?;
        let path = dir.join(DB_FILE);
        let open_err = |source| StoreError::Open {
            path: path.clone(),
            source,
        };
        let mut conn = Connection::open(&path).map_err(open_err)?;
        conn.busy_timeout(std::time::Duration::from_secs(5))
            .map_err(open_err)?;
        let mode: String = conn
            .query_row("PRAGMA journal_mode = WAL", [], |r| r.get(0))
            .map_err(open_err)?;
        debug_assert_eq!(mode.to_ascii_lowercase(), "wal");
        conn.pragma_update(None, "synchronous", "FULL")
            .map_err(open_err)?;
        Store::migrate(&mut conn, &path)?;
        Ok(Store::new(conn))
    }

    /// Opens an existing state database read-only (for `keycanary status`, while a daemon
    /// may be running).
    pub fn open_read_only(dir: &Path) -> Result<Store, StoreError> {
        let path = dir.join(DB_FILE);
        if !path.is_file() {
            return Err(StoreError::Missing {
                path: dir.to_owned(),
            });
        }
        let conn = Connection::open_with_flags(
            &path,
            OpenFlags::SQLITE_OPEN_READ_ONLY | OpenFlags::SQLITE_OPEN_NO_MUTEX,
        )
        .map_err(|source| StoreError::Open {
            path: path.clone(),
            source,
        })?;
        conn.busy_timeout(std::time::Duration::from_secs(5))?;
        let version = schema_version(&conn)?;
        if version > MIGRATIONS.len() {
            return Err(StoreError::TooNew {
                path,
                found: version,
                known: MIGRATIONS.len(),
            });
        }
        if version < MIGRATIONS.len() {
            // Written by an older keycanary: the next `run` migrates it.
            return Err(StoreError::Missing {
                path: dir.to_owned(),
            });
        }
        Ok(Store::new(conn))
    }

    fn new(conn: Connection) -> Store {
        Store {
            conn,
            written: HashMap::new(),
            first_recorded_written: None,
            tenant_writes: (0, 0),
        }
    }

    fn migrate(conn: &mut Connection, path: &Path) -> Result<(), StoreError> {
        // IMMEDIATE: the daemon and the API may open the database at the same moment; the
        // second waits for the first's migration instead of failing on a stale snapshot.
        let tx = conn.transaction_with_behavior(rusqlite::TransactionBehavior::Immediate)?;
        let version = schema_version(&tx)?;
        if version > MIGRATIONS.len() {
            return Err(StoreError::TooNew {
                path: path.to_owned(),
                found: version,
                known: MIGRATIONS.len(),
            });
        }
        for sql in &MIGRATIONS[version..] {
            tx.execute_batch(sql)?;
        }
        tx.pragma_update(None, "user_version", MIGRATIONS.len() as i64)?;
        tenants::move_single_rows(&tx)?;
        tx.commit()?;
        Ok(())
    }

    /// What the previous run left: alert state, history, latest round, assembled from the
    /// tenants' rows. Defaults when new.
    pub fn load(&self) -> Result<Persisted, StoreError> {
        let (alert_state, history) = self.load_tenants()?;
        Ok(Persisted {
            alert_state,
            history,
            last_round: self.last_round()?,
        })
    }

    fn last_round(&self) -> Result<Option<RoundRecord>, StoreError> {
        Ok(self
            .conn
            .query_row(
                "SELECT number, started_at, finished_at FROM last_round WHERE id = 1",
                [],
                |r| {
                    Ok(RoundRecord {
                        number: r.get::<_, i64>(0)?.max(0) as u64,
                        started_at: Timestamp(r.get(1)?),
                        finished_at: Timestamp(r.get(2)?),
                    })
                },
            )
            .optional()?)
    }

    /// Rows due at `now`, oldest first, at most `limit`. A row is held back while an
    /// earlier live row of the same incident and channel waits, so a receiver never gets
    /// "resolved" before the "firing" it resolves.
    pub fn due(&self, now: Timestamp, limit: usize) -> Result<Vec<OutboxRow>, StoreError> {
        let mut stmt = self.conn.prepare_cached(&format!(
            "SELECT {ROW_COLUMNS} FROM outbox o
             WHERE {CHAIN_HEAD} AND o.next_attempt_at <= ?1
             ORDER BY o.seq LIMIT ?2"
        ))?;
        let rows = stmt
            .query_map(params![now.0, limit as i64], row)?
            .collect::<Result<Vec<_>, _>>()?;
        Ok(rows)
    }

    /// When the earliest row [`Store::due`] would return is due (`None`: nothing to
    /// send). Rows held back behind an earlier one of their chain do not count.
    pub fn next_due(&self) -> Result<Option<Timestamp>, StoreError> {
        Ok(self
            .conn
            .query_row(
                &format!("SELECT MIN(o.next_attempt_at) FROM outbox o WHERE {CHAIN_HEAD}"),
                [],
                |r| r.get::<_, Option<i64>>(0),
            )?
            .map(Timestamp))
    }

    /// Makes every live row due at `now` (a restart retries at once rather than waiting
    /// out the backoff of the process that died).
    pub fn retry_all_now(&mut self, now: Timestamp) -> Result<usize, StoreError> {
        Ok(self.conn.execute(
            "UPDATE outbox SET next_attempt_at = ?1 WHERE dead_at IS NULL AND next_attempt_at > ?1",
            params![now.0],
        )?)
    }

    /// The receiver accepted it: the row goes.
    pub fn delivered(&mut self, id: &str) -> Result<(), StoreError> {
        self.conn
            .execute("DELETE FROM outbox WHERE id = ?1", params![id])?;
        Ok(())
    }

    /// A retryable failure: count it, keep the error, try again at `next_attempt_at`.
    pub fn retry_later(
        &mut self,
        id: &str,
        error: &str,
        next_attempt_at: Timestamp,
    ) -> Result<(), StoreError> {
        self.conn.execute(
            "UPDATE outbox SET attempts = attempts + 1, last_error = ?2, next_attempt_at = ?3
             WHERE id = ?1",
            params![id, error, next_attempt_at.0],
        )?;
        Ok(())
    }

    /// A permanent failure: the row becomes a dead letter (kept, never attempted again).
    pub fn dead_letter(&mut self, id: &str, error: &str, now: Timestamp) -> Result<(), StoreError> {
        self.conn.execute(
            "UPDATE outbox SET attempts = attempts + 1, last_error = ?2, dead_at = ?3 WHERE id = ?1",
            params![id, error, now.0],
        )?;
        Ok(())
    }

    /// Rows waiting to be sent (not dead) and dead letters (for `/metrics`).
    pub fn outbox_counts(&self) -> Result<(u64, u64), StoreError> {
        let (pending, dead): (i64, i64) = self.conn.query_row(
            "SELECT COALESCE(SUM(dead_at IS NULL), 0), COALESCE(SUM(dead_at IS NOT NULL), 0)
             FROM outbox",
            [],
            |r| Ok((r.get(0)?, r.get(1)?)),
        )?;
        Ok((pending.max(0) as u64, dead.max(0) as u64))
    }

    /// Refuses every write from now on (`true`), as a full disk or a read-only state
    /// directory would, or allows them again: for tests of what the writers do then.
    #[cfg(test)]
    pub fn refuse_writes(&self, refuse: bool) -> Result<(), StoreError> {
        self.conn.pragma_update(None, "query_only", refuse)?;
        Ok(())
    }

    /// Every outbox row, dead or alive, in queue order (tests and diagnostics).
    pub fn outbox(&self) -> Result<Vec<OutboxRow>, StoreError> {
        let mut stmt = self
            .conn
            .prepare(&format!("SELECT {ROW_COLUMNS} FROM outbox ORDER BY seq"))?;
        let rows = stmt.query_map([], row)?.collect::<Result<Vec<_>, _>>()?;
        Ok(rows)
    }

    /// Silences made through the API that have not ended by `now`.
    /// A row that does not read back as a silence is skipped and logged, never an error:
    /// one bad row must not stop the daemon's rounds or `GET /v1/silences`.
    pub fn silences(&self, now: Timestamp) -> Result<Vec<Silence>, StoreError> {
        let mut stmt = self
            .conn
            .prepare_cached("SELECT id, silence FROM silences WHERE ends_at > ?1 ORDER BY id")?;
        let rows = stmt
            .query_map(params![now.0], |r| {
                Ok((r.get::<_, String>(0)?, r.get::<_, String>(1)?))
            })?
            .collect::<Result<Vec<_>, _>>()?;
        let mut out = Vec::with_capacity(rows.len());
        for (id, text) in rows {
            match from_json::<Silence>("silence", &text) {
                Ok(s) => out.push(s),
                Err(e) => tracing::warn!(
                    silence = %crate::model::wire::text(&id, 64),
                    error = %e,
                    "a stored silence does not read back and is skipped: delete it with DELETE /v1/silences/<id>"
                ),
            }
        }
        Ok(out)
    }

    /// Adds or replaces a silence (by id).
    pub fn put_silence(&mut self, silence: &Silence, now: Timestamp) -> Result<(), StoreError> {
        self.conn.execute(
            "INSERT INTO silences (id, silence, created_at, ends_at) VALUES (?1, ?2, ?3, ?4)
             ON CONFLICT (id) DO UPDATE SET silence = excluded.silence, ends_at = excluded.ends_at",
            params![silence.id, to_json(silence), now.0, silence.ends.0],
        )?;
        Ok(())
    }

    /// Removes the silence `id`; false when there was none.
    pub fn delete_silence(&mut self, id: &str) -> Result<bool, StoreError> {
        let n = self
            .conn
            .execute("DELETE FROM silences WHERE id = ?1", params![id])?;
        Ok(n > 0)
    }

    /// Everything `keycanary status` reports.
    pub fn status(&self) -> Result<StatusReport, StoreError> {
        let alert_state = self.alert_state()?;
        let (pending, retrying, oldest): (i64, i64, Option<i64>) = self.conn.query_row(
            "SELECT COUNT(*), COALESCE(SUM(attempts > 0), 0), MIN(created_at)
             FROM outbox WHERE dead_at IS NULL",
            [],
            |r| Ok((r.get(0)?, r.get(1)?, r.get(2)?)),
        )?;
        let mut stmt = self.conn.prepare(&format!(
            "SELECT {ROW_COLUMNS} FROM outbox WHERE dead_at IS NOT NULL ORDER BY dead_at, seq"
        ))?;
        let dead = stmt.query_map([], row)?.collect::<Result<Vec<_>, _>>()?;
        Ok(StatusReport {
            last_round: self.last_round()?,
            alert_state,
            pending: pending.max(0) as u64,
            retrying: retrying.max(0) as u64,
            oldest_pending: oldest.map(Timestamp),
            dead,
        })
    }
}

/// Records a completed full round.
fn write_round(tx: &Transaction<'_>, round: &RoundRecord) -> Result<(), StoreError> {
    tx.execute(
        "INSERT INTO last_round (id, number, started_at, finished_at) VALUES (1, ?1, ?2, ?3)
         ON CONFLICT (id) DO UPDATE SET number = excluded.number,
             started_at = excluded.started_at, finished_at = excluded.finished_at",
        params![round.number as i64, round.started_at.0, round.finished_at.0],
    )?;
    Ok(())
}

/// Queues one outbox row per `(channel, notification)`, due at `now`, after every row
/// present (a row already there is left alone); the number queued. The next `seq` is read
/// through the `outbox_seq` index, not by scanning the outbox.
fn queue_outbox(
    tx: &Transaction<'_>,
    now: Timestamp,
    outbox: &[(String, Notification)],
) -> Result<usize, StoreError> {
    if outbox.is_empty() {
        return Ok(0);
    }
    let mut next_seq: i64 = tx.query_row(NEXT_SEQ, [], |r| r.get(0))?;
    let mut insert = tx.prepare_cached(
        "INSERT INTO outbox (id, seq, channel, dedup_key, payload, created_at, next_attempt_at)
         VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?6)
         ON CONFLICT (id) DO NOTHING",
    )?;
    let mut queued = 0;
    for (channel, n) in outbox {
        let added = insert.execute(params![
            outbox_id(&n.id, channel),
            next_seq,
            channel,
            n.dedup_key,
            to_json(n),
            now.0
        ])?;
        queued += added;
        next_seq += added as i64;
    }
    Ok(queued)
}

/// The `seq` after every outbox row's (an index search: `outbox_seq`).
const NEXT_SEQ: &str = "SELECT COALESCE(MAX(seq), 0) + 1 FROM outbox";
/// Forgets dead letters that died before `?1` (an index search: `outbox_dead`).
const FORGET_DEAD: &str = "DELETE FROM outbox WHERE dead_at IS NOT NULL AND dead_at < ?1";

fn forget_dead(tx: &Transaction<'_>, before: Timestamp) -> Result<(), StoreError> {
    tx.prepare_cached(FORGET_DEAD)?.execute(params![before.0])?;
    Ok(())
}

mod tenants;
pub use tenants::TenantCommit;

#[cfg(test)]
mod tests;
