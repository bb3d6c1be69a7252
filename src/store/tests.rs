use super::*;
use crate::alert::state::fixtures;
use crate::alert::state::{GroupKey, Incident};

fn round(n: u64, at: i64) -> RoundRecord {
    RoundRecord {
        number: n,
        started_at: Timestamp(at - 100),
        finished_at: Timestamp(at),
    }
}

fn state_with_incident(dedup_key: &str) -> AlertState {
    AlertState {
        episodes: Vec::new(),
        incidents: vec![Incident {
            group: GroupKey {
                tenant: "acme".into(),
                code: None,
            },
            dedup_key: dedup_key.into(),
            since: Timestamp(1),
            fired_at: Timestamp(2),
            sent: None,
            members: Vec::new(),
        }],
    }
}

/// A notification of incident `dedup` with the given id.
fn n(dedup: &str, id: &str) -> Notification {
    Notification {
        id: id.into(),
        dedup_key: dedup.into(),
        ..fixtures::firing()
    }
}

fn queue(store: &mut Store, at: i64, items: &[(&str, Notification)]) -> usize {
    let items: Vec<(String, Notification)> = items
        .iter()
        .map(|(c, n)| (c.to_string(), n.clone()))
        .collect();
    store
        .commit_round(
            Timestamp(at),
            Some(round(1, at)),
            &AlertState::default(),
            None,
            &items,
            Timestamp(0),
        )
        .unwrap()
}

fn due_ids(store: &Store, now: i64) -> Vec<String> {
    store
        .due(Timestamp(now), 100)
        .unwrap()
        .into_iter()
        .map(|r| r.id)
        .collect()
}

#[test]
fn opens_migrates_and_reopens() {
    let dir = tempfile::tempdir().unwrap();
    let state_dir = dir.path().join("nested/state");
    let store = Store::open(&state_dir).unwrap();
    let version = schema_version(&store.conn).unwrap();
    assert_eq!(version, MIGRATIONS.len());
    let mode: String = store
        .conn
        .query_row("PRAGMA journal_mode", [], |r| r.get(0))
        .unwrap();
    assert_eq!(mode, "wal");
    let sync: i64 = store
        .conn
        .query_row("PRAGMA synchronous", [], |r| r.get(0))
        .unwrap();
    assert_eq!(sync, 2, "synchronous = FULL");
    drop(store);
    // Reopening applies nothing twice and finds an empty state.
    let store = Store::open(&state_dir).unwrap();
    let p = store.load().unwrap();
    assert_eq!(p.alert_state, AlertState::default());
    assert!(p.last_round.is_none());
}

#[test]
fn a_newer_schema_is_refused() {
    let dir = tempfile::tempdir().unwrap();
    let store = Store::open(dir.path()).unwrap();
    store
        .conn
        .pragma_update(None, "user_version", MIGRATIONS.len() as i64 + 1)
        .unwrap();
    drop(store);
    let err = Store::open(dir.path()).unwrap_err();
    assert!(matches!(err, StoreError::TooNew { .. }), "{err}");
    assert!(err.to_string().contains("newer"), "{err}");
    let err = Store::open_read_only(dir.path()).unwrap_err();
    assert!(matches!(err, StoreError::TooNew { .. }), "{err}");
}

#[test]
fn one_daemon_per_state_dir() {
    let dir = tempfile::tempdir().unwrap();
    let lock = StateLock::acquire(dir.path()).unwrap();
    let err = StateLock::acquire(dir.path()).unwrap_err();
    assert!(matches!(err, StoreError::Locked { .. }), "{err}");
    assert!(err.to_string().contains("another keycanary"), "{err}");
    drop(lock);
    StateLock::acquire(dir.path()).unwrap();
}

#[test]
fn a_round_commits_state_history_and_outbox_together() {
    let dir = tempfile::tempdir().unwrap();
    let mut store = Store::open(dir.path()).unwrap();
    let state = state_with_incident("acme/2");
    let history = History::default();
    let queued = store
        .commit_round(
            Timestamp(5_000),
            Some(round(7, 5_000)),
            &state,
            Some(&history),
            &[
                ("mail".into(), n("acme/2", "acme/2/firing/5000")),
                ("hook".into(), n("acme/2", "acme/2/firing/5000")),
            ],
            Timestamp(0),
        )
        .unwrap();
    assert_eq!(queued, 2);
    drop(store);

    let store = Store::open(dir.path()).unwrap();
    let p = store.load().unwrap();
    assert_eq!(p.alert_state, state);
    assert_eq!(p.history, history);
    assert_eq!(p.last_round, Some(round(7, 5_000)));
    let rows = store.outbox().unwrap();
    assert_eq!(
        rows.iter().map(|r| r.id.as_str()).collect::<Vec<_>>(),
        ["acme/2/firing/5000@mail", "acme/2/firing/5000@hook"]
    );
    let r = &rows[0];
    assert_eq!(
        (r.attempts, r.next_attempt_at, r.created_at),
        (0, Timestamp(5_000), Timestamp(5_000))
    );
    assert_eq!(r.notification().unwrap(), n("acme/2", "acme/2/firing/5000"));
}

#[test]
fn queueing_the_same_notification_twice_keeps_one_row() {
    let dir = tempfile::tempdir().unwrap();
    let mut store = Store::open(dir.path()).unwrap();
    assert_eq!(
        queue(&mut store, 1_000, &[("mail", n("a/1", "a/1/firing/1"))]),
        1
    );
    assert_eq!(
        queue(&mut store, 2_000, &[("mail", n("a/1", "a/1/firing/1"))]),
        0
    );
    assert_eq!(store.outbox().unwrap().len(), 1);
}

#[test]
fn due_keeps_each_incidents_order_per_channel() {
    let dir = tempfile::tempdir().unwrap();
    let mut store = Store::open(dir.path()).unwrap();
    queue(
        &mut store,
        1_000,
        &[
            ("mail", n("a/1", "a/1/firing/1000")),
            ("hook", n("a/1", "a/1/firing/1000")),
            ("mail", n("b/1", "b/1/firing/1000")),
        ],
    );
    queue(
        &mut store,
        2_000,
        &[("mail", n("a/1", "a/1/resolved/2000"))],
    );

    // Heads of each (channel, incident) chain only; nothing before it is due.
    assert!(due_ids(&store, 999).is_empty());
    assert_eq!(
        due_ids(&store, 5_000),
        [
            "a/1/firing/1000@mail",
            "a/1/firing/1000@hook",
            "b/1/firing/1000@mail"
        ]
    );
    // The firing mail fails: the resolved mail waits behind it, other chains go on.
    store
        .retry_later(
            "a/1/firing/1000@mail",
            "connection refused",
            Timestamp(9_000),
        )
        .unwrap();
    store.delivered("a/1/firing/1000@hook").unwrap();
    assert_eq!(due_ids(&store, 5_000), ["b/1/firing/1000@mail"]);
    assert_eq!(store.next_due().unwrap(), Some(Timestamp(1_000)));
    store.delivered("b/1/firing/1000@mail").unwrap();
    assert_eq!(
        store.next_due().unwrap(),
        Some(Timestamp(9_000)),
        "the held-back resolve is not due before its firing"
    );
    assert!(due_ids(&store, 5_000).is_empty());
    assert_eq!(due_ids(&store, 9_000), ["a/1/firing/1000@mail"]);
    let rows = store.outbox().unwrap();
    assert_eq!(rows[0].attempts, 1);
    assert_eq!(rows[0].last_error.as_deref(), Some("connection refused"));
    // Delivered: the resolve is next.
    store.delivered("a/1/firing/1000@mail").unwrap();
    assert_eq!(due_ids(&store, 9_000), ["a/1/resolved/2000@mail"]);
}

#[test]
fn dead_letters_stay_listed_block_nothing_and_expire() {
    let dir = tempfile::tempdir().unwrap();
    let mut store = Store::open(dir.path()).unwrap();
    queue(
        &mut store,
        1_000,
        &[
            ("hook", n("a/1", "a/1/firing/1000")),
            ("mail", n("a/1", "a/1/firing/1000")),
        ],
    );
    queue(
        &mut store,
        2_000,
        &[("hook", n("a/1", "a/1/resolved/2000"))],
    );
    store
        .dead_letter(
            "a/1/firing/1000@hook",
            "receiver answered 404",
            Timestamp(1_500),
        )
        .unwrap();
    assert_eq!(
        due_ids(&store, 3_000),
        ["a/1/firing/1000@mail", "a/1/resolved/2000@hook"],
        "a dead letter neither is due nor holds back its chain"
    );
    let status = store.status().unwrap();
    assert_eq!(status.pending, 2);
    assert_eq!(status.dead.len(), 1);
    assert_eq!(store.outbox_counts().unwrap(), (2, 1));
    assert_eq!(status.dead[0].id, "a/1/firing/1000@hook");
    assert_eq!(status.dead[0].attempts, 1);
    assert_eq!(status.dead[0].dead_at, Some(Timestamp(1_500)));
    assert_eq!(
        status.dead[0].last_error.as_deref(),
        Some("receiver answered 404")
    );
    // Forgotten once older than the retention the round passes.
    store
        .commit_round(
            Timestamp(4_000),
            None,
            &AlertState::default(),
            None,
            &[],
            Timestamp(1_500),
        )
        .unwrap();
    assert_eq!(store.status().unwrap().dead.len(), 1, "not before");
    store
        .commit_round(
            Timestamp(5_000),
            None,
            &AlertState::default(),
            None,
            &[],
            Timestamp(1_501),
        )
        .unwrap();
    assert!(store.status().unwrap().dead.is_empty());
    assert_eq!(
        store.status().unwrap().pending,
        2,
        "live rows are never pruned"
    );
}

#[test]
fn a_restart_retries_pending_rows_at_once() {
    let dir = tempfile::tempdir().unwrap();
    let mut store = Store::open(dir.path()).unwrap();
    queue(&mut store, 1_000, &[("mail", n("a/1", "a/1/firing/1000"))]);
    store
        .retry_later("a/1/firing/1000@mail", "down", Timestamp(600_000))
        .unwrap();
    assert!(due_ids(&store, 2_000).is_empty());
    assert_eq!(store.retry_all_now(Timestamp(2_000)).unwrap(), 1);
    assert_eq!(due_ids(&store, 2_000), ["a/1/firing/1000@mail"]);
}

#[test]
fn status_reads_while_the_daemon_writes() {
    let dir = tempfile::tempdir().unwrap();
    assert!(matches!(
        Store::open_read_only(dir.path()).unwrap_err(),
        StoreError::Missing { .. }
    ));
    let mut store = Store::open(dir.path()).unwrap();
    queue(&mut store, 1_000, &[("mail", n("a/1", "a/1/firing/1000"))]);
    store
        .retry_later("a/1/firing/1000@mail", "down", Timestamp(3_000))
        .unwrap();
    queue(&mut store, 2_000, &[("mail", n("b/1", "b/1/firing/2000"))]);
    let reader = Store::open_read_only(dir.path()).unwrap();
    let s = reader.status().unwrap();
    assert_eq!((s.pending, s.retrying), (2, 1));
    assert_eq!(s.oldest_pending, Some(Timestamp(1_000)));
    assert_eq!(s.last_round, Some(round(1, 2_000)));
    // The reader cannot write.
    let mut reader = reader;
    assert!(reader.delivered("a/1/firing/1000@mail").is_err());
}

#[test]
fn silences_are_kept_until_they_end() {
    let dir = tempfile::tempdir().unwrap();
    let mut store = Store::open(dir.path()).unwrap();
    let s = Silence {
        id: "api-1".into(),
        tenant: Some("acme".into()),
        code: None,
        severity: None,
        subject: None,
        starts: Timestamp(1_000),
        ends: Timestamp(5_000),
        created_by: "sre".into(),
        comment: "rotation".into(),
    };
    store.put_silence(&s, Timestamp(900)).unwrap();
    assert_eq!(store.silences(Timestamp(4_999)).unwrap(), vec![s.clone()]);
    assert!(store.silences(Timestamp(5_000)).unwrap().is_empty());
    let longer = Silence {
        ends: Timestamp(9_000),
        ..s
    };
    store.put_silence(&longer, Timestamp(950)).unwrap();
    assert_eq!(store.silences(Timestamp(6_000)).unwrap(), vec![longer]);
    assert!(store.delete_silence("api-1").unwrap());
    assert!(store.silences(Timestamp(6_000)).unwrap().is_empty());
    assert!(!store.delete_silence("api-1").unwrap(), "already gone");
}

#[test]
fn a_bad_silence_row_is_skipped_not_an_error() {
    let dir = tempfile::tempdir().unwrap();
    let mut store = Store::open(dir.path()).unwrap();
    let good = Silence {
        id: "api-2".into(),
        tenant: Some("acme".into()),
        code: None,
        severity: None,
        subject: None,
        starts: Timestamp(1_000),
        ends: Timestamp(5_000),
        created_by: "sre".into(),
        comment: "rotation".into(),
    };
    store.put_silence(&good, Timestamp(900)).unwrap();
    store
        .conn
        .execute(
            "INSERT INTO silences (id, silence, created_at, ends_at) VALUES ('api-1', '{\"ends\": \"year 8000\"}', 0, 9000)",
            [],
        )
        .unwrap();
    assert_eq!(store.silences(Timestamp(2_000)).unwrap(), vec![good]);
}

#[test]
fn two_opens_at_once_both_migrate() {
    // The schema as one open leaves it: every table, index and column, and the version.
    fn schema(dir: &Path) -> (i64, Vec<String>) {
        let conn = Connection::open(dir.join(DB_FILE)).unwrap();
        let version = conn
            .query_row("PRAGMA user_version", [], |r| r.get(0))
            .unwrap();
        let mut stmt = conn
            .prepare("SELECT sql FROM sqlite_master WHERE sql IS NOT NULL ORDER BY name")
            .unwrap();
        let sql = stmt
            .query_map([], |r| r.get(0))
            .unwrap()
            .collect::<Result<_, _>>()
            .unwrap();
        (version, sql)
    }
    let alone = tempfile::tempdir().unwrap();
    Store::open(alone.path()).unwrap();
    let expected = schema(alone.path());
    assert_eq!(expected.0, MIGRATIONS.len() as i64);
    assert!(expected.1.len() >= 5, "{expected:#?}");

    let dir = tempfile::tempdir().unwrap();
    let start = std::sync::Arc::new(std::sync::Barrier::new(4));
    let opens: Vec<_> = (0..4)
        .map(|_| {
            let (dir, start) = (dir.path().to_owned(), start.clone());
            std::thread::spawn(move || {
                start.wait();
                Store::open(&dir).map(|_| ())
            })
        })
        .collect();
    for o in opens {
        o.join().unwrap().unwrap();
    }
    // Each migration ran once: the same schema and version as a single open.
    assert_eq!(schema(dir.path()), expected);
}
