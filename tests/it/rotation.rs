//! A full key rotation walked through the gates, over real HTTP against the lab, with one
//! injected clock shared by the lab and keycanary: stage → the rotation gate refuses with
//! a `ready_at` → the window passes → safe → promote → the retirement gate refuses until
//! the old key's tokens have expired and the new signer is settled → safe → retire.
//! Rounds are counted and the clock is moved by hand; nothing sleeps for time to pass.

use keycanary::clock::{Clock, ManualClock, SharedClock};
use keycanary::config::{self, Config};
use keycanary::detect::{self, gate, history::History};
use keycanary::lab::{self, Lab, LabOptions};
use keycanary::model::{Code, Finding, Observation, Timestamp};
use keycanary::probe::Prober;
use std::sync::Arc;
use std::time::Duration;

pub struct Rig {
    pub clock: ManualClock,
    pub lab: Lab,
    pub config: Config,
    pub prober: Prober,
    pub history: History,
    pub latest: Vec<Observation>,
    pub findings: Vec<Finding>,
    _dir: tempfile::TempDir,
}

impl Rig {
    pub async fn start() -> Rig {
        let clock = ManualClock::starting_now();
        let shared: SharedClock = Arc::new(clock.clone());
        let lab = lab::start(LabOptions {
            listen: "127.0.0.1:0".parse().unwrap(),
            clock: shared.clone(),
        })
        .await
        .unwrap();
        let dir = tempfile::tempdir().unwrap();
        let path = crate::check::shipped_config_for(lab.base_url(), dir.path());
        let config = config::load(&path).unwrap();
        let prober = Prober::new(&config, shared).unwrap();
        Rig {
            clock,
            lab,
            config,
            prober,
            history: History::default(),
            latest: Vec::new(),
            findings: Vec::new(),
            _dir: dir,
        }
    }

    /// Advances the clock by one interval and runs a round.
    pub async fn round(&mut self) -> &[Finding] {
        self.clock.advance(self.config.settings.interval);
        self.latest = self.prober.round(&self.config).await;
        self.findings = detect::assess(
            &self.config,
            &mut self.history,
            &self.latest,
            self.clock.now(),
        );
        &self.findings
    }

    pub fn codes(&self, tenant: &str) -> Vec<(Code, String)> {
        self.findings
            .iter()
            .filter(|f| f.subject.tenant == tenant)
            .map(|f| (f.code, f.subject.to_string()))
            .collect()
    }

    pub fn rotation_gate(&self, tenant: &str, kid: Option<&str>) -> gate::GateAnswer {
        let latest = self.latest.iter().find(|o| o.tenant == tenant);
        gate::rotation_gate(
            &self.config,
            &self.history,
            latest,
            &self.findings,
            tenant,
            kid,
            self.clock.now(),
        )
    }

    pub fn retirement_gate(&self, tenant: &str, kid: &str) -> gate::GateAnswer {
        gate::retirement_gate(
            &self.config,
            &self.history,
            &self.findings,
            tenant,
            kid,
            self.clock.now(),
        )
    }

    /// Rounds until `until` has passed, at most `max` rounds.
    pub async fn rounds_until(&mut self, until: Timestamp, max: usize) {
        for _ in 0..max {
            if self.clock.now() >= until {
                return;
            }
            self.round().await;
        }
        panic!(
            "{until} not reached within {max} rounds (now {})",
            self.clock.now()
        );
    }
}

#[tokio::test(flavor = "multi_thread")]
async fn a_full_rotation_walked_through_both_gates() {
    let mut rig = Rig::start().await;
    // One round: the CDN copies are stored now and stay fresh for 60 s.
    rig.round().await;
    assert!(
        rig.codes("acme").is_empty(),
        "healthy baseline: {:?}",
        rig.codes("acme")
    );
    let old = rig.lab.signer_kid("acme").unwrap();
    // Healthy right now: the gate without a kid checks the current signer.
    let now_ok = rig.rotation_gate("acme", None);
    assert_eq!(now_ok.kid.as_deref(), Some(old.as_str()));
    assert!(
        now_ok.safe && now_ok.blocking.is_empty(),
        "a signer found signing and served by every view is healthy: {now_ok:#?}"
    );

    // Stage the next key: published, not signing.
    let next = rig.lab.stage("acme").unwrap();
    rig.round().await;
    let refused = rig.rotation_gate("acme", Some(&next));
    assert!(
        !refused.safe,
        "a key staged one round ago must not be promoted: {refused:#?}"
    );
    let ready_at = refused
        .ready_at
        .unwrap_or_else(|| panic!("a time-based refusal must say when: {refused:#?}"));
    assert!(
        refused.blocking.iter().all(|b| b.ready_at.is_some()),
        "{refused:#?}"
    );
    // The CDN views still serve their copy from the first round (max-age 60, Age 30): the
    // new kid is missing there, and the answer says when it will arrive.
    assert!(
        refused
            .blocking
            .iter()
            .any(|b| b.code == Code::KidMissing && b.subject.path.as_deref() == Some("cdn")),
        "{refused:#?}"
    );
    assert!(
        refused
            .blocking
            .iter()
            .any(|b| b.code == Code::KeyActivatedEarly),
        "{refused:#?}"
    );
    // S for the lab: edge max-age 60 s + the slowest default profile (envoy: no refetch,
    // 10 min TTL) → ready about 11 minutes after the CDN copy turns over.
    let wait = Duration::from_millis((ready_at.0 - rig.clock.now().0) as u64);
    assert!(
        wait > Duration::from_secs(600) && wait < Duration::from_secs(900),
        "wait {wait:?}"
    );

    // Just before ready_at the answer is still no; once it has passed, yes.
    rig.rounds_until(Timestamp(ready_at.0 - 30_000), 40).await;
    let almost = rig.rotation_gate("acme", Some(&next));
    assert!(!almost.safe, "still inside the window: {almost:#?}");
    rig.rounds_until(ready_at, 5).await;
    let safe = rig.rotation_gate("acme", Some(&next));
    assert!(safe.safe, "the window has passed: {safe:#?}");
    assert!(rig.codes("acme").is_empty(), "{:?}", rig.codes("acme"));

    // Promote: no finding, no client would fail.
    rig.lab.promote("acme").unwrap();
    rig.round().await;
    assert!(
        rig.codes("acme").is_empty(),
        "a gated promotion is clean: {:?}",
        rig.codes("acme")
    );
    let retire_early = rig.retirement_gate("acme", &old);
    assert!(!retire_early.safe, "{retire_early:#?}");
    assert!(
        retire_early
            .blocking
            .iter()
            .any(|b| b.code == Code::KeyRemovedEarly),
        "{retire_early:#?}"
    );
    let retire_at = retire_early.ready_at.expect("time-based refusal");
    rig.rounds_until(retire_at, 40).await;
    let retire_ok = rig.retirement_gate("acme", &old);
    assert!(retire_ok.safe, "{retire_ok:#?}");

    // Retire: the old key leaves the set and nothing complains.
    rig.lab.retire("acme").unwrap();
    rig.lab.purge("app").unwrap();
    rig.lab.purge("io").unwrap();
    rig.round().await;
    rig.round().await;
    assert!(
        rig.codes("acme").is_empty(),
        "a gated retirement is clean: {:?}",
        rig.codes("acme")
    );
    // And the promoted key cannot be retired: it signs.
    let signer = rig.retirement_gate("acme", &next);
    assert!(!signer.safe && signer.ready_at.is_none(), "{signer:#?}");
    rig.lab.shutdown().await;
}

/// The gate's acceptance on a stage whose domains cache differently for good (app's
/// origin says `no-store`, io's CDN keeps 60 s): `cache_policy_drift` stays open and is
/// advised, never blocking. The current signer is healthy from the first round; a staged
/// key is safe once it has been in every view for that view's S, and a key one cached
/// view still lacks is refused, naming that view.
#[tokio::test(flavor = "multi_thread")]
async fn a_permanent_cache_policy_drift_does_not_hold_back_a_settled_key() {
    use keycanary::lab::CachePolicyUpdate;
    let mut rig = Rig::start().await;
    rig.lab
        .set_cache(
            "app",
            CachePolicyUpdate {
                origin_cache_control: Some(Some("no-store".into())),
                ..Default::default()
            },
        )
        .unwrap();
    rig.round().await;
    let drift = |a: &gate::GateAnswer| {
        a.advisories
            .iter()
            .any(|x| x.code == Code::CachePolicyDrift && !x.why.is_empty())
            && a.blocking.iter().all(|b| b.code != Code::CachePolicyDrift)
    };
    assert!(
        rig.codes("acme")
            .iter()
            .any(|(c, _)| *c == Code::CachePolicyDrift),
        "the stage drifts: {:?}",
        rig.codes("acme")
    );
    // A first start: the signer was signing and served by every view when keycanary
    // began watching. Healthy, with the drift advised.
    let now_ok = rig.rotation_gate("acme", None);
    assert!(now_ok.safe && drift(&now_ok), "{now_ok:#?}");

    let next = rig.lab.stage("acme").unwrap();
    rig.round().await;
    let refused = rig.rotation_gate("acme", Some(&next));
    assert!(!refused.safe && drift(&refused), "{refused:#?}");
    let ready_at = refused.ready_at.expect("a time-based refusal");
    rig.rounds_until(ready_at, 40).await;
    assert!(
        rig.codes("acme")
            .iter()
            .any(|(c, _)| *c == Code::CachePolicyDrift),
        "still drifting: {:?}",
        rig.codes("acme")
    );
    let safe = rig.rotation_gate("acme", Some(&next));
    assert!(safe.safe && drift(&safe), "{safe:#?}");

    // A third key, staged right after io's CDN stored a fresh copy: app (not cached)
    // serves it at once, io's CDN copy lacks it for another interval.
    rig.lab.purge("io").unwrap();
    rig.round().await;
    let third = rig.lab.stage("acme").unwrap();
    rig.round().await;
    let lacking = rig.rotation_gate("acme", Some(&third));
    assert!(!lacking.safe && drift(&lacking), "{lacking:#?}");
    let missing: Vec<String> = lacking
        .blocking
        .iter()
        .filter(|b| b.code == Code::KidMissing)
        .map(|b| b.subject.to_string())
        .collect();
    assert!(
        !missing.is_empty() && missing.iter().all(|m| m.contains("domain=io")),
        "{lacking:#?}"
    );
    rig.lab.shutdown().await;
}
