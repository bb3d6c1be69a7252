//! The lab over real HTTP.
