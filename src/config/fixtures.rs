//! Test fixtures: [`TomlFixture`], one builder for the small tenant configs that unit
//! tests across the crate write (a tenant, its domains, each with a `cdn` JWKS path and
//! optionally a client-credentials login whose secret comes from the environment).
//!
//! It writes `probes.toml` text, not a `Config`, so that tests can still bend the text
//! (add a key, replace a line) before parsing it. It covers the common shape only: a test
//! about an unusual field writes that field itself. Integration tests (`tests/`) cannot
//! see this module.

use std::fmt;

/// A `probes.toml` under construction; `to_string()` gives the text.
#[derive(Debug, Clone)]
pub struct TomlFixture {
    settings: Vec<String>,
    tenants: Vec<TenantFixture>,
}

#[derive(Debug, Clone)]
struct TenantFixture {
    name: String,
    domains: Vec<DomainFixture>,
}

#[derive(Debug, Clone)]
struct DomainFixture {
    name: String,
    issuer: String,
    login: Option<LoginFixture>,
}

#[derive(Debug, Clone)]
struct LoginFixture {
    client_id: String,
    secret_env: String,
    resource: Option<String>,
}

impl TomlFixture {
    /// A file with one `[[tenant]]` named `name`; add its domains with [`Self::domain`].
    pub fn tenant(name: &str) -> TomlFixture {
        TomlFixture {
            settings: Vec::new(),
            tenants: Vec::new(),
        }
        .and_tenant(name)
    }

    /// Another `[[tenant]]`; the domains added next belong to it.
    pub fn and_tenant(mut self, name: &str) -> TomlFixture {
        self.tenants.push(TenantFixture {
            name: name.to_owned(),
            domains: Vec::new(),
        });
        self
    }

    /// A top-level line written before every table, e.g. `max_clock_skew = "60s"`.
    pub fn setting(mut self, line: &str) -> TomlFixture {
        self.settings.push(line.to_owned());
        self
    }

    /// A `[[tenant.domain]]` of the last tenant, with one JWKS path `cdn` (no `url`:
    /// discovery's `jwks_uri`).
    pub fn domain(mut self, name: &str, issuer: &str) -> TomlFixture {
        self.last_tenant().domains.push(DomainFixture {
            name: name.to_owned(),
            issuer: issuer.to_owned(),
            login: None,
        });
        self
    }

    /// A client-credentials login for the last domain: `client_id`, and the client secret
    /// from `{ env = secret_env }`.
    pub fn login(mut self, client_id: &str, secret_env: &str) -> TomlFixture {
        self.last_domain().login = Some(LoginFixture {
            client_id: client_id.to_owned(),
            secret_env: secret_env.to_owned(),
            resource: None,
        });
        self
    }

    /// `resource` of the last domain's login.
    pub fn resource(mut self, resource: &str) -> TomlFixture {
        let login = self.last_domain().login.as_mut();
        login.expect("resource() follows login()").resource = Some(resource.to_owned());
        self
    }

    fn last_tenant(&mut self) -> &mut TenantFixture {
        self.tenants
            .last_mut()
            .expect("a fixture starts with a tenant")
    }

    fn last_domain(&mut self) -> &mut DomainFixture {
        let tenant = self.last_tenant();
        tenant.domains.last_mut().expect("login() follows domain()")
    }
}

impl fmt::Display for TomlFixture {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        for line in &self.settings {
            writeln!(f, "{line}")?;
        }
        for t in &self.tenants {
            write!(f, "\n[[tenant]]\nname = \"{}\"\n", t.name)?;
            for d in &t.domains {
                write!(
                    f,
                    "\n[[tenant.domain]]\nname = \"{}\"\nissuer = \"{}\"\n",
                    d.name, d.issuer
                )?;
                if let Some(l) = &d.login {
                    write!(
                        f,
                        "[tenant.domain.login]\nclient_id = \"{}\"\nclient_secret = {{ env = \"{}\" }}\n",
                        l.client_id, l.secret_env
                    )?;
                    if let Some(r) = &l.resource {
                        writeln!(f, "resource = \"{r}\"")?;
                    }
                }
                f.write_str("[[tenant.domain.jwks]]\nname = \"cdn\"\n")?;
            }
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::TomlFixture;

    #[test]
    fn writes_the_common_tenant_shape() {
        let text = TomlFixture::tenant("acme")
            .setting("max_clock_skew = \"60s\"")
            .domain("app", "https://idp.example.app/acme")
            .login("keycanary", "SECRET")
            .resource("https://api.example")
            .and_tenant("globex")
            .domain("app", "https://idp.example.app/globex")
            .to_string();
        assert_eq!(
            text,
            r#"max_clock_skew = "60s"

[[tenant]]
name = "acme"

[[tenant.domain]]
name = "app"
issuer = "https://idp.example.app/acme"
[tenant.domain.login]
client_id = "keycanary"
client_secret = { env = "SECRET" }
resource = "https://api.example"
[[tenant.domain.jwks]]
name = "cdn"

[[tenant]]
name = "globex"

[[tenant.domain]]
name = "app"
issuer = "https://idp.example.app/globex"
[[tenant.domain.jwks]]
name = "cdn"
"#
        );
    }
}
