//! Signing keys of the lab's tenants: generation of real key material, the public JWK of a
//! key, and signing a JWT with it.
//!
//! Algorithms: RS256 (RSA 2048), ES256 (P-256) and EdDSA (Ed25519), generated with
//! `aws-lc-rs` and signed through `jsonwebtoken`. The JWK is built here from the public
//! components rather than with `jsonwebtoken::jwk::Jwk::from_encoding_key`, which cannot
//! read every DER form `aws-lc-rs` produces.
//!
//! Deliberately not here: which keys a tenant publishes or signs with (that is `idp`), kids
//! (assigned by `idp` when a key is published), and any private member in a JWK.

use aws_lc_rs::encoding::{AsDer, Pkcs8V1Der};
use aws_lc_rs::rsa;
use aws_lc_rs::signature::{
    ECDSA_P256_SHA256_FIXED_SIGNING, EcdsaKeyPair, Ed25519KeyPair, KeyPair as _,
};
use base64::Engine as _;
use base64::engine::general_purpose::{STANDARD, URL_SAFE_NO_PAD};
use jsonwebtoken::{Algorithm, EncodingKey, Header};
use serde::{Deserialize, Serialize};
use serde_json::{Value, json};
use std::fmt;

/// The JWS algorithm a tenant signs with.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
pub enum KeyAlg {
    RS256,
    ES256,
    EdDSA,
}

impl KeyAlg {
    pub fn as_str(self) -> &'static str {
        match self {
            KeyAlg::RS256 => "RS256",
            KeyAlg::ES256 => "ES256",
            KeyAlg::EdDSA => "EdDSA",
        }
    }

    fn jwt_algorithm(self) -> Algorithm {
        match self {
            KeyAlg::RS256 => Algorithm::RS256,
            KeyAlg::ES256 => Algorithm::ES256,
            KeyAlg::EdDSA => Algorithm::EdDSA,
        }
    }
}

impl fmt::Display for KeyAlg {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

#[derive(Debug, thiserror::Error)]
pub enum KeyError {
    #[error("generating a {0} key failed")]
    Generate(KeyAlg),
    #[error("loading the generated {0} key into jsonwebtoken failed: {1}")]
    Load(KeyAlg, jsonwebtoken::errors::Error),
    #[error("signing a token failed: {0}")]
    Sign(#[from] jsonwebtoken::errors::Error),
}

/// The public half of a key, as the JWK members need it (unpadded big-endian bytes).
#[derive(Debug, Clone, PartialEq, Eq)]
enum PublicParams {
    Rsa { n: Vec<u8>, e: Vec<u8> },
    Ec { x: Vec<u8>, y: Vec<u8> },
    Ed { x: Vec<u8> },
}

/// A generated key pair. `Debug` shows only the algorithm: the private key never prints.
#[derive(Clone)]
pub struct KeyMaterial {
    alg: KeyAlg,
    encoding: EncodingKey,
    public: PublicParams,
}

impl fmt::Debug for KeyMaterial {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("KeyMaterial")
            .field("alg", &self.alg)
            .finish_non_exhaustive()
    }
}

/// Generates a fresh key pair. RSA generation takes tens of milliseconds: callers in async
/// code should run it on a blocking thread.
pub fn generate(alg: KeyAlg) -> Result<KeyMaterial, KeyError> {
    let fail = |_| KeyError::Generate(alg);
    let (encoding, public) = match alg {
        KeyAlg::RS256 => {
            let pair = rsa::KeyPair::generate(rsa::KeySize::Rsa2048).map_err(fail)?;
            // aws-lc-rs exports RSA private keys only as PKCS#8, while
            // `EncodingKey::from_rsa_der` wants PKCS#1; the PEM loader unwraps PKCS#8.
            let pkcs8: Pkcs8V1Der<'static> = pair.as_der().map_err(fail)?;
            let pem = pem_private_key(pkcs8.as_ref());
            let encoding =
                EncodingKey::from_rsa_pem(pem.as_bytes()).map_err(|e| KeyError::Load(alg, e))?;
            let components = rsa::PublicKeyComponents::<Vec<u8>>::from(pair.public_key());
            let public = PublicParams::Rsa {
                n: components.n,
                e: components.e,
            };
            (encoding, public)
        }
        KeyAlg::ES256 => {
            let pair = EcdsaKeyPair::generate(&ECDSA_P256_SHA256_FIXED_SIGNING).map_err(fail)?;
            let pkcs8 = pair.to_pkcs8v1().map_err(fail)?;
            let encoding = EncodingKey::from_ec_der(pkcs8.as_ref());
            // Uncompressed SEC 1 point: 0x04 || x (32 bytes) || y (32 bytes).
            let point = pair.public_key().as_ref();
            if point.len() != 65 || point[0] != 0x04 {
                return Err(KeyError::Generate(alg));
            }
            let public = PublicParams::Ec {
                x: point[1..33].to_vec(),
                y: point[33..65].to_vec(),
            };
            (encoding, public)
        }
        KeyAlg::EdDSA => {
            let pair = Ed25519KeyPair::generate().map_err(fail)?;
            let pkcs8 = pair.to_pkcs8v1().map_err(fail)?;
            let encoding = EncodingKey::from_ed_der(pkcs8.as_ref());
            let public = PublicParams::Ed {
                x: pair.public_key().as_ref().to_vec(),
            };
            (encoding, public)
        }
    };
    Ok(KeyMaterial {
        alg,
        encoding,
        public,
    })
}

impl KeyMaterial {
    pub fn alg(&self) -> KeyAlg {
        self.alg
    }

    /// The public JWK (RFC 7517) of this key under `kid`, with `use: sig` and `alg`.
    pub fn jwk(&self, kid: &str) -> Value {
        let b64 = |b: &[u8]| URL_SAFE_NO_PAD.encode(b);
        let mut jwk = match &self.public {
            PublicParams::Rsa { n, e } => json!({ "kty": "RSA", "n": b64(n), "e": b64(e) }),
            PublicParams::Ec { x, y } => {
                json!({ "kty": "EC", "crv": "P-256", "x": b64(x), "y": b64(y) })
            }
            PublicParams::Ed { x } => json!({ "kty": "OKP", "crv": "Ed25519", "x": b64(x) }),
        };
        if let Value::Object(members) = &mut jwk {
            members.insert("kid".into(), kid.into());
            members.insert("use".into(), "sig".into());
            members.insert("alg".into(), self.alg.as_str().into());
        }
        jwk
    }

    /// A compact JWS over `claims` with header `{alg, kid, typ}`.
    pub fn sign(&self, kid: &str, typ: &str, claims: &impl Serialize) -> Result<String, KeyError> {
        let mut header = Header::new(self.alg.jwt_algorithm());
        header.kid = Some(kid.to_owned());
        header.typ = Some(typ.to_owned());
        Ok(jsonwebtoken::encode(&header, claims, &self.encoding)?)
    }
}

fn pem_private_key(der: &[u8]) -> String {
    let b64 = STANDARD.encode(der);
    let mut pem = String::from("-----BEGIN PRIVATE KEY-----\n");
    for line in b64.as_bytes().chunks(64) {
        // Base64 output is ASCII, so every chunk is valid UTF-8.
        pem.push_str(&String::from_utf8_lossy(line));
        pem.push('\n');
    }
    pem.push_str("-----END PRIVATE KEY-----\n");
    pem
}

#[cfg(test)]
mod tests {
    use super::*;
    use jsonwebtoken::jwk::Jwk;
    use jsonwebtoken::{DecodingKey, Validation};

    #[derive(Debug, Serialize, Deserialize, PartialEq)]
    struct Claims {
        sub: String,
        exp: i64,
    }

    fn check_round_trip(alg: KeyAlg) {
        let key = generate(alg).expect("generate");
        let claims = Claims {
            sub: "probe".into(),
            exp: 4_000_000_000,
        };
        let token = key.sign("k1", "at+jwt", &claims).expect("sign");
        let header = jsonwebtoken::decode_header(&token).expect("header");
        assert_eq!(header.kid.as_deref(), Some("k1"));
        assert_eq!(header.typ.as_deref(), Some("at+jwt"));
        assert_eq!(header.alg, alg.jwt_algorithm());

        let jwk_json = key.jwk("k1");
        assert_eq!(jwk_json["alg"], alg.as_str());
        assert_eq!(jwk_json["use"], "sig");
        assert!(jwk_json.get("d").is_none(), "no private member");
        let jwk: Jwk = serde_json::from_value(jwk_json).expect("jwk parses");
        let decoding = DecodingKey::from_jwk(&jwk).expect("decoding key");
        let mut validation = Validation::new(alg.jwt_algorithm());
        validation.required_spec_claims.clear();
        let data = jsonwebtoken::decode::<Claims>(&token, &decoding, &validation).expect("verify");
        assert_eq!(data.claims, claims);

        // A different key of the same algorithm must not verify it.
        let other = generate(alg).expect("generate");
        let jwk: Jwk = serde_json::from_value(other.jwk("k1")).expect("jwk parses");
        let decoding = DecodingKey::from_jwk(&jwk).expect("decoding key");
        assert!(jsonwebtoken::decode::<Claims>(&token, &decoding, &validation).is_err());
    }

    #[test]
    fn rs256_signs_and_verifies_with_its_jwk() {
        check_round_trip(KeyAlg::RS256);
    }

    #[test]
    fn es256_signs_and_verifies_with_its_jwk() {
        check_round_trip(KeyAlg::ES256);
    }

    #[test]
    fn eddsa_signs_and_verifies_with_its_jwk() {
        check_round_trip(KeyAlg::EdDSA);
    }

    #[test]
    fn rsa_jwk_has_2048_bit_modulus_without_leading_zero() {
        let key = generate(KeyAlg::RS256).expect("generate");
        let n = key.jwk("k")["n"].as_str().unwrap_or_default().to_owned();
        let n = URL_SAFE_NO_PAD.decode(n).expect("base64url");
        assert_eq!(n.len(), 256);
        assert_ne!(n[0], 0);
    }
}
