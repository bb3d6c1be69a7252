//! What serde reads from `probes.toml`: every `Raw*` struct, every key optional (lists default to empty), so that
//! a missing key becomes a problem with its TOML path in validation rather than a serde
//! error that stops at the first one.
//!
//! Unknown keys are not refused here either: `serde_ignored` collects them while parsing
//! (see `validate`). Secret references stay raw `toml::Value`s until `secrets` resolves
//! them. No defaults, no checks, no validated types: those are `validate`'s.

use serde::Deserialize;
use std::collections::BTreeMap;

#[derive(Debug, Default, Deserialize)]
pub(super) struct RawConfig {
    pub(super) interval: Option<String>,
    pub(super) timeout: Option<String>,
    pub(super) location: Option<String>,
    pub(super) allowed_algs: Option<Vec<String>>,
    pub(super) max_clock_skew: Option<String>,
    pub(super) rotation_lead_time: Option<String>,
    pub(super) max_body_bytes: Option<u64>,
    pub(super) max_redirects: Option<usize>,
    pub(super) tls_expiry_warning: Option<String>,
    pub(super) gate_margin: Option<String>,
    pub(super) state_dir: Option<String>,
    pub(super) retention: Option<String>,
    pub(super) max_concurrency: Option<usize>,
    pub(super) shard: Option<String>,
    pub(super) client_profiles: Option<Vec<String>>,
    pub(super) lab: Option<RawLab>,
    pub(super) api: Option<RawApi>,
    pub(super) telemetry: Option<RawTelemetry>,
    #[serde(default)]
    pub(super) profile: Vec<RawProfile>,
    #[serde(default)]
    pub(super) tenant: Vec<RawTenant>,
    /// `[[tenant_template]]`: a tenant whose strings hold placeholders (`name` is the
    /// template's); see `config::template`.
    #[serde(default)]
    pub(super) tenant_template: Vec<RawTenant>,
    pub(super) inventory: Option<RawInventory>,
    pub(super) alerting: Option<RawAlerting>,
    pub(super) gate: Option<super::gate::RawGate>,
}

/// `[inventory]`: where tenant entries come from (see `config::inventory`).
#[derive(Debug, Deserialize)]
pub(super) struct RawInventory {
    pub(super) file: Option<String>,
    pub(super) url: Option<String>,
    pub(super) bearer: Option<toml::Value>,
    pub(super) refresh: Option<String>,
    pub(super) max_bytes: Option<u64>,
}

#[derive(Debug, Deserialize)]
pub(super) struct RawLab {
    pub(super) listen: Option<String>,
}

#[derive(Debug, Deserialize)]
pub(super) struct RawApi {
    pub(super) listen: Option<String>,
    pub(super) bearer_token: Option<toml::Value>,
    pub(super) allowed_hosts: Option<Vec<String>>,
    pub(super) max_silence: Option<String>,
}

#[derive(Debug, Deserialize)]
pub(super) struct RawTelemetry {
    pub(super) otlp: Option<RawOtlp>,
    #[serde(default)]
    pub(super) per_view_histograms: bool,
}

#[derive(Debug, Deserialize)]
pub(super) struct RawOtlp {
    pub(super) endpoint: Option<String>,
    pub(super) traces_endpoint: Option<String>,
    pub(super) metrics_endpoint: Option<String>,
    pub(super) protocol: Option<String>,
    pub(super) timeout: Option<String>,
    pub(super) ca_file: Option<String>,
    pub(super) client_certificate: Option<toml::Value>,
    pub(super) client_key: Option<toml::Value>,
    #[serde(default)]
    pub(super) headers: BTreeMap<String, toml::Value>,
    pub(super) service_name: Option<String>,
}

#[derive(Debug, Deserialize)]
pub(super) struct RawProfile {
    pub(super) name: Option<String>,
    pub(super) ttl: Option<String>,
    pub(super) refetch_on_unknown_kid: Option<bool>,
    pub(super) cooldown: Option<String>,
    pub(super) honours_headers: Option<bool>,
    pub(super) on_fetch_failure: Option<String>,
}

#[derive(Debug, Clone, Deserialize)]
pub(super) struct RawTenant {
    pub(super) name: Option<String>,
    pub(super) client_profiles: Option<Vec<String>>,
    pub(super) max_token_lifetime: Option<String>,
    #[serde(default)]
    pub(super) domain: Vec<RawDomain>,
}

#[derive(Debug, Clone, Deserialize)]
pub(super) struct RawDomain {
    pub(super) name: Option<String>,
    pub(super) issuer: Option<String>,
    pub(super) discovery: Option<bool>,
    pub(super) group: Option<String>,
    pub(super) login: Option<RawLogin>,
    #[serde(default)]
    pub(super) jwks: Vec<RawJwks>,
    pub(super) origin: Option<RawOrigin>,
}

#[derive(Debug, Clone, Deserialize)]
pub(super) struct RawLogin {
    pub(super) grant: Option<String>,
    pub(super) token_url: Option<String>,
    pub(super) token_endpoint_origin: Option<String>,
    pub(super) client_id: Option<String>,
    pub(super) client_secret: Option<toml::Value>,
    pub(super) auth: Option<String>,
    pub(super) resource: Option<String>,
    pub(super) audience: Option<String>,
    pub(super) scope: Option<String>,
    pub(super) username: Option<String>,
    pub(super) password: Option<toml::Value>,
    pub(super) refresh_token: Option<toml::Value>,
    // auth = "private_key_jwt"
    pub(super) client_key: Option<toml::Value>,
    pub(super) client_key_id: Option<String>,
    pub(super) client_key_alg: Option<String>,
    // grant = "authorization_code"
    pub(super) redirect_uri: Option<String>,
    pub(super) authorization_url: Option<String>,
    pub(super) driver: Option<String>,
    #[serde(default)]
    pub(super) page_origins: Vec<String>,
    pub(super) username_input: Option<String>,
    pub(super) password_input: Option<String>,
    pub(super) submit_button: Option<String>,
    pub(super) form_action: Option<String>,
    // driver = "browser"
    pub(super) username_selector: Option<String>,
    pub(super) password_selector: Option<String>,
    pub(super) submit_selector: Option<String>,
    pub(super) consent_selector: Option<String>,
}

#[derive(Debug, Clone, Deserialize)]
pub(super) struct RawJwks {
    pub(super) name: Option<String>,
    pub(super) url: Option<String>,
    #[serde(default)]
    pub(super) edges: Vec<String>,
}

#[derive(Debug, Clone, Deserialize)]
pub(super) struct RawOrigin {
    pub(super) url: Option<String>,
    pub(super) bust_param: Option<String>,
}

// `[alerting]`: policy, channels, routes, silences, maintenance windows.

#[derive(Debug, Default, Deserialize)]
pub(super) struct RawAlerting {
    pub(super) failure_threshold: Option<u32>,
    pub(super) success_threshold: Option<u32>,
    #[serde(rename = "for")]
    pub(super) for_: Option<String>,
    pub(super) repeat_interval: Option<String>,
    pub(super) send_on_resolved: Option<bool>,
    pub(super) group_by: Option<String>,
    pub(super) status_page_url: Option<String>,
    #[serde(default)]
    pub(super) channel: Vec<RawChannel>,
    #[serde(default)]
    pub(super) route: Vec<RawRoute>,
    #[serde(default)]
    pub(super) silence: Vec<RawSilence>,
    #[serde(default)]
    pub(super) maintenance: Vec<RawMaintenance>,
}

#[derive(Debug, Deserialize)]
pub(super) struct RawChannel {
    pub(super) name: Option<String>,
    #[serde(rename = "type")]
    pub(super) kind: Option<String>,
    pub(super) smtp_host: Option<String>,
    pub(super) smtp_port: Option<u16>,
    pub(super) tls: Option<String>,
    pub(super) ca_file: Option<String>,
    pub(super) username: Option<String>,
    pub(super) password: Option<toml::Value>,
    pub(super) from: Option<String>,
    pub(super) to: Option<Vec<String>>,
    pub(super) routing_key: Option<toml::Value>,
    pub(super) url: Option<toml::Value>,
    pub(super) hmac_key: Option<toml::Value>,
}

#[derive(Debug, Deserialize)]
pub(super) struct RawRoute {
    pub(super) channels: Option<Vec<String>>,
    pub(super) min_severity: Option<String>,
    pub(super) tenants: Option<Vec<String>>,
    pub(super) codes: Option<Vec<String>>,
}

#[derive(Debug, Deserialize)]
pub(super) struct RawSilence {
    pub(super) tenant: Option<String>,
    pub(super) code: Option<String>,
    pub(super) severity: Option<String>,
    pub(super) subject: Option<String>,
    pub(super) starts: Option<String>,
    pub(super) ends: Option<String>,
    pub(super) created_by: Option<String>,
    pub(super) comment: Option<String>,
}

#[derive(Debug, Deserialize)]
pub(super) struct RawMaintenance {
    pub(super) tenants: Option<Vec<String>>,
    pub(super) starts: Option<String>,
    pub(super) ends: Option<String>,
    pub(super) comment: Option<String>,
}
