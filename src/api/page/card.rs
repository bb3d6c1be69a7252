//! One tenant's card on the status page: the domain × view matrix coloured by verdict
//! (kids served, cache status, `Age` against the declared TTL, finding codes; a `login`
//! column with the signing kid and domain-wide findings), then the rotation gate for the
//! current signer, the client libraries that would fail and the last rotation's timeline.
//!
//! Pure: the snapshot in, markup out, every value escaped by maud. Costs the tenant's own
//! size: the card reads only its tenant's part of the snapshot.

use super::{class_of, tenant_href};
use crate::model::{Finding, Observation, Severity, Timestamp, ViewId, view_label, worst};
use crate::report::{Report, ViewRow};
use crate::snapshot::Snapshot;
use maud::{Markup, html};

/// The freshness lifetime a shared cache reads from Cache-Control (`s-maxage`, else
/// `max-age`), for display next to `Age`. Detection does its own, complete maths.
fn declared_ttl(cache_control: &str) -> Option<u64> {
    let directive = |name: &str| {
        cache_control.split(',').find_map(|d| {
            let (k, v) = d.trim().split_once('=')?;
            k.trim()
                .eq_ignore_ascii_case(name)
                .then(|| v.trim().trim_matches('"').parse().ok())
                .flatten()
        })
    };
    directive("s-maxage").or_else(|| directive("max-age"))
}

/// Below the matrix: the rotation gate for the current signer ("healthy right now"), the
/// simulated clients that would fail, and when each recent kid appeared in each view.
fn later(tenant: &str, s: &Snapshot) -> Markup {
    // Computed by the daemon when it judged the tenant, not per request.
    let gate = s.gate(tenant).filter(|_| s.rounds > 0);
    let failing: Vec<&Finding> = s
        .tenants
        .get(tenant)
        .map_or(&[][..], |t| &t.findings)
        .iter()
        .filter(|f| f.subject.tenant == tenant && f.code == crate::model::Code::ClientWouldFail)
        .collect();
    let timeline = rotation_timeline(s, tenant);
    html! {
        dl.later {
            dt { "rotation gate" }
            @match &gate {
                None => dd.muted { "waiting for the first round" },
                Some(g) if g.safe => dd.gate-safe { "safe: " (g.kid.as_deref().unwrap_or("")) " is served everywhere and settled" },
                Some(g) => dd.gate-unsafe {
                    "unsafe: " (g.blocking.len()) " blocking condition(s)"
                    @if let Some(at) = g.ready_at { ", ready at " (at) }
                    @for b in g.blocking.iter().take(6) { div { code { (b.code) } " " (b.subject) } }
                }
            }
            @if let Some(g) = gate.filter(|g| !g.advisories.is_empty()) {
                dt { "gate advisories (do not block)" }
                dd { @for a in &g.advisories { div { code { (a.code) } " " (a.subject) " — " (a.why) } } }
            }
            dt { "clients that would fail" }
            @if failing.is_empty() {
                dd.muted { "none" }
            } @else {
                dd { @for f in &failing { div { code { (f.subject) } " " (f.message) } } }
            }
            dt { "last rotation" }
            @if timeline.is_empty() {
                dd.muted { "no key change seen since keycanary started watching" }
            } @else {
                dd { @for (kid, view, at) in &timeline { div { code { (kid) } " in " (view) " since " (at) } } }
            }
        }
    }
}

/// When each kid that appeared after watching began (the latest two such kids) was first
/// seen in each view, oldest first.
fn rotation_timeline(s: &Snapshot, tenant: &str) -> Vec<(String, String, Timestamp)> {
    use crate::detect::history::Since;
    let Some(h) = s.history(tenant) else {
        return Vec::new();
    };
    /// A kid, when it first appeared anywhere, and when in each view.
    type Appearance<'a> = (Timestamp, &'a str, Vec<(String, Timestamp)>);
    let mut kids: Vec<Appearance<'_>> = Vec::new();
    for (kid, ledger) in h.kids() {
        let seen: Vec<(String, Timestamp)> = ledger
            .views()
            .filter_map(|(view, p)| match p.since {
                Since::At(t) => Some((view.to_string(), t)),
                Since::BeforeWatch => None,
            })
            .collect();
        if let Some(first) = seen.iter().map(|(_, t)| *t).min() {
            kids.push((first, kid, seen));
        }
    }
    kids.sort_by_key(|(first, _, _)| std::cmp::Reverse(*first));
    let mut out: Vec<(String, String, Timestamp)> = kids
        .into_iter()
        .take(2)
        .flat_map(|(_, kid, seen)| seen.into_iter().map(move |(v, t)| (kid.to_owned(), v, t)))
        .collect();
    out.sort_by_key(|(_, _, t)| *t);
    out
}

/// Findings about one view (same matching as the report rows).
fn about_view<'a>(
    findings: &'a [&'a Finding],
    tenant: &'a str,
    domain: &'a str,
    id: &'a ViewId,
) -> impl Iterator<Item = &'a Finding> + 'a {
    findings
        .iter()
        .copied()
        .filter(move |f| f.subject.is_view(tenant, domain, id))
}

/// One tenant's full card, built from its own part of the snapshot (its rows of the
/// report, its findings): what `/?tenant=NAME` shows, and the main page for a tenant with
/// a problem.
pub fn tenant_card(tenant: &str, s: &Snapshot) -> Markup {
    let obs: Option<&Observation> = s.observation(tenant);
    let own = s.tenants.get(tenant).map_or(&[][..], |t| &t.findings);
    let report = Report::new(obs, own.to_vec());
    let rows: Vec<&ViewRow> = report.views.iter().collect();
    let mut columns: Vec<ViewId> = Vec::new();
    for r in &rows {
        let id = ViewId {
            path: r.path.clone(),
            edge: r.edge.clone(),
        };
        if !columns.contains(&id) {
            columns.push(id);
        }
    }
    let tenant_findings: Vec<&Finding> = s
        .tenants
        .get(tenant)
        .map_or(&[][..], |t| &t.findings)
        .iter()
        .collect();
    let tenant_level: Vec<&Finding> = tenant_findings
        .iter()
        .copied()
        .filter(|f| f.subject.domain.is_none())
        .collect();
    let verdict = worst(tenant_findings.iter().copied());
    html! {
        article.card id={ "tenant-" (tenant) } {
            h2 {
                a href=(tenant_href(tenant)) { (tenant) }
                @if s.rounds > 0 {
                    span class={ "badge " (class_of(verdict)) } {
                        (verdict.map(Severity::as_str).unwrap_or("ok"))
                    }
                }
            }
            @if !tenant_level.is_empty() {
                p.codes { @for f in &tenant_level { code { (f.code) } " " } }
            }
            @match obs {
                None => p.muted { "not probed yet" },
                Some(obs) => div.scroll {
                    table.matrix {
                        thead {
                            tr {
                                th { "domain" }
                                @for c in &columns { th { (view_label(&c.path, c.edge.as_deref())) } }
                                th { "login" }
                            }
                        }
                        tbody {
                            @for d in &obs.domains {
                                tr {
                                    th { (d.domain) }
                                    @for c in &columns {
                                        @match rows.iter().find(|r| r.domain == d.domain && r.path == c.path && r.edge == c.edge) {
                                            Some(r) => (view_cell(tenant, r, &about_view(&tenant_findings, tenant, &d.domain, c).collect::<Vec<_>>())),
                                            None => td.none { "—" },
                                        }
                                    }
                                    (login_cell(tenant, d, s))
                                }
                            }
                        }
                    }
                }
            }
            (later(tenant, s))
        }
    }
}

fn view_cell(tenant: &str, r: &ViewRow, findings: &[&Finding]) -> Markup {
    let verdict = worst(findings.iter().copied());
    let class = class_of(verdict);
    let id = format!(
        "{tenant}/{}/{}",
        r.domain,
        view_label(&r.path, r.edge.as_deref())
    );
    let ttl = r.cache_control.as_deref().and_then(declared_ttl);
    let over = matches!((r.age, ttl), (Some(a), Some(t)) if a > t);
    html! {
        td class={ "cell " (class) } data-cell=(id) {
            div.verdict { (verdict.map(Severity::as_str).unwrap_or("ok")) }
            div.kids {
                @if r.kids.is_empty() { span.muted { "no keys" } }
                @for k in &r.kids { code { (k) } }
            }
            div.muted {
                @match (r.status, &r.error) {
                    (_, Some(e)) => span.over { "error: " (e) },
                    (Some(st), None) if st != 200 => span.over { "HTTP " (st) },
                    _ => {},
                }
                @if let Some(cs) = &r.cache_status { (cs) " · " }
                @match (r.age, ttl) {
                    (Some(a), Some(t)) => span class=[over.then_some("over")] { "Age " (a) "s / " (t) "s" },
                    (Some(a), None) => { "Age " (a) "s" },
                    (None, Some(t)) => { "TTL " (t) "s" },
                    (None, None) => { "no Age" },
                }
            }
            @if !findings.is_empty() {
                div.codes {
                    @for f in findings {
                        code { (f.code) @if let Some(k) = &f.subject.kid { " " (k) } } " "
                    }
                }
            }
        }
    }
}

/// Discovery, login and domain-wide findings (those without a path).
fn login_cell(tenant: &str, d: &crate::model::DomainObservation, s: &Snapshot) -> Markup {
    let findings: Vec<&Finding> = s
        .tenants
        .get(tenant)
        .map_or(&[][..], |t| &t.findings)
        .iter()
        .filter(|f| {
            f.subject.tenant == tenant
                && f.subject.domain.as_deref() == Some(d.domain.as_str())
                && f.subject.path.is_none()
        })
        .collect();
    let verdict = worst(findings.iter().copied());
    let mut signers: Vec<&str> = d
        .tokens()
        .iter()
        .filter_map(|t| t.header.kid.as_deref())
        .collect();
    signers.dedup();
    html! {
        td class={ "cell " (class_of(verdict)) } data-cell={ (tenant) "/" (d.domain) "/login" } {
            div.verdict { (verdict.map(Severity::as_str).unwrap_or("ok")) }
            @match &d.login {
                None => div.muted { "no login configured" },
                Some(l) => div.kids {
                    @if signers.is_empty() {
                        span.muted { (l.grant) ": no token" }
                    } @else {
                        span.muted { "signs with " }
                        @for k in &signers { code { (k) } }
                    }
                },
            }
            @if !findings.is_empty() {
                div.codes { @for f in &findings { code { (f.code) } " " } }
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn declared_ttl_prefers_s_maxage() {
        let check = |cc: &str, want: Option<u64>| assert_eq!(declared_ttl(cc), want, "{cc}");
        check("public, max-age=60", Some(60));
        check("max-age=60, s-maxage=600", Some(600));
        check("S-MaxAge=\"30\"", Some(30));
        check("no-store", None);
        check("max-age=soon", None);
    }
}
