//! Integration tests: one binary, one module per area. Every test binds 127.0.0.1:0.

// Tests wait for real processes with real deadlines; the product reads time through
// `keycanary::clock` (clippy.toml).
#![allow(clippy::disallowed_methods)]

mod api;
mod authcode;
mod check;
mod contracts;
mod daemon;
mod dashboards;
mod delivery;
mod exit_codes;
mod faults;
mod global_gate;
mod hardening;
mod hygiene;
mod inventory;
mod lab;
mod oidc_nginx;
mod otlp;
mod otlp_tls;
mod pinning;
mod refresh_rotation;
// Shared with the `rehearsal` binary, which uses other parts of them.
#[allow(dead_code)]
#[path = "../support/peers.rs"]
mod peers;
#[allow(dead_code)]
#[path = "../support/receivers.rs"]
mod receivers;
mod rotation;
mod rotation_unsafe;
mod stage;
