//! Integration tests: one binary, one module per area. Every test binds 127.0.0.1:0.

mod api;
mod check;
mod daemon;
mod dashboards;
mod lab;
mod oidc_nginx;
mod otlp;
mod peers;
mod rotation;
mod rotation_unsafe;
