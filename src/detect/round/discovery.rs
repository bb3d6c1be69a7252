//! Rules about discovery documents: `discovery_failed` (per domain) and `discovery_drift`
//! (a document's issuer against the configured one, and documents across one group).
//!
//! Discovery is compared as parsed by the probe; fetching and parsing it is not done here.

use super::{Ctx, names, one_line, reference, same_issuer};
use crate::model::{Code, DiscoveryDoc, DiscoveryResult, Finding};

pub(super) fn discovery_failed(cx: &Ctx<'_>, out: &mut Vec<Finding>) {
    for d in &cx.obs.domains {
        let Some(disc) = &d.discovery else { continue };
        if let DiscoveryResult::Invalid { reason } = &disc.result {
            let message = format!(
                "discovery document at {} is unusable: {}",
                one_line(&disc.fetch.url),
                one_line(reason)
            );
            out.push(Finding::new(
                Code::DiscoveryFailed,
                cx.domain_subject(d),
                message,
            ));
        }
    }
}

/// What must agree between the discovery documents of one group.
#[derive(PartialEq)]
struct Shape<'a> {
    /// `jwks_uri` with the configured issuer stripped (whole when it is elsewhere).
    jwks_uri: &'a str,
    /// `id_token_signing_alg_values_supported`, sorted and deduplicated.
    algs: Vec<&'a str>,
}

fn shape<'a>(doc: &'a DiscoveryDoc, issuer: &str) -> Shape<'a> {
    let issuer = issuer.strip_suffix('/').unwrap_or(issuer);
    let jwks_uri = match doc.jwks_uri.strip_prefix(issuer) {
        Some(rest) if rest.is_empty() || rest.starts_with(['/', '?']) => rest,
        _ => doc.jwks_uri.as_str(),
    };
    let mut algs: Vec<&str> = doc
        .id_token_signing_alg_values_supported
        .iter()
        .map(String::as_str)
        .collect();
    algs.sort_unstable();
    algs.dedup();
    Shape { jwks_uri, algs }
}

pub(super) fn discovery_drift(cx: &Ctx<'_>, out: &mut Vec<Finding>) {
    for d in &cx.obs.domains {
        if let Some(doc) = d.discovery_doc()
            && !same_issuer(&doc.issuer, &d.issuer)
        {
            let message = format!(
                "discovery issuer {} is not the configured issuer {}",
                one_line(&doc.issuer),
                d.issuer
            );
            out.push(Finding::new(
                Code::DiscoveryDrift,
                cx.domain_subject(d),
                message,
            ));
        }
    }
    for group in cx.groups() {
        let members: Vec<_> = group
            .iter()
            .filter_map(|d| Some((d.domain.as_str(), shape(d.discovery_doc()?, &d.issuer))))
            .collect();
        let Some((ref_name, want)) = reference(&members) else {
            continue;
        };
        for (name, got) in &members {
            let mut diffs = Vec::new();
            if got.jwks_uri != want.jwks_uri {
                diffs.push(format!(
                    "jwks_uri {} vs {}",
                    one_line(got.jwks_uri),
                    one_line(want.jwks_uri)
                ));
            }
            if got.algs != want.algs {
                diffs.push(format!(
                    "id_token algs [{}] vs [{}]",
                    names(&got.algs),
                    names(&want.algs)
                ));
            }
            if diffs.is_empty() {
                continue;
            }
            let message = format!("discovery differs from {ref_name}'s: {}", diffs.join(", "));
            let subject = crate::model::Subject::domain(&cx.obs.tenant, name);
            out.push(Finding::new(Code::DiscoveryDrift, subject, message));
        }
    }
}

#[cfg(test)]
mod tests {
    use super::super::fixtures::*;
    use crate::model::*;

    fn doc(d: &mut DomainObservation) -> &mut DiscoveryDoc {
        match &mut d.discovery.as_mut().unwrap().result {
            DiscoveryResult::Parsed { doc } => doc,
            DiscoveryResult::Invalid { .. } => unreachable!(),
        }
    }

    #[test]
    fn discovery_failed() {
        let c = Code::DiscoveryFailed;
        check(c, |_| {}, &[]);
        check(c, |o| app(o).discovery = None, &[]);
        let f = check(
            c,
            |o| {
                app(o).discovery.as_mut().unwrap().result = DiscoveryResult::Invalid {
                    reason: "missing jwks_uri".into(),
                }
            },
            &["app"],
        );
        assert_eq!(
            message(&f),
            "discovery document at https://idp.example.app/acme/.well-known/openid-configuration is unusable: missing jwks_uri"
        );
    }

    #[test]
    fn discovery_drift() {
        let c = Code::DiscoveryDrift;
        type Edit = fn(&mut Observation);
        let table: &[(Edit, &[&str], &str)] = &[
            (|_| {}, &[], ""),
            (
                |o| doc(app(o)).issuer.push('/'),
                // The trailing slash also moves nothing in jwks_uri.
                &[],
                "",
            ),
            (
                |o| doc(app(o)).issuer = "https://idp.example.app/other".into(),
                &["app"],
                "discovery issuer https://idp.example.app/other is not the configured issuer",
            ),
            (
                // Same path under each domain's own issuer: alike.
                |o| {
                    doc(app(o)).jwks_uri = format!("{}/keys", issuer("app"));
                    doc(io(o)).jwks_uri = format!("{}/keys", issuer("io"));
                },
                &[],
                "",
            ),
            (
                // Tie: the first domain is the reference.
                |o| doc(io(o)).jwks_uri = format!("{}/keys", issuer("io")),
                &["io"],
                "discovery differs from app's: jwks_uri /keys vs /jwks",
            ),
            (
                |o| doc(io(o)).jwks_uri = "https://keys.example/acme".into(),
                &["io"],
                "jwks_uri https://keys.example/acme vs /jwks",
            ),
            (
                |o| {
                    doc(io(o)).id_token_signing_alg_values_supported =
                        vec!["ES256".into(), "RS256".into()]
                },
                &["io"],
                "id_token algs [ES256, RS256] vs [RS256]",
            ),
            (
                // Order and duplicates do not matter.
                |o| {
                    doc(app(o)).id_token_signing_alg_values_supported =
                        vec!["RS256".into(), "ES256".into()];
                    doc(io(o)).id_token_signing_alg_values_supported =
                        vec!["ES256".into(), "RS256".into(), "ES256".into()];
                },
                &[],
                "",
            ),
            (
                // Without a second document there is nothing to compare.
                |o| {
                    io(o).discovery = None;
                    doc(app(o)).jwks_uri = "https://keys.example/acme".into();
                },
                &[],
                "",
            ),
        ];
        for (edit, expected, fragment) in table {
            let f = check(c, edit, expected);
            if let Some(f) = f.first() {
                assert!(f.message.contains(fragment), "{}", f.message);
            }
        }
    }

    #[test]
    fn discovery_drift_is_per_group() {
        let mut o = obs();
        doc(io(&mut o)).jwks_uri = format!("{}/keys", issuer("io"));
        let mut tenant = config().tenants.remove(0);
        tenant.domains[1].group = "elsewhere".into();
        check_obs(Code::DiscoveryDrift, &o, &tenant, &[]);
    }

    #[test]
    fn majority_sets_the_reference() {
        let mut o = obs();
        let mut third = domain("dev");
        doc(&mut third).jwks_uri = format!("{}/keys", issuer("dev"));
        doc(app(&mut o)).jwks_uri = format!("{}/keys", issuer("app"));
        o.domains.push(third);
        let mut tenant = config().tenants.remove(0);
        let mut dev = tenant.domains[1].clone();
        dev.name = "dev".into();
        dev.issuer = url::Url::parse(&issuer("dev")).unwrap();
        tenant.domains.push(dev);
        let f = check_obs(Code::DiscoveryDrift, &o, &tenant, &["io"]);
        assert!(f[0].message.contains("from app's"), "{}", f[0].message);
    }
}
