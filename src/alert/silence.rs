//! Silences and maintenance windows: what keeps a firing finding from paging.
//!
//! Both are plain data with a time range, matched against findings at the `now` the state
//! machine is handed. They suppress notifications only: the state machine keeps tracking
//! every finding underneath, so a finding still firing when its silence ends pages then.
//!
//! Silences come from `probes.toml` (`[[alerting.silence]]`) and from the API
//! (`/v1/silences`); both end up in the same `&[Silence]`. Maintenance windows are config only and absolute (a
//! start and an end; no recurrence). Nothing here reads a clock or does I/O.

use crate::model::{Code, Finding, Severity, Subject, Timestamp};
use serde::{Deserialize, Serialize};
use std::fmt;

/// Mutes notifications for the findings it matches while `starts <= now < ends`. Every
/// matcher that is set must match; unset matchers match anything.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Silence {
    /// Stable id: `config-<n>` for silences from probes.toml, assigned by the store for
    /// silences made through the API.
    pub id: String,
    #[serde(skip_serializing_if = "Option::is_none", default)]
    pub tenant: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none", default)]
    pub code: Option<Code>,
    #[serde(skip_serializing_if = "Option::is_none", default)]
    pub severity: Option<Severity>,
    #[serde(skip_serializing_if = "Option::is_none", default)]
    pub subject: Option<SubjectPattern>,
    pub starts: Timestamp,
    pub ends: Timestamp,
    pub created_by: String,
    #[serde(default)]
    pub comment: String,
}

impl Silence {
    pub fn is_active(&self, now: Timestamp) -> bool {
        self.starts <= now && now < self.ends
    }

    /// Whether the matchers select `finding` (ignoring time).
    pub fn matches(&self, finding: &Finding) -> bool {
        self.tenant
            .as_ref()
            .is_none_or(|t| *t == finding.subject.tenant)
            && self.code.is_none_or(|c| c == finding.code)
            && self.severity.is_none_or(|s| s == finding.severity)
            && self
                .subject
                .as_ref()
                .is_none_or(|p| p.matches(&finding.subject))
    }
}

/// A planned window during which the listed tenants do not page.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct MaintenanceWindow {
    pub tenants: Vec<String>,
    pub starts: Timestamp,
    pub ends: Timestamp,
    #[serde(default)]
    pub comment: String,
}

impl MaintenanceWindow {
    pub fn covers(&self, finding: &Finding, now: Timestamp) -> bool {
        self.starts <= now && now < self.ends && self.tenants.contains(&finding.subject.tenant)
    }
}

/// True when an active silence or maintenance window mutes `finding` at `now`.
pub fn is_muted(
    finding: &Finding,
    silences: &[Silence],
    maintenance: &[MaintenanceWindow],
    now: Timestamp,
) -> bool {
    silences
        .iter()
        .any(|s| s.is_active(now) && s.matches(finding))
        || maintenance.iter().any(|m| m.covers(finding, now))
}

/// One field of a [`Subject`] a pattern can name.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
pub enum SubjectField {
    Tenant,
    Domain,
    Path,
    Edge,
    Kid,
}

impl SubjectField {
    pub fn as_str(self) -> &'static str {
        match self {
            SubjectField::Tenant => "tenant",
            SubjectField::Domain => "domain",
            SubjectField::Path => "path",
            SubjectField::Edge => "edge",
            SubjectField::Kid => "kid",
        }
    }
    fn parse(s: &str) -> Option<Self> {
        Some(match s {
            "tenant" => SubjectField::Tenant,
            "domain" => SubjectField::Domain,
            "path" => SubjectField::Path,
            "edge" => SubjectField::Edge,
            "kid" => SubjectField::Kid,
            _ => return None,
        })
    }
    fn get(self, s: &Subject) -> &str {
        match self {
            SubjectField::Tenant => &s.tenant,
            SubjectField::Domain => s.domain.as_deref().unwrap_or(""),
            SubjectField::Path => s.path.as_deref().unwrap_or(""),
            SubjectField::Edge => s.edge.as_deref().unwrap_or(""),
            SubjectField::Kid => s.kid.as_deref().unwrap_or(""),
        }
    }
}

/// Globs on subject fields, written like a subject is displayed:
/// `domain=io* path=cdn kid=2026-*`. Every term must match; `*` is any run of characters,
/// `?` one character. A field the subject lacks reads as empty, so only `*` matches it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SubjectPattern {
    terms: Vec<(SubjectField, String)>,
}

impl SubjectPattern {
    pub fn parse(s: &str) -> Result<SubjectPattern, String> {
        let mut terms = Vec::new();
        for term in s.split_whitespace() {
            let Some((field, glob)) = term.split_once('=') else {
                return Err(format!(
                    "`{term}` is not field=glob: write it like \"domain=io* path=cdn\""
                ));
            };
            let Some(field) = SubjectField::parse(field) else {
                return Err(format!(
                    "unknown subject field `{field}`: use tenant, domain, path, edge or kid"
                ));
            };
            terms.push((field, glob.to_owned()));
        }
        if terms.is_empty() {
            return Err("empty pattern: write it like \"domain=io* path=cdn\"".to_owned());
        }
        Ok(SubjectPattern { terms })
    }

    pub fn matches(&self, subject: &Subject) -> bool {
        self.terms
            .iter()
            .all(|(field, glob)| glob_match(glob, field.get(subject)))
    }
}

impl fmt::Display for SubjectPattern {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        for (i, (field, glob)) in self.terms.iter().enumerate() {
            if i > 0 {
                f.write_str(" ")?;
            }
            write!(f, "{}={glob}", field.as_str())?;
        }
        Ok(())
    }
}

impl Serialize for SubjectPattern {
    fn serialize<S: serde::Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        s.collect_str(self)
    }
}

impl<'de> Deserialize<'de> for SubjectPattern {
    fn deserialize<D: serde::Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        let s = String::deserialize(d)?;
        SubjectPattern::parse(&s).map_err(serde::de::Error::custom)
    }
}

/// `*` matches any run of characters (also none), `?` exactly one; everything else itself.
/// Iterative with one backtrack point, so linear-ish and never exponential.
pub fn glob_match(glob: &str, text: &str) -> bool {
    let g: Vec<char> = glob.chars().collect();
    let t: Vec<char> = text.chars().collect();
    let (mut gi, mut ti) = (0, 0);
    let mut star: Option<(usize, usize)> = None;
    while ti < t.len() {
        if gi < g.len() && g[gi] == '*' {
            star = Some((gi, ti));
            gi += 1;
        } else if gi < g.len() && (g[gi] == '?' || g[gi] == t[ti]) {
            gi += 1;
            ti += 1;
        } else if let Some((sg, st)) = star {
            gi = sg + 1;
            ti = st + 1;
            star = Some((sg, st + 1));
        } else {
            return false;
        }
    }
    g[gi..].iter().all(|&c| c == '*')
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn globs() {
        let check = |glob: &str, text: &str, want: bool| {
            assert_eq!(glob_match(glob, text), want, "{glob} vs {text}");
        };
        check("io*", "io", true);
        check("io*", "io-eu", true);
        check("io*", "app", false);
        check("*", "", true);
        check("", "", true);
        check("", "x", false);
        check("a?c", "abc", true);
        check("a?c", "ac", false);
        check("*-eu-*", "cdn-eu-1", true);
        check("*a*b", "xaxxb", true);
        check("*a*b", "xaxxbc", false);
        check("k*", "kid", true);
        check("cdn", "cdn@192.0.2.1", false);
    }

    fn finding(code: Code, subject: Subject) -> Finding {
        Finding::new(code, subject, "m")
    }

    #[test]
    fn subject_patterns() {
        let p = SubjectPattern::parse("domain=io* path=cdn").unwrap();
        assert_eq!(p.to_string(), "domain=io* path=cdn");
        let mut s = Subject::domain("acme", "io");
        assert!(!p.matches(&s), "no path: only `*` matches a missing field");
        s.path = Some("cdn".into());
        assert!(p.matches(&s));
        s.domain = Some("app".into());
        assert!(!p.matches(&s));
        assert!(
            SubjectPattern::parse("kid=*")
                .unwrap()
                .matches(&Subject::tenant("a"))
        );
        for bad in ["", "domain", "host=x"] {
            assert!(SubjectPattern::parse(bad).is_err(), "{bad}");
        }
        let json = serde_json::to_string(&p).unwrap();
        assert_eq!(json, "\"domain=io* path=cdn\"");
        assert_eq!(serde_json::from_str::<SubjectPattern>(&json).unwrap(), p);
    }

    #[test]
    fn silence_matchers_and_time() {
        let s = Silence {
            id: "s".into(),
            tenant: Some("acme".into()),
            code: Some(Code::StaleEdge),
            severity: None,
            subject: Some(SubjectPattern::parse("domain=io*").unwrap()),
            starts: Timestamp::from_secs(100),
            ends: Timestamp::from_secs(200),
            created_by: "t".into(),
            comment: String::new(),
        };
        let hit = finding(Code::StaleEdge, Subject::domain("acme", "io"));
        assert!(s.matches(&hit));
        assert!(!s.matches(&finding(Code::KidMissing, Subject::domain("acme", "io"))));
        assert!(!s.matches(&finding(Code::StaleEdge, Subject::domain("beta", "io"))));
        assert!(!s.matches(&finding(Code::StaleEdge, Subject::domain("acme", "app"))));
        let muted = |secs| {
            is_muted(
                &hit,
                std::slice::from_ref(&s),
                &[],
                Timestamp::from_secs(secs),
            )
        };
        assert!(!muted(99));
        assert!(muted(100));
        assert!(muted(199));
        assert!(!muted(200), "ends is exclusive");
        let sev = Silence {
            severity: Some(Severity::Critical),
            ..s.clone()
        };
        assert!(!sev.matches(&hit), "stale_edge is high, not critical");
    }

    #[test]
    fn maintenance_by_tenant() {
        let m = MaintenanceWindow {
            tenants: vec!["acme".into()],
            starts: Timestamp::from_secs(0),
            ends: Timestamp::from_secs(10),
            comment: String::new(),
        };
        let f = finding(Code::KidMissing, Subject::tenant("acme"));
        assert!(is_muted(
            &f,
            &[],
            std::slice::from_ref(&m),
            Timestamp::from_secs(5)
        ));
        assert!(!is_muted(
            &f,
            &[],
            std::slice::from_ref(&m),
            Timestamp::from_secs(10)
        ));
        let other = finding(Code::KidMissing, Subject::tenant("beta"));
        assert!(!is_muted(&other, &[], &[m], Timestamp::from_secs(5)));
    }
}
