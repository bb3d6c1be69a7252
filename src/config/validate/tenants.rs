//! `[[tenant]]` with its domains, logins and JWKS paths, and `[[profile]]` (user-defined
//! client profiles, added to the built-ins), validated.
//!
//! Secrets of a login are resolved through `Validator::secret` (the injected reader);
//! nothing here fetches an issuer or checks that a URL answers.

use super::Validator;
use crate::config::profiles::{self, ClientProfile, OnFetchFailure};
use crate::config::raw::{RawDomain, RawJwks, RawLogin, RawOrigin, RawProfile, RawTenant};
use crate::config::{ClientAuth, Domain, Grant, JwksPath, Login, ORIGIN_PATH, Origin, Tenant};
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
                if l.client_secret.is_none() {
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
            Some(other) => {
                self.problem(
                    &format!("{path}.grant"),
                    format!("`{other}` is not one of client_credentials, password, refresh_token"),
                );
                Grant::ClientCredentials
            }
        };
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
            Some(other) => {
                self.problem(
                    &format!("{path}.auth"),
                    format!("`{other}` is not one of client_secret_basic, client_secret_post"),
                );
                ClientAuth::ClientSecretBasic
            }
        };
        Login {
            grant,
            token_url,
            token_endpoint_origin,
            client_id,
            client_secret,
            auth,
            resource: l.resource.clone(),
            audience: l.audience.clone(),
            scope: l.scope.clone(),
        }
    }
}
