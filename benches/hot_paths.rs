//! Micro-benchmarks of a round's hot paths (README "Performance"):
//!
//! ```text
//! cargo bench --bench hot_paths            # all of them
//! cargo bench --bench hot_paths -- judge   # those whose name contains "judge"
//! ```
//!
//! - `jwks/parse`: one JWKS body (three keys: RS256, ES256, EdDSA) parsed, every key's
//!   facts and RFC 7638 thumbprint taken — what every view's fetch costs after the body.
//! - `verify/ALG`: one access token decoded and verified against a domain's five views that
//!   served the same body (four pinned edges and the origin: one signature check, reused).
//! - `judge/incident-round`: one tenant's judgement (detection over an hour of history —
//!   120 rounds at 30 s — then the alert step and routing) on the seed incident's round.
//! - `alert/step`: the alert state machine alone on that round's findings.
//! - `metrics/render-tenants` and `metrics/scrape`: at 10,000 views (the lab's tenants
//!   repeated), every tenant's sample lines rendered after its judgement, and a whole
//!   `/metrics` body assembled from them.
//!
//! The inputs are real: the built-in lab (a simulated IdP behind a caching CDN) is started
//! on a loopback port and probed by keycanary's own prober; the incident is the lab's
//! rotation while io's CDN keeps the key set for ten minutes.

use criterion::{BatchSize, Criterion, criterion_group, criterion_main};
use keycanary::alert::{self, AlertState};
use keycanary::clock;
use keycanary::config::{self, Config};
use keycanary::detect::history::History;
use keycanary::judge::judge;
use keycanary::lab::keys::{self, KeyAlg};
use keycanary::lab::{self, CachePolicyUpdate, Lab, LabOptions};
use keycanary::model::{Observation, Timestamp, TokenKind, ViewId};
use keycanary::probe::{Prober, jwks, token};
use keycanary::snapshot::Snapshot;
use keycanary::telemetry::metrics::{self, BuildInfo};
use serde_json::json;
use std::hint::black_box;
use std::path::Path;
use std::sync::Arc;

/// The interval the history is recorded at, and how many rounds it holds.
const INTERVAL_MS: i64 = 30_000;
const HISTORY_ROUNDS: i64 = 120;
/// The fleet size `/metrics` is rendered at.
const FLEET_VIEWS: usize = 10_000;

fn jwks_and_tokens() -> (Vec<u8>, Vec<(KeyAlg, String)>) {
    let mut jwks = Vec::new();
    let mut tokens = Vec::new();
    for alg in [KeyAlg::RS256, KeyAlg::ES256, KeyAlg::EdDSA] {
        let key = keys::generate(alg).expect("generate a key");
        let kid = format!("{alg}-key");
        jwks.push(key.jwk(&kid));
        let claims = json!({
            "iss": "https://idp.example/acme", "sub": "keycanary", "aud": "api",
            "iat": 1_900_000_000, "exp": 1_900_003_600,
        });
        tokens.push((alg, key.sign(&kid, "at+jwt", &claims).expect("sign")));
    }
    (
        serde_json::to_vec(&json!({ "keys": jwks })).unwrap(),
        tokens,
    )
}

fn bench_jwks_and_verify(c: &mut Criterion) {
    let (body, tokens) = jwks_and_tokens();
    c.bench_function("jwks/parse", |b| b.iter(|| jwks::parse(black_box(&body))));
    let (_, raw) = jwks::parse(&body);
    let views: Vec<token::ViewKeys<'_>> = ["127.0.0.2", "127.0.0.3", "127.0.0.4", "127.0.0.5"]
        .iter()
        .map(|edge| token::ViewKeys {
            view: ViewId {
                path: "cdn".into(),
                edge: Some((*edge).into()),
            },
            keys: Some(&raw),
        })
        .chain([token::ViewKeys {
            view: ViewId::origin(),
            keys: Some(&raw),
        }])
        .collect();
    for (alg, jwt) in &tokens {
        c.bench_function(&format!("verify/{alg}"), |b| {
            b.iter(|| {
                let decoded = token::decode(TokenKind::AccessToken, black_box(jwt)).expect("a JWT");
                decoded.check_against(&views)
            })
        });
    }
}

/// The shipped probes.toml pointed at a lab on `base` (the `[lab]` table dropped, the lab's
/// secret files found from the repository).
fn lab_config(base: &str, dir: &Path) -> Config {
    let repo = Path::new(env!("CARGO_MANIFEST_DIR"));
    let text = std::fs::read_to_string(repo.join("probes.toml"))
        .expect("probes.toml")
        .replace("\n[lab]\n", "\n")
        .replace("listen = \"127.0.0.1:8765\"\n", "")
        .replace("http://127.0.0.1:8765", base)
        .replace(
            "file = \"lab/",
            &format!("file = \"{}/", repo.join("lab").display()),
        );
    let path = dir.join("probes.toml");
    std::fs::write(&path, text).unwrap();
    config::load(&path).expect("the shipped config, on the lab")
}

/// A healthy round of every lab tenant and the seed incident's round, probed for real.
struct LabRounds {
    config: Config,
    healthy: Vec<Observation>,
    incident: Vec<Observation>,
}

fn lab_rounds() -> LabRounds {
    let rt = tokio::runtime::Runtime::new().unwrap();
    let dir = tempfile::tempdir().unwrap();
    rt.block_on(async {
        let lab: Lab = lab::start(LabOptions {
            listen: "127.0.0.1:0".parse().unwrap(),
            clock: clock::system(),
        })
        .await
        .expect("start the lab");
        let config = lab_config(lab.base_url(), dir.path());
        let prober = Prober::new(&config, clock::system()).unwrap();
        lab.set_cache(
            "io",
            CachePolicyUpdate {
                override_ttl_secs: Some(Some(600)),
                ..Default::default()
            },
        )
        .unwrap();
        let healthy = prober.round(&config).await;
        lab.rotate("acme").unwrap();
        let incident = prober.round(&config).await;
        lab.shutdown().await;
        LabRounds {
            config,
            healthy,
            incident,
        }
    })
}

/// `o` as if it started at `at` (its duration kept).
fn at(o: &Observation, at: Timestamp) -> Observation {
    let mut o = o.clone();
    let took = o.finished_at.0 - o.started_at.0;
    o.started_at = at;
    o.finished_at = Timestamp(at.0 + took);
    o
}

fn bench_judge_and_step(c: &mut Criterion, rounds: &LabRounds) {
    let config = &rounds.config;
    let tenant = "acme";
    let healthy = rounds.healthy.iter().find(|o| o.tenant == tenant).unwrap();
    let incident = rounds.incident.iter().find(|o| o.tenant == tenant).unwrap();
    let start = healthy.started_at.0;
    let mut history = History::default();
    let mut alerts = AlertState::default();
    for i in 0..HISTORY_ROUNDS {
        let now = Timestamp(start + i * INTERVAL_MS);
        let o = at(healthy, now);
        let v = judge(
            config,
            &mut history,
            &alerts,
            &[],
            tenant,
            Some(&o),
            &[],
            now,
        );
        alerts = v.alerts;
    }
    let now = Timestamp(start + HISTORY_ROUNDS * INTERVAL_MS);
    let round = at(incident, now);
    let verdict = judge(
        config,
        &mut history.clone(),
        &alerts,
        &[],
        tenant,
        Some(&round),
        &[],
        now,
    );
    assert!(
        verdict
            .findings
            .iter()
            .any(|f| f.code.as_str() == "kid_missing"),
        "the lab's incident round raises kid_missing: {:?}",
        verdict.findings
    );
    c.bench_function("judge/incident-round", |b| {
        b.iter_batched(
            || history.clone(),
            |mut h| judge(config, &mut h, &alerts, &[], tenant, Some(&round), &[], now),
            BatchSize::LargeInput,
        )
    });
    c.bench_function("alert/step", |b| {
        b.iter(|| {
            alert::step(
                &alerts,
                black_box(&verdict.findings),
                &config.alerting.policy,
                &[],
                now,
            )
        })
    });
}

/// The lab's tenants repeated (renamed) until they have `FLEET_VIEWS` views, each judged
/// once into a snapshot.
fn fleet_snapshot(rounds: &LabRounds) -> (Config, Snapshot, Vec<String>) {
    let views_per_round: usize = rounds
        .healthy
        .iter()
        .flat_map(|o| &o.domains)
        .map(|d| d.views.len())
        .sum();
    let copies = FLEET_VIEWS.div_ceil(views_per_round.max(1));
    let mut config = rounds.config.clone();
    let originals = std::mem::take(&mut config.tenants);
    let mut observations = Vec::new();
    for i in 0..copies {
        for original in &originals {
            let mut t = original.clone();
            t.name = format!("{}-{i:04}", original.name);
            if let Some(o) = rounds.healthy.iter().find(|o| o.tenant == original.name) {
                let mut o = o.clone();
                o.tenant = t.name.clone();
                observations.push(o);
            }
            config.tenants.push(t);
        }
    }
    config.reindex_tenants();
    let mut snapshot = Snapshot::default();
    let mut history = History::default();
    let mut names = Vec::new();
    for o in observations {
        let now = o.finished_at;
        let v = judge(
            &config,
            &mut history,
            &AlertState::default(),
            &[],
            &o.tenant,
            Some(&o),
            &[],
            now,
        );
        names.push(o.tenant.clone());
        snapshot.judged(
            &config,
            &o.tenant.clone(),
            Some(Arc::new(o)),
            v.findings,
            &history,
            now,
            now,
        );
    }
    (config, snapshot, names)
}

fn bench_metrics(c: &mut Criterion, rounds: &LabRounds) {
    let (config, mut snapshot, names) = fleet_snapshot(rounds);
    let views: usize = snapshot
        .tenants
        .values()
        .filter_map(|t| t.observation.as_ref())
        .flat_map(|o| &o.domains)
        .map(|d| d.views.len())
        .sum();
    assert!(views >= FLEET_VIEWS, "{views} views");
    let mut group = c.benchmark_group("metrics");
    group.sample_size(10);
    group.bench_function("render-tenants", |b| {
        b.iter(|| {
            names
                .iter()
                .map(|t| metrics::render_tenant(&snapshot, &config, t))
                .collect::<Vec<_>>()
        })
    });
    for t in &names {
        let text = metrics::render_tenant(&snapshot, &config, t);
        snapshot.tenants.get_mut(t).unwrap().exposition = Some(Arc::new(text));
    }
    group.bench_function("scrape", |b| {
        b.iter(|| metrics::render(&snapshot, &config, BuildInfo::current()).len())
    });
    group.finish();
}

fn benches(c: &mut Criterion) {
    bench_jwks_and_verify(c);
    let rounds = lab_rounds();
    bench_judge_and_step(c, &rounds);
    bench_metrics(c, &rounds);
}

criterion_group!(hot_paths, benches);
criterion_main!(hot_paths);
