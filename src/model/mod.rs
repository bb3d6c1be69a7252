//! Plain data that flows from `probe` to `detect` and on to reports: observations of one
//! probe round, findings with their subjects, and the finding-code catalogue.
//!
//! Nothing here does I/O or reads a clock; everything is serialisable so that recorded
//! rounds can be replayed in tests. Tokens and secrets never enter these types: a login is
//! recorded as the token's decoded header and claims only.

mod finding;
pub mod wire;

use serde::{Deserialize, Serialize};
use std::fmt;

/// Wall-clock time as Unix milliseconds. Always passed in from outside (probe records it,
/// detect receives `now`), never read inside the pure core.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
#[serde(transparent)]
pub struct Timestamp(pub i64);

impl Timestamp {
    /// The latest time [`Timestamp::to_rfc3339`] can write: 9999-12-31T23:59:59Z.
    pub const MAX_FORMATTED_SECS: i64 = 253_402_300_799;

    /// Numbers from the network (a token's `nbf` in milliseconds, say) may be anything:
    /// every constructor and step saturates instead of overflowing.
    pub fn from_secs(secs: i64) -> Self {
        Timestamp(secs.saturating_mul(1000))
    }
    pub fn as_secs(self) -> i64 {
        self.0.div_euclid(1000)
    }
    pub fn plus_secs(self, secs: i64) -> Self {
        Timestamp(self.0.saturating_add(secs.saturating_mul(1000)))
    }
    pub fn plus(self, d: std::time::Duration) -> Self {
        Timestamp(
            self.0
                .saturating_add(i64::try_from(d.as_millis()).unwrap_or(i64::MAX)),
        )
    }
    /// `t` in Unix milliseconds; `None` before 1970 or past the range.
    pub fn from_system_time(t: std::time::SystemTime) -> Option<Timestamp> {
        let ms = t.duration_since(std::time::UNIX_EPOCH).ok()?.as_millis();
        Some(Timestamp(i64::try_from(ms).ok()?))
    }
    /// How long after `earlier` this is; zero when it is not after it.
    pub fn since(self, earlier: Timestamp) -> std::time::Duration {
        std::time::Duration::from_millis(self.0.saturating_sub(earlier.0).max(0) as u64)
    }
    /// RFC 3339 in UTC, second precision (`2026-11-26T01:02:03Z`). Times before 1970 are
    /// written as 1970-01-01T00:00:00Z and times after year 9999 as
    /// 9999-12-31T23:59:59Z: a value from the network never makes formatting fail.
    pub fn to_rfc3339(self) -> String {
        let secs = self.as_secs().clamp(0, Self::MAX_FORMATTED_SECS);
        let t = std::time::UNIX_EPOCH + std::time::Duration::from_secs(secs as u64);
        humantime::format_rfc3339_seconds(t).to_string()
    }
}

impl fmt::Display for Timestamp {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.to_rfc3339())
    }
}

/// Finding severity, most severe first so that `Ord` sorts critical before low.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Severity {
    Critical,
    High,
    Medium,
    Low,
}

impl Severity {
    pub fn as_str(self) -> &'static str {
        match self {
            Severity::Critical => "critical",
            Severity::High => "high",
            Severity::Medium => "medium",
            Severity::Low => "low",
        }
    }
    /// True when `self` is as severe as `threshold` or more.
    pub fn at_least(self, threshold: Severity) -> bool {
        self <= threshold
    }
    pub fn parse(s: &str) -> Option<Severity> {
        match s {
            "critical" => Some(Severity::Critical),
            "high" => Some(Severity::High),
            "medium" => Some(Severity::Medium),
            "low" => Some(Severity::Low),
            _ => None,
        }
    }
}

impl fmt::Display for Severity {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.pad(self.as_str())
    }
}

pub use finding::{Code, Finding, Subject, worst};

/// Lowercase hex, as body hashes, validators, nonces and signatures are written.
pub fn hex(bytes: &[u8]) -> String {
    bytes.iter().map(|b| format!("{b:02x}")).collect()
}

/// Identifies a JWKS view within a domain: the configured path name, and the pinned edge
/// address when the path is pinned.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
pub struct ViewId {
    pub path: String,
    #[serde(skip_serializing_if = "Option::is_none", default)]
    pub edge: Option<String>,
}

/// Name of the origin view's path in reports (and a JWKS path name config reserves).
pub const ORIGIN_PATH: &str = "origin";

impl ViewId {
    /// The origin view of a domain (the cache-bypassing fetch, [`ORIGIN_PATH`]).
    pub fn origin() -> ViewId {
        ViewId {
            path: ORIGIN_PATH.to_owned(),
            edge: None,
        }
    }
}

impl fmt::Display for ViewId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&view_label(&self.path, self.edge.as_deref()))
    }
}

/// How a view is named in messages, tables and labels: `path`, or `path@edge` when pinned.
pub fn view_label(path: &str, edge: Option<&str>) -> String {
    match edge {
        Some(e) => format!("{path}@{e}"),
        None => path.to_owned(),
    }
}

/// Whether a view is what clients see through caches, or the cache-bypassing truth.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum ViewKind {
    Edge,
    Origin,
}

/// Why an HTTP fetch produced no response.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum FetchErrorKind {
    Connect,
    Timeout,
    Tls,
    Redirect,
    BodyTooLarge,
    Other,
}

/// Caching evidence from response headers, verbatim (trimmed). `cache_status` is the first
/// of `X-Cache-Status`, `X-Cache`, `CF-Cache-Status`, `Cache-Status` present.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct CacheHeaders {
    #[serde(skip_serializing_if = "Option::is_none", default)]
    pub cache_control: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none", default)]
    pub cdn_cache_control: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none", default)]
    pub surrogate_control: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none", default)]
    pub age: Option<u64>,
    #[serde(skip_serializing_if = "Option::is_none", default)]
    pub etag: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none", default)]
    pub last_modified: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none", default)]
    pub expires: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none", default)]
    pub date: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none", default)]
    pub pragma: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none", default)]
    pub cache_status: Option<String>,
    /// Which header `cache_status` came from.
    #[serde(skip_serializing_if = "Option::is_none", default)]
    pub cache_status_header: Option<String>,
}

impl CacheHeaders {
    /// The cache status read as hit/miss: `Some(true)` for HIT/STALE/UPDATING/REVALIDATED
    /// (served from cache), `Some(false)` for MISS/BYPASS/EXPIRED/DYNAMIC, `None` when absent
    /// or unrecognised. RFC 9211 `Cache-Status` counts as a hit when it says `hit`.
    pub fn served_from_cache(&self) -> Option<bool> {
        let s = self.cache_status.as_deref()?.to_ascii_lowercase();
        if s.contains("fwd=")
            || s.contains("miss")
            || s.contains("bypass")
            || s.contains("expired")
            || s.contains("dynamic")
        {
            return Some(false);
        }
        if s.contains("hit")
            || s.contains("stale")
            || s.contains("updating")
            || s.contains("revalidated")
        {
            return Some(true);
        }
        None
    }
}

/// A response, with the body reduced to what detection needs.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct HttpResponse {
    pub status: u16,
    #[serde(skip_serializing_if = "Option::is_none", default)]
    pub content_type: Option<String>,
    pub headers: CacheHeaders,
    /// Lowercase hex SHA-256 of the body.
    pub body_sha256: String,
    pub body_len: u64,
    /// Peer TLS leaf certificate, when the request used TLS.
    #[serde(skip_serializing_if = "Option::is_none", default)]
    pub tls_leaf_sha256: Option<String>,
    /// `notAfter` of the peer TLS leaf certificate (Unix seconds), when it could be read.
    #[serde(skip_serializing_if = "Option::is_none", default)]
    pub tls_leaf_not_after: Option<i64>,
    /// For a 3xx answer that was not followed (token requests): the origin its
    /// `Location` points to, never its path or query.
    #[serde(skip_serializing_if = "Option::is_none", default)]
    pub redirect_to: Option<String>,
}

/// One HTTP request as it went.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Fetch {
    /// The URL requested (never carries secrets: credentials travel in headers or bodies).
    pub url: String,
    pub started_at: Timestamp,
    pub duration_ms: u64,
    #[serde(flatten)]
    pub outcome: FetchOutcome,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(tag = "result", rename_all = "snake_case")]
pub enum FetchOutcome {
    Response(Box<HttpResponse>),
    Error {
        kind: FetchErrorKind,
        message: String,
    },
}

impl Fetch {
    pub fn response(&self) -> Option<&HttpResponse> {
        match &self.outcome {
            FetchOutcome::Response(r) => Some(r),
            FetchOutcome::Error { .. } => None,
        }
    }
}

/// One key of a JWKS, reduced to public facts. Private members are noted, never copied.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct KeyInfo {
    #[serde(skip_serializing_if = "Option::is_none", default)]
    pub kid: Option<String>,
    /// RFC 7638 JWK thumbprint (SHA-256, base64url), when the key's members allow one.
    #[serde(skip_serializing_if = "Option::is_none", default)]
    pub thumbprint: Option<String>,
    pub kty: String,
    #[serde(skip_serializing_if = "Option::is_none", default)]
    pub alg: Option<String>,
    #[serde(rename = "use", skip_serializing_if = "Option::is_none", default)]
    pub use_: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none", default)]
    pub crv: Option<String>,
    /// RSA modulus bits, or the curve's size for EC/OKP keys.
    #[serde(skip_serializing_if = "Option::is_none", default)]
    pub size_bits: Option<u32>,
    /// Names of private members present (`d`, `p`, `q`, `dp`, `dq`, `qi`, `k`).
    #[serde(skip_serializing_if = "Vec::is_empty", default)]
    pub private_members: Vec<String>,
    /// Why common parsers would reject this key; empty when it parses.
    #[serde(skip_serializing_if = "Vec::is_empty", default)]
    pub problems: Vec<String>,
    /// `x5t` as published: base64url SHA-1 of the DER certificate.
    #[serde(skip_serializing_if = "Option::is_none", default)]
    pub x5t: Option<String>,
    /// `x5t#S256` as published: base64url SHA-256 of the DER certificate.
    #[serde(rename = "x5t#S256", skip_serializing_if = "Option::is_none", default)]
    pub x5t_s256: Option<String>,
    /// Facts about the first certificate of `x5c`, when the key has one.
    #[serde(skip_serializing_if = "Option::is_none", default)]
    pub x5c: Option<X5cFacts>,
}

/// What the probe read from the first certificate of a key's `x5c` (the one that must hold
/// the key). Digests are base64url without padding, comparable with `x5t` / `x5t#S256`.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct X5cFacts {
    /// SHA-1 of the certificate's DER; `None` when `x5c[0]` is not base64.
    #[serde(skip_serializing_if = "Option::is_none", default)]
    pub leaf_sha1: Option<String>,
    /// SHA-256 of the certificate's DER; `None` when `x5c[0]` is not base64.
    #[serde(skip_serializing_if = "Option::is_none", default)]
    pub leaf_sha256: Option<String>,
    /// `notAfter` (Unix seconds).
    #[serde(skip_serializing_if = "Option::is_none", default)]
    pub not_after: Option<i64>,
    /// Whether the certificate's public key is the JWK's (`n`/`e`, `x`/`y`, or `x`);
    /// `None` when they could not be compared (unreadable certificate or JWK members).
    #[serde(skip_serializing_if = "Option::is_none", default)]
    pub matches_key: Option<bool>,
    /// Why `x5c` could not be read; `None` when its first certificate parsed.
    #[serde(skip_serializing_if = "Option::is_none", default)]
    pub parse_error: Option<String>,
}

/// A parsed JWKS body, or why it could not be read as one.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(tag = "result", rename_all = "snake_case")]
pub enum KeySetParse {
    Parsed { keys: Vec<KeyInfo> },
    Invalid { reason: String },
}

impl KeySetParse {
    pub fn keys(&self) -> &[KeyInfo] {
        match self {
            KeySetParse::Parsed { keys } => keys,
            KeySetParse::Invalid { .. } => &[],
        }
    }
}

/// One fetch of a JWKS as a client would get it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ViewObservation {
    pub id: ViewId,
    pub kind: ViewKind,
    pub fetch: Fetch,
    /// Parsed only for 2xx responses; `None` when the fetch failed or was not 2xx.
    #[serde(skip_serializing_if = "Option::is_none", default)]
    pub key_set: Option<KeySetParse>,
}

impl ViewObservation {
    /// The usable keys of this view, or an empty slice.
    pub fn keys(&self) -> &[KeyInfo] {
        self.key_set.as_ref().map(KeySetParse::keys).unwrap_or(&[])
    }
}

/// The parts of a discovery document keycanary compares.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct DiscoveryDoc {
    pub issuer: String,
    pub jwks_uri: String,
    #[serde(skip_serializing_if = "Option::is_none", default)]
    pub token_endpoint: Option<String>,
    /// Where a person signs in (the authorization-code grant starts here).
    #[serde(skip_serializing_if = "Option::is_none", default)]
    pub authorization_endpoint: Option<String>,
    #[serde(default)]
    pub id_token_signing_alg_values_supported: Vec<String>,
    /// Union of the other `*_signing_alg_values_supported` members (access tokens,
    /// userinfo, introspection, …), for checking token algs against what is advertised.
    #[serde(default)]
    pub other_signing_alg_values_supported: Vec<String>,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct DiscoveryObservation {
    pub fetch: Fetch,
    #[serde(flatten)]
    pub result: DiscoveryResult,
}

impl DiscoveryObservation {
    /// The document, when it parsed.
    pub fn doc(&self) -> Option<&DiscoveryDoc> {
        match &self.result {
            DiscoveryResult::Parsed { doc } => Some(doc),
            DiscoveryResult::Invalid { .. } => None,
        }
    }
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(tag = "doc_result", rename_all = "snake_case")]
pub enum DiscoveryResult {
    Parsed { doc: DiscoveryDoc },
    Invalid { reason: String },
}

/// Decoded JOSE header of a token.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct TokenHeader {
    pub alg: String,
    #[serde(skip_serializing_if = "Option::is_none", default)]
    pub kid: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none", default)]
    pub typ: Option<String>,
}

/// The registered claims keycanary checks. `aud` is always a list.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct TokenClaims {
    #[serde(skip_serializing_if = "Option::is_none", default)]
    pub iss: Option<String>,
    #[serde(default)]
    pub aud: Vec<String>,
    #[serde(skip_serializing_if = "Option::is_none", default)]
    pub exp: Option<i64>,
    #[serde(skip_serializing_if = "Option::is_none", default)]
    pub nbf: Option<i64>,
    #[serde(skip_serializing_if = "Option::is_none", default)]
    pub iat: Option<i64>,
}

/// Which token of a login response.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum TokenKind {
    AccessToken,
    IdToken,
}

impl TokenKind {
    pub fn as_str(self) -> &'static str {
        match self {
            TokenKind::AccessToken => "access_token",
            TokenKind::IdToken => "id_token",
        }
    }
}

/// A freshly issued JWT, decoded without verification. The token itself is not kept.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct TokenInfo {
    pub kind: TokenKind,
    pub header: TokenHeader,
    pub claims: TokenClaims,
    /// The outcome of verifying this token with each view's key set.
    pub checks: Vec<TokenCheck>,
}

/// Verifying one token against one view.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct TokenCheck {
    pub view: ViewId,
    #[serde(flatten)]
    pub result: TokenCheckResult,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(tag = "result", rename_all = "snake_case")]
pub enum TokenCheckResult {
    /// The view has the kid and the signature verifies with that key.
    Verified,
    /// The view served keys, but none with the token's kid.
    KidMissing,
    /// The view has the kid; the signature does not verify with it.
    SignatureInvalid { reason: String },
    /// The view has the kid but the key cannot be used (malformed, wrong type for alg).
    KeyUnusable { reason: String },
    /// The view had no usable key set this round (its own finding covers that).
    ViewUnavailable,
}

impl TokenCheckResult {
    /// Every result's code, in declaration order (span attributes, metric labels, reports).
    pub const CODES: [&'static str; 5] = [
        "verified",
        "kid_missing",
        "signature_invalid",
        "key_unusable",
        "view_unavailable",
    ];

    /// The result's code: bounded, no reason text.
    pub fn code(&self) -> &'static str {
        Self::CODES[match self {
            TokenCheckResult::Verified => 0,
            TokenCheckResult::KidMissing => 1,
            TokenCheckResult::SignatureInvalid { .. } => 2,
            TokenCheckResult::KeyUnusable { .. } => 3,
            TokenCheckResult::ViewUnavailable => 4,
        }]
    }
}

/// A login attempt: what was requested and what came back.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct LoginObservation {
    pub grant: String,
    /// Absent when the token URL could not even be determined (no discovery).
    #[serde(skip_serializing_if = "Option::is_none", default)]
    pub fetch: Option<Fetch>,
    #[serde(flatten)]
    pub result: LoginResult,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(tag = "login_result", rename_all = "snake_case")]
pub enum LoginResult {
    Tokens { tokens: Vec<TokenInfo> },
    Failed { reason: String },
}

/// One round of one domain.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct DomainObservation {
    pub domain: String,
    /// The configured issuer.
    pub issuer: String,
    #[serde(skip_serializing_if = "Option::is_none", default)]
    pub discovery: Option<DiscoveryObservation>,
    #[serde(skip_serializing_if = "Option::is_none", default)]
    pub login: Option<LoginObservation>,
    pub views: Vec<ViewObservation>,
}

impl DomainObservation {
    pub fn discovery_doc(&self) -> Option<&DiscoveryDoc> {
        self.discovery.as_ref()?.doc()
    }
    pub fn tokens(&self) -> &[TokenInfo] {
        match self.login.as_ref().map(|l| &l.result) {
            Some(LoginResult::Tokens { tokens }) => tokens,
            _ => &[],
        }
    }
    pub fn view(&self, id: &ViewId) -> Option<&ViewObservation> {
        self.views.iter().find(|v| &v.id == id)
    }
}

/// One probe round of one tenant: every domain, every view, every fresh token.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Observation {
    pub tenant: String,
    pub location: String,
    pub started_at: Timestamp,
    pub finished_at: Timestamp,
    pub domains: Vec<DomainObservation>,
}

#[cfg(test)]
mod tests {
    #[test]
    fn timestamps_from_any_number_format_and_step_without_panicking() {
        let check = |t: Timestamp, want: &str| assert_eq!(t.to_rfc3339(), want, "{t:?}");
        check(Timestamp(0), "1970-01-01T00:00:00Z");
        check(Timestamp::from_secs(1_764_118_923), "2025-11-26T01:02:03Z");
        // A token's nbf in milliseconds, read as seconds: year ~57000.
        check(
            Timestamp::from_secs(1_764_118_923_000),
            "9999-12-31T23:59:59Z",
        );
        check(Timestamp(i64::MAX), "9999-12-31T23:59:59Z");
        check(Timestamp(i64::MIN), "1970-01-01T00:00:00Z");
        check(Timestamp(-1), "1970-01-01T00:00:00Z");
        assert_eq!(Timestamp::from_secs(i64::MAX), Timestamp(i64::MAX));
        assert_eq!(Timestamp::from_secs(i64::MIN), Timestamp(i64::MIN));
        assert_eq!(Timestamp(i64::MAX - 1).plus_secs(10), Timestamp(i64::MAX));
        assert_eq!(
            Timestamp(1).plus(std::time::Duration::MAX),
            Timestamp(i64::MAX)
        );
        assert_eq!(format!("{}", Timestamp(i64::MAX)), "9999-12-31T23:59:59Z");
    }

    use super::*;

    #[test]
    fn code_names_round_trip_and_match_serde() {
        for &code in Code::ALL {
            assert_eq!(Code::parse(code.as_str()), Some(code));
            let json = serde_json::to_string(&code).unwrap();
            assert_eq!(json, format!("\"{}\"", code.as_str()));
        }
        assert_eq!(Code::ALL.len(), 28);
    }

    #[test]
    fn severity_threshold() {
        assert!(Severity::Critical.at_least(Severity::High));
        assert!(Severity::High.at_least(Severity::High));
        assert!(!Severity::Medium.at_least(Severity::High));
    }

    #[test]
    fn cache_status_reading() {
        let check = |s: &str, want: Option<bool>| {
            let h = CacheHeaders {
                cache_status: Some(s.into()),
                ..Default::default()
            };
            assert_eq!(h.served_from_cache(), want, "{s}");
        };
        check("HIT", Some(true));
        check("MISS", Some(false));
        check("EXPIRED", Some(false));
        check("TCP_HIT", Some(true));
        check("Hit from cloudfront", Some(true));
        check("ExampleCache; hit", Some(true));
        check("ExampleCache; fwd=uri-miss", Some(false));
        check("weird", None);
    }
}
