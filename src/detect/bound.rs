//! Bounds on what one judgement says, whatever an IdP or a CDN serves: per tenant at most
//! [`PER_CODE`] findings of one code and [`PER_TENANT`] in all are listed; the rest of each
//! code is folded into one finding about the tenant that says how many were left out. No
//! message is longer than [`MESSAGE_CHARS`] characters.
//!
//! A hostile key set (thousands of keys, duplicate kids, two tenants sharing it) would
//! otherwise give thousands of findings and megabytes of text per round, which the alert
//! state, the store, every page and every receiver would then carry. The most severe
//! findings are the ones listed (findings come in rank order). Not here: what the rules
//! find (they stay exact; only what is reported is bounded).

use crate::model::{Code, Finding, Subject};
use std::collections::BTreeMap;

/// Findings of one code listed per tenant and judgement.
pub const PER_CODE: usize = 20;
/// Findings listed per tenant and judgement, all codes together (the folded ones aside).
pub const PER_TENANT: usize = 100;
/// The longest a finding's message may be, in characters.
pub const MESSAGE_CHARS: usize = 1_000;

/// `findings` (in rank order, one per code and subject, as [`super::round::finish`]
/// returns them) with the bounds of this module applied, still in rank order.
pub fn bound(findings: Vec<Finding>) -> Vec<Finding> {
    let mut listed: Vec<Finding> = Vec::with_capacity(findings.len().min(PER_TENANT));
    // Per tenant: how many are listed in all and per code, and how many of each code are
    // left out.
    let mut per_tenant: BTreeMap<String, usize> = BTreeMap::new();
    let mut per_code: BTreeMap<(String, Code), usize> = BTreeMap::new();
    let mut left_out: BTreeMap<(String, Code), usize> = BTreeMap::new();
    for mut f in findings {
        let tenant = f.subject.tenant.clone();
        let all = per_tenant.entry(tenant.clone()).or_default();
        let code = per_code.entry((tenant.clone(), f.code)).or_default();
        if *all < PER_TENANT && *code < PER_CODE {
            *all += 1;
            *code += 1;
            cap_message(&mut f.message);
            listed.push(f);
        } else {
            *left_out.entry((tenant, f.code)).or_default() += 1;
        }
    }
    for ((tenant, code), n) in left_out {
        let note = format!(
            "{n} more {code} findings about this tenant are not listed (at most {PER_CODE} per code and {PER_TENANT} per tenant are)"
        );
        let subject = Subject::tenant(&tenant);
        match listed
            .iter_mut()
            .find(|f| f.code == code && f.subject == subject)
        {
            Some(f) => {
                // Room for the note: cut the message first when needed.
                let room = MESSAGE_CHARS.saturating_sub(note.chars().count() + 2);
                cap_message_at(&mut f.message, room);
                f.message.push_str("; ");
                f.message.push_str(&note);
            }
            None => listed.push(Finding::new(code, subject, note)),
        }
    }
    listed.sort_by(|a, b| a.rank().cmp(&b.rank()));
    listed
}

/// Cuts `message` to [`MESSAGE_CHARS`] characters, the last one an ellipsis.
pub fn cap_message(message: &mut String) {
    cap_message_at(message, MESSAGE_CHARS);
}

/// Cuts `message` to `max` characters (at least one), the last one an ellipsis.
fn cap_message_at(message: &mut String, max: usize) {
    if let Some((cut, _)) = message.char_indices().nth(max.max(1) - 1)
        && message[cut..].chars().nth(1).is_some()
    {
        message.truncate(cut);
        message.push('…');
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn finding(tenant: &str, code: Code, kid: usize) -> Finding {
        Finding::new(
            code,
            Subject::tenant(tenant).with_kid(Some(&format!("k{kid:04}"))),
            format!("key k{kid:04}"),
        )
    }

    #[test]
    fn findings_are_bounded_per_code_and_per_tenant_and_the_rest_counted() {
        // (findings per code for tenant a, for tenant b) → (listed of a, left out per code of a)
        let check = |codes: &[(Code, usize)], want_listed: usize, want_left: &[(Code, usize)]| {
            let mut all = Vec::new();
            for (code, n) in codes {
                all.extend((0..*n).map(|i| finding("a", *code, i)));
                all.extend((0..3).map(|i| finding("b", *code, i)));
            }
            all.sort_by(|a, b| a.rank().cmp(&b.rank()));
            let out = bound(all);
            let ranks: Vec<_> = out.iter().map(Finding::rank).collect();
            assert!(ranks.windows(2).all(|w| w[0] < w[1]), "sorted, unique");
            let (folded, listed): (Vec<&Finding>, Vec<&Finding>) = out
                .iter()
                .filter(|f| f.subject.tenant == "a")
                .partition(|f| f.subject.kid.is_none());
            assert_eq!(listed.len(), want_listed, "{codes:?}");
            let left: Vec<(Code, usize)> = folded
                .iter()
                .map(|f| {
                    let n = f.message.split(' ').next().unwrap().parse().unwrap();
                    (f.code, n)
                })
                .collect();
            assert_eq!(left, want_left, "{codes:?}");
            let b = out.iter().filter(|f| f.subject.tenant == "b").count();
            assert_eq!(b, 3 * codes.len(), "another tenant keeps its own bounds");
        };
        check(&[(Code::WeakKey, 5)], 5, &[]);
        check(&[(Code::WeakKey, PER_CODE)], PER_CODE, &[]);
        check(
            &[(Code::WeakKey, 2_500)],
            PER_CODE,
            &[(Code::WeakKey, 2_480)],
        );
        check(
            &[(Code::CrossTenantKey, 30), (Code::WeakKey, 2)],
            PER_CODE + 2,
            &[(Code::CrossTenantKey, 10)],
        );
        // Six codes of 20: the tenant cap takes the most severe 100.
        let six = [
            Code::KidMissing,
            Code::CrossTenantKey,
            Code::KidReused,
            Code::WeakKey,
            Code::KidAmbiguous,
            Code::JwkUnparseable,
        ];
        let codes: Vec<(Code, usize)> = six.iter().map(|c| (*c, 20)).collect();
        let mut want: Vec<(Code, usize)> = vec![(Code::JwkUnparseable, 20)];
        want.sort();
        check(&codes, PER_TENANT, &want);
    }

    #[test]
    fn a_folded_count_joins_a_listed_finding_about_the_tenant() {
        let mut all: Vec<Finding> = (0..25).map(|i| finding("a", Code::WeakKey, i)).collect();
        all.push(Finding::new(
            Code::WeakKey,
            Subject::tenant("a"),
            "about the tenant",
        ));
        all.sort_by(|a, b| a.rank().cmp(&b.rank()));
        let out = bound(all);
        assert_eq!(out.len(), PER_CODE);
        let tenant = out.iter().find(|f| f.subject.kid.is_none()).unwrap();
        assert_eq!(
            tenant.message,
            "about the tenant; 6 more weak_key findings about this tenant are not listed (at most 20 per code and 100 per tenant are)"
        );
    }

    #[test]
    fn messages_are_capped() {
        let check = |len: usize, want: usize| {
            let mut m = "é".repeat(len);
            cap_message(&mut m);
            assert_eq!(m.chars().count(), want, "{len}");
            assert_eq!(m.ends_with('…'), len > MESSAGE_CHARS, "{len}");
        };
        check(0, 0);
        check(MESSAGE_CHARS, MESSAGE_CHARS);
        check(MESSAGE_CHARS + 1, MESSAGE_CHARS);
        check(1_000_000, MESSAGE_CHARS);
    }
}
