//! Tokens: decoding a JWT's header and claims without trusting it, and verifying its
//! signature against the keys each view served.
//!
//! The token string lives only for the round; what leaves this file is [`TokenInfo`]
//! (header, registered claims, per-view results), never the token.

use crate::model::wire;
use crate::model::{
    TokenCheck, TokenCheckResult, TokenClaims, TokenHeader, TokenInfo, TokenKind, ViewId,
};
use base64::Engine;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use serde_json::Value;
use std::collections::HashMap;
use std::str::FromStr;

/// A JWT split into its parts, header and claims decoded.
pub struct Jwt<'a> {
    pub kind: TokenKind,
    pub header: TokenHeader,
    pub claims: TokenClaims,
    /// The header's `kid` as sent, for looking it up in the served keys (`header.kid`
    /// is the cleaned, bounded form kept in the model).
    raw_kid: Option<String>,
    signing_input: &'a str,
    signature: &'a str,
}

/// Most audiences kept from a token's `aud` list.
const AUD_MAX: usize = 32;

/// Decodes a compact JWS. The error says what is wrong without echoing the token.
pub fn decode(kind: TokenKind, token: &str) -> Result<Jwt<'_>, String> {
    let mut parts = token.split('.');
    let (Some(h), Some(c), Some(s), None) =
        (parts.next(), parts.next(), parts.next(), parts.next())
    else {
        return Err(format!(
            "the {} is not a JWT (expected three dot-separated parts)",
            kind.as_str()
        ));
    };
    let header: Value = json_part(h).map_err(|e| format!("the {} header is {e}", kind.as_str()))?;
    let claims: Value =
        json_part(c).map_err(|e| format!("the {} payload is {e}", kind.as_str()))?;
    let Some(alg) = header.get("alg").and_then(Value::as_str) else {
        return Err(format!("the {} header has no `alg`", kind.as_str()));
    };
    let raw_kid = header.get("kid").and_then(Value::as_str).map(str::to_owned);
    let header = TokenHeader {
        alg: wire::ident(alg),
        kid: raw_kid.as_deref().map(wire::ident),
        typ: header.get("typ").and_then(Value::as_str).map(wire::ident),
    };
    let aud = match claims.get("aud") {
        Some(Value::String(s)) => vec![wire::ident(s)],
        Some(Value::Array(a)) => a
            .iter()
            .filter_map(Value::as_str)
            .take(AUD_MAX)
            .map(wire::ident)
            .collect(),
        _ => Vec::new(),
    };
    let num = |name: &str| {
        claims
            .get(name)
            .and_then(|v| v.as_i64().or_else(|| v.as_f64().map(|f| f as i64)))
    };
    let claims = TokenClaims {
        iss: claims.get("iss").and_then(Value::as_str).map(wire::ident),
        aud,
        exp: num("exp"),
        nbf: num("nbf"),
        iat: num("iat"),
    };
    let signing_input = &token[..h.len() + 1 + c.len()];
    Ok(Jwt {
        kind,
        header,
        claims,
        raw_kid,
        signing_input,
        signature: s,
    })
}

fn json_part(part: &str) -> Result<Value, String> {
    let bytes = URL_SAFE_NO_PAD
        .decode(part)
        .map_err(|_| "not base64url".to_owned())?;
    let v: Value = serde_json::from_slice(&bytes).map_err(|_| "not JSON".to_owned())?;
    if v.is_object() {
        Ok(v)
    } else {
        Err("not a JSON object".to_owned())
    }
}

/// Keys one view served, raw JSON beside their kids; `None` when the view had no usable set.
pub struct ViewKeys<'a> {
    pub view: ViewId,
    pub keys: Option<&'a [Value]>,
}

impl Jwt<'_> {
    /// Verifies against every view and returns the decoded token with its results. Views
    /// that served the same body share one key slice (the probe parses each body once), so
    /// the signature is verified once per distinct slice and the result reused.
    pub fn check_against(&self, views: &[ViewKeys<'_>]) -> TokenInfo {
        let mut verified: HashMap<(usize, usize), TokenCheckResult> = HashMap::new();
        let checks = views
            .iter()
            .map(|v| {
                // Synchronous work: entering the span here holds no guard across an await.
                let span = tracing::info_span!(
                    "probe.verify",
                    token.kind = self.kind.as_str(),
                    kid = self.header.kid.as_deref(),
                    alg = %self.header.alg,
                    view = %v.view,
                    result = tracing::field::Empty,
                );
                let _entered = span.enter();
                let result = match v.keys {
                    Some(keys) => verified
                        .entry((keys.as_ptr() as usize, keys.len()))
                        .or_insert_with(|| self.verify(Some(keys)))
                        .clone(),
                    None => self.verify(None),
                };
                span.record("result", result.code());
                TokenCheck {
                    view: v.view.clone(),
                    result,
                }
            })
            .collect();
        TokenInfo {
            kind: self.kind,
            header: self.header.clone(),
            claims: self.claims.clone(),
            checks,
        }
    }

    fn verify(&self, keys: Option<&[Value]>) -> TokenCheckResult {
        let Some(keys) = keys else {
            return TokenCheckResult::ViewUnavailable;
        };
        let candidates: Vec<&Value> = match &self.raw_kid {
            Some(kid) => keys
                .iter()
                .filter(|k| k.get("kid").and_then(Value::as_str) == Some(kid))
                .collect(),
            None => keys.iter().collect(),
        };
        if candidates.is_empty() {
            return TokenCheckResult::KidMissing;
        }
        // An alg that `wire::ident` changed is not one jsonwebtoken knows either.
        let alg = match jsonwebtoken::Algorithm::from_str(&self.header.alg) {
            Ok(a)
                if !matches!(
                    a,
                    jsonwebtoken::Algorithm::HS256
                        | jsonwebtoken::Algorithm::HS384
                        | jsonwebtoken::Algorithm::HS512
                ) =>
            {
                a
            }
            _ => {
                return TokenCheckResult::SignatureInvalid {
                    reason: format!(
                        "alg `{}` cannot be verified with a public key",
                        self.header.alg
                    ),
                };
            }
        };
        let mut last = TokenCheckResult::SignatureInvalid {
            reason: "no key verified the signature".into(),
        };
        for key in candidates {
            match verify_with(alg, key, self.signing_input, self.signature) {
                Ok(true) => return TokenCheckResult::Verified,
                Ok(false) => {
                    last = TokenCheckResult::SignatureInvalid {
                        reason: "the signature does not verify with this key".into(),
                    }
                }
                Err(reason) => last = TokenCheckResult::KeyUnusable { reason },
            }
        }
        last
    }
}

fn verify_with(
    alg: jsonwebtoken::Algorithm,
    key: &Value,
    input: &str,
    signature: &str,
) -> Result<bool, String> {
    let jwk: jsonwebtoken::jwk::Jwk = serde_json::from_value(key.clone())
        .map_err(|e| format!("the key cannot be read as a JWK ({e})"))?;
    let family_ok = matches!(
        (&jwk.algorithm, alg.family()),
        (
            jsonwebtoken::jwk::AlgorithmParameters::RSA(_),
            jsonwebtoken::AlgorithmFamily::Rsa
        ) | (
            jsonwebtoken::jwk::AlgorithmParameters::EllipticCurve(_),
            jsonwebtoken::AlgorithmFamily::Ec
        ) | (
            jsonwebtoken::jwk::AlgorithmParameters::OctetKeyPair(_),
            jsonwebtoken::AlgorithmFamily::Ed
        )
    );
    if !family_ok {
        return Err(format!("the key's type does not fit alg {alg:?}"));
    }
    let key = jsonwebtoken::DecodingKey::from_jwk(&jwk)
        .map_err(|e| format!("the key is unusable ({e})"))?;
    jsonwebtoken::crypto::verify(signature, input.as_bytes(), &key, alg)
        .map_err(|e| format!("verification failed ({e})"))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn b64(v: &Value) -> String {
        URL_SAFE_NO_PAD.encode(serde_json::to_vec(v).unwrap())
    }

    #[test]
    fn decodes_header_and_claims_without_verifying() {
        let h = b64(&serde_json::json!({"alg": "RS256", "kid": "k1", "typ": "at+jwt"}));
        let c =
            b64(&serde_json::json!({"iss": "https://i", "aud": ["a", "b"], "exp": 10, "iat": 5.0}));
        let token = format!("{h}.{c}.c2ln");
        let jwt = decode(TokenKind::AccessToken, &token).unwrap();
        assert_eq!(jwt.header.kid.as_deref(), Some("k1"));
        assert_eq!(jwt.claims.aud, ["a", "b"]);
        assert_eq!(jwt.claims.iat, Some(5));
        assert_eq!(jwt.claims.nbf, None);
    }

    #[test]
    fn malformed_tokens_are_described_not_echoed() {
        let secretish = "opaque-access-token-value";
        let err = decode(TokenKind::AccessToken, secretish).err().unwrap();
        assert!(
            err.contains("not a JWT") && !err.contains(secretish),
            "{err}"
        );
        let err = decode(TokenKind::IdToken, "e30.!!.x").err().unwrap();
        assert!(err.contains("payload is not base64url"), "{err}");
        let err = decode(
            TokenKind::IdToken,
            &format!("{}.e30.x", b64(&serde_json::json!({"typ": "JWT"}))),
        )
        .err()
        .unwrap();
        assert!(err.contains("no `alg`"), "{err}");
    }

    #[test]
    fn kid_lookup_outcomes() {
        let h = b64(&serde_json::json!({"alg": "none", "kid": "k1"}));
        let token = format!("{h}.e30.");
        let jwt = decode(TokenKind::AccessToken, &token).unwrap();
        let other = [serde_json::json!({"kty": "RSA", "kid": "k2", "n": "AQAB", "e": "AQAB"})];
        let same = [serde_json::json!({"kty": "RSA", "kid": "k1", "n": "AQAB", "e": "AQAB"})];
        assert_eq!(jwt.verify(None), TokenCheckResult::ViewUnavailable);
        assert_eq!(jwt.verify(Some(&other)), TokenCheckResult::KidMissing);
        assert!(
            matches!(jwt.verify(Some(&same)), TokenCheckResult::SignatureInvalid { reason } if reason.contains("none"))
        );
    }
}
