//! Rendering a round for people and scripts: the text matrix of `keycanary check` and its
//! stable JSON form. Pure: data in, string out.
//!
//! The JSON shape is a public interface documented in README.md; add fields, never rename.

use crate::model::{FetchOutcome, Finding, Observation, Severity, ViewKind, view_label, worst};
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

#[derive(Debug, Clone, Serialize)]
pub struct Report {
    pub findings: Vec<Finding>,
    pub views: Vec<ViewRow>,
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
        for obs in observations {
            for d in &obs.domains {
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
        Report { findings, views }
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
