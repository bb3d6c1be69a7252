//! Tests of `config`: a full `probes.toml` that validates, and tables of bad ones that
//! are refused with every problem at its TOML path; secrets never leak into messages or
//! `Debug`.
//!
//! Secrets come from an in-memory reader, except where the real filesystem reader is the
//! point.

use super::fixtures::TomlFixture;
use super::*;
use crate::alert::GroupBy;
use crate::model::{Code, Severity, Timestamp};
use secrecy::ExposeSecret;

const GOOD: &str = r#"
interval = "10s"
timeout = "5s"
location = "eu-1"

[[tenant]]
name = "acme"

[[tenant.domain]]
name = "app"
issuer = "https://idp.example.app/acme"

[tenant.domain.login]
grant = "client_credentials"
client_id = "keycanary"
client_secret = { env = "SECRET_A" }
resource = "https://api.example"

[[tenant.domain.jwks]]
name = "cdn"

[[tenant.domain.jwks]]
name = "edge"
url = "https://idp.example.app/acme/jwks"
edges = ["192.0.2.10", "2001:db8::1"]

[[tenant.domain]]
name = "io"
issuer = "https://idp.example.io/acme"
origin = { url = "https://origin.example.io/acme/jwks" }

[tenant.domain.login]
grant = "password"
client_id = "keycanary"
client_secret = { file = "secret.txt" }
auth = "client_secret_post"
username = "probe"
password = { env = "PASSWORD" }

[[tenant.domain.jwks]]
name = "cdn"
"#;

/// The config file's directory in these tests: secret files are looked up there.
const DIR: &str = "/etc/keycanary";

/// The secrets `GOOD` refers to, in memory.
fn secrets() -> MemorySecrets {
    MemorySecrets::new()
        .with_env("SECRET_A", "s3cret-a")
        .with_env("PASSWORD", "hunter2")
        .with_file(Path::new(DIR).join("secret.txt"), "s3cret-from-file\n")
}

fn parse(text: &str) -> Result<Config, ConfigError> {
    super::parse(text, "probes.toml", Path::new(DIR), &secrets())
}

/// One tenant `a` with one domain `d` and nothing else.
fn minimal() -> String {
    TomlFixture::tenant("a")
        .domain("d", "https://x.example")
        .to_string()
}

/// Asserts that `text` is refused with a problem at each `(path, message fragment)`.
fn check_problems(text: &str, expected: &[(&str, &str)]) {
    let err = parse(text).expect_err("config should be refused");
    let problems = err.problems();
    for (path, fragment) in expected {
        assert!(
            problems
                .iter()
                .any(|p| p.path == *path && p.message.contains(fragment)),
            "expected a problem at `{path}` containing `{fragment}`, got:\n{err}"
        );
    }
    assert_eq!(
        problems.len(),
        expected.len(),
        "unexpected extra problems:\n{err}"
    );
}

#[test]
fn good_config_validates() {
    let c = parse(GOOD).unwrap();
    assert_eq!(c.settings.interval, Duration::from_secs(10));
    assert_eq!(c.settings.location, "eu-1");
    let acme = &c.tenants[0];
    assert_eq!(acme.client_profiles, profiles::DEFAULT_PROFILES);
    let app = &acme.domains[0];
    assert_eq!(app.group, "acme");
    assert_eq!(
        app.discovery_url().as_str(),
        "https://idp.example.app/acme/.well-known/openid-configuration"
    );
    assert_eq!(
        app.origin,
        Origin::Bust {
            param: "keycanary_nocache".into()
        }
    );
    assert_eq!(app.jwks[1].edges.len(), 2);
    let login = app.login.as_ref().unwrap();
    assert_eq!(
        login.client_secret.as_ref().unwrap().expose_secret(),
        "s3cret-a"
    );
    let io = &acme.domains[1];
    assert!(matches!(io.origin, Origin::Url(_)));
    let login = io.login.as_ref().unwrap();
    assert_eq!(login.auth, ClientAuth::ClientSecretPost);
    assert_eq!(
        login.client_secret.as_ref().unwrap().expose_secret(),
        "s3cret-from-file"
    );
    match &login.grant {
        Grant::Password { username, password } => {
            assert_eq!(username, "probe");
            assert_eq!(password.expose_secret(), "hunter2");
        }
        g => panic!("wrong grant {g:?}"),
    }
}

#[test]
fn secrets_are_redacted_in_debug() {
    let c = parse(GOOD).unwrap();
    let dump = format!("{c:?}");
    for secret in ["s3cret-a", "s3cret-from-file", "hunter2"] {
        assert!(!dump.contains(secret), "{secret} leaked in Debug output");
    }
}

#[test]
fn every_problem_is_listed_with_its_path() {
    let text = r#"
intervall = "10s"
timeout = "soon"
allowed_algs = ["RS256", "HS256", "XX1"]
client_profiles = ["jose", "nope"]

[[profile]]
name = "jose"
refetch_on_unknown_kid = true
on_fetch_failure = "explode"

[[tenant]]
name = "acme"
max_token_lifetime = "forever"

[[tenant.domain]]
name = "app"
issuer = "not a url"
discovery = false

[tenant.domain.login]
grant = "password"
client_id = "keycanary"
client_secret = "inline-secret"
auth = "tls_client_auth"

[[tenant.domain.jwks]]
name = "cdn"
edges = ["edge-1"]

[[tenant.domain.jwks]]
name = "origin"
url = "ftp://example.com/jwks"
colour = "blue"

[[tenant]]
name = "acme"

[[tenant.domain]]
name = "x y"
issuer = "https://idp.example/x"
origin = { url = "https://a.example/", bust_param = "b" }

[[tenant.domain.jwks]]
name = "cdn"
url = "https://127.0.0.1/jwks"
edges = ["127.0.0.1"]

[tenant.domain.login]
grant = "refresh_token"
client_id = "keycanary"
refresh_token = { env = "UNSET_VAR" }
"#;
    check_problems(
        text,
        &[
            ("", "unknown key `intervall`"),
            ("timeout", "not a duration"),
            ("allowed_algs[1]", "cannot be allowed"),
            ("allowed_algs[2]", "unknown alg `XX1`"),
            ("client_profiles[1]", "unknown client profile `nope`"),
            ("profile[0].name", "already exists"),
            ("profile[0].on_fetch_failure", "`explode`"),
            ("tenant[0].max_token_lifetime", "not a duration"),
            ("tenant[0].domain[0].issuer", "not a URL"),
            (
                "tenant[0].domain[0].login.client_secret",
                "never written inline",
            ),
            ("tenant[0].domain[0].login.username", "needs a username"),
            ("tenant[0].domain[0].login.password", "needs a password"),
            ("tenant[0].domain[0].login.token_url", "needs a token_url"),
            ("tenant[0].domain[0].login.auth", "`tls_client_auth`"),
            ("tenant[0].domain[0].jwks[0].url", "needs a url"),
            ("tenant[0].domain[0].jwks[0].edges[0]", "not an IP address"),
            ("tenant[0].domain[0].jwks[1].name", "reserved"),
            ("tenant[0].domain[0].jwks[1].url", "not an http(s) URL"),
            ("tenant[0].domain[0].jwks[1]", "unknown key `colour`"),
            ("tenant[1].name", "defined twice"),
            ("tenant[1].domain[0].name", "not a valid name"),
            ("tenant[1].domain[0].origin", "not both"),
            ("tenant[1].domain[0].jwks[0].edges", "host name"),
            (
                "tenant[1].domain[0].login.refresh_token",
                "UNSET_VAR is not set",
            ),
        ],
    );
}

#[test]
fn missing_pieces_are_named() {
    check_problems("", &[("tenant", "no tenants")]);
    check_problems(
        "[[tenant]]\nname = \"a\"\n",
        &[("tenant[0].domain", "no domains")],
    );
    check_problems(
        "[[tenant]]\nname = \"a\"\n[[tenant.domain]]\nname = \"d\"\n",
        &[
            ("tenant[0].domain[0].issuer", "missing"),
            ("tenant[0].domain[0].jwks", "no JWKS paths"),
        ],
    );
    check_problems(
        "[[tenant]]\n[[tenant.domain]]\nname = \"d\"\nissuer = \"https://x.example\"\n[[tenant.domain.jwks]]\nname = \"cdn\"\n[tenant.domain.login]\nclient_id = \"c\"\n",
        &[
            ("tenant[0].name", "needs a `name`"),
            (
                "tenant[0].domain[0].login.client_secret",
                "needs a client_secret",
            ),
        ],
    );
}

#[test]
fn secret_file_problems() {
    let text = GOOD.replace("secret.txt", "does-not-exist.txt");
    check_problems(
        &text,
        &[(
            "tenant[0].domain[1].login.client_secret",
            "cannot read secret file",
        )],
    );
    let text = GOOD.replace(
        "{ env = \"SECRET_A\" }",
        "{ env = \"SECRET_A\", file = \"secret.txt\" }",
    );
    check_problems(
        &text,
        &[("tenant[0].domain[0].login.client_secret", "exactly one")],
    );
}

#[test]
fn settings_bounds() {
    let base = &minimal();
    check_problems(
        &format!("interval = \"10ms\"\ntimeout = \"5ms\"\n{base}"),
        &[("interval", "at least 1s")],
    );
    check_problems(
        &format!("interval = \"5s\"\ntimeout = \"6s\"\n{base}"),
        &[("timeout", "at most the interval")],
    );
    check_problems(
        &format!("location = \"eu 1\"\n{base}"),
        &[("location", "not a valid label")],
    );
    check_problems(
        &format!("[lab]\nlisten = \"localhost\"\n{base}"),
        &[("lab.listen", "not an address")],
    );
    check_problems(
        &format!("[[profile]]\nname = \"gw\"\n{base}"),
        &[("profile[0].refetch_on_unknown_kid", "missing")],
    );
}

#[test]
fn api_table_defaults_and_validation() {
    let c = parse(GOOD).unwrap();
    assert_eq!(c.api.listen.to_string(), DEFAULT_API_LISTEN);
    assert!(c.api.bearer_token.is_none());
    let c = parse(&format!(
        "{GOOD}\n[api]\nlisten = \"127.0.0.1:0\"\nbearer_token = {{ env = \"SECRET_A\" }}\n"
    ))
    .unwrap();
    assert_eq!(c.api.listen.port(), 0);
    assert_eq!(
        c.api.bearer_token.as_ref().unwrap().expose_secret(),
        "s3cret-a"
    );
    check_problems(
        &format!("{GOOD}\n[api]\nlisten = \"localhost\"\nbearer_token = \"inline\"\n"),
        &[
            ("api.listen", "not an address"),
            ("api.bearer_token", "never written inline"),
        ],
    );
}

#[test]
fn telemetry_otlp_table_env_fallback_and_validation() {
    let c = parse(GOOD).unwrap();
    assert!(c.telemetry.otlp.is_none(), "off unless configured");
    let c = parse(&format!(
        "{GOOD}\n[telemetry.otlp]\nendpoint = \"http://127.0.0.1:4317\"\nprotocol = \"grpc\"\nheaders = {{ X-Api-Key = {{ env = \"SECRET_A\" }}, tenant = \"ops\" }}\n"
    ))
    .unwrap();
    let o = c.telemetry.otlp.as_ref().unwrap();
    let traces = o.traces.as_ref().unwrap();
    assert_eq!(traces.endpoint.as_str(), "http://127.0.0.1:4317/");
    assert_eq!(traces.protocol, crate::config::Protocol::Grpc);
    assert_eq!(o.service_name, DEFAULT_SERVICE_NAME);
    let headers: Vec<(&str, &str)> = traces
        .headers
        .iter()
        .map(|(n, v)| (n.as_str(), v.expose_secret()))
        .collect();
    assert_eq!(headers, [("tenant", "ops"), ("x-api-key", "s3cret-a")]);
    // The header secret is scrubbed like every other secret.
    assert!(c.secret_values().contains(&"s3cret-a".to_owned()));
    check_problems(
        &format!(
            "{GOOD}\n[telemetry.otlp]\nendpoint = \"grpc:nohost\"\nprotocol = \"http/json\"\ntimeout = \"soon\"\nservice_name = \"\"\nheaders = {{ \"bad name\" = \"x\", k = {{ env = \"UNSET\" }} }}\nca_file = \"missing-ca.pem\"\nclient_certificate = \"inline\"\nclient_key = {{ env = \"SECRET_A\" }}\n"
        ),
        &[
            ("telemetry.otlp.endpoint", "not an http(s) URL"),
            ("telemetry.otlp.protocol", "`http/json` is not a protocol"),
            ("telemetry.otlp.timeout", "soon"),
            ("telemetry.otlp.service_name", "empty"),
            ("telemetry.otlp.headers.bad name", "not a valid header name"),
            ("telemetry.otlp.headers.k", "UNSET is not set"),
            ("telemetry.otlp.ca_file", "cannot read"),
            ("telemetry.otlp.client_certificate", "never written inline"),
            ("telemetry.otlp.client_key", "holds no PEM private key"),
        ],
    );
    check_problems(
        &format!("{GOOD}\n[telemetry.otlp]\nservice_name = \"kc\"\n"),
        &[("telemetry.otlp.endpoint", "missing")],
    );
}

/// The standard variables, read through the secret reader: without the table they turn
/// export on; with it, the table wins; a bad one is a problem named after the variable.
#[test]
fn telemetry_otlp_from_the_standard_variables() {
    use base64::Engine as _;
    let pem = |label: &str, der: &[u8]| {
        let b64 = base64::engine::general_purpose::STANDARD.encode(der);
        format!("-----BEGIN {label}-----\n{b64}\n-----END {label}-----\n")
    };
    let key = rcgen::KeyPair::generate().unwrap();
    let cert = rcgen::CertificateParams::new(vec!["collector.test".to_owned()])
        .unwrap()
        .self_signed(&key)
        .unwrap();
    let (cert, key) = (
        pem("CERTIFICATE", cert.der()),
        pem("PRIVATE KEY", &key.serialize_der()),
    );
    let with = |vars: &[(&str, &str)], text: &str| {
        let mut secrets = secrets()
            .with_file(Path::new(DIR).join("ca.pem"), &cert)
            .with_file(Path::new(DIR).join("client.key"), &key);
        for (k, v) in vars {
            secrets = secrets.with_env(k, v);
        }
        super::parse(
            &format!("{GOOD}\n{text}"),
            "probes.toml",
            Path::new(DIR),
            &secrets,
        )
    };
    let c = with(
        &[
            ("OTEL_EXPORTER_OTLP_ENDPOINT", "https://collector:4318"),
            ("OTEL_EXPORTER_OTLP_HEADERS", "x-api-key=env-key"),
            ("OTEL_SERVICE_NAME", "kc-eu"),
        ],
        "",
    )
    .unwrap();
    let o = c.telemetry.otlp.as_ref().unwrap();
    assert_eq!(
        o.metrics.as_ref().unwrap().endpoint.as_str(),
        "https://collector:4318/v1/metrics"
    );
    assert_eq!(o.service_name, "kc-eu");
    assert!(c.secret_values().contains(&"env-key".to_owned()));
    let c = with(
        &[("OTEL_EXPORTER_OTLP_ENDPOINT", "https://collector:4318")],
        "[telemetry.otlp]\nendpoint = \"https://otlp.example.com\"\nprotocol = \"grpc\"\nca_file = \"ca.pem\"\nclient_certificate = { file = \"ca.pem\" }\nclient_key = { file = \"client.key\" }\n",
    )
    .unwrap();
    let traces = c.telemetry.otlp.unwrap().traces.unwrap();
    assert_eq!(traces.endpoint.as_str(), "https://otlp.example.com/");
    assert!(traces.ca_pem.is_some() && traces.client_identity.is_some());
    let err = with(&[("OTEL_EXPORTER_OTLP_ENDPOINT", "collector:4317")], "").unwrap_err();
    assert_eq!(
        err.problems()[0].path,
        "OTEL_EXPORTER_OTLP_ENDPOINT",
        "{err}"
    );
}

#[test]
fn fetch_histograms_are_per_domain_unless_asked_per_view() {
    let c = parse(GOOD).unwrap();
    assert!(!c.telemetry.per_view_histograms);
    let c = parse(&format!(
        "{GOOD}\n[telemetry]\nper_view_histograms = true\n"
    ))
    .unwrap();
    assert!(c.telemetry.per_view_histograms);
    assert!(c.telemetry.otlp.is_none());
}

#[test]
fn tls_expiry_warning_setting() {
    let base = &minimal();
    let c = parse(base).unwrap();
    assert_eq!(
        c.settings.tls_expiry_warning,
        Duration::from_secs(14 * 24 * 3600)
    );
    let c = parse(&format!("tls_expiry_warning = \"30days\"\n{base}")).unwrap();
    assert_eq!(
        c.settings.tls_expiry_warning,
        Duration::from_secs(30 * 24 * 3600)
    );
    check_problems(
        &format!("tls_expiry_warning = \"soon\"\n{base}"),
        &[("tls_expiry_warning", "not a duration")],
    );
}

#[test]
fn state_dir_and_retention_settings() {
    let base = &minimal();
    let c = parse(base).unwrap();
    assert!(
        c.settings.state_dir.ends_with(".state"),
        "{:?}",
        c.settings.state_dir
    );
    assert!(
        c.settings.state_dir.is_absolute(),
        "resolved against the config's directory"
    );
    assert_eq!(c.settings.retention, Duration::from_secs(7 * 24 * 3600));
    let c = parse(&format!(
        "state_dir = \"/var/lib/keycanary\"\nretention = \"2days\"\n{base}"
    ))
    .unwrap();
    assert_eq!(c.settings.state_dir, PathBuf::from("/var/lib/keycanary"));
    assert_eq!(c.settings.retention, Duration::from_secs(2 * 24 * 3600));
    check_problems(
        &format!("state_dir = \"\"\nretention = \"10m\"\n{base}"),
        &[
            ("state_dir", "must not be empty"),
            ("retention", "at least 1h"),
        ],
    );
    check_problems(
        &format!("retention = \"forever\"\n{base}"),
        &[("retention", "not a duration")],
    );
}

#[test]
fn max_concurrency_setting() {
    let base = &minimal();
    assert_eq!(parse(base).unwrap().settings.max_concurrency, 16);
    let c = parse(&format!("max_concurrency = 2\n{base}")).unwrap();
    assert_eq!(c.settings.max_concurrency, 2);
    check_problems(
        &format!("max_concurrency = 0\n{base}"),
        &[("max_concurrency", "at least 1")],
    );
}

const ALERTING: &str = r#"
[alerting]
failure_threshold = 3
success_threshold = 4
for = "1m"
repeat_interval = "2h"
send_on_resolved = false
group_by = "tenant_code"
status_page_url = "http://127.0.0.1:9464/"

[[alerting.channel]]
name = "sre-email"
type = "email"
smtp_host = "127.0.0.1"
smtp_port = 2525
tls = "none"
username = "keycanary"
password = { env = "PASSWORD" }
from = "Keycanary <keycanary@example.com>"
to = ["sre@example.com"]

[[alerting.channel]]
name = "pd"
type = "pagerduty"
routing_key = { env = "SECRET_A" }

[[alerting.channel]]
name = "slack"
type = "slack"
url = { file = "slack-url.txt" }

[[alerting.channel]]
name = "hook"
type = "webhook"
url = "https://hooks.example/keycanary"
hmac_key = { file = "secret.txt" }

[[alerting.channel]]
name = "am"
type = "alertmanager"
url = "http://127.0.0.1:9093/"

[[alerting.route]]
channels = ["pd", "sre-email"]
min_severity = "critical"

[[alerting.route]]
channels = ["slack", "hook", "am"]
tenants = ["acme"]
codes = ["stale_edge", "kid_missing"]

[[alerting.silence]]
tenant = "acme"
code = "stale_edge"
subject = "domain=io*"
starts = "2026-11-26T00:00:00Z"
ends = "2026-11-27T00:00:00Z"
comment = "CDN migration"

[[alerting.maintenance]]
tenants = ["acme"]
starts = "2026-12-01T02:00:00Z"
ends = "2026-12-01T04:00:00Z"
"#;

/// `parse`, with a Slack webhook URL in `slack-url.txt` beside the config.
fn parse_alerting(text: &str) -> Result<Config, ConfigError> {
    let secrets = secrets()
        .with_file(
            Path::new(DIR).join("slack-url.txt"),
            "https://hooks.slack.example/services/T0/B0/sl4ck-t0ken\n",
        )
        .with_file(Path::new(DIR).join("not-a-url.txt"), "sl4ck-t0ken\n");
    super::parse(text, "probes.toml", Path::new(DIR), &secrets)
}

fn check_alerting_problems(text: &str, expected: &[(&str, &str)]) {
    let err = parse_alerting(&format!("{GOOD}\n{text}")).expect_err("config should be refused");
    let problems = err.problems();
    for (path, fragment) in expected {
        assert!(
            problems
                .iter()
                .any(|p| p.path == *path && p.message.contains(fragment)),
            "expected a problem at `{path}` containing `{fragment}`, got:\n{err}"
        );
    }
    assert_eq!(
        problems.len(),
        expected.len(),
        "unexpected extra problems:\n{err}"
    );
    for secret in ["sl4ck-t0ken", "s3cret-a", "hunter2"] {
        assert!(
            !err.to_string().contains(secret),
            "{secret} leaked in:\n{err}"
        );
    }
}

#[test]
fn alerting_defaults_page_within_two_rounds() {
    let c = parse(GOOD).unwrap();
    let a = &c.alerting;
    assert_eq!(a.policy, crate::alert::AlertPolicy::default());
    assert_eq!(a.policy.failure_threshold, 2);
    assert_eq!(a.policy.success_threshold, 2);
    assert_eq!(a.policy.for_duration, Duration::ZERO);
    assert_eq!(a.policy.repeat_interval, Duration::from_secs(4 * 3600));
    assert!(a.policy.send_on_resolved);
    assert!(a.channels.is_empty() && a.routes.is_empty() && a.silences.is_empty());
    assert!(a.status_page_url.is_none());
}

#[test]
fn alerting_section_validates() {
    let c = parse_alerting(&format!("{GOOD}\n{ALERTING}")).unwrap();
    let a = &c.alerting;
    assert_eq!(a.policy.failure_threshold, 3);
    assert_eq!(a.policy.success_threshold, 4);
    assert_eq!(a.policy.for_duration, Duration::from_secs(60));
    assert_eq!(a.policy.repeat_interval, Duration::from_secs(7200));
    assert!(!a.policy.send_on_resolved);
    assert_eq!(a.policy.group_by, GroupBy::TenantCode);
    assert_eq!(a.policy.maintenance.len(), 1);
    assert_eq!(a.policy.maintenance[0].tenants, ["acme"]);
    let kinds: Vec<&str> = a.channels.iter().map(|c| c.config.kind()).collect();
    assert_eq!(
        kinds,
        ["email", "pagerduty", "slack", "webhook", "alertmanager"]
    );
    match &a.channel("sre-email").unwrap().config {
        ChannelConfig::Email(e) => {
            assert_eq!(e.smtp_port, 2525);
            assert_eq!(e.tls, SmtpTls::None);
            assert_eq!(e.password.as_ref().unwrap().expose_secret(), "hunter2");
        }
        other => panic!("{other:?}"),
    }
    match &a.channel("pd").unwrap().config {
        ChannelConfig::PagerDuty(p) => {
            assert_eq!(p.routing_key.expose_secret(), "s3cret-a");
            assert_eq!(p.url.as_str(), PAGERDUTY_DEFAULT_URL);
        }
        other => panic!("{other:?}"),
    }
    match &a.channel("slack").unwrap().config {
        ChannelConfig::Slack(s) => {
            assert!(s.webhook_url.expose_secret().ends_with("sl4ck-t0ken"))
        }
        other => panic!("{other:?}"),
    }
    assert_eq!(a.routes[0].min_severity, Severity::Critical);
    assert_eq!(a.routes[1].min_severity, Severity::Low);
    assert_eq!(a.routes[1].codes, [Code::StaleEdge, Code::KidMissing]);
    let s = &a.silences[0];
    assert_eq!(s.id, "config-0");
    assert_eq!(s.created_by, "probes.toml");
    assert_eq!(s.starts, Timestamp::from_secs(1_795_651_200));
    assert_eq!(s.subject.as_ref().unwrap().to_string(), "domain=io*");

    let dump = format!("{c:?}");
    for secret in ["s3cret-a", "s3cret-from-file", "hunter2", "sl4ck-t0ken"] {
        assert!(!dump.contains(secret), "{secret} leaked in Debug output");
    }
}

#[test]
fn email_port_follows_tls() {
    let text = |tls: &str| {
        format!(
            "{GOOD}\n[[alerting.channel]]\nname = \"m\"\ntype = \"email\"\nsmtp_host = \"mail.example\"\n{tls}\nfrom = \"k@example.com\"\nto = [\"s@example.com\"]\n"
        )
    };
    for (tls, port) in [
        ("", 587),
        ("tls = \"implicit\"", 465),
        ("tls = \"none\"", 25),
    ] {
        let c = parse_alerting(&text(tls)).unwrap();
        match &c.alerting.channels[0].config {
            ChannelConfig::Email(e) => assert_eq!(e.smtp_port, port, "{tls}"),
            other => panic!("{other:?}"),
        }
    }
}

/// `ca_file`: a readable PEM certificate file beside the config, only with TLS on.
#[test]
fn email_ca_file() {
    const PEM: &str =
        "-----BEGIN CERTIFICATE-----\nMIIBazCCARGgAwIBAgIUZ2Vu\n-----END CERTIFICATE-----\n";
    let secrets = secrets()
        .with_file(Path::new(DIR).join("relay-ca.pem"), PEM)
        .with_file(
            Path::new(DIR).join("key.pem"),
            "-----BEGIN PRIVATE KEY-----\nAAAA\n-----END PRIVATE KEY-----\n",
        );
    let text = |tls: &str, ca: &str| {
        format!(
            "{GOOD}\n[[alerting.channel]]\nname = \"m\"\ntype = \"email\"\nsmtp_host = \"mail.example\"\n{tls}\nca_file = \"{ca}\"\nfrom = \"k@example.com\"\nto = [\"s@example.com\"]\n"
        )
    };
    for (tls, ca, expected) in [
        ("", "relay-ca.pem", Ok(PEM)),
        ("tls = \"implicit\"", "/etc/keycanary/relay-ca.pem", Ok(PEM)),
        ("tls = \"none\"", "relay-ca.pem", Err("needs TLS")),
        (
            "",
            "missing.pem",
            Err("cannot read /etc/keycanary/missing.pem"),
        ),
        ("", "key.pem", Err("holds no PEM certificate")),
    ] {
        let parsed = super::parse(&text(tls, ca), "probes.toml", Path::new(DIR), &secrets);
        match (parsed, expected) {
            (Ok(c), Ok(pem)) => match &c.alerting.channels[0].config {
                ChannelConfig::Email(e) => assert_eq!(e.ca_pem.as_deref(), Some(pem), "{tls} {ca}"),
                other => panic!("{other:?}"),
            },
            (Err(e), Err(fragment)) => {
                let problems = e.problems();
                assert_eq!(problems.len(), 1, "{tls} {ca}: {e}");
                assert_eq!(problems[0].path, "alerting.channel[0].ca_file", "{e}");
                assert!(problems[0].message.contains(fragment), "{tls} {ca}: {e}");
            }
            (got, want) => panic!("{tls} {ca}: got {got:?}, want {want:?}"),
        }
    }
}

#[test]
fn alerting_policy_problems() {
    check_alerting_problems(
        "[alerting]\nfailure_threshold = 0\nsuccess_threshold = 0\nfor = \"soon\"\nrepeat_interval = \"often\"\ngroup_by = \"domain\"\nstatus_page_url = \"ftp://x\"\nsend_resolved = true\n",
        &[
            ("alerting.failure_threshold", "at least 1"),
            ("alerting.success_threshold", "at least 1"),
            ("alerting.for", "not a duration"),
            ("alerting.repeat_interval", "not a duration"),
            ("alerting.group_by", "`domain`"),
            ("alerting.status_page_url", "not an http(s) URL"),
            ("alerting", "unknown key `send_resolved`"),
        ],
    );
}

#[test]
fn alerting_channel_problems() {
    check_alerting_problems(
        r#"
[[alerting.channel]]
name = "mail"
type = "email"
tls = "ssl"
username = "k"
from = "nobody"
to = ["ok@example.com", "not an address"]
routing_key = { env = "SECRET_A" }

[[alerting.channel]]
name = "mail"
type = "email"
smtp_host = "mail.example"
password = { env = "PASSWORD" }
from = "k@example.com"
to = []

[[alerting.channel]]
name = "pd"
type = "pagerduty"
routing_key = "inline-key"

[[alerting.channel]]
name = "slack"
type = "slack"
url = "https://hooks.slack.example/services/T0/B0/sl4ck-t0ken"

[[alerting.channel]]
name = "slack2"
type = "slack"
url = { file = "not-a-url.txt" }

[[alerting.channel]]
name = "hook"
type = "webhook"
hmac_key = { env = "UNSET_KEY" }

[[alerting.channel]]
name = "am"
type = "alertmanager"
url = "not a url"

[[alerting.channel]]
name = "x"
type = "sms"

[[alerting.channel]]
name = "y"
"#,
        &[
            ("alerting.channel[0].smtp_host", "missing"),
            ("alerting.channel[0].tls", "`ssl`"),
            (
                "alerting.channel[0].password",
                "a username needs a password",
            ),
            ("alerting.channel[0].from", "not an email address"),
            ("alerting.channel[0].to[1]", "not an email address"),
            (
                "alerting.channel[0].routing_key",
                "does not apply to type = \"email\"",
            ),
            ("alerting.channel[1].name", "defined twice"),
            (
                "alerting.channel[1].username",
                "a password needs a username",
            ),
            ("alerting.channel[1].to", "at least one recipient"),
            ("alerting.channel[2].routing_key", "never written inline"),
            ("alerting.channel[3].url", "never written inline"),
            ("alerting.channel[4].url", "not an http(s) URL"),
            ("alerting.channel[5].hmac_key", "UNSET_KEY is not set"),
            ("alerting.channel[5].url", "missing"),
            ("alerting.channel[6].url", "not a URL"),
            ("alerting.channel[7].type", "`sms` is not one of"),
            ("alerting.channel[8].type", "missing"),
        ],
    );
}

#[test]
fn alerting_route_silence_maintenance_problems() {
    check_alerting_problems(
        r#"
[[alerting.channel]]
name = "am"
type = "alertmanager"
url = "http://127.0.0.1:9093/"

[[alerting.route]]
channels = ["am", "pagerduty"]
min_severity = "urgent"
tenants = ["acme", "nobody"]
codes = ["kid_missing", "kid_gone"]

[[alerting.route]]
min_severity = "high"

[[alerting.silence]]
tenant = "nobody"
code = "stale"
severity = "bad"
subject = "host=io*"
starts = "2026-11-26"
ends = "2026-11-27T00:00:00Z"

[[alerting.silence]]
comment = "everything"
starts = "2026-11-27T00:00:00Z"
ends = "2026-11-26T00:00:00Z"

[[alerting.silence]]
tenant = "acme"

[[alerting.maintenance]]
starts = "2026-12-01T02:00:00Z"
ends = "2026-12-01T04:00:00Z"

[[alerting.maintenance]]
tenants = ["ghost"]
starts = "2026-12-01T02:00:00Z"
ends = "2026-12-01T02:00:00Z"
"#,
        &[
            (
                "alerting.route[0].channels[1]",
                "no channel named `pagerduty`",
            ),
            ("alerting.route[0].min_severity", "`urgent`"),
            ("alerting.route[0].tenants[1]", "no tenant named `nobody`"),
            (
                "alerting.route[0].codes[1]",
                "unknown finding code `kid_gone`",
            ),
            ("alerting.route[1].channels", "missing"),
            ("alerting.silence[0].tenant", "no tenant named `nobody`"),
            ("alerting.silence[0].code", "unknown finding code `stale`"),
            ("alerting.silence[0].severity", "`bad`"),
            (
                "alerting.silence[0].subject",
                "unknown subject field `host`",
            ),
            ("alerting.silence[0].starts", "not a time"),
            (
                "alerting.silence[1]",
                "at least one of tenant, code, severity, subject",
            ),
            ("alerting.silence[1].ends", "after `starts`"),
            ("alerting.silence[2].starts", "missing"),
            ("alerting.silence[2].ends", "missing"),
            ("alerting.maintenance[0].tenants", "missing"),
            (
                "alerting.maintenance[1].tenants[0]",
                "no tenant named `ghost`",
            ),
            ("alerting.maintenance[1].ends", "after `starts`"),
        ],
    );
}

#[test]
fn syntax_errors_are_one_clear_line() {
    let err = parse("interval = \n").unwrap_err();
    let msg = err.to_string();
    assert!(msg.starts_with("probes.toml is not valid TOML"), "{msg}");
    assert!(msg.contains("line 1, column"), "{msg}");
    assert!(!msg.contains('\n'), "{msg}");
    let err = parse("interval = 5\n").unwrap_err();
    assert!(err.to_string().contains("interval"), "{err}");
}

#[test]
fn a_syntax_error_never_echoes_the_line() {
    // An inline secret on the broken line: the message gives its place, not its text.
    let text = format!("{GOOD}\n[api]\nbearer_token = \"hunter2-inline-secret\" trailing\n");
    let msg = parse(&text).unwrap_err().to_string();
    assert!(!msg.contains("hunter2"), "{msg}");
    let line = text.lines().position(|l| l.contains("hunter2")).unwrap() + 1;
    assert!(msg.contains(&format!("line {line}, column")), "{msg}");
    let unterminated = "[api]\nbearer_token = \"hunter2-unterminated\n";
    let msg = parse(unterminated).unwrap_err().to_string();
    assert!(!msg.contains("hunter2"), "{msg}");
    assert!(msg.contains("line 2, column"), "{msg}");
}

#[test]
fn wrong_types_are_listed_with_every_other_problem() {
    let text = GOOD
        .replace("interval = \"10s\"", "interval = 30")
        .replacen("[[tenant]]", "max_redirects = \"five\"\n\n[[tenant]]", 1);
    let text = format!(
        "{text}\nbogus_key = 1\n[api]\nlisten = 9464\nallowed_hosts = [\"ok.example\", 7]\n"
    );
    let err = parse(&text).unwrap_err();
    let problems = err.problems();
    let find = |path: &str| {
        problems
            .iter()
            .find(|p| p.path == path)
            .unwrap_or_else(|| panic!("no problem at {path}: {problems:#?}"))
            .message
            .clone()
    };
    let interval = find("interval");
    assert!(
        interval.contains("wrong type: an integer, expected a string"),
        "{interval}"
    );
    assert!(interval.contains("\"30s\""), "{interval}");
    assert!(
        find("max_redirects").contains("a string, expected"),
        "{problems:#?}"
    );
    assert!(find("api.listen").contains("an integer"), "{problems:#?}");
    assert!(
        find("api.allowed_hosts[1]").contains("an integer"),
        "{problems:#?}"
    );
    assert!(
        problems
            .iter()
            .any(|p| p.message.contains("unknown key `bogus_key`")),
        "{problems:#?}"
    );
    // Each wrong value is named once, and never quoted.
    assert_eq!(
        problems.iter().filter(|p| p.path == "interval").count(),
        1,
        "{problems:#?}"
    );
    assert!(!err.to_string().contains("five"), "{err}");
}

#[test]
fn real_reader_reads_variables_and_files_beside_the_config() {
    let dir = tempfile::tempdir().unwrap();
    std::fs::write(dir.path().join("secret.txt"), "s3cret-from-file\n").unwrap();
    let env = |name: &str| match name {
        "SECRET_A" => Some("s3cret-a".to_owned()),
        "PASSWORD" => Some("hunter2".to_owned()),
        _ => None,
    };
    let secrets = SecretSource {
        base_dir: dir.path(),
        env: &env,
    };
    let c = Config::from_toml_str(GOOD, "probes.toml", &secrets).unwrap();
    let login = |d: usize| c.tenants[0].domains[d].login.as_ref().unwrap();
    let secret = |d: usize| login(d).client_secret.as_ref().unwrap().expose_secret();
    assert_eq!(secret(0), "s3cret-a");
    assert_eq!(secret(1), "s3cret-from-file");
    assert_eq!(c.settings.state_dir, dir.path().join(".state"));
    let text = GOOD.replace("secret.txt", "does-not-exist.txt");
    let err = Config::from_toml_str(&text, "probes.toml", &secrets).unwrap_err();
    assert!(
        err.problems()
            .iter()
            .any(|p| p.path == "tenant[0].domain[1].login.client_secret"
                && p.message.contains("cannot read secret file")),
        "{err}"
    );
}

#[test]
fn tenant_lookup_through_the_index_stays_right_when_tenants_are_edited() {
    let mut fx = TomlFixture::tenant("t0").domain("app", "https://idp.example.app/t0");
    for i in 1..50 {
        fx = fx
            .and_tenant(&format!("t{i}"))
            .domain("app", &format!("https://idp.example.app/t{i}"));
    }
    let mut c = super::parse(
        &fx.to_string(),
        "t.toml",
        Path::new("."),
        &MemorySecrets::new(),
    )
    .expect("valid");
    let pos = |c: &Config, n: &str| c.tenant_position(n);
    let name = |c: &Config, n: &str| c.tenant(n).map(|t| t.name.clone());
    // (name, position) in config order, and names no tenant has.
    for (n, want) in [
        ("t0", Some(0)),
        ("t17", Some(17)),
        ("t49", Some(49)),
        ("t50", None),
    ] {
        assert_eq!(pos(&c, n), want, "{n}");
        assert_eq!(name(&c, n), want.map(|_| n.to_owned()), "{n}");
    }
    assert_eq!(pos(&c, ""), None);
    // Edited in place after validation: still right, before and after reindexing.
    type Edit<'a> = (&'a str, fn(&mut Config), &'a [(&'a str, Option<usize>)]);
    let edits: &[Edit<'_>] = &[
        (
            "removed first",
            |c| {
                c.tenants.remove(0);
            },
            &[("t0", None), ("t1", Some(0)), ("t49", Some(48))],
        ),
        (
            "renamed",
            |c| c.tenants[3].name = "renamed".into(),
            &[("t4", None), ("renamed", Some(3)), ("t5", Some(4))],
        ),
        (
            "pushed",
            |c| {
                let mut t = c.tenants[0].clone();
                t.name = "new".into();
                c.tenants.push(t);
            },
            &[("new", Some(49)), ("t1", Some(0))],
        ),
    ];
    for (what, edit, want) in edits {
        edit(&mut c);
        for reindexed in [false, true] {
            if reindexed {
                c.reindex_tenants();
            }
            for (n, p) in *want {
                assert_eq!(pos(&c, n), *p, "{what}, reindexed {reindexed}: {n}");
                assert_eq!(name(&c, n).as_deref(), p.map(|_| *n), "{what}: {n}");
            }
        }
    }
    assert!(format!("{c:?}").contains("TenantIndex(50 tenants)"));
}

/// `shard = "i/n"`: every tenant is validated, each instance keeps the tenants hashed to
/// its shard, and the n shards together keep every tenant once.
#[test]
fn a_shard_keeps_its_part_of_the_tenants() {
    let names: Vec<String> = (0..40).map(|i| format!("t{i}")).collect();
    let file = |shard: &str| {
        let mut f = TomlFixture::tenant(&names[0]).domain("d", "https://x.example");
        for n in &names[1..] {
            f = f.and_tenant(n).domain("d", "https://x.example");
        }
        f.setting(&format!("shard = \"{shard}\"")).to_string()
    };
    let mut seen = Vec::new();
    for i in 0..3 {
        let c = parse(&file(&format!("{i}/3"))).unwrap();
        assert_eq!(c.settings.shard, Some(Shard { index: i, count: 3 }));
        assert_eq!(c.tenants_in_file, 40);
        assert!(
            !c.tenants.is_empty() && c.tenants.len() < 40,
            "{}",
            c.tenants.len()
        );
        for t in &c.tenants {
            assert_eq!(c.tenant(&t.name).map(|x| &x.name), Some(&t.name));
            seen.push(t.name.clone());
        }
    }
    seen.sort();
    let mut all = names.clone();
    all.sort();
    assert_eq!(seen, all);

    let unsharded = parse(&minimal()).unwrap();
    assert_eq!((unsharded.tenants.len(), unsharded.tenants_in_file), (1, 1));
    check_problems(&file("3/3"), &[("shard", "is not `i/n`")]);
}

/// A domain logging in with `login` (TOML lines of `[tenant.domain.login]`).
fn with_login(login: &str, discovery: bool) -> String {
    format!(
        "[[tenant]]\nname = \"a\"\n[[tenant.domain]]\nname = \"d\"\nissuer = \"https://x.example\"\ndiscovery = {discovery}\n[[tenant.domain.jwks]]\nname = \"cdn\"\nurl = \"https://x.example/jwks\"\n[tenant.domain.login]\nclient_id = \"web\"\n{login}\n"
    )
}

#[test]
fn authorization_code_reads_its_user_its_way_back_and_its_form_rules() {
    let text = with_login(
        "grant = \"authorization_code\"\nclient_secret = { env = \"SECRET_A\" }\nusername = \"probe\"\npassword = { env = \"PASSWORD\" }\nredirect_uri = \"http://127.0.0.1:9/cb\"\nscope = \"openid api\"\npage_origins = [\"https://login.example\"]\npassword_input = \"pw\"\nsubmit_button = \"Allow\"",
        true,
    );
    let c = parse(&text).unwrap_or_else(|e| panic!("{e}"));
    let login = c.tenants[0].domains[0].login.as_ref().unwrap();
    let Grant::AuthorizationCode(ac) = &login.grant else {
        panic!("{:?}", login.grant)
    };
    assert_eq!(ac.username, "probe");
    assert_eq!(ac.password.expose_secret(), "hunter2");
    assert_eq!(ac.redirect_uri.as_str(), "http://127.0.0.1:9/cb");
    assert_eq!(ac.driver, Driver::Form);
    assert_eq!(ac.browser, BrowserRules::default());
    assert_eq!(ac.authorization_url, None);
    assert_eq!(ac.page_origins.len(), 1);
    assert_eq!(ac.form.password_input.as_deref(), Some("pw"));
    assert_eq!(ac.form.submit_button.as_deref(), Some("Allow"));
    assert_eq!(ac.form.username_input, None);
    assert!(c.secret_values().contains(&"hunter2".to_owned()));
    assert!(!format!("{c:?}").contains("hunter2"));
}

#[test]
fn the_browser_driver_reads_its_selectors_with_defaults() {
    let read = |keys: &str| {
        let text = with_login(
            &format!(
                "grant = \"authorization_code\"\nclient_secret = {{ env = \"SECRET_A\" }}\nusername = \"probe\"\npassword = {{ env = \"PASSWORD\" }}\nredirect_uri = \"http://127.0.0.1:9/cb\"\ndriver = \"browser\"\n{keys}"
            ),
            true,
        );
        let c = parse(&text).unwrap_or_else(|e| panic!("{e}"));
        let Grant::AuthorizationCode(ac) = &c.tenants[0].domains[0].login.as_ref().unwrap().grant
        else {
            panic!("not authorization_code")
        };
        assert_eq!(ac.driver, Driver::Browser);
        ac.browser.clone()
    };
    assert_eq!(read(""), BrowserRules::default());
    assert_eq!(
        read(
            "username_selector = \"#user\"\npassword_selector = \"#pw\"\nsubmit_selector = \"button.go\"\nconsent_selector = \"#allow\""
        ),
        BrowserRules {
            username: "#user".into(),
            password: "#pw".into(),
            submit: "button.go".into(),
            consent: Some("#allow".into()),
        }
    );
}

#[test]
fn authorization_code_problems_are_all_listed() {
    let p = "tenant[0].domain[0].login";
    check_problems(
        &with_login(
            "grant = \"authorization_code\"\ndriver = \"selenium\"",
            false,
        ),
        &[
            (&format!("{p}.username"), "missing"),
            (&format!("{p}.password"), "missing"),
            (&format!("{p}.redirect_uri"), "missing"),
            (&format!("{p}.authorization_url"), "with discovery = false"),
            (&format!("{p}.token_url"), "with discovery = false"),
            (
                &format!("{p}.driver"),
                "`selenium` is not one of form, browser",
            ),
        ],
    );
    check_problems(
        &with_login(
            "grant = \"authorization_code\"\nusername = \"u\"\npassword = { env = \"PASSWORD\" }\nredirect_uri = \"http://app.example/cb\"\nscope = \"api\"\ndriver = \"browser\"\npage_origins = [\"https://login.example/path\"]\nusername_input = \"\"",
            true,
        ),
        &[
            (
                &format!("{p}.redirect_uri"),
                "plain http is only for a loopback",
            ),
            (&format!("{p}.scope"), "needs `openid`"),
            (&format!("{p}.page_origins[0]"), "is not an origin"),
            (&format!("{p}.username_input"), "empty"),
            (
                &format!("{p}.username_input"),
                "only used with driver = \"form\"",
            ),
        ],
    );
    // Each driver's keys set with the other driver are named; a selector is one line.
    check_problems(
        &with_login(
            "grant = \"authorization_code\"\nusername = \"u\"\npassword = { env = \"PASSWORD\" }\nredirect_uri = \"http://127.0.0.1:9/cb\"\nsubmit_selector = \"#go\"\nconsent_selector = \"\"",
            true,
        ),
        &[
            (
                &format!("{p}.submit_selector"),
                "only used with driver = \"browser\"",
            ),
            (
                &format!("{p}.consent_selector"),
                "only used with driver = \"browser\"",
            ),
            (&format!("{p}.consent_selector"), "not a CSS selector"),
        ],
    );
    check_problems(
        &with_login(
            "grant = \"authorization_code\"\nusername = \"u\"\npassword = { env = \"PASSWORD\" }\nredirect_uri = \"http://127.0.0.1:9/cb\"\ndriver = \"browser\"\npassword_selector = \"input\\n#pw\"\nform_action = \"/consent\"",
            true,
        ),
        &[
            (&format!("{p}.password_selector"), "not a CSS selector"),
            (
                &format!("{p}.form_action"),
                "only used with driver = \"form\"",
            ),
        ],
    );
    // Keys of the grant set with another grant are named, not silently ignored.
    check_problems(
        &with_login(
            "client_secret = { env = \"SECRET_A\" }\nredirect_uri = \"https://app.example/cb\"\nsubmit_button = \"Allow\"",
            true,
        ),
        &[
            (
                &format!("{p}.redirect_uri"),
                "only used with grant = \"authorization_code\"",
            ),
            (
                &format!("{p}.submit_button"),
                "only used with grant = \"authorization_code\"",
            ),
        ],
    );
}

#[test]
fn private_key_jwt_reads_its_key_and_lists_its_problems() {
    let pem = pem_of(&rcgen::KeyPair::generate().unwrap().serialize_der());
    let secrets = secrets().with_env("CLIENT_KEY", &pem);
    let text = with_login(
        "auth = \"private_key_jwt\"\nclient_key = { env = \"CLIENT_KEY\" }\nclient_key_id = \"ck-1\"\nclient_key_alg = \"ES256\"",
        true,
    );
    let c = super::parse(&text, "probes.toml", Path::new(DIR), &secrets)
        .unwrap_or_else(|e| panic!("{e}"));
    let login = c.tenants[0].domains[0].login.as_ref().unwrap();
    assert_eq!(login.auth, ClientAuth::PrivateKeyJwt);
    let key = login.client_key.as_ref().unwrap();
    assert_eq!((key.kid.as_str(), key.alg.as_str()), ("ck-1", "ES256"));
    assert!(c.secret_values().contains(&pem));
    assert!(!format!("{c:?}").contains("PRIVATE KEY"));

    let p = "tenant[0].domain[0].login";
    let refused = |login: &str| {
        super::parse(
            &with_login(login, true),
            "probes.toml",
            Path::new(DIR),
            &secrets,
        )
        .expect_err("refused")
    };
    let err = refused(
        "auth = \"private_key_jwt\"\nclient_secret = { env = \"SECRET_A\" }\nclient_key = { env = \"CLIENT_KEY\" }\nclient_key_alg = \"RS256\"",
    );
    let problems: Vec<(String, String)> = err
        .problems()
        .iter()
        .map(|x| (x.path.clone(), x.message.clone()))
        .collect();
    let has = |path: &str, fragment: &str| {
        problems
            .iter()
            .any(|(p2, m)| p2 == path && m.contains(fragment))
    };
    assert!(
        has(&format!("{p}.client_secret"), "not used with auth"),
        "{problems:?}"
    );
    assert!(
        has(&format!("{p}.client_key_id"), "missing"),
        "{problems:?}"
    );
    assert!(
        has(
            &format!("{p}.client_key"),
            "not a PEM private key for RS256"
        ),
        "{problems:?}"
    );
    assert_eq!(problems.len(), 3, "{problems:?}");
    assert!(!format!("{err}").contains("PRIVATE KEY"), "{err}");
    check_problems(
        &with_login(
            "auth = \"private_key_jwt\"\nclient_key_id = \"k\"\nclient_key_alg = \"HS256\"",
            true,
        ),
        &[
            (
                &format!("{p}.client_key_alg"),
                "`HS256` is not one of RS256, ES256, EdDSA",
            ),
            (&format!("{p}.client_key"), "missing"),
        ],
    );
    check_problems(
        &with_login(
            "client_secret = { env = \"SECRET_A\" }\nclient_key_id = \"k\"",
            true,
        ),
        &[(
            &format!("{p}.client_key_id"),
            "only used with auth = \"private_key_jwt\"",
        )],
    );
}

/// A PKCS#8 PEM of `der` (rcgen is built without its `pem` feature).
fn pem_of(der: &[u8]) -> String {
    use base64::Engine;
    let b64 = base64::engine::general_purpose::STANDARD.encode(der);
    let lines: Vec<&str> = b64
        .as_bytes()
        .chunks(64)
        .map(|c| std::str::from_utf8(c).unwrap())
        .collect();
    format!(
        "-----BEGIN PRIVATE KEY-----\n{}\n-----END PRIVATE KEY-----\n",
        lines.join("\n")
    )
}
