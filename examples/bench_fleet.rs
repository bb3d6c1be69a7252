//! Generates the static fleet `scripts/bench` serves with nginx: per tenant one signing key
//! of its own (ES256, or RS256 for every `--rs256-every`-th tenant) and two domains (`app`
//! and `io`), each with a discovery document, a JWKS and a canned token response whose
//! access token (pre-signed, long `exp`) verifies against that JWKS.
//!
//! ```text
//! cargo run --release --example bench_fleet -- --tenants N --port P --out DIR --now UNIX_SECS [--rs256-every K] [--token-days D]
//! ```
//!
//! Writes, under `DIR/www`, for tenant `tNNNNN` and domain `d`:
//! `tNNNNN/d/.well-known/openid-configuration`, `tNNNNN/d/jwks`, `tNNNNN/d/token`; and
//! `DIR/fleet.json` (`[{"tenant", "alg", "kid"}]`). Issuer `http://127.0.0.1:P/tNNNNN/d`,
//! access token audience `https://api.tNNNNN.fleet.test`, client `bench` (any secret: the
//! token endpoint is a static file). Every token is verified against its JWK before it is
//! written. Only key generation and signing happen here; nothing is served.

use aws_lc_rs::encoding::{AsDer, Pkcs8V1Der};
use aws_lc_rs::rsa;
use aws_lc_rs::signature::{ECDSA_P256_SHA256_FIXED_SIGNING, EcdsaKeyPair, KeyPair as _};
use base64::Engine as _;
use base64::engine::general_purpose::{STANDARD, URL_SAFE_NO_PAD};
use jsonwebtoken::jwk::Jwk;
use jsonwebtoken::{Algorithm, DecodingKey, EncodingKey, Header, Validation};
use serde_json::{Value, json};
use std::path::{Path, PathBuf};

const DOMAINS: [&str; 2] = ["app", "io"];

struct Args {
    tenants: usize,
    port: u16,
    out: PathBuf,
    rs256_every: usize,
    token_days: i64,
    /// Unix time the tokens are issued at (`iat`); given by the caller, as the crate reads
    /// time through its clock only.
    now: i64,
}

fn parse_args() -> Result<Args, String> {
    let mut args = Args {
        tenants: 0,
        port: 0,
        out: PathBuf::new(),
        rs256_every: 10,
        token_days: 30,
        now: 0,
    };
    let mut it = std::env::args().skip(1);
    while let Some(flag) = it.next() {
        let value = it.next().ok_or_else(|| format!("{flag} needs a value"))?;
        let bad = |_| format!("{flag}: not a number: {value}");
        match flag.as_str() {
            "--tenants" => args.tenants = value.parse().map_err(bad)?,
            "--port" => args.port = value.parse().map_err(bad)?,
            "--out" => args.out = PathBuf::from(&value),
            "--rs256-every" => args.rs256_every = value.parse().map_err(bad)?,
            "--token-days" => args.token_days = value.parse().map_err(bad)?,
            "--now" => args.now = value.parse().map_err(bad)?,
            _ => return Err(format!("unknown option {flag}")),
        }
    }
    if args.tenants == 0 || args.tenants > 99_999 {
        return Err("--tenants must be 1..=99999".into());
    }
    if args.port == 0 || args.out.as_os_str().is_empty() || args.now <= 0 {
        return Err("--port, --out and --now (Unix seconds) are required".into());
    }
    Ok(args)
}

fn tenant_name(i: usize) -> String {
    format!("t{i:05}")
}

struct Key {
    alg: Algorithm,
    encoding: EncodingKey,
    jwk: Value,
}

fn b64(b: &[u8]) -> String {
    URL_SAFE_NO_PAD.encode(b)
}

fn generate(alg: Algorithm, kid: &str) -> Result<Key, String> {
    let (encoding, mut jwk) = match alg {
        Algorithm::RS256 => {
            let pair = rsa::KeyPair::generate(rsa::KeySize::Rsa2048).map_err(|e| e.to_string())?;
            // aws-lc-rs exports RSA private keys as PKCS#8; jsonwebtoken's PEM loader reads it.
            let pkcs8: Pkcs8V1Der<'static> = pair.as_der().map_err(|e| e.to_string())?;
            let mut pem = String::from("-----BEGIN PRIVATE KEY-----\n");
            for line in STANDARD.encode(pkcs8.as_ref()).as_bytes().chunks(64) {
                pem.push_str(&String::from_utf8_lossy(line));
                pem.push('\n');
            }
            pem.push_str("-----END PRIVATE KEY-----\n");
            let encoding = EncodingKey::from_rsa_pem(pem.as_bytes()).map_err(|e| e.to_string())?;
            let c = rsa::PublicKeyComponents::<Vec<u8>>::from(pair.public_key());
            (
                encoding,
                json!({"kty": "RSA", "n": b64(&c.n), "e": b64(&c.e)}),
            )
        }
        Algorithm::ES256 => {
            let pair = EcdsaKeyPair::generate(&ECDSA_P256_SHA256_FIXED_SIGNING)
                .map_err(|e| e.to_string())?;
            let pkcs8 = pair.to_pkcs8v1().map_err(|e| e.to_string())?;
            let point = pair.public_key().as_ref();
            if point.len() != 65 || point[0] != 0x04 {
                return Err("unexpected P-256 public key encoding".into());
            }
            (
                EncodingKey::from_ec_der(pkcs8.as_ref()),
                json!({"kty": "EC", "crv": "P-256", "x": b64(&point[1..33]), "y": b64(&point[33..65])}),
            )
        }
        other => return Err(format!("unsupported alg {other:?}")),
    };
    let alg_name = if alg == Algorithm::RS256 {
        "RS256"
    } else {
        "ES256"
    };
    if let Value::Object(m) = &mut jwk {
        m.insert("kid".into(), kid.into());
        m.insert("use".into(), "sig".into());
        m.insert("alg".into(), alg_name.into());
    }
    Ok(Key { alg, encoding, jwk })
}

fn write(path: &Path, body: &[u8]) -> Result<(), String> {
    if let Some(dir) = path.parent() {
        std::fs::create_dir_all(dir).map_err(|e| format!("{}: {e}", dir.display()))?;
    }
    std::fs::write(path, body).map_err(|e| format!("{}: {e}", path.display()))
}

/// Writes one tenant's files; returns its `fleet.json` entry.
fn tenant(args: &Args, i: usize, now: i64) -> Result<Value, String> {
    let name = tenant_name(i);
    let rs = args.rs256_every > 0 && i.is_multiple_of(args.rs256_every);
    let (alg, alg_name) = if rs {
        (Algorithm::RS256, "RS256")
    } else {
        (Algorithm::ES256, "ES256")
    };
    let kid = format!("{name}-k1");
    let key = generate(alg, &kid)?;
    let jwks = serde_json::to_vec(&json!({"keys": [key.jwk]})).map_err(|e| e.to_string())?;
    let audience = format!("https://api.{name}.fleet.test");
    let lifetime = args.token_days * 86_400;
    let decoding = DecodingKey::from_jwk(
        &serde_json::from_value::<Jwk>(key.jwk.clone()).map_err(|e| e.to_string())?,
    )
    .map_err(|e| e.to_string())?;
    for domain in DOMAINS {
        let issuer = format!("http://127.0.0.1:{}/{name}/{domain}", args.port);
        let discovery = json!({
            "issuer": issuer,
            "jwks_uri": format!("{issuer}/jwks"),
            "token_endpoint": format!("{issuer}/token"),
            "grant_types_supported": ["client_credentials"],
            "response_types_supported": ["token"],
            "subject_types_supported": ["public"],
            "id_token_signing_alg_values_supported": [alg_name],
            "token_endpoint_auth_methods_supported": ["client_secret_basic", "client_secret_post"],
        });
        let claims = json!({
            "iss": issuer,
            "sub": "bench",
            "aud": audience,
            "client_id": "bench",
            "iat": now,
            "nbf": now - 60,
            "exp": now + lifetime,
            "jti": format!("{name}-{domain}"),
        });
        let mut header = Header::new(key.alg);
        header.kid = Some(kid.clone());
        header.typ = Some("at+jwt".into());
        let token =
            jsonwebtoken::encode(&header, &claims, &key.encoding).map_err(|e| e.to_string())?;
        let mut validation = Validation::new(key.alg);
        validation.set_audience(&[&audience]);
        validation.set_issuer(&[&issuer]);
        jsonwebtoken::decode::<Value>(&token, &decoding, &validation)
            .map_err(|e| format!("{name}/{domain}: the token does not verify: {e}"))?;
        let response = json!({
            "access_token": token,
            "token_type": "Bearer",
            "expires_in": lifetime,
        });
        let dir = args.out.join("www").join(&name).join(domain);
        write(
            &dir.join(".well-known/openid-configuration"),
            &serde_json::to_vec(&discovery).map_err(|e| e.to_string())?,
        )?;
        write(&dir.join("jwks"), &jwks)?;
        write(
            &dir.join("token"),
            &serde_json::to_vec(&response).map_err(|e| e.to_string())?,
        )?;
    }
    Ok(json!({"tenant": name, "alg": alg_name, "kid": kid}))
}

fn main() {
    let args = match parse_args() {
        Ok(a) => a,
        Err(e) => {
            eprintln!("bench_fleet: {e}");
            std::process::exit(2);
        }
    };
    let now = args.now;
    let threads = std::thread::available_parallelism().map_or(1, |n| n.get());
    let ids: Vec<usize> = (1..=args.tenants).collect();
    let chunk = ids.len().div_ceil(threads);
    let results: Vec<Result<Vec<Value>, String>> = std::thread::scope(|s| {
        let handles: Vec<_> = ids
            .chunks(chunk)
            .map(|part| {
                let args = &args;
                s.spawn(move || part.iter().map(|&i| tenant(args, i, now)).collect())
            })
            .collect();
        handles
            .into_iter()
            .map(|h| {
                h.join()
                    .unwrap_or_else(|_| Err("a generator thread panicked".into()))
            })
            .collect()
    });
    let mut fleet = Vec::with_capacity(args.tenants);
    for r in results {
        match r {
            Ok(mut part) => fleet.append(&mut part),
            Err(e) => {
                eprintln!("bench_fleet: {e}");
                std::process::exit(1);
            }
        }
    }
    let body = serde_json::to_vec_pretty(&fleet).unwrap_or_default();
    if let Err(e) = write(&args.out.join("fleet.json"), &body) {
        eprintln!("bench_fleet: {e}");
        std::process::exit(1);
    }
}
