//! A JWKS body from the network: parsed into key facts, every fact read.
#![no_main]

use keycanary::probe::jwks;
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    let (set, raw) = jwks::parse(data);
    assert!(set.keys().len() <= jwks::MAX_KEYS);
    assert_eq!(raw.len(), set.keys().len());
    for k in set.keys() {
        let _ = serde_json::to_string(k).expect("key facts serialise");
    }
});
