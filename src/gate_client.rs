//! `keycanary gate --url`: ask a running daemon's gate endpoints. The answer is returned as
//! the daemon sent it (JSON), so the CLI prints exactly what the API says.
//!
//! Only the CLI uses this; the daemon never calls itself.

use anyhow::{Context, bail};
use secrecy::{ExposeSecret, SecretString};
use serde_json::Value;

/// `GET {base}/v1/gate/rotation?tenant=&kid=` or `/v1/gate/retirement?tenant=&kid=`.
/// 200 and 409 both carry an answer; anything else is an error.
pub async fn ask(
    base: &str,
    tenant: &str,
    kid: Option<&str>,
    retire: bool,
    bearer: Option<&SecretString>,
) -> anyhow::Result<Value> {
    let gate = if retire { "retirement" } else { "rotation" };
    let mut url = url::Url::parse(base).with_context(|| format!("--url `{base}` is not a URL"))?;
    url.set_path(&format!("/v1/gate/{gate}"));
    {
        let mut q = url.query_pairs_mut();
        q.append_pair("tenant", tenant);
        if let Some(k) = kid {
            q.append_pair("kid", k);
        }
    }
    let client = reqwest::Client::builder()
        .timeout(std::time::Duration::from_secs(30))
        .build()?;
    let mut req = client.get(url.clone());
    if let Some(token) = bearer {
        req = req.bearer_auth(token.expose_secret());
    }
    let resp = req
        .send()
        .await
        .with_context(|| format!("cannot reach the daemon at {base}"))?;
    let status = resp.status();
    let body: Value = resp
        .json()
        .await
        .with_context(|| format!("the daemon's answer to {url} is not JSON"))?;
    if status.as_u16() != 200 && status.as_u16() != 409 {
        bail!("the daemon answered HTTP {status}: {body}");
    }
    Ok(body)
}
