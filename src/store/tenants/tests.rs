use super::*;
use crate::alert::state::fixtures;
use crate::alert::state::{Episode, GroupKey, Incident};
use crate::detect::round::fixtures::obs;
use crate::model::{Code, Finding, Subject};
use crate::store::outbox_id;
use rusqlite::Connection;
use std::path::Path;

/// A tenant's alert part: one episode (of `code`) and one incident.
fn part_with(tenant: &str, code: Code, since: i64) -> AlertState {
    AlertState {
        episodes: vec![Episode {
            finding: Finding::new(code, Subject::domain(tenant, "io"), "kid k2 missing"),
            since: Timestamp(since),
            last_seen: Timestamp(since),
            bad_rounds: 1,
            good_streak: 0,
            firing: true,
        }],
        incidents: vec![Incident {
            group: GroupKey {
                tenant: tenant.into(),
                code: Some(code),
            },
            dedup_key: format!("{tenant}/{code:?}/{since}"),
            since: Timestamp(since),
            fired_at: Timestamp(since),
            sent: None,
            members: Vec::new(),
        }],
    }
}

fn part(tenant: &str) -> AlertState {
    part_with(tenant, Code::KidMissing, 1_000)
}

/// A tenant's history after one round at `at`.
fn hist(tenant: &str, at: i64) -> TenantHistory {
    let mut o = obs();
    o.tenant = tenant.into();
    let mut h = History::default();
    h.record(&o, Timestamp(at));
    h.tenant(tenant).unwrap().clone()
}

fn commit<'a>(
    tenant: &'a str,
    alerts: &'a AlertState,
    history: Option<&'a TenantHistory>,
) -> TenantCommit<'a> {
    TenantCommit {
        tenant,
        alerts,
        history,
        first_recorded: None,
        outbox: &[],
        round: None,
    }
}

fn rows(store: &Store) -> i64 {
    store
        .conn
        .query_row("SELECT COUNT(*) FROM tenant_state", [], |r| r.get(0))
        .unwrap()
}

#[test]
fn load_and_status_assemble_the_tenants_rows() {
    // (tenants committed in this order, with a history?) → the whole state and history.
    let cases: &[&[(&str, bool)]] = &[
        &[],
        &[("acme", true)],
        &[("zeta", true), ("acme", false), ("beta", true)],
        &[("beta", false), ("acme", false)],
    ];
    for case in cases {
        let dir = tempfile::tempdir().unwrap();
        let mut store = Store::open(dir.path()).unwrap();
        let mut expected = AlertState::default();
        let mut histories = Vec::new();
        for (tenant, with_history) in *case {
            let (alerts, h) = (part(tenant), hist(tenant, 7_000));
            store
                .commit_tenant(
                    Timestamp(7_000),
                    &TenantCommit {
                        first_recorded: Some(Timestamp(5_000)),
                        ..commit(tenant, &alerts, with_history.then_some(&h))
                    },
                    Timestamp(0),
                )
                .unwrap();
            expected = expected.with_tenant_part(tenant, alerts);
            if *with_history {
                histories.push((tenant.to_string(), h));
            }
        }
        let first = (!case.is_empty()).then_some(Timestamp(5_000));
        drop(store);
        let store = Store::open(dir.path()).unwrap();
        let p = store.load().unwrap();
        assert_eq!(p.alert_state, expected, "{case:?}");
        assert_eq!(
            p.history,
            History::from_tenants(first, histories),
            "{case:?}"
        );
        assert_eq!(store.status().unwrap().alert_state, expected, "{case:?}");
    }
}

#[test]
fn a_commit_writes_only_the_columns_that_changed() {
    let dir = tempfile::tempdir().unwrap();
    let mut store = Store::open(dir.path()).unwrap();
    let (a1, a2) = (part("acme"), part_with("acme", Code::KidMissing, 2_000));
    let (h1, h2) = (hist("acme", 1_000), hist("acme", 2_000));
    let empty = AlertState::default();
    let len = |json: String| json.len() as u64;
    let (a1_len, a2_len, h1_len, h2_len) = (
        len(to_json(&a1)),
        len(to_json(&a2)),
        len(to_json(&h1)),
        len(to_json(&h2)),
    );
    // (what, alerts, history, rows written, bytes written)
    let steps: &[(&str, &AlertState, Option<&TenantHistory>, u64, u64)] = &[
        ("first", &a1, Some(&h1), 1, a1_len + h1_len),
        ("same again", &a1, Some(&h1), 0, 0),
        ("same, history kept", &a1, None, 0, 0),
        ("alerts changed", &a2, None, 1, a2_len),
        ("history changed", &a2, Some(&h2), 1, h2_len),
        ("both changed", &a1, Some(&h1), 1, a1_len + h1_len),
        (
            "all resolved: the empty part is written",
            &empty,
            None,
            1,
            len(to_json(&empty)),
        ),
        ("still empty", &empty, Some(&h1), 0, 0),
    ];
    for (what, alerts, history, rows_written, bytes_written) in steps {
        let (rows0, bytes0) = store.tenant_rows_written();
        let changes0 = store.conn.total_changes();
        store
            .commit_tenant(
                Timestamp(9_000),
                &commit("acme", alerts, *history),
                Timestamp(0),
            )
            .unwrap();
        let (rows1, bytes1) = store.tenant_rows_written();
        assert_eq!(
            (rows1 - rows0, bytes1 - bytes0),
            (*rows_written, *bytes_written),
            "{what}"
        );
        assert_eq!(
            store.conn.total_changes() - changes0,
            *rows_written,
            "{what}"
        );
        let p = store.load().unwrap();
        assert_eq!(p.alert_state, **alerts, "{what}");
    }
    assert_eq!(store.load().unwrap().history.tenant("acme"), Some(&h1));
    assert_eq!(rows(&store), 1, "the empty part keeps its row");

    // A reopened store remembers nothing: the first commit writes.
    drop(store);
    let mut store = Store::open(dir.path()).unwrap();
    store
        .commit_tenant(
            Timestamp(9_000),
            &commit("acme", &empty, None),
            Timestamp(0),
        )
        .unwrap();
    assert_eq!(store.tenant_rows_written().0, 1);
}

#[test]
fn first_recorded_is_stored_when_given_and_kept_otherwise() {
    let dir = tempfile::tempdir().unwrap();
    let mut store = Store::open(dir.path()).unwrap();
    let a = part("acme");
    // (given, stored afterwards)
    let steps = [
        (None, None),
        (Some(3_000), Some(3_000)),
        (None, Some(3_000)),
        (Some(2_000), Some(2_000)),
    ];
    for (given, stored) in steps {
        store
            .commit_tenant(
                Timestamp(9_000),
                &TenantCommit {
                    first_recorded: given.map(Timestamp),
                    ..commit("acme", &a, None)
                },
                Timestamp(0),
            )
            .unwrap();
        let reopened = Store::open(dir.path()).unwrap();
        assert_eq!(
            reopened.load().unwrap().history.first_recorded(),
            stored.map(Timestamp),
            "{given:?}"
        );
    }
}

#[test]
fn a_tenant_commit_queues_its_outbox_and_round_with_its_state() {
    let dir = tempfile::tempdir().unwrap();
    let mut store = Store::open(dir.path()).unwrap();
    let a = part("acme");
    let n = fixtures::firing();
    let outbox = [
        ("mail".to_string(), n.clone()),
        ("hook".to_string(), n.clone()),
    ];
    let record = RoundRecord {
        number: 3,
        started_at: Timestamp(4_000),
        finished_at: Timestamp(5_000),
    };
    let queued = store
        .commit_tenant(
            Timestamp(5_000),
            &TenantCommit {
                outbox: &outbox,
                round: Some(record),
                ..commit("acme", &a, None)
            },
            Timestamp(0),
        )
        .unwrap();
    assert_eq!(queued, 2);
    let p = Store::open(dir.path()).unwrap().load().unwrap();
    assert_eq!((p.alert_state, p.last_round), (a, Some(record)));
    let ids: Vec<String> = store.outbox().unwrap().into_iter().map(|r| r.id).collect();
    assert_eq!(ids, [outbox_id(&n.id, "mail"), outbox_id(&n.id, "hook")]);
}

/// The shape the issue asks for: one tenant's commit writes the same rows and bytes
/// whether 1 or 200 other tenants are stored. Rewriting every tenant would write 2 rows
/// against 201 (the last step shows the measure sees it).
#[test]
fn a_tenants_commit_costs_the_same_with_1_or_200_others() {
    let measure = |others: usize| {
        let dir = tempfile::tempdir().unwrap();
        let mut store = Store::open(dir.path()).unwrap();
        for i in 0..others {
            let tenant = format!("t{i:03}");
            let (a, h) = (part(&tenant), hist(&tenant, 1_000));
            store
                .commit_tenant(
                    Timestamp(1_000),
                    &commit(&tenant, &a, Some(&h)),
                    Timestamp(0),
                )
                .unwrap();
        }
        drop(store);
        // A fresh process: nothing remembered, the first commit of acme writes.
        let mut store = Store::open(dir.path()).unwrap();
        let (a1, a2) = (part("acme"), part_with("acme", Code::KidMissing, 2_000));
        let h = hist("acme", 2_000);
        let outbox = [("mail".to_string(), fixtures::firing())];
        let mut cost = Vec::new();
        for c in [
            TenantCommit {
                outbox: &outbox,
                ..commit("acme", &a1, Some(&h))
            },
            commit("acme", &a2, None),
            commit("acme", &a2, Some(&h)),
        ] {
            let (rows0, bytes0) = store.tenant_rows_written();
            let changes0 = store.conn.total_changes();
            store
                .commit_tenant(Timestamp(2_000), &c, Timestamp(0))
                .unwrap();
            let (rows1, bytes1) = store.tenant_rows_written();
            cost.push((
                rows1 - rows0,
                bytes1 - bytes0,
                store.conn.total_changes() - changes0,
            ));
        }
        // What a commit of every tenant costs on the same store.
        let whole = store.load().unwrap();
        let rows0 = store.tenant_rows_written().0;
        store
            .commit_round(
                Timestamp(3_000),
                None,
                &whole.alert_state,
                Some(&whole.history),
                &[],
                Timestamp(0),
            )
            .unwrap();
        (cost, store.tenant_rows_written().0 - rows0)
    };
    let (one, whole_one) = measure(1);
    let (many, whole_many) = measure(200);
    assert_eq!(
        one, many,
        "rows, bytes and SQLite changes of acme's commits"
    );
    assert_eq!(
        one.iter()
            .map(|(rows, _, changes)| (*rows, *changes))
            .collect::<Vec<_>>(),
        [(1, 2), (1, 1), (0, 0)],
        "acme's row (+ its outbox row), then its alerts, then nothing new"
    );
    // The measure tells a rewrite of every tenant apart: acme's row was written by this
    // process, the others not yet.
    assert_eq!((whole_one, whole_many), (1, 200));
}

#[test]
fn removing_a_tenant_deletes_its_row_only() {
    let dir = tempfile::tempdir().unwrap();
    let mut store = Store::open(dir.path()).unwrap();
    let (a, b) = (part("acme"), part("beta"));
    let hb = hist("beta", 1_000);
    store
        .commit_tenant(Timestamp(1_000), &commit("acme", &a, None), Timestamp(0))
        .unwrap();
    store
        .commit_tenant(
            Timestamp(1_000),
            &commit("beta", &b, Some(&hb)),
            Timestamp(0),
        )
        .unwrap();
    store.remove_tenant("acme").unwrap();
    store.remove_tenant("gone").unwrap();
    let p = store.load().unwrap();
    assert_eq!(p.alert_state, b);
    assert_eq!(p.history.tenant("beta"), Some(&hb));
    assert_eq!(rows(&store), 1);
    // Back in the config: its next commit writes its row again.
    store
        .commit_tenant(Timestamp(2_000), &commit("acme", &a, None), Timestamp(0))
        .unwrap();
    assert_eq!(
        store.load().unwrap().alert_state,
        b.with_tenant_part("acme", a)
    );
}

#[test]
fn commit_round_brings_every_tenant_to_the_whole_state() {
    let dir = tempfile::tempdir().unwrap();
    let mut store = Store::open(dir.path()).unwrap();
    let two = part("acme").with_tenant_part("beta", part("beta"));
    let mut history = History::default();
    for t in ["acme", "beta"] {
        let mut o = obs();
        o.tenant = t.into();
        history.record(&o, Timestamp(1_000));
    }
    store
        .commit_round(
            Timestamp(1_000),
            None,
            &two,
            Some(&history),
            &[],
            Timestamp(0),
        )
        .unwrap();
    assert_eq!(rows(&store), 2);
    // A tenant in neither the alert state nor a given history loses its row.
    let only_beta_history = History::from_tenants(
        history.first_recorded(),
        [("beta".to_string(), history.tenant("beta").unwrap().clone())],
    );
    // (what, the alert state, the history given, the history loaded, rows left)
    let cases = [
        ("history kept", part("beta"), None, &history, 2),
        ("acme resolved", AlertState::default(), None, &history, 2),
        (
            "acme's history pruned",
            AlertState::default(),
            Some(&only_beta_history),
            &only_beta_history,
            1,
        ),
    ];
    for (what, state, given, loaded_history, row_count) in cases {
        store
            .commit_round(Timestamp(2_000), None, &state, given, &[], Timestamp(0))
            .unwrap();
        let p = Store::open(dir.path()).unwrap().load().unwrap();
        assert_eq!(p.alert_state, state, "{what}");
        assert_eq!(p.history, *loaded_history, "{what}");
        assert_eq!(rows(&store), row_count, "{what}");
    }
}

#[test]
fn by_tenant_gives_each_tenants_part_and_assembles_back() {
    let whole = part("zeta")
        .with_tenant_part("acme", part_with("acme", Code::KidMissing, 3_000))
        .with_tenant_part(
            "beta",
            AlertState {
                episodes: Vec::new(),
                ..part("beta")
            },
        );
    let cases = [AlertState::default(), part("acme"), whole];
    for state in cases {
        let parts = state.clone().by_tenant();
        let tenants: BTreeSet<&str> = alert_tenants(&state).collect();
        assert_eq!(
            parts.keys().map(String::as_str).collect::<BTreeSet<_>>(),
            tenants
        );
        for (tenant, p) in &parts {
            assert_eq!(*p, state.tenant_part(tenant), "{tenant}");
        }
        assert_eq!(assemble(parts.into_values()), state);
    }
}

/// Writes a database of the first schema (before per-tenant rows) into `dir`.
fn old_database(dir: &Path, alerts: Option<&AlertState>, history: Option<&History>) {
    let conn = Connection::open(dir.join(crate::store::DB_FILE)).unwrap();
    conn.execute_batch(crate::store::MIGRATIONS[0]).unwrap();
    conn.pragma_update(None, "user_version", 1).unwrap();
    if let Some(a) = alerts {
        conn.execute(
            "INSERT INTO alert_state (id, state, updated_at) VALUES (1, ?1, 5000)",
            params![to_json(a)],
        )
        .unwrap();
    }
    if let Some(h) = history {
        conn.execute(
            "INSERT INTO history (id, history, updated_at) VALUES (1, ?1, 4000)",
            params![to_json(h)],
        )
        .unwrap();
    }
    conn.execute(
        "INSERT INTO last_round (id, number, started_at, finished_at) VALUES (1, 9, 3000, 4000)",
        [],
    )
    .unwrap();
}

fn single_rows(dir: &Path) -> i64 {
    let conn = Connection::open(dir.join(crate::store::DB_FILE)).unwrap();
    conn.query_row(
        "SELECT (SELECT COUNT(*) FROM alert_state) + (SELECT COUNT(*) FROM history)",
        [],
        |r| r.get(0),
    )
    .unwrap()
}

#[test]
fn an_old_single_row_database_loads_identically_after_the_upgrade() {
    // acme: alerts and history; beta: history only; zeta: alerts only.
    let alerts = part("acme").with_tenant_part("zeta", part_with("zeta", Code::KidMissing, 9));
    let mut history = History::default();
    for (t, at) in [("acme", 1_000), ("beta", 2_000), ("acme", 3_000)] {
        let mut o = obs();
        o.tenant = t.into();
        history.record(&o, Timestamp(at));
    }
    let cases = [
        (Some(&alerts), Some(&history)),
        (Some(&alerts), None),
        (None, Some(&history)),
        (None, None),
    ];
    for (a, h) in cases {
        let what = (a.is_some(), h.is_some());
        let dir = tempfile::tempdir().unwrap();
        old_database(dir.path(), a, h);
        for open in ["upgrade", "again"] {
            let store = Store::open(dir.path()).unwrap();
            let p = store.load().unwrap();
            assert_eq!(
                p.alert_state,
                a.cloned().unwrap_or_default(),
                "{what:?} {open}"
            );
            assert_eq!(p.history, h.cloned().unwrap_or_default(), "{what:?} {open}");
            assert_eq!(p.last_round.map(|r| r.number), Some(9), "{what:?} {open}");
            assert_eq!(store.status().unwrap().alert_state, p.alert_state);
            assert_eq!(
                single_rows(dir.path()),
                0,
                "{what:?}: the old rows are emptied"
            );
        }
    }
}

#[test]
fn an_unreadable_old_row_fails_the_open_and_changes_nothing() {
    let dir = tempfile::tempdir().unwrap();
    old_database(dir.path(), None, None);
    let conn = Connection::open(dir.path().join(crate::store::DB_FILE)).unwrap();
    conn.execute(
        "INSERT INTO alert_state (id, state, updated_at) VALUES (1, '{not json', 1)",
        [],
    )
    .unwrap();
    drop(conn);
    let err = Store::open(dir.path()).unwrap_err();
    assert!(matches!(err, StoreError::Json { .. }), "{err}");
    // One transaction: still the first schema, the row still there.
    let conn = Connection::open(dir.path().join(crate::store::DB_FILE)).unwrap();
    let version: i64 = conn
        .query_row("PRAGMA user_version", [], |r| r.get(0))
        .unwrap();
    assert_eq!((version, single_rows(dir.path())), (1, 1));
}

/// The two outbox statements every commit runs: their steps in SQLite's VM, and full-scan
/// steps, with `rows` rows in the outbox (half of them dead letters not yet forgotten).
fn outbox_statement_steps(rows: usize) -> Vec<(i32, i32)> {
    let dir = tempfile::tempdir().unwrap();
    let mut store = Store::open(dir.path()).unwrap();
    let outbox: Vec<(String, Notification)> = (0..rows)
        .map(|i| {
            let n = Notification {
                id: format!("a/{i}/firing/1"),
                dedup_key: format!("a/{i}"),
                ..fixtures::firing()
            };
            ("mail".to_string(), n)
        })
        .collect();
    let a = AlertState::default();
    store
        .commit_tenant(
            Timestamp(1_000),
            &TenantCommit {
                outbox: &outbox,
                ..commit("acme", &a, None)
            },
            Timestamp(0),
        )
        .unwrap();
    for (i, (channel, n)) in outbox.iter().enumerate().filter(|(i, _)| i % 2 == 0) {
        store
            .dead_letter(
                &outbox_id(&n.id, channel),
                "gone",
                Timestamp(5_000 + i as i64),
            )
            .unwrap();
    }
    // (statement, its parameters)
    let statements: [(&str, Vec<i64>); 2] = [
        (crate::store::NEXT_SEQ, vec![]),
        (crate::store::FORGET_DEAD, vec![2_000]),
    ];
    statements
        .iter()
        .map(|(sql, params)| {
            let mut stmt = store.conn.prepare(sql).unwrap();
            let mut rows = stmt.query(rusqlite::params_from_iter(params)).unwrap();
            while rows.next().unwrap().is_some() {}
            drop(rows);
            (
                stmt.get_status(rusqlite::StatementStatus::VmStep),
                stmt.get_status(rusqlite::StatementStatus::FullscanStep),
            )
        })
        .collect()
}

#[test]
fn every_commits_outbox_statements_search_an_index() {
    // The plan names the index each was given.
    let dir = tempfile::tempdir().unwrap();
    let store = Store::open(dir.path()).unwrap();
    // (statement, its parameter count, the index it searches)
    let cases = [
        (crate::store::NEXT_SEQ, 0, "outbox_seq"),
        (crate::store::FORGET_DEAD, 1, "outbox_dead"),
    ];
    for (sql, params, index) in cases {
        let mut stmt = store
            .conn
            .prepare(&format!("EXPLAIN QUERY PLAN {sql}"))
            .unwrap();
        let plan: Vec<String> = stmt
            .query_map(rusqlite::params_from_iter(vec![0; params]), |r| {
                r.get::<_, String>(3)
            })
            .unwrap()
            .collect::<Result<_, _>>()
            .unwrap();
        assert!(
            plan.iter()
                .all(|d| d.starts_with("SEARCH outbox USING") && d.contains(index)),
            "{sql}: {plan:?}"
        );
    }
    // And they do as much work with 2 rows as with 400: no scan.
    let (few, many) = (outbox_statement_steps(2), outbox_statement_steps(400));
    assert_eq!(few, many);
    assert!(many.iter().all(|(_, fullscan)| *fullscan == 0), "{many:?}");
}
