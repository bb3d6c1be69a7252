//! RFC 7523 client authentication (`auth = "private_key_jwt"`): the client proves who it
//! is with a JWT signed by its own private key, made fresh for each token request.
//!
//! The assertion is a credential for its short life: it is sent only in the token request
//! (where the client secret would go) and scrubbed out of what the IdP says back.

use crate::config::ClientKey;
use secrecy::ExposeSecret;
use serde::Serialize;
use std::str::FromStr;

/// `client_assertion_type` of a JWT assertion.
pub const ASSERTION_TYPE: &str = "urn:ietf:params:oauth:client-assertion-type:jwt-bearer";

/// How long an assertion is valid: long enough for one request, short enough that a
/// copy is soon worthless.
pub const LIFETIME_SECS: i64 = 60;

#[derive(Serialize)]
struct Claims<'a> {
    iss: &'a str,
    sub: &'a str,
    aud: &'a str,
    jti: &'a str,
    iat: i64,
    exp: i64,
}

/// The assertion: `iss` = `sub` = the client, `aud` = the token endpoint, a fresh `jti`,
/// `iat` now and `exp` [`LIFETIME_SECS`] later, the key's `kid` in the header. The error
/// says what is wrong without quoting the key.
pub fn client_assertion(
    key: &ClientKey,
    client_id: &str,
    token_endpoint: &str,
    now_secs: i64,
    jti: &str,
) -> Result<String, String> {
    let alg = jsonwebtoken::Algorithm::from_str(&key.alg)
        .map_err(|_| format!("client_key_alg `{}` is not a JWS alg", key.alg))?;
    let pem = key.pem.expose_secret().as_bytes();
    let encoding = match alg {
        jsonwebtoken::Algorithm::ES256 => jsonwebtoken::EncodingKey::from_ec_pem(pem),
        jsonwebtoken::Algorithm::EdDSA => jsonwebtoken::EncodingKey::from_ed_pem(pem),
        _ => jsonwebtoken::EncodingKey::from_rsa_pem(pem),
    }
    .map_err(|_| format!("client_key is not a PEM private key for {}", key.alg))?;
    let mut header = jsonwebtoken::Header::new(alg);
    header.kid = Some(key.kid.clone());
    let claims = Claims {
        iss: client_id,
        sub: client_id,
        aud: token_endpoint,
        jti,
        iat: now_secs,
        exp: now_secs.saturating_add(LIFETIME_SECS),
    };
    jsonwebtoken::encode(&header, &claims, &encoding)
        .map_err(|e| format!("cannot sign the client assertion with client_key ({e})"))
}

#[cfg(test)]
mod tests {
    use super::*;
    use base64::Engine;
    use base64::engine::general_purpose::URL_SAFE_NO_PAD;
    use secrecy::SecretString;

    fn part(token: &str, i: usize) -> serde_json::Value {
        let p = token.split('.').nth(i).unwrap();
        serde_json::from_slice(&URL_SAFE_NO_PAD.decode(p).unwrap()).unwrap()
    }

    #[test]
    fn the_assertion_names_the_client_the_endpoint_and_its_key() {
        // rcgen's default key: ECDSA P-256, PKCS#8 PEM.
        let pair = rcgen::KeyPair::generate().unwrap();
        let key = ClientKey {
            pem: SecretString::from(pem_of(&pair.serialize_der())),
            kid: "ck-1".into(),
            alg: "ES256".into(),
        };
        let token =
            client_assertion(&key, "web", "https://idp.example/token", 1_000, "j-1").unwrap();
        let header = part(&token, 0);
        assert_eq!(header["alg"], "ES256");
        assert_eq!(header["kid"], "ck-1");
        assert_eq!(
            part(&token, 1),
            serde_json::json!({"iss": "web", "sub": "web", "aud": "https://idp.example/token",
                "jti": "j-1", "iat": 1_000, "exp": 1_060})
        );
        // The signature verifies with the public key.
        let public = jsonwebtoken::DecodingKey::from_ec_der(pair.public_key_raw());
        let mut v = jsonwebtoken::Validation::new(jsonwebtoken::Algorithm::ES256);
        v.validate_exp = false;
        v.set_audience(&["https://idp.example/token"]);
        jsonwebtoken::decode::<serde_json::Value>(&token, &public, &v).unwrap();

        let check_err = |key: &ClientKey, fragment: &str| {
            let err = client_assertion(key, "web", "https://i/t", 1, "j").unwrap_err();
            assert!(err.contains(fragment), "{err}");
            assert!(!err.contains("PRIVATE KEY"), "{err}");
        };
        check_err(
            &ClientKey {
                alg: "RS256".into(),
                ..key.clone()
            },
            "not a PEM private key for RS256",
        );
        check_err(
            &ClientKey {
                pem: SecretString::from(
                    "-----BEGIN PRIVATE KEY-----\nAAAA\n-----END PRIVATE KEY-----\n",
                ),
                ..key.clone()
            },
            "not a PEM private key for ES256",
        );
    }

    /// A PKCS#8 PEM of `der` (rcgen is built without its `pem` feature).
    fn pem_of(der: &[u8]) -> String {
        use base64::Engine;
        let b64 = base64::engine::general_purpose::STANDARD.encode(der);
        let lines: Vec<&str> = b64
            .as_bytes()
            .chunks(64)
            .map(|c| std::str::from_utf8(c).unwrap())
            .collect();
        format!(
            "-----BEGIN PRIVATE KEY-----\n{}\n-----END PRIVATE KEY-----\n",
            lines.join("\n")
        )
    }
}
