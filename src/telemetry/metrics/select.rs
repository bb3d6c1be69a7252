//! Which part of `/metrics` a scrape asks for: `?tenant=T` (repeatable) keeps the series
//! labelled with one of those tenants, `?name[]=N` (repeatable, as Prometheus'
//! `/federate?match[]=` does for selectors) keeps the families with one of those names.
//! Both together keep their intersection; neither keeps everything. For operators who
//! split one large keycanary into several scrape jobs (per tenant group, or the few
//! families a dashboard needs).
//!
//! Pure: a query string in, a [`Selection`] or a message out; `render_selected` asks it
//! which families and tenants to write. Not here: which tenants exist (the API refuses
//! unknown ones with the configuration at hand) or how families are built.

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

    /// Whether the family named `name` is written.
    pub fn wants_family(&self, name: &str) -> bool {
        self.names.is_empty() || self.names.contains(name)
    }

    /// Whether `tenant`'s samples are written.
    pub fn wants_tenant(&self, tenant: &str) -> bool {
        self.tenants.is_empty() || self.tenants.contains(tenant)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// `(family, tenant)` pairs a selection writes, of three families and two tenants.
    fn kept(query: &str) -> Vec<(&'static str, &'static str)> {
        let s = Selection::parse(Some(query)).unwrap();
        let mut out = Vec::new();
        for family in [
            "keycanary_view_up",
            "keycanary_gate_safe",
            "keycanary_rounds_total",
        ] {
            for tenant in ["acme", "globex"] {
                if s.wants_family(family) && s.wants_tenant(tenant) {
                    out.push((family, tenant));
                }
            }
        }
        out
    }

    #[test]
    fn selections_keep_what_they_name() {
        let all = [
            ("keycanary_view_up", "acme"),
            ("keycanary_view_up", "globex"),
            ("keycanary_gate_safe", "acme"),
            ("keycanary_gate_safe", "globex"),
            ("keycanary_rounds_total", "acme"),
            ("keycanary_rounds_total", "globex"),
        ];
        let table: &[(&str, &[(&str, &str)])] = &[
            ("", &all),
            (
                "tenant=acme",
                &[
                    ("keycanary_view_up", "acme"),
                    ("keycanary_gate_safe", "acme"),
                    ("keycanary_rounds_total", "acme"),
                ],
            ),
            ("tenant=acme&tenant=globex", &all),
            (
                "name[]=keycanary_view_up",
                &[
                    ("keycanary_view_up", "acme"),
                    ("keycanary_view_up", "globex"),
                ],
            ),
            // Percent-encoded brackets, as clients send them, and both filters at once.
            (
                "name%5B%5D=keycanary_view_up&name%5B%5D=keycanary_gate_safe&tenant=globex",
                &[
                    ("keycanary_view_up", "globex"),
                    ("keycanary_gate_safe", "globex"),
                ],
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
        assert_eq!(Selection::parse(Some("")), Ok(Selection::default()));
    }
}
