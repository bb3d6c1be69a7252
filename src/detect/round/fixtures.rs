//! Test fixtures for the round rules: a clean round of tenant `acme` (domains `app` and
//! `io` in one group, each with an origin view and a `cdn` edge view serving `k1`, and one
//! access token signed by `k1`) that tests bend one field at a time, and [`check`].

use super::round_findings;
use crate::config::fixtures::TomlFixture;
use crate::config::{self, Config, MemorySecrets};
use crate::model::*;
use std::path::Path;

/// `now` of every test round.
pub const NOW: Timestamp = Timestamp(1_800_000_000_000);

/// The fixture's `probes.toml`: tenant `acme` with domains `app` and `io`, each logging in
/// with a client secret from `SECRET` and serving one JWKS path `cdn`.
pub fn probes_toml() -> String {
    let mut t = TomlFixture::tenant("acme")
        .setting("allowed_algs = [\"RS256\", \"ES256\", \"EdDSA\"]")
        .setting("max_clock_skew = \"60s\"");
    for domain in ["app", "io"] {
        t = t
            .domain(domain, &issuer(domain))
            .login("keycanary", "SECRET")
            .resource("https://api.example");
    }
    t.to_string()
}

pub fn config() -> Config {
    let secrets = MemorySecrets::new().with_env("SECRET", "test-secret");
    config::parse(&probes_toml(), "test.toml", Path::new("."), &secrets)
        .expect("test config is valid")
}

pub fn issuer(domain: &str) -> String {
    format!("https://idp.example.{domain}/acme")
}

/// An RSA 2048 signing key whose thumbprint is `tp-{kid}`.
pub fn key(kid: &str) -> KeyInfo {
    KeyInfo {
        kid: Some(kid.to_owned()),
        thumbprint: Some(format!("tp-{kid}")),
        kty: "RSA".into(),
        alg: Some("RS256".into()),
        use_: Some("sig".into()),
        crv: None,
        size_bits: Some(2048),
        private_members: vec![],
        problems: vec![],
        x5t: None,
        x5t_s256: None,
        x5c: None,
    }
}

/// What the lab's CDN sends on a hit.
pub fn hit_headers() -> CacheHeaders {
    CacheHeaders {
        cache_control: Some("public, max-age=300".into()),
        age: Some(10),
        cache_status: Some("HIT".into()),
        cache_status_header: Some("X-Cache-Status".into()),
        ..Default::default()
    }
}

pub fn response(status: u16, headers: CacheHeaders) -> FetchOutcome {
    FetchOutcome::Response(Box::new(HttpResponse {
        status,
        content_type: Some("application/json".into()),
        headers,
        body_sha256: "00".into(),
        body_len: 100,
        tls_leaf_sha256: None,
        tls_leaf_not_after: None,
        redirect_to: None,
    }))
}

/// A view that answered 200 with these keys.
pub fn view(path: &str, kind: ViewKind, keys: Vec<KeyInfo>) -> ViewObservation {
    let headers = match kind {
        ViewKind::Edge => hit_headers(),
        ViewKind::Origin => CacheHeaders {
            cache_control: Some("public, max-age=300".into()),
            ..Default::default()
        },
    };
    ViewObservation {
        id: ViewId {
            path: path.to_owned(),
            edge: None,
        },
        kind,
        fetch: Fetch {
            url: format!("https://cdn.example/{path}/jwks"),
            started_at: NOW,
            duration_ms: 20,
            outcome: response(200, headers),
        },
        key_set: Some(KeySetParse::Parsed { keys }),
    }
}

/// A fresh access token from `domain`, signed by `kid` with RS256, verified on `views`.
pub fn token(domain: &str, kid: &str, views: &[&ViewObservation]) -> TokenInfo {
    let now = NOW.as_secs();
    TokenInfo {
        kind: TokenKind::AccessToken,
        header: TokenHeader {
            alg: "RS256".into(),
            kid: Some(kid.to_owned()),
            typ: Some("at+jwt".into()),
        },
        claims: TokenClaims {
            iss: Some(issuer(domain)),
            aud: vec!["https://api.example".into()],
            exp: Some(now + 300),
            nbf: None,
            iat: Some(now - 10),
        },
        checks: views
            .iter()
            .map(|v| TokenCheck {
                view: v.id.clone(),
                result: TokenCheckResult::Verified,
            })
            .collect(),
    }
}

pub fn domain(name: &str) -> DomainObservation {
    let views = vec![
        view("origin", ViewKind::Origin, vec![key("k1")]),
        view("cdn", ViewKind::Edge, vec![key("k1")]),
    ];
    let tokens = vec![token(name, "k1", &views.iter().collect::<Vec<_>>())];
    let iss = issuer(name);
    DomainObservation {
        domain: name.to_owned(),
        issuer: iss.clone(),
        discovery: Some(DiscoveryObservation {
            fetch: Fetch {
                url: format!("{iss}/.well-known/openid-configuration"),
                started_at: NOW,
                duration_ms: 20,
                outcome: response(200, CacheHeaders::default()),
            },
            result: DiscoveryResult::Parsed {
                doc: DiscoveryDoc {
                    jwks_uri: format!("{iss}/jwks"),
                    token_endpoint: Some(format!("{iss}/token")),
                    authorization_endpoint: None,
                    id_token_signing_alg_values_supported: vec!["RS256".into()],
                    other_signing_alg_values_supported: vec![],
                    issuer: iss,
                },
            },
        }),
        login: Some(LoginObservation {
            grant: "client_credentials".into(),
            fetch: None,
            result: LoginResult::Tokens { tokens },
        }),
        views,
    }
}

/// The clean round: no rule fires on it.
pub fn obs() -> Observation {
    Observation {
        tenant: "acme".into(),
        location: "test".into(),
        started_at: NOW,
        finished_at: NOW,
        domains: vec![domain("app"), domain("io")],
    }
}

pub fn app(o: &mut Observation) -> &mut DomainObservation {
    &mut o.domains[0]
}

pub fn io(o: &mut Observation) -> &mut DomainObservation {
    &mut o.domains[1]
}

/// The `cdn` edge view of domain `i`.
pub fn cdn(o: &mut Observation, i: usize) -> &mut ViewObservation {
    &mut o.domains[i].views[1]
}

/// The origin view of domain `i`.
pub fn origin(o: &mut Observation, i: usize) -> &mut ViewObservation {
    &mut o.domains[i].views[0]
}

/// The headers of the `cdn` edge view of domain `i`.
pub fn cdn_headers(o: &mut Observation, i: usize) -> &mut CacheHeaders {
    match &mut cdn(o, i).fetch.outcome {
        FetchOutcome::Response(r) => &mut r.headers,
        FetchOutcome::Error { .. } => panic!("cdn view has no response"),
    }
}

/// The `i`th token of domain `app`.
pub fn tok(o: &mut Observation, i: usize) -> &mut TokenInfo {
    match &mut app(o).login.as_mut().expect("login").result {
        LoginResult::Tokens { tokens } => &mut tokens[i],
        LoginResult::Failed { .. } => panic!("login failed"),
    }
}

pub fn keys(o: &mut Observation, i: usize, view: usize, keys: Vec<KeyInfo>) {
    o.domains[i].views[view].key_set = Some(KeySetParse::Parsed { keys });
}

pub fn run(o: &Observation) -> Vec<Finding> {
    run_with(o, &config().tenants[0])
}

pub fn run_with(o: &Observation, tenant: &config::Tenant) -> Vec<Finding> {
    let c = config();
    let findings = round_findings(o, tenant, &c, NOW);
    for f in &findings {
        assert!(!f.message.contains('\n'), "multi-line message: {f:?}");
        assert!(
            f.message.chars().next().is_some_and(|c| !c.is_uppercase()),
            "message must start lowercase: {f:?}"
        );
    }
    findings
}

/// A subject in test shorthand: `domain/path@edge#kid`.
pub fn short(s: &Subject) -> String {
    let mut out = s.domain.clone().unwrap_or_default();
    if let Some(p) = &s.path {
        out.push('/');
        out.push_str(p);
    }
    if let Some(e) = &s.edge {
        out.push('@');
        out.push_str(e);
    }
    if let Some(k) = &s.kid {
        out.push('#');
        out.push_str(k);
    }
    out
}

/// Applies `edit` to the clean round and asserts which subjects `code` fires on (in output
/// order). Returns those findings so that callers can look at messages.
pub fn check(code: Code, edit: impl FnOnce(&mut Observation), expected: &[&str]) -> Vec<Finding> {
    let mut o = obs();
    edit(&mut o);
    check_obs(code, &o, &config().tenants[0], expected)
}

pub fn check_obs(
    code: Code,
    o: &Observation,
    tenant: &config::Tenant,
    expected: &[&str],
) -> Vec<Finding> {
    let found: Vec<Finding> = run_with(o, tenant)
        .into_iter()
        .filter(|f| f.code == code)
        .collect();
    let subjects: Vec<String> = found.iter().map(|f| short(&f.subject)).collect();
    assert_eq!(subjects, expected, "{code} findings: {found:#?}");
    for f in &found {
        assert_eq!(f.subject.tenant, "acme");
        assert_eq!(f.severity, code.severity());
    }
    found
}

/// The message of the only finding.
pub fn message(found: &[Finding]) -> &str {
    assert_eq!(found.len(), 1, "{found:#?}");
    &found[0].message
}
