//! Recording and pruning: the only code that changes a [`History`]. One round of one
//! tenant is folded in by [`History::record`] (with the time of the round); what was last
//! seen before the retention window is dropped by [`History::prune_tenant`] (one tenant,
//! as the daemon prunes the tenant it judged) or [`History::prune`] (every tenant); a
//! tenant the config no longer names goes with [`History::remove_tenant`]. Each keeps the
//! key index (`history/index.rs`) current for the tenant it changes.
//!
//! Not here: reading the history (the accessors in `history.rs`), judging it.

use super::*;

impl History {
    /// Folds one round of one tenant into the history. Call once per observation, with the
    /// time of the round; the rules then read the history including it.
    pub fn record(&mut self, obs: &Observation, now: Timestamp) {
        self.first_recorded.get_or_insert(now);
        let tenant = self
            .tenants
            .entry(obs.tenant.clone())
            .or_insert_with(|| Arc::new(TenantHistory::new(now)));
        Arc::make_mut(tenant).record(obs, now);
        self.reindex_tenant(&obs.tenant);
    }

    /// Drops what was last seen before `now - keep`: tenants, views and kids no longer
    /// observed, old timeline runs, ETag bodies, previous TLS leaves and signing rounds.
    /// Current state (a view's latest run, a kid still served) is always newer than that.
    /// Walks every tenant; [`prune_tenant`](Self::prune_tenant) does one.
    pub fn prune(&mut self, now: Timestamp, keep: Duration) {
        let names: Vec<String> = self.tenants.keys().cloned().collect();
        for name in names {
            self.prune_tenant(&name, now, keep);
        }
    }

    /// [`prune`](Self::prune) for `tenant` alone: drops it when it was last recorded before
    /// `now - keep`, else drops its parts last seen before then. Other tenants are left
    /// as they are; a tenant the history does not know is a no-op.
    pub fn prune_tenant(&mut self, tenant: &str, now: Timestamp, keep: Duration) {
        let cutoff = Timestamp(now.0.saturating_sub(keep.as_millis() as i64));
        let Some(t) = self.tenants.get_mut(tenant) else {
            return;
        };
        if t.last_recorded < cutoff {
            self.tenants.remove(tenant);
        } else {
            Arc::make_mut(t).prune(cutoff);
        }
        self.reindex_tenant(tenant);
    }

    /// Forgets `tenant` entirely (say, once a reload removed it from the config).
    /// `first_recorded` stays: it is the first round of any tenant.
    pub fn remove_tenant(&mut self, tenant: &str) {
        self.tenants.remove(tenant);
        self.reindex_tenant(tenant);
    }
}

impl TenantHistory {
    fn new(now: Timestamp) -> Self {
        TenantHistory {
            first_recorded: now,
            last_recorded: now,
            views: BTreeMap::new(),
            kids: BTreeMap::new(),
            etags: BTreeMap::new(),
            signing: Vec::new(),
        }
    }

    fn record(&mut self, obs: &Observation, now: Timestamp) {
        self.last_recorded = now;
        let mut signed = Vec::new();
        for d in &obs.domains {
            let origins = d.views.iter().filter(|v| v.kind == ViewKind::Origin);
            let edges = d.views.iter().filter(|v| v.kind != ViewKind::Origin);
            for v in origins.chain(edges) {
                self.record_view(&d.domain, v, now);
            }
            for t in d.tokens() {
                if let Some(kid) = &t.header.kid {
                    let ledger = self.kids.entry(kid.clone()).or_default();
                    ledger.first_signed.get_or_insert(now);
                    ledger.last_signed = Some(now);
                    if let Some(exp) = t.claims.exp {
                        ledger.latest_exp = ledger.latest_exp.max(Some(exp));
                    }
                }
                signed.push(Signed {
                    domain: d.domain.clone(),
                    kind: t.kind,
                    kid: t.header.kid.clone(),
                    alg: t.header.alg.clone(),
                });
            }
        }
        if !signed.is_empty() {
            let tokens = match self.signing.last() {
                Some(previous) if *previous.tokens == *signed => previous.tokens.clone(),
                _ => signed.into(),
            };
            self.signing.push(SigningRound { at: now, tokens });
            let excess = self.signing.len().saturating_sub(SIGNING_ROUNDS);
            self.signing.drain(..excess);
        }
    }

    fn record_view(&mut self, domain: &str, v: &ViewObservation, now: Timestamp) {
        let key = ViewKey::new(domain, &v.id);
        let vh = self
            .views
            .entry(key.clone())
            .or_insert_with(|| ViewHistory {
                kind: v.kind,
                first_attempt: now,
                last_attempt: now,
                last_ok: None,
                timeline: Vec::new(),
                tls: None,
            });
        let watched_before = vh.last_ok.is_some();
        vh.kind = v.kind;
        vh.last_attempt = now;
        let served = Served::of(v);
        let response = v.fetch.response();
        if let Some(r) = response
            && let Some(sha) = &r.tls_leaf_sha256
        {
            vh.see_tls(sha, r.tls_leaf_not_after, now);
        }
        if let (Some(r), Some(etag)) = (response, &served.etag)
            && (200..300).contains(&r.status)
        {
            let bodies = self
                .etags
                .entry(domain.to_owned())
                .or_default()
                .entry(etag.clone())
                .or_default();
            match bodies.iter_mut().find(|b| b.body_sha256 == r.body_sha256) {
                Some(b) => b.last_seen = now,
                None => bodies.push(EtagBody {
                    body_sha256: r.body_sha256.clone(),
                    keys: served.keys.clone(),
                    first_seen: now,
                    last_seen: now,
                    first_seen_in: key.clone(),
                }),
            }
        }
        vh.push(served, response.map(|r| r.headers.clone()), now);
        let Some(keys) = ok_keys(v) else { return };
        vh.last_ok = Some(now);
        let mut present = BTreeSet::new();
        for k in keys {
            let Some(kid) = &k.kid else { continue };
            present.insert(kid.as_str());
            let ledger = self.kids.entry(kid.clone()).or_default();
            if let Some(tp) = &k.thumbprint {
                match ledger.thumbprints.iter_mut().find(|m| &m.thumbprint == tp) {
                    Some(m) => m.last_seen = now,
                    None => ledger.thumbprints.push(Material {
                        thumbprint: tp.clone(),
                        first_seen: now,
                        last_seen: now,
                        first_seen_in: key.clone(),
                    }),
                }
            }
            match ledger.views.get_mut(&key) {
                Some(p) => {
                    if !p.present() {
                        p.since = Since::At(now);
                    }
                    p.last_seen = now;
                }
                None => {
                    let since = if watched_before {
                        Since::At(now)
                    } else {
                        Since::BeforeWatch
                    };
                    let p = Presence {
                        first_seen: now,
                        last_seen: now,
                        since,
                        last_absent: None,
                    };
                    ledger.views.insert(key.clone(), p);
                }
            }
        }
        for (kid, ledger) in &mut self.kids {
            if present.contains(kid.as_str()) {
                continue;
            }
            if let Some(p) = ledger.views.get_mut(&key) {
                p.last_absent = Some(now);
            }
        }
    }

    fn prune(&mut self, cutoff: Timestamp) {
        self.views.retain(|_, v| v.last_attempt >= cutoff);
        for v in self.views.values_mut() {
            v.timeline.retain(|e| e.last_at >= cutoff);
            if let Some(tls) = &mut v.tls
                && tls.previous.as_ref().is_some_and(|p| p.last_seen < cutoff)
            {
                tls.previous = None;
            }
            if v.tls.as_ref().is_some_and(|t| t.last_seen < cutoff) {
                v.tls = None;
            }
        }
        for ledger in self.kids.values_mut() {
            ledger.thumbprints.retain(|m| m.last_seen >= cutoff);
            ledger.views.retain(|_, p| p.last_seen >= cutoff);
        }
        self.kids.retain(|_, l| {
            let signed_recently = l.last_signed.is_some_and(|t| t >= cutoff);
            let valid_token = l
                .latest_exp
                .is_some_and(|e| e.saturating_mul(1000) >= cutoff.0);
            !l.thumbprints.is_empty() || !l.views.is_empty() || signed_recently || valid_token
        });
        for by_etag in self.etags.values_mut() {
            for bodies in by_etag.values_mut() {
                bodies.retain(|b| b.last_seen >= cutoff);
            }
            by_etag.retain(|_, bodies| !bodies.is_empty());
        }
        self.etags.retain(|_, by_etag| !by_etag.is_empty());
        self.signing.retain(|r| r.at >= cutoff);
    }
}
