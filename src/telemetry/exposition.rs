//! The Prometheus text exposition format 0.0.4: metric families as plain data
//! ([`Family`], [`Sample`], [`HistogramSample`]) and [`encode`], which writes them out
//! with HELP and TYPE lines, escaped label values and Prometheus's number spelling.
//!
//! This is the format, not OpenMetrics: `promtool check metrics` (Prometheus 2.42) parses
//! only the former and refuses OpenMetrics `info` families and `_total` counter samples.
//!
//! Not here: which families keycanary exports or where their values come from
//! (`metrics`), nor how durations are accumulated into histograms (`durations`). This
//! file knows nothing about keycanary's model; it depends on the standard library only.

use std::fmt::Write;

/// `Content-Type` of [`encode`]'s output (and so of `/metrics`).
pub const CONTENT_TYPE: &str = "text/plain; version=0.0.4; charset=utf-8";

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum MetricType {
    Counter,
    Gauge,
    Histogram,
}

impl MetricType {
    fn as_str(self) -> &'static str {
        match self {
            MetricType::Counter => "counter",
            MetricType::Gauge => "gauge",
            MetricType::Histogram => "histogram",
        }
    }
}

/// One metric family: name, type, help, and its samples in output order. Gauges and
/// counters have `samples`; histograms have `histograms` (one per label set), which the
/// encoder writes as `_bucket`, `_sum` and `_count` series.
#[derive(Debug, Clone, PartialEq)]
pub struct Family {
    pub name: &'static str,
    pub kind: MetricType,
    pub help: &'static str,
    pub samples: Vec<Sample>,
    pub histograms: Vec<HistogramSample>,
}

#[derive(Debug, Clone, PartialEq)]
pub struct Sample {
    pub labels: Vec<(&'static str, String)>,
    pub value: f64,
}

/// Labels of one series, in output order.
pub use crate::snapshot::durations::Labels;

/// One label set of a histogram family, as the encoder writes it: cumulative bucket
/// counts, their sum and count.
#[derive(Debug, Clone, PartialEq)]
pub struct HistogramSample {
    pub labels: Labels,
    /// `(le, observations <= le)` in increasing `le`, `+Inf` last (Prometheus's `_bucket`
    /// series: cumulative, so the `+Inf` bucket equals `count`).
    pub buckets: Vec<(f64, u64)>,
    pub sum: f64,
    pub count: u64,
}

impl Family {
    pub fn gauge(name: &'static str, help: &'static str) -> Family {
        Family {
            name,
            kind: MetricType::Gauge,
            help,
            samples: Vec::new(),
            histograms: Vec::new(),
        }
    }
    pub fn counter(name: &'static str, help: &'static str) -> Family {
        Family {
            kind: MetricType::Counter,
            ..Family::gauge(name, help)
        }
    }
    pub fn histogram(name: &'static str, help: &'static str) -> Family {
        Family {
            kind: MetricType::Histogram,
            ..Family::gauge(name, help)
        }
    }
    pub fn push(&mut self, labels: &[(&'static str, &str)], value: f64) {
        self.samples.push(Sample {
            labels: labels.iter().map(|(k, v)| (*k, v.to_string())).collect(),
            value,
        });
    }
    /// `self` with one more sample (for families built in one expression).
    pub fn with(mut self, labels: &[(&'static str, &str)], value: f64) -> Family {
        self.push(labels, value);
        self
    }
}

/// The Prometheus text format 0.0.4 of `families`.
pub fn encode(families: &[Family]) -> String {
    // About 110 bytes a series at fleet size; reserving avoids regrowing a body of
    // megabytes a dozen times.
    let series_count: usize = families
        .iter()
        .map(|f| {
            f.samples.len()
                + f.histograms
                    .iter()
                    .map(|h| h.buckets.len() + 2)
                    .sum::<usize>()
        })
        .sum();
    let mut out = String::with_capacity(series_count * 110 + families.len() * 160);
    for f in families {
        write_header(&mut out, f);
        write_samples(&mut out, f);
    }
    out
}

/// The HELP and TYPE lines of `f`.
pub fn write_header(out: &mut String, f: &Family) {
    let _ = writeln!(out, "# HELP {} {}", f.name, escape_help(f.help));
    let _ = writeln!(out, "# TYPE {} {}", f.name, f.kind.as_str());
}

/// The sample lines of `f` (a histogram's `_bucket`, `_sum` and `_count` series), without
/// its header: a family's samples may be written in parts, one after another.
pub fn write_samples(out: &mut String, f: &Family) {
    for s in &f.samples {
        series(out, f.name, "", &s.labels, None, s.value);
    }
    for h in &f.histograms {
        for &(le, n) in &h.buckets {
            let le = number(le);
            series(out, f.name, "_bucket", &h.labels, Some(&le), n as f64);
        }
        series(out, f.name, "_sum", &h.labels, None, h.sum);
        series(out, f.name, "_count", &h.labels, None, h.count as f64);
    }
}

/// One sample line: `name+suffix{labels[,le]} value`, written straight into `out`.
fn series(
    out: &mut String,
    name: &str,
    suffix: &str,
    labels: &[(&'static str, String)],
    le: Option<&str>,
    value: f64,
) {
    out.push_str(name);
    out.push_str(suffix);
    let le = le.map(|le| ("le", le));
    let all = labels.iter().map(|(k, v)| (*k, v.as_str())).chain(le);
    for (i, (k, v)) in all.enumerate() {
        out.push(if i == 0 { '{' } else { ',' });
        out.push_str(k);
        out.push_str("=\"");
        push_label_value(out, v);
        out.push('"');
    }
    if !labels.is_empty() || le.is_some() {
        out.push('}');
    }
    out.push(' ');
    push_number(out, value);
    out.push('\n');
}

/// A label value with `\`, `"` and newlines escaped, appended to `out`.
fn push_label_value(out: &mut String, v: &str) {
    if !v.contains(['\\', '"', '\n']) {
        out.push_str(v);
        return;
    }
    for c in v.chars() {
        match c {
            '\\' => out.push_str("\\\\"),
            '"' => out.push_str("\\\""),
            '\n' => out.push_str("\\n"),
            c => out.push(c),
        }
    }
}

#[cfg(test)]
fn escape_label(s: &str) -> String {
    let mut out = String::new();
    push_label_value(&mut out, s);
    out
}

fn escape_help(s: &str) -> String {
    s.replace('\\', "\\\\").replace('\n', "\\n")
}

/// A sample value as Prometheus spells it: `NaN`, `+Inf`, `-Inf`, else Rust's shortest
/// round-tripping decimal (`1`, `0.25`).
pub fn number(v: f64) -> String {
    let mut out = String::new();
    push_number(&mut out, v);
    out
}

/// [`number`], appended to `out` without a temporary string.
fn push_number(out: &mut String, v: f64) {
    if v.is_nan() {
        out.push_str("NaN");
    } else if v.is_infinite() {
        out.push_str(if v > 0.0 { "+Inf" } else { "-Inf" });
    } else {
        let _ = write!(out, "{v}");
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn encoding_of_values_and_labels() {
        let check = |v: f64, want: &str| assert_eq!(number(v), want);
        check(1.0, "1");
        check(0.25, "0.25");
        check(f64::NAN, "NaN");
        check(f64::INFINITY, "+Inf");
        check(f64::NEG_INFINITY, "-Inf");
        assert_eq!(escape_label("a\"b\\c\nd"), "a\\\"b\\\\c\\nd");
        assert_eq!(escape_help("a\\b\nc"), "a\\\\b\\nc");
    }

    fn check(families: &[Family], want: &str) {
        assert_eq!(encode(families), want, "{families:?}");
    }

    #[test]
    fn families_encode_as_text_format() {
        let histogram = |labels: &[(&'static str, &str)]| HistogramSample {
            labels: labels.iter().map(|(k, v)| (*k, (*v).to_owned())).collect(),
            buckets: vec![(0.5, 1), (1.0, 3), (f64::INFINITY, 4)],
            sum: 3.25,
            count: 4,
        };
        let table: &[(Vec<Family>, &str)] = &[
            (vec![], ""),
            // A family without samples still has HELP and TYPE.
            (
                vec![Family::gauge("g", "A gauge.")],
                "# HELP g A gauge.\n# TYPE g gauge\n",
            ),
            // No labels: no braces.
            (
                vec![Family::counter("c_total", "Counts.").with(&[], 7.0)],
                "# HELP c_total Counts.\n# TYPE c_total counter\nc_total 7\n",
            ),
            // Labels in the order given, values escaped; samples in the order pushed.
            (
                vec![
                    Family::gauge("g", "Help with \\ and\nnewline.")
                        .with(&[("a", "x\"y"), ("b", "")], 0.5)
                        .with(&[("a", "z")], f64::NAN),
                ],
                "# HELP g Help with \\\\ and\\nnewline.\n# TYPE g gauge\n\
                 g{a=\"x\\\"y\",b=\"\"} 0.5\ng{a=\"z\"} NaN\n",
            ),
            // Histograms: `_bucket` per bound with `le` last, then `_sum` and `_count`.
            (
                vec![Family {
                    histograms: vec![histogram(&[("v", "1")])],
                    ..Family::histogram("h_seconds", "Took.")
                }],
                "# HELP h_seconds Took.\n# TYPE h_seconds histogram\n\
                 h_seconds_bucket{v=\"1\",le=\"0.5\"} 1\n\
                 h_seconds_bucket{v=\"1\",le=\"1\"} 3\n\
                 h_seconds_bucket{v=\"1\",le=\"+Inf\"} 4\n\
                 h_seconds_sum{v=\"1\"} 3.25\nh_seconds_count{v=\"1\"} 4\n",
            ),
            // A histogram without labels still labels its buckets with `le`.
            (
                vec![Family {
                    histograms: vec![histogram(&[])],
                    ..Family::histogram("h", "H.")
                }],
                "# HELP h H.\n# TYPE h histogram\nh_bucket{le=\"0.5\"} 1\n\
                 h_bucket{le=\"1\"} 3\nh_bucket{le=\"+Inf\"} 4\nh_sum 3.25\nh_count 4\n",
            ),
            // Families in the order given.
            (
                vec![
                    Family::gauge("b", "B.").with(&[], 1.0),
                    Family::gauge("a", "A.").with(&[], 2.0),
                ],
                "# HELP b B.\n# TYPE b gauge\nb 1\n# HELP a A.\n# TYPE a gauge\na 2\n",
            ),
        ];
        for (families, want) in table {
            check(families, want);
        }
    }
}
