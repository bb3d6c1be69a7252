//! Client profile data: the shape of a JWKS consumer's caching behaviour ([`ClientProfile`]),
//! the built-in table from the finding catalogue ([`builtin`]) and the profiles simulated
//! when a tenant names none ([`DEFAULT_PROFILES`]).
//!
//! Plain data, so that config can name and validate profiles without depending on
//! detection. What a profile *does* to a key rotation (lag, staleness budget, replay) is
//! simulated in `detect::profiles`, which uses these types from here.

use std::time::Duration;

/// What a consumer does when a JWKS fetch fails.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum OnFetchFailure {
    /// Keeps serving the last good key set.
    KeepLastGood,
    /// Rejects tokens until a fetch succeeds.
    Error,
    /// Clears its cache and rejects (PyJWT).
    ClearCache,
    /// Not documented; treated as `Error` (the cautious reading).
    Unknown,
}

/// The five parameters of a JWKS consumer.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ClientProfile {
    pub name: String,
    /// How long the consumer keeps a fetched set. `None`: until a refetch is triggered.
    /// For `honours_headers` profiles this is the fallback when headers say nothing.
    pub ttl: Option<Duration>,
    pub refetch_on_unknown_kid: bool,
    /// Minimum time between refetches triggered by an unknown kid. `None`: no cooldown.
    pub cooldown: Option<Duration>,
    pub honours_headers: bool,
    pub on_fetch_failure: OnFetchFailure,
}

const MIN: u64 = 60;
const HOUR: u64 = 3600;

/// The built-in profiles, read from each consumer's source or documentation.
pub fn builtin() -> Vec<ClientProfile> {
    use OnFetchFailure::*;
    let p = |name: &str,
             ttl: Option<u64>,
             refetch: bool,
             cooldown: Option<u64>,
             honours: bool,
             fail| ClientProfile {
        name: name.to_owned(),
        ttl: ttl.map(Duration::from_secs),
        refetch_on_unknown_kid: refetch,
        cooldown: cooldown.map(Duration::from_secs),
        honours_headers: honours,
        on_fetch_failure: fail,
    };
    vec![
        p("jose", Some(10 * MIN), true, Some(30), false, Error),
        p("jwks-rsa", Some(10 * MIN), true, None, false, Error),
        p(
            "keyfunc",
            Some(HOUR),
            true,
            Some(5 * MIN),
            false,
            KeepLastGood,
        ),
        p("go_oidc", None, true, None, false, KeepLastGood),
        p("spring", Some(5 * MIN), true, None, false, Error),
        p("spring_webflux", None, true, None, false, KeepLastGood),
        p("nimbus", Some(5 * MIN), true, Some(30), false, Error),
        p(
            "microsoft",
            Some(12 * HOUR),
            true,
            Some(5 * MIN),
            false,
            KeepLastGood,
        ),
        p("pyjwt", Some(5 * MIN), true, None, false, ClearCache),
        p("quarkus", None, true, Some(10 * MIN), false, KeepLastGood),
        p(
            "jwks_client_rs",
            Some(24 * HOUR),
            true,
            None,
            false,
            KeepLastGood,
        ),
        p("envoy", Some(10 * MIN), false, None, false, Error),
        p("istio", Some(20 * MIN), false, None, false, KeepLastGood),
        p("kong_oidc", None, true, Some(30), false, KeepLastGood),
        p(
            "azure_apim",
            Some(HOUR),
            true,
            Some(5 * MIN),
            false,
            KeepLastGood,
        ),
        p("apigee", Some(5 * MIN), false, None, false, Unknown),
        p("aws_http_api", Some(2 * HOUR), false, None, false, Unknown),
        p("oathkeeper", Some(30), true, None, false, Error),
        p("honours_http", None, true, Some(30), true, KeepLastGood),
    ]
}

/// Profiles simulated for a tenant that names none.
pub const DEFAULT_PROFILES: &[&str] = &["jose", "keyfunc", "spring", "envoy", "honours_http"];
