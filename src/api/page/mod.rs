//! The status page at `/`, server-rendered HTML (maud, inline CSS, no JavaScript), made to
//! stay readable at a thousand tenants:
//!
//! - `/`: the open findings (the most severe first, at most [`MAX_FINDINGS`] rows), then
//!   the tenants with a problem, worst first, each as its full card (at most
//!   [`MAX_CARDS`]; the rest one line each), then every healthy tenant folded into one
//!   line (name, `ok`, when its last round finished), then those not probed yet;
//! - `/?q=TEXT`: the same for the tenants whose name contains TEXT (a plain GET form);
//! - `/?tenant=NAME`: one tenant's page: its open findings and its full card (the domain ×
//!   view matrix coloured by verdict, the rotation gate, the clients that would fail, the
//!   last rotation: [`card`]).
//!
//! Pure: snapshot, config, query and `now` in, HTML out; every value is escaped by maud
//! and every link's tenant name is URL-encoded. Only the tenants shown as cards cost their
//! views; the folded lines read each tenant's summary. Not here: routing (`api`).

pub mod card;
pub mod triage;

use crate::config::Config;
use crate::model::{Finding, Severity, Timestamp};
use crate::snapshot::Snapshot;
use maud::{DOCTYPE, Markup, PreEscaped, html};
use serde::Deserialize;
use triage::{Entry, Fleet, Standing, matches, triage};

/// Seconds between automatic reloads of the page.
pub const REFRESH_SECS: u32 = 30;
/// Full cards on the fleet page; further tenants with problems get one line each.
pub const MAX_CARDS: usize = 20;
/// Rows of the open-findings table on the fleet page (a tenant's page shows all of its own).
pub const MAX_FINDINGS: usize = 100;
/// Lines per folded list (healthy, problems beyond the cards, not probed yet).
pub const MAX_LINES: usize = 2_000;

/// What the page is asked for: `?tenant=NAME` (that tenant's page) or `?q=TEXT` (the
/// tenants whose name contains TEXT, ignoring case). Empty values count as absent.
#[derive(Debug, Clone, Default, Deserialize)]
pub struct PageQuery {
    pub tenant: Option<String>,
    pub q: Option<String>,
}

/// The CSS class of a verdict: `ok` (green), `warn` (amber: medium, low) or `bad` (red:
/// critical, high).
pub fn class_of(verdict: Option<Severity>) -> &'static str {
    match verdict {
        None => "ok",
        Some(Severity::Critical | Severity::High) => "bad",
        Some(Severity::Medium | Severity::Low) => "warn",
    }
}

/// The link to `tenant`'s page.
pub fn tenant_href(tenant: &str) -> String {
    let name: String = url::form_urlencoded::byte_serialize(tenant.as_bytes()).collect();
    format!("/?tenant={name}")
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
h1 a{color:inherit;text-decoration:none}
h2 a{color:inherit}
form.filter{display:flex;flex-wrap:wrap;gap:8px;align-items:center;margin:0 0 14px}
form.filter input{font:inherit;padding:4px 8px;border:1px solid var(--line);border-radius:6px;min-width:16em}
form.filter button{font:inherit;padding:4px 12px}
ul.fold{list-style:none;margin:0;padding:0;columns:16em auto;column-gap:18px}
ul.fold li{break-inside:avoid;padding:2px 0;white-space:nowrap;overflow:hidden;text-overflow:ellipsis}
ul.fold .st{font-weight:600}ul.fold li.ok .st{color:var(--ok)}ul.fold li.bad .st{color:var(--bad)}ul.fold li.warn .st{color:var(--warn)}ul.fold li.none .st{color:var(--muted)}
ul.fold .codes{display:inline;margin-left:4px}
p.cap{margin:8px 0;color:var(--warn)}
@media (max-width:600px){header,main,footer{padding:8px}.card{padding:8px}td.cell{min-width:120px}}
"#;

/// The fleet page, unfiltered (`GET /`).
pub fn render(snapshot: &Snapshot, config: &Config, now: Timestamp) -> String {
    fleet_page(snapshot, config, None, now)
}

/// The page `query` asks for: `Err` holds the page answering a tenant that is not
/// configured (served with 404).
pub fn render_query(
    snapshot: &Snapshot,
    config: &Config,
    query: &PageQuery,
    now: Timestamp,
) -> Result<String, String> {
    fn given(v: &Option<String>) -> Option<&str> {
        v.as_deref().map(str::trim).filter(|v| !v.is_empty())
    }
    match (given(&query.tenant), given(&query.q)) {
        (Some(t), _) if config.tenant(t).is_some() => Ok(tenant_page(snapshot, config, t, now)),
        (Some(t), _) => Err(unknown_tenant_page(snapshot, config, t, now)),
        (None, q) => Ok(fleet_page(snapshot, config, q, now)),
    }
}

/// The document around `main`.
fn document(title: &str, header: Markup, main: Markup) -> String {
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
                header { h1 { a href="/" { "keycanary" } } (header) }
                main { (main) }
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

/// Views in the latest rounds, and those with a finding about them.
fn view_counts(s: &Snapshot) -> (usize, usize) {
    let (mut views, mut bad) = (0, 0);
    for t in s.tenants.values() {
        let Some(obs) = t.observation.as_deref() else {
            continue;
        };
        for d in &obs.domains {
            views += d.views.len();
            if !t.findings.is_empty() {
                bad += d
                    .views
                    .iter()
                    .filter(|v| {
                        t.findings
                            .iter()
                            .any(|f| f.subject.is_view(&obs.tenant, &d.domain, &v.id))
                    })
                    .count();
            }
        }
    }
    (views, bad)
}

fn fleet_page(s: &Snapshot, config: &Config, q: Option<&str>, now: Timestamp) -> String {
    let fleet = triage(s, config, q);
    let all = s.findings();
    let total_findings = all.len();
    let findings: Vec<&Finding> = match q {
        None => all,
        Some(q) => all
            .into_iter()
            .filter(|f| matches(&f.subject.tenant, q))
            .collect(),
    };
    let (views, bad) = view_counts(s);
    let title = match (s.rounds, total_findings) {
        (0, _) => "keycanary · waiting for the first round".to_owned(),
        (_, 0) => "keycanary · all clear".to_owned(),
        (_, n) => format!("keycanary · {n} open finding(s)"),
    };
    let header = html! {
        (round_line(s, config, now))
        span.meta {
            (config.tenants.len()) " tenant(s): " (fleet.totals.0) " with problems · "
            (fleet.totals.1) " healthy · " (fleet.totals.2) " not probed yet"
            @if s.rounds > 0 {
                " · " (views) " views · " (bad) " with findings · " (total_findings) " open finding(s)"
            }
        }
    };
    let main = html! {
        (filter_form(q, &fleet))
        @if s.rounds > 0 {
            (findings_section(s, &findings, MAX_FINDINGS, now))
        }
        (problems_section(s, &fleet.problems, now))
        (folded_section("healthy", "Healthy", &fleet.healthy, now))
        (folded_section("waiting", "Not probed yet", &fleet.waiting, now))
    };
    document(&title, header, main)
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

/// The tenant filter: a plain GET form (`?q=`), and how many tenants it kept.
fn filter_form(q: Option<&str>, fleet: &Fleet<'_>) -> Markup {
    let (p, h, w) = fleet.totals;
    html! {
        form.filter method="get" action="/" {
            label for="q" { "tenant" }
            input #q type="search" name="q" value=[q] placeholder="name or part of it";
            button type="submit" { "filter" }
            @if let Some(q) = q {
                span.muted {
                    (fleet.shown()) " of " (p + h + w) " tenant(s) contain “" (q) "” · "
                    a href="/" { "show all" }
                }
            }
        }
    }
}

/// The open findings, most severe first: at most `cap` rows, and the count of the rest.
fn findings_section(s: &Snapshot, findings: &[&Finding], cap: usize, now: Timestamp) -> Markup {
    html! {
        section.card #findings {
            h2 { "Open findings " span.muted { "(" (findings.len()) ")" } }
            @if findings.is_empty() {
                p.muted { "None: every view agrees with its origin and verifies fresh tokens." }
            } @else {
                div.scroll {
                    table {
                        thead { tr { th { "severity" } th { "code" } th { "subject" } th { "since" } th { "message" } } }
                        tbody {
                            @for f in findings.iter().take(cap) {
                                @let since = s.since(f);
                                tr {
                                    td { span class={ "badge " (class_of(Some(f.severity))) } { (f.severity) } }
                                    td { code { (f.code) } }
                                    td { a href=(tenant_href(&f.subject.tenant)) { (subject_text(f)) } }
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
                @if findings.len() > cap {
                    p.cap {
                        "Showing the " (cap) " most severe of " (findings.len())
                        ": filter by tenant above, open a tenant's page, or read them all from "
                        a href="/v1/findings" { "/v1/findings" } "."
                    }
                }
            }
        }
    }
}

/// Tenants with problems, worst first: full cards, then one line each beyond
/// [`MAX_CARDS`].
fn problems_section(s: &Snapshot, problems: &[Entry<'_>], now: Timestamp) -> Markup {
    if problems.is_empty() {
        return html! {};
    }
    let rest = problems.len().saturating_sub(MAX_CARDS);
    html! {
        section #problems {
            h2 { "Tenants with problems " span.muted { "(" (problems.len()) ", worst first)" } }
            section.tenants {
                @for e in problems.iter().take(MAX_CARDS) { (card::tenant_card(e.name, s)) }
            }
            @if rest > 0 {
                section.card #more-problems {
                    p.cap { (rest) " more tenant(s) with problems, one line each; each name opens its page." }
                    (fold(&problems[MAX_CARDS..], now))
                }
            }
        }
    }
}

/// A list of tenants one line each, under a heading; nothing when empty.
fn folded_section(id: &str, heading: &str, entries: &[Entry<'_>], now: Timestamp) -> Markup {
    if entries.is_empty() {
        return html! {};
    }
    html! {
        section.card id=(id) {
            h2 { (heading) " " span.muted { "(" (entries.len()) ")" } }
            (fold(entries, now))
        }
    }
}

/// One line per tenant, at most [`MAX_LINES`].
fn fold(entries: &[Entry<'_>], now: Timestamp) -> Markup {
    html! {
        ul.fold {
            @for e in entries.iter().take(MAX_LINES) { (line(e, now)) }
        }
        @if entries.len() > MAX_LINES {
            p.cap { (entries.len() - MAX_LINES) " more not listed: filter by tenant above." }
        }
    }
}

/// A tenant in one line: its name (a link to its page), how it stands, and when its last
/// round finished or what is open.
fn line(e: &Entry<'_>, now: Timestamp) -> Markup {
    let finished = e
        .snap
        .and_then(|t| t.observation.as_deref())
        .map(|o| o.finished_at);
    let (class, status) = match e.standing {
        Standing::Healthy => ("ok", "ok"),
        Standing::Waiting => ("none", "not probed yet"),
        Standing::Problem { worst: None, .. } => ("warn", "gate unsafe"),
        Standing::Problem { worst: Some(w), .. } => (class_of(Some(w)), w.as_str()),
    };
    let mut codes: Vec<&str> = e
        .snap
        .map_or(&[][..], |t| &t.findings)
        .iter()
        .map(|f| f.code.as_str())
        .collect();
    codes.sort_unstable();
    codes.dedup();
    html! {
        li class=(class) data-tenant=(e.name) {
            a href=(tenant_href(e.name)) { (e.name) } " "
            span.st { (status) }
            @if let Some(t) = finished {
                " " span.muted title=(t) { (short_duration((now.0 - t.0) / 1000)) " ago" }
            }
            @if !codes.is_empty() {
                span.codes { @for c in codes.iter().take(4) { code { (c) } " " } @if codes.len() > 4 { "…" } }
            }
        }
    }
}

/// One tenant's page: its open findings and its full card.
fn tenant_page(s: &Snapshot, config: &Config, tenant: &str, now: Timestamp) -> String {
    let own: Vec<&Finding> = s
        .tenants
        .get(tenant)
        .map_or(&[][..], |t| &t.findings)
        .iter()
        .collect();
    let title = match (s.observation(tenant), own.len()) {
        (None, 0) => format!("keycanary · {tenant} · not probed yet"),
        (_, 0) => format!("keycanary · {tenant} · all clear"),
        (_, n) => format!("keycanary · {tenant} · {n} open finding(s)"),
    };
    let header = html! {
        (round_line(s, config, now))
        span.meta { "tenant " strong { (tenant) } " · " a href="/" { "all tenants" } }
    };
    let main = html! {
        @if s.observation(tenant).is_some() || !own.is_empty() {
            (findings_section(s, &own, usize::MAX, now))
        }
        section.tenants { (card::tenant_card(tenant, s)) }
    };
    document(&title, header, main)
}

/// The answer to `?tenant=` naming a tenant the config does not have.
fn unknown_tenant_page(s: &Snapshot, config: &Config, tenant: &str, now: Timestamp) -> String {
    let header = html! { (round_line(s, config, now)) };
    let main = html! {
        section.card #unknown {
            h2 { "No tenant named “" (tenant) "”" }
            p { "keycanary watches " (config.tenants.len()) " tenant(s); " a href="/" { "see them all" } "." }
        }
        (filter_form(None, &Fleet::default()))
    };
    document("keycanary · unknown tenant", header, main)
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
            location: None,
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

    /// A fleet of `names` (each with acme's round of the seed incident, renamed, and a
    /// safe gate) after one full round; `bad` tenants also have `kid_missing` on io/cdn.
    fn fleet(names: &[String], bad: &[String]) -> (Snapshot, Config) {
        use crate::config::fixtures::TomlFixture;
        use crate::model::{Code, Subject, ViewId};
        let mut fx = TomlFixture::tenant(&names[0]).domain("io", "https://idp.example/io");
        for n in &names[1..] {
            fx = fx.and_tenant(n).domain("io", "https://idp.example/io");
        }
        let config = crate::config::parse(
            &fx.to_string(),
            "t.toml",
            std::path::Path::new("."),
            &crate::config::MemorySecrets::new(),
        )
        .unwrap();
        let seed = incident();
        let template = seed.tenants["acme"].clone();
        let mut s = Snapshot {
            rounds: 1,
            last_round_started: Some(Timestamp(1_000)),
            last_round_finished: Some(Timestamp(2_500)),
            ..Snapshot::default()
        };
        for n in names {
            let mut t = template.clone();
            let obs = std::sync::Arc::make_mut(t.observation.as_mut().unwrap());
            obs.tenant = n.clone();
            t.since.clear();
            t.findings = if bad.contains(n) {
                let cdn = ViewId {
                    path: "cdn".into(),
                    edge: None,
                };
                vec![Finding::new(
                    Code::KidMissing,
                    Subject::view(n, "io", &cdn).with_kid(Some("k2")),
                    "k2 missing",
                )]
            } else {
                vec![]
            };
            if let Some(g) = t.gate.as_mut() {
                g.safe = true;
                g.tenant = n.clone();
            }
            s.tenants.insert(n.clone(), t);
        }
        (s, config)
    }

    fn names(prefix: &str, n: usize) -> Vec<String> {
        (1..=n).map(|i| format!("{prefix}{i:03}")).collect()
    }

    fn page(s: &Snapshot, config: &Config, tenant: Option<&str>, q: Option<&str>) -> String {
        let query = PageQuery {
            tenant: tenant.map(str::to_owned),
            q: q.map(str::to_owned),
        };
        render_query(s, config, &query, Timestamp(62_500)).unwrap_or_else(|e| panic!("{e}"))
    }

    #[test]
    fn problems_come_first_as_cards_and_healthy_tenants_fold_into_lines() {
        let all = ["ok001", "bad001", "ok002"].map(String::from);
        let (s, config) = fleet(&all, &["bad001".into()]);
        let html = render(&s, &config, Timestamp(62_500));
        assert_eq!(cell_class(&html, "bad001/io/cdn"), "cell bad");
        assert!(!html.contains("data-cell=\"ok001/"), "{html}");
        assert!(!html.contains("data-cell=\"ok002/"), "{html}");
        for ok in ["ok001", "ok002"] {
            let line = format!(
                "<li class=\"ok\" data-tenant=\"{ok}\"><a href=\"/?tenant={ok}\">{ok}</a> <span class=\"st\">ok</span> <span class=\"muted\" title=\"1970-01-01T00:00:02Z\">1m ago</span></li>"
            );
            assert!(html.contains(&line), "{line} in {html}");
        }
        let problems = html.find("id=\"problems\"").expect("a problems section");
        let healthy = html.find("id=\"healthy\"").expect("a healthy section");
        assert!(problems < healthy);
        assert!(html.contains("3 tenant(s): 1 with problems · 2 healthy · 0 not probed yet"));
        // The card's name opens the tenant's page.
        assert!(html.contains("<a href=\"/?tenant=bad001\">bad001</a>"));
    }

    #[test]
    fn cards_findings_and_lines_are_capped_and_the_page_says_so() {
        let bad = names("bad", MAX_CARDS + 3);
        let mut all = names("ok", 5);
        all.extend(bad.iter().cloned());
        let (mut s, config) = fleet(&all, &bad);
        // More findings than the table shows: MAX_FINDINGS + 7 in all.
        let extra = MAX_FINDINGS + 7 - bad.len();
        let first = s.tenants.get_mut(&bad[0]).unwrap();
        let f = first.findings[0].clone();
        first.findings.extend((0..extra).map(|i| {
            let mut g = f.clone();
            g.subject.kid = Some(format!("k{i}"));
            g
        }));
        let html = render(&s, &config, Timestamp(62_500));
        assert_eq!(html.matches("<article").count(), MAX_CARDS);
        assert!(html.contains("3 more tenant(s) with problems"), "{html}");
        for b in &bad[MAX_CARDS..] {
            assert!(
                html.contains(&format!("<li class=\"bad\" data-tenant=\"{b}\">")),
                "{b}"
            );
        }
        let table =
            &html[html.find("id=\"findings\"").unwrap()..html.find("id=\"problems\"").unwrap()];
        assert_eq!(
            table.matches("<tr>").count(),
            MAX_FINDINGS + 1,
            "header + rows"
        );
        assert!(
            table.contains(&format!(
                "Showing the {MAX_FINDINGS} most severe of {}",
                MAX_FINDINGS + 7
            )),
            "{table}"
        );
        // The worst first: the tenant with the most findings has the first card.
        let first_card = html.find("<article").unwrap();
        assert!(
            html[first_card..]
                .starts_with(&format!("<article class=\"card\" id=\"tenant-{}\"", bad[0]))
        );
    }

    #[test]
    fn the_filter_keeps_tenants_whose_name_contains_the_text() {
        let mut all = names("acme-", 3);
        all.extend(names("globex-", 3));
        let bad = vec!["globex-002".to_owned()];
        let (s, config) = fleet(&all, &bad);
        let html = page(&s, &config, None, Some("ACME"));
        for a in names("acme-", 3) {
            assert!(html.contains(&format!("data-tenant=\"{a}\"")), "{a}");
        }
        assert!(!html.contains("globex-"), "{html}");
        assert!(html.contains("3 of 6 tenant(s) contain “ACME”"), "{html}");
        assert!(html.contains("value=\"ACME\""));
        // The header still counts the fleet; the findings table only the tenants shown.
        assert!(html.contains("6 tenant(s): 1 with problems · 5 healthy"));
        assert!(html.contains("Open findings <span class=\"muted\">(0)</span>"));
        let globex = page(&s, &config, None, Some("globex"));
        assert_eq!(cell_class(&globex, "globex-002/io/cdn"), "cell bad");
        assert!(globex.contains("Open findings <span class=\"muted\">(1)</span>"));
        // Blank values are no filter.
        assert_eq!(
            page(&s, &config, Some(" "), Some("")),
            render(&s, &config, Timestamp(62_500))
        );
    }

    #[test]
    fn a_hostile_filter_or_tenant_name_is_escaped() {
        let (s, config) = fleet(&names("acme-", 2), &[]);
        let evil = "\"><script>alert(1)</script>&";
        let html = page(&s, &config, None, Some(evil));
        assert!(!html.contains("<script>"), "{html}");
        assert!(
            html.contains("value=\"&quot;&gt;&lt;script&gt;alert(1)&lt;/script&gt;&amp;\""),
            "{html}"
        );
        assert!(html.contains("0 of 2 tenant(s)"), "{html}");
        let query = PageQuery {
            tenant: Some(evil.into()),
            q: None,
        };
        let missing = render_query(&s, &config, &query, Timestamp(62_500))
            .expect_err("an unknown tenant is not found");
        assert!(!missing.contains("<script>"), "{missing}");
        assert!(
            missing.contains("No tenant named “&quot;&gt;&lt;script&gt;"),
            "{missing}"
        );
        assert_eq!(tenant_href("a b&c=d"), "/?tenant=a+b%26c%3Dd");
    }

    #[test]
    fn a_tenants_page_shows_its_full_card_and_only_its_findings() {
        let all = ["ok001", "bad001", "bad002"].map(String::from);
        let (s, config) = fleet(&all, &["bad001".into(), "bad002".into()]);
        let ok = page(&s, &config, Some("ok001"), None);
        assert_eq!(cell_class(&ok, "ok001/io/cdn"), "cell ok");
        assert_eq!(cell_class(&ok, "ok001/io/login"), "cell ok");
        assert!(ok.contains("rotation gate"), "{ok}");
        assert!(
            ok.contains("<title>keycanary · ok001 · all clear</title>"),
            "{ok}"
        );
        assert!(
            !ok.contains("bad001") && !ok.contains("data-tenant"),
            "{ok}"
        );
        let bad = page(&s, &config, Some("bad001"), None);
        assert_eq!(cell_class(&bad, "bad001/io/cdn"), "cell bad");
        assert!(
            bad.contains("Open findings <span class=\"muted\">(1)</span>"),
            "{bad}"
        );
        assert!(!bad.contains("bad002"), "{bad}");
        // A tenant not probed yet has a page that says so.
        let mut fresh = s.clone();
        fresh.tenants.remove("ok001");
        let waiting = page(&fresh, &config, Some("ok001"), None);
        assert!(waiting.contains("not probed yet"), "{waiting}");
        assert!(!waiting.contains("data-cell"), "{waiting}");
    }

    #[test]
    fn a_large_healthy_fleet_is_one_short_line_per_tenant_and_the_list_is_capped() {
        let all = names("tenant-", MAX_LINES + 3);
        let (s, config) = fleet(&all, &[]);
        let html = render(&s, &config, Timestamp(62_500));
        assert!(
            !html.contains("<article"),
            "no full card for a healthy tenant"
        );
        assert_eq!(html.matches("<li class=\"ok\"").count(), MAX_LINES);
        assert!(html.contains("3 more not listed: filter by tenant above."));
        // Bounded by the lines, not by the views: a full card per tenant was ~2.6 KB.
        let per_line = (html.len() - CSS.len()) / MAX_LINES;
        assert!(per_line < 200, "{per_line} bytes per tenant");
        assert!(html.contains(&format!(
            "{} tenant(s): 0 with problems · {} healthy",
            all.len(),
            all.len()
        )));
    }
}
