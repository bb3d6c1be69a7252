//! Test fixtures shared by the metrics and status-page tests: a one-tenant config and a
//! snapshot of the seed incident (the `io` edge serves `k1` from cache while `k2` signs).

use crate::config::fixtures::TomlFixture;
use crate::config::{self, Config, MemorySecrets};
use crate::detect::history::History;
use crate::model::*;
use crate::snapshot::Snapshot;
use std::path::Path;

pub fn config() -> Config {
    let text = TomlFixture::tenant("acme")
        .domain("io", "https://idp.example/io/acme")
        .login("c", "S")
        .to_string();
    let secrets = MemorySecrets::new().with_env("S", "x");
    config::parse(&text, "t.toml", Path::new("."), &secrets).unwrap()
}

pub fn key(kid: &str) -> KeyInfo {
    KeyInfo {
        kid: Some(kid.into()),
        thumbprint: None,
        kty: "RSA".into(),
        alg: None,
        use_: None,
        crv: None,
        size_bits: Some(2048),
        private_members: vec![],
        problems: vec![],
        x5t: None,
        x5t_s256: None,
        x5c: None,
    }
}

pub fn view(path: &str, kind: ViewKind, age: Option<u64>, kids: &[&str]) -> ViewObservation {
    ViewObservation {
        id: ViewId {
            path: path.into(),
            edge: None,
        },
        kind,
        fetch: Fetch {
            url: "http://x/jwks".into(),
            started_at: Timestamp(0),
            duration_ms: 250,
            outcome: FetchOutcome::Response(Box::new(HttpResponse {
                status: 200,
                content_type: None,
                headers: CacheHeaders {
                    age,
                    ..Default::default()
                },
                body_sha256: String::new(),
                body_len: 0,
                tls_leaf_sha256: None,
                tls_leaf_not_after: None,
                redirect_to: None,
            })),
        },
        key_set: Some(KeySetParse::Parsed {
            keys: kids.iter().map(|k| key(k)).collect(),
        }),
    }
}

/// The seed incident: the io edge serves k1 from cache, the origin k1+k2, k2 signs. The
/// round's durations (250 ms per fetch, 120 ms for the login) are in the histograms.
pub fn incident() -> Snapshot {
    let checks = vec![
        TokenCheck {
            view: ViewId {
                path: "cdn".into(),
                edge: None,
            },
            result: TokenCheckResult::KidMissing,
        },
        TokenCheck {
            view: ViewId {
                path: "origin".into(),
                edge: None,
            },
            result: TokenCheckResult::Verified,
        },
    ];
    let obs = Observation {
        tenant: "acme".into(),
        location: "lab".into(),
        started_at: Timestamp(1_000),
        finished_at: Timestamp(2_000),
        domains: vec![DomainObservation {
            domain: "io".into(),
            issuer: "https://idp.example/io/acme".into(),
            discovery: None,
            login: Some(LoginObservation {
                grant: "client_credentials".into(),
                fetch: Some(Fetch {
                    duration_ms: 120,
                    ..view("token", ViewKind::Origin, None, &[]).fetch
                }),
                result: LoginResult::Tokens {
                    tokens: vec![TokenInfo {
                        kind: TokenKind::AccessToken,
                        header: TokenHeader {
                            alg: "RS256".into(),
                            kid: Some("k2".into()),
                            typ: None,
                        },
                        claims: TokenClaims::default(),
                        checks,
                    }],
                },
            }),
            views: vec![
                view("cdn", ViewKind::Edge, Some(42), &["k1"]),
                view("origin", ViewKind::Origin, None, &["k1", "k2"]),
            ],
        }],
    };
    let finding = Finding::new(
        Code::KidMissing,
        Subject::view(
            "acme",
            "io",
            &ViewId {
                path: "cdn".into(),
                edge: None,
            },
        )
        .with_kid(Some("k2")),
        "k2 missing",
    );
    let mut s = Snapshot::default().after_round(
        &config(),
        vec![obs],
        vec![finding],
        &History::default(),
        Timestamp(1_000),
        Timestamp(2_500),
    );
    let observation = s.observation("acme").cloned().expect("judged");
    s.durations.observe(&observation, true);
    s
}

/// acme's latest observation in `s`, to edit in a test.
pub fn obs_mut(s: &mut Snapshot) -> &mut Observation {
    let entry = s.tenants.get_mut("acme").expect("acme was judged");
    std::sync::Arc::make_mut(entry.observation.as_mut().expect("acme has a round"))
}

/// acme's open findings in `s`, to edit in a test.
pub fn findings_mut(s: &mut Snapshot) -> &mut Vec<Finding> {
    &mut s.tenants.get_mut("acme").expect("acme was judged").findings
}

/// `s` with acme's history replaced by `history`'s acme part.
pub fn set_history(s: &mut Snapshot, history: &History) {
    s.tenants.get_mut("acme").expect("acme was judged").history = history
        .tenant("acme")
        .map(|h| std::sync::Arc::new(h.clone()));
}
