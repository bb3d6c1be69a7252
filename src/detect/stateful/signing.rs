//! `signing_key_inconsistent`: logins to one tenant sign with different kids at the same
//! time. Judged per domain group (domains that must behave alike) and token kind:
//!
//! - **within this round**: tokens of one kind from the group's domains carry more than one
//!   kid (e.g. `app` signs with `k1` while `io` signs with `k2`, or a domain returns both);
//! - **alternating**: over the group's last [`WINDOW`] rounds that returned tokens of that
//!   kind (this round being the latest), a kid stopped signing and then signed again
//!   (`k1 → k2 → k1`): a load balancer in front of IdP nodes that disagree. A clean switch
//!   (`k1 → k1 → k2`) is a rotation and does not fire.
//!
//! The subject is the tenant; with several groups the message names the group.

use super::Ctx;
use crate::config;
use crate::model::{Code, Finding, Subject, TokenKind};
use std::collections::{BTreeMap, BTreeSet};

/// How many token-returning rounds alternation is looked for in.
pub const WINDOW: usize = 3;

const NO_KID: &str = "(no kid)";

pub(super) fn signing_key_inconsistent(cx: &Ctx<'_>, out: &mut Vec<Finding>) {
    let groups = config::groups(cx.tenant);
    let several = groups.len() > 1;
    for (group, domains) in groups {
        let members: BTreeSet<&str> = domains.iter().map(|d| d.name.as_str()).collect();
        let prefix = if several {
            format!("group {group}: ")
        } else {
            String::new()
        };
        for kind in [TokenKind::AccessToken, TokenKind::IdToken] {
            let message =
                within_round(cx, &members, kind).or_else(|| alternation(cx, &members, kind));
            if let Some(m) = message {
                out.push(Finding::new(
                    Code::SigningKeyInconsistent,
                    Subject::tenant(&cx.obs.tenant),
                    format!("{prefix}{m}"),
                ));
            }
        }
    }
}

fn within_round(cx: &Ctx<'_>, members: &BTreeSet<&str>, kind: TokenKind) -> Option<String> {
    let mut by_kid: BTreeMap<&str, BTreeSet<&str>> = BTreeMap::new();
    for d in cx
        .obs
        .domains
        .iter()
        .filter(|d| members.contains(d.domain.as_str()))
    {
        for t in d.tokens().iter().filter(|t| t.kind == kind) {
            by_kid
                .entry(t.header.kid.as_deref().unwrap_or(NO_KID))
                .or_default()
                .insert(&d.domain);
        }
    }
    if by_kid.len() < 2 {
        return None;
    }
    let who: Vec<String> = by_kid
        .iter()
        .map(|(kid, domains)| {
            let domains: Vec<&str> = domains.iter().copied().collect();
            format!("{kid} ({})", domains.join(", "))
        })
        .collect();
    Some(format!(
        "{} tokens of one round are signed by different kids: {}",
        kind.as_str(),
        who.join(", ")
    ))
}

fn alternation(cx: &Ctx<'_>, members: &BTreeSet<&str>, kind: TokenKind) -> Option<String> {
    // The latest WINDOW rounds with such tokens, newest first while collecting.
    let mut rounds: Vec<(crate::model::Timestamp, BTreeSet<&str>)> = cx
        .history
        .signing()
        .iter()
        .rev()
        .map(|r| {
            let kids = r
                .tokens
                .iter()
                .filter(|s| s.kind == kind && members.contains(s.domain.as_str()))
                .map(|s| s.kid.as_deref().unwrap_or(NO_KID))
                .collect::<BTreeSet<&str>>();
            (r.at, kids)
        })
        .filter(|(_, kids)| !kids.is_empty())
        .take(WINDOW)
        .collect();
    rounds.reverse();
    // Only a round that returned such tokens judges its window.
    if rounds
        .last()
        .is_none_or(|(at, _)| *at != cx.history.last_recorded())
    {
        return None;
    }
    let sets: Vec<&BTreeSet<&str>> = rounds.iter().map(|(_, kids)| kids).collect();
    if !alternates(&sets) {
        return None;
    }
    let sequence: Vec<String> = sets
        .iter()
        .map(|kids| kids.iter().copied().collect::<Vec<_>>().join("+"))
        .collect();
    Some(format!(
        "{} signing kid alternated over the last {} rounds: {}",
        kind.as_str(),
        sets.len(),
        sequence.join(" → ")
    ))
}

/// Whether some kid signs in a round, not in a later one, and again after that.
fn alternates(rounds: &[&BTreeSet<&str>]) -> bool {
    rounds.iter().enumerate().any(|(i, kids)| {
        kids.iter().any(|kid| {
            let mut gone = false;
            for later in &rounds[i + 1..] {
                if !later.contains(kid) {
                    gone = true;
                } else if gone {
                    return true;
                }
            }
            false
        })
    })
}

#[cfg(test)]
mod tests {
    use super::super::fixtures::*;
    use super::alternates;
    use crate::model::*;
    use std::collections::BTreeSet;

    #[test]
    fn alternation_shapes() {
        let check = |seq: &[&[&str]], want: bool| {
            let sets: Vec<BTreeSet<&str>> =
                seq.iter().map(|r| r.iter().copied().collect()).collect();
            let refs: Vec<&BTreeSet<&str>> = sets.iter().collect();
            assert_eq!(alternates(&refs), want, "{seq:?}");
        };
        check(&[], false);
        check(&[&["a"], &["a"], &["a"]], false);
        check(&[&["a"], &["a"], &["b"]], false);
        check(&[&["a"], &["a", "b"], &["b"]], false);
        check(&[&["a"], &["b"], &["a"]], true);
        check(&[&["b"], &["a"], &["b"]], true);
        check(&[&["a", "b"], &["b"], &["a"]], true);
    }

    /// Every token of `domain` in the round signed by `kid`.
    fn sign(o: &mut Observation, domain: usize, kid: &str) {
        if let LoginResult::Tokens { tokens } =
            &mut o.domains[domain].login.as_mut().unwrap().result
        {
            for t in tokens {
                t.header.kid = Some(kid.into());
            }
        }
    }

    /// A round at step `i` where app and io sign with these kids (`None`: login failed).
    fn signed(i: i64, app: Option<&str>, io: Option<&str>) -> Observation {
        let mut o = round(i);
        for (d, kid) in [(0, app), (1, io)] {
            match kid {
                Some(kid) => sign(&mut o, d, kid),
                None => {
                    o.domains[d].login.as_mut().unwrap().result = LoginResult::Failed {
                        reason: "down".into(),
                    }
                }
            }
        }
        o
    }

    #[test]
    fn signing_key_inconsistent() {
        let c = Code::SigningKeyInconsistent;
        type Table<'a> = &'a [(
            &'a str,
            &'a [(Option<&'a str>, Option<&'a str>)],
            &'a [&'a str],
            &'a str,
        )];
        let table: Table<'_> = &[
            ("steady", &[(Some("k1"), Some("k1")); 3], &[], ""),
            (
                "clean rotation",
                &[
                    (Some("k1"), Some("k1")),
                    (Some("k2"), Some("k2")),
                    (Some("k2"), Some("k2")),
                ],
                &[],
                "",
            ),
            (
                "domains disagree in one round",
                &[(Some("k1"), Some("k2"))],
                &[""],
                "access_token tokens of one round are signed by different kids: k1 (app), k2 (io)",
            ),
            (
                "alternation",
                &[
                    (Some("k1"), Some("k1")),
                    (Some("k2"), Some("k2")),
                    (Some("k1"), Some("k1")),
                ],
                &[""],
                "access_token signing kid alternated over the last 3 rounds: k1 → k2 → k1",
            ),
            (
                "alternation across domains over rounds",
                &[(Some("k1"), None), (None, Some("k2")), (Some("k1"), None)],
                &[""],
                "access_token signing kid alternated over the last 3 rounds: k1 → k2 → k1",
            ),
            (
                "alternation out of the window",
                &[
                    (Some("k1"), Some("k1")),
                    (Some("k2"), Some("k2")),
                    (Some("k1"), Some("k1")),
                    (Some("k1"), Some("k1")),
                    (Some("k1"), Some("k1")),
                ],
                &[],
                "",
            ),
            (
                "no tokens this round: no judgement",
                &[
                    (Some("k1"), Some("k1")),
                    (Some("k2"), Some("k2")),
                    (Some("k1"), Some("k1")),
                    (None, None),
                ],
                &[],
                "",
            ),
        ];
        for (name, steps, expected, msg) in table {
            let rounds: Vec<Observation> = steps
                .iter()
                .enumerate()
                .map(|(i, (a, b))| signed(i as i64, *a, *b))
                .collect();
            let f = check(c, &rounds, expected);
            if !expected.is_empty() {
                assert_eq!(message(&f), *msg, "{name}");
            }
        }
    }

    #[test]
    fn signing_is_judged_per_group() {
        let c = Code::SigningKeyInconsistent;
        let config = config_with(|toml| {
            toml.replace("name = \"io\"\n", "name = \"io\"\ngroup = \"other\"\n")
        });
        // Two groups, each consistent: no finding.
        let f = check_with(&config, c, &[signed(0, Some("k1"), Some("k2"))], &[]);
        assert!(f.is_empty());
        let mut o = signed(0, Some("k1"), Some("k2"));
        let extra = tok(&mut o, 0).clone();
        if let LoginResult::Tokens { tokens } = &mut app(&mut o).login.as_mut().unwrap().result {
            tokens.push(TokenInfo {
                header: TokenHeader {
                    kid: Some("k3".into()),
                    ..extra.header.clone()
                },
                ..extra
            });
        }
        let f = check_with(&config, c, &[o], &[""]);
        assert_eq!(
            message(&f),
            "group acme: access_token tokens of one round are signed by different kids: k1 (app), k3 (app)"
        );
    }
}
