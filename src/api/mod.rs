//! The HTTP API and status page that `keycanary run` serves next to its probe loop:
//! health and readiness, Prometheus metrics, the view matrix and open findings as JSON,
//! the OpenAPI document, the server-rendered status page at `/`, and the silences
//! (`/v1/silences`, see [`silences`]).
//!
//! Everything here reads the daemon's [`SharedSnapshot`], tenants included: the config the
//! daemon publishes there (at start and after each SIGHUP reload) is the one every handler
//! uses, so a reload shows without a restart. Nothing probes or decides, and the only
//! state written is silences, into the state directory the daemon reads. The
//! routes live in one table ([`routes`]) that both the router and the OpenAPI check use.
//! With a bearer token configured, every route but `/healthz` and `/readyz` needs
//! `Authorization: Bearer <token>`, compared in constant time; the token is the running
//! config's, so a reload that changes it applies at once. Before any of that, `guard`
//! refuses foreign `Host`s and cross-site or non-JSON writes, and `server` bounds how
//! long a client may take to send its headers.

mod gate;
mod guard;
pub mod page;
mod server;
pub mod silences;

use crate::clock::SharedClock;
use crate::config::Config;
use crate::model::{Code, Finding, Severity};
use crate::report::{Report, ViewRow};
use crate::snapshot::{SharedSnapshot, Snapshot};
use crate::telemetry::metrics::{self, BuildInfo, Selection};
use axum::Router;
use axum::extract::rejection::QueryRejection;
use axum::extract::{Query, RawQuery, Request, State};
use axum::http::{StatusCode, header};
use axum::middleware::{self, Next};
use axum::response::{Html, IntoResponse, Json, Response};
use axum::routing::{MethodRouter, delete, get};
use secrecy::{ExposeSecret, SecretString};
use serde::{Deserialize, Serialize};
use serde_json::json;
use std::future::Future;
use std::path::PathBuf;
use std::sync::Arc;
use tokio::net::TcpListener;
use tracing::{info, warn};

/// What every handler reads.
#[derive(Clone)]
pub struct ApiState {
    pub snapshot: SharedSnapshot,
    /// The config the API starts with; once the daemon has published the config it runs
    /// with in the snapshot (`Snapshot::config`), that one is used instead.
    pub config: Arc<Config>,
    pub clock: SharedClock,
    /// The daemon's state directory, where `/v1/silences` reads and writes; `None`: those
    /// routes answer 503.
    pub state_dir: Option<PathBuf>,
}

/// Who may call a route.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Access {
    /// No token needed (probes from orchestrators).
    Public,
    /// The bearer token, when one is configured.
    Bearer,
}

/// The committed OpenAPI document (`openapi.json` at the repository root).
pub const OPENAPI: &str = include_str!("../../openapi.json");

/// Every route: path, access, handler. The only list of routes; `openapi.json` must name
/// exactly these paths (checked by tests).
pub fn routes() -> Vec<(&'static str, Access, MethodRouter<ApiState>)> {
    vec![
        ("/healthz", Access::Public, get(healthz)),
        ("/readyz", Access::Public, get(readyz)),
        ("/metrics", Access::Bearer, get(metrics_text)),
        ("/v1/status", Access::Bearer, get(status)),
        ("/v1/findings", Access::Bearer, get(findings)),
        ("/v1/gate/rotation", Access::Bearer, get(gate::rotation)),
        ("/v1/gate/retirement", Access::Bearer, get(gate::retirement)),
        (
            "/v1/silences",
            Access::Bearer,
            get(silences::list).post(silences::create),
        ),
        (
            "/v1/silences/{id}",
            Access::Bearer,
            delete(silences::delete),
        ),
        ("/openapi.json", Access::Bearer, get(openapi)),
        ("/", Access::Bearer, get(status_page)),
    ]
}

/// The paths of [`routes`], in order.
pub fn route_paths() -> Vec<&'static str> {
    routes().into_iter().map(|(p, _, _)| p).collect()
}

pub fn router(state: ApiState) -> Router {
    let mut public = Router::new();
    let mut guarded = Router::new();
    for (path, access, handler) in routes() {
        match access {
            Access::Public => public = public.route(path, handler),
            Access::Bearer => guarded = guarded.route(path, handler),
        }
    }
    let guarded = guarded.route_layer(middleware::from_fn_with_state(
        state.clone(),
        require_bearer,
    ));
    public
        .merge(guarded)
        .fallback(not_found)
        .layer(middleware::from_fn_with_state(state.clone(), guard::guard))
        .with_state(state)
}

/// Serves the API on `listener` until `shutdown` completes. A non-loopback address is
/// allowed, with a warning.
pub async fn serve(
    listener: TcpListener,
    state: ApiState,
    shutdown: impl Future<Output = ()>,
) -> std::io::Result<()> {
    let addr = listener.local_addr()?;
    if !addr.ip().is_loopback() {
        warn!(
            %addr,
            bearer_token = read(&state, |_, c| c.api.bearer_token.is_some()),
            "the HTTP API listens on a non-loopback address: anyone who can reach it sees the status of every tenant; set [api] bearer_token or listen on 127.0.0.1 (clients that use a host name need it in [api] allowed_hosts)"
        );
    }
    info!(%addr, "HTTP API and status page listening");
    server::serve(listener, router(state), shutdown).await
}

/// Calls `f` with the snapshot and the config the daemon runs with now (see
/// [`ApiState::config`]), read under one lock so the two agree.
pub(super) fn read<T>(state: &ApiState, f: impl FnOnce(&Snapshot, &Config) -> T) -> T {
    let guard = state.snapshot.read().unwrap_or_else(|e| e.into_inner());
    let config = guard.config.as_deref().unwrap_or(&state.config);
    f(&guard, config)
}

pub(super) fn error(status: StatusCode, message: impl Into<String>) -> Response {
    (status, Json(json!({ "error": message.into() }))).into_response()
}

async fn not_found() -> Response {
    error(
        StatusCode::NOT_FOUND,
        "no such route: see /openapi.json for the routes",
    )
}

// --- authentication ----------------------------------------------------------------------

async fn require_bearer(State(state): State<ApiState>, req: Request, next: Next) -> Response {
    // The running config's token: a reload that changes it applies to the next request.
    let expected: Option<SecretString> = read(&state, |_, c| c.api.bearer_token.clone());
    let Some(expected) = &expected else {
        return next.run(req).await;
    };
    let given = req
        .headers()
        .get(header::AUTHORIZATION)
        .and_then(|v| v.to_str().ok())
        .and_then(bearer_token);
    if given.is_some_and(|g| token_matches(g, expected.expose_secret())) {
        return next.run(req).await;
    }
    let mut resp = error(
        StatusCode::UNAUTHORIZED,
        "missing or wrong bearer token: send `Authorization: Bearer <token>` with the token from [api] bearer_token",
    );
    resp.headers_mut().insert(
        header::WWW_AUTHENTICATE,
        header::HeaderValue::from_static("Bearer realm=\"keycanary\""),
    );
    resp
}

/// The token of an `Authorization: Bearer <token>` value (scheme case-insensitive).
fn bearer_token(value: &str) -> Option<&str> {
    let (scheme, token) = value.trim().split_once(' ')?;
    let token = token.trim();
    (scheme.eq_ignore_ascii_case("bearer") && !token.is_empty()).then_some(token)
}

/// Constant-time comparison; hashing first hides the expected token's length too.
fn token_matches(given: &str, expected: &str) -> bool {
    use aws_lc_rs::{constant_time, digest};
    let a = digest::digest(&digest::SHA256, given.as_bytes());
    let b = digest::digest(&digest::SHA256, expected.as_bytes());
    constant_time::verify_slices_are_equal(a.as_ref(), b.as_ref()).is_ok()
}

// --- handlers ------------------------------------------------------------------------------

async fn healthz() -> &'static str {
    "ok"
}

/// Ready once a probe round has finished and the latest commit to the state store
/// succeeded.
fn readiness(s: &Snapshot) -> Result<(), String> {
    if s.rounds == 0 || s.last_round_finished.is_none() {
        return Err("no probe round has finished yet".into());
    }
    if let Some(e) = &s.store.commit_error {
        return Err(format!(
            "the state store is not writable: the latest commit failed: {e}"
        ));
    }
    if let (n @ 1.., e) = s.deliveries.unrecorded() {
        return Err(format!(
            "the state store is not writable: {n} notification outcomes wait in memory to be recorded: {}",
            e.unwrap_or_default()
        ));
    }
    if let Some(config) = &s.config
        && s.lag > config.settings.interval * LAG_INTERVALS
    {
        return Err(format!(
            "keycanary is behind: rounds wait {} s for a concurrency permit or the judge (more than {LAG_INTERVALS} intervals); raise max_concurrency or the interval, or shard the tenants",
            s.lag.as_secs()
        ));
    }
    Ok(())
}

/// keycanary's own lag beyond this many intervals makes it unready.
const LAG_INTERVALS: u32 = 2;

/// `GET /readyz` when ready.
#[derive(Debug, Serialize)]
struct Ready {
    ready: bool,
    rounds: u64,
    #[serde(skip_serializing_if = "Option::is_none")]
    last_round_finished: Option<String>,
    /// The latest successful commit to the state store.
    #[serde(skip_serializing_if = "Option::is_none")]
    last_commit: Option<String>,
    /// keycanary's own lag (see `keycanary_scheduler_lag_seconds`).
    scheduler_lag_seconds: f64,
    /// With `[inventory]`: what it holds and how old it may be (a failing source keeps its
    /// last good list, so the daemon stays ready and says so here).
    #[serde(skip_serializing_if = "Option::is_none")]
    inventory: Option<ReadyInventory>,
}

#[derive(Debug, Serialize)]
struct ReadyInventory {
    accepted: usize,
    rejected: usize,
    /// The oldest of the sources' latest successful reads.
    #[serde(skip_serializing_if = "Option::is_none")]
    last_success: Option<String>,
    /// Sources whose latest read failed, each with why.
    failing: std::collections::BTreeMap<&'static str, String>,
}

fn ready_inventory(s: &crate::snapshot::Snapshot) -> Option<ReadyInventory> {
    let inv = s.inventory.as_ref()?;
    let oldest = inv
        .sources
        .values()
        .map(|st| st.last_success)
        .min()
        .flatten();
    Some(ReadyInventory {
        accepted: inv.accepted,
        rejected: inv.rejected,
        last_success: oldest.map(|t| t.to_rfc3339()),
        failing: inv
            .sources
            .iter()
            .filter_map(|(k, st)| st.error.clone().map(|e| (*k, e)))
            .collect(),
    })
}

async fn readyz(State(state): State<ApiState>) -> Response {
    read(&state, |s, _| match readiness(s) {
        Ok(()) => Json(Ready {
            ready: true,
            rounds: s.rounds,
            last_round_finished: s.last_round_finished.map(|t| t.to_rfc3339()),
            last_commit: s.store.last_commit.map(|t| t.to_rfc3339()),
            scheduler_lag_seconds: s.lag.as_secs_f64(),
            inventory: ready_inventory(s),
        })
        .into_response(),
        Err(reason) => (
            StatusCode::SERVICE_UNAVAILABLE,
            Json(json!({ "ready": false, "reason": reason })),
        )
            .into_response(),
    })
}

/// `GET /metrics[?tenant=T…][&name[]=N…]`: the whole exposition, or the part a split
/// scrape asks for (400 for an unknown parameter or tenant).
async fn metrics_text(State(state): State<ApiState>, RawQuery(query): RawQuery) -> Response {
    let selection = match Selection::parse(query.as_deref()) {
        Ok(s) => s,
        Err(message) => return error(StatusCode::BAD_REQUEST, message),
    };
    let body = read(&state, |s, config| {
        for t in &selection.tenants {
            configured_tenant(config, t)?;
        }
        Ok::<_, String>(metrics::render_selected(
            s,
            config,
            BuildInfo::current(),
            &selection,
        ))
    });
    match body {
        Ok(body) => ([(header::CONTENT_TYPE, metrics::CONTENT_TYPE)], body).into_response(),
        Err(message) => error(StatusCode::BAD_REQUEST, message),
    }
}

/// The latest round: when, and how long it took.
#[derive(Debug, Serialize)]
pub struct LastRound {
    pub number: u64,
    pub started_at: String,
    pub finished_at: String,
    pub duration_seconds: f64,
}

/// `GET /v1/status`: the matrix rows of `check --format json`, plus the latest round.
#[derive(Debug, Serialize)]
pub struct Status {
    pub last_round: Option<LastRound>,
    pub views: Vec<ViewRow>,
}

/// `GET /v1/status[?tenant=T]`.
#[derive(Debug, Default, Deserialize)]
pub struct StatusQuery {
    /// Only this tenant's rows.
    pub tenant: Option<String>,
}

/// The status of every tenant, or of `tenant` only (its own part of the snapshot: the
/// cost of one tenant, not of the fleet). Linear in views plus findings either way.
pub fn status_of(s: &Snapshot, tenant: Option<&str>) -> Status {
    let last_round = match (s.last_round_started, s.last_round_finished) {
        (Some(start), Some(end)) => Some(LastRound {
            number: s.rounds,
            started_at: start.to_rfc3339(),
            finished_at: end.to_rfc3339(),
            duration_seconds: (end.0 - start.0).max(0) as f64 / 1000.0,
        }),
        _ => None,
    };
    let report = match tenant {
        Some(t) => Report::new(
            s.observation(t),
            s.tenants
                .get(t)
                .map_or_else(Vec::new, |t| t.findings.clone()),
        ),
        // Rows need only the findings about views, in any order.
        None => Report::new(
            s.observations(),
            s.tenants
                .values()
                .flat_map(|t| &t.findings)
                .filter(|f| f.subject.path.is_some())
                .cloned()
                .collect(),
        ),
    };
    Status {
        last_round,
        views: report.views,
    }
}

async fn status(
    State(state): State<ApiState>,
    q: Result<Query<StatusQuery>, QueryRejection>,
) -> Response {
    let q = match q {
        Ok(Query(q)) => q,
        Err(e) => return bad_query(e),
    };
    let status = read(&state, |s, config| {
        if let Some(t) = q.tenant.as_deref() {
            configured_tenant(config, t)?;
        }
        Ok::<_, String>(status_of(s, q.tenant.as_deref()))
    });
    match status {
        Ok(status) => Json(status).into_response(),
        Err(message) => error(StatusCode::BAD_REQUEST, message),
    }
}

#[derive(Debug, Default, Deserialize)]
pub struct FindingsQuery {
    pub tenant: Option<String>,
    pub code: Option<String>,
    /// Minimum severity: `high` returns critical and high.
    pub severity: Option<String>,
}

#[derive(Debug, Serialize)]
struct FindingOut<'a> {
    #[serde(flatten)]
    finding: &'a Finding,
    /// When this finding opened (start of its current streak).
    #[serde(skip_serializing_if = "Option::is_none")]
    since: Option<String>,
}

/// `GET /v1/findings`.
#[derive(Debug, Serialize)]
struct FindingsOut<'a> {
    findings: Vec<FindingOut<'a>>,
}

/// A tenant named in a request must be one of the running config's: an indexed lookup,
/// the list of names built only for the error.
fn configured_tenant(config: &Config, t: &str) -> Result<(), String> {
    if config.tenant(t).is_some() {
        return Ok(());
    }
    let names: Vec<&str> = config.tenants.iter().map(|t| t.name.as_str()).collect();
    known_tenant(&names, t)
}

/// A tenant named in a request must be one of `tenants`.
pub(crate) fn known_tenant(tenants: &[&str], t: &str) -> Result<(), String> {
    if tenants.contains(&t) {
        return Ok(());
    }
    Err(format!(
        "unknown tenant `{t}`: configured tenants are {}",
        tenants.join(", ")
    ))
}

/// A finding code named in a request.
pub(crate) fn parse_code(c: &str) -> Result<Code, String> {
    Code::parse(c).ok_or_else(|| {
        format!("unknown code `{c}`: use a code from the finding catalogue in README.md")
    })
}

/// A severity named in a request.
pub(crate) fn parse_severity(s: &str) -> Result<Severity, String> {
    Severity::parse(s)
        .ok_or_else(|| format!("unknown severity `{s}`: use critical, high, medium or low"))
}

async fn findings(
    State(state): State<ApiState>,
    q: Result<Query<FindingsQuery>, QueryRejection>,
) -> Response {
    let q = match q {
        Ok(Query(q)) => q,
        Err(e) => return bad_query(e),
    };
    let unknown = read(&state, |_, config| {
        configured_tenant(config, q.tenant.as_deref()?).err()
    });
    if let Some(message) = unknown {
        return error(StatusCode::BAD_REQUEST, message);
    }
    let code = match q.code.as_deref().map(parse_code).transpose() {
        Ok(code) => code,
        Err(message) => return error(StatusCode::BAD_REQUEST, message),
    };
    let severity = match q.severity.as_deref().map(parse_severity).transpose() {
        Ok(severity) => severity,
        Err(message) => return error(StatusCode::BAD_REQUEST, message),
    };
    let body = read(&state, |s, _| {
        // One tenant's findings are its own list (already in rank order); every tenant's
        // are gathered and sorted once.
        let open: Vec<&Finding> = match q.tenant.as_deref() {
            Some(t) => s
                .tenants
                .get(t)
                .map_or_else(Vec::new, |t| t.findings.iter().collect()),
            None => s.findings(),
        };
        let findings: Vec<FindingOut<'_>> = open
            .into_iter()
            .filter(|f| code.is_none_or(|c| f.code == c))
            .filter(|f| severity.is_none_or(|min| f.severity.at_least(min)))
            .map(|f| FindingOut {
                finding: f,
                since: s.since(f).map(|t| t.to_rfc3339()),
            })
            .collect();
        serde_json::to_string(&FindingsOut { findings })
    });
    match body {
        Ok(b) => ([(header::CONTENT_TYPE, "application/json")], b).into_response(),
        Err(e) => error(StatusCode::INTERNAL_SERVER_ERROR, e.to_string()),
    }
}

/// A query string that does not parse (a missing `tenant`, a repeated parameter): 400
/// with the JSON error every other 400 has.
pub(super) fn bad_query(e: QueryRejection) -> Response {
    error(
        StatusCode::BAD_REQUEST,
        format!("{}: see /openapi.json for the parameters", e.body_text()),
    )
}

async fn openapi() -> Response {
    ([(header::CONTENT_TYPE, "application/json")], OPENAPI).into_response()
}

/// `GET /[?q=TEXT | ?tenant=NAME]`: the status page (see [`page`]); 404 with a page for a
/// tenant that is not configured.
async fn status_page(
    State(state): State<ApiState>,
    q: Result<Query<page::PageQuery>, QueryRejection>,
) -> Response {
    let q = match q {
        Ok(Query(q)) => q,
        Err(e) => return bad_query(e),
    };
    let now = state.clock.now();
    match read(&state, |s, config| page::render_query(s, config, &q, now)) {
        Ok(html) => Html(html).into_response(),
        Err(html) => (StatusCode::NOT_FOUND, Html(html)).into_response(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::collections::BTreeSet;

    #[test]
    fn openapi_document_names_exactly_the_routes() {
        let doc: serde_json::Value = serde_json::from_str(OPENAPI).expect("openapi.json is JSON");
        let documented: BTreeSet<&str> = doc["paths"]
            .as_object()
            .expect("paths")
            .keys()
            .map(String::as_str)
            .collect();
        let served: BTreeSet<&str> = route_paths().into_iter().collect();
        assert_eq!(documented, served);
        assert_eq!(doc["openapi"], "3.1.0");
        assert_eq!(doc["info"]["version"], env!("CARGO_PKG_VERSION"));
    }

    #[test]
    fn openapi_code_enum_is_the_catalogue() {
        let doc: serde_json::Value = serde_json::from_str(OPENAPI).unwrap();
        let documented: Vec<&str> = doc["components"]["schemas"]["Code"]["enum"]
            .as_array()
            .unwrap()
            .iter()
            .map(|v| v.as_str().unwrap())
            .collect();
        let catalogue: Vec<&str> = Code::ALL.iter().map(|c| c.as_str()).collect();
        assert_eq!(documented, catalogue);
    }

    #[test]
    fn bearer_header_parsing() {
        let check = |v: &str, want: Option<&str>| assert_eq!(bearer_token(v), want, "{v}");
        check("Bearer abc", Some("abc"));
        check("bearer  abc ", Some("abc"));
        check("Basic abc", None);
        check("Bearer", None);
        check("Bearer ", None);
        check("", None);
    }

    #[test]
    fn token_comparison() {
        assert!(token_matches("s3cret", "s3cret"));
        assert!(!token_matches("s3cre", "s3cret"));
        assert!(!token_matches("s3cret ", "s3cret"));
        assert!(!token_matches("", "s3cret"));
    }

    #[test]
    fn readiness_waits_for_a_finished_round() {
        assert!(readiness(&Snapshot::default()).is_err());
        let s = Snapshot {
            rounds: 1,
            last_round_started: Some(crate::model::Timestamp(1)),
            last_round_finished: Some(crate::model::Timestamp(2)),
            ..Default::default()
        };
        assert_eq!(readiness(&s), Ok(()));
        // A failed commit makes it unready, with the reason, until one succeeds again.
        let mut failing = s.clone();
        failing.store.commit_error = Some("disk I/O error".into());
        let reason = readiness(&failing).unwrap_err();
        assert!(reason.contains("state store is not writable"), "{reason}");
        assert!(reason.contains("disk I/O error"), "{reason}");
        let mut next = failing.clone();
        next.judged(
            &crate::telemetry::fixtures::config(),
            "acme",
            None,
            vec![],
            &crate::detect::history::History::default(),
            crate::model::Timestamp(3),
            crate::model::Timestamp(4),
        );
        assert!(readiness(&next).is_err(), "carried until a commit succeeds");
        // Send outcomes the store could not record make it unready until they are written.
        let holding = s.clone();
        holding
            .deliveries
            .store_failed(&crate::store::StoreError::Missing {
                path: "/state".into(),
            });
        holding.deliveries.set_unrecorded(2);
        let reason = readiness(&holding).unwrap_err();
        assert!(reason.contains("2 notification outcomes wait"), "{reason}");
        holding.deliveries.set_unrecorded(0);
        assert_eq!(readiness(&holding), Ok(()));
    }
}
