//! keycanary: watches OAuth / OpenID Connect signing keys as clients see them.
//!
//! See ARCHITECTURE.md for the data flow and the invariants between these modules.

pub mod clock;
pub mod lab;
pub mod model;
