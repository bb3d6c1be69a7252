//! Reading a JWKS body into public key facts ([`KeyInfo`]): RFC 7638 thumbprints, sizes,
//! private members, and the reasons common parsers would reject a key.
//!
//! Pure functions over bytes; judging the facts (weak, ambiguous, unparseable) is
//! `detect`'s job, not this file's.

use crate::model::{KeyInfo, KeySetParse};
use base64::Engine;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use serde_json::{Map, Value};

const PRIVATE_MEMBERS: &[&str] = &["d", "p", "q", "dp", "dq", "qi", "k", "oth"];

/// Parses a JWKS body. Returns the facts and the raw JSON of each key (same order), which
/// verification needs and which is dropped after the round.
pub fn parse(body: &[u8]) -> (KeySetParse, Vec<Value>) {
    let doc: Value = match serde_json::from_slice(body) {
        Ok(v) => v,
        Err(e) => {
            let what = if looks_like_html(body) {
                "an HTML page, not JSON".to_owned()
            } else {
                format!("not JSON ({e})")
            };
            return (
                KeySetParse::Invalid {
                    reason: format!("the body is {what}"),
                },
                Vec::new(),
            );
        }
    };
    let Some(keys) = doc.get("keys") else {
        return (
            KeySetParse::Invalid {
                reason: "the JSON has no `keys` member".into(),
            },
            Vec::new(),
        );
    };
    let Some(keys) = keys.as_array() else {
        return (
            KeySetParse::Invalid {
                reason: "`keys` is not an array".into(),
            },
            Vec::new(),
        );
    };
    let infos = keys.iter().map(key_info).collect();
    (KeySetParse::Parsed { keys: infos }, keys.clone())
}

pub fn looks_like_html(body: &[u8]) -> bool {
    let head = String::from_utf8_lossy(&body[..body.len().min(256)])
        .trim_start()
        .to_ascii_lowercase();
    head.starts_with("<!doctype html") || head.starts_with("<html") || head.starts_with('<')
}

fn str_member<'a>(obj: &'a Map<String, Value>, name: &str) -> Option<&'a str> {
    obj.get(name).and_then(Value::as_str)
}

fn b64(obj: &Map<String, Value>, name: &str, problems: &mut Vec<String>) -> Option<Vec<u8>> {
    match obj.get(name) {
        None => {
            problems.push(format!("missing member `{name}`"));
            None
        }
        Some(Value::String(s)) => match URL_SAFE_NO_PAD.decode(s.trim_end_matches('=')) {
            Ok(bytes) if !bytes.is_empty() => Some(bytes),
            Ok(_) => {
                problems.push(format!("member `{name}` is empty"));
                None
            }
            Err(_) => {
                problems.push(format!("member `{name}` is not base64url"));
                None
            }
        },
        Some(_) => {
            problems.push(format!("member `{name}` is not a string"));
            None
        }
    }
}

/// The facts of one key. Never fails: what is wrong goes into `problems`.
pub fn key_info(v: &Value) -> KeyInfo {
    let mut problems = Vec::new();
    let Some(obj) = v.as_object() else {
        return KeyInfo {
            kid: None,
            thumbprint: None,
            kty: String::new(),
            alg: None,
            use_: None,
            crv: None,
            size_bits: None,
            private_members: Vec::new(),
            problems: vec!["the key is not a JSON object".into()],
        };
    };
    let kty = str_member(obj, "kty").unwrap_or_default().to_owned();
    let crv = str_member(obj, "crv").map(str::to_owned);
    let mut size_bits = None;
    let required: &[&str] = match kty.as_str() {
        "RSA" => {
            let n = b64(obj, "n", &mut problems);
            b64(obj, "e", &mut problems);
            size_bits = n.map(|n| rsa_bits(&n));
            &["e", "kty", "n"]
        }
        "EC" => {
            let x = b64(obj, "x", &mut problems);
            let y = b64(obj, "y", &mut problems);
            let want = match crv.as_deref() {
                Some("P-256") => Some(32),
                Some("P-384") => Some(48),
                Some("P-521") => Some(66),
                Some(other) => {
                    problems.push(format!("unknown EC curve `{other}`"));
                    None
                }
                None => {
                    problems.push("missing member `crv`".into());
                    None
                }
            };
            if let (Some(want), Some(x), Some(y)) = (want, &x, &y)
                && (x.len() != want || y.len() != want)
            {
                problems.push(format!(
                    "coordinates are not {want} bytes for {}",
                    crv.as_deref().unwrap_or("")
                ));
            }
            size_bits = want.map(|w| if w == 66 { 521 } else { w as u32 * 8 });
            &["crv", "kty", "x", "y"]
        }
        "OKP" => {
            let x = b64(obj, "x", &mut problems);
            match crv.as_deref() {
                Some("Ed25519") => {
                    size_bits = Some(256);
                    if x.as_ref().is_some_and(|x| x.len() != 32) {
                        problems.push("`x` is not 32 bytes for Ed25519".into());
                    }
                }
                Some(other) => problems.push(format!(
                    "OKP curve `{other}` is not supported by common JWT libraries"
                )),
                None => problems.push("missing member `crv`".into()),
            }
            &["crv", "kty", "x"]
        }
        "oct" => {
            b64(obj, "k", &mut problems);
            &["k", "kty"]
        }
        "" => {
            problems.push("missing member `kty`".into());
            &[]
        }
        other => {
            problems.push(format!("unknown kty `{other}`"));
            &[]
        }
    };
    let thumbprint = thumbprint(obj, required);
    let private_members = PRIVATE_MEMBERS
        .iter()
        .filter(|m| obj.contains_key(**m) && !(kty == "oct" && **m == "k"))
        .map(|m| m.to_string())
        .collect();
    let kid = match obj.get("kid") {
        Some(Value::String(s)) => Some(s.clone()),
        Some(_) => {
            problems.push("`kid` is not a string".into());
            None
        }
        None => None,
    };
    KeyInfo {
        kid,
        thumbprint,
        kty,
        alg: str_member(obj, "alg").map(str::to_owned),
        use_: str_member(obj, "use").map(str::to_owned),
        crv,
        size_bits,
        private_members,
        problems,
    }
}

fn rsa_bits(n: &[u8]) -> u32 {
    let n = match n.iter().position(|b| *b != 0) {
        Some(i) => &n[i..],
        None => return 0,
    };
    (n.len() as u32 - 1) * 8 + (8 - n[0].leading_zeros())
}

/// RFC 7638: SHA-256 over the required members, lexicographically ordered, no whitespace.
fn thumbprint(obj: &Map<String, Value>, required: &[&str]) -> Option<String> {
    if required.is_empty() {
        return None;
    }
    let mut canonical = Map::new();
    for m in required {
        canonical.insert(
            (*m).to_owned(),
            Value::String(obj.get(*m)?.as_str()?.to_owned()),
        );
    }
    // serde_json's Map is ordered by key (BTreeMap), which is the order RFC 7638 wants.
    let json = serde_json::to_string(&Value::Object(canonical)).ok()?;
    let digest = aws_lc_rs::digest::digest(&aws_lc_rs::digest::SHA256, json.as_bytes());
    Some(URL_SAFE_NO_PAD.encode(digest.as_ref()))
}

/// Lowercase hex SHA-256.
pub fn sha256_hex(bytes: &[u8]) -> String {
    let d = aws_lc_rs::digest::digest(&aws_lc_rs::digest::SHA256, bytes);
    d.as_ref().iter().map(|b| format!("{b:02x}")).collect()
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn rfc7638_example_thumbprint() {
        // The worked example of RFC 7638 section 3.1.
        let key = json!({
            "kty": "RSA",
            "n": "0vx7agoebGcQSuuPiLJXZptN9nndrQmbXEps2aiAFbWhM78LhWx4cbbfAAtVT86zwu1RK7aPFFxuhDR1L6tSoc_BJECPebWKRXjBZCiFV4n3oknjhMstn64tZ_2W-5JsGY4Hc5n9yBXArwl93lqt7_RN5w6Cf0h4QyQ5v-65YGjQR0_FDW2QvzqY368QQMicAtaSqzs8KJZgnYb9c7d0zgdAZHzu6qMQvRL5hajrn1n91CbOpbISD08qNLyrdkt-bFTWhAI4vMQFh6WeZu0fM4lFd2NcRwr3XPksINHaQ-G_xBniIqbw0Ls1jF44-csFCur-kEgU8awapJzKnqDKgw",
            "e": "AQAB",
            "alg": "RS256",
            "kid": "2011-04-29"
        });
        let info = key_info(&key);
        assert_eq!(
            info.thumbprint.as_deref(),
            Some("NzbLsXh8uDCcd-6MNwXF4W_7noWXFZAfHkxZsRGC9Xs")
        );
        assert_eq!(info.size_bits, Some(2048));
        assert!(info.problems.is_empty(), "{:?}", info.problems);
    }

    fn check(key: Value, problem: Option<&str>, private: &[&str]) {
        let info = key_info(&key);
        match problem {
            None => assert!(info.problems.is_empty(), "{key}: {:?}", info.problems),
            Some(p) => assert!(
                info.problems.iter().any(|x| x.contains(p)),
                "{key}: {:?}",
                info.problems
            ),
        }
        assert_eq!(info.private_members, private, "{key}");
    }

    #[test]
    fn key_problems_table() {
        let x32 = URL_SAFE_NO_PAD.encode([7u8; 32]);
        check(json!({"kty": "OKP", "crv": "Ed25519", "x": x32}), None, &[]);
        check(
            json!({"kty": "OKP", "crv": "Ed448", "x": x32}),
            Some("Ed448"),
            &[],
        );
        check(json!({"kty": "XYZ"}), Some("unknown kty"), &[]);
        check(json!({"crv": "P-256"}), Some("missing member `kty`"), &[]);
        check(
            json!({"kty": "EC", "crv": "P-256", "x": x32, "y": "!!"}),
            Some("not base64url"),
            &[],
        );
        check(
            json!({"kty": "EC", "crv": "P-256", "x": x32, "y": x32}),
            None,
            &[],
        );
        check(
            json!({"kty": "EC", "crv": "P-256", "x": x32, "y": x32, "d": x32}),
            None,
            &["d"],
        );
        check(
            json!({"kty": "EC", "crv": "secp256k1", "x": x32, "y": x32}),
            Some("unknown EC curve"),
            &[],
        );
        check(
            json!({"kty": "RSA", "e": "AQAB"}),
            Some("missing member `n`"),
            &[],
        );
        check(json!({"kty": "oct", "k": x32}), None, &[]);
        check(
            json!({"kty": "RSA", "n": x32, "e": "AQAB", "kid": 5}),
            Some("`kid` is not a string"),
            &[],
        );
        check(json!("not an object"), Some("not a JSON object"), &[]);
    }

    #[test]
    fn key_set_shapes() {
        assert!(
            matches!(parse(b"<html><body>502</body></html>").0, KeySetParse::Invalid { reason } if reason.contains("HTML"))
        );
        assert!(
            matches!(parse(b"{}").0, KeySetParse::Invalid { reason } if reason.contains("no `keys`"))
        );
        assert!(matches!(
            parse(b"{\"keys\": 3}").0,
            KeySetParse::Invalid { .. }
        ));
        assert_eq!(
            parse(b"{\"keys\": []}").0,
            KeySetParse::Parsed { keys: vec![] }
        );
    }

    #[test]
    fn rsa_bit_length() {
        assert_eq!(rsa_bits(&[0x00, 0x80, 0, 0]), 24);
        assert_eq!(rsa_bits(&[0x01, 0]), 9);
        assert_eq!(rsa_bits(&[0]), 0);
    }
}
