//! `[[tenant_template]]`: a tenant whose strings hold placeholders, filled in per
//! inventory entry. `{tenant}` is the entry's name, `{TENANT}` the same in upper case with
//! every other character than a letter or digit made `_` (for environment variable names:
//! `SECRET_{TENANT}`), `{vars.NAME}` one of the entry's vars. Placeholders may stand in any
//! string of the template: issuer, URLs, edges, login fields, group, and the strings of
//! secret references (`{ file = "secrets/{tenant}/client" }`).
//!
//! A domain that uses a var the entry leaves empty (or does not give) is left out for that
//! entry, so "the custom domain, if any" is one template domain; an entry left with no
//! domain is rejected. What filling gives is validated like a hand-written `[[tenant]]`
//! (`Validator::tenant`), so a value that makes a bad URL rejects the entry, never the
//! process.
//!
//! Pure: strings in, strings out. Not here: where entries come from, or checking them one
//! by one (`config::inventory`).

use super::raw::{RawDomain, RawTenant};
use std::collections::{BTreeMap, BTreeSet};

/// A validated template: its placeholders are all known. Filled per entry with [`fill`].
#[derive(Debug, Clone)]
pub struct Template {
    pub name: String,
    /// Its TOML path (`tenant_template[0]`), the prefix of an entry's problems.
    pub path: String,
    /// The template as written, `client_profiles` set (the file's default when absent).
    pub(super) raw: RawTenant,
}

/// One piece of a template string.
#[derive(Debug, Clone, PartialEq, Eq)]
enum Piece<'a> {
    Text(&'a str),
    Tenant,
    TenantUpper,
    Var(&'a str),
}

/// The pieces of `s`, or what is wrong with its placeholders.
fn pieces(s: &str) -> Result<Vec<Piece<'_>>, String> {
    let mut out = Vec::new();
    let mut rest = s;
    while let Some(open) = rest.find('{') {
        if open > 0 {
            out.push(Piece::Text(&rest[..open]));
        }
        let after = &rest[open + 1..];
        let Some(close) = after.find('}') else {
            return Err(format!(
                "`{{` without a closing `}}` in `{s}`: placeholders are {{tenant}}, {{TENANT}} or {{vars.NAME}}"
            ));
        };
        let inner = &after[..close];
        out.push(match inner {
            "tenant" => Piece::Tenant,
            "TENANT" => Piece::TenantUpper,
            _ => match inner.strip_prefix("vars.") {
                Some(var) if is_var_name(var) => Piece::Var(var),
                _ => {
                    return Err(format!(
                        "unknown placeholder `{{{inner}}}`: use {{tenant}}, {{TENANT}} or {{vars.NAME}} (NAME: letters, digits, `_`, `-`)"
                    ));
                }
            },
        });
        rest = &after[close + 1..];
    }
    if rest.contains('}') {
        return Err(format!(
            "`}}` without an opening `{{` in `{s}`: placeholders are {{tenant}}, {{TENANT}} or {{vars.NAME}}"
        ));
    }
    if !rest.is_empty() {
        out.push(Piece::Text(rest));
    }
    Ok(out)
}

/// A var's name: letters, digits, `_` or `-`, at most 64 characters.
pub(super) fn is_var_name(s: &str) -> bool {
    !s.is_empty()
        && s.len() <= 64
        && s.chars()
            .all(|c| c.is_ascii_alphanumeric() || matches!(c, '_' | '-'))
}

/// `{TENANT}`: the name in upper case, anything but a letter or digit made `_`.
pub fn upper(name: &str) -> String {
    name.chars()
        .map(|c| {
            if c.is_ascii_alphanumeric() {
                c.to_ascii_uppercase()
            } else {
                '_'
            }
        })
        .collect()
}

/// `s` filled for tenant `name` with `vars`; `Err(var)` names a var that is missing or
/// empty. `s` has been checked (an unknown placeholder is kept as written).
fn fill_one(s: &str, name: &str, vars: &BTreeMap<String, String>) -> Result<String, String> {
    let Ok(pieces) = pieces(s) else {
        return Ok(s.to_owned());
    };
    let mut out = String::with_capacity(s.len());
    for p in pieces {
        match p {
            Piece::Text(t) => out.push_str(t),
            Piece::Tenant => out.push_str(name),
            Piece::TenantUpper => out.push_str(&upper(name)),
            Piece::Var(v) => match vars.get(v).filter(|x| !x.is_empty()) {
                Some(x) => out.push_str(x),
                None => return Err(v.to_owned()),
            },
        }
    }
    Ok(out)
}

/// Calls `f` with the TOML path (below the tenant) and each string of a tenant's
/// tenant-level keys (not its name, not its domains).
fn tenant_strings(t: &mut RawTenant, f: &mut dyn FnMut(&str, &mut String)) {
    for (i, p) in t.client_profiles.iter_mut().flatten().enumerate() {
        f(&format!("client_profiles[{i}]"), p);
    }
    if let Some(s) = &mut t.max_token_lifetime {
        f("max_token_lifetime", s);
    }
}

/// Calls `f` with the TOML path (below `path`) and each string of a domain, secret
/// references' strings included.
fn domain_strings(d: &mut RawDomain, path: &str, f: &mut dyn FnMut(&str, &mut String)) {
    let opt = |key: &str, s: &mut Option<String>, f: &mut dyn FnMut(&str, &mut String)| {
        if let Some(s) = s {
            f(&format!("{path}.{key}"), s);
        }
    };
    opt("name", &mut d.name, f);
    opt("issuer", &mut d.issuer, f);
    opt("group", &mut d.group, f);
    if let Some(l) = &mut d.login {
        let lp = format!("{path}.login");
        for (key, s) in [
            ("grant", &mut l.grant),
            ("token_url", &mut l.token_url),
            ("token_endpoint_origin", &mut l.token_endpoint_origin),
            ("client_id", &mut l.client_id),
            ("auth", &mut l.auth),
            ("resource", &mut l.resource),
            ("audience", &mut l.audience),
            ("scope", &mut l.scope),
            ("username", &mut l.username),
        ] {
            if let Some(s) = s {
                f(&format!("{lp}.{key}"), s);
            }
        }
        for (key, v) in [
            ("client_secret", &mut l.client_secret),
            ("password", &mut l.password),
            ("refresh_token", &mut l.refresh_token),
        ] {
            if let Some(v) = v {
                value_strings(v, &format!("{lp}.{key}"), f);
            }
        }
    }
    for (i, j) in d.jwks.iter_mut().enumerate() {
        let jp = format!("{path}.jwks[{i}]");
        if let Some(s) = &mut j.name {
            f(&format!("{jp}.name"), s);
        }
        if let Some(s) = &mut j.url {
            f(&format!("{jp}.url"), s);
        }
        for (k, e) in j.edges.iter_mut().enumerate() {
            f(&format!("{jp}.edges[{k}]"), e);
        }
    }
    if let Some(o) = &mut d.origin {
        if let Some(s) = &mut o.url {
            f(&format!("{path}.origin.url"), s);
        }
        if let Some(s) = &mut o.bust_param {
            f(&format!("{path}.origin.bust_param"), s);
        }
    }
}

fn value_strings(v: &mut toml::Value, path: &str, f: &mut dyn FnMut(&str, &mut String)) {
    match v {
        toml::Value::String(s) => f(path, s),
        toml::Value::Table(t) => {
            for (k, x) in t.iter_mut() {
                value_strings(x, &format!("{path}.{k}"), f);
            }
        }
        toml::Value::Array(a) => {
            for (i, x) in a.iter_mut().enumerate() {
                value_strings(x, &format!("{path}[{i}]"), f);
            }
        }
        _ => {}
    }
}

/// What [`check`] finds in a template.
#[derive(Debug, Default)]
pub(super) struct Checked {
    /// Each placeholder problem: `(path below the template, message)`.
    pub(super) problems: Vec<(String, String)>,
    /// The vars it uses.
    pub(super) vars: BTreeSet<String>,
    /// The paths (below the template) of the strings that use a var: what validation says
    /// about them depends on the entry.
    pub(super) var_paths: BTreeSet<String>,
}

/// Every placeholder problem of a template, the vars it uses and where.
pub(super) fn check(raw: &RawTenant) -> Checked {
    let mut out = Checked::default();
    let mut raw = raw.clone();
    let mut look = |path: &str, s: &mut String| match pieces(s) {
        Ok(ps) => {
            for p in ps {
                if let Piece::Var(v) = p {
                    out.vars.insert(v.to_owned());
                    out.var_paths.insert(path.to_owned());
                }
            }
        }
        Err(e) => out.problems.push((path.to_owned(), e)),
    };
    tenant_strings(&mut raw, &mut look);
    for (i, d) in raw.domain.iter_mut().enumerate() {
        domain_strings(d, &format!("domain[{i}]"), &mut look);
    }
    out
}

/// What filling a template for one entry gives.
#[derive(Debug)]
pub(super) struct Filled {
    pub(super) raw: RawTenant,
    /// For each domain of `raw`, its index in the template (domains left out shift them).
    pub(super) kept: Vec<usize>,
}

/// The template filled for tenant `name` with `vars`: domains that use a missing or
/// empty var are left out. `Err` says why nothing is left.
pub(super) fn fill(
    template: &Template,
    name: &str,
    vars: &BTreeMap<String, String>,
) -> Result<Filled, String> {
    let mut raw = template.raw.clone();
    raw.name = Some(name.to_owned());
    let mut missing = None;
    tenant_strings(&mut raw, &mut |_, s| match fill_one(s, name, vars) {
        Ok(v) => *s = v,
        Err(var) => missing = missing.take().or(Some(var)),
    });
    if let Some(var) = missing {
        return Err(format!(
            "template `{}` needs vars.{var} for the tenant itself, and this entry leaves it empty",
            template.name
        ));
    }
    let mut kept = Vec::new();
    let mut left_out = BTreeSet::new();
    let domains = std::mem::take(&mut raw.domain);
    for (i, mut d) in domains.into_iter().enumerate() {
        let mut gone = None;
        domain_strings(&mut d, "", &mut |_, s| match fill_one(s, name, vars) {
            Ok(v) => *s = v,
            Err(var) => gone = gone.take().or(Some(var)),
        });
        match gone {
            Some(var) => {
                left_out.insert(var);
            }
            None => {
                kept.push(i);
                raw.domain.push(d);
            }
        }
    }
    if raw.domain.is_empty() && !left_out.is_empty() {
        let vars: Vec<String> = left_out.iter().map(|v| format!("vars.{v}")).collect();
        return Err(format!(
            "no domain left: every domain of template `{}` uses a var this entry leaves empty ({})",
            template.name,
            vars.join(", ")
        ));
    }
    Ok(Filled { raw, kept })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn vars(pairs: &[(&str, &str)]) -> BTreeMap<String, String> {
        pairs
            .iter()
            .map(|(k, v)| ((*k).to_owned(), (*v).to_owned()))
            .collect()
    }

    #[test]
    fn placeholders_are_filled_or_named_missing() {
        let check = |s: &str, name: &str, v: &[(&str, &str)], want: Result<&str, &str>| {
            assert_eq!(
                fill_one(s, name, &vars(v)),
                want.map(str::to_owned).map_err(str::to_owned),
                "{s}"
            );
        };
        check("no placeholder", "acme", &[], Ok("no placeholder"));
        check(
            "https://{tenant}.idp.example",
            "acme",
            &[],
            Ok("https://acme.idp.example"),
        );
        check("SECRET_{TENANT}", "acme-eu.2", &[], Ok("SECRET_ACME_EU_2"));
        check(
            "https://{vars.custom_domain}/t/{tenant}",
            "acme",
            &[("custom_domain", "login.acme.com")],
            Ok("https://login.acme.com/t/acme"),
        );
        check(
            "https://{vars.custom_domain}/",
            "acme",
            &[],
            Err("custom_domain"),
        );
        check(
            "https://{vars.custom_domain}/",
            "acme",
            &[("custom_domain", "")],
            Err("custom_domain"),
        );
        check("{vars.a}{vars.b}", "t", &[("a", "1"), ("b", "2")], Ok("12"));
    }

    #[test]
    fn unknown_or_broken_placeholders_are_problems() {
        let check = |s: &str, want: Option<&str>| {
            let got = pieces(s).err();
            match (got, want) {
                (None, None) => {}
                (Some(e), Some(w)) => assert!(e.contains(w), "{s}: {e}"),
                (g, w) => panic!("{s}: got {g:?}, want {w:?}"),
            }
        };
        check("{tenant}.{TENANT}.{vars.region}", None);
        check("{tenat}", Some("unknown placeholder `{tenat}`"));
        check("{vars.}", Some("unknown placeholder `{vars.}`"));
        check("{vars.a.b}", Some("unknown placeholder"));
        check("{Tenant}", Some("unknown placeholder"));
        check("https://{tenant", Some("without a closing"));
        check("a}b", Some("without an opening"));
    }

    fn template(toml_text: &str) -> Template {
        let raw: RawTenant = toml::from_str(toml_text).unwrap();
        Template {
            name: "standard".into(),
            path: "tenant_template[0]".into(),
            raw,
        }
    }

    const TWO_DOMAINS: &str = r#"
name = "standard"
[[domain]]
name = "main"
issuer = "https://{tenant}.idp.example"
[domain.login]
client_id = "keycanary-{tenant}"
client_secret = { file = "secrets/{tenant}/client" }
[[domain.jwks]]
name = "cdn"
edges = ["{vars.edge}"]
[[domain]]
name = "custom"
issuer = "https://{vars.custom_domain}"
[domain.login]
client_id = "keycanary"
client_secret = { env = "SECRET_{TENANT}" }
[[domain.jwks]]
name = "cdn"
"#;

    #[test]
    fn a_domain_with_an_empty_var_is_left_out() {
        let t = template(TWO_DOMAINS);
        let check = |v: &[(&str, &str)], want: Result<(&[usize], &[&str]), &str>| {
            let got = fill(&t, "acme", &vars(v));
            match (got, want) {
                (Ok(f), Ok((kept, issuers))) => {
                    assert_eq!(f.kept, kept, "{v:?}");
                    let got: Vec<&str> = f
                        .raw
                        .domain
                        .iter()
                        .map(|d| d.issuer.as_deref().unwrap())
                        .collect();
                    assert_eq!(got, issuers, "{v:?}");
                    assert_eq!(f.raw.name.as_deref(), Some("acme"));
                }
                (Err(e), Err(w)) => assert!(e.contains(w), "{v:?}: {e}"),
                (g, w) => panic!("{v:?}: got {g:?}, want {w:?}"),
            }
        };
        check(
            &[("edge", "192.0.2.1"), ("custom_domain", "login.acme.com")],
            Ok((
                &[0, 1],
                &["https://acme.idp.example", "https://login.acme.com"],
            )),
        );
        check(
            &[("edge", "192.0.2.1")],
            Ok((&[0], &["https://acme.idp.example"])),
        );
        check(
            &[("custom_domain", "login.acme.com")],
            Ok((&[1], &["https://login.acme.com"])),
        );
        check(
            &[("edge", ""), ("custom_domain", "")],
            Err(
                "no domain left: every domain of template `standard` uses a var this entry leaves empty (vars.custom_domain, vars.edge)",
            ),
        );
    }

    #[test]
    fn secret_references_are_filled_too() {
        let t = template(TWO_DOMAINS);
        let f = fill(
            &t,
            "acme-eu",
            &vars(&[("edge", "192.0.2.1"), ("custom_domain", "x.example")]),
        )
        .unwrap();
        let secret = |i: usize| {
            f.raw.domain[i]
                .login
                .as_ref()
                .unwrap()
                .client_secret
                .clone()
                .unwrap()
                .to_string()
        };
        assert!(
            secret(0).contains("secrets/acme-eu/client"),
            "{}",
            secret(0)
        );
        assert!(secret(1).contains("SECRET_ACME_EU"), "{}", secret(1));
        let edges = &f.raw.domain[0].jwks[0].edges;
        assert_eq!(edges, &["192.0.2.1"]);
    }

    #[test]
    fn check_lists_each_bad_placeholder_with_its_path_and_the_vars_used() {
        let t = template(
            r#"
name = "x"
max_token_lifetime = "{vars.lifetime}"
[[domain]]
name = "main"
issuer = "https://{tenat}.idp.example"
[domain.login]
client_id = "c"
client_secret = { file = "secrets/{tenant/client" }
[[domain.jwks]]
name = "cdn"
url = "https://{vars.cdn}/jwks"
"#,
        );
        let Checked {
            problems,
            vars,
            var_paths,
        } = check(&t.raw);
        let paths: Vec<&str> = problems.iter().map(|(p, _)| p.as_str()).collect();
        assert_eq!(
            paths,
            ["domain[0].issuer", "domain[0].login.client_secret.file"]
        );
        assert!(problems[0].1.contains("`{tenat}`"), "{problems:?}");
        assert_eq!(
            vars.into_iter().collect::<Vec<_>>(),
            ["cdn".to_owned(), "lifetime".to_owned()]
        );
        assert_eq!(
            var_paths.into_iter().collect::<Vec<_>>(),
            [
                "domain[0].jwks[0].url".to_owned(),
                "max_token_lifetime".to_owned()
            ]
        );
    }
}
