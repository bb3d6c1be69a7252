//! `keycanary status`: what the state directory says about a daemon — when its last full
//! round finished, its open incidents, the outbox (pending, failing) and dead letters —
//! rendered as text or JSON. Pure: the caller reads the store and passes `now`.
//!
//! It does not ask the daemon anything (it works with the daemon stopped, or hung) and it
//! changes nothing: the store is opened read-only.

use super::Format;
use crate::alert::state::Incident;
use crate::clock;
use crate::config::Config;
use crate::detect::profiles::human;
use crate::detect::stateful::STALE_INTERVALS;
use crate::model::Timestamp;
use crate::store::{StatusReport, Store};
use anyhow::Context;
use serde_json::json;
use std::fmt::Write as _;
use std::process::ExitCode;
use std::time::Duration;

/// The command: read the state directory, print, exit 1 when [`problems`] finds any.
pub(super) fn run(cfg: &Config, format: Format) -> anyhow::Result<ExitCode> {
    let dir = &cfg.settings.state_dir;
    let report = Store::open_read_only(dir)
        .and_then(|s| s.status())
        .with_context(|| format!("cannot read the state in {}", dir.display()))?;
    let (now, interval) = (clock::system().now(), cfg.settings.interval);
    match format {
        Format::Text => print!(
            "state: {}\n{}",
            dir.display(),
            render_text(&report, interval, now)
        ),
        Format::Json => println!("{:#}", render_json(&report, interval, now)),
    }
    Ok(if problems(&report, interval, now).is_empty() {
        ExitCode::SUCCESS
    } else {
        ExitCode::from(1)
    })
}

/// What needs a person: dead letters, or no full round for [`STALE_INTERVALS`] intervals
/// (the daemon is stopped or stuck).
pub fn problems(r: &StatusReport, interval: Duration, now: Timestamp) -> Vec<String> {
    let mut out = Vec::new();
    match r.last_round {
        None => out.push("no full round has been committed yet".to_owned()),
        Some(round) => {
            let age = now.since(round.finished_at);
            if age > interval * STALE_INTERVALS {
                out.push(format!(
                    "the last full round finished {} ago (more than {STALE_INTERVALS} × the {} interval): is the daemon running?",
                    human(age),
                    human(interval)
                ));
            }
        }
    }
    if !r.dead.is_empty() {
        out.push(format!(
            "{} dead letter(s): notifications a receiver refused for good; fix the channel (see below)",
            r.dead.len()
        ));
    }
    out
}

fn incident_line(i: &Incident) -> String {
    let codes: Vec<&str> = i.members.iter().map(|m| m.finding.code.as_str()).collect();
    let paged = match &i.sent {
        Some(s) => format!("paged ({}) at {}", s.severity, s.at),
        None => "not paged (muted)".to_owned(),
    };
    format!(
        "{}  since {}, {paged}: {}  [{}]",
        i.group,
        i.since,
        codes.join(", "),
        i.dedup_key
    )
}

/// The text report.
pub fn render_text(r: &StatusReport, interval: Duration, now: Timestamp) -> String {
    let mut out = String::new();
    let _ = match r.last_round {
        Some(round) => writeln!(
            out,
            "last full round: #{} finished {} ({} ago; interval {})",
            round.number,
            round.finished_at,
            human(now.since(round.finished_at)),
            human(interval)
        ),
        None => writeln!(out, "last full round: none yet"),
    };
    let _ = writeln!(out, "open incidents: {}", r.alert_state.incidents.len());
    for i in &r.alert_state.incidents {
        let _ = writeln!(out, "  {}", incident_line(i));
    }
    let _ = write!(out, "outbox: {} pending, {} failing", r.pending, r.retrying);
    let _ = match r.oldest_pending {
        Some(t) => writeln!(out, ", oldest queued {} ago", human(now.since(t))),
        None => writeln!(out),
    };
    let _ = writeln!(out, "dead letters: {}", r.dead.len());
    for d in &r.dead {
        let _ = writeln!(
            out,
            "  {}  channel {}, {} attempt(s), dead since {}: {}",
            d.id,
            d.channel,
            d.attempts,
            d.dead_at.map_or_else(String::new, |t| t.to_string()),
            d.last_error.as_deref().unwrap_or("")
        );
    }
    let problems = problems(r, interval, now);
    if problems.is_empty() {
        let _ = writeln!(out, "ok");
    }
    for p in problems {
        let _ = writeln!(out, "PROBLEM: {p}");
    }
    out
}

/// The JSON report. Fields are added, never renamed.
pub fn render_json(r: &StatusReport, interval: Duration, now: Timestamp) -> serde_json::Value {
    json!({
        "last_round": r.last_round.map(|round| json!({
            "number": round.number,
            "started_at": round.started_at.to_string(),
            "finished_at": round.finished_at.to_string(),
            "age_seconds": now.since(round.finished_at).as_secs(),
        })),
        "interval_seconds": interval.as_secs(),
        "incidents": r.alert_state.incidents.iter().map(|i| json!({
            "group": i.group,
            "dedup_key": i.dedup_key,
            "since": i.since.to_string(),
            "paged": i.sent.is_some(),
            "codes": i.members.iter().map(|m| m.finding.code).collect::<Vec<_>>(),
        })).collect::<Vec<_>>(),
        "outbox": {
            "pending": r.pending,
            "failing": r.retrying,
            "oldest_pending_age_seconds": r.oldest_pending.map(|t| now.since(t).as_secs()),
        },
        "dead_letters": r.dead.iter().map(|d| json!({
            "id": d.id,
            "channel": d.channel,
            "attempts": d.attempts,
            "dead_at": d.dead_at.map(|t| t.to_string()),
            "error": d.last_error,
        })).collect::<Vec<_>>(),
        "problems": problems(r, interval, now),
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::store::{OutboxRow, RoundRecord};

    const NOW: Timestamp = Timestamp(1_795_651_200_000);

    fn report(round_age_secs: Option<i64>, dead: usize) -> StatusReport {
        StatusReport {
            last_round: round_age_secs.map(|a| RoundRecord {
                number: 42,
                started_at: NOW.plus_secs(-a - 1),
                finished_at: NOW.plus_secs(-a),
            }),
            pending: 1,
            retrying: 1,
            oldest_pending: Some(NOW.plus_secs(-90)),
            dead: (0..dead)
                .map(|i| OutboxRow {
                    id: format!("acme/1/firing/{i}@hook"),
                    channel: "hook".into(),
                    dedup_key: "acme/1".into(),
                    payload: "{}".into(),
                    created_at: NOW.plus_secs(-100),
                    attempts: 1,
                    next_attempt_at: NOW.plus_secs(-100),
                    last_error: Some("receiver answered 404".into()),
                    dead_at: Some(NOW.plus_secs(-99)),
                })
                .collect(),
            ..Default::default()
        }
    }

    #[test]
    fn problems_table() {
        let interval = Duration::from_secs(30);
        let check = |r: StatusReport, want: &[&str]| {
            let got = problems(&r, interval, NOW);
            assert_eq!(got.len(), want.len(), "{got:?}");
            for (g, w) in got.iter().zip(want) {
                assert!(g.contains(w), "{g} should contain {w}");
            }
        };
        check(report(Some(10), 0), &[]);
        check(report(Some(90), 0), &[]);
        check(
            report(Some(91), 0),
            &["1m 31s ago (more than 3 × the 30s interval): is the daemon running"],
        );
        check(report(None, 0), &["no full round"]);
        check(report(Some(10), 2), &["2 dead letter(s)"]);
    }

    #[test]
    fn text_lists_outbox_and_dead_letters() {
        let text = render_text(&report(Some(10), 1), Duration::from_secs(30), NOW);
        assert!(text.contains("last full round: #42"), "{text}");
        assert!(text.contains("10s ago"), "{text}");
        assert!(
            text.contains("outbox: 1 pending, 1 failing, oldest queued 1m 30s ago"),
            "{text}"
        );
        assert!(
            text.contains("acme/1/firing/0@hook  channel hook, 1 attempt(s)"),
            "{text}"
        );
        assert!(text.contains("receiver answered 404"), "{text}");
        assert!(text.contains("PROBLEM: 1 dead letter(s)"), "{text}");
        let ok = render_text(&report(Some(10), 0), Duration::from_secs(30), NOW);
        assert!(ok.ends_with("ok\n"), "{ok}");
        let json = render_json(&report(Some(10), 1), Duration::from_secs(30), NOW);
        assert_eq!(json["outbox"]["pending"], 1);
        assert_eq!(json["dead_letters"][0]["channel"], "hook");
        assert_eq!(json["problems"].as_array().unwrap().len(), 1);
    }

    /// Both shapes a script meets (a busy state directory and an empty one) keep every
    /// documented field with its type.
    #[test]
    fn json_keeps_its_published_contract() {
        use crate::alert::state::{GroupKey, fixtures};
        let mut busy = report(Some(10), 1);
        let firing = fixtures::firing();
        busy.alert_state.incidents.push(Incident {
            group: GroupKey {
                tenant: "acme".into(),
                code: Some(crate::model::Code::StaleEdge),
            },
            dedup_key: firing.dedup_key.clone(),
            since: firing.since,
            fired_at: firing.at,
            sent: None,
            members: firing.findings,
        });
        let mut empty = report(None, 0);
        empty.oldest_pending = None;
        let interval = Duration::from_secs(30);
        crate::contract::assert_all_keep(
            "`status --format json`",
            &[
                render_json(&busy, interval, NOW),
                render_json(&empty, interval, NOW),
            ],
            include_str!("../../tests/contracts/status.contract"),
        );
    }
}
