//! Rules about HTTP validators and TLS, per view: `validator_inconsistent` (one ETag, two
//! bodies — across the views of a domain or over time; or a 304 while the origin changed)
//! and `tls_certificate` (the view's TLS leaf changed this round, or expires within
//! `tls_expiry_warning`).
//!
//! Strong ETags are compared by body hash; weak ones (`W/…`) only promise equivalence, so
//! they are compared by the key set they came with.

use super::{Ctx, human, short_tp};
use crate::detect::history::{EtagBody, served_keys};
use crate::detect::round::one_line;
use crate::model::{Code, Finding, Subject, Timestamp, ViewKind};

pub(super) fn validator_inconsistent(cx: &Ctx<'_>, out: &mut Vec<Finding>) {
    for d in &cx.obs.domains {
        let origin_body = d
            .views
            .iter()
            .filter(|v| v.kind == ViewKind::Origin)
            .filter_map(|v| v.fetch.response())
            .find(|r| (200..300).contains(&r.status))
            .map(|r| r.body_sha256.as_str());
        for v in &d.views {
            let Some(r) = v.fetch.response() else {
                continue;
            };
            let subject = || Subject::view(&cx.obs.tenant, &d.domain, &v.id);
            if r.status == 304 {
                // What this view last served in full, before this round's 304.
                let before = cx
                    .history
                    .view_timeline(&d.domain, &v.id)
                    .iter()
                    .rev()
                    .find(|e| e.served.status.is_some_and(|s| (200..300).contains(&s)));
                if let (Some(before), Some(origin)) = (before, origin_body)
                    && before.served.body_sha256.as_deref() != Some(origin)
                {
                    let message = format!(
                        "answered 304 Not Modified while the origin's body changed ({}… last served here at {}, the origin now serves {}…): clients keep the old key set",
                        short_tp(before.served.body_sha256.as_deref().unwrap_or_default()),
                        before.last_at,
                        short_tp(origin),
                    );
                    out.push(Finding::new(
                        Code::ValidatorInconsistent,
                        subject(),
                        message,
                    ));
                }
                continue;
            }
            let Some(etag) = &r.headers.etag else {
                continue;
            };
            if !(200..300).contains(&r.status) {
                continue;
            }
            let weak = etag.starts_with("W/");
            let keys = served_keys(v);
            let differs = |b: &EtagBody| {
                if weak {
                    b.keys != keys
                } else {
                    b.body_sha256 != r.body_sha256
                }
            };
            let Some(other) = cx
                .history
                .etag_bodies(&d.domain, etag)
                .iter()
                .filter(|b| differs(b))
                .max_by_key(|b| b.last_seen)
            else {
                continue;
            };
            let what = if weak { "key set" } else { "body" };
            let message = format!(
                "the ETag {} comes with {what} {}… here but with another {what} ({}…) at {} (last seen {}): clients revalidating with If-None-Match keep whichever they have",
                one_line(etag),
                short_tp(&r.body_sha256),
                short_tp(&other.body_sha256),
                other.first_seen_in,
                other.last_seen,
            );
            out.push(Finding::new(
                Code::ValidatorInconsistent,
                subject(),
                message,
            ));
        }
    }
}

pub(super) fn tls_certificate(cx: &Ctx<'_>, out: &mut Vec<Finding>) {
    let warning = cx.config.settings.tls_expiry_warning.as_secs() as i64;
    let now = cx.now.as_secs();
    for d in &cx.obs.domains {
        for v in &d.views {
            let Some(r) = v.fetch.response() else {
                continue;
            };
            let Some(sha) = &r.tls_leaf_sha256 else {
                continue;
            };
            let mut reasons = Vec::new();
            if let Some(vh) = cx.history.view(&d.domain, &v.id)
                && let Some(leaf) = vh.tls()
                && let Some(prev) = &leaf.previous
                && &leaf.sha256 == sha
                && leaf.first_seen == vh.last_attempt()
            {
                reasons.push(format!(
                    "the TLS leaf changed ({}… → {}…; the previous one, last seen {}, was valid until {})",
                    short_tp(&prev.sha256),
                    short_tp(sha),
                    prev.last_seen,
                    prev.not_after.map_or("unknown".to_owned(), |t| Timestamp::from_secs(t).to_string()),
                ));
            }
            if let Some(not_after) = r.tls_leaf_not_after {
                let left = not_after.saturating_sub(now);
                if left <= 0 {
                    reasons.push(format!(
                        "the TLS leaf expired at {}",
                        Timestamp::from_secs(not_after)
                    ));
                } else if left < warning {
                    reasons.push(format!(
                        "the TLS leaf expires at {} (in {}, warning at {})",
                        Timestamp::from_secs(not_after),
                        human(left),
                        human(warning)
                    ));
                }
            }
            if !reasons.is_empty() {
                let subject = Subject::view(&cx.obs.tenant, &d.domain, &v.id);
                out.push(Finding::new(
                    Code::TlsCertificate,
                    subject,
                    reasons.join("; "),
                ));
            }
        }
    }
}

#[cfg(test)]
mod tests;
