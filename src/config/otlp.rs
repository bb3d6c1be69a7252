//! Where traces and metrics are exported over OTLP: `[telemetry.otlp]` merged with the
//! standard `OTEL_EXPORTER_OTLP_*`, `OTEL_SERVICE_NAME` and `OTEL_RESOURCE_ATTRIBUTES`
//! variables, `probes.toml` winning field by field.
//!
//! [`resolve`] is pure: the validated table, the variables (a map) and a file reader in,
//! the settings of each signal (or every problem, each with its TOML path or variable
//! name) out. Per the OTLP exporter specification: a per-signal variable
//! (`…_TRACES_ENDPOINT`) beats the general one; the general endpoint (and `endpoint` of
//! the table) is a base to which HTTP/protobuf appends `/v1/traces` or `/v1/metrics`,
//! while per-signal endpoints are used as they are; the protocol defaults to
//! `http/protobuf`; `…_HEADERS` and `OTEL_RESOURCE_ATTRIBUTES` are `k=v,k2=v2` lists,
//! percent-decoded; `…_TIMEOUT` is in milliseconds (default 10 s); `…_CERTIFICATE`,
//! `…_CLIENT_CERTIFICATE` and `…_CLIENT_KEY` are PEM file paths. A signal with no
//! endpoint anywhere is not exported. Header values are held as secrets whichever side
//! they come from; messages never quote them. Nothing here connects anywhere.

use super::{DEFAULT_SERVICE_NAME, Problem};
use secrecy::{ExposeSecret, SecretString};
use std::collections::BTreeMap;
use std::io;
use std::path::Path;
use std::time::Duration;
use url::Url;

/// Export timeout when neither the table nor a variable sets one (the specification's).
pub const DEFAULT_TIMEOUT: Duration = Duration::from_secs(10);

/// The longest export timeout accepted: 10 minutes.
pub const MAX_TIMEOUT: Duration = Duration::from_secs(600);

/// The OTLP transports keycanary exports with.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Protocol {
    /// OTLP/gRPC (usually port 4317).
    Grpc,
    /// OTLP/HTTP with protobuf bodies (usually port 4318): the specification's default.
    HttpProtobuf,
}

impl Protocol {
    /// `grpc` or `http/protobuf`, as written in the config and `…_PROTOCOL`.
    pub fn parse(s: &str) -> Option<Protocol> {
        match s.trim() {
            "grpc" => Some(Protocol::Grpc),
            "http/protobuf" => Some(Protocol::HttpProtobuf),
            _ => None,
        }
    }

    pub fn as_str(self) -> &'static str {
        match self {
            Protocol::Grpc => "grpc",
            Protocol::HttpProtobuf => "http/protobuf",
        }
    }
}

/// What is exported.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Signal {
    Traces,
    Metrics,
}

impl Signal {
    fn upper(self) -> &'static str {
        match self {
            Signal::Traces => "TRACES",
            Signal::Metrics => "METRICS",
        }
    }

    fn lower(self) -> &'static str {
        match self {
            Signal::Traces => "traces",
            Signal::Metrics => "metrics",
        }
    }
}

/// A client certificate and its key (PEM), for collectors that require one (mTLS).
#[derive(Debug, Clone)]
pub struct ClientIdentity {
    pub certificate: SecretString,
    pub key: SecretString,
}

/// Where and how one signal goes.
#[derive(Debug, Clone)]
pub struct OtlpExport {
    /// The URL requests go to: for HTTP/protobuf the full path (`…/v1/traces`).
    pub endpoint: Url,
    pub protocol: Protocol,
    /// Sent with every export (lowercase names, sorted); values may be API keys.
    pub headers: Vec<(String, SecretString)>,
    pub timeout: Duration,
    /// PEM certificates trusted besides the system roots (`https` endpoints only).
    pub ca_pem: Option<String>,
    pub client_identity: Option<ClientIdentity>,
}

/// The resolved OTLP settings: at least one signal is exported.
#[derive(Debug, Clone)]
pub struct OtlpConfig {
    pub traces: Option<OtlpExport>,
    pub metrics: Option<OtlpExport>,
    pub service_name: String,
    /// From `OTEL_RESOURCE_ATTRIBUTES` (without `service.name`), in the variable's order.
    pub resource_attributes: Vec<(String, String)>,
}

impl OtlpConfig {
    /// Every header value and key this config holds, for scrubbing.
    pub fn secrets(&self) -> impl Iterator<Item = &SecretString> {
        [&self.traces, &self.metrics]
            .into_iter()
            .flatten()
            .flat_map(|e| {
                e.headers
                    .iter()
                    .map(|(_, v)| v)
                    .chain(e.client_identity.as_ref().map(|c| &c.key))
            })
    }
}

/// `[telemetry.otlp]` as validated, before the environment is consulted.
#[derive(Debug, Default)]
pub(crate) struct OtlpTable {
    pub endpoint: Option<Url>,
    pub traces_endpoint: Option<Url>,
    pub metrics_endpoint: Option<Url>,
    pub protocol: Option<Protocol>,
    pub headers: Vec<(String, SecretString)>,
    pub timeout: Option<Duration>,
    pub ca_pem: Option<String>,
    pub client_certificate: Option<SecretString>,
    pub client_key: Option<SecretString>,
    pub service_name: Option<String>,
}

const PREFIX: &str = "OTEL_EXPORTER_OTLP_";
/// The per-signal and general suffixes [`resolve`] reads after `OTEL_EXPORTER_OTLP_`.
const SUFFIXES: &[&str] = &[
    "ENDPOINT",
    "PROTOCOL",
    "HEADERS",
    "TIMEOUT",
    "CERTIFICATE",
    "CLIENT_CERTIFICATE",
    "CLIENT_KEY",
];
const SERVICE_NAME_VAR: &str = "OTEL_SERVICE_NAME";
const RESOURCE_VAR: &str = "OTEL_RESOURCE_ATTRIBUTES";

/// Every variable [`resolve`] may read, so the caller can build its map.
pub(crate) fn variables() -> Vec<String> {
    let mut out = vec![SERVICE_NAME_VAR.to_owned(), RESOURCE_VAR.to_owned()];
    for s in SUFFIXES {
        out.push(format!("{PREFIX}{s}"));
        for signal in [Signal::Traces, Signal::Metrics] {
            out.push(format!("{PREFIX}{}_{s}", signal.upper()));
        }
    }
    out
}

/// The export settings from `table` (`None`: no `[telemetry.otlp]`) and `env`, reading
/// certificate files named by variables with `read_file`. `Ok(None)`: export is off.
pub(crate) fn resolve(
    table: Option<&OtlpTable>,
    env: &BTreeMap<String, String>,
    read_file: &dyn Fn(&Path) -> io::Result<String>,
) -> Result<Option<OtlpConfig>, Vec<Problem>> {
    let none = OtlpTable::default();
    let mut r = Resolver {
        table: table.unwrap_or(&none),
        env,
        read_file,
        problems: Vec::new(),
    };
    let traces = r.signal(Signal::Traces);
    let metrics = r.signal(Signal::Metrics);
    let (service_name, resource_attributes) = r.resource();
    if table.is_some() && traces.is_none() && metrics.is_none() && r.problems.is_empty() {
        r.problem(
            "telemetry.otlp.endpoint",
            "missing: set the collector's address, e.g. \"https://otlp.example.com:4318\" (or OTEL_EXPORTER_OTLP_ENDPOINT), or remove [telemetry.otlp]",
        );
    }
    let mut problems = r.problems;
    if !problems.is_empty() {
        // General variables are read once per signal: say each problem once.
        let mut seen = std::collections::BTreeSet::new();
        problems.retain(|p| seen.insert((p.path.clone(), p.message.clone())));
        return Err(problems);
    }
    Ok(
        (traces.is_some() || metrics.is_some()).then_some(OtlpConfig {
            traces,
            metrics,
            service_name,
            resource_attributes,
        }),
    )
}

struct Resolver<'a> {
    table: &'a OtlpTable,
    env: &'a BTreeMap<String, String>,
    read_file: &'a dyn Fn(&Path) -> io::Result<String>,
    problems: Vec<Problem>,
}

impl Resolver<'_> {
    fn problem(&mut self, path: &str, message: impl Into<String>) {
        self.problems.push(Problem {
            path: path.to_owned(),
            message: message.into(),
        });
    }

    /// A variable's value, `None` when unset or blank.
    fn var(&self, name: &str) -> Option<(String, String)> {
        self.env
            .get(name)
            .filter(|v| !v.trim().is_empty())
            .map(|v| (name.to_owned(), v.trim().to_owned()))
    }

    /// The per-signal variable, else the general one: (name, value, per-signal?).
    fn signal_var(&self, signal: Signal, suffix: &str) -> Option<(String, String, bool)> {
        let specific = format!("{PREFIX}{}_{suffix}", signal.upper());
        self.var(&specific).map(|(n, v)| (n, v, true)).or_else(|| {
            self.var(&format!("{PREFIX}{suffix}"))
                .map(|(n, v)| (n, v, false))
        })
    }

    fn signal(&mut self, signal: Signal) -> Option<OtlpExport> {
        let protocol = match self.table.protocol {
            Some(p) => p,
            None => match self.signal_var(signal, "PROTOCOL") {
                None => Protocol::HttpProtobuf,
                Some((name, value, _)) => Protocol::parse(&value).unwrap_or_else(|| {
                    self.problem(&name, format!("`{value}` is not a protocol keycanary exports with: use grpc or http/protobuf"));
                    Protocol::HttpProtobuf
                }),
            },
        };
        let table_signal = match signal {
            Signal::Traces => &self.table.traces_endpoint,
            Signal::Metrics => &self.table.metrics_endpoint,
        };
        let endpoint = if let Some(u) = table_signal {
            u.clone()
        } else if let Some(u) = &self.table.endpoint {
            base(u, protocol, signal)
        } else {
            let (name, value, specific) = self.signal_var(signal, "ENDPOINT")?;
            let url = Url::parse(&value)
                .ok()
                .filter(|u| matches!(u.scheme(), "http" | "https") && u.host().is_some());
            let Some(url) = url else {
                self.problem(&name, format!("`{value}` is not an http(s) URL with a host: fix it, unset it, or set telemetry.otlp.endpoint"));
                return None;
            };
            if specific {
                url
            } else {
                base(&url, protocol, signal)
            }
        };
        let headers = self.headers(signal);
        let timeout = self.table.timeout.or_else(|| {
            let (name, value, _) = self.signal_var(signal, "TIMEOUT")?;
            match value.parse::<u64>() {
                Ok(ms) if ms > 0 && Duration::from_millis(ms) <= MAX_TIMEOUT => {
                    Some(Duration::from_millis(ms))
                }
                _ => {
                    self.problem(
                        &name,
                        format!("`{value}` is not a timeout in milliseconds from 1 to 600000 (e.g. 10000)"),
                    );
                    None
                }
            }
        });
        let https = endpoint.scheme() == "https";
        let ca_pem = match &self.table.ca_pem {
            Some(pem) => Some(pem.clone()),
            None => self
                .pem_var(signal, "CERTIFICATE", PemKind::Certificates)
                .map(|s| s.expose_secret().to_owned()),
        };
        let certificate = (self.table.client_certificate.clone())
            .or_else(|| self.pem_var(signal, "CLIENT_CERTIFICATE", PemKind::Certificates));
        let key = (self.table.client_key.clone())
            .or_else(|| self.pem_var(signal, "CLIENT_KEY", PemKind::PrivateKey));
        let client_identity = match (certificate, key) {
            (Some(certificate), Some(key)) => Some(ClientIdentity { certificate, key }),
            (None, None) => None,
            (Some(_), None) => {
                self.problem("telemetry.otlp.client_key", "a client certificate needs its key: set client_key (or OTEL_EXPORTER_OTLP_CLIENT_KEY)");
                None
            }
            (None, Some(_)) => {
                self.problem("telemetry.otlp.client_certificate", "a client key needs its certificate: set client_certificate (or OTEL_EXPORTER_OTLP_CLIENT_CERTIFICATE)");
                None
            }
        };
        let tls_in_table = self.table.ca_pem.is_some()
            || self.table.client_certificate.is_some()
            || self.table.client_key.is_some();
        if !https && tls_in_table {
            self.problem(
                &format!("telemetry.otlp.{}", endpoint_key(self.table, signal)),
                "ca_file and client certificates need an https endpoint",
            );
        }
        Some(OtlpExport {
            endpoint,
            protocol,
            headers,
            timeout: timeout.unwrap_or(DEFAULT_TIMEOUT),
            // Certificates from variables apply to https endpoints only.
            ca_pem: ca_pem.filter(|_| https),
            client_identity: client_identity.filter(|_| https),
        })
    }

    /// `…_HEADERS` (per-signal, else general), then the table's headers over them.
    fn headers(&mut self, signal: Signal) -> Vec<(String, SecretString)> {
        let mut headers: BTreeMap<String, SecretString> = BTreeMap::new();
        if let Some((name, value, _)) = self.signal_var(signal, "HEADERS") {
            match key_values(&value) {
                Ok(pairs) => {
                    for (k, v) in pairs {
                        let k = k.to_ascii_lowercase();
                        if http::HeaderName::from_bytes(k.as_bytes()).is_err()
                            || http::HeaderValue::from_str(&v).is_err()
                        {
                            self.problem(&name, format!("header `{k}` has an invalid name or value (values are not shown)"));
                            continue;
                        }
                        headers.insert(k, SecretString::from(v));
                    }
                }
                Err(i) => self.problem(&name, format!("entry {} is not `key=value` (write k1=v1,k2=v2, percent-encoding `,` `=` and non-ASCII; values are not shown)", i + 1)),
            }
        }
        for (k, v) in &self.table.headers {
            headers.insert(k.clone(), v.clone());
        }
        headers.into_iter().collect()
    }

    /// A PEM file named by a variable, read and checked to hold `kind`.
    fn pem_var(&mut self, signal: Signal, suffix: &str, kind: PemKind) -> Option<SecretString> {
        let (name, path, _) = self.signal_var(signal, suffix)?;
        match (self.read_file)(Path::new(&path)).map(|text| (check_pem(&text, kind), text)) {
            Ok((Ok(()), text)) => Some(SecretString::from(text)),
            Ok((Err(e), _)) => {
                self.problem(&name, format!("{path} {e}"));
                None
            }
            Err(e) => {
                self.problem(&name, format!("cannot read {path}: {e}"));
                None
            }
        }
    }

    /// `service.name` and the other resource attributes.
    fn resource(&mut self) -> (String, Vec<(String, String)>) {
        let mut attributes = Vec::new();
        if let Some((name, value)) = self.var(RESOURCE_VAR) {
            match key_values(&value) {
                Ok(pairs) => attributes = pairs,
                Err(i) => self.problem(&name, format!("entry {} is not `key=value` (write k1=v1,k2=v2, percent-encoding `,` `=` and non-ASCII)", i + 1)),
            }
        }
        let from_attributes = attributes
            .iter()
            .rfind(|(k, _)| k == "service.name")
            .map(|(_, v)| v.clone());
        attributes.retain(|(k, _)| k != "service.name");
        let service_name = (self.table.service_name.clone())
            .or_else(|| self.var(SERVICE_NAME_VAR).map(|(_, v)| v))
            .or(from_attributes)
            .unwrap_or_else(|| DEFAULT_SERVICE_NAME.to_owned());
        (service_name, attributes)
    }
}

/// What a PEM text must hold.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum PemKind {
    /// At least one `CERTIFICATE` block, each an X.509 certificate.
    Certificates,
    /// At least one `… PRIVATE KEY` block (PKCS#8, PKCS#1 or SEC1).
    PrivateKey,
}

/// `Ok` when `text` holds what `kind` asks, every block decoding; otherwise what is
/// wrong, to follow a file's name ("holds no PEM certificate"). Never quotes the text.
pub(crate) fn check_pem(text: &str, kind: PemKind) -> Result<(), &'static str> {
    use x509_parser::pem::Pem;
    let mut found = 0;
    for block in Pem::iter_from_buffer(text.as_bytes()) {
        let block = block.map_err(|_| "holds a PEM block that does not decode")?;
        match kind {
            PemKind::Certificates if block.label == "CERTIFICATE" => {
                block
                    .parse_x509()
                    .map_err(|_| "holds a certificate that does not parse")?;
                found += 1;
            }
            PemKind::PrivateKey if block.label.ends_with("PRIVATE KEY") => {
                if block.contents.is_empty() {
                    return Err("holds an empty private key");
                }
                found += 1;
            }
            _ => {}
        }
    }
    match (found, kind) {
        (0, PemKind::Certificates) => {
            Err("holds no PEM certificate (\"-----BEGIN CERTIFICATE-----\")")
        }
        (0, PemKind::PrivateKey) => {
            Err("holds no PEM private key (\"-----BEGIN PRIVATE KEY-----\")")
        }
        _ => Ok(()),
    }
}

/// The key of the table that gave `signal` its endpoint (for a problem's path).
fn endpoint_key(table: &OtlpTable, signal: Signal) -> String {
    let specific = match signal {
        Signal::Traces => table.traces_endpoint.is_some(),
        Signal::Metrics => table.metrics_endpoint.is_some(),
    };
    if specific {
        format!("{}_endpoint", signal.lower())
    } else {
        "endpoint".to_owned()
    }
}

/// A base endpoint made the signal's: HTTP/protobuf appends `/v1/traces` or `/v1/metrics`
/// to its path; gRPC uses it as it is.
fn base(url: &Url, protocol: Protocol, signal: Signal) -> Url {
    match protocol {
        Protocol::Grpc => url.clone(),
        Protocol::HttpProtobuf => {
            let mut u = url.clone();
            let path = format!("{}/v1/{}", url.path().trim_end_matches('/'), signal.lower());
            u.set_path(&path);
            u
        }
    }
}

/// A `k1=v1,k2=v2` list (W3C baggage-like), keys and values trimmed and
/// percent-decoded; blank entries are skipped. `Err(i)`: entry `i` is malformed.
fn key_values(s: &str) -> Result<Vec<(String, String)>, usize> {
    let mut out = Vec::new();
    for (i, entry) in s.split(',').enumerate() {
        if entry.trim().is_empty() {
            continue;
        }
        let (k, v) = entry.split_once('=').ok_or(i)?;
        let decode = |x: &str| {
            percent_encoding::percent_decode_str(x.trim())
                .decode_utf8()
                .map(|c| c.into_owned())
                .map_err(|_| i)
        };
        let (k, v) = (decode(k)?, decode(v)?);
        if k.is_empty() {
            return Err(i);
        }
        out.push((k, v));
    }
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn env(pairs: &[(&str, &str)]) -> BTreeMap<String, String> {
        pairs
            .iter()
            .map(|(k, v)| ((*k).to_owned(), (*v).to_owned()))
            .collect()
    }

    fn pem(label: &str, der: &[u8]) -> String {
        use base64::Engine as _;
        let b64 = base64::engine::general_purpose::STANDARD.encode(der);
        let lines: Vec<&str> = b64
            .as_bytes()
            .chunks(64)
            .map(|c| std::str::from_utf8(c).unwrap())
            .collect();
        format!(
            "-----BEGIN {label}-----\n{}\n-----END {label}-----\n",
            lines.join("\n")
        )
    }

    /// A self-signed certificate and its key, PEM (made once).
    fn cert_and_key() -> &'static (String, String) {
        static ONCE: std::sync::OnceLock<(String, String)> = std::sync::OnceLock::new();
        ONCE.get_or_init(|| {
            let key = rcgen::KeyPair::generate().unwrap();
            let cert = rcgen::CertificateParams::new(vec!["collector.test".to_owned()])
                .unwrap()
                .self_signed(&key)
                .unwrap();
            (
                pem("CERTIFICATE", cert.der()),
                pem("PRIVATE KEY", &key.serialize_der()),
            )
        })
    }

    /// Files that exist for these tests.
    fn files(path: &Path) -> io::Result<String> {
        let (cert, key) = cert_and_key();
        match path.to_str() {
            Some("/ca.pem" | "/client.pem") => Ok(cert.clone()),
            Some("/client.key") => Ok(key.clone()),
            Some("/notes.txt") => Ok("hello".into()),
            _ => Err(io::Error::new(io::ErrorKind::NotFound, "No such file")),
        }
    }

    #[test]
    fn pem_texts() {
        use PemKind::{Certificates, PrivateKey};
        let (cert, key) = cert_and_key();
        let check = |text: &str, kind, want: Result<(), &str>| {
            assert_eq!(check_pem(text, kind), want, "{text:?} as {kind:?}");
        };
        let no_cert = Err("holds no PEM certificate (\"-----BEGIN CERTIFICATE-----\")");
        check(cert, Certificates, Ok(()));
        check(&format!("# a bundle\n{cert}\n{cert}"), Certificates, Ok(()));
        check(key, PrivateKey, Ok(()));
        check(&format!("{cert}{key}"), PrivateKey, Ok(()));
        check(key, Certificates, no_cert);
        check("hello", Certificates, no_cert);
        check(
            cert,
            PrivateKey,
            Err("holds no PEM private key (\"-----BEGIN PRIVATE KEY-----\")"),
        );
        check(
            "-----BEGIN CERTIFICATE-----\nbm90IGEgY2VydA==\n-----END CERTIFICATE-----\n",
            Certificates,
            Err("holds a certificate that does not parse"),
        );
        check(
            "-----BEGIN CERTIFICATE-----\n!!\n-----END CERTIFICATE-----\n",
            Certificates,
            Err("holds a PEM block that does not decode"),
        );
        check(
            "-----BEGIN EC PRIVATE KEY-----\n-----END EC PRIVATE KEY-----\n",
            PrivateKey,
            Err("holds an empty private key"),
        );
    }

    fn url(s: &str) -> Url {
        Url::parse(s).unwrap()
    }

    /// One signal in short: endpoint, protocol, headers (name=value), timeout in ms,
    /// whether a CA and a client identity apply.
    fn short(e: &OtlpExport) -> String {
        let headers: Vec<String> = e
            .headers
            .iter()
            .map(|(k, v)| format!("{k}={}", v.expose_secret()))
            .collect();
        format!(
            "{} {} [{}] {}ms ca={} id={}",
            e.endpoint,
            e.protocol.as_str(),
            headers.join(","),
            e.timeout.as_millis(),
            e.ca_pem.is_some(),
            e.client_identity.is_some()
        )
    }

    /// `table` and `vars` in; traces and metrics in short (`-` when not exported), or
    /// the problems as `path: message` lines.
    fn check(table: Option<&OtlpTable>, vars: &[(&str, &str)], traces: &str, metrics: &str) {
        let got = match resolve(table, &env(vars), &files) {
            Ok(None) => ("-".to_owned(), "-".to_owned()),
            Ok(Some(c)) => (
                c.traces.as_ref().map_or("-".into(), short),
                c.metrics.as_ref().map_or("-".into(), short),
            ),
            Err(problems) => {
                let all: Vec<String> = problems.iter().map(ToString::to_string).collect();
                (all.join("\n"), String::new())
            }
        };
        assert_eq!(got, (traces.to_owned(), metrics.to_owned()), "{vars:?}");
    }

    const E: &str = "OTEL_EXPORTER_OTLP_ENDPOINT";

    #[test]
    fn endpoints_protocols_and_precedence() {
        // Nothing configured: off.
        check(None, &[], "-", "-");
        check(None, &[(E, "  ")], "-", "-");
        // The general endpoint is a base: HTTP/protobuf (the default) appends the paths.
        check(
            None,
            &[(E, "http://c:4318")],
            "http://c:4318/v1/traces http/protobuf [] 10000ms ca=false id=false",
            "http://c:4318/v1/metrics http/protobuf [] 10000ms ca=false id=false",
        );
        check(
            None,
            &[(E, "https://otlp.example.com/otlp/")],
            "https://otlp.example.com/otlp/v1/traces http/protobuf [] 10000ms ca=false id=false",
            "https://otlp.example.com/otlp/v1/metrics http/protobuf [] 10000ms ca=false id=false",
        );
        // gRPC uses it as it is.
        check(
            None,
            &[
                (E, "http://c:4317"),
                ("OTEL_EXPORTER_OTLP_PROTOCOL", "grpc"),
            ],
            "http://c:4317/ grpc [] 10000ms ca=false id=false",
            "http://c:4317/ grpc [] 10000ms ca=false id=false",
        );
        // Timeouts are bounded.
        check(
            None,
            &[
                (E, "http://c:4318"),
                ("OTEL_EXPORTER_OTLP_TIMEOUT", "600001"),
            ],
            "OTEL_EXPORTER_OTLP_TIMEOUT: `600001` is not a timeout in milliseconds from 1 to 600000 (e.g. 10000)",
            "",
        );
        check(
            None,
            &[
                (E, "http://c:4318"),
                ("OTEL_EXPORTER_OTLP_TIMEOUT", "600000"),
            ],
            "http://c:4318/v1/traces http/protobuf [] 600000ms ca=false id=false",
            "http://c:4318/v1/metrics http/protobuf [] 600000ms ca=false id=false",
        );
        // Per-signal endpoints are used as they are and beat the general one; per-signal
        // protocol and timeout too. A signal without any endpoint is not exported.
        check(
            None,
            &[
                ("OTEL_EXPORTER_OTLP_TRACES_ENDPOINT", "http://t:4318/custom"),
                ("OTEL_EXPORTER_OTLP_TIMEOUT", "2500"),
                ("OTEL_EXPORTER_OTLP_TRACES_TIMEOUT", "700"),
            ],
            "http://t:4318/custom http/protobuf [] 700ms ca=false id=false",
            "-",
        );
        check(
            None,
            &[
                (E, "http://c:4318"),
                ("OTEL_EXPORTER_OTLP_METRICS_ENDPOINT", "http://m:4317"),
                ("OTEL_EXPORTER_OTLP_METRICS_PROTOCOL", "grpc"),
            ],
            "http://c:4318/v1/traces http/protobuf [] 10000ms ca=false id=false",
            "http://m:4317/ grpc [] 10000ms ca=false id=false",
        );
        // probes.toml wins over every variable, field by field.
        let table = OtlpTable {
            endpoint: Some(url("https://otlp.example.com")),
            protocol: Some(Protocol::Grpc),
            timeout: Some(Duration::from_secs(3)),
            ..OtlpTable::default()
        };
        check(
            Some(&table),
            &[
                (E, "http://c:4318"),
                ("OTEL_EXPORTER_OTLP_TRACES_ENDPOINT", "http://t:4318"),
                ("OTEL_EXPORTER_OTLP_PROTOCOL", "http/protobuf"),
                ("OTEL_EXPORTER_OTLP_TIMEOUT", "100"),
            ],
            "https://otlp.example.com/ grpc [] 3000ms ca=false id=false",
            "https://otlp.example.com/ grpc [] 3000ms ca=false id=false",
        );
        // The table's per-signal endpoint is used as it is; its base gets the path.
        let table = OtlpTable {
            endpoint: Some(url("http://c:4318")),
            traces_endpoint: Some(url("http://t:9999/in")),
            ..OtlpTable::default()
        };
        check(
            Some(&table),
            &[],
            "http://t:9999/in http/protobuf [] 10000ms ca=false id=false",
            "http://c:4318/v1/metrics http/protobuf [] 10000ms ca=false id=false",
        );
        // A table whose endpoint comes from the environment.
        let table = OtlpTable {
            protocol: Some(Protocol::Grpc),
            ..OtlpTable::default()
        };
        check(
            Some(&table),
            &[(E, "http://c:4317")],
            "http://c:4317/ grpc [] 10000ms ca=false id=false",
            "http://c:4317/ grpc [] 10000ms ca=false id=false",
        );
    }

    #[test]
    fn headers_are_percent_decoded_and_the_table_wins() {
        check(
            None,
            &[
                (E, "http://c:4318"),
                (
                    "OTEL_EXPORTER_OTLP_HEADERS",
                    " Authorization=Basic%20dXNlcjprZXk= , x-tenant = a%2Cb ,",
                ),
                ("OTEL_EXPORTER_OTLP_METRICS_HEADERS", "x-only=metrics"),
            ],
            "http://c:4318/v1/traces http/protobuf [authorization=Basic dXNlcjprZXk=,x-tenant=a,b] 10000ms ca=false id=false",
            "http://c:4318/v1/metrics http/protobuf [x-only=metrics] 10000ms ca=false id=false",
        );
        let table = OtlpTable {
            endpoint: Some(url("http://c:4318")),
            headers: vec![("x-honeycomb-team".into(), SecretString::from("from-file"))],
            ..OtlpTable::default()
        };
        check(
            Some(&table),
            &[(
                "OTEL_EXPORTER_OTLP_HEADERS",
                "x-honeycomb-team=from-env,x-dataset=kc",
            )],
            "http://c:4318/v1/traces http/protobuf [x-dataset=kc,x-honeycomb-team=from-file] 10000ms ca=false id=false",
            "http://c:4318/v1/metrics http/protobuf [x-dataset=kc,x-honeycomb-team=from-file] 10000ms ca=false id=false",
        );
    }

    #[test]
    fn certificates_from_variables_apply_to_https_only() {
        let tls = [
            ("OTEL_EXPORTER_OTLP_CERTIFICATE", "/ca.pem"),
            ("OTEL_EXPORTER_OTLP_CLIENT_CERTIFICATE", "/client.pem"),
            ("OTEL_EXPORTER_OTLP_CLIENT_KEY", "/client.key"),
        ];
        let mut vars = vec![(E, "https://c:4318")];
        vars.extend(tls);
        check(
            None,
            &vars,
            "https://c:4318/v1/traces http/protobuf [] 10000ms ca=true id=true",
            "https://c:4318/v1/metrics http/protobuf [] 10000ms ca=true id=true",
        );
        let mut vars = vec![(E, "http://c:4318")];
        vars.extend(tls);
        check(
            None,
            &vars,
            "http://c:4318/v1/traces http/protobuf [] 10000ms ca=false id=false",
            "http://c:4318/v1/metrics http/protobuf [] 10000ms ca=false id=false",
        );
        // The table's CA and identity beat the variables'.
        let table = OtlpTable {
            endpoint: Some(url("https://c")),
            protocol: Some(Protocol::Grpc),
            ca_pem: Some("table".into()),
            ..OtlpTable::default()
        };
        let got = resolve(Some(&table), &env(&tls), &files).unwrap().unwrap();
        assert_eq!(got.traces.unwrap().ca_pem.as_deref(), Some("table"));
    }

    #[test]
    fn every_problem_is_listed_once_with_its_variable() {
        check(
            None,
            &[
                (E, "collector:4317"),
                ("OTEL_EXPORTER_OTLP_PROTOCOL", "http/json"),
                ("OTEL_EXPORTER_OTLP_HEADERS", "api-key=s3cr3t,novalue"),
                ("OTEL_EXPORTER_OTLP_TIMEOUT", "10s"),
                ("OTEL_RESOURCE_ATTRIBUTES", "a=1,%ff=2"),
            ],
            "OTEL_EXPORTER_OTLP_PROTOCOL: `http/json` is not a protocol keycanary exports with: use grpc or http/protobuf\n\
             OTEL_EXPORTER_OTLP_ENDPOINT: `collector:4317` is not an http(s) URL with a host: fix it, unset it, or set telemetry.otlp.endpoint\n\
             OTEL_RESOURCE_ATTRIBUTES: entry 2 is not `key=value` (write k1=v1,k2=v2, percent-encoding `,` `=` and non-ASCII)",
            "",
        );
        check(
            None,
            &[
                (E, "https://c"),
                ("OTEL_EXPORTER_OTLP_HEADERS", "api-key=s3cr3t,novalue"),
                ("OTEL_EXPORTER_OTLP_TIMEOUT", "10s"),
                ("OTEL_EXPORTER_OTLP_CERTIFICATE", "/missing.pem"),
                ("OTEL_EXPORTER_OTLP_CLIENT_CERTIFICATE", "/notes.txt"),
            ],
            "OTEL_EXPORTER_OTLP_HEADERS: entry 2 is not `key=value` (write k1=v1,k2=v2, percent-encoding `,` `=` and non-ASCII; values are not shown)\n\
             OTEL_EXPORTER_OTLP_TIMEOUT: `10s` is not a timeout in milliseconds from 1 to 600000 (e.g. 10000)\n\
             OTEL_EXPORTER_OTLP_CERTIFICATE: cannot read /missing.pem: No such file\n\
             OTEL_EXPORTER_OTLP_CLIENT_CERTIFICATE: /notes.txt holds no PEM certificate (\"-----BEGIN CERTIFICATE-----\")",
            "",
        );
        // A table with no endpoint anywhere; TLS from the table on an http endpoint; a
        // certificate without its key.
        check(
            Some(&OtlpTable::default()),
            &[],
            "telemetry.otlp.endpoint: missing: set the collector's address, e.g. \"https://otlp.example.com:4318\" (or OTEL_EXPORTER_OTLP_ENDPOINT), or remove [telemetry.otlp]",
            "",
        );
        let table = OtlpTable {
            endpoint: Some(url("http://c:4318")),
            ca_pem: Some("pem".into()),
            client_certificate: Some(SecretString::from("pem")),
            ..OtlpTable::default()
        };
        check(
            Some(&table),
            &[],
            "telemetry.otlp.client_key: a client certificate needs its key: set client_key (or OTEL_EXPORTER_OTLP_CLIENT_KEY)\n\
             telemetry.otlp.endpoint: ca_file and client certificates need an https endpoint",
            "",
        );
    }

    #[test]
    fn service_name_and_resource_attributes() {
        let resource = |table: Option<&OtlpTable>, vars: &[(&str, &str)]| {
            let mut vars = vars.to_vec();
            vars.push((E, "http://c:4318"));
            let c = resolve(table, &env(&vars), &files).unwrap().unwrap();
            (c.service_name, c.resource_attributes)
        };
        let attrs = |pairs: &[(&str, &str)]| -> Vec<(String, String)> {
            pairs
                .iter()
                .map(|(k, v)| ((*k).to_owned(), (*v).to_owned()))
                .collect()
        };
        assert_eq!(resource(None, &[]), ("keycanary".to_owned(), vec![]));
        assert_eq!(
            resource(
                None,
                &[(
                    RESOURCE_VAR,
                    "service.name=from-attrs,deployment.environment=prod,team=id%20ops"
                )]
            ),
            (
                "from-attrs".to_owned(),
                attrs(&[("deployment.environment", "prod"), ("team", "id ops")])
            )
        );
        assert_eq!(
            resource(
                None,
                &[
                    (RESOURCE_VAR, "service.name=from-attrs"),
                    (SERVICE_NAME_VAR, "from-var")
                ]
            ),
            ("from-var".to_owned(), vec![])
        );
        let table = OtlpTable {
            service_name: Some("from-table".into()),
            ..OtlpTable::default()
        };
        assert_eq!(
            resource(Some(&table), &[(SERVICE_NAME_VAR, "from-var")]).0,
            "from-table"
        );
    }

    #[test]
    fn key_value_lists() {
        assert_eq!(key_values(""), Ok(vec![]));
        assert_eq!(
            key_values("a=1, b = x%3Dy ,,c="),
            Ok(vec![
                ("a".into(), "1".into()),
                ("b".into(), "x=y".into()),
                ("c".into(), String::new())
            ])
        );
        assert_eq!(key_values("a=1,b"), Err(1));
        assert_eq!(key_values("=1"), Err(0));
        assert_eq!(key_values("a=%c3%28"), Err(0));
        assert_eq!(variables().len(), 2 + 7 * 3);
    }
}
