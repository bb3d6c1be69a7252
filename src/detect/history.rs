//! What keycanary remembers between rounds: a [`History`] per tenant of every view, every
//! kid (the **key ledger**), validators, TLS leaves and which kids signed tokens. Rules that
//! need the past (`detect::stateful`, client profiles, the gates) read it; only
//! [`History::record`], [`History::prune_tenant`] (or [`History::prune`], every tenant) and
//! [`History::remove_tenant`] change it.
//!
//! The history is a plain, serialisable value with one owner (the daemon holds it; the
//! store persists it). Nothing here does I/O or reads a clock: every time recorded is the
//! `now` handed to [`History::record`] — the time of the round, not of each fetch — so a
//! replay of recorded observations gives the same history.
//!
//! ## What is recorded, and what counts
//!
//! A view is **observed ok** in a round when it answered 2xx and its body parsed as a key
//! set (possibly empty). Only ok rounds say anything about which kids a view serves: a
//! failed fetch neither confirms nor breaks a kid's presence (its own findings cover it),
//! though it is kept in the view's timeline.
//!
//! Views are recorded origin views first, then edges, so that key material first seen in
//! one round is credited to the origin (see [`KidLedger::thumbprints`]). Keys without a kid
//! are in timelines but not in the ledger; keys without a thumbprint (unparseable) count
//! for presence but add no material.
//!
//! ## Reading it (for client profiles, staleness, gates)
//!
//! - [`History::tenant`]`(name)` → [`TenantHistory`]; [`History::first_recorded`].
//! - [`History::key_index`] → [`KeyIndex`]: which keys each tenant serves now, and which
//!   tenants serve a kid or a key material (derived, never stored; see `history/index.rs`).
//! - [`TenantHistory::kid`]`(kid)` → [`KidLedger`]:
//!   - [`KidLedger::present_since_in`]`(domain, view)` → `Some(Since)` while the kid is in
//!     that view: [`Since::BeforeWatch`] when it was there in the view's first ok round,
//!     else [`Since::At`] the round its current continuous presence began; `None` when the
//!     view does not serve it (now) or was never seen to.
//!   - [`KidLedger::present_in_all_since`]`(views)` → the latest of those over several
//!     views (when the kid became visible in *all* of them), `None` if any lacks it.
//!   - [`KidLedger::presence_in`] (first/last seen, last seen absent), [`KidLedger::views`].
//!   - [`KidLedger::first_signed`], [`KidLedger::last_signed`] (rounds in which a fresh
//!     token carried this kid), [`KidLedger::latest_exp`] (latest `exp`, Unix seconds).
//!   - [`KidLedger::thumbprints`]: every key material seen under the kid, oldest first.
//! - [`TenantHistory::view`]`(domain, view)` → [`ViewHistory`]: first/last attempt, last ok
//!   round, the TLS leaf, and [`ViewHistory::timeline`] (also
//!   [`TenantHistory::view_timeline`]): what the view served, one [`TimelineEntry`] per run
//!   of identical answers (status, keys, body hash, ETag), with the latest round's cache
//!   headers (Age, cache status), at most [`TIMELINE_LEN`] runs. [`ViewHistory::served_at`]
//!   answers "what would a client fetching at `t` have got".
//! - [`TenantHistory::signing`]: the recent rounds that returned tokens, with each token's
//!   domain, kind, kid and alg (at most [`SIGNING_ROUNDS`]).
//! - [`TenantHistory::etag_bodies`]: per domain and ETag, every body served under it.
//!
//! Deliberately not here: judging any of it (that is `detect::stateful`), and persistence.

use crate::model::{
    CacheHeaders, FetchErrorKind, FetchOutcome, KeySetParse, Observation, Timestamp, TokenKind,
    ViewId, ViewKind, ViewObservation,
};
use serde::{Deserialize, Serialize};
use std::collections::{BTreeMap, BTreeSet};
use std::fmt;
use std::sync::Arc;
use std::time::Duration;

/// Most runs a view's timeline keeps (older ones are dropped first).
pub const TIMELINE_LEN: usize = 100;
/// Most token-returning rounds a tenant's signing record keeps.
pub const SIGNING_ROUNDS: usize = 100;

/// Everything remembered, per tenant.
#[derive(Debug, Clone, Default, Serialize, Deserialize)]
#[serde(from = "StoredHistory")]
pub struct History {
    /// The first round recorded, of any tenant.
    #[serde(skip_serializing_if = "Option::is_none", default)]
    first_recorded: Option<Timestamp>,
    /// Shared, so a copy of one tenant's history (the snapshot's) costs a pointer; a
    /// change copies that tenant's part only while someone else still holds it.
    #[serde(default)]
    tenants: BTreeMap<String, Arc<TenantHistory>>,
    /// Derived from `tenants`, kept current by every change, rebuilt when deserialised.
    #[serde(skip)]
    key_index: KeyIndex,
}

/// [`History`] as stored: deserialised into this, then indexed.
#[derive(Deserialize)]
struct StoredHistory {
    #[serde(default)]
    first_recorded: Option<Timestamp>,
    #[serde(default)]
    tenants: BTreeMap<String, TenantHistory>,
}

impl From<StoredHistory> for History {
    fn from(s: StoredHistory) -> History {
        History::from_tenants(s.first_recorded, s.tenants)
    }
}

/// Equal when what is remembered is equal (the key index follows from it).
impl PartialEq for History {
    fn eq(&self, other: &History) -> bool {
        self.first_recorded == other.first_recorded && self.tenants == other.tenants
    }
}

/// A view of a tenant: its domain and its id within the domain.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
pub struct ViewKey {
    pub domain: String,
    #[serde(flatten)]
    pub view: ViewId,
}

impl ViewKey {
    pub fn new(domain: &str, view: &ViewId) -> Self {
        ViewKey {
            domain: domain.to_owned(),
            view: view.clone(),
        }
    }
}

impl fmt::Display for ViewKey {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}/{}", self.domain, self.view)
    }
}

/// When a kid's current continuous presence in a view began. `BeforeWatch` sorts first.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Since {
    /// Present in the view's first ok round: since before keycanary watched.
    BeforeWatch,
    At(Timestamp),
}

/// The history of one tenant.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct TenantHistory {
    first_recorded: Timestamp,
    last_recorded: Timestamp,
    #[serde(with = "pairs", default)]
    views: BTreeMap<ViewKey, ViewHistory>,
    #[serde(default)]
    kids: BTreeMap<String, KidLedger>,
    /// Domain → ETag → bodies served under it.
    #[serde(default)]
    etags: BTreeMap<String, BTreeMap<String, Vec<EtagBody>>>,
    /// Rounds that returned tokens, oldest first.
    #[serde(default, deserialize_with = "shared_signing")]
    signing: Vec<SigningRound>,
}

/// Reads the signing record back with repeated token lists shared again, as recording
/// shares them, so a restart does not multiply the record's memory.
fn shared_signing<'de, D: serde::Deserializer<'de>>(d: D) -> Result<Vec<SigningRound>, D::Error> {
    let mut rounds = Vec::<SigningRound>::deserialize(d)?;
    for i in 1..rounds.len() {
        if rounds[i].tokens == rounds[i - 1].tokens {
            rounds[i].tokens = rounds[i - 1].tokens.clone();
        }
    }
    Ok(rounds)
}

/// The ledger of one kid.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct KidLedger {
    #[serde(default)]
    thumbprints: Vec<Material>,
    #[serde(with = "pairs", default)]
    views: BTreeMap<ViewKey, Presence>,
    #[serde(skip_serializing_if = "Option::is_none", default)]
    first_signed: Option<Timestamp>,
    #[serde(skip_serializing_if = "Option::is_none", default)]
    last_signed: Option<Timestamp>,
    #[serde(skip_serializing_if = "Option::is_none", default)]
    latest_exp: Option<i64>,
}

/// One key material (RFC 7638 thumbprint) seen under a kid.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Material {
    pub thumbprint: String,
    pub first_seen: Timestamp,
    pub last_seen: Timestamp,
    /// The view it was first seen in (origin views are recorded first).
    pub first_seen_in: ViewKey,
}

/// A kid's presence in one view, from the view's ok rounds.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Presence {
    pub first_seen: Timestamp,
    pub last_seen: Timestamp,
    /// Start of the current (or, when absent now, the last) continuous presence.
    pub since: Since,
    /// The last ok round of the view without this kid.
    #[serde(skip_serializing_if = "Option::is_none", default)]
    pub last_absent: Option<Timestamp>,
}

impl Presence {
    /// Whether the view served the kid in its latest ok round.
    pub fn present(&self) -> bool {
        self.last_absent.is_none_or(|a| a < self.last_seen)
    }

    /// `since` while present, `None` once absent.
    pub fn present_since(&self) -> Option<Since> {
        self.present().then_some(self.since)
    }
}

/// What one view answered, and when.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct ViewHistory {
    kind: ViewKind,
    first_attempt: Timestamp,
    last_attempt: Timestamp,
    #[serde(skip_serializing_if = "Option::is_none", default)]
    last_ok: Option<Timestamp>,
    #[serde(default)]
    timeline: Vec<TimelineEntry>,
    #[serde(skip_serializing_if = "Option::is_none", default)]
    tls: Option<TlsLeaf>,
}

/// A run of rounds in which a view answered the same thing.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct TimelineEntry {
    pub first_at: Timestamp,
    pub last_at: Timestamp,
    /// How many rounds the run spans.
    pub rounds: u32,
    #[serde(flatten)]
    pub served: Served,
    /// Cache headers of the latest round of the run (Age, cache status, Cache-Control…).
    #[serde(skip_serializing_if = "Option::is_none", default)]
    pub headers: Option<CacheHeaders>,
}

impl TimelineEntry {
    pub fn age(&self) -> Option<u64> {
        self.headers.as_ref()?.age
    }
    pub fn cache_status(&self) -> Option<&str> {
        self.headers.as_ref()?.cache_status.as_deref()
    }
}

/// The identity of an answer: what a client reading the view would get.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct Served {
    /// HTTP status; `None` when no response came.
    #[serde(skip_serializing_if = "Option::is_none", default)]
    pub status: Option<u16>,
    /// Why no response came.
    #[serde(skip_serializing_if = "Option::is_none", default)]
    pub error: Option<FetchErrorKind>,
    /// Every key (sorted), when the answer was a 2xx key set.
    #[serde(skip_serializing_if = "Option::is_none", default)]
    pub keys: Option<Vec<ServedKey>>,
    #[serde(skip_serializing_if = "Option::is_none", default)]
    pub body_sha256: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none", default)]
    pub etag: Option<String>,
}

impl Served {
    fn of(v: &ViewObservation) -> Served {
        match &v.fetch.outcome {
            FetchOutcome::Error { kind, .. } => Served {
                error: Some(*kind),
                ..Default::default()
            },
            FetchOutcome::Response(r) => Served {
                status: Some(r.status),
                error: None,
                keys: served_keys(v),
                body_sha256: Some(r.body_sha256.clone()),
                etag: r.headers.etag.clone(),
            },
        }
    }

    /// Whether this was an ok answer (2xx key set).
    pub fn ok(&self) -> bool {
        self.keys.is_some()
    }

    /// The thumbprint served under `kid` (the first, should there be several).
    pub fn thumbprint(&self, kid: &str) -> Option<&str> {
        self.keys
            .as_deref()?
            .iter()
            .find(|k| k.kid.as_deref() == Some(kid))?
            .thumbprint
            .as_deref()
    }

    /// Whether the answer was a key set holding `kid`.
    pub fn has_kid(&self, kid: &str) -> bool {
        self.keys
            .as_deref()
            .is_some_and(|ks| ks.iter().any(|k| k.kid.as_deref() == Some(kid)))
    }
}

/// One key of a served set, as compared between views and over time.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord, Serialize, Deserialize)]
pub struct ServedKey {
    #[serde(skip_serializing_if = "Option::is_none", default)]
    pub kid: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none", default)]
    pub thumbprint: Option<String>,
}

/// The TLS leaf a view was served with.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct TlsLeaf {
    pub sha256: String,
    #[serde(skip_serializing_if = "Option::is_none", default)]
    pub not_after: Option<i64>,
    pub first_seen: Timestamp,
    pub last_seen: Timestamp,
    /// The leaf served before this one, if it changed.
    #[serde(skip_serializing_if = "Option::is_none", default)]
    pub previous: Option<PreviousLeaf>,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct PreviousLeaf {
    pub sha256: String,
    #[serde(skip_serializing_if = "Option::is_none", default)]
    pub not_after: Option<i64>,
    pub last_seen: Timestamp,
}

/// A body served under an ETag.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct EtagBody {
    pub body_sha256: String,
    /// The keys of the body, when it was a key set (weak ETags are compared by these).
    #[serde(skip_serializing_if = "Option::is_none", default)]
    pub keys: Option<Vec<ServedKey>>,
    pub first_seen: Timestamp,
    pub last_seen: Timestamp,
    pub first_seen_in: ViewKey,
}

/// The tokens of one round. A round whose tokens are the previous round's (the steady
/// state: the same kids, algs and domains round after round) shares that round's list
/// instead of holding a copy, so the record costs a timestamp per round until the signers
/// change.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct SigningRound {
    pub at: Timestamp,
    pub tokens: Arc<[Signed]>,
}

/// Who signed one token.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Signed {
    pub domain: String,
    pub kind: TokenKind,
    #[serde(skip_serializing_if = "Option::is_none", default)]
    pub kid: Option<String>,
    pub alg: String,
}

/// The keys of an ok view as recorded: kid and thumbprint, sorted.
pub(crate) fn served_keys(v: &ViewObservation) -> Option<Vec<ServedKey>> {
    ok_keys(v).map(|keys| {
        let mut keys: Vec<ServedKey> = keys
            .iter()
            .map(|k| ServedKey {
                kid: k.kid.clone(),
                thumbprint: k.thumbprint.clone(),
            })
            .collect();
        keys.sort();
        keys
    })
}

/// The keys of an ok view: 2xx and parsed as a key set.
pub(crate) fn ok_keys(v: &ViewObservation) -> Option<&[crate::model::KeyInfo]> {
    let status = v.fetch.response()?.status;
    match v.key_set.as_ref()? {
        KeySetParse::Parsed { keys } if (200..300).contains(&status) => Some(keys),
        _ => None,
    }
}

impl History {
    /// A history made of per-tenant parts (as the store keeps them, one row per tenant).
    pub fn from_tenants(
        first_recorded: Option<Timestamp>,
        tenants: impl IntoIterator<Item = (String, TenantHistory)>,
    ) -> History {
        let tenants: BTreeMap<String, Arc<TenantHistory>> =
            tenants.into_iter().map(|(n, t)| (n, Arc::new(t))).collect();
        let key_index = KeyIndex::of(tenants.iter().map(|(n, t)| (n.as_str(), &**t)));
        History {
            first_recorded,
            tenants,
            key_index,
        }
    }

    pub fn tenant(&self, name: &str) -> Option<&TenantHistory> {
        self.tenants.get(name).map(|t| &**t)
    }

    /// `name`'s history, shared (what the snapshot keeps: no copy is made).
    pub fn tenant_shared(&self, name: &str) -> Option<Arc<TenantHistory>> {
        self.tenants.get(name).cloned()
    }

    pub fn tenants(&self) -> impl Iterator<Item = (&str, &TenantHistory)> {
        self.tenants.iter().map(|(n, t)| (n.as_str(), &**t))
    }

    /// The first round ever recorded (of any tenant).
    pub fn first_recorded(&self) -> Option<Timestamp> {
        self.first_recorded
    }
}

impl TenantHistory {
    // -- reading --------------------------------------------------------------------------

    pub fn first_recorded(&self) -> Timestamp {
        self.first_recorded
    }

    pub fn last_recorded(&self) -> Timestamp {
        self.last_recorded
    }

    pub fn kid(&self, kid: &str) -> Option<&KidLedger> {
        self.kids.get(kid)
    }

    pub fn kids(&self) -> impl Iterator<Item = (&str, &KidLedger)> {
        self.kids.iter().map(|(k, l)| (k.as_str(), l))
    }

    pub fn view(&self, domain: &str, view: &ViewId) -> Option<&ViewHistory> {
        self.views.get(&ViewKey::new(domain, view))
    }

    pub fn views(&self) -> impl Iterator<Item = (&ViewKey, &ViewHistory)> {
        self.views.iter()
    }

    /// What a view served, oldest run first; empty for a view never recorded.
    pub fn view_timeline(&self, domain: &str, view: &ViewId) -> &[TimelineEntry] {
        self.view(domain, view).map_or(&[], |v| &v.timeline)
    }

    /// Rounds that returned tokens, oldest first.
    pub fn signing(&self) -> &[SigningRound] {
        &self.signing
    }

    /// Every body served under `etag` by a view of `domain`, in first-seen order.
    pub fn etag_bodies(&self, domain: &str, etag: &str) -> &[EtagBody] {
        self.etags
            .get(domain)
            .and_then(|m| m.get(etag))
            .map_or(&[], Vec::as_slice)
    }
}

impl KidLedger {
    /// Key materials seen under this kid, in first-seen order. More than one is `kid_reused`.
    pub fn thumbprints(&self) -> &[Material] {
        &self.thumbprints
    }

    /// Every view the kid was ever seen in (and not pruned).
    pub fn views(&self) -> impl Iterator<Item = (&ViewKey, &Presence)> {
        self.views.iter()
    }

    pub fn presence_in(&self, domain: &str, view: &ViewId) -> Option<&Presence> {
        self.views.get(&ViewKey::new(domain, view))
    }

    /// Since when the view has served this kid without a break; `None` when it does not
    /// serve it now (or never did).
    pub fn present_since_in(&self, domain: &str, view: &ViewId) -> Option<Since> {
        self.presence_in(domain, view)?.present_since()
    }

    /// Since when *every* one of `views` has served this kid: the latest of their
    /// [`present_since_in`](Self::present_since_in). `None` when one does not serve it now
    /// or `views` is empty.
    pub fn present_in_all_since<'a>(
        &self,
        views: impl IntoIterator<Item = (&'a str, &'a ViewId)>,
    ) -> Option<Since> {
        let mut latest: Option<Since> = None;
        for (domain, view) in views {
            let since = self.present_since_in(domain, view)?;
            latest = latest.max(Some(since));
        }
        latest
    }

    /// Whether some view served this kid in its latest ok round.
    pub fn served_now(&self) -> bool {
        self.views.values().any(Presence::present)
    }

    /// The first round in which a fresh token carried this kid.
    pub fn first_signed(&self) -> Option<Timestamp> {
        self.first_signed
    }

    /// The latest round in which a fresh token carried this kid.
    pub fn last_signed(&self) -> Option<Timestamp> {
        self.last_signed
    }

    /// The latest `exp` (Unix seconds) of a token carrying this kid.
    pub fn latest_exp(&self) -> Option<i64> {
        self.latest_exp
    }
}

impl ViewHistory {
    fn push(&mut self, served: Served, headers: Option<CacheHeaders>, now: Timestamp) {
        match self.timeline.last_mut() {
            Some(last) if last.served == served => {
                last.last_at = now;
                last.rounds = last.rounds.saturating_add(1);
                last.headers = headers;
            }
            _ => {
                self.timeline.push(TimelineEntry {
                    first_at: now,
                    last_at: now,
                    rounds: 1,
                    served,
                    headers,
                });
                let excess = self.timeline.len().saturating_sub(TIMELINE_LEN);
                self.timeline.drain(..excess);
            }
        }
    }

    fn see_tls(&mut self, sha256: &str, not_after: Option<i64>, now: Timestamp) {
        match &mut self.tls {
            Some(t) if t.sha256 == sha256 => {
                t.last_seen = now;
                t.not_after = not_after.or(t.not_after);
            }
            old => {
                let previous = old.take().map(|t| PreviousLeaf {
                    sha256: t.sha256,
                    not_after: t.not_after,
                    last_seen: t.last_seen,
                });
                *old = Some(TlsLeaf {
                    sha256: sha256.to_owned(),
                    not_after,
                    first_seen: now,
                    last_seen: now,
                    previous,
                });
            }
        }
    }

    pub fn kind(&self) -> ViewKind {
        self.kind
    }

    /// The first round that tried this view.
    pub fn first_attempt(&self) -> Timestamp {
        self.first_attempt
    }

    /// The latest round that tried this view.
    pub fn last_attempt(&self) -> Timestamp {
        self.last_attempt
    }

    /// The latest round in which this view was ok (2xx key set).
    pub fn last_ok(&self) -> Option<Timestamp> {
        self.last_ok
    }

    /// Runs of identical answers, oldest first.
    pub fn timeline(&self) -> &[TimelineEntry] {
        &self.timeline
    }

    /// The latest run.
    pub fn latest(&self) -> Option<&TimelineEntry> {
        self.timeline.last()
    }

    /// What the view answered in the latest round at or before `t` (`None` before the
    /// first recorded round, or when that run was dropped).
    pub fn served_at(&self, t: Timestamp) -> Option<&TimelineEntry> {
        self.timeline.iter().rev().find(|e| e.first_at <= t)
    }

    /// The TLS leaf of the latest round that used TLS.
    pub fn tls(&self) -> Option<&TlsLeaf> {
        self.tls.as_ref()
    }
}

/// Serialises a map with non-string keys as a list of `[key, value]` pairs (JSON objects
/// need string keys).
mod pairs {
    use serde::{Deserialize, Deserializer, Serialize, Serializer};
    use std::collections::BTreeMap;

    pub fn serialize<S: Serializer, K: Serialize, V: Serialize>(
        map: &BTreeMap<K, V>,
        s: S,
    ) -> Result<S::Ok, S::Error> {
        s.collect_seq(map.iter())
    }

    pub fn deserialize<'de, D, K, V>(d: D) -> Result<BTreeMap<K, V>, D::Error>
    where
        D: Deserializer<'de>,
        K: Deserialize<'de> + Ord,
        V: Deserialize<'de>,
    {
        let pairs: Vec<(K, V)> = Vec::deserialize(d)?;
        Ok(pairs.into_iter().collect())
    }
}

mod index;
mod record;

pub use index::KeyIndex;

#[cfg(test)]
mod tests;
