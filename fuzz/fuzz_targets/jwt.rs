//! A token and a JWKS from the network: the token decoded without trust, then verified
//! against the set. Input: the token, a newline, the JWKS body.
#![no_main]

use keycanary::model::{TokenKind, ViewId};
use keycanary::probe::{jwks, token};
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    let split = data.iter().position(|b| *b == b'\n').unwrap_or(data.len());
    let (tok, body) = data.split_at(split);
    let Ok(tok) = std::str::from_utf8(tok) else {
        return;
    };
    let Ok(jwt) = token::decode(TokenKind::AccessToken, tok) else {
        return;
    };
    let (_, raw) = jwks::parse(body.get(1..).unwrap_or_default());
    let views = [
        token::ViewKeys {
            view: ViewId::origin(),
            keys: Some(&raw),
        },
        token::ViewKeys {
            view: ViewId::origin(),
            keys: None,
        },
    ];
    let info = jwt.check_against(&views);
    assert_eq!(info.checks.len(), 2);
});
