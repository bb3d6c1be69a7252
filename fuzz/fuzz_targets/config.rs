//! probes.toml as a user (or a template gone wrong) may write it: parsed and validated,
//! every problem listed; never a panic.
#![no_main]

use keycanary::config::{self, MemorySecrets};
use libfuzzer_sys::fuzz_target;
use std::path::Path;

fuzz_target!(|data: &[u8]| {
    let Ok(text) = std::str::from_utf8(data) else {
        return;
    };
    let secrets = MemorySecrets::new()
        .with_env("SECRET", "fuzz-secret")
        .with_file("secret", "fuzz-secret");
    match config::parse(text, "fuzz.toml", Path::new("/nonexistent"), &secrets) {
        // A valid config finds each of its tenants by name.
        Ok(c) => assert!(c.tenants.iter().all(|t| c.tenant(&t.name).is_some())),
        Err(e) => assert!(!e.to_string().is_empty()),
    }
});
