//! The rotation rehearsal: the seed incident and the preventive flow, end to end on real
//! components (README: "Rehearse a rotation"). Every scenario gets its own stage, all on
//! 127.0.0.1 with ephemeral ports:
//!
//! - oidc-provider served on two domains through nginx (tests/support/peers.rs), each
//!   domain cached or not as the scenario needs; key changes are made in place the way a
//!   rolling restart does;
//! - oauth2-mock-server for the password and refresh_token grants;
//! - aiosmtpd, Alertmanager with a webhook receiver behind it, a ticket webhook, and (for
//!   the incident) Prometheus with the shipped rules;
//! - the real `keycanary run` on peers/rehearsal/probes.toml.template, the same file
//!   `scripts/rehearse` renders.
//!
//! Times are counted in keycanary's rounds; every wait is bounded and says what it waited
//! for. A separate test binary, so it runs after the `it` suite and not beside it.

// Tests wait for real processes with real deadlines; the product reads time through
// `keycanary::clock` (clippy.toml).
#![allow(clippy::disallowed_methods)]

#[allow(dead_code)]
#[path = "../support/peers.rs"]
mod peers;
#[allow(dead_code)]
#[path = "../support/receivers.rs"]
mod receivers;

mod error_cached;
mod grants;
mod incident;
mod preventive;
mod retirement;
mod rig;
mod script;
mod signin;
