//! The lab's admin API: the operations that stage an incident (key lifecycle, cache
//! policy, purges, origin failures), as plain functions shared by [`super::Lab`]'s methods
//! and the JSON routes under `/admin/`.
//!
//! | route | body | answer |
//! |---|---|---|
//! | `GET /admin/state` | | [`LabStateView`] |
//! | `POST /admin/tenants/{t}/stage` | | `{"kid"}`: new key published, not signing |
//! | `POST /admin/tenants/{t}/promote` | | `{"kid"}`: newest staged key signs (409 if none) |
//! | `POST /admin/tenants/{t}/retire` | | `{"removed": [kid…]}`: all but the signer unpublished |
//! | `POST /admin/tenants/{t}/rotate` | | `{"kid"}`: stage + promote at once |
//! | `POST /admin/tenants/{t}/replace-key-material` | | `{"kid"}`: signer's kid, new key |
//! | `POST /admin/tenants/{t}/publish-raw` | a JWK object | `{"kid"}` (or null): published verbatim |
//! | `POST /admin/domains/{d}/cache` | [`CachePolicyUpdate`] | `{"policy"}`: the new policy |
//! | `POST /admin/domains/{d}/purge` | | `{"purged": n}`: entries dropped |
//! | `POST /admin/origin/fail` | [`OriginFailure`] | `{"pending": [...]}` |
//! | `POST /admin/refresh-tokens` | `{"rotate": bool}` | `{"rotate"}`: whether refresh_token grants rotate the token |
//!
//! Errors are JSON `{"error", "message"}`: 404 unknown tenant/domain, 400 bad body or a
//! failure status outside 200–599, 409
//! nothing to promote. Key generation runs on a blocking thread.
//!
//! Deliberately not here: authentication (the lab is a local test double), and any change
//! to a tenant's algorithm or the population.

use super::cdn::{CachePolicy, CachePolicyUpdate, EntryView};
use super::idp::KeyView;
use super::keys::{self, KeyAlg};
use super::{AppState, LabError, Reply};
use crate::model::Timestamp;
use axum::body::Bytes;
use axum::extract::{Path, State};
use serde::{Deserialize, Serialize, de::DeserializeOwned};
use serde_json::{Value, json};

/// An injected origin failure: the next `count` origin JWKS responses of `tenant` (on
/// `domain`, or on any domain when absent) are `status` with an HTML body. `status` is 200
/// to 599: 200 is the "soft error" page some proxies and WAFs serve. The page carries the
/// domain's origin `Cache-Control`, so a 200 page is cached like a JWKS would be, while an
/// error status is cached only with `cache_errors`. Counts every origin JWKS response,
/// whether a CDN miss or a `B/origin/…` request asked for it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct OriginFailure {
    pub tenant: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub domain: Option<String>,
    pub status: u16,
    #[serde(default = "one")]
    pub count: u32,
}

fn one() -> u32 {
    1
}

/// `GET /admin/state`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct LabStateView {
    pub base_url: String,
    pub now: Timestamp,
    pub tenants: Vec<TenantView>,
    pub domains: Vec<DomainView>,
    pub origin_failures: Vec<OriginFailure>,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct TenantView {
    pub name: String,
    pub alg: KeyAlg,
    pub signer_kid: String,
    pub keys: Vec<KeyView>,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct DomainView {
    pub name: String,
    pub policy: CachePolicy,
    pub cache: Vec<EntryView>,
}

pub(super) fn state_view(app: &AppState) -> LabStateView {
    let now = app.now();
    let state = app.lock();
    LabStateView {
        base_url: state.base_url.clone(),
        now,
        tenants: state
            .tenants
            .iter()
            .map(|(name, t)| TenantView {
                name: name.clone(),
                alg: t.alg(),
                signer_kid: t.signer_kid().to_owned(),
                keys: t.key_views(),
            })
            .collect(),
        domains: state
            .domains
            .iter()
            .map(|(name, d)| DomainView {
                name: name.clone(),
                policy: d.policy.clone(),
                cache: d.cache.view(now),
            })
            .collect(),
        origin_failures: state.failures.clone(),
    }
}

/// Generates a key of the tenant's algorithm without holding the lock.
fn generate_for(app: &AppState, tenant: &str) -> Result<keys::KeyMaterial, LabError> {
    let alg = app.lock().tenant(tenant)?.alg();
    Ok(keys::generate(alg)?)
}

pub(super) fn stage(app: &AppState, tenant: &str) -> Result<String, LabError> {
    let material = generate_for(app, tenant)?;
    let now = app.now();
    let kid = app.lock().tenant_mut(tenant)?.stage(material, now);
    tracing::info!(tenant, kid, "lab: key staged");
    Ok(kid)
}

pub(super) fn promote(app: &AppState, tenant: &str) -> Result<String, LabError> {
    let now = app.now();
    let kid = app.lock().tenant_mut(tenant)?.promote(now)?;
    tracing::info!(tenant, kid, "lab: key promoted");
    Ok(kid)
}

pub(super) fn retire(app: &AppState, tenant: &str) -> Result<Vec<String>, LabError> {
    let now = app.now();
    let removed = app.lock().tenant_mut(tenant)?.retire(now);
    tracing::info!(tenant, ?removed, "lab: keys retired");
    Ok(removed)
}

pub(super) fn rotate(app: &AppState, tenant: &str) -> Result<String, LabError> {
    let material = generate_for(app, tenant)?;
    let now = app.now();
    let mut state = app.lock();
    let t = state.tenant_mut(tenant)?;
    t.stage(material, now);
    let kid = t.promote(now)?;
    tracing::info!(
        tenant,
        kid,
        "lab: key rotated (staged and promoted at once)"
    );
    Ok(kid)
}

pub(super) fn replace_key_material(app: &AppState, tenant: &str) -> Result<String, LabError> {
    let material = generate_for(app, tenant)?;
    let now = app.now();
    let kid = app
        .lock()
        .tenant_mut(tenant)?
        .replace_signer_material(material, now);
    tracing::info!(tenant, kid, "lab: signer key material replaced");
    Ok(kid)
}

pub(super) fn publish_raw(
    app: &AppState,
    tenant: &str,
    jwk: Value,
) -> Result<Option<String>, LabError> {
    let now = app.now();
    app.lock().tenant_mut(tenant)?.publish_raw(jwk, now)
}

pub(super) fn set_cache(
    app: &AppState,
    domain: &str,
    update: &CachePolicyUpdate,
) -> Result<CachePolicy, LabError> {
    let mut state = app.lock();
    let d = state.domain_mut(domain)?;
    d.policy.apply(update);
    tracing::info!(domain, policy = ?d.policy, "lab: cache policy set");
    Ok(d.policy.clone())
}

pub(super) fn purge(app: &AppState, domain: &str) -> Result<usize, LabError> {
    let purged = app.lock().domain_mut(domain)?.cache.purge();
    tracing::info!(domain, purged, "lab: cache purged");
    Ok(purged)
}

pub(super) fn fail_origin(
    app: &AppState,
    failure: OriginFailure,
) -> Result<Vec<OriginFailure>, LabError> {
    if !(200..=599).contains(&failure.status) {
        return Err(LabError::BadRequest(format!(
            "status {} cannot carry an error page: use 200 to 599",
            failure.status
        )));
    }
    if failure.count == 0 {
        return Err(LabError::BadRequest("count must be at least 1".into()));
    }
    let mut state = app.lock();
    state.tenant(&failure.tenant)?;
    if let Some(d) = &failure.domain {
        state.domain_mut(d)?;
    }
    state.failures.push(failure);
    Ok(state.failures.clone())
}

/// Runs a lab operation that may generate keys on a blocking thread.
async fn blocking<T: Send + 'static>(
    f: impl FnOnce() -> Result<T, LabError> + Send + 'static,
) -> Result<T, LabError> {
    tokio::task::spawn_blocking(f)
        .await
        .map_err(|e| LabError::Internal(e.to_string()))?
}

fn parse_body<T: DeserializeOwned>(body: &[u8]) -> Result<T, LabError> {
    serde_json::from_slice(body).map_err(|e| LabError::BadRequest(format!("body: {e}")))
}

fn ok(value: Value) -> Reply {
    Reply::json(200, &value)
}

pub(super) async fn get_state(State(app): State<AppState>) -> Reply {
    Reply::json(200, &json!(state_view(&app)))
}

pub(super) async fn post_stage(
    State(app): State<AppState>,
    Path(tenant): Path<String>,
) -> Result<Reply, LabError> {
    let kid = blocking(move || stage(&app, &tenant)).await?;
    Ok(ok(json!({ "kid": kid })))
}

pub(super) async fn post_promote(
    State(app): State<AppState>,
    Path(tenant): Path<String>,
) -> Result<Reply, LabError> {
    Ok(ok(json!({ "kid": promote(&app, &tenant)? })))
}

pub(super) async fn post_retire(
    State(app): State<AppState>,
    Path(tenant): Path<String>,
) -> Result<Reply, LabError> {
    Ok(ok(json!({ "removed": retire(&app, &tenant)? })))
}

pub(super) async fn post_rotate(
    State(app): State<AppState>,
    Path(tenant): Path<String>,
) -> Result<Reply, LabError> {
    let kid = blocking(move || rotate(&app, &tenant)).await?;
    Ok(ok(json!({ "kid": kid })))
}

pub(super) async fn post_replace_key_material(
    State(app): State<AppState>,
    Path(tenant): Path<String>,
) -> Result<Reply, LabError> {
    let kid = blocking(move || replace_key_material(&app, &tenant)).await?;
    Ok(ok(json!({ "kid": kid })))
}

pub(super) async fn post_publish_raw(
    State(app): State<AppState>,
    Path(tenant): Path<String>,
    body: Bytes,
) -> Result<Reply, LabError> {
    let jwk: Value = parse_body(&body)?;
    Ok(ok(json!({ "kid": publish_raw(&app, &tenant, jwk)? })))
}

pub(super) async fn post_cache(
    State(app): State<AppState>,
    Path(domain): Path<String>,
    body: Bytes,
) -> Result<Reply, LabError> {
    let update: CachePolicyUpdate = parse_body(&body)?;
    Ok(ok(json!({ "policy": set_cache(&app, &domain, &update)? })))
}

pub(super) async fn post_purge(
    State(app): State<AppState>,
    Path(domain): Path<String>,
) -> Result<Reply, LabError> {
    Ok(ok(json!({ "purged": purge(&app, &domain)? })))
}

/// `POST /admin/refresh-tokens`.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct RefreshRotation {
    rotate: bool,
}

/// Whether a refresh_token grant rotates the token (see `idp`).
pub(super) fn rotate_refresh_tokens(app: &AppState, rotate: bool) {
    app.lock().rotate_refresh_tokens = rotate;
    tracing::info!(rotate, "lab: refresh token rotation");
}

pub(super) async fn post_refresh_tokens(
    State(app): State<AppState>,
    body: Bytes,
) -> Result<Reply, LabError> {
    let r: RefreshRotation = parse_body(&body)?;
    rotate_refresh_tokens(&app, r.rotate);
    Ok(ok(json!({ "rotate": r.rotate })))
}

pub(super) async fn post_origin_fail(
    State(app): State<AppState>,
    body: Bytes,
) -> Result<Reply, LabError> {
    let failure: OriginFailure = parse_body(&body)?;
    Ok(ok(json!({ "pending": fail_origin(&app, failure)? })))
}
