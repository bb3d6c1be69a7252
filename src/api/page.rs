//! The status page at `/`: one server-rendered HTML document (maud, inline CSS, no
//! JavaScript) showing, per tenant, the domain × view matrix coloured by verdict, then
//! every open finding with when it opened.
//!
//! Pure: snapshot, config and `now` in, HTML out; every value is escaped by maud. It
//! shows only what the snapshot holds: per tenant also the rotation gate for the current
//! signer, the `client_would_fail` findings and when recent kids appeared in each view.

use crate::config::Config;
use crate::model::{Finding, Observation, Severity, Timestamp, ViewId, view_label, worst};
use crate::report::{Report, ViewRow};
use crate::snapshot::Snapshot;
use maud::{DOCTYPE, Markup, PreEscaped, html};

/// Seconds between automatic reloads of the page.
pub const REFRESH_SECS: u32 = 30;

/// The CSS class of a verdict: `ok` (green), `warn` (amber: medium, low) or `bad` (red:
/// critical, high).
pub fn class_of(verdict: Option<Severity>) -> &'static str {
    match verdict {
        None => "ok",
        Some(Severity::Critical | Severity::High) => "bad",
        Some(Severity::Medium | Severity::Low) => "warn",
    }
}

/// `42s`, `3m`, `5h`, `2d`.
fn short_duration(secs: i64) -> String {
    let s = secs.max(0);
    match s {
        0..60 => format!("{s}s"),
        60..3600 => format!("{}m", s / 60),
        3600..86400 => format!("{}h", s / 3600),
        _ => format!("{}d", s / 86400),
    }
}

/// A round's duration: `850 ms`, `2.4 s`.
fn took(ms: i64) -> String {
    let ms = ms.max(0);
    if ms < 1000 {
        format!("{ms} ms")
    } else {
        format!("{:.1} s", ms as f64 / 1000.0)
    }
}

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

fn subject_text(f: &Finding) -> String {
    let s = &f.subject;
    let mut out = s.tenant.clone();
    for part in [&s.domain, &s.path].into_iter().flatten() {
        out.push('/');
        out.push_str(part);
    }
    if let Some(e) = &s.edge {
        out.push('@');
        out.push_str(e);
    }
    if let Some(k) = &s.kid {
        out.push_str(" kid ");
        out.push_str(k);
    }
    out
}

const CSS: &str = r#"
:root{--ok:#1b7f3b;--ok-bg:#e8f5ec;--warn:#9a5b00;--warn-bg:#fff4dd;--bad:#b3261e;--bad-bg:#fde9e7;--muted:#5f6368;--line:#dadce0}
*{box-sizing:border-box}
body{margin:0;font:14px/1.4 system-ui,-apple-system,"Segoe UI",Roboto,sans-serif;color:#1f1f1f;background:#f5f6f8}
header,main,footer{max-width:1440px;margin:0 auto;padding:10px 16px}
header{display:flex;flex-wrap:wrap;gap:4px 16px;align-items:baseline}
h1{font-size:20px;margin:0}
h2{font-size:16px;margin:0 0 8px;display:flex;gap:8px;align-items:center}
h3{font-size:13px;margin:10px 0 4px;color:var(--muted);font-weight:600}
.meta,.muted{color:var(--muted)}
section{margin:0 0 14px}
.card{background:#fff;border:1px solid var(--line);border-radius:8px;padding:12px}
.tenants{display:grid;grid-template-columns:repeat(auto-fill,minmax(min(100%,420px),1fr));gap:12px}
.scroll{overflow-x:auto;-webkit-overflow-scrolling:touch}
table{border-collapse:collapse;width:100%}
th,td{text-align:left;vertical-align:top;padding:6px 8px;border-bottom:1px solid var(--line)}
thead th{font-size:12px;color:var(--muted);font-weight:600;white-space:nowrap}
td.cell{border-left:4px solid;min-width:140px}
td.ok{background:var(--ok-bg);border-left-color:var(--ok)}
td.warn{background:var(--warn-bg);border-left-color:var(--warn)}
td.bad{background:var(--bad-bg);border-left-color:var(--bad)}
td.none{color:var(--muted)}
.badge{display:inline-block;padding:1px 8px;border-radius:10px;font-size:12px;font-weight:600;color:#fff;white-space:nowrap}
.badge.ok{background:var(--ok)}.badge.warn{background:var(--warn)}.badge.bad{background:var(--bad)}
.verdict{font-weight:600;font-size:12px;text-transform:uppercase;letter-spacing:.03em}
.ok .verdict{color:var(--ok)}.warn .verdict{color:var(--warn)}.bad .verdict{color:var(--bad)}
code{font:12px/1.3 ui-monospace,SFMono-Regular,Menlo,Consolas,monospace}
.kids code{display:inline-block;margin:1px 4px 1px 0;padding:0 4px;background:#fff;border:1px solid var(--line);border-radius:3px}
.over{color:var(--bad);font-weight:600}
.codes{margin-top:2px}
.codes code{color:var(--bad)}
.warn .codes code{color:var(--warn)}
dl.later{display:grid;grid-template-columns:max-content 1fr;gap:2px 12px;margin:10px 0 0;font-size:13px}
dl.later dt{color:var(--muted)}dl.later dd{margin:0}
dd.gate-safe{color:var(--ok-fg,#1a7f37)}dd.gate-unsafe{color:var(--bad-fg,#b42318)}
td.msg{min-width:240px}
td.since{white-space:nowrap}
@media (max-width:600px){header,main,footer{padding:8px}.card{padding:8px}td.cell{min-width:120px}}
"#;

/// The whole page.
pub fn render(snapshot: &Snapshot, config: &Config, now: Timestamp) -> String {
    let findings = snapshot.findings();
    let report = Report::new(
        snapshot.observations(),
        findings.iter().map(|f| (*f).clone()).collect(),
    );
    let bad = report
        .views
        .iter()
        .filter(|v| !v.findings.is_empty())
        .count();
    let mut rows_by_tenant: std::collections::BTreeMap<&str, Vec<&ViewRow>> =
        std::collections::BTreeMap::new();
    for r in &report.views {
        rows_by_tenant.entry(r.tenant.as_str()).or_default().push(r);
    }
    let title = match (snapshot.rounds, findings.len()) {
        (0, _) => "keycanary · waiting for the first round".to_owned(),
        (_, 0) => "keycanary · all clear".to_owned(),
        (_, n) => format!("keycanary · {n} open finding(s)"),
    };
    html! {
        (DOCTYPE)
        html lang="en" {
            head {
                meta charset="utf-8";
                meta name="viewport" content="width=device-width, initial-scale=1";
                meta http-equiv="refresh" content=(REFRESH_SECS);
                title { (title) }
                style { (PreEscaped(CSS)) }
            }
            body {
                header {
                    h1 { "keycanary" }
                    (round_line(snapshot, config, now))
                    @if snapshot.rounds > 0 {
                        span.meta {
                            (report.views.len()) " views · " (bad) " with findings · "
                            (findings.len()) " open finding(s)"
                        }
                    }
                }
                main {
                    (findings_section(snapshot, &findings, now))
                    section.tenants {
                        @for t in &config.tenants {
                            (tenant_card(&t.name, snapshot, rows_by_tenant.get(t.name.as_str()).map_or(&[][..], Vec::as_slice)))
                        }
                    }
                }
                footer.meta {
                    "keycanary " (env!("CARGO_PKG_VERSION")) " · refreshes every " (REFRESH_SECS) " s · "
                    a href="/v1/status" { "/v1/status" } " · "
                    a href="/v1/findings" { "/v1/findings" } " · "
                    a href="/metrics" { "/metrics" } " · "
                    a href="/openapi.json" { "/openapi.json" }
                }
            }
        }
    }
    .into_string()
}

fn round_line(s: &Snapshot, config: &Config, now: Timestamp) -> Markup {
    let every = humantime::format_duration(config.settings.interval);
    html! {
        span.meta {
            @match (s.last_round_started, s.last_round_finished) {
                (Some(start), Some(end)) => {
                    "round " (s.rounds) " finished " (end) " ("
                    (short_duration((now.0 - end.0) / 1000)) " ago, took "
                    (took(end.0 - start.0)) ") · every "
                    (every) " · location " (config.settings.location)
                }
                _ => {
                    "no probe round has finished yet: this page shows the matrix once the first round is done (probing every "
                    (every) ")"
                }
            }
        }
    }
}

fn findings_section(s: &Snapshot, findings: &[&Finding], now: Timestamp) -> Markup {
    if s.rounds == 0 {
        return html! {};
    }
    html! {
        section.card #findings {
            h2 { "Open findings " span.muted { "(" (findings.len()) ")" } }
            @if findings.is_empty() {
                p.muted { "None: every view of every tenant agrees with its origin and verifies fresh tokens." }
            } @else {
                div.scroll {
                    table {
                        thead { tr { th { "severity" } th { "code" } th { "subject" } th { "since" } th { "message" } } }
                        tbody {
                            @for f in findings {
                                @let since = s.since(f);
                                tr {
                                    td { span class={ "badge " (class_of(Some(f.severity))) } { (f.severity) } }
                                    td { code { (f.code) } }
                                    td { (subject_text(f)) }
                                    td.since {
                                        @if let Some(t) = since {
                                            (short_duration((now.0 - t.0) / 1000)) " ago"
                                            br; small.muted { (t) }
                                        }
                                    }
                                    td.msg { (f.message) }
                                }
                            }
                        }
                    }
                }
            }
        }
    }
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

/// One tenant's card; `rows` are that tenant's rows of the report.
fn tenant_card(tenant: &str, s: &Snapshot, rows: &[&ViewRow]) -> Markup {
    let obs: Option<&Observation> = s.observation(tenant);
    let mut columns: Vec<ViewId> = Vec::new();
    for r in rows {
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
                (tenant)
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
    use crate::telemetry::fixtures::{config, incident};

    /// The `class` attribute of the `<td>` whose `data-cell` is `cell`.
    fn cell_class(html: &str, cell: &str) -> String {
        let at = html
            .find(&format!("data-cell=\"{cell}\""))
            .unwrap_or_else(|| panic!("no cell {cell} in:\n{html}"));
        let open = html[..at].rfind("<td").expect("a td");
        let tag = &html[open..at];
        let class = tag.split("class=\"").nth(1).expect("a class attribute");
        class.split('"').next().unwrap().to_owned()
    }

    #[test]
    fn seed_incident_cell_is_red_and_everything_is_escaped() {
        let mut s = incident();
        crate::telemetry::fixtures::findings_mut(&mut s)[0].message =
            "<script>alert(1)</script> & \"quotes\"".into();
        crate::telemetry::fixtures::obs_mut(&mut s).domains[0].views[0].key_set =
            Some(crate::model::KeySetParse::Parsed {
                keys: vec![crate::telemetry::fixtures::key("<b>k1</b>")],
            });
        let html = render(&s, &config(), Timestamp(62_500));
        assert_eq!(cell_class(&html, "acme/io/cdn"), "cell bad");
        assert_eq!(cell_class(&html, "acme/io/origin"), "cell ok");
        assert_eq!(cell_class(&html, "acme/io/login"), "cell ok");
        assert!(
            !html.contains("<script>") && !html.contains("<b>k1"),
            "{html}"
        );
        assert!(html.contains("&lt;script&gt;alert(1)&lt;/script&gt; &amp; &quot;quotes&quot;"));
        assert!(html.contains("kid_missing"));
        assert!(html.contains("1m ago"), "since is shown: {html}");
        assert!(html.contains("rotation gate"));
        assert!(html.contains("<meta http-equiv=\"refresh\" content=\"30\">"));
    }

    #[test]
    fn the_gate_shows_its_blockers_and_its_advisories_apart() {
        use crate::detect::gate::{Advisory, Blocker, GateAnswer, GateKind};
        use crate::model::{Code, Subject};
        let mut s = incident();
        let advisory = Advisory {
            code: Code::CachePolicyDrift,
            subject: Subject::domain("acme", "io"),
            detail: "io caches, app does not".into(),
            why: "a purge planned for one <domain> does not cover the other".into(),
        };
        let mut answer = GateAnswer {
            gate: GateKind::Rotation,
            tenant: "acme".into(),
            kid: Some("k2".into()),
            safe: true,
            blocking: vec![],
            advisories: vec![advisory],
            ready_at: None,
            evaluated_at: Timestamp(2_000),
        };
        s.tenants.get_mut("acme").unwrap().gate = Some(answer.clone());
        let html = render(&s, &config(), Timestamp(62_500));
        assert!(
            html.contains("safe: k2 is served everywhere and settled"),
            "{html}"
        );
        assert!(html.contains("gate advisories (do not block)"), "{html}");
        assert!(
            html.contains("a purge planned for one &lt;domain&gt; does not cover the other"),
            "{html}"
        );
        // Unsafe: the blockers are named with their subjects; the advisory stays apart.
        answer.safe = false;
        answer.blocking = vec![Blocker {
            code: Code::StaleEdge,
            subject: Subject::domain("acme", "io"),
            detail: "differs".into(),
            ready_at: None,
        }];
        s.tenants.get_mut("acme").unwrap().gate = Some(answer);
        let html = render(&s, &config(), Timestamp(62_500));
        assert!(html.contains("unsafe: 1 blocking condition(s)"), "{html}");
        let gate = &html[html.find("unsafe: 1").unwrap()..html.find("gate advisories").unwrap()];
        assert!(
            gate.contains("stale_edge") && !gate.contains("cache_policy_drift"),
            "{gate}"
        );
    }

    #[test]
    fn before_the_first_round_the_page_says_so() {
        let html = render(&Snapshot::default(), &config(), Timestamp(0));
        assert!(html.contains("no probe round has finished yet"), "{html}");
        assert!(html.contains("not probed yet"));
        assert!(!html.contains("data-cell"));
    }

    #[test]
    fn verdict_colours() {
        let check = |v: Option<Severity>, want: &str| assert_eq!(class_of(v), want);
        check(None, "ok");
        check(Some(Severity::Critical), "bad");
        check(Some(Severity::High), "bad");
        check(Some(Severity::Medium), "warn");
        check(Some(Severity::Low), "warn");
    }

    #[test]
    fn declared_ttl_prefers_s_maxage() {
        let check = |cc: &str, want: Option<u64>| assert_eq!(declared_ttl(cc), want, "{cc}");
        check("public, max-age=60", Some(60));
        check("max-age=60, s-maxage=600", Some(600));
        check("S-MaxAge=\"30\"", Some(30));
        check("no-store", None);
        check("max-age=soon", None);
    }

    #[test]
    fn durations_read_short() {
        let check = |s: i64, want: &str| assert_eq!(short_duration(s), want);
        check(-3, "0s");
        check(59, "59s");
        check(60, "1m");
        check(7200, "2h");
        check(200_000, "2d");
        assert_eq!(took(850), "850 ms");
        assert_eq!(took(2_430), "2.4 s");
    }
}
