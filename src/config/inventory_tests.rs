//! Tables for `[[tenant_template]]` and `[inventory]`: the file's problems with their TOML
//! paths, each entry's checks, and expansion (accepted, rejected with the reason, domains
//! left out, secrets filled per tenant).

use super::*;
use crate::config::{MemorySecrets, parse};
use secrecy::ExposeSecret;

const BASE: &str = r#"
[[tenant]]
name = "handmade"
[[tenant.domain]]
name = "app"
issuer = "https://idp.example/handmade"
[tenant.domain.login]
client_id = "k"
client_secret = { env = "SECRET_HANDMADE" }
[[tenant.domain.jwks]]
name = "cdn"

[inventory]
file = "inventory.json"
refresh = "5s"

[[tenant_template]]
name = "standard"
max_token_lifetime = "10m"
[[tenant_template.domain]]
name = "main"
issuer = "https://{tenant}.idp.example"
[tenant_template.domain.login]
client_id = "keycanary-{tenant}"
client_secret = { file = "secrets/{tenant}/client" }
[[tenant_template.domain.jwks]]
name = "cdn"
[[tenant_template.domain]]
name = "custom"
issuer = "https://{vars.custom_domain}"
[tenant_template.domain.login]
client_id = "keycanary"
client_secret = { env = "SECRET_{TENANT}" }
[[tenant_template.domain.jwks]]
name = "cdn"
edges = ["{vars.edge}"]
url = "https://{vars.custom_domain}/jwks"
"#;

fn secrets() -> MemorySecrets {
    MemorySecrets::new()
        .with_env("SECRET_HANDMADE", "h")
        .with_env("SECRET_ACME_EU", "acme-env-secret")
        .with_file("/cfg/secrets/acme-eu/client", "acme-file-secret\n")
        .with_file("/cfg/secrets/globex/client", "globex-file-secret")
        .with_file("/cfg/secrets/bad-host_/client", "x")
}

fn base() -> Config {
    parse(BASE, "probes.toml", Path::new("/cfg"), &secrets()).expect("the base config is valid")
}

/// The problems of `BASE` with `edit` applied, as `path: message` lines.
fn problems_of(edit: impl Fn(&str) -> String) -> Vec<String> {
    match parse(&edit(BASE), "probes.toml", Path::new("/cfg"), &secrets()) {
        Ok(_) => Vec::new(),
        Err(crate::config::ConfigError::Invalid { problems, .. }) => problems
            .iter()
            .map(|p| format!("{}: {}", p.path, p.message))
            .collect(),
        Err(e) => vec![e.to_string()],
    }
}

#[test]
fn the_file_refuses_bad_templates_and_inventories_with_their_paths() {
    let check = |edit: &dyn Fn(&str) -> String, want: &[&str]| {
        let got = problems_of(edit);
        for w in want {
            assert!(
                got.iter().any(|g| g.contains(w)),
                "want `{w}` among {got:#?}"
            );
        }
        if want.is_empty() {
            assert!(got.is_empty(), "{got:#?}");
        }
    };
    check(&|s| s.to_owned(), &[]);
    check(
        &|s| s.replace("https://{tenant}.idp", "https://{tenat}.idp"),
        &["tenant_template[0].domain[0].issuer: unknown placeholder `{tenat}`"],
    );
    check(
        &|s| s.replace("SECRET_{TENANT}", "SECRET_{vars.}"),
        &["tenant_template[0].domain[1].login.client_secret.env: unknown placeholder"],
    );
    check(
        &|s| s.replace("https://{tenant}.idp.example", "{tenant}.idp.example"),
        &["tenant_template[0].domain[0].issuer: `example.idp.example` is not a URL"],
    );
    check(
        &|s| s.replace("name = \"main\"\n", ""),
        &["tenant_template[0].domain[0].name: missing"],
    );
    check(
        &|s| s.replace("file = \"inventory.json\"", ""),
        &["inventory: give `file`"],
    );
    check(
        &|s| s.replace("refresh = \"5s\"", "refresh = \"5 parsecs\""),
        &["inventory.refresh: `5 parsecs` is not a duration"],
    );
    check(
        &|s| s.replace("refresh = \"5s\"", "url = \"ftp://inv.example\""),
        &["inventory.url: `ftp://inv.example` is not an http(s) URL"],
    );
    check(
        &|s| s.replace("refresh = \"5s\"", "bearer = \"inline\""),
        &[
            "inventory.bearer: secrets are never written inline",
            "inventory.bearer: only sent to `url`",
        ],
    );
    check(
        &|s| s.replace("[inventory]\nfile = \"inventory.json\"", "[telemetry]"),
        &["tenant_template: templates are filled from an inventory"],
    );
    check(
        &|s| {
            s.replace("name = \"standard\"", "name = \"a b\"")
                .replace("[inventory]", "[inventory]\nspare = 1")
        },
        &[
            "tenant_template[0].name: `a b` is not a valid name",
            "inventory: unknown key `spare`",
        ],
    );
    // No hand-written tenant is fine when an inventory brings them.
    check(
        &|s| {
            let cut = s.find("[inventory]").unwrap();
            s[cut..].to_owned()
        },
        &[],
    );
}

fn entries(json: &str) -> Vec<Result<Entry, Rejected>> {
    parse_entries(json.as_bytes()).expect("a JSON list")
}

/// An accepted entry's name and vars, or a word of why it is rejected.
type Want<'a> = Result<(&'a str, &'a [(&'a str, &'a str)]), &'a str>;

#[test]
fn each_entry_is_checked_on_its_own() {
    let check = |json: &str, want: Want| {
        let got = entries(&format!("[{json}]")).remove(0);
        match (got, want) {
            (Ok(e), Ok((name, vars))) => {
                assert_eq!(e.name, name);
                let vars: BTreeMap<String, String> = vars
                    .iter()
                    .map(|(k, v)| ((*k).to_owned(), (*v).to_owned()))
                    .collect();
                assert_eq!(e.vars, vars, "{json}");
            }
            (Err(r), Err(w)) => assert!(
                r.problems.iter().any(|p| p.contains(w)),
                "{json}: want `{w}` in {r:?}"
            ),
            (g, w) => panic!("{json}: got {g:?}, want {w:?}"),
        }
    };
    check(
        r#"{"name": "acme-eu", "template": "standard", "vars": {"custom_domain": "login.acme.com"}}"#,
        Ok(("acme-eu", &[("custom_domain", "login.acme.com")])),
    );
    check(r#"{"name": "a", "template": "t"}"#, Ok(("a", &[])));
    check(
        r#"{"name": "a", "template": "t", "vars": null}"#,
        Ok(("a", &[])),
    );
    check(
        r#"{"name": "a", "template": "t", "vars": {"edge": ""}}"#,
        Ok(("a", &[("edge", "")])),
    );
    check(r#""acme""#, Err("not an object"));
    check(r#"{"template": "t"}"#, Err("missing `name`"));
    check(r#"{"name": "a"}"#, Err("missing `template`"));
    check(
        r#"{"name": "a b", "template": "t"}"#,
        Err("name is not a valid tenant name"),
    );
    check(
        r#"{"name": "..", "template": "t"}"#,
        Err("name is not a valid tenant name"),
    );
    check(
        r#"{"name": ".hidden", "template": "t"}"#,
        Err("name is not a valid tenant name"),
    );
    check(
        r#"{"name": "a", "template": "t", "labels": {}}"#,
        Err("unknown key `labels`"),
    );
    check(
        r#"{"name": "a", "template": "t", "vars": []}"#,
        Err("`vars` is not an object"),
    );
    check(
        r#"{"name": "a", "template": "t", "vars": {"port": 443}}"#,
        Err("vars.port is not a string"),
    );
    for hostile in [
        "evil.example/#",
        "user@evil.example",
        "a:1",
        "../../etc/passwd",
        "x..y",
        "a\u{1b}[31m",
        "a b",
    ] {
        let json = serde_json::json!({"name": "a", "template": "t", "vars": {"d": hostile}});
        check(&json.to_string(), Err("vars.d is not a valid value"));
    }
    let long = "x".repeat(MAX_VAR_LEN + 1);
    check(
        &format!(r#"{{"name": "a", "template": "t", "vars": {{"d": "{long}"}}}}"#),
        Err("vars.d is not a valid value"),
    );
    check(
        &format!(
            r#"{{"name": "{}", "template": "t"}}"#,
            "n".repeat(MAX_NAME_LEN + 1)
        ),
        Err("name is not a valid tenant name"),
    );
}

#[test]
fn a_list_that_is_not_one_fails_as_a_whole() {
    for bad in ["", "{}", "{\"targets\": []}", "[1, 2", "null"] {
        assert!(parse_entries(bad.as_bytes()).is_err(), "{bad:?}");
    }
    assert_eq!(parse_entries(b"[]").unwrap(), Vec::new());
}

#[test]
fn a_rejected_name_from_the_wire_is_cleaned() {
    let got = entries(r#"[{"name": "a\u001b[2Jb", "template": "t"}]"#).remove(0);
    let r = got.unwrap_err();
    assert!(!r.name.chars().any(char::is_control), "{r:?}");
}

#[test]
fn expansion_keeps_good_entries_and_names_each_rejected_one() {
    let list = entries(
        r#"[
        {"name": "acme-eu", "template": "standard", "vars": {"custom_domain": "login.acme.com", "edge": "192.0.2.7"}},
        {"name": "globex", "template": "standard"},
        {"name": "handmade", "template": "standard"},
        {"name": "globex", "template": "standard"},
        {"name": "nobody", "template": "premium"},
        {"name": "nosecret", "template": "standard"},
        {"name": "bad-host_", "template": "standard", "vars": {"custom_domain": "x", "edge": "not-an-ip"}},
        {"name": "a b", "template": "standard"}
    ]"#,
    );
    let x = expand(&base(), &list, &secrets());
    let names: Vec<&str> = x.config.tenants.iter().map(|t| t.name.as_str()).collect();
    assert_eq!(names, ["handmade", "acme-eu", "globex"]);
    assert_eq!(x.accepted, 2);
    assert_eq!(x.config.tenants_in_file, 3);
    assert_eq!(
        x.config.inventory_tenants.iter().collect::<Vec<_>>(),
        ["acme-eu", "globex"]
    );
    assert!(x.config.tenant("globex").is_some(), "the index is rebuilt");
    let why = |name: &str| -> String {
        x.rejected
            .iter()
            .filter(|r| r.name == name)
            .map(|r| r.problems.join("; "))
            .collect::<Vec<_>>()
            .join(" | ")
    };
    let check = |name: &str, want: &str| {
        assert!(
            why(name).contains(want),
            "{name}: want `{want}` in `{}`",
            why(name)
        );
    };
    check("handmade", "a [[tenant]] of the config file has this name");
    check("globex", "an earlier entry has this name");
    check(
        "nobody",
        "no [[tenant_template]] named `premium` (there are: standard)",
    );
    check(
        "nosecret",
        "tenant_template[0].domain[0].login.client_secret: cannot read secret file /cfg/secrets/nosecret/client",
    );
    check(
        "bad-host_",
        "tenant_template[0].domain[1].jwks[0].edges[0]: `not-an-ip` is not an IP address",
    );
    check("a b", "name is not a valid tenant name");
    assert_eq!(x.rejected.len(), 6, "{:#?}", x.rejected);

    // acme-eu: both domains, each with its own secret; globex: the custom domain left out.
    let acme = x.config.tenant("acme-eu").unwrap();
    assert_eq!(acme.max_token_lifetime, Duration::from_secs(600));
    let secret = |d: usize| {
        acme.domains[d]
            .login
            .as_ref()
            .and_then(|l| l.client_secret.as_ref())
            .map(|s| s.expose_secret().to_owned())
    };
    assert_eq!(secret(0).as_deref(), Some("acme-file-secret"));
    assert_eq!(secret(1).as_deref(), Some("acme-env-secret"));
    assert_eq!(acme.domains[1].issuer.as_str(), "https://login.acme.com/");
    assert_eq!(
        acme.domains[1].jwks[0].edges,
        ["192.0.2.7".parse::<std::net::IpAddr>().unwrap()]
    );
    let globex = x.config.tenant("globex").unwrap();
    let domains: Vec<&str> = globex.domains.iter().map(|d| d.name.as_str()).collect();
    assert_eq!(domains, ["main"]);
    assert_eq!(
        globex.domains[0].issuer.as_str(),
        "https://globex.idp.example/"
    );
    // The inventory's secrets are scrubbed like the file's.
    assert!(
        x.config
            .secret_values()
            .contains(&"acme-env-secret".to_owned())
    );
}

#[test]
fn a_shard_keeps_its_part_of_the_inventory() {
    let text = format!("shard = \"0/2\"\n{BASE}");
    let base = parse(&text, "probes.toml", Path::new("/cfg"), &secrets()).unwrap();
    let list: String = (0..40)
        .map(|i| format!(r#"{{"name": "t{i}", "template": "standard"}}"#))
        .collect::<Vec<_>>()
        .join(",");
    let secrets = (0..40).fold(secrets(), |s, i| {
        s.with_file(format!("/cfg/secrets/t{i}/client"), "s")
    });
    let x = expand(&base, &entries(&format!("[{list}]")), &secrets);
    assert_eq!(x.accepted, 40);
    let shard = base.settings.shard.unwrap();
    let mine = (0..40).filter(|i| shard.owns(&format!("t{i}"))).count();
    let from_inventory = x.config.tenants.len() - base.tenants.len();
    assert_eq!(from_inventory, mine);
    assert!(mine > 0 && mine < 40, "{mine}");
}

#[test]
fn the_bearer_is_a_secret_and_kept_out_of_debug() {
    let text = BASE.replace(
        "refresh = \"5s\"",
        "url = \"http://127.0.0.1:9/sd\"\nbearer = { env = \"INV_TOKEN\" }",
    );
    let secrets = secrets().with_env("INV_TOKEN", "inventory-token-marker");
    let c = parse(&text, "probes.toml", Path::new("/cfg"), &secrets).unwrap();
    assert!(!format!("{c:?}").contains("inventory-token-marker"));
    assert!(
        c.secret_values()
            .contains(&"inventory-token-marker".to_owned())
    );
}
