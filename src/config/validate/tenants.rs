//! `[[tenant]]` with its domains, logins and JWKS paths, and `[[profile]]` (user-defined
//! client profiles, added to the built-ins), validated.
//!
//! Secrets of a login are resolved through `Validator::secret` (the injected reader);
//! nothing here fetches an issuer or checks that a URL answers.

use super::Validator;
use crate::config::profiles::{self, ClientProfile, OnFetchFailure};
use crate::config::raw::{RawDomain, RawJwks, RawLogin, RawOrigin, RawProfile, RawTenant};
use crate::config::{
    AuthCode, BrowserRules, ClientAuth, ClientKey, Domain, Driver, FormRules, Grant, JwksPath,
    Login, ORIGIN_PATH, Origin, Tenant,
};
use secrecy::SecretString;
use std::collections::BTreeSet;
use std::net::IpAddr;
use std::time::Duration;
use url::Url;

impl Validator<'_> {
    pub(super) fn profiles(&mut self, raw: &[RawProfile]) -> Vec<ClientProfile> {
        let mut all = profiles::builtin();
        for (i, p) in raw.iter().enumerate() {
            let path = format!("profile[{i}]");
            let name = self.label(&format!("{path}.name"), p.name.as_deref(), "[[profile]]");
            if all.iter().any(|q| q.name == name) {
                self.problem(
                    &format!("{path}.name"),
                    format!("a profile named `{name}` already exists: choose another name"),
                );
            }
            let on_fetch_failure = match p.on_fetch_failure.as_deref() {
                None | Some("error") => OnFetchFailure::Error,
                Some("keep_last_good") => OnFetchFailure::KeepLastGood,
                Some("clear_cache") => OnFetchFailure::ClearCache,
                Some(other) => {
                    self.problem(
                        &format!("{path}.on_fetch_failure"),
                        format!("`{other}` is not one of error, keep_last_good, clear_cache"),
                    );
                    OnFetchFailure::Error
                }
            };
            let Some(refetch) = p.refetch_on_unknown_kid else {
                self.problem(
                    &format!("{path}.refetch_on_unknown_kid"),
                    "missing: say true or false",
                );
                continue;
            };
            let profile = ClientProfile {
                name,
                ttl: self.optional_duration(&format!("{path}.ttl"), p.ttl.as_deref()),
                refetch_on_unknown_kid: refetch,
                cooldown: self
                    .optional_duration(&format!("{path}.cooldown"), p.cooldown.as_deref()),
                honours_headers: p.honours_headers.unwrap_or(false),
                on_fetch_failure,
            };
            all.push(profile);
        }
        all
    }

    pub(super) fn profile_names(
        &mut self,
        path: &str,
        names: &[String],
        known: &BTreeSet<String>,
    ) -> Vec<String> {
        for (i, n) in names.iter().enumerate() {
            if !known.contains(n) {
                self.problem(&format!("{path}[{i}]"), format!("unknown client profile `{n}`: use a built-in one (see README) or define it in [[profile]]"));
            }
        }
        names.to_vec()
    }

    pub(in crate::config) fn tenant(
        &mut self,
        path: &str,
        t: &RawTenant,
        known: &BTreeSet<String>,
        default_profiles: &[String],
    ) -> Tenant {
        let name = self.label(&format!("{path}.name"), t.name.as_deref(), "[[tenant]]");
        let client_profiles = match &t.client_profiles {
            Some(names) => self.profile_names(&format!("{path}.client_profiles"), names, known),
            None => default_profiles.to_vec(),
        };
        let max_token_lifetime = self.duration(
            &format!("{path}.max_token_lifetime"),
            t.max_token_lifetime.as_deref(),
            Duration::from_secs(3600),
        );
        if t.domain.is_empty() {
            self.problem(
                &format!("{path}.domain"),
                "no domains: add at least one [[tenant.domain]] with an issuer",
            );
        }
        let mut seen = BTreeSet::new();
        let domains = t
            .domain
            .iter()
            .enumerate()
            .map(|(i, d)| {
                let dpath = format!("{path}.domain[{i}]");
                let domain = self.domain(&dpath, d, &name);
                if !domain.name.is_empty() && !seen.insert(domain.name.clone()) {
                    self.problem(
                        &format!("{dpath}.name"),
                        format!("domain `{}` is defined twice in this tenant", domain.name),
                    );
                }
                domain
            })
            .collect();
        Tenant {
            name,
            client_profiles,
            max_token_lifetime,
            domains,
        }
    }

    pub(super) fn domain(&mut self, path: &str, d: &RawDomain, tenant: &str) -> Domain {
        let name = self.label(
            &format!("{path}.name"),
            d.name.as_deref(),
            "[[tenant.domain]]",
        );
        let issuer = match d.issuer.as_deref() {
            Some(s) => self.url(&format!("{path}.issuer"), s),
            None => {
                self.problem(
                    &format!("{path}.issuer"),
                    "missing: set the issuer URL this domain serves",
                );
                None
            }
        };
        let issuer =
            issuer.unwrap_or_else(|| Url::parse("http://invalid.invalid/").expect("static URL"));
        let discovery = d.discovery.unwrap_or(true);
        let group = match d.group.as_deref() {
            Some(g) => self.label(&format!("{path}.group"), Some(g), "group"),
            None => tenant.to_owned(),
        };
        let login = d
            .login
            .as_ref()
            .map(|l| self.login(&format!("{path}.login"), l, discovery));
        if d.jwks.is_empty() {
            self.problem(&format!("{path}.jwks"), "no JWKS paths: add [[tenant.domain.jwks]] with a name (and a url, unless discovery's jwks_uri is meant)");
        }
        let mut seen = BTreeSet::new();
        let jwks: Vec<JwksPath> = d
            .jwks
            .iter()
            .enumerate()
            .map(|(i, j)| {
                let jpath = format!("{path}.jwks[{i}]");
                let p = self.jwks(&jpath, j, discovery);
                if p.name == ORIGIN_PATH {
                    self.problem(&format!("{jpath}.name"), "`origin` is reserved for the origin view: configure it in [tenant.domain.origin]");
                } else if !p.name.is_empty() && !seen.insert(p.name.clone()) {
                    self.problem(&format!("{jpath}.name"), format!("JWKS path `{}` is defined twice in this domain", p.name));
                }
                p
            })
            .collect();
        let origin = match &d.origin {
            Some(RawOrigin {
                url: Some(u),
                bust_param: None,
            }) => self.url(&format!("{path}.origin.url"), u).map(Origin::Url),
            Some(RawOrigin {
                url: None,
                bust_param: Some(p),
            }) if !p.is_empty() => Some(Origin::Bust { param: p.clone() }),
            None
            | Some(RawOrigin {
                url: None,
                bust_param: None,
            }) => None,
            Some(_) => {
                self.problem(&format!("{path}.origin"), "give either `url` (an origin URL no cache answers) or a non-empty `bust_param`, not both");
                None
            }
        };
        let origin = origin.unwrap_or_else(|| Origin::Bust {
            param: "keycanary_nocache".to_owned(),
        });
        Domain {
            name,
            issuer,
            discovery,
            group,
            login,
            jwks,
            origin,
        }
    }

    pub(super) fn jwks(&mut self, path: &str, j: &RawJwks, discovery: bool) -> JwksPath {
        let name = self.label(
            &format!("{path}.name"),
            j.name.as_deref(),
            "[[tenant.domain.jwks]]",
        );
        let url = match j.url.as_deref() {
            Some(s) => self.url(&format!("{path}.url"), s),
            None => {
                if !discovery {
                    self.problem(
                        &format!("{path}.url"),
                        "missing: with discovery = false every JWKS path needs a url",
                    );
                }
                None
            }
        };
        let mut edges = Vec::new();
        for (i, e) in j.edges.iter().enumerate() {
            match e.parse::<IpAddr>() {
                Ok(ip) => edges.push(ip),
                Err(_) => self.problem(&format!("{path}.edges[{i}]"), format!("`{e}` is not an IP address: edges are addresses like \"192.0.2.10\" (the port comes from the url)")),
            }
        }
        if !edges.is_empty()
            && let Some(u) = &url
            && !matches!(u.host(), Some(url::Host::Domain(_)))
        {
            self.problem(
                &format!("{path}.edges"),
                "pinning edges needs a url with a host name, not an address",
            );
        }
        JwksPath { name, url, edges }
    }

    pub(super) fn login(&mut self, path: &str, l: &RawLogin, discovery: bool) -> Login {
        let secret = |v: &mut Self, key: &str, raw: &Option<toml::Value>| {
            raw.as_ref()
                .and_then(|r| v.secret(&format!("{path}.{key}"), r))
        };
        let client_secret = secret(self, "client_secret", &l.client_secret);
        let grant = match l.grant.as_deref() {
            None | Some("client_credentials") => {
                if l.client_secret.is_none() && l.auth.as_deref() != Some("private_key_jwt") {
                    self.problem(&format!("{path}.client_secret"), "missing: client_credentials needs a client_secret ({ env = \"NAME\" } or { file = \"path\" })");
                }
                Grant::ClientCredentials
            }
            Some("password") => {
                let username = l.username.clone().unwrap_or_default();
                if username.is_empty() {
                    self.problem(
                        &format!("{path}.username"),
                        "missing: the password grant needs a username",
                    );
                }
                let password = secret(self, "password", &l.password);
                if l.password.is_none() {
                    self.problem(&format!("{path}.password"), "missing: the password grant needs a password ({ env = \"NAME\" } or { file = \"path\" })");
                }
                Grant::Password {
                    username,
                    password: password.unwrap_or_else(|| SecretString::from(String::new())),
                }
            }
            Some("refresh_token") => {
                let token = secret(self, "refresh_token", &l.refresh_token);
                if l.refresh_token.is_none() {
                    self.problem(&format!("{path}.refresh_token"), "missing: the refresh_token grant needs a refresh_token ({ env = \"NAME\" } or { file = \"path\" })");
                }
                Grant::RefreshToken {
                    refresh_token: token.unwrap_or_else(|| SecretString::from(String::new())),
                }
            }
            Some("authorization_code") => {
                Grant::AuthorizationCode(Box::new(self.auth_code(path, l, discovery)))
            }
            Some(other) => {
                self.problem(
                    &format!("{path}.grant"),
                    format!("`{other}` is not one of client_credentials, password, refresh_token, authorization_code"),
                );
                Grant::ClientCredentials
            }
        };
        if !matches!(grant, Grant::AuthorizationCode(_)) {
            for (key, set) in [
                ("redirect_uri", l.redirect_uri.is_some()),
                ("authorization_url", l.authorization_url.is_some()),
                ("driver", l.driver.is_some()),
                ("page_origins", !l.page_origins.is_empty()),
                ("username_input", l.username_input.is_some()),
                ("password_input", l.password_input.is_some()),
                ("submit_button", l.submit_button.is_some()),
                ("form_action", l.form_action.is_some()),
                ("username_selector", l.username_selector.is_some()),
                ("password_selector", l.password_selector.is_some()),
                ("submit_selector", l.submit_selector.is_some()),
                ("consent_selector", l.consent_selector.is_some()),
            ] {
                if set {
                    self.problem(
                        &format!("{path}.{key}"),
                        "only used with grant = \"authorization_code\": remove it, or set that grant",
                    );
                }
            }
        }
        let token_url = match l.token_url.as_deref() {
            Some(s) => self.url(&format!("{path}.token_url"), s),
            None => {
                if !discovery {
                    self.problem(
                        &format!("{path}.token_url"),
                        "missing: with discovery = false the login needs a token_url",
                    );
                }
                None
            }
        };
        let token_endpoint_origin = l
            .token_endpoint_origin
            .as_deref()
            .and_then(|s| self.origin(&format!("{path}.token_endpoint_origin"), s));
        if token_endpoint_origin.is_some() && token_url.is_some() {
            self.problem(
                &format!("{path}.token_endpoint_origin"),
                "only used with discovery's token_endpoint: remove it, or remove token_url",
            );
        }
        let client_id = l.client_id.clone().unwrap_or_default();
        if client_id.is_empty() {
            self.problem(
                &format!("{path}.client_id"),
                "missing: set the client_id keycanary logs in with",
            );
        }
        let auth = match l.auth.as_deref() {
            None | Some("client_secret_basic") => ClientAuth::ClientSecretBasic,
            Some("client_secret_post") => ClientAuth::ClientSecretPost,
            Some("private_key_jwt") => ClientAuth::PrivateKeyJwt,
            Some(other) => {
                self.problem(
                    &format!("{path}.auth"),
                    format!("`{other}` is not one of client_secret_basic, client_secret_post, private_key_jwt"),
                );
                ClientAuth::ClientSecretBasic
            }
        };
        let client_key = self.client_key(path, l, auth);
        Login {
            grant,
            token_url,
            token_endpoint_origin,
            client_id,
            client_secret,
            auth,
            client_key,
            resource: l.resource.clone(),
            audience: l.audience.clone(),
            scope: l.scope.clone(),
        }
    }

    /// `grant = "authorization_code"`: the user, the way back (`redirect_uri`), where the
    /// sign-in starts and how its pages are driven.
    fn auth_code(&mut self, path: &str, l: &RawLogin, discovery: bool) -> AuthCode {
        let username = l.username.clone().unwrap_or_default();
        if username.is_empty() {
            self.problem(
                &format!("{path}.username"),
                "missing: authorization_code signs in as a user: set username",
            );
        }
        let password = l
            .password
            .as_ref()
            .and_then(|r| self.secret(&format!("{path}.password"), r));
        if l.password.is_none() {
            self.problem(&format!("{path}.password"), "missing: authorization_code signs in as a user: set password ({ env = \"NAME\" } or { file = \"path\" })");
        }
        let redirect_path = format!("{path}.redirect_uri");
        let redirect_uri = match l.redirect_uri.as_deref() {
            Some(s) => self.url(&redirect_path, s),
            None => {
                self.problem(&redirect_path, "missing: authorization_code needs the redirect_uri registered for the client (a loopback http URL nobody serves, or an https URL; keycanary reads the code from the redirect and never fetches it)");
                None
            }
        };
        if let Some(u) = &redirect_uri
            && u.scheme() != "https"
            && !crate::model::wire::is_loopback(u)
        {
            self.problem(
                &redirect_path,
                "plain http is only for a loopback address (127.0.0.1, [::1], localhost): use https or a loopback URL",
            );
        }
        let authorization_url = match l.authorization_url.as_deref() {
            Some(s) => self.url(&format!("{path}.authorization_url"), s),
            None => {
                if !discovery {
                    self.problem(
                        &format!("{path}.authorization_url"),
                        "missing: with discovery = false authorization_code needs an authorization_url",
                    );
                }
                None
            }
        };
        let driver = match l.driver.as_deref() {
            None | Some("form") => Driver::Form,
            Some("browser") => Driver::Browser,
            Some(other) => {
                self.problem(
                    &format!("{path}.driver"),
                    format!("`{other}` is not one of form, browser"),
                );
                Driver::Form
            }
        };
        if let Some(scope) = &l.scope
            && !scope.split_ascii_whitespace().any(|s| s == "openid")
        {
            self.problem(
                &format!("{path}.scope"),
                "authorization_code needs `openid` in scope (for the ID token it checks): add it",
            );
        }
        let page_origins = l
            .page_origins
            .iter()
            .enumerate()
            .filter_map(|(i, o)| self.origin(&format!("{path}.page_origins[{i}]"), o))
            .collect();
        let name = |v: &mut Self, key: &str, raw: &Option<String>| match raw.as_deref() {
            Some("") => {
                v.problem(
                    &format!("{path}.{key}"),
                    "empty: remove it for the default, or name what to use",
                );
                None
            }
            other => other.map(str::to_owned),
        };
        let form = FormRules {
            username_input: name(self, "username_input", &l.username_input),
            password_input: name(self, "password_input", &l.password_input),
            submit_button: name(self, "submit_button", &l.submit_button),
            form_action: name(self, "form_action", &l.form_action),
        };
        let browser = self.browser_rules(path, l, driver);
        AuthCode {
            username,
            password: password.unwrap_or_else(|| SecretString::from(String::new())),
            redirect_uri: redirect_uri
                .unwrap_or_else(|| Url::parse("http://127.0.0.1/").expect("a URL")),
            authorization_url,
            driver,
            page_origins,
            form,
            browser,
        }
    }

    /// The selectors of `driver = "browser"`; each driver's keys set with the other driver
    /// are named, not silently ignored. A selector's CSS is read by Chromium: one it cannot
    /// parse fails the step that uses it, saying so.
    fn browser_rules(&mut self, path: &str, l: &RawLogin, driver: Driver) -> BrowserRules {
        let browsers = [
            ("username_selector", l.username_selector.is_some()),
            ("password_selector", l.password_selector.is_some()),
            ("submit_selector", l.submit_selector.is_some()),
            ("consent_selector", l.consent_selector.is_some()),
        ];
        let forms = [
            ("username_input", l.username_input.is_some()),
            ("password_input", l.password_input.is_some()),
            ("submit_button", l.submit_button.is_some()),
            ("form_action", l.form_action.is_some()),
        ];
        let (unused, other) = match driver {
            Driver::Form => (browsers, "browser"),
            Driver::Browser => (forms, "form"),
        };
        for (key, set) in unused {
            if set {
                self.problem(
                    &format!("{path}.{key}"),
                    format!("only used with driver = \"{other}\": remove it, or set that driver"),
                );
            }
        }
        let mut selector = |key: &str, raw: &Option<String>, default: &str| match raw.as_deref() {
            None => default.to_owned(),
            Some(s) if s.trim().is_empty() || s.chars().any(char::is_control) || s.len() > 512 => {
                self.problem(
                    &format!("{path}.{key}"),
                    "not a CSS selector: give one (at most 512 characters, one line), or remove it for the default",
                );
                default.to_owned()
            }
            Some(s) => s.to_owned(),
        };
        BrowserRules {
            username: selector(
                "username_selector",
                &l.username_selector,
                BrowserRules::USERNAME,
            ),
            password: selector(
                "password_selector",
                &l.password_selector,
                BrowserRules::PASSWORD,
            ),
            submit: selector("submit_selector", &l.submit_selector, BrowserRules::SUBMIT),
            consent: l
                .consent_selector
                .as_ref()
                .map(|c| selector("consent_selector", &Some(c.clone()), "")),
        }
    }

    /// `client_key`, `client_key_id` and `client_key_alg` of `auth = "private_key_jwt"`;
    /// the key is parsed here so that a wrong one is a config problem, not a failed login.
    fn client_key(&mut self, path: &str, l: &RawLogin, auth: ClientAuth) -> Option<ClientKey> {
        let set = [
            ("client_key", l.client_key.is_some()),
            ("client_key_id", l.client_key_id.is_some()),
            ("client_key_alg", l.client_key_alg.is_some()),
        ];
        if auth != ClientAuth::PrivateKeyJwt {
            for (key, _) in set.iter().filter(|(_, set)| *set) {
                self.problem(
                    &format!("{path}.{key}"),
                    "only used with auth = \"private_key_jwt\": remove it, or set that auth",
                );
            }
            return None;
        }
        if l.client_secret.is_some() {
            self.problem(
                &format!("{path}.client_secret"),
                "not used with auth = \"private_key_jwt\" (the client signs with client_key): remove it",
            );
        }
        let alg = l
            .client_key_alg
            .clone()
            .unwrap_or_else(|| "RS256".to_owned());
        type Parser = fn(&[u8]) -> jsonwebtoken::errors::Result<jsonwebtoken::EncodingKey>;
        let parse: Option<Parser> = match alg.as_str() {
            "RS256" => Some(jsonwebtoken::EncodingKey::from_rsa_pem),
            "ES256" => Some(jsonwebtoken::EncodingKey::from_ec_pem),
            "EdDSA" => Some(jsonwebtoken::EncodingKey::from_ed_pem),
            other => {
                self.problem(
                    &format!("{path}.client_key_alg"),
                    format!("`{other}` is not one of RS256, ES256, EdDSA"),
                );
                None
            }
        };
        let kid = l.client_key_id.clone().unwrap_or_default();
        if kid.is_empty() {
            self.problem(
                &format!("{path}.client_key_id"),
                "missing: the kid the client's public key is registered under (it goes in the assertion's header)",
            );
        }
        let Some(raw) = &l.client_key else {
            self.problem(&format!("{path}.client_key"), "missing: private_key_jwt needs the client's private key, PEM ({ file = \"path\" } or { env = \"NAME\" })");
            return None;
        };
        let pem = self.secret(&format!("{path}.client_key"), raw)?;
        if let Some(parse) = parse {
            use secrecy::ExposeSecret;
            if parse(pem.expose_secret().as_bytes()).is_err() {
                self.problem(
                    &format!("{path}.client_key"),
                    format!("not a PEM private key for {alg} (PKCS#8, or PKCS#1 for RSA)"),
                );
            }
        }
        Some(ClientKey { pem, kid, alg })
    }
}
