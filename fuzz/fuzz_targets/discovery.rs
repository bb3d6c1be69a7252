//! A discovery document from the network.
#![no_main]

use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    let result = keycanary::probe::parse_discovery(data);
    let _ = serde_json::to_string(&result).expect("a discovery result serialises");
});
