//! Prometheus' JSON answer to an instant query, read as hostile: `{"status": "success",
//! "data": {"resultType": "vector", "result": [{"metric": {…}, "value": [t, "v"]}]}}` and
//! nothing else. Pure; the body is already bounded by the caller.

use super::{MAX_SAMPLES, QueryError};
use crate::detect::gate::global::Sample;
use crate::model::wire;
use serde::Deserialize;
use std::collections::BTreeMap;

#[derive(Deserialize)]
struct Answer {
    status: String,
    #[serde(default)]
    data: Option<Data>,
    #[serde(default)]
    error: Option<String>,
}

#[derive(Deserialize)]
struct Data {
    #[serde(rename = "resultType")]
    result_type: String,
    result: Vec<Series>,
}

#[derive(Deserialize)]
struct Series {
    #[serde(default)]
    metric: BTreeMap<String, String>,
    value: (f64, String),
}

/// The samples of a `success` instant vector; anything else is [`QueryError::Garbage`].
/// A value that is not a number (`NaN`, `+Inf` included) is kept as such: the gate drops
/// what it cannot use.
pub fn parse_vector(body: &[u8]) -> Result<Vec<Sample>, QueryError> {
    let garbage = |m: String| QueryError::Garbage(wire::text(&m, wire::TEXT_MAX));
    let answer: Answer = serde_json::from_slice(body).map_err(|e| garbage(e.to_string()))?;
    if answer.status != "success" {
        let why = answer.error.unwrap_or_else(|| "no error given".into());
        return Err(garbage(format!("status `{}`: {why}", answer.status)));
    }
    let data = answer.data.ok_or_else(|| garbage("no `data`".into()))?;
    if data.result_type != "vector" {
        return Err(garbage(format!("a `{}`, not a `vector`", data.result_type)));
    }
    if data.result.len() > MAX_SAMPLES {
        return Err(garbage(format!(
            "{} samples, more than {MAX_SAMPLES}",
            data.result.len()
        )));
    }
    Ok(data
        .result
        .into_iter()
        .map(|s| Sample {
            labels: s.metric,
            value: s.value.1.trim().parse().unwrap_or(f64::NAN),
        })
        .collect())
}

/// The `error` of an error answer, cleaned and bounded.
pub(super) fn error_of(body: &[u8]) -> Option<String> {
    let answer: Answer = serde_json::from_slice(body).ok()?;
    answer.error.map(|e| wire::text(&e, wire::TEXT_MAX))
}

#[cfg(test)]
mod tests {
    use super::*;

    /// `body` → Ok(sample count and the first value) or Err(the message's start).
    fn check(body: &str, expected: Result<(usize, Option<f64>), &str>) {
        let got = parse_vector(body.as_bytes());
        match (&got, expected) {
            (Ok(samples), Ok((n, first))) => {
                assert_eq!(samples.len(), n, "{body}");
                let v = samples.first().map(|s| s.value);
                match (v, first) {
                    (Some(v), Some(f)) if f.is_nan() => assert!(v.is_nan(), "{body}"),
                    (v, f) => assert_eq!(v, f, "{body}"),
                }
            }
            (Err(e), Err(start)) => {
                let m = e.to_string();
                assert!(m.contains(start), "{m} / {start}");
            }
            _ => panic!("{body}: {got:?}"),
        }
    }

    #[test]
    fn instant_vectors_and_everything_else() {
        let ok = r#"{"status":"success","data":{"resultType":"vector","result":[{"metric":{"__name__":"keycanary_view_up","tenant":"acme"},"value":[1700000000.5,"1"]}]}}"#;
        check(ok, Ok((1, Some(1.0))));
        let empty = r#"{"status":"success","data":{"resultType":"vector","result":[]}}"#;
        check(empty, Ok((0, None)));
        let nan = r#"{"status":"success","data":{"resultType":"vector","result":[{"metric":{},"value":[1,"NaN"]}]}}"#;
        check(nan, Ok((1, Some(f64::NAN))));
        let words = r#"{"status":"success","data":{"resultType":"vector","result":[{"metric":{},"value":[1,"lots"]}]}}"#;
        check(words, Ok((1, Some(f64::NAN))));
        let table: &[(&str, &str)] = &[
            ("", "not an instant vector"),
            ("<html>502 Bad Gateway</html>", "not an instant vector"),
            ("[]", "not an instant vector"),
            (
                r#"{"status":"error","errorType":"bad_data","error":"parse error"}"#,
                "status `error`: parse error",
            ),
            (r#"{"status":"success"}"#, "no `data`"),
            (
                r#"{"status":"success","data":{"resultType":"matrix","result":[]}}"#,
                "a `matrix`, not a `vector`",
            ),
            (
                r#"{"status":"success","data":{"resultType":"vector","result":[{"metric":{},"value":"1"}]}}"#,
                "not an instant vector",
            ),
            (
                r#"{"status":"success","data":{"resultType":"vector","result":[{"metric":{"a":1},"value":[1,"1"]}]}}"#,
                "not an instant vector",
            ),
        ];
        for (body, start) in table {
            check(body, Err(start));
        }
        // Too many samples.
        let one = r#"{"metric":{},"value":[1,"1"]}"#;
        let many = format!(
            r#"{{"status":"success","data":{{"resultType":"vector","result":[{}]}}}}"#,
            vec![one; MAX_SAMPLES + 1].join(",")
        );
        check(&many, Err("more than"));
        // A control character in an error message is not passed on.
        let e = parse_vector(br#"{"status":"error","error":"bad\u001b[31m"}"#).unwrap_err();
        assert!(!e.to_string().contains('\u{1b}'), "{e}");
    }
}
