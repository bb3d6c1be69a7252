//! Reading a JWKS body into public key facts ([`KeyInfo`]): RFC 7638 thumbprints, sizes,
//! private members, the reasons common parsers would reject a key, and what its `x5c`
//! certificate says (digests to compare with `x5t`, expiry, whether it holds the same key).
//!
//! Pure functions over bytes; judging the facts (weak, ambiguous, unparseable) is
//! `detect`'s job, not this file's.

use crate::model::{KeyInfo, KeySetParse, X5cFacts, wire};
use base64::Engine;
use base64::engine::general_purpose::{STANDARD, URL_SAFE_NO_PAD};
use serde_json::{Map, Value};
use x509_parser::public_key::PublicKey;
use x509_parser::x509::SubjectPublicKeyInfo;

const PRIVATE_MEMBERS: &[&str] = &["d", "p", "q", "dp", "dq", "qi", "k", "oth"];

/// The most keys a set may have to be read. Identity providers publish a handful (a few
/// dozen at most); a set beyond this is not read at all (`jwks_fetch_failed` says why),
/// so a hostile or broken one cannot make a round cost thousands of key checks.
pub const MAX_KEYS: usize = 256;

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
    if keys.len() > MAX_KEYS {
        return (
            KeySetParse::Invalid {
                reason: format!(
                    "the set has {} keys, more than the {MAX_KEYS} keycanary reads",
                    keys.len()
                ),
            },
            Vec::new(),
        );
    }
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
            x5t: None,
            x5t_s256: None,
            x5c: None,
        };
    };
    let kty = wire::ident(str_member(obj, "kty").unwrap_or_default());
    let crv = str_member(obj, "crv").map(wire::ident);
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
        Some(Value::String(s)) => Some(wire::ident(s)),
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
        alg: str_member(obj, "alg").map(wire::ident),
        use_: str_member(obj, "use").map(wire::ident),
        crv,
        size_bits,
        private_members,
        problems,
        x5t: str_member(obj, "x5t").map(wire::ident),
        x5t_s256: str_member(obj, "x5t#S256").map(wire::ident),
        x5c: x5c_facts(obj),
    }
}

/// Facts about `x5c[0]`, or `None` when the key has no `x5c` member.
fn x5c_facts(obj: &Map<String, Value>) -> Option<X5cFacts> {
    let failed = |why: &str| X5cFacts {
        parse_error: Some(why.to_owned()),
        ..Default::default()
    };
    let first = match obj.get("x5c")? {
        Value::Array(certs) => certs.first(),
        _ => return Some(failed("`x5c` is not an array")),
    };
    let b64 = match first {
        Some(Value::String(s)) => s,
        Some(_) => return Some(failed("`x5c[0]` is not a string")),
        None => return Some(failed("`x5c` is empty")),
    };
    // RFC 7517 4.7: standard base64 (not base64url) of the DER certificate.
    let compact: String = b64.chars().filter(|c| !c.is_ascii_whitespace()).collect();
    let Ok(der) = STANDARD.decode(&compact) else {
        return Some(failed("`x5c[0]` is not base64"));
    };
    let digest = |alg| URL_SAFE_NO_PAD.encode(aws_lc_rs::digest::digest(alg, &der).as_ref());
    let mut facts = X5cFacts {
        leaf_sha1: Some(digest(&aws_lc_rs::digest::SHA1_FOR_LEGACY_USE_ONLY)),
        leaf_sha256: Some(digest(&aws_lc_rs::digest::SHA256)),
        ..Default::default()
    };
    match x509_parser::parse_x509_certificate(&der) {
        Ok((_, cert)) => {
            facts.not_after = Some(cert.validity().not_after.timestamp());
            facts.matches_key = cert_holds_key(cert.public_key(), obj);
        }
        Err(e) => facts.parse_error = Some(format!("`x5c[0]` is not an X.509 certificate ({e})")),
    }
    Some(facts)
}

/// Whether a certificate's public key is the JWK's; `None` when the JWK's members cannot be
/// read (its own problems say why).
fn cert_holds_key(spki: &SubjectPublicKeyInfo<'_>, obj: &Map<String, Value>) -> Option<bool> {
    let member = |name: &str| {
        let s = str_member(obj, name)?;
        URL_SAFE_NO_PAD.decode(s.trim_end_matches('=')).ok()
    };
    let unsigned = |b: &[u8]| -> Vec<u8> { b.iter().copied().skip_while(|x| *x == 0).collect() };
    match (str_member(obj, "kty")?, spki.parsed()) {
        ("RSA", Ok(PublicKey::RSA(rsa))) => {
            let (n, e) = (member("n")?, member("e")?);
            Some(unsigned(rsa.modulus) == unsigned(&n) && unsigned(rsa.exponent) == unsigned(&e))
        }
        ("EC", Ok(PublicKey::EC(point))) => {
            let (x, y) = (member("x")?, member("y")?);
            // SEC1 uncompressed point: 0x04 || x || y.
            let want: Vec<u8> = [&[4u8][..], &x, &y].concat();
            Some(point.data() == want.as_slice())
        }
        // Ed25519: the BIT STRING is the raw 32-byte key.
        ("OKP", _) => Some(spki.subject_public_key.data.as_ref() == member("x")?.as_slice()),
        _ => Some(false),
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
    crate::model::hex(d.as_ref())
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
        // Up to MAX_KEYS keys are read; a set with more is not read at all.
        let set = |n: usize| {
            let key = r#"{"kty":"oct","kid":"same","k":"AAAA"}"#;
            format!("{{\"keys\": [{}]}}", vec![key; n].join(","))
        };
        let (read, raw) = parse(set(MAX_KEYS).as_bytes());
        assert_eq!((read.keys().len(), raw.len()), (MAX_KEYS, MAX_KEYS));
        let (over, raw) = parse(set(2_500).as_bytes());
        assert!(raw.is_empty());
        assert_eq!(
            over,
            KeySetParse::Invalid {
                reason: "the set has 2500 keys, more than the 256 keycanary reads".into()
            }
        );
    }

    /// A self-signed certificate (DER) for `pair`, valid 2020-01-01 to 2040-01-01.
    fn cert_for(pair: &rcgen::KeyPair) -> Vec<u8> {
        let mut p = rcgen::CertificateParams::new(vec!["idp.example".to_owned()]).unwrap();
        p.not_before = rcgen::date_time_ymd(2020, 1, 1);
        p.not_after = rcgen::date_time_ymd(2040, 1, 1);
        p.self_signed(pair).unwrap().der().to_vec()
    }

    /// The public JWK of an RSA, P-256 or Ed25519 rcgen key pair.
    fn jwk_of(pair: &rcgen::KeyPair) -> Value {
        let raw = pair.public_key_raw();
        let b64 = |b: &[u8]| URL_SAFE_NO_PAD.encode(b);
        if pair.algorithm() == &rcgen::PKCS_ED25519 {
            json!({"kty": "OKP", "crv": "Ed25519", "x": b64(raw)})
        } else if pair.algorithm() == &rcgen::PKCS_ECDSA_P256_SHA256 {
            json!({"kty": "EC", "crv": "P-256", "x": b64(&raw[1..33]), "y": b64(&raw[33..65])})
        } else {
            // PKCS#1 RSAPublicKey; read back through aws-lc-rs, not x509-parser.
            let pkcs8 = pair.serialize_der();
            let rsa = aws_lc_rs::rsa::KeyPair::from_pkcs8(&pkcs8).unwrap();
            let c = aws_lc_rs::rsa::PublicKeyComponents::<Vec<u8>>::from(
                aws_lc_rs::signature::KeyPair::public_key(&rsa),
            );
            json!({"kty": "RSA", "n": b64(&c.n), "e": b64(&c.e)})
        }
    }

    /// `jwk` with `x5c: [der]` and the matching `x5t` / `x5t#S256`.
    fn with_cert(mut jwk: Value, der: &[u8]) -> Value {
        let digest = |alg| URL_SAFE_NO_PAD.encode(aws_lc_rs::digest::digest(alg, der).as_ref());
        jwk["x5c"] = json!([STANDARD.encode(der)]);
        jwk["x5t"] = json!(digest(&aws_lc_rs::digest::SHA1_FOR_LEGACY_USE_ONLY));
        jwk["x5t#S256"] = json!(digest(&aws_lc_rs::digest::SHA256));
        jwk
    }

    #[test]
    fn x5c_facts_table() {
        let ec = rcgen::KeyPair::generate().unwrap();
        let ec2 = rcgen::KeyPair::generate().unwrap();
        let ed = rcgen::KeyPair::generate_for(&rcgen::PKCS_ED25519).unwrap();
        let rsa = rcgen::KeyPair::generate_for(&rcgen::PKCS_RSA_SHA256).unwrap();
        let not_after_2040 = 2_208_988_800;
        // (case, key, certificate holder, matches)
        let table: &[(&str, &rcgen::KeyPair, &rcgen::KeyPair, bool)] = &[
            ("P-256, own certificate", &ec, &ec, true),
            ("P-256, another key's certificate", &ec, &ec2, false),
            ("Ed25519, own certificate", &ed, &ed, true),
            ("RSA, own certificate", &rsa, &rsa, true),
            ("RSA key, P-256 certificate", &rsa, &ec, false),
            ("P-256 key, RSA certificate", &ec, &rsa, false),
        ];
        for (case, key, holder, matches) in table {
            let der = cert_for(holder);
            let info = key_info(&with_cert(jwk_of(key), &der));
            assert!(info.problems.is_empty(), "{case}: {:?}", info.problems);
            let facts = info.x5c.expect(case);
            assert_eq!(facts.matches_key, Some(*matches), "{case}");
            assert_eq!(facts.parse_error, None, "{case}");
            assert_eq!(facts.not_after, Some(not_after_2040), "{case}");
            assert_eq!(facts.leaf_sha1, info.x5t, "{case}");
            assert_eq!(facts.leaf_sha256, info.x5t_s256, "{case}");
        }
        assert!(key_info(&jwk_of(&ec)).x5c.is_none());
    }

    #[test]
    fn x5c_that_cannot_be_read() {
        let jwk = jwk_of(&rcgen::KeyPair::generate().unwrap());
        let check = |x5c: Value, fragment: &str, digests: bool| {
            let mut k = jwk.clone();
            k["x5c"] = x5c;
            let facts = key_info(&k).x5c.expect("x5c facts");
            let err = facts.parse_error.unwrap_or_default();
            assert!(err.contains(fragment), "{err}");
            assert_eq!(facts.leaf_sha256.is_some(), digests, "{err}");
            assert_eq!(facts.matches_key, None);
        };
        check(json!("MIIB"), "not an array", false);
        check(json!([]), "empty", false);
        check(json!([7]), "not a string", false);
        check(json!(["%%%"]), "not base64", false);
        check(json!(["aGVsbG8="]), "not an X.509 certificate", true);
    }

    #[test]
    fn rsa_bit_length() {
        assert_eq!(rsa_bits(&[0x00, 0x80, 0, 0]), 24);
        assert_eq!(rsa_bits(&[0x01, 0]), 9);
        assert_eq!(rsa_bits(&[0]), 0);
    }
}
