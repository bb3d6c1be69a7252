//! Which part of `/metrics` a scrape asks for: `?tenant=T` (repeatable) keeps the series
//! labelled with one of those tenants, `?name[]=N` (repeatable, as Prometheus'
//! `/federate?match[]=` does for selectors) keeps the families with one of those names.
//! Both together keep their intersection; neither keeps everything. For operators who
//! split one large keycanary into several scrape jobs (per tenant group, or the few
//! families a dashboard needs).
//!
//! Pure: a query string in, a [`Selection`] or a message out; [`Selection::apply`] cuts a
//! list of families. Not here: which tenants exist (the API refuses unknown ones with the
//! configuration at hand) or how families are built.

use super::Family;
use std::collections::BTreeSet;

/// What a scrape keeps; the default keeps everything.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Selection {
    /// Tenants whose series are kept (empty: every series, with or without a tenant).
    pub tenants: BTreeSet<String>,
    /// Family names kept (empty: every family).
    pub names: BTreeSet<String>,
}

/// Longest query string taken (bytes); longer is refused rather than parsed.
const MAX_QUERY: usize = 64 * 1024;

impl Selection {
    /// Parses a raw query string (`tenant=a&tenant=b&name[]=keycanary_view_up`). Unknown
    /// parameters are refused with a message naming them, so a typo does not silently
    /// scrape everything.
    pub fn parse(query: Option<&str>) -> Result<Selection, String> {
        let mut out = Selection::default();
        let Some(query) = query.filter(|q| !q.is_empty()) else {
            return Ok(out);
        };
        if query.len() > MAX_QUERY {
            return Err(format!("the query string is longer than {MAX_QUERY} bytes"));
        }
        let mut unknown = BTreeSet::new();
        for (key, value) in url::form_urlencoded::parse(query.as_bytes()) {
            match key.as_ref() {
                "tenant" => {
                    out.tenants.insert(value.into_owned());
                }
                "name[]" | "name" => {
                    out.names.insert(value.into_owned());
                }
                other => {
                    unknown.insert(other.chars().take(64).collect::<String>());
                }
            }
        }
        if unknown.is_empty() {
            Ok(out)
        } else {
            let names: Vec<String> = unknown.into_iter().map(|k| format!("`{k}`")).collect();
            Err(format!(
                "unknown query parameter {}: /metrics takes `tenant` and `name[]`",
                names.join(", ")
            ))
        }
    }

    pub fn is_everything(&self) -> bool {
        self.tenants.is_empty() && self.names.is_empty()
    }

    /// `families` cut to the selection. A family that keeps no sample is still written
    /// (HELP and TYPE) when its name was selected or no name was given, so `absent()`
    /// alerts and the dashboards see every family of the job.
    pub fn apply(&self, families: Vec<Family>) -> Vec<Family> {
        if self.is_everything() {
            return families;
        }
        families
            .into_iter()
            .filter(|f| self.names.is_empty() || self.names.contains(f.name))
            .map(|mut f| {
                if !self.tenants.is_empty() {
                    let keep = |labels: &[(&'static str, String)]| {
                        labels
                            .iter()
                            .any(|(k, v)| *k == "tenant" && self.tenants.contains(v))
                    };
                    f.samples.retain(|s| keep(&s.labels));
                    f.histograms.retain(|h| keep(&h.labels));
                }
                f
            })
            .collect()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn families() -> Vec<Family> {
        vec![
            Family::gauge("keycanary_rounds_total", "R.").with(&[], 3.0),
            Family::gauge("keycanary_view_up", "U.")
                .with(&[("tenant", "acme"), ("domain", "io")], 1.0)
                .with(&[("tenant", "globex"), ("domain", "io")], 0.0),
            Family::gauge("keycanary_gate_safe", "G.").with(&[("tenant", "acme")], 1.0),
        ]
    }

    /// `(family, samples)` of what a selection keeps.
    fn kept(query: &str) -> Vec<(&'static str, usize)> {
        Selection::parse(Some(query))
            .unwrap()
            .apply(families())
            .iter()
            .map(|f| (f.name, f.samples.len()))
            .collect()
    }

    #[test]
    fn selections_keep_what_they_name() {
        let table: &[(&str, &[(&str, usize)])] = &[
            (
                "",
                &[
                    ("keycanary_rounds_total", 1),
                    ("keycanary_view_up", 2),
                    ("keycanary_gate_safe", 1),
                ],
            ),
            // A tenant keeps its series only: process-wide ones have no tenant.
            (
                "tenant=acme",
                &[
                    ("keycanary_rounds_total", 0),
                    ("keycanary_view_up", 1),
                    ("keycanary_gate_safe", 1),
                ],
            ),
            (
                "tenant=acme&tenant=globex",
                &[
                    ("keycanary_rounds_total", 0),
                    ("keycanary_view_up", 2),
                    ("keycanary_gate_safe", 1),
                ],
            ),
            ("name[]=keycanary_view_up", &[("keycanary_view_up", 2)]),
            // Percent-encoded brackets, as clients send them, and both filters at once.
            (
                "name%5B%5D=keycanary_view_up&name%5B%5D=keycanary_gate_safe&tenant=globex",
                &[("keycanary_view_up", 1), ("keycanary_gate_safe", 0)],
            ),
            ("name[]=keycanary_nothing", &[]),
        ];
        for (query, want) in table {
            assert_eq!(kept(query), *want, "{query}");
        }
    }

    #[test]
    fn unknown_or_oversized_queries_are_refused() {
        let err = Selection::parse(Some("tenant=acme&match[]=up&x=1")).unwrap_err();
        assert!(err.contains("`match[]`, `x`"), "{err}");
        let long = format!("tenant={}", "a".repeat(MAX_QUERY));
        assert!(Selection::parse(Some(&long)).is_err());
        assert_eq!(Selection::parse(None), Ok(Selection::default()));
        assert!(Selection::parse(Some("")).unwrap().is_everything());
    }
}
