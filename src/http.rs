//! The daemon's HTTP endpoints and the metrics they expose.
//!
//! `/healthz` answers 200 while the process serves requests (liveness), `/readyz` answers 200
//! once the state is loaded and the sources are open, 503 before that or while something needs
//! an operator (the reasons are in the body), and `/metrics` serves Prometheus text. The
//! server is deliberately tiny (GET only, one request per connection, bounded request size):
//! it listens on loopback by default and is not a general web server.

use std::collections::BTreeMap;
use std::fmt::Write as _;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpListener;

/// Counters and gauges, keyed by metric name and label set.
#[derive(Debug, Default)]
pub struct Metrics {
    values: Mutex<BTreeMap<(&'static str, String), f64>>,
}

/// Help text and type of every metric we export.
const METRICS: &[(&str, &str, &str)] = &[
    (
        "sentinela_lines_total",
        "counter",
        "Lines read, per source.",
    ),
    (
        "sentinela_bytes_total",
        "counter",
        "Bytes of complete lines read, per source.",
    ),
    (
        "sentinela_truncated_lines_total",
        "counter",
        "Lines longer than the cap, cut, per source.",
    ),
    (
        "sentinela_dropped_total",
        "counter",
        "Messages dropped (garbage, over limits), per source and reason.",
    ),
    (
        "sentinela_source_lag_seconds",
        "gauge",
        "Now minus the event time of the latest line read, per source.",
    ),
    (
        "sentinela_hits_total",
        "counter",
        "Detector hits, per detector.",
    ),
    (
        "sentinela_incidents_total",
        "counter",
        "Incidents opened, per detector and priority.",
    ),
    (
        "sentinela_incidents_closed_total",
        "counter",
        "Incidents closed locally, per reason: quiet (engine.close_after) or memory (engine.max_open_incidents).",
    ),
    (
        "sentinela_open_incidents",
        "gauge",
        "Incidents held in memory.",
    ),
    (
        "sentinela_allowlisted_total",
        "counter",
        "Hits suppressed by allowlists, per detector.",
    ),
    (
        "sentinela_correlation_evicted_total",
        "counter",
        "Correlation keys evicted because of the key cap.",
    ),
    (
        "sentinela_state_commits_total",
        "counter",
        "State store commits.",
    ),
    (
        "sentinela_state_commit_errors_total",
        "counter",
        "State store commits that failed (retried).",
    ),
    (
        "sentinela_state_commit_seconds_sum",
        "counter",
        "Total time spent in state commits.",
    ),
    (
        "sentinela_state_commit_seconds_last",
        "gauge",
        "Duration of the latest state commit.",
    ),
    (
        "sentinela_reloads_total",
        "counter",
        "Config reloads, per result.",
    ),
    ("sentinela_ready", "gauge", "1 when ready."),
];

fn label_string(labels: &[(&str, &str)]) -> String {
    let mut s = String::new();
    for (i, (k, v)) in labels.iter().enumerate() {
        if i > 0 {
            s.push(',');
        }
        // Label values come from config names and detector ids, but escape anyway.
        let v = v
            .replace('\\', "\\\\")
            .replace('"', "\\\"")
            .replace('\n', "\\n");
        let _ = write!(s, "{k}=\"{v}\"");
    }
    s
}

impl Metrics {
    /// Adds `v` to a counter.
    pub fn add(&self, name: &'static str, labels: &[(&str, &str)], v: f64) {
        if v == 0.0 {
            return;
        }
        let mut m = self.values.lock().unwrap_or_else(|p| p.into_inner());
        *m.entry((name, label_string(labels))).or_default() += v;
    }

    /// Sets a gauge.
    pub fn set(&self, name: &'static str, labels: &[(&str, &str)], v: f64) {
        let mut m = self.values.lock().unwrap_or_else(|p| p.into_inner());
        m.insert((name, label_string(labels)), v);
    }

    /// Reads a value (tests and status lines).
    pub fn get(&self, name: &'static str, labels: &[(&str, &str)]) -> f64 {
        let m = self.values.lock().unwrap_or_else(|p| p.into_inner());
        m.get(&(name, label_string(labels))).copied().unwrap_or(0.0)
    }

    /// Sum of a metric over all label sets.
    pub fn total(&self, name: &'static str) -> f64 {
        let m = self.values.lock().unwrap_or_else(|p| p.into_inner());
        m.iter()
            .filter(|((n, _), _)| *n == name)
            .map(|(_, v)| v)
            .sum()
    }

    /// Prometheus text exposition format.
    pub fn render(&self) -> String {
        let m = self.values.lock().unwrap_or_else(|p| p.into_inner());
        let mut out = String::new();
        for (name, kind, help) in METRICS {
            let _ = writeln!(out, "# HELP {name} {help}\n# TYPE {name} {kind}");
            for ((n, labels), v) in m.iter() {
                if n == name {
                    if labels.is_empty() {
                        let _ = writeln!(out, "{name} {v}");
                    } else {
                        let _ = writeln!(out, "{name}{{{labels}}} {v}");
                    }
                }
            }
        }
        out
    }
}

/// Readiness: set once sources are open and state is loaded; reasons for being degraded.
#[derive(Debug, Default)]
pub struct Health {
    ready: AtomicBool,
    problems: Mutex<BTreeMap<String, String>>,
}

impl Health {
    /// Marks the daemon ready (or not).
    pub fn set_ready(&self, ready: bool) {
        self.ready.store(ready, Ordering::SeqCst);
    }

    /// Records (`Some`) or clears (`None`) a problem that needs an operator.
    pub fn problem(&self, what: &str, detail: Option<String>) {
        let mut p = self.problems.lock().unwrap_or_else(|p| p.into_inner());
        match detail {
            Some(d) => {
                p.insert(what.to_string(), d);
            }
            None => {
                p.remove(what);
            }
        }
    }

    /// `(ready, body)` for `/readyz`.
    pub fn readiness(&self) -> (bool, String) {
        let p = self.problems.lock().unwrap_or_else(|p| p.into_inner());
        if !self.ready.load(Ordering::SeqCst) {
            return (false, "starting\n".into());
        }
        if p.is_empty() {
            return (true, "ready\n".into());
        }
        let mut body = String::from("degraded\n");
        for (k, v) in p.iter() {
            let _ = writeln!(body, "{k}: {v}");
        }
        (false, body)
    }
}

/// Serves `/healthz`, `/readyz` and `/metrics` on `listener` until the task is dropped.
pub async fn serve(listener: TcpListener, metrics: Arc<Metrics>, health: Arc<Health>) {
    loop {
        let Ok((mut conn, _)) = listener.accept().await else {
            tokio::time::sleep(Duration::from_millis(100)).await;
            continue;
        };
        let metrics = metrics.clone();
        let health = health.clone();
        tokio::spawn(async move {
            let mut buf = vec![0u8; 4096];
            let mut len = 0;
            // Read the request head, bounded in size and time.
            let read = tokio::time::timeout(Duration::from_secs(5), async {
                while len < buf.len() {
                    let n = conn.read(&mut buf[len..]).await?;
                    if n == 0 {
                        break;
                    }
                    len += n;
                    if buf[..len].windows(4).any(|w| w == b"\r\n\r\n") {
                        break;
                    }
                }
                Ok::<_, std::io::Error>(())
            })
            .await;
            if !matches!(read, Ok(Ok(()))) {
                return;
            }
            let head = String::from_utf8_lossy(&buf[..len]);
            let mut parts = head.split_whitespace();
            let (method, path) = (parts.next().unwrap_or(""), parts.next().unwrap_or(""));
            let (status, ctype, body) = match (method, path) {
                ("GET", "/healthz") => ("200 OK", "text/plain", "ok\n".to_string()),
                ("GET", "/readyz") => {
                    let (ok, body) = health.readiness();
                    metrics.set("sentinela_ready", &[], if ok { 1.0 } else { 0.0 });
                    let status = if ok {
                        "200 OK"
                    } else {
                        "503 Service Unavailable"
                    };
                    (status, "text/plain", body)
                }
                ("GET", "/metrics") => ("200 OK", "text/plain; version=0.0.4", metrics.render()),
                ("GET", _) => ("404 Not Found", "text/plain", "not found\n".into()),
                _ => ("405 Method Not Allowed", "text/plain", "GET only\n".into()),
            };
            let resp = format!(
                "HTTP/1.1 {status}\r\nContent-Type: {ctype}\r\nContent-Length: {}\r\nConnection: close\r\n\r\n{body}",
                body.len()
            );
            let _ = conn.write_all(resp.as_bytes()).await;
            let _ = conn.shutdown().await;
        });
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn metrics_render_prometheus_text_with_escaped_labels() {
        let m = Metrics::default();
        m.add("sentinela_lines_total", &[("source", "auth")], 3.0);
        m.add("sentinela_lines_total", &[("source", "auth")], 2.0);
        m.add("sentinela_hits_total", &[("detector", "a\"b")], 1.0);
        m.add(
            "sentinela_ticket_operations_total",
            &[("helpdesk", "rt"), ("op", "create"), ("result", "ok")],
            1.0,
        );
        let text = m.render();
        assert!(text.contains("# TYPE sentinela_lines_total counter"));
        assert!(
            text.contains("sentinela_lines_total{source=\"auth\"} 5\n"),
            "{text}"
        );
        assert!(
            text.contains("sentinela_hits_total{detector=\"a\\\"b\"} 1\n"),
            "{text}"
        );
    }

    #[test]
    fn readiness_reports_starting_ready_and_degraded() {
        let h = Health::default();
        assert!(!h.readiness().0);
        h.set_ready(true);
        assert_eq!(h.readiness(), (true, "ready\n".into()));
        h.problem("helpdesk", Some("401 Unauthorized".into()));
        let (ok, body) = h.readiness();
        assert!(!ok && body.contains("helpdesk: 401"), "{body}");
        h.problem("helpdesk", None);
        assert!(h.readiness().0);
    }
}
