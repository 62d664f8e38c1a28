//! A short history of this node's key metrics, for the ops console's System page: one task
//! samples the Prometheus recorder every `interval` into a ring of `capacity` samples (an hour
//! at the defaults), and `GET /api/v1/admin/system/metrics` reads it. The console used to build
//! its chart by polling `/metrics` while the page was open, so it showed nothing of what
//! happened before; the server keeps the last hour whether anyone looks or not.
//!
//! Sampled from the rendered text rather than from the recorder's internals: the text is the
//! recorder's one public read-out, and the few lines here (sum the series of one metric name)
//! are simpler than a parser crate for the full exposition format, which is not needed.
//!
//! Per node: behind a load balancer each node answers with its own history (`node` says which).

use std::{
    collections::VecDeque,
    sync::{Arc, Mutex},
    time::Duration,
};

use serde::Serialize;
use time::OffsetDateTime;
use tokio::task::JoinHandle;
use tokio_util::sync::CancellationToken;
use utoipa::ToSchema;

/// One reading of the counters and gauges behind the System page.
#[derive(Debug, Clone, Copy, PartialEq)]
struct Reading {
    at: OffsetDateTime,
    live_sessions: f64,
    segments_total: f64,
    upload_backlog: f64,
    chat_connections: f64,
    requests_total: f64,
    errors_total: f64,
    rss_bytes: f64,
}

/// A point of the history as the API shows it: gauges as read, counters as rates over the
/// interval that ends at `at`.
#[derive(Debug, Clone, Serialize, ToSchema, PartialEq)]
pub struct MetricSample {
    #[serde(with = "time::serde::rfc3339")]
    #[schema(value_type = String, format = DateTime)]
    pub at: OffsetDateTime,
    pub live_sessions: f64,
    /// HLS segments cut per second (every live stream, every rendition).
    pub segments_per_s: f64,
    /// Recording segments waiting for their upload to object storage.
    pub upload_backlog: f64,
    pub chat_connections: f64,
    pub requests_per_s: f64,
    /// Share of the interval's HTTP requests answered 5xx (0 when there were none).
    pub error_ratio: f64,
    /// Resident memory of the process.
    pub rss_bytes: f64,
}

/// The ring of readings; cloned handles share it. The sampling task is its only writer.
#[derive(Clone)]
pub struct MetricHistory {
    ring: Arc<Mutex<VecDeque<Reading>>>,
    capacity: usize,
    pub interval: Duration,
}

impl MetricHistory {
    pub fn new(interval: Duration, capacity: usize) -> MetricHistory {
        MetricHistory {
            ring: Arc::new(Mutex::new(VecDeque::with_capacity(capacity + 1))),
            capacity: capacity.max(2),
            interval,
        }
    }

    fn push(&self, r: Reading) {
        let mut ring = self.ring.lock().unwrap_or_else(|e| e.into_inner());
        ring.push_back(r);
        while ring.len() > self.capacity {
            ring.pop_front();
        }
    }

    /// The samples, oldest first (one fewer than the readings: a rate needs two).
    pub fn samples(&self) -> Vec<MetricSample> {
        let ring = self.ring.lock().unwrap_or_else(|e| e.into_inner());
        let readings: Vec<Reading> = ring.iter().copied().collect();
        drop(ring);
        readings.windows(2).map(|w| sample(&w[0], &w[1])).collect()
    }

    /// Take a reading now (the task does this every `interval`; tests call it directly).
    pub fn sample_now(&self) {
        self.push(read(
            &crate::telemetry::render_metrics(),
            OffsetDateTime::now_utc(),
        ));
    }
}

/// Sample every `history.interval` until `shutdown`.
pub fn spawn(history: MetricHistory, shutdown: CancellationToken) -> JoinHandle<()> {
    tokio::spawn(async move {
        let mut tick = tokio::time::interval(history.interval);
        tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        loop {
            tokio::select! {
                _ = tick.tick() => {
                    let h = history.clone();
                    // Rendering walks every series: off the async workers.
                    let _ = tokio::task::spawn_blocking(move || h.sample_now()).await;
                }
                () = shutdown.cancelled() => return,
            }
        }
    })
}

fn sample(prev: &Reading, now: &Reading) -> MetricSample {
    let secs = (now.at - prev.at).as_seconds_f64().max(1e-3);
    // A counter that went down was reset (another recorder in tests): no rate for that step.
    let rate = |a: f64, b: f64| if b >= a { (b - a) / secs } else { 0.0 };
    let requests = now.requests_total - prev.requests_total;
    let errors = now.errors_total - prev.errors_total;
    MetricSample {
        at: now.at,
        live_sessions: now.live_sessions,
        segments_per_s: rate(prev.segments_total, now.segments_total),
        upload_backlog: now.upload_backlog,
        chat_connections: now.chat_connections,
        requests_per_s: rate(prev.requests_total, now.requests_total),
        error_ratio: if requests > 0.0 && errors >= 0.0 {
            errors / requests
        } else {
            0.0
        },
        rss_bytes: now.rss_bytes,
    }
}

fn read(text: &str, at: OffsetDateTime) -> Reading {
    Reading {
        at,
        live_sessions: sum(text, "live_sessions_active", |_| true),
        segments_total: sum(text, "live_segments_total", |_| true),
        upload_backlog: sum(text, "recording_upload_queue_depth", |_| true),
        chat_connections: sum(text, "chat_connections", |_| true),
        requests_total: sum(text, "http_requests_total", |_| true),
        errors_total: sum(text, "http_requests_total", |labels| {
            labels.contains("status=\"5")
        }),
        rss_bytes: sum(text, "process_resident_memory_bytes", |_| true),
    }
}

/// The sum of the series of metric `name` whose label set (the text between the braces, empty
/// without labels) satisfies `keep`. Exposition lines are `name{labels} value`.
fn sum(text: &str, name: &str, keep: impl Fn(&str) -> bool) -> f64 {
    text.lines()
        .filter(|l| !l.starts_with('#'))
        .filter_map(|l| {
            let rest = l.strip_prefix(name)?;
            let (labels, value) = match rest.strip_prefix('{') {
                Some(r) => {
                    let end = r.rfind('}')?;
                    (&r[..end], &r[end + 1..])
                }
                None if rest.starts_with(' ') => ("", rest),
                // Another metric whose name starts with `name`.
                None => return None,
            };
            if !keep(labels) {
                return None;
            }
            value.split_whitespace().next()?.parse::<f64>().ok()
        })
        .filter(|v| v.is_finite())
        .sum()
}

#[cfg(test)]
mod tests {
    use super::*;

    const TEXT: &str = r#"# HELP http_requests_total HTTP requests served
# TYPE http_requests_total counter
http_requests_total{method="GET",route="/a",status="200"} 90
http_requests_total{method="GET",route="/b",status="503"} 4
http_requests_total{method="POST",route="/c",status="500"} 1
http_requests_total_extra 1000
live_sessions_active 3
chat_connections 12
process_resident_memory_bytes 5.5e7
"#;

    #[test]
    fn sums_the_series_of_one_name_and_filters_by_label() {
        assert_eq!(sum(TEXT, "http_requests_total", |_| true), 95.0);
        assert_eq!(
            sum(TEXT, "http_requests_total", |l| l.contains("status=\"5")),
            5.0
        );
        assert_eq!(sum(TEXT, "live_sessions_active", |_| true), 3.0);
        assert_eq!(sum(TEXT, "process_resident_memory_bytes", |_| true), 5.5e7);
        assert_eq!(sum(TEXT, "missing_metric", |_| true), 0.0);
    }

    #[test]
    fn samples_are_rates_between_readings_and_the_ring_keeps_the_last() {
        let h = MetricHistory::new(Duration::from_secs(10), 3);
        let t0 = OffsetDateTime::UNIX_EPOCH;
        let at = |s: i64, requests: f64, errors: f64, segments: f64| Reading {
            at: t0 + time::Duration::seconds(s),
            live_sessions: 2.0,
            segments_total: segments,
            upload_backlog: 1.0,
            chat_connections: 5.0,
            requests_total: requests,
            errors_total: errors,
            rss_bytes: 1.0,
        };
        h.push(at(0, 100.0, 0.0, 0.0));
        assert!(h.samples().is_empty(), "one reading makes no rate");
        h.push(at(10, 300.0, 10.0, 20.0));
        h.push(at(20, 300.0, 10.0, 40.0));
        let s = h.samples();
        assert_eq!(s.len(), 2);
        assert_eq!(
            (s[0].requests_per_s, s[0].error_ratio, s[0].segments_per_s),
            (20.0, 0.05, 2.0)
        );
        assert_eq!(
            (s[1].requests_per_s, s[1].error_ratio),
            (0.0, 0.0),
            "no requests, no ratio"
        );
        // A fourth reading pushes the first out; a counter reset gives no negative rate.
        h.push(at(30, 50.0, 0.0, 60.0));
        let s = h.samples();
        assert_eq!(s.len(), 2);
        assert_eq!(s[0].at, t0 + time::Duration::seconds(20));
        assert_eq!(s[1].requests_per_s, 0.0);
    }
}
