//! Findings: the catalogue of codes (their strings are the public interface), what a
//! finding is about ([`Subject`]) and the finding itself, with its order.
//!
//! Plain data, like the rest of `model`; the rules that make findings are in `detect`.

use super::{Severity, ViewId, view_label};
use serde::{Deserialize, Serialize};
use std::fmt;

macro_rules! codes {
    ($($variant:ident => $name:literal, $sev:ident;)*) => {
        /// The finding catalogue. The string forms are a public interface: never rename one.
        #[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
        pub enum Code {
            $(#[serde(rename = $name)] $variant,)*
        }

        impl Code {
            pub const ALL: &'static [Code] = &[$(Code::$variant,)*];
            pub fn as_str(self) -> &'static str {
                match self { $(Code::$variant => $name,)* }
            }
            pub fn severity(self) -> Severity {
                match self { $(Code::$variant => Severity::$sev,)* }
            }
            pub fn parse(s: &str) -> Option<Code> {
                match s { $($name => Some(Code::$variant),)* _ => None }
            }
        }
    };
}

codes! {
    LoginFailed => "login_failed", Critical;
    DiscoveryFailed => "discovery_failed", High;
    JwksFetchFailed => "jwks_fetch_failed", Critical;
    KidMissing => "kid_missing", Critical;
    SignatureInvalid => "signature_invalid", Critical;
    ClaimsInvalid => "claims_invalid", High;
    AlgNotAllowed => "alg_not_allowed", Critical;
    StaleEdge => "stale_edge", High;
    CacheTtlExceeded => "cache_ttl_exceeded", Medium;
    CachePolicyDrift => "cache_policy_drift", High;
    JwksDrift => "jwks_drift", High;
    DiscoveryDrift => "discovery_drift", High;
    StalenessBudgetExceeded => "staleness_budget_exceeded", Medium;
    CrossTenantKey => "cross_tenant_key", Critical;
    KidReused => "kid_reused", Critical;
    KidAmbiguous => "kid_ambiguous", High;
    JwkUnparseable => "jwk_unparseable", High;
    WeakKey => "weak_key", Critical;
    SigningKeyInconsistent => "signing_key_inconsistent", Medium;
    KeyRemovedEarly => "key_removed_early", Critical;
    KeyActivatedEarly => "key_activated_early", High;
    ErrorCached => "error_cached", High;
    ValidatorInconsistent => "validator_inconsistent", Medium;
    TlsCertificate => "tls_certificate", Medium;
    X5cMismatch => "x5c_mismatch", Medium;
    ClockSkew => "clock_skew", Medium;
    ClientWouldFail => "client_would_fail", Critical;
    ProbeStale => "probe_stale", High;
}

impl Code {
    /// Whether an open finding with this code blocks every promotion (findings.md, "The
    /// gates", pre-rotation conditions 2 and 5: an edge that differs from its origin or
    /// serves a cached error, no fresh data); the gate and the notifications' gate line
    /// both read it.
    pub fn blocks_rotation(self) -> bool {
        matches!(self, Code::StaleEdge | Code::ErrorCached | Code::ProbeStale)
    }

    /// Whether an open finding with this code blocks promoting the kid it names (condition
    /// 3: the key itself ambiguous, weak or unparseable); about another key it is an
    /// advisory.
    pub fn blocks_promoting_its_kid(self) -> bool {
        matches!(
            self,
            Code::KidReused | Code::KidAmbiguous | Code::WeakKey | Code::JwkUnparseable
        )
    }
}

impl fmt::Display for Code {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.pad(self.as_str())
    }
}

/// What a finding is about. Fields that do not apply are `None` and omitted from JSON.
#[derive(Debug, Clone, Default, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
pub struct Subject {
    pub tenant: String,
    #[serde(skip_serializing_if = "Option::is_none", default)]
    pub domain: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none", default)]
    pub path: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none", default)]
    pub edge: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none", default)]
    pub kid: Option<String>,
}

impl Subject {
    /// Whether this subject is the view `id` of `tenant`'s `domain`.
    pub fn is_view(&self, tenant: &str, domain: &str, id: &ViewId) -> bool {
        self.tenant == tenant
            && self.domain.as_deref() == Some(domain)
            && self.path.as_deref() == Some(id.path.as_str())
            && self.edge == id.edge
    }

    /// The view label of a subject about a view (see [`view_label`]); `None` otherwise.
    pub fn view_label(&self) -> Option<String> {
        Some(view_label(self.path.as_deref()?, self.edge.as_deref()))
    }

    pub fn tenant(tenant: &str) -> Self {
        Subject {
            tenant: tenant.to_owned(),
            ..Default::default()
        }
    }
    pub fn domain(tenant: &str, domain: &str) -> Self {
        Subject {
            domain: Some(domain.to_owned()),
            ..Subject::tenant(tenant)
        }
    }
    pub fn view(tenant: &str, domain: &str, view: &ViewId) -> Self {
        Subject {
            path: Some(view.path.clone()),
            edge: view.edge.clone(),
            ..Subject::domain(tenant, domain)
        }
    }
    pub fn with_kid(mut self, kid: Option<&str>) -> Self {
        self.kid = kid.map(str::to_owned);
        self
    }
}

impl fmt::Display for Subject {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "tenant={}", self.tenant)?;
        if let Some(d) = &self.domain {
            write!(f, " domain={d}")?;
        }
        if let Some(p) = &self.path {
            write!(f, " path={p}")?;
        }
        if let Some(e) = &self.edge {
            write!(f, " edge={e}")?;
        }
        if let Some(k) = &self.kid {
            write!(f, " kid={k}")?;
        }
        Ok(())
    }
}

/// One problem keycanary reports.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Finding {
    pub code: Code,
    pub severity: Severity,
    pub subject: Subject,
    pub message: String,
}

/// The most severe of `findings`; `None` when there are none.
pub fn worst<'a>(findings: impl IntoIterator<Item = &'a Finding>) -> Option<Severity> {
    findings.into_iter().map(|f| f.severity).min()
}

impl Finding {
    /// The order findings are listed in everywhere: most severe first, then by code and
    /// subject.
    pub fn rank(&self) -> (Severity, Code, &Subject) {
        (self.severity, self.code, &self.subject)
    }

    pub fn new(code: Code, subject: Subject, message: impl Into<String>) -> Self {
        Finding {
            code,
            severity: code.severity(),
            subject,
            message: message.into(),
        }
    }
}
