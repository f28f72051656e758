//! A writer for the Prometheus text exposition format (version 0.0.4).
//!
//! Most of `/metrics` is read from counters the server already keeps, at scrape time, and
//! written out here. The `metrics` facade cannot carry these: its counters are integers
//! (CPU seconds are not), and its histograms take raw observations, while the media-quality
//! histograms arrive already bucketed from the worker threads. Each family is written whole
//! (HELP, TYPE, then every sample), as the format requires.

use std::fmt::Write as _;
use switchboard_core::forward::Histogram;

/// The Prometheus metric type of a family.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Kind {
    /// Only goes up (resets on restart).
    Counter,
    /// Goes up and down.
    Gauge,
    /// Buckets, sum and count.
    Histogram,
}

impl Kind {
    fn as_str(self) -> &'static str {
        match self {
            Kind::Counter => "counter",
            Kind::Gauge => "gauge",
            Kind::Histogram => "histogram",
        }
    }
}

/// Label pairs of one sample.
pub type Labels<'a> = &'a [(&'a str, &'a str)];

/// Text being written, one family after another.
#[derive(Default)]
pub struct Exposition {
    out: String,
}

/// The samples of one family.
pub struct Family<'a> {
    out: &'a mut String,
    name: &'a str,
}

impl Exposition {
    /// An empty document.
    pub fn new() -> Self {
        Self::default()
    }

    /// Writes one family: its HELP and TYPE lines, then the samples `samples` adds.
    pub fn family(
        &mut self,
        name: &str,
        kind: Kind,
        help: &str,
        samples: impl FnOnce(&mut Family<'_>),
    ) {
        let _ = writeln!(self.out, "# HELP {name} {}", escape_help(help));
        let _ = writeln!(self.out, "# TYPE {name} {}", kind.as_str());
        samples(&mut Family {
            out: &mut self.out,
            name,
        });
    }

    /// Appends text that is already in the exposition format (another renderer's families).
    pub fn append(&mut self, text: &str) {
        self.out.push_str(text);
        if !text.is_empty() && !text.ends_with('\n') {
            self.out.push('\n');
        }
    }

    /// The document.
    pub fn finish(self) -> String {
        self.out
    }
}

impl Family<'_> {
    /// One sample of a counter or gauge.
    pub fn sample(&mut self, labels: Labels<'_>, value: f64) {
        write_sample(self.out, self.name, "", labels, None, value);
    }

    /// One histogram: a `_bucket` sample per bound and `+Inf`, then `_sum` and `_count`.
    pub fn histogram(&mut self, labels: Labels<'_>, h: &Histogram) {
        let bounds = h.bounds();
        for (i, cumulative) in h.cumulative().enumerate() {
            let le = match bounds.get(i) {
                Some(b) => format_value(*b),
                None => "+Inf".to_owned(),
            };
            write_sample(
                self.out,
                self.name,
                "_bucket",
                labels,
                Some(&le),
                cumulative as f64,
            );
        }
        write_sample(self.out, self.name, "_sum", labels, None, h.sum());
        write_sample(
            self.out,
            self.name,
            "_count",
            labels,
            None,
            h.count() as f64,
        );
    }
}

fn write_sample(
    out: &mut String,
    name: &str,
    suffix: &str,
    labels: Labels<'_>,
    le: Option<&str>,
    value: f64,
) {
    out.push_str(name);
    out.push_str(suffix);
    if !labels.is_empty() || le.is_some() {
        out.push('{');
        let mut first = true;
        let le = le.map(|le| ("le", le));
        for (k, v) in labels.iter().copied().chain(le) {
            if !first {
                out.push(',');
            }
            first = false;
            let _ = write!(out, "{k}=\"{}\"", escape_label(v));
        }
        out.push('}');
    }
    out.push(' ');
    out.push_str(&format_value(value));
    out.push('\n');
}

/// A sample value: integers without a fraction, the special values as Prometheus spells them.
pub fn format_value(v: f64) -> String {
    if v.is_nan() {
        "NaN".to_owned()
    } else if v.is_infinite() {
        if v > 0.0 { "+Inf" } else { "-Inf" }.to_owned()
    } else if v.fract() == 0.0 && v.abs() < 1e15 {
        format!("{}", v as i64)
    } else {
        format!("{v}")
    }
}

fn escape_label(v: &str) -> String {
    let mut s = String::with_capacity(v.len());
    for c in v.chars() {
        match c {
            '\\' => s.push_str("\\\\"),
            '"' => s.push_str("\\\""),
            '\n' => s.push_str("\\n"),
            c => s.push(c),
        }
    }
    s
}

fn escape_help(v: &str) -> String {
    v.replace('\\', "\\\\").replace('\n', "\\n")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn families_render_in_the_text_format() {
        let mut h = Histogram::new(&[0.5, 1.0]);
        h.observe(0.25);
        h.observe(2.0);
        let mut e = Exposition::new();
        e.family("x_total", Kind::Counter, "Things.\nMore.", |f| {
            f.sample(&[("a", "q\"u\\o\nte")], 3.0);
            f.sample(&[], 0.25);
        });
        e.family("y_seconds", Kind::Histogram, "Delay.", |f| {
            f.histogram(&[("w", "0")], &h)
        });
        assert_eq!(
            e.finish(),
            "# HELP x_total Things.\\nMore.\n\
             # TYPE x_total counter\n\
             x_total{a=\"q\\\"u\\\\o\\nte\"} 3\n\
             x_total 0.25\n\
             # HELP y_seconds Delay.\n\
             # TYPE y_seconds histogram\n\
             y_seconds_bucket{w=\"0\",le=\"0.5\"} 1\n\
             y_seconds_bucket{w=\"0\",le=\"1\"} 1\n\
             y_seconds_bucket{w=\"0\",le=\"+Inf\"} 2\n\
             y_seconds_sum{w=\"0\"} 2.25\n\
             y_seconds_count{w=\"0\"} 2\n"
        );
    }

    #[test]
    fn values_are_spelt_as_prometheus_reads_them() {
        assert_eq!(format_value(f64::INFINITY), "+Inf");
        assert_eq!(format_value(f64::NAN), "NaN");
        assert_eq!(format_value(1e20), "100000000000000000000");
        assert_eq!(format_value(0.001), "0.001");
    }
}
