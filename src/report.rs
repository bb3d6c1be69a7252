//! Rendering a round for people and scripts: the text matrix of `keycanary check` and its
//! stable JSON form. Pure: data in, string out.
//!
//! The JSON shape is a public interface documented in README.md; add fields, never rename.

use crate::model::{
    FetchOutcome, Finding, LoginResult, Observation, Severity, ViewKind, view_label, worst,
};
use serde::Serialize;
use std::collections::HashMap;
use std::fmt::Write;

/// A view as findings name it: tenant, domain, path, edge.
type ViewKey<'a> = (&'a str, &'a str, &'a str, Option<&'a str>);

/// One row of the matrix: a JWKS view as a client saw it this round.
#[derive(Debug, Clone, Serialize, PartialEq)]
pub struct ViewRow {
    pub tenant: String,
    pub domain: String,
    pub path: String,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub edge: Option<String>,
    pub kind: ViewKind,
    pub url: String,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub status: Option<u16>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub error: Option<String>,
    pub kids: Vec<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub age: Option<u64>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub cache_status: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub cache_control: Option<String>,
    /// `ok`, or the most severe finding's severity for this view.
    pub verdict: String,
    /// Codes of the findings about this view.
    pub findings: Vec<String>,
}

/// One domain's login this round: the grant, and each fresh token with its result on
/// every view (what "verified against every view" means, per token).
#[derive(Debug, Clone, Serialize, PartialEq)]
pub struct LoginRow {
    pub tenant: String,
    pub domain: String,
    pub grant: String,
    /// `tokens` or `failed`.
    pub result: String,
    /// Why it failed (the `login_failed` finding says the same).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub reason: Option<String>,
    pub tokens: Vec<TokenRow>,
}

#[derive(Debug, Clone, Serialize, PartialEq)]
pub struct TokenRow {
    /// `access_token` or `id_token`.
    pub kind: String,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub kid: Option<String>,
    pub alg: String,
    pub checks: Vec<TokenCheckRow>,
}

#[derive(Debug, Clone, Serialize, PartialEq)]
pub struct TokenCheckRow {
    /// The view's label (`cdn`, `cdn@192.0.2.1`, `origin`).
    pub view: String,
    /// `verified`, `kid_missing`, `signature_invalid`, `key_unusable`, `view_unavailable`.
    pub result: String,
}

#[derive(Debug, Clone, Serialize)]
pub struct Report {
    pub findings: Vec<Finding>,
    pub views: Vec<ViewRow>,
    pub logins: Vec<LoginRow>,
}

impl Report {
    /// The rows of every view of `observations`, each with the findings about it. Linear in
    /// views plus findings: the findings are grouped by view once.
    pub fn new<'a>(
        observations: impl IntoIterator<Item = &'a Observation>,
        findings: Vec<Finding>,
    ) -> Report {
        let mut by_view: HashMap<ViewKey<'_>, Vec<&Finding>> = HashMap::new();
        for f in &findings {
            let s = &f.subject;
            if let (Some(domain), Some(path)) = (s.domain.as_deref(), s.path.as_deref()) {
                by_view
                    .entry((s.tenant.as_str(), domain, path, s.edge.as_deref()))
                    .or_default()
                    .push(f);
            }
        }
        let mut views = Vec::new();
        let mut logins = Vec::new();
        for obs in observations {
            for d in &obs.domains {
                if let Some(login) = &d.login {
                    logins.push(login_row(&obs.tenant, &d.domain, login));
                }
                for v in &d.views {
                    let key = (
                        obs.tenant.as_str(),
                        d.domain.as_str(),
                        v.id.path.as_str(),
                        v.id.edge.as_deref(),
                    );
                    let about: &[&Finding] = by_view.get(&key).map_or(&[], Vec::as_slice);
                    let mut codes: Vec<String> =
                        about.iter().map(|f| f.code.as_str().to_owned()).collect();
                    codes.dedup();
                    let verdict = worst(about.iter().copied())
                        .map(|s| s.as_str().to_owned())
                        .unwrap_or_else(|| "ok".into());
                    let (status, error, age, cache_status, cache_control) = match &v.fetch.outcome {
                        FetchOutcome::Response(r) => (
                            Some(r.status),
                            None,
                            r.headers.age,
                            r.headers.cache_status.clone(),
                            r.headers.cache_control.clone(),
                        ),
                        FetchOutcome::Error { message, .. } => {
                            (None, Some(message.clone()), None, None, None)
                        }
                    };
                    let row = ViewRow {
                        tenant: obs.tenant.clone(),
                        domain: d.domain.clone(),
                        path: v.id.path.clone(),
                        edge: v.id.edge.clone(),
                        kind: v.kind,
                        url: v.fetch.url.clone(),
                        status,
                        error,
                        kids: v
                            .keys()
                            .iter()
                            .map(|k| k.kid.clone().unwrap_or_else(|| "(no kid)".into()))
                            .collect(),
                        age,
                        cache_status,
                        cache_control,
                        verdict,
                        findings: codes,
                    };
                    views.push(row);
                }
            }
        }
        Report {
            findings,
            views,
            logins,
        }
    }

    pub fn worst(&self) -> Option<Severity> {
        worst(&self.findings)
    }

    pub fn to_json(&self) -> String {
        serde_json::to_string_pretty(self).unwrap_or_else(|e| format!("{{\"error\":\"{e}\"}}"))
    }

    /// The human report: one matrix per tenant, then the findings.
    pub fn to_text(&self) -> String {
        let mut out = String::new();
        let headers = ["DOMAIN", "VIEW", "HTTP", "KIDS", "AGE", "CACHE", "VERDICT"];
        let mut tenants: Vec<&str> = self.views.iter().map(|v| v.tenant.as_str()).collect();
        tenants.dedup();
        for tenant in tenants {
            let _ = writeln!(out, "tenant {tenant}");
            let rows: Vec<[String; 7]> = self
                .views
                .iter()
                .filter(|v| v.tenant == tenant)
                .map(|v| {
                    let view = view_label(&v.path, v.edge.as_deref());
                    let verdict = if v.findings.is_empty() {
                        v.verdict.clone()
                    } else {
                        format!("{} {}", v.verdict, v.findings.join(","))
                    };
                    [
                        v.domain.clone(),
                        view,
                        v.status
                            .map(|s| s.to_string())
                            .unwrap_or_else(|| "error".into()),
                        if v.kids.is_empty() {
                            "-".into()
                        } else {
                            v.kids.join(",")
                        },
                        v.age.map(|a| format!("{a}s")).unwrap_or_else(|| "-".into()),
                        v.cache_status.clone().unwrap_or_else(|| "-".into()),
                        verdict,
                    ]
                })
                .collect();
            let mut widths = headers.map(str::len);
            for r in &rows {
                for (w, cell) in widths.iter_mut().zip(r) {
                    *w = (*w).max(cell.chars().count());
                }
            }
            let line = |cells: &[String]| {
                let mut l = String::from("  ");
                for (i, (c, w)) in cells.iter().zip(widths).enumerate() {
                    if i + 1 == cells.len() {
                        l.push_str(c);
                    } else {
                        let _ = write!(l, "{c:<w$}  ");
                    }
                }
                l
            };
            let _ = writeln!(out, "{}", line(&headers.map(str::to_owned)));
            for r in &rows {
                let _ = writeln!(out, "{}", line(r));
            }
            for l in self.logins.iter().filter(|l| l.tenant == tenant) {
                let _ = writeln!(out, "  {}", l.to_text());
            }
        }
        if self.findings.is_empty() {
            let _ = writeln!(out, "\nno findings");
        } else {
            let _ = writeln!(out, "\n{} finding(s):", self.findings.len());
            for f in &self.findings {
                let _ = writeln!(
                    out,
                    "  {:<8} {:<26} {}  {}",
                    f.severity, f.code, f.subject, f.message
                );
            }
        }
        out
    }
}

fn login_row(tenant: &str, domain: &str, login: &crate::model::LoginObservation) -> LoginRow {
    let (result, reason, tokens) = match &login.result {
        LoginResult::Failed { reason } => ("failed", Some(reason.clone()), &[][..]),
        LoginResult::Tokens { tokens } => ("tokens", None, tokens.as_slice()),
    };
    LoginRow {
        tenant: tenant.to_owned(),
        domain: domain.to_owned(),
        grant: login.grant.clone(),
        result: result.to_owned(),
        reason,
        tokens: tokens
            .iter()
            .map(|t| TokenRow {
                kind: t.kind.as_str().to_owned(),
                kid: t.header.kid.clone(),
                alg: t.header.alg.clone(),
                checks: t
                    .checks
                    .iter()
                    .map(|c| TokenCheckRow {
                        view: c.view.to_string(),
                        result: c.result.code().to_owned(),
                    })
                    .collect(),
            })
            .collect(),
    }
}

impl LoginRow {
    /// `login app (authorization_code): id_token key-1 (RS256) verified on 2/2 views, …`,
    /// the views that did not verify named with their result.
    pub fn to_text(&self) -> String {
        let head = format!("login {} ({})", self.domain, self.grant);
        if let Some(reason) = &self.reason {
            return format!("{head}: failed: {reason}");
        }
        if self.tokens.is_empty() {
            return format!("{head}: no token");
        }
        let tokens: Vec<String> = self
            .tokens
            .iter()
            .map(|t| {
                let ok = t.checks.iter().filter(|c| c.result == "verified").count();
                let not: Vec<String> = t
                    .checks
                    .iter()
                    .filter(|c| c.result != "verified")
                    .map(|c| format!("{}: {}", c.view, c.result))
                    .collect();
                let kid = t.kid.as_deref().unwrap_or("(no kid)");
                let mut s = format!(
                    "{} {kid} ({}) verified on {ok}/{} views",
                    t.kind,
                    t.alg,
                    t.checks.len()
                );
                if !not.is_empty() {
                    s.push_str(&format!(" ({})", not.join(", ")));
                }
                s
            })
            .collect();
        format!("{head}: {}", tokens.join(", "))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::model::{Code, FetchErrorKind, Subject, ViewId};
    use crate::telemetry::fixtures::{incident, view};

    /// The seed incident's round, plus a pinned edge that answered from cache and a view
    /// whose fetch failed: every optional field of a row is exercised.
    fn report() -> Report {
        let s = incident();
        let mut obs = s.observation("acme").cloned().expect("judged");
        let d = &mut obs.domains[0];
        let mut pinned = view("cdn", ViewKind::Edge, Some(7), &["k1", "k2"]);
        pinned.id.edge = Some("fra".into());
        if let FetchOutcome::Response(r) = &mut pinned.fetch.outcome {
            r.headers.cache_status = Some("HIT".into());
            r.headers.cache_control = Some("public, max-age=60".into());
        }
        let mut down = view("backup", ViewKind::Edge, None, &[]);
        down.fetch.outcome = FetchOutcome::Error {
            kind: FetchErrorKind::Connect,
            message: "connection refused".into(),
        };
        down.key_set = None;
        d.views.push(pinned);
        d.views.push(down);
        // A second domain whose sign-in failed.
        let mut app = obs.domains[0].clone();
        app.domain = "app".into();
        app.views.clear();
        if let Some(login) = &mut app.login {
            login.grant = "authorization_code".into();
            login.result = LoginResult::Failed {
                reason: "step 2 (GET /login): no form on the page".into(),
            };
        }
        obs.domains.push(app);
        let mut findings = s.tenants["acme"].findings.clone();
        findings.push(Finding::new(
            Code::JwksFetchFailed,
            Subject::view(
                "acme",
                "io",
                &ViewId {
                    path: "backup".into(),
                    edge: None,
                },
            ),
            "connection refused",
        ));
        findings.push(Finding::new(
            Code::StaleEdge,
            Subject::view(
                "acme",
                "io",
                &ViewId {
                    path: "cdn".into(),
                    edge: Some("fra".into()),
                },
            ),
            "edge fra differs from origin",
        ));
        Report::new([&obs], findings)
    }

    #[test]
    fn json_keeps_its_published_contract() {
        let json: serde_json::Value = serde_json::from_str(&report().to_json()).unwrap();
        crate::contract::assert_keeps(
            "`check --format json`",
            &json,
            include_str!("../tests/contracts/check.contract"),
        );
    }

    #[test]
    fn rows_carry_their_findings_and_worst_verdict() {
        let r = report();
        let row = |path: &str, edge: Option<&str>| {
            r.views
                .iter()
                .find(|v| v.path == path && v.edge.as_deref() == edge)
                .unwrap_or_else(|| panic!("{path} {edge:?} in {:?}", r.views))
        };
        assert_eq!(row("cdn", None).findings, ["kid_missing"]);
        assert_eq!(row("cdn", None).verdict, "critical");
        assert_eq!(row("cdn", None).age, Some(42));
        assert_eq!(row("origin", None).verdict, "ok");
        assert!(row("origin", None).findings.is_empty());
        let pinned = row("cdn", Some("fra"));
        assert_eq!(
            pinned.findings,
            ["stale_edge"],
            "the edge-less finding is not the pin's"
        );
        assert_eq!(pinned.verdict, "high");
        assert_eq!(pinned.kids, ["k1", "k2"]);
        assert_eq!(pinned.cache_control.as_deref(), Some("public, max-age=60"));
        let down = row("backup", None);
        assert_eq!(down.status, None);
        assert_eq!(down.error.as_deref(), Some("connection refused"));
        assert!(down.kids.is_empty());
        assert_eq!(down.findings, ["jwks_fetch_failed"]);
        assert_eq!(r.worst(), Some(Severity::Critical));
    }

    #[test]
    fn text_is_a_matrix_then_the_findings() {
        let text = report().to_text();
        assert!(text.starts_with("tenant acme\n  DOMAIN"), "{text}");
        assert!(text.contains("cdn@fra"), "{text}");
        assert!(text.contains("error"), "{text}");
        assert!(text.contains("critical kid_missing"), "{text}");
        assert!(text.contains("3 finding(s):"), "{text}");
        assert!(
            text.contains("  login io (client_credentials): access_token k2 (RS256) verified on 1/2 views (cdn: kid_missing)\n"),
            "{text}"
        );
        assert!(
            text.contains("  login app (authorization_code): failed: step 2 (GET /login): no form on the page\n"),
            "{text}"
        );
        let empty = Report::new([], vec![]).to_text();
        assert_eq!(empty, "\nno findings\n");
    }
}
