//! The body of `POST /v1/silences`: read as the API reads it, then validated against the
//! configured tenants at a time from the first eight bytes, with the default longest
//! silence.
#![no_main]

use keycanary::api::silences::{NewSilence, validate};
use keycanary::model::Timestamp;
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    let (at, body) = data.split_at(data.len().min(8));
    let mut ms = [0u8; 8];
    ms[..at.len()].copy_from_slice(at);
    let now = Timestamp(i64::from_le_bytes(ms));
    let Ok(silence) = serde_json::from_slice::<NewSilence>(body) else {
        return;
    };
    match validate(
        &silence,
        &["acme", "globex"],
        now,
        keycanary::config::DEFAULT_MAX_SILENCE,
    ) {
        Ok(s) => {
            let _ = (s.starts.to_rfc3339(), s.ends.to_rfc3339(), s.is_active(now));
        }
        Err(problems) => assert!(!problems.is_empty()),
    }
});
