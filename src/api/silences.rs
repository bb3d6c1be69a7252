//! `/v1/silences`: list, create and delete the silences the daemon reads from the state
//! directory each round (next to those of probes.toml, which this API neither lists nor
//! changes).
//!
//! Each request opens the state database in [`ApiState::state_dir`] on the blocking pool:
//! `GET` read-only (it never writes, and a missing database is an empty list), `POST` and
//! `DELETE` read-write (the daemon owns the schema, and either side may create it first).
//! A silence may last at most `[api] max_silence` (30 days by default) and start at most
//! [`MAX_START_AHEAD`] from now.

use super::{ApiState, error, known_tenant, parse_code, parse_severity};
use crate::alert::{Silence, SubjectPattern};
use crate::model::{Code, Severity, Timestamp};
use crate::store::{Store, StoreError};
use axum::body::Bytes;
use axum::extract::{Path, State};
use axum::http::StatusCode;
use axum::response::{IntoResponse, Json, Response};
use serde::{Deserialize, Serialize};
use serde_json::json;
use std::path::PathBuf;
use std::time::Duration;

/// How far ahead a silence may start.
pub const MAX_START_AHEAD: Duration = Duration::from_secs(365 * 24 * 3600);

/// The body of `POST /v1/silences`. Everything is a string so that every problem can be
/// reported at once rather than the first type error.
#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct NewSilence {
    pub tenant: Option<String>,
    pub code: Option<String>,
    pub severity: Option<String>,
    /// A subject pattern like `domain=io* path=cdn`.
    pub subject: Option<String>,
    /// RFC 3339 in UTC (`2026-11-26T03:00:00Z`); default: now.
    pub starts: Option<String>,
    /// RFC 3339 in UTC, or a duration counted from `starts` (`2h`, `30m`, `1d 12h`).
    pub ends: Option<String>,
    pub created_by: Option<String>,
    pub comment: Option<String>,
}

/// A silence as the API shows it: times in RFC 3339.
#[derive(Debug, Serialize)]
pub struct SilenceOut {
    pub id: String,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub tenant: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub code: Option<Code>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub severity: Option<Severity>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub subject: Option<SubjectPattern>,
    pub starts: String,
    pub ends: String,
    pub created_by: String,
    pub comment: String,
    /// Whether it mutes now (false: it starts later).
    pub active: bool,
}

impl SilenceOut {
    pub fn new(s: Silence, now: Timestamp) -> SilenceOut {
        SilenceOut {
            active: s.is_active(now),
            starts: s.starts.to_rfc3339(),
            ends: s.ends.to_rfc3339(),
            id: s.id,
            tenant: s.tenant,
            code: s.code,
            severity: s.severity,
            subject: s.subject,
            created_by: s.created_by,
            comment: s.comment,
        }
    }
}

/// A set, non-blank field, trimmed.
fn present(v: &Option<String>) -> Option<&str> {
    v.as_deref().map(str::trim).filter(|s| !s.is_empty())
}

fn parse_time(s: &str) -> Option<Timestamp> {
    Timestamp::from_system_time(humantime::parse_rfc3339_weak(s.trim()).ok()?)
}

/// Checks `body` against the configured tenants and `now`: the silence to store (without
/// its id), or every problem found.
pub fn validate(
    body: &NewSilence,
    tenants: &[&str],
    now: Timestamp,
    max_length: Duration,
) -> Result<Silence, Vec<String>> {
    let mut problems = Vec::new();
    let tenant = present(&body.tenant).map(str::to_owned);
    if let Some(t) = &tenant
        && let Err(message) = known_tenant(tenants, t)
    {
        problems.push(format!("tenant: {message}"));
    }
    let code = present(&body.code).and_then(|c| {
        parse_code(c)
            .map_err(|message| problems.push(format!("code: {message}")))
            .ok()
    });
    let severity = present(&body.severity).and_then(|s| {
        parse_severity(s)
            .map_err(|message| problems.push(format!("severity: {message}")))
            .ok()
    });
    let subject = present(&body.subject).and_then(|p| match SubjectPattern::parse(p) {
        Ok(p) => Some(p),
        Err(e) => {
            problems.push(format!("subject: {e}"));
            None
        }
    });
    if [&body.tenant, &body.code, &body.severity, &body.subject]
        .iter()
        .all(|v| present(v).is_none())
    {
        problems.push(
            "no matcher: set at least one of tenant, code, severity or subject (a silence of everything is not allowed)"
                .to_owned(),
        );
    }
    let starts = match present(&body.starts) {
        None => Some(now),
        Some(s) => {
            let t = parse_time(s);
            if t.is_none() {
                problems.push(format!(
                    "starts: `{s}` is not an RFC 3339 time in UTC like 2026-11-26T03:00:00Z"
                ));
            }
            t
        }
    };
    let ends = match present(&body.ends) {
        None => {
            problems.push(
                "ends: required: an RFC 3339 time in UTC (2026-11-26T05:00:00Z) or a duration from `starts` (2h)"
                    .to_owned(),
            );
            None
        }
        Some(s) => match (parse_time(s), humantime::parse_duration(s)) {
            (Some(t), _) => Some(t),
            (None, Ok(d)) => starts.map(|st| st.plus(d)),
            (None, Err(_)) => {
                problems.push(format!(
                    "ends: `{s}` is neither an RFC 3339 time in UTC (2026-11-26T05:00:00Z) nor a duration (2h)"
                ));
                None
            }
        },
    };
    if let (Some(st), Some(en)) = (starts, ends) {
        if en <= st {
            problems.push(format!(
                "ends: {en} is not after starts ({st}): a silence must last"
            ));
        } else if en <= now {
            problems.push(format!("ends: {en} is in the past"));
        } else if en.since(st) > max_length {
            problems.push(format!(
                "ends: the silence would last {}, longer than [api] max_silence ({}): end it sooner, or raise max_silence",
                humantime::format_duration(en.since(st)),
                humantime::format_duration(max_length)
            ));
        }
        if st.since(now) > MAX_START_AHEAD {
            problems.push(format!(
                "starts: {st} is more than {} ahead",
                humantime::format_duration(MAX_START_AHEAD)
            ));
        }
    }
    let created_by = present(&body.created_by);
    if created_by.is_none() {
        problems.push("created_by: required: who makes this silence".to_owned());
    }
    let comment = present(&body.comment);
    if comment.is_none() {
        problems.push("comment: required: why (a ticket, a planned change)".to_owned());
    }
    match (starts, ends, problems.is_empty()) {
        (Some(starts), Some(ends), true) => Ok(Silence {
            id: String::new(),
            tenant,
            code,
            severity,
            subject,
            starts,
            ends,
            created_by: created_by.unwrap_or_default().to_owned(),
            comment: comment.unwrap_or_default().to_owned(),
        }),
        _ => Err(problems),
    }
}

/// A fresh id for a silence made through the API.
fn new_id(now: Timestamp) -> String {
    format!("api-{}-{:08x}", now.0, fastrand::u32(..))
}

fn unavailable() -> Response {
    error(
        StatusCode::SERVICE_UNAVAILABLE,
        "silences need the state directory, and this server has none",
    )
}

/// Runs `f` on the state database on the blocking pool.
async fn with_store<T: Send + 'static>(
    dir: PathBuf,
    f: impl FnOnce(&mut Store) -> Result<T, StoreError> + Send + 'static,
) -> Result<T, Response> {
    let res = tokio::task::spawn_blocking(move || {
        let mut store = Store::open(&dir)?;
        f(&mut store)
    })
    .await;
    match res {
        Ok(Ok(v)) => Ok(v),
        Ok(Err(e)) => Err(error(StatusCode::INTERNAL_SERVER_ERROR, e.to_string())),
        Err(e) => Err(error(StatusCode::INTERNAL_SERVER_ERROR, e.to_string())),
    }
}

/// `GET /v1/silences`: active and future silences, by id. Reads only: the database is
/// opened read-only, and none yet means no silences.
pub async fn list(State(state): State<ApiState>) -> Response {
    let Some(dir) = state.state_dir.clone() else {
        return unavailable();
    };
    let now = state.clock.now();
    let read = tokio::task::spawn_blocking(move || match Store::open_read_only(&dir) {
        Ok(store) => store.silences(now),
        Err(StoreError::Missing { .. }) => Ok(Vec::new()),
        Err(e) => Err(e),
    })
    .await;
    let read = match read {
        Ok(Ok(list)) => Ok(list),
        Ok(Err(e)) => Err(error(StatusCode::INTERNAL_SERVER_ERROR, e.to_string())),
        Err(e) => Err(error(StatusCode::INTERNAL_SERVER_ERROR, e.to_string())),
    };
    match read {
        Ok(list) => {
            let silences: Vec<SilenceOut> =
                list.into_iter().map(|s| SilenceOut::new(s, now)).collect();
            Json(json!({ "silences": silences })).into_response()
        }
        Err(resp) => resp,
    }
}

/// `POST /v1/silences`: 201 with the stored silence, 400 naming every problem.
pub async fn create(State(state): State<ApiState>, body: Bytes) -> Response {
    let Some(dir) = state.state_dir.clone() else {
        return unavailable();
    };
    let now = state.clock.now();
    let parsed = serde_json::from_slice::<NewSilence>(&body)
        .map_err(|e| vec![format!("body: not a silence object: {e}")]);
    let (tenants, max_length): (Vec<String>, Duration) = super::read(&state, |_, config| {
        let names = config.tenants.iter().map(|t| t.name.clone()).collect();
        (names, config.api.max_silence)
    });
    let tenants: Vec<&str> = tenants.iter().map(String::as_str).collect();
    let silence = parsed.and_then(|b| validate(&b, &tenants, now, max_length));
    let mut silence = match silence {
        Ok(s) => s,
        Err(problems) => {
            return (
                StatusCode::BAD_REQUEST,
                Json(json!({
                    "error": format!("invalid silence: {}", problems.join("; ")),
                    "problems": problems,
                })),
            )
                .into_response();
        }
    };
    silence.id = new_id(now);
    let stored = silence.clone();
    match with_store(dir, move |s| s.put_silence(&stored, now)).await {
        Ok(()) => (StatusCode::CREATED, Json(SilenceOut::new(silence, now))).into_response(),
        Err(resp) => resp,
    }
}

/// `DELETE /v1/silences/{id}`: 204, or 404 for an unknown (or already deleted) id.
pub async fn delete(State(state): State<ApiState>, Path(id): Path<String>) -> Response {
    let Some(dir) = state.state_dir.clone() else {
        return unavailable();
    };
    let key = id.clone();
    match with_store(dir, move |s| s.delete_silence(&key)).await {
        Ok(true) => StatusCode::NO_CONTENT.into_response(),
        Ok(false) => error(
            StatusCode::NOT_FOUND,
            format!(
                "no silence `{id}`: GET /v1/silences lists them (silences from probes.toml cannot be deleted here)"
            ),
        ),
        Err(resp) => resp,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const NOW: Timestamp = Timestamp(1_790_000_000_000);
    const MAX: Duration = crate::config::DEFAULT_MAX_SILENCE;

    fn body(v: serde_json::Value) -> NewSilence {
        serde_json::from_value(v).unwrap()
    }

    #[test]
    fn a_good_silence() {
        let s = validate(
            &body(json!({
                "tenant": "acme", "code": "kid_missing", "subject": "domain=io path=cdn",
                "ends": "2h", "created_by": "sre", "comment": "INC-1"
            })),
            &["acme"],
            NOW,
            MAX,
        )
        .unwrap();
        assert_eq!(s.starts, NOW);
        assert_eq!(s.ends, NOW.plus_secs(7200));
        assert_eq!(s.code, Some(Code::KidMissing));
        assert_eq!(s.subject.unwrap().to_string(), "domain=io path=cdn");
        let later = validate(
            &body(json!({
                "severity": "high", "starts": "2027-01-15T08:00:00Z",
                "ends": "2027-01-15T10:00:00Z", "created_by": "sre", "comment": "window"
            })),
            &["acme"],
            NOW,
            MAX,
        )
        .unwrap();
        assert_eq!(later.ends.0 - later.starts.0, 7_200_000);
        assert!(later.starts > NOW);
        assert_eq!(later.starts.to_rfc3339(), "2027-01-15T08:00:00Z");
    }

    #[test]
    fn every_problem_is_named() {
        let problems = validate(
            &body(json!({
                "tenant": "nobody", "code": "kid_gone", "severity": "urgent",
                "subject": "host=x", "starts": "tomorrow", "ends": "soon"
            })),
            &["acme", "globex"],
            NOW,
            MAX,
        )
        .unwrap_err();
        let text = problems.join("\n");
        for want in [
            "tenant:",
            "code:",
            "severity:",
            "subject:",
            "starts:",
            "ends:",
            "created_by:",
            "comment:",
        ] {
            assert!(text.contains(want), "no `{want}` in:\n{text}");
        }
        assert_eq!(problems.len(), 8, "{text}");
        let empty = validate(&NewSilence::default(), &["acme"], NOW, MAX).unwrap_err();
        assert!(
            empty.iter().any(|p| p.starts_with("no matcher")),
            "{empty:?}"
        );
        assert!(empty.iter().any(|p| p.starts_with("ends: required")));
        let backwards = validate(
            &body(json!({
                "tenant": "acme", "starts": "2027-01-15T08:00:00Z",
                "ends": "2027-01-15T07:00:00Z", "created_by": "a", "comment": "b"
            })),
            &["acme"],
            NOW,
            MAX,
        )
        .unwrap_err();
        assert_eq!(backwards.len(), 1, "{backwards:?}");
        assert!(backwards[0].contains("not after starts"));
        let past = validate(
            &body(json!({
                "tenant": "acme", "starts": "2020-01-01T00:00:00Z",
                "ends": "1h", "created_by": "a", "comment": "b"
            })),
            &["acme"],
            NOW,
            MAX,
        )
        .unwrap_err();
        assert!(past[0].contains("in the past"), "{past:?}");
    }

    #[test]
    fn silence_length_and_start_are_bounded() {
        let check = |starts: Option<&str>, ends: &str, max: Duration, want: Option<&str>| {
            let mut v = json!({"tenant": "acme", "ends": ends, "created_by": "a", "comment": "b"});
            if let Some(s) = starts {
                v["starts"] = json!(s);
            }
            match (validate(&body(v), &["acme"], NOW, max), want) {
                (Ok(_), None) => {}
                (Err(p), Some(fragment)) => {
                    assert_eq!(p.len(), 1, "{p:?}");
                    assert!(p[0].contains(fragment), "{ends}: {p:?}");
                }
                (got, want) => panic!("{starts:?}..{ends}: got {got:?}, want {want:?}"),
            }
        };
        check(None, "30d", MAX, None);
        check(
            None,
            "30d 1s",
            MAX,
            Some("longer than [api] max_silence (30days)"),
        );
        check(
            None,
            "8000-01-01T00:00:00Z",
            MAX,
            Some("longer than [api] max_silence"),
        );
        check(None, "9999-12-31T23:59:59Z", MAX, Some("max_silence"));
        check(None, "2h", Duration::from_secs(3600), Some("would last 2h"));
        check(None, "1h", Duration::from_secs(3600), None);
        // A window planned ahead is fine; one more than a year ahead is not.
        check(Some("2027-01-15T08:00:00Z"), "2h", MAX, None);
        check(Some("8000-01-01T00:00:00Z"), "2h", MAX, Some("starts:"));
    }
}
