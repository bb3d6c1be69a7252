//! The published JSON shapes over the wire: `/v1/*` and `/readyz` from a daemon on the lab
//! in the seed incident, held to the contract files in `tests/contracts/` (see
//! `src/contract.rs`). The pure renderers (`check --format json`, the webhook body,
//! `status --format json`, the gate answer) are held to theirs by unit tests; the binary's
//! `gate` and `status` output by `exit_codes`.

use crate::api::{Harness, stage_seed_incident};
use reqwest::Method;
use serde_json::{Value, json};

// Shared with the unit tests, which use other parts of it.
#[allow(dead_code)]
#[path = "../../src/contract.rs"]
pub(crate) mod contract;

pub fn assert_gate_contract(answer: &Value) {
    contract::assert_served_keeps(
        "the gate answer",
        answer,
        include_str!("../contracts/gate.contract"),
    );
}

pub fn assert_status_contract(report: &Value) {
    contract::assert_served_keeps(
        "`status --format json`",
        report,
        include_str!("../contracts/status.contract"),
    );
}

async fn get(h: &Harness, path: &str, want: u16) -> Value {
    let resp = h.get(path, None).await;
    assert_eq!(resp.status(), want, "{path}");
    resp.json().await.unwrap()
}

#[tokio::test(flavor = "multi_thread")]
async fn v1_routes_keep_their_published_contracts() {
    let mut h = Harness::start(None).await;
    let (old_kid, new_kid) = stage_seed_incident(&mut h).await;

    let status = get(&h, "/v1/status", 200).await;
    contract::assert_served_keeps(
        "`GET /v1/status`",
        &status,
        include_str!("../contracts/v1-status.contract"),
    );
    let findings = get(&h, "/v1/findings", 200).await;
    assert!(
        !findings["findings"].as_array().unwrap().is_empty(),
        "the seed incident is open: {findings:#}"
    );
    contract::assert_served_keeps(
        "`GET /v1/findings`",
        &findings,
        include_str!("../contracts/v1-findings.contract"),
    );
    let ready = get(&h, "/readyz", 200).await;
    contract::assert_served_keeps(
        "`GET /readyz`",
        &ready,
        include_str!("../contracts/readyz.contract"),
    );

    // The gates: the new signer is unsafe while io's edge serves the old set (409); the
    // old key's retirement likewise; the current signer of a healthy tenant is safe.
    let mut answers = Vec::new();
    for (path, want) in [
        (format!("/v1/gate/rotation?tenant=acme&kid={new_kid}"), 409),
        (
            format!("/v1/gate/retirement?tenant=acme&kid={old_kid}"),
            409,
        ),
        ("/v1/gate/rotation?tenant=globex".to_owned(), 200),
    ] {
        answers.push(get(&h, &path, want).await);
    }
    for answer in &answers {
        contract::assert_served_keeps(
            "the gate answer of `/v1/gate/*`",
            answer,
            include_str!("../contracts/gate.contract"),
        );
    }

    let created = h
        .send(
            Method::POST,
            "/v1/silences",
            None,
            Some(&json!({
                "tenant": "acme",
                "code": "kid_missing",
                "subject": "domain=io path=cdn",
                "ends": "2h",
                "created_by": "sre@example.com",
                "comment": "io CDN purge pending",
            })),
        )
        .await;
    assert_eq!(created.status(), 201);
    let created: Value = created.json().await.unwrap();
    let silence = h
        .send(
            Method::POST,
            "/v1/silences",
            None,
            Some(&json!({
                "severity": "high",
                "ends": "1h",
                "created_by": "sre",
                "comment": "planned",
            })),
        )
        .await;
    assert_eq!(silence.status(), 201);
    let silences = include_str!("../contracts/v1-silences.contract");
    contract::assert_served_keeps(
        "the answer of `POST /v1/silences`",
        &json!({ "silences": [created] }),
        silences,
    );
    let listed = get(&h, "/v1/silences", 200).await;
    assert_eq!(
        listed["silences"].as_array().unwrap().len(),
        2,
        "{listed:#}"
    );
    contract::assert_served_keeps("`GET /v1/silences`", &listed, silences);
    h.stop().await;
}
