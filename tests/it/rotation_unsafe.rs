//! Unsafe key rotations against the lab, one test per variant, in-process over real HTTP.
//!
//! The lab and the prober share one [`ManualClock`]: rounds are counted, never waited for.
//! Between rounds the clock moves by the configured interval (30 s), as the daemon would.
//! Every test first runs a healthy baseline and asserts it is clean for acme, then stages
//! the unsafe step and asserts the named finding (tenant, domain, view, kid) at the round
//! where the lab's timing says it must appear.
//!
//! CDN timing, for reading the round numbers below: the lab CDN stores the JWKS for the
//! origin's `max-age=60` and rounds are 30 s apart, so with round 1 at T the edges fetch
//! from the origin at rounds 1, 3, 5, … (age 60 counts as expired) and serve a cached copy
//! aged 30 s at rounds 2, 4, 6, …. An action right after an odd round therefore meets the
//! edges' cached old set at the next round; one right after an even round does not.

use keycanary::clock::{Clock, ManualClock, SharedClock};
use keycanary::config::{self, Config};
use keycanary::detect::{self, history::History};
use keycanary::lab::{self, CachePolicyUpdate, Lab, LabOptions, OriginFailure};
use keycanary::model::{Code, Finding, Severity};
use keycanary::probe::Prober;
use serde_json::json;
use std::fmt::Write as _;
use std::sync::Arc;

/// No test runs more rounds than this.
const MAX_ROUNDS: usize = 40;
/// Healthy rounds before any action.
const BASELINE_ROUNDS: usize = 2;
const TENANT: &str = "acme";

/// A lab, a prober and a detection history sharing one manual clock.
struct Rig {
    lab: Lab,
    clock: ManualClock,
    config: Config,
    prober: Prober,
    history: History,
    /// Every round so far: its number (from 1) and findings.
    rounds: Vec<Vec<Finding>>,
    _dir: tempfile::TempDir,
}

impl Rig {
    async fn start() -> Rig {
        let clock = ManualClock::starting_now();
        let shared: SharedClock = Arc::new(clock.clone());
        let lab = lab::start(LabOptions {
            listen: "127.0.0.1:0".parse().expect("address"),
            clock: shared.clone(),
        })
        .await
        .expect("lab starts");
        let dir = tempfile::tempdir().expect("tempdir");
        let path = crate::check::shipped_config_for(lab.base_url(), dir.path());
        let config = config::load(&path).unwrap_or_else(|e| panic!("shipped config: {e}"));
        assert_eq!(config.settings.interval.as_secs(), 30, "shipped interval");
        let prober = Prober::new(&config, shared).expect("prober");
        Rig {
            lab,
            clock,
            config,
            prober,
            history: History::default(),
            rounds: Vec::new(),
            _dir: dir,
        }
    }

    /// The number of the next round (from 1).
    fn next(&self) -> usize {
        self.rounds.len() + 1
    }

    /// One probe round at the current time, judged with the history; returns its findings.
    async fn round(&mut self) -> Vec<Finding> {
        assert!(
            self.rounds.len() < MAX_ROUNDS,
            "more than {MAX_ROUNDS} rounds\n{}",
            self.log()
        );
        let obs = self.prober.round(&self.config).await;
        let findings = detect::assess(&self.config, &mut self.history, &obs, self.clock.now());
        self.rounds.push(findings.clone());
        findings
    }

    /// Moves the clock by one interval, then runs a round. The first round of a rig runs at
    /// the start time.
    async fn step(&mut self) -> Vec<Finding> {
        if !self.rounds.is_empty() {
            self.clock.advance(self.config.settings.interval);
        }
        self.round().await
    }

    /// `n` healthy rounds: no critical or high finding for acme, none of `codes` at all.
    async fn baseline(&mut self, n: usize, codes: &[Code]) {
        for _ in 0..n {
            let findings = self.step().await;
            let bad: Vec<&Finding> = findings
                .iter()
                .filter(|f| f.subject.tenant == TENANT)
                .filter(|f| f.severity.at_least(Severity::High) || codes.contains(&f.code))
                .collect();
            assert!(
                bad.is_empty(),
                "baseline round {} of the healthy lab is not clean for {TENANT}: {}\n{}",
                self.rounds.len(),
                dump(bad.into_iter()),
                self.log()
            );
        }
    }

    /// Steps until `want` matches a finding, at most `limit` rounds; returns the round
    /// number where it first did.
    async fn step_until(&mut self, want: &Want<'_>, limit: usize) -> usize {
        for _ in 0..limit {
            let findings = self.step().await;
            if findings.iter().any(|f| want.matches(f)) {
                return self.rounds.len();
            }
        }
        panic!(
            "{want} did not appear within {limit} rounds after round {}\n{}",
            self.rounds.len() - limit,
            self.log()
        );
    }

    /// The findings of round `n` (from 1).
    fn at(&self, n: usize) -> &[Finding] {
        &self.rounds[n - 1]
    }

    /// Asserts round `n` has a finding matching `want`; returns the matches.
    fn expect(&self, n: usize, want: &Want<'_>) -> Vec<&Finding> {
        let hits: Vec<&Finding> = self.at(n).iter().filter(|f| want.matches(f)).collect();
        assert!(
            !hits.is_empty(),
            "round {n}: expected {want}\n{}",
            self.log()
        );
        hits
    }

    /// Asserts round `n` has no finding matching `want`.
    fn expect_none(&self, n: usize, want: &Want<'_>) {
        let hits = self.at(n).iter().filter(|f| want.matches(f));
        let hits = dump(hits);
        assert!(
            hits.is_empty(),
            "round {n}: expected no {want}, got: {hits}\n{}",
            self.log()
        );
    }

    /// Asserts no round before `n` (the baseline and anything before the action) had a
    /// finding with `want`'s code for acme, whatever its subject.
    fn expect_absent_before(&self, n: usize, want: &Want<'_>) {
        let any = Want::code(want.code);
        for r in 1..n {
            self.expect_none(r, &any);
        }
    }

    /// Every round's findings, for failure messages.
    fn log(&self) -> String {
        let mut out = String::from("findings by round:");
        for (i, findings) in self.rounds.iter().enumerate() {
            let _ = write!(out, "\n--- round {} ({} findings)", i + 1, findings.len());
            for f in findings {
                let _ = write!(out, "\n  {}", line(f));
            }
        }
        out
    }

    async fn shutdown(self) {
        self.lab.shutdown().await;
    }
}

fn line(f: &Finding) -> String {
    format!(
        "{:<8} {:<26} {} :: {}",
        f.severity, f.code, f.subject, f.message
    )
}

fn dump<'a>(findings: impl Iterator<Item = &'a Finding>) -> String {
    findings.map(|f| format!("\n  {}", line(f))).collect()
}

/// Which finding a test waits for: a code of tenant acme, and optionally its domain,
/// view (path) and kid.
#[derive(Debug, Clone, Copy)]
struct Want<'a> {
    code: Code,
    domain: Option<&'a str>,
    path: Option<&'a str>,
    kid: Option<&'a str>,
}

impl<'a> Want<'a> {
    fn code(code: Code) -> Self {
        Want {
            code,
            domain: None,
            path: None,
            kid: None,
        }
    }
    fn view(self, domain: &'a str, path: &'a str) -> Self {
        Want {
            domain: Some(domain),
            path: Some(path),
            ..self
        }
    }
    fn kid(self, kid: &'a str) -> Self {
        Want {
            kid: Some(kid),
            ..self
        }
    }
    fn matches(&self, f: &Finding) -> bool {
        let s = &f.subject;
        let field = |want: Option<&str>, got: &Option<String>| {
            want.is_none_or(|w| got.as_deref() == Some(w))
        };
        f.code == self.code
            && s.tenant == TENANT
            && field(self.domain, &s.domain)
            && field(self.path, &s.path)
            && field(self.kid, &s.kid)
    }
}

impl std::fmt::Display for Want<'_> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{} for tenant={TENANT}", self.code)?;
        if let Some(d) = self.domain {
            write!(f, " domain={d}")?;
        }
        if let Some(p) = self.path {
            write!(f, " path={p}")?;
        }
        if let Some(k) = self.kid {
            write!(f, " kid={k}")?;
        }
        Ok(())
    }
}

/// Stage and promote at once (no time for the new key to reach the caches): the edges
/// still serve the old set, so fresh tokens carry a kid they lack.
#[tokio::test(flavor = "multi_thread")]
async fn promote_without_staging() {
    let mut rig = Rig::start().await;
    let activated = Want::code(Code::KeyActivatedEarly);
    let missing = Want::code(Code::KidMissing);
    rig.baseline(BASELINE_ROUNDS, &[activated.code, missing.code])
        .await;
    // One more healthy round: the edges refresh their copies here (round 3, see the module
    // docs), so the rotation lands while they hold the old set for another 60 s.
    rig.baseline(1, &[activated.code, missing.code]).await;
    let old_kid = rig.lab.signer_kid(TENANT).expect("signer");
    let new_kid = rig.lab.rotate(TENANT).expect("rotate");
    assert_ne!(old_kid, new_kid);

    let first = rig.next();
    rig.step().await;
    for domain in ["app", "io"] {
        rig.expect(first, &missing.view(domain, "cdn").kid(&new_kid));
        rig.expect_none(first, &missing.view(domain, "origin"));
    }
    rig.expect(first, &activated.kid(&new_kid));
    rig.expect_absent_before(first, &activated);
    rig.expect_absent_before(first, &missing);

    // Once the edges refetch, the kid is everywhere: kid_missing resolves, while the
    // activation stays early until the new key has been visible for the staleness budget.
    rig.step().await;
    rig.expect_none(first + 1, &missing);
    rig.expect(first + 1, &activated.kid(&new_kid));
    rig.shutdown().await;
}

/// Stage, promote and retire in one go: the old key disappears while the tokens it signed
/// in the last round (300 s lifetime) are still valid.
#[tokio::test(flavor = "multi_thread")]
async fn retire_too_early() {
    let mut rig = Rig::start().await;
    let removed = Want::code(Code::KeyRemovedEarly);
    rig.baseline(BASELINE_ROUNDS, &[removed.code]).await;
    let old_kid = rig.lab.signer_kid(TENANT).expect("signer");
    rig.lab.stage(TENANT).expect("stage");
    let new_kid = rig.lab.promote(TENANT).expect("promote");
    assert_eq!(
        rig.lab.retire(TENANT).expect("retire"),
        std::slice::from_ref(&old_kid),
        "only the old signer is retired"
    );
    let retired_at = rig.clock.now();

    // Round 3: every view (the edges refetch here) has lost the old kid.
    let first = rig.next();
    rig.step().await;
    for domain in ["app", "io"] {
        for path in ["origin", "cdn"] {
            rig.expect(first, &removed.view(domain, path).kid(&old_kid));
        }
    }
    rig.expect_none(first, &removed.kid(&new_kid));
    rig.expect_absent_before(first, &removed);

    // It stays open while a token signed by the old key is valid: issued at the last
    // baseline round (= retired_at) for 300 s, plus the configured 60 s clock skew.
    let skew = rig.config.settings.max_clock_skew.as_secs() as i64;
    let valid_until = retired_at.plus_secs(300 + skew);
    loop {
        let n = rig.next();
        rig.step().await;
        if rig.clock.now() < valid_until {
            rig.expect(n, &removed.kid(&old_kid));
        } else {
            rig.expect_none(n, &removed);
            break;
        }
    }
    rig.shutdown().await;
}

/// The io CDN ignores the origin's max-age=60 and keeps copies for 600 s.
#[tokio::test(flavor = "multi_thread")]
async fn edge_ttl_override() {
    let mut rig = Rig::start().await;
    let exceeded = Want::code(Code::CacheTtlExceeded);
    rig.baseline(BASELINE_ROUNDS, &[exceeded.code]).await;
    rig.lab
        .set_cache(
            "io",
            CachePolicyUpdate {
                override_ttl_secs: Some(Some(600)),
                ..Default::default()
            },
        )
        .expect("set_cache");

    // Round 3 stores io's copy for 600 s; rounds 4 and 5 serve it aged 30 and 60 s (still
    // within max-age); round 6 serves it aged 90 s: 30 s past its declared lifetime.
    let first = rig.step_until(&exceeded.view("io", "cdn"), 10).await;
    assert_eq!(
        first,
        6,
        "cache_ttl_exceeded should appear when the copy is first older than 60 s\n{}",
        rig.log()
    );
    rig.expect_absent_before(first, &exceeded);
    let f = rig.expect(first, &exceeded.view("io", "cdn"));
    assert!(
        f.iter().all(|f| f.message.contains("aged 90 s")),
        "{}",
        dump(f.into_iter())
    );
    // It stays while io keeps the copy (until round 23, 600 s after round 3).
    for _ in 0..4 {
        let n = rig.next();
        rig.step().await;
        rig.expect(n, &exceeded.view("io", "cdn"));
    }
    // The app domain honours the origin: never over its lifetime.
    for n in 1..=rig.rounds.len() {
        rig.expect_none(n, &exceeded.view("app", "cdn"));
        rig.expect_none(n, &exceeded.view("io", "origin"));
    }
    rig.shutdown().await;
}

/// The io CDN caches errors, its cache is purged, and the origin answers 503 twice (the
/// edge's refetch and the origin view): the edge then serves the 503 from cache.
///
/// The lab caches an error for 10 s unless the domain has an override TTL, and rounds are
/// 30 s apart, so a 503 cached with the default error TTL has always expired by the next
/// round (the prober only sees the MISS that stored it: `jwks_fetch_failed`). The CDN here
/// therefore also overrides the TTL (600 s), as a `proxy_cache_valid any 10m` would.
#[tokio::test(flavor = "multi_thread")]
async fn cached_503() {
    let mut rig = Rig::start().await;
    let cached = Want::code(Code::ErrorCached);
    let failed = Want::code(Code::JwksFetchFailed);
    rig.baseline(BASELINE_ROUNDS, &[cached.code]).await;
    rig.lab
        .set_cache(
            "io",
            CachePolicyUpdate {
                cache_errors: Some(true),
                override_ttl_secs: Some(Some(600)),
                ..Default::default()
            },
        )
        .expect("set_cache");
    rig.lab.purge("io").expect("purge");
    rig.lab
        .fail_origin(OriginFailure {
            tenant: TENANT.into(),
            domain: Some("io".into()),
            status: 503,
            count: 2,
        })
        .expect("fail_origin");

    // Round 3: the edge misses and stores the 503; the origin view gets the other one.
    let miss = rig.next();
    rig.step().await;
    rig.expect(miss, &failed.view("io", "cdn"));
    rig.expect(miss, &failed.view("io", "origin"));
    rig.expect_none(miss, &cached);

    // Round 4: the origin is healthy again, but the edge serves its stored 503 (HIT, Age 30).
    let hit = rig.next();
    rig.step().await;
    let f = rig.expect(hit, &cached.view("io", "cdn"));
    assert!(
        f.iter().all(|f| f.message.contains("status 503")),
        "{}",
        dump(f.into_iter())
    );
    rig.expect_none(hit, &cached.view("app", "cdn"));
    rig.expect_none(hit, &failed.view("io", "origin"));
    rig.expect_absent_before(miss, &cached);
    rig.shutdown().await;
}

/// The signer keeps its kid but gets new key material.
#[tokio::test(flavor = "multi_thread")]
async fn same_kid_new_material() {
    let mut rig = Rig::start().await;
    let reused = Want::code(Code::KidReused);
    rig.baseline(BASELINE_ROUNDS, &[reused.code]).await;
    // A third round so the edges still hold the old material when it changes.
    rig.baseline(1, &[reused.code]).await;
    let kid = rig.lab.replace_key_material(TENANT).expect("replace");
    assert_eq!(kid, format!("{TENANT}-k1"));

    // Round 4: the origins serve the new material, the edges still the old one.
    let first = rig.next();
    rig.step().await;
    rig.expect(first, &reused.kid(&kid));
    rig.expect_absent_before(first, &reused);
    // Round 5: the edges refetch; the ledger still remembers the old material.
    rig.step().await;
    rig.expect(first + 1, &reused.kid(&kid));
    // The subject stays where the new material was first seen, round after round.
    let subjects = |n: usize| {
        rig.expect(n, &reused.kid(&kid))
            .iter()
            .map(|f| f.subject.clone())
            .collect::<Vec<_>>()
    };
    assert_eq!(subjects(first), subjects(first + 1), "{}", rig.log());
    // Clients that cached the old material under this (known) kid do not refetch: they
    // reject new tokens until their TTL runs out, even after the edges caught up.
    let would_fail = Want::code(Code::ClientWouldFail)
        .view("app", "cdn")
        .kid(&kid);
    rig.expect(first, &would_fail);
    let later = rig.expect(first + 1, &would_fail);
    assert!(
        later[0].message.contains("envoy") && later[0].message.contains("keyfunc"),
        "{}",
        later[0].message
    );
    rig.shutdown().await;
}

/// Keys that common parsers reject join the set: an Ed448 key and one of an unknown kty.
#[tokio::test(flavor = "multi_thread")]
async fn unparseable_key_added() {
    use base64::Engine as _;
    let mut rig = Rig::start().await;
    let unparseable = Want::code(Code::JwkUnparseable);
    rig.baseline(BASELINE_ROUNDS, &[unparseable.code]).await;
    let x = base64::engine::general_purpose::URL_SAFE_NO_PAD.encode([7u8; 57]);
    let ed448 = rig
        .lab
        .publish_raw(
            TENANT,
            json!({"kty": "OKP", "crv": "Ed448", "x": x, "kid": "acme-ed448"}),
        )
        .expect("publish Ed448");
    let weird = rig
        .lab
        .publish_raw(TENANT, json!({"kty": "XYZ", "kid": "acme-weird"}))
        .expect("publish XYZ");
    assert_eq!(ed448.as_deref(), Some("acme-ed448"));
    assert_eq!(weird.as_deref(), Some("acme-weird"));

    // Round 3: every view (the edges refetch here) serves both keys.
    let first = rig.next();
    rig.step().await;
    for kid in ["acme-ed448", "acme-weird"] {
        for domain in ["app", "io"] {
            for path in ["origin", "cdn"] {
                rig.expect(first, &unparseable.view(domain, path).kid(kid));
            }
        }
    }
    rig.expect_absent_before(first, &unparseable);
    // The signer's key is fine: the rule names only the bad keys.
    rig.expect_none(first, &unparseable.kid("acme-k1"));
    rig.shutdown().await;
}
