//! The lab: a simulated identity provider behind a simulated caching CDN, in one HTTP
//! server, for tests and demos of keycanary. It reproduces the seed incident on demand: a
//! key rotation while a CDN still serves the old JWKS.
//!
//! # Population (fixed)
//! | tenant | alg | first kid |
//! |---|---|---|
//! | `acme` | RS256 (RSA 2048) | `acme-k1` |
//! | `globex` | ES256 (P-256) | `globex-k1` |
//! | `initech` | EdDSA (Ed25519) | `initech-k1` |
//!
//! Every tenant is served on two domains, `app` and `io`, each with its own CDN cache and
//! caching policy (default: the origin sends `Cache-Control: public, max-age=60`, the CDN
//! honours it). Keys are real and generated at start; kids count up per tenant
//! (`acme-k2`, `acme-k3`, …). Access tokens live 300 s. Client `keycanary` / secret
//! `lab-secret`; user `probe` / password `lab-password`; refresh token `lab-refresh-token`.
//!
//! # Routes (B = [`Lab::base_url`])
//! - Through the CDN of domain `d`: `B/{d}/{t}/.well-known/openid-configuration`,
//!   `B/{d}/{t}/jwks` (GET, cached, see [`cdn`]), `B/{d}/{t}/token` (POST, passed through).
//! - The origin, never cached: `B/origin/{d}/{t}/…`, the same three.
//! - The issuer of tenant `t` on domain `d` is `B/{d}/{t}`, whichever route served it.
//! - The admin API under `B/admin/` (see [`admin`]); every operation is also a method of
//!   [`Lab`].
//!
//! # Admin JSON
//! [`CachePolicyUpdate`]: a member left out leaves that setting unchanged;
//! `override_ttl_secs` and `origin_cache_control` take `null` to clear them:
//! `{"override_ttl_secs": 600}`, `{"override_ttl_secs": null, "cache_errors": true}`.
//! [`OriginFailure`]: `{"tenant": "acme", "domain": "io", "status": 503, "count": 1}`
//! (`domain` optional, `count` defaults to 1).
//!
//! All time comes from [`LabOptions::clock`], so a `ManualClock` drives `Age`, expiry,
//! `Date` and token `iat`. State is one `std::sync::Mutex`, never held across `.await`.
//!
//! Deliberately not here: TLS, several edges per domain, an authorization endpoint (it is
//! advertised in discovery for metadata validators but not served), persistence. The lab
//! is not a security boundary: it binds where it is told, with fixed credentials.

pub mod admin;
pub mod cdn;
pub mod idp;
pub mod keys;

pub use admin::{DomainView, LabStateView, OriginFailure, TenantView};
pub use cdn::{CachePolicy, CachePolicyUpdate, CacheStatus};
pub use idp::{KeyStatus, KeyView};
pub use keys::KeyAlg;

use crate::clock::SharedClock;
use crate::model::Timestamp;
use axum::Router;
use axum::extract::{Request, State};
use axum::http::{HeaderName, HeaderValue, Method, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::routing::{any, get, post};
use serde_json::{Value, json};
use std::collections::{BTreeMap, HashSet};
use std::net::SocketAddr;
use std::sync::{Arc, Mutex, MutexGuard, PoisonError};
use tokio::sync::oneshot;
use tokio::task::JoinHandle;

/// Where the lab listens and which clock it reads.
pub struct LabOptions {
    /// Port 0 picks a free port; read it back with [`Lab::addr`].
    pub listen: SocketAddr,
    pub clock: SharedClock,
}

/// A running lab. Dropping it stops the server too, without waiting.
pub struct Lab {
    addr: SocketAddr,
    base_url: String,
    app: AppState,
    shutdown: oneshot::Sender<()>,
    task: JoinHandle<()>,
}

/// Binds `opts.listen`, generates the tenants' first keys and serves until shut down.
pub async fn start(opts: LabOptions) -> anyhow::Result<Lab> {
    let listener = tokio::net::TcpListener::bind(opts.listen).await?;
    let addr = listener.local_addr()?;
    let base_url = format!("http://{addr}");
    let now = opts.clock.now();
    let state = tokio::task::spawn_blocking({
        let base_url = base_url.clone();
        move || LabState::new(base_url, now)
    })
    .await??;
    let app = AppState {
        shared: Arc::new(Mutex::new(state)),
        clock: opts.clock,
    };
    let router = router(app.clone());
    let (shutdown, signal) = oneshot::channel::<()>();
    let task = tokio::spawn(async move {
        let serve = axum::serve(listener, router).with_graceful_shutdown(async move {
            // A dropped sender (the Lab dropped) stops the server as well.
            let _ = signal.await;
        });
        if let Err(e) = serve.await {
            tracing::warn!(error = %e, "lab server stopped with an error");
        }
    });
    tracing::info!(%base_url, "lab started");
    Ok(Lab {
        addr,
        base_url,
        app,
        shutdown,
        task,
    })
}

impl Lab {
    /// `http://127.0.0.1:PORT`, without a trailing slash.
    pub fn base_url(&self) -> &str {
        &self.base_url
    }

    pub fn addr(&self) -> SocketAddr {
        self.addr
    }

    /// Stops accepting connections and waits for open ones to finish.
    pub async fn shutdown(self) {
        let _ = self.shutdown.send(());
        if let Err(e) = self.task.await {
            tracing::warn!(error = %e, "lab server task failed");
        }
    }

    /// Publishes a new key of the tenant's algorithm, not signing yet. Returns its kid.
    pub fn stage(&self, tenant: &str) -> anyhow::Result<String> {
        Ok(admin::stage(&self.app, tenant)?)
    }

    /// The newest staged key becomes the signer; the old signer stays published.
    pub fn promote(&self, tenant: &str) -> anyhow::Result<String> {
        Ok(admin::promote(&self.app, tenant)?)
    }

    /// Unpublishes every key but the signer. Returns the kids removed.
    pub fn retire(&self, tenant: &str) -> anyhow::Result<Vec<String>> {
        Ok(admin::retire(&self.app, tenant)?)
    }

    /// Stage and promote in one step: the unsafe rotation. Returns the new signer's kid.
    pub fn rotate(&self, tenant: &str) -> anyhow::Result<String> {
        Ok(admin::rotate(&self.app, tenant)?)
    }

    /// The signer keeps its kid but gets new key material. Returns the kid.
    pub fn replace_key_material(&self, tenant: &str) -> anyhow::Result<String> {
        Ok(admin::replace_key_material(&self.app, tenant)?)
    }

    /// Publishes `jwk` verbatim in the tenant's JWKS (it must be a JSON object). Returns
    /// its `kid` when it has a string one.
    pub fn publish_raw(&self, tenant: &str, jwk: Value) -> anyhow::Result<Option<String>> {
        Ok(admin::publish_raw(&self.app, tenant, jwk)?)
    }

    pub fn set_cache(&self, domain: &str, policy: CachePolicyUpdate) -> anyhow::Result<()> {
        admin::set_cache(&self.app, domain, &policy)?;
        Ok(())
    }

    /// Empties the domain's CDN cache.
    pub fn purge(&self, domain: &str) -> anyhow::Result<()> {
        admin::purge(&self.app, domain)?;
        Ok(())
    }

    /// Makes the next `count` origin JWKS responses of the tenant (on one domain, or any)
    /// fail with `status` and an HTML body.
    pub fn fail_origin(&self, failure: OriginFailure) -> anyhow::Result<()> {
        admin::fail_origin(&self.app, failure)?;
        Ok(())
    }

    /// Makes refresh_token grants rotate the token (`true`): the one presented is used up
    /// and the answer carries a new one.
    pub fn rotate_refresh_tokens(&self, rotate: bool) {
        admin::rotate_refresh_tokens(&self.app, rotate);
    }

    pub fn signer_kid(&self, tenant: &str) -> Option<String> {
        let state = self.app.lock();
        Some(state.tenants.get(tenant)?.signer_kid().to_owned())
    }

    /// What `GET /admin/state` returns.
    pub fn state(&self) -> LabStateView {
        admin::state_view(&self.app)
    }
}

/// Why a lab operation or request was refused.
#[derive(Debug, thiserror::Error)]
pub enum LabError {
    #[error("unknown tenant `{0}`: the lab has acme, globex and initech")]
    UnknownTenant(String),
    #[error("unknown domain `{0}`: the lab has app and io")]
    UnknownDomain(String),
    #[error("tenant `{0}` has no staged key: stage one first")]
    NothingStaged(String),
    #[error("bad request: {0}")]
    BadRequest(String),
    #[error(transparent)]
    Key(#[from] keys::KeyError),
    #[error("internal error: {0}")]
    Internal(String),
}

impl LabError {
    fn status(&self) -> u16 {
        match self {
            LabError::UnknownTenant(_) | LabError::UnknownDomain(_) => 404,
            LabError::NothingStaged(_) => 409,
            LabError::BadRequest(_) => 400,
            LabError::Key(_) | LabError::Internal(_) => 500,
        }
    }

    fn code(&self) -> &'static str {
        match self {
            LabError::UnknownTenant(_) | LabError::UnknownDomain(_) => "not_found",
            LabError::NothingStaged(_) => "conflict",
            LabError::BadRequest(_) => "invalid_request",
            LabError::Key(_) | LabError::Internal(_) => "server_error",
        }
    }

    fn reply(&self) -> Reply {
        error_reply(self.status(), self.code(), &self.to_string())
    }
}

impl IntoResponse for LabError {
    fn into_response(self) -> Response {
        self.reply().into_response()
    }
}

/// An HTTP response as a value: what the origin produces and the CDN stores.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Reply {
    pub status: u16,
    /// Lowercase names; at most one value per name.
    pub headers: Vec<(&'static str, String)>,
    pub body: Vec<u8>,
}

impl Reply {
    pub fn new(status: u16, body: Vec<u8>) -> Self {
        Reply {
            status,
            headers: Vec::new(),
            body,
        }
    }

    pub fn json(status: u16, value: &Value) -> Self {
        Reply::new(status, value.to_string().into_bytes())
            .with_header("content-type", "application/json")
    }

    /// Sets a header, replacing any value it had. `name` must be lowercase.
    pub fn with_header(mut self, name: &'static str, value: impl Into<String>) -> Self {
        self.headers.retain(|(n, _)| *n != name);
        self.headers.push((name, value.into()));
        self
    }

    pub fn header(&self, name: &str) -> Option<&str> {
        self.headers
            .iter()
            .find(|(n, _)| n.eq_ignore_ascii_case(name))
            .map(|(_, v)| v.as_str())
    }
}

impl IntoResponse for Reply {
    fn into_response(self) -> Response {
        let status = StatusCode::from_u16(self.status).unwrap_or(StatusCode::INTERNAL_SERVER_ERROR);
        let mut response = (status, self.body).into_response();
        let headers = response.headers_mut();
        for (name, value) in self.headers {
            if let Ok(value) = HeaderValue::from_str(&value) {
                headers.insert(HeaderName::from_static(name), value);
            }
        }
        response
    }
}

/// `{"error": code, "message": message}` with `status`.
fn error_reply(status: u16, code: &str, message: &str) -> Reply {
    Reply::json(status, &json!({ "error": code, "message": message }))
}

/// The handlers' view of the lab: shared state and the clock.
#[derive(Clone)]
struct AppState {
    shared: Arc<Mutex<LabState>>,
    clock: SharedClock,
}

impl AppState {
    /// Locks the state. A panic while locked cannot leave it half-updated in a way that
    /// matters to a test double, so a poisoned lock is used as is.
    fn lock(&self) -> MutexGuard<'_, LabState> {
        self.shared.lock().unwrap_or_else(PoisonError::into_inner)
    }

    fn now(&self) -> Timestamp {
        self.clock.now()
    }
}

/// One domain: its caching policy and its CDN cache.
#[derive(Debug, Default)]
struct Domain {
    policy: CachePolicy,
    cache: cdn::Cache,
}

/// Everything the lab knows.
#[derive(Debug)]
struct LabState {
    base_url: String,
    started_at: Timestamp,
    tenants: BTreeMap<String, idp::Tenant>,
    domains: BTreeMap<String, Domain>,
    failures: Vec<OriginFailure>,
    refresh_tokens: HashSet<String>,
    /// Whether a refresh_token grant rotates the token: the one presented is used up
    /// (presenting it again is `invalid_grant`) and a new one is issued.
    rotate_refresh_tokens: bool,
    used_refresh_tokens: HashSet<String>,
}

const POPULATION: [(&str, KeyAlg); 3] = [
    ("acme", KeyAlg::RS256),
    ("globex", KeyAlg::ES256),
    ("initech", KeyAlg::EdDSA),
];
const DOMAINS: [&str; 2] = ["app", "io"];

impl LabState {
    fn new(base_url: String, now: Timestamp) -> Result<Self, LabError> {
        let mut tenants = BTreeMap::new();
        for (name, alg) in POPULATION {
            let first = keys::generate(alg)?;
            tenants.insert(name.to_owned(), idp::Tenant::new(name, first, now));
        }
        let domains = DOMAINS
            .iter()
            .map(|d| ((*d).to_owned(), Domain::default()))
            .collect();
        Ok(LabState {
            base_url,
            started_at: now,
            tenants,
            domains,
            failures: Vec::new(),
            refresh_tokens: HashSet::new(),
            rotate_refresh_tokens: false,
            used_refresh_tokens: HashSet::new(),
        })
    }

    fn tenant(&self, name: &str) -> Result<&idp::Tenant, LabError> {
        self.tenants
            .get(name)
            .ok_or_else(|| LabError::UnknownTenant(name.to_owned()))
    }

    fn tenant_mut(&mut self, name: &str) -> Result<&mut idp::Tenant, LabError> {
        self.tenants
            .get_mut(name)
            .ok_or_else(|| LabError::UnknownTenant(name.to_owned()))
    }

    fn domain_mut(&mut self, name: &str) -> Result<&mut Domain, LabError> {
        self.domains
            .get_mut(name)
            .ok_or_else(|| LabError::UnknownDomain(name.to_owned()))
    }

    fn issuer(&self, domain: &str, tenant: &str) -> String {
        format!("{}/{domain}/{tenant}", self.base_url)
    }
}

fn router(app: AppState) -> Router {
    Router::new()
        .route("/admin/state", get(admin::get_state))
        .route("/admin/refresh-tokens", post(admin::post_refresh_tokens))
        .route("/admin/tenants/{tenant}/stage", post(admin::post_stage))
        .route("/admin/tenants/{tenant}/promote", post(admin::post_promote))
        .route("/admin/tenants/{tenant}/retire", post(admin::post_retire))
        .route("/admin/tenants/{tenant}/rotate", post(admin::post_rotate))
        .route(
            "/admin/tenants/{tenant}/replace-key-material",
            post(admin::post_replace_key_material),
        )
        .route(
            "/admin/tenants/{tenant}/publish-raw",
            post(admin::post_publish_raw),
        )
        .route("/admin/domains/{domain}/cache", post(admin::post_cache))
        .route("/admin/domains/{domain}/purge", post(admin::post_purge))
        .route("/admin/origin/fail", post(admin::post_origin_fail))
        .route("/origin/{*rest}", any(origin_route))
        .fallback(cdn_route)
        .method_not_allowed_fallback(method_not_allowed)
        .with_state(app)
}

async fn method_not_allowed() -> Reply {
    error_reply(
        405,
        "method_not_allowed",
        "method not allowed on this route",
    )
}

/// Largest token request body read (the admin routes take axum's default limit).
const BODY_LIMIT: usize = 64 * 1024;

/// `B/origin/{domain}/{tenant}/…`: straight to the origin.
async fn origin_route(State(app): State<AppState>, req: Request) -> Reply {
    let path = req.uri().path().to_owned();
    let rest = path.strip_prefix("/origin/").unwrap_or_default();
    let Some((domain, rest)) = rest.split_once('/') else {
        return not_found(&path);
    };
    if !app.lock().domains.contains_key(domain) {
        return LabError::UnknownDomain(domain.to_owned()).reply();
    }
    match *req.method() {
        Method::GET | Method::HEAD => {
            let now = app.now();
            idp::origin_get(&mut app.lock(), domain, rest, now)
        }
        Method::POST => token_request(&app, domain, rest, req).await,
        _ => method_not_allowed().await,
    }
}

/// `B/{domain}/{tenant}/…`: through the domain's CDN.
async fn cdn_route(State(app): State<AppState>, req: Request) -> Reply {
    let path = req.uri().path().to_owned();
    let key = req
        .uri()
        .path_and_query()
        .map_or_else(|| path.clone(), |pq| pq.as_str().to_owned());
    let Some((domain, rest)) = path.trim_start_matches('/').split_once('/') else {
        return not_found(&path);
    };
    if !app.lock().domains.contains_key(domain) {
        return LabError::UnknownDomain(domain.to_owned()).reply();
    }
    match *req.method() {
        Method::GET | Method::HEAD => {
            let refresh = req
                .headers()
                .get("x-refresh")
                .is_some_and(|v| v.as_bytes().trim_ascii() == b"1");
            let now = app.now();
            let mut guard = app.lock();
            let state = &mut *guard;
            let Some(d) = state.domains.get(domain) else {
                return LabError::UnknownDomain(domain.to_owned()).reply();
            };
            let policy = d.policy.clone();
            let status = match d.cache.lookup(&key, refresh, now) {
                Ok(hit) => return hit,
                Err(status) => status,
            };
            let reply = idp::origin_get(state, domain, rest, now);
            match state.domains.get_mut(domain) {
                Some(d) => d.cache.store(&key, status, reply, &policy, now),
                None => reply,
            }
        }
        // The token endpoint is never cached: the CDN passes it through.
        Method::POST => token_request(&app, domain, rest, req).await,
        _ => method_not_allowed().await,
    }
}

async fn token_request(app: &AppState, domain: &str, rest: &str, req: Request) -> Reply {
    let Some(tenant) = rest.strip_suffix("/token").filter(|t| !t.contains('/')) else {
        return method_not_allowed().await;
    };
    let (parts, body) = req.into_parts();
    let body = match axum::body::to_bytes(body, BODY_LIMIT).await {
        Ok(b) => b,
        Err(e) => return error_reply(400, "invalid_request", &format!("unreadable body: {e}")),
    };
    idp::token(app, domain, tenant, &parts.headers, &body)
}

fn not_found(path: &str) -> Reply {
    error_reply(404, "not_found", &format!("no such lab resource: {path}"))
}
