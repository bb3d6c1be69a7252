//! What a request must pass before any handler sees it, so that a web page the operator
//! happens to visit cannot drive the API:
//!
//! - **`Host`** must be a loopback name (`localhost`, `*.localhost`), an IP address, or a
//!   name in `[api] allowed_hosts`; anything else is refused with 421. A DNS-rebinding
//!   page reaches the API under the attacker's own name, never under an IP literal.
//! - **Writes** (every method but GET and HEAD) are refused with 403 when they come from
//!   another site (`Sec-Fetch-Site: cross-site` or `same-site`, or an `Origin` that is not
//!   the `Host` itself), and with 415 unless their `Content-Type` is
//!   `application/json` (a page can send `text/plain` without asking, not JSON).
//! - Every request is bounded in time ([`REQUEST_TIMEOUT`], 408).
//!
//! The checks are pure functions of the request's method and headers, tested by table;
//! the middleware reads `allowed_hosts` from the running config, so a reload applies.

use super::{ApiState, error, read};
use crate::model::wire;
use axum::extract::{Request, State};
use axum::http::{HeaderMap, Method, StatusCode, header};
use axum::middleware::Next;
use axum::response::Response;
use std::net::IpAddr;
use std::time::Duration;

/// Longest time a request may take, body included, before it is answered 408.
pub const REQUEST_TIMEOUT: Duration = Duration::from_secs(30);

/// Why a request is refused: status and message.
pub(super) type Refusal = (StatusCode, String);

/// The host part of a `Host` header value (`[::1]:9464` → `::1`), lowercase, without a
/// trailing dot.
fn host_part(value: &str) -> String {
    let v = value.trim();
    let host = if let Some(rest) = v.strip_prefix('[') {
        rest.split(']').next().unwrap_or_default()
    } else {
        v.rsplit_once(':')
            .filter(|(_, port)| port.chars().all(|c| c.is_ascii_digit()))
            .map_or(v, |(h, _)| h)
    };
    host.trim_end_matches('.').to_ascii_lowercase()
}

/// Checks the `Host` header (absent: accepted; every browser sends one).
pub(super) fn check_host(headers: &HeaderMap, allowed: &[String]) -> Result<(), Refusal> {
    let Some(value) = headers.get(header::HOST) else {
        return Ok(());
    };
    let host = value.to_str().map(host_part).unwrap_or_default();
    let ok = host.parse::<IpAddr>().is_ok()
        || host == "localhost"
        || host.ends_with(".localhost")
        || allowed.contains(&host);
    if ok {
        return Ok(());
    }
    let shown = wire::text(&String::from_utf8_lossy(value.as_bytes()), 64);
    Err((
        StatusCode::MISDIRECTED_REQUEST,
        format!(
            "this API does not answer to the host `{shown}`: use an IP address or localhost, or add the name to [api] allowed_hosts"
        ),
    ))
}

/// Checks a write: not from another site, and JSON.
pub(super) fn check_write(method: &Method, headers: &HeaderMap) -> Result<(), Refusal> {
    if matches!(*method, Method::GET | Method::HEAD) {
        return Ok(());
    }
    let get = |name: &str| headers.get(name).map(|v| v.to_str().unwrap_or("\u{fffd}"));
    let cross = |why: String| {
        Err((
            StatusCode::FORBIDDEN,
            format!(
                "{why}: the API refuses writes from web pages of other sites; call it from a script or curl"
            ),
        ))
    };
    if let Some(site) = get("sec-fetch-site") {
        let site = site.trim().to_ascii_lowercase();
        if site == "cross-site" || site == "same-site" {
            return cross(format!("Sec-Fetch-Site is {site}"));
        }
    }
    if let Some(origin) = get("origin") {
        let host = get("host").unwrap_or_default().trim().to_ascii_lowercase();
        let lower = origin.trim().to_ascii_lowercase();
        let origin_host = lower
            .strip_prefix("http://")
            .or_else(|| lower.strip_prefix("https://"));
        if host.is_empty() || origin_host != Some(host.as_str()) {
            return cross(format!(
                "Origin `{}` is not this API's own",
                wire::text(origin, 64)
            ));
        }
    }
    let media = get("content-type")
        .unwrap_or_default()
        .split(';')
        .next()
        .unwrap_or_default()
        .trim()
        .to_ascii_lowercase();
    if media != "application/json" {
        return Err((
            StatusCode::UNSUPPORTED_MEDIA_TYPE,
            "writes need `Content-Type: application/json`".to_owned(),
        ));
    }
    Ok(())
}

/// The middleware: the host and write checks, then the handler within [`REQUEST_TIMEOUT`].
pub(super) async fn guard(State(state): State<ApiState>, req: Request, next: Next) -> Response {
    let allowed = read(&state, |_, config| config.api.allowed_hosts.clone());
    let checked =
        check_host(req.headers(), &allowed).and_then(|()| check_write(req.method(), req.headers()));
    if let Err((status, message)) = checked {
        return error(status, message);
    }
    match tokio::time::timeout(REQUEST_TIMEOUT, next.run(req)).await {
        Ok(resp) => resp,
        Err(_) => error(
            StatusCode::REQUEST_TIMEOUT,
            format!(
                "the request took longer than {} s",
                REQUEST_TIMEOUT.as_secs()
            ),
        ),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn headers(pairs: &[(&'static str, &str)]) -> HeaderMap {
        let mut h = HeaderMap::new();
        for (k, v) in pairs {
            h.append(*k, v.parse().unwrap());
        }
        h
    }

    #[test]
    fn hosts() {
        let allowed = ["keycanary.internal".to_owned()];
        let check = |host: Option<&str>, ok: bool| {
            let h = headers(&host.map(|v| ("host", v)).into_iter().collect::<Vec<_>>());
            let got = check_host(&h, &allowed);
            assert_eq!(got.is_ok(), ok, "{host:?}: {got:?}");
            if let Err((status, _)) = got {
                assert_eq!(status, StatusCode::MISDIRECTED_REQUEST);
            }
        };
        check(None, true);
        check(Some("127.0.0.1:9464"), true);
        check(Some("127.0.0.1"), true);
        check(Some("[::1]:9464"), true);
        check(Some("10.1.2.3:9464"), true);
        check(Some("localhost:9464"), true);
        check(Some("LOCALHOST"), true);
        check(Some("localhost.:9464"), true);
        check(Some("status.localhost:9464"), true);
        check(Some("keycanary.internal:9464"), true);
        check(Some("KeyCanary.Internal"), true);
        check(Some("attacker.example:9464"), false);
        check(Some("localhost.attacker.example"), false);
        check(Some("keycanary.internal.attacker.example"), false);
        check(Some("127.0.0.1.nip.io:9464"), false);
        check(Some(""), false);
    }

    #[test]
    fn writes() {
        let json = ("content-type", "application/json");
        let host = ("host", "127.0.0.1:9464");
        let check = |method: Method, pairs: &[(&'static str, &str)], want: Option<StatusCode>| {
            let got = check_write(&method, &headers(pairs)).err().map(|(s, _)| s);
            assert_eq!(got, want, "{method} {pairs:?}");
        };
        let post = || Method::POST;
        check(post(), &[host, json], None);
        check(
            post(),
            &[host, ("content-type", "application/json; charset=utf-8")],
            None,
        );
        check(post(), &[host, ("content-type", "Application/JSON")], None);
        check(Method::DELETE, &[host, json], None);
        check(post(), &[host], Some(StatusCode::UNSUPPORTED_MEDIA_TYPE));
        check(
            post(),
            &[host, ("content-type", "text/plain")],
            Some(StatusCode::UNSUPPORTED_MEDIA_TYPE),
        );
        check(
            post(),
            &[host, ("content-type", "application/x-www-form-urlencoded")],
            Some(StatusCode::UNSUPPORTED_MEDIA_TYPE),
        );
        check(
            Method::DELETE,
            &[host],
            Some(StatusCode::UNSUPPORTED_MEDIA_TYPE),
        );
        // Cross-site, whatever the content type.
        check(
            post(),
            &[host, json, ("origin", "https://evil.example")],
            Some(StatusCode::FORBIDDEN),
        );
        check(
            post(),
            &[host, json, ("origin", "null")],
            Some(StatusCode::FORBIDDEN),
        );
        check(
            post(),
            &[host, json, ("origin", "http://127.0.0.1:9465")],
            Some(StatusCode::FORBIDDEN),
        );
        check(
            post(),
            &[json, ("origin", "http://127.0.0.1:9464")],
            Some(StatusCode::FORBIDDEN),
        );
        check(
            post(),
            &[host, json, ("sec-fetch-site", "cross-site")],
            Some(StatusCode::FORBIDDEN),
        );
        check(
            post(),
            &[host, json, ("sec-fetch-site", "same-site")],
            Some(StatusCode::FORBIDDEN),
        );
        check(
            post(),
            &[
                host,
                ("content-type", "text/plain"),
                ("origin", "https://evil.example"),
            ],
            Some(StatusCode::FORBIDDEN),
        );
        // The API's own origin, or a request a user made directly.
        check(
            post(),
            &[host, json, ("origin", "http://127.0.0.1:9464")],
            None,
        );
        check(
            post(),
            &[host, json, ("sec-fetch-site", "same-origin")],
            None,
        );
        check(post(), &[host, json, ("sec-fetch-site", "none")], None);
        // Reads are never refused here.
        check(
            Method::GET,
            &[host, ("origin", "https://evil.example")],
            None,
        );
        check(Method::HEAD, &[("sec-fetch-site", "cross-site")], None);
    }
}
