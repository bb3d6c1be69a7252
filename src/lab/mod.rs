//! The lab: a simulated identity provider behind a simulated caching CDN.
