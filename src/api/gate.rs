//! The gate routes: `/v1/gate/rotation` and `/v1/gate/retirement`, answered from this
//! daemon's history (`scope=local`, the default) or over every location through
//! `[gate] prometheus` (`scope=global`, see `detect::gate::global`). Nothing here decides:
//! the answers are `detect::gate`'s; a Prometheus that fails is a 503, never an answer.

use super::{ApiState, bad_query, error, read};
use crate::detect::{self, gate::Question};
use axum::extract::rejection::QueryRejection;
use axum::extract::{Query, State};
use axum::http::StatusCode;
use axum::response::{IntoResponse, Json, Response};
use serde::Deserialize;

/// `GET /v1/gate/rotation?tenant=T[&kid=N][&scope=global]` and
/// `/v1/gate/retirement?tenant=T&kid=C`.
#[derive(Debug, Deserialize)]
pub struct GateQuery {
    pub tenant: String,
    pub kid: Option<String>,
    /// `local` (the default: this daemon's views) or `global` (every location's, through
    /// `[gate] prometheus`).
    pub scope: Option<String>,
}

pub(super) async fn rotation(
    State(state): State<ApiState>,
    q: Result<Query<GateQuery>, QueryRejection>,
) -> Response {
    match q {
        Ok(Query(q)) if q.scope.as_deref() == Some("global") => global_gate(&state, q).await,
        Ok(Query(q)) => gate(&state, q, false),
        Err(e) => bad_query(e),
    }
}

pub(super) async fn retirement(
    State(state): State<ApiState>,
    q: Result<Query<GateQuery>, QueryRejection>,
) -> Response {
    match q {
        Ok(Query(q)) if q.scope.as_deref() == Some("global") => global_retirement(&state, q).await,
        Ok(Query(q)) => gate(&state, q, true),
        Err(e) => bad_query(e),
    }
}

/// Answers a gate from the daemon's history and open findings: 200 safe, 409 unsafe (both
/// with the answer), 400 for an unknown tenant or a retirement without a kid, 503 before
/// the first round.
fn gate(state: &ApiState, q: GateQuery, retire: bool) -> Response {
    match q.scope.as_deref() {
        None | Some("local") => {}
        Some(other) => {
            return error(
                StatusCode::BAD_REQUEST,
                format!("unknown scope `{other}`: use `local` or `global`"),
            );
        }
    }
    if read(state, |_, config| config.tenant(&q.tenant).is_none()) {
        return error(
            StatusCode::BAD_REQUEST,
            format!("unknown tenant `{}`", q.tenant),
        );
    }
    if retire && q.kid.is_none() {
        return error(
            StatusCode::BAD_REQUEST,
            "the retirement gate needs `kid`: the key to remove",
        );
    }
    let question = if retire {
        Question::Retirement(q.kid.as_deref().unwrap_or_default())
    } else {
        Question::Rotation(q.kid.as_deref())
    };
    match local_answer(state, &q.tenant, question) {
        None => error(
            StatusCode::SERVICE_UNAVAILABLE,
            "no round has finished yet: ask again after the first round",
        ),
        Some(a) => answered(a),
    }
}

/// This daemon's answer from its history and open findings; `None` before the first
/// round.
fn local_answer(
    state: &ApiState,
    tenant: &str,
    question: Question<'_>,
) -> Option<detect::gate::GateAnswer> {
    let now = state.clock.now();
    read(state, |s, config| {
        if s.rounds == 0 {
            return None;
        }
        // The tenant's own part: its history (copied for this question), latest round
        // and open findings.
        let observations = s
            .observation(tenant)
            .map(std::slice::from_ref)
            .unwrap_or(&[]);
        let open = s.tenants.get(tenant).map_or(&[][..], |t| &t.findings);
        Some(detect::gate::answer(
            config,
            &s.history_of(tenant),
            observations,
            open,
            tenant,
            question,
            now,
        ))
    })
}

/// The rotation gate over every location (`scope=global`): the samples every keycanary
/// exports, read from `[gate] prometheus`, judged by the same view rule as a local answer;
/// plus, when this daemon watches the tenant, its local answer's conditions about the key
/// itself (hygiene, alg) and its advisories.
/// 200 safe, 409 unsafe, 400 without a kid or with no `[gate] prometheus`, 503 when
/// Prometheus cannot be reached or answers anything but an instant vector.
async fn global_gate(state: &ApiState, q: GateQuery) -> Response {
    let (gate, margin) = read(state, |_, c| (c.gate.clone(), c.settings.gate_margin));
    let Some(prometheus) = gate.prometheus else {
        return error(
            StatusCode::BAD_REQUEST,
            "scope=global needs [gate] prometheus (and locations) in the daemon's config",
        );
    };
    // Without a kid: the current signer, as this daemon's history names it.
    let signer = read(state, |s, _| {
        s.history(&q.tenant).and_then(detect::gate::current_signer)
    });
    let Some(kid) = q.kid.as_deref().or(signer.as_deref()) else {
        return error(
            StatusCode::BAD_REQUEST,
            "scope=global needs `kid` (the key to promote) unless this daemon watches the tenant and has seen its current signer",
        );
    };
    // Another shard's tenant may be asked about, so any name a config could hold will do.
    if !detect::gate::global::is_tenant_name(&q.tenant) {
        return error(
            StatusCode::BAD_REQUEST,
            format!(
                "`{}` is not a tenant name",
                crate::model::wire::text(&q.tenant, 64)
            ),
        );
    }
    let scope = detect::gate::global::Scope {
        tenant: &q.tenant,
        kid,
        locations: &gate.locations,
        margin,
        max_age: gate.max_age,
        now: state.clock.now(),
    };
    let answer = crate::prometheus::rotation(&prometheus, &scope).await;
    // What this daemon knows about the key itself (its hygiene, its alg), when it watches
    // the tenant: the same from every location, and not in the exported families.
    let watched = read(state, |_, c| c.tenant(&q.tenant).is_some());
    let local = watched
        .then(|| local_answer(state, &q.tenant, Question::Rotation(Some(kid))))
        .flatten();
    let answer = answer.map(|a| match &local {
        Some(l) => detect::gate::global::with_key_conditions(a, l),
        None => a,
    });
    match answer {
        Ok(a) => answered(a),
        Err(e) => error(
            StatusCode::SERVICE_UNAVAILABLE,
            format!("no global answer: {e}"),
        ),
    }
}

/// The retirement gate over every location (`scope=global`): what the key signed and the
/// current signer come from this daemon's history (it must watch the tenant), every
/// location's views from `[gate] prometheus`. 200 safe, 409 unsafe, 400 without a kid,
/// `[gate] prometheus` or the tenant, 503 before the first round or when Prometheus fails.
async fn global_retirement(state: &ApiState, q: GateQuery) -> Response {
    let (gate, margin, watched) = read(state, |_, c| {
        (
            c.gate.clone(),
            c.settings.gate_margin,
            c.tenant(&q.tenant).is_some(),
        )
    });
    let Some(prometheus) = gate.prometheus else {
        return error(
            StatusCode::BAD_REQUEST,
            "scope=global needs [gate] prometheus (and locations) in the daemon's config",
        );
    };
    let Some(kid) = q.kid.as_deref() else {
        return error(
            StatusCode::BAD_REQUEST,
            "the retirement gate needs `kid`: the key to remove",
        );
    };
    if !watched {
        return error(
            StatusCode::BAD_REQUEST,
            format!(
                "`{}` is not a tenant this daemon watches: the retirement gate over every location needs its history (what the key signed); ask a daemon that watches it",
                crate::model::wire::text(&q.tenant, 64)
            ),
        );
    }
    let Some(local) = local_answer(state, &q.tenant, Question::Retirement(kid)) else {
        return error(
            StatusCode::SERVICE_UNAVAILABLE,
            "no round has finished yet: ask again after the first round",
        );
    };
    let signing = read(state, |s, _| {
        let h = s.history(&q.tenant)?;
        let signer = detect::gate::current_signer(h)?;
        let since = detect::gate::signer_stable_since(h, &signer);
        Some((signer, since))
    });
    let scope = detect::gate::global::Scope {
        tenant: &q.tenant,
        kid,
        locations: &gate.locations,
        margin,
        max_age: gate.max_age,
        now: state.clock.now(),
    };
    let signing = signing
        .as_ref()
        .map(|(signer, since)| detect::gate::global::Signing {
            signer,
            alone_since: *since,
        });
    match crate::prometheus::retirement(&prometheus, &scope, signing, &local).await {
        Ok(a) => answered(a),
        Err(e) => error(
            StatusCode::SERVICE_UNAVAILABLE,
            format!("no global answer: {e}"),
        ),
    }
}

/// A gate answer over HTTP: 200 when safe, 409 when not, the answer as the body.
fn answered(a: detect::gate::GateAnswer) -> Response {
    let status = if a.safe {
        StatusCode::OK
    } else {
        StatusCode::CONFLICT
    };
    (status, Json(a)).into_response()
}
