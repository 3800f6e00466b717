//! Logging and traces.
//!
//! - Logs: `tracing` to stderr with an env filter (`RUST_LOG`), pretty locally, JSON when
//!   `LOG_FORMAT=json`.
//! - Traces (optional): with `OTEL_EXPORTER_OTLP_ENDPOINT` set (`http://collector:4318`),
//!   every span that passes the filter (HTTP requests, refresh jobs, agent calls, …) is
//!   sent to `{endpoint}/v1/traces` as OTLP/HTTP JSON, batched (every 2 s or 512 spans),
//!   with `service.name` from `OTEL_SERVICE_NAME` (`opsight`). A span's parent is the span
//!   it was created in; a refresh job's span (a root with a `run` field) takes a trace id
//!   made from its run's id, so every job of one run, on any replica, is one trace.
//!   Spans are dropped, and counted in the log, when the collector cannot keep up
//!   (at most 4,096 wait): tracing never slows requests or grows memory.

use sha2::{Digest, Sha256};
use std::fmt::Write as _;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Mutex, OnceLock};
use std::time::{Duration, SystemTime, UNIX_EPOCH};
use tokio::sync::mpsc;
use tracing::field::{Field, Visit};
use tracing::span::{Attributes, Id, Record};
use tracing::Subscriber;
use tracing_subscriber::layer::{Context, SubscriberExt};
use tracing_subscriber::registry::LookupSpan;
use tracing_subscriber::util::SubscriberInitExt;
use tracing_subscriber::{EnvFilter, Layer};

/// Spans waiting for the exporter, at most.
const QUEUE: usize = 4096;
/// Spans per request to the collector, at most.
const BATCH: usize = 512;
/// How often a partial batch is sent.
const EVERY: Duration = Duration::from_secs(2);

/// The exporter's handle, for [`flush`] at exit.
static EXPORTER: OnceLock<Exporter> = OnceLock::new();

struct Exporter {
    /// Sends the spans held now and answers when they are out (or given up on).
    flush: mpsc::Sender<tokio::sync::oneshot::Sender<()>>,
}

/// Sets up logging, and trace export when `OTEL_EXPORTER_OTLP_ENDPOINT` is set. Call once,
/// inside the tokio runtime (the exporter is a task). A bad endpoint is reported and
/// tracing stays off; logs are never affected.
pub fn init() {
    let filter = EnvFilter::try_from_default_env()
        .unwrap_or_else(|_| EnvFilter::new("info,sqlx=warn,tower_http=info,leptos=warn"));
    let json = std::env::var("LOG_FORMAT").is_ok_and(|f| f.eq_ignore_ascii_case("json"));
    // Logs go to stderr: stdout is for command output (`opsight refresh` prints JSON).
    let fmt = tracing_subscriber::fmt::layer()
        .with_target(false)
        .with_writer(std::io::stderr);
    let fmt = if json {
        fmt.json().boxed()
    } else {
        fmt.boxed()
    };
    let otlp = otlp_from_env();
    // try_init: tests may call this more than once.
    let _ = tracing_subscriber::registry()
        .with(filter)
        .with(fmt)
        .with(otlp)
        .try_init();
}

/// Sends the spans not yet exported (at exit), waiting at most 5 s.
pub async fn flush() {
    let Some(e) = EXPORTER.get() else { return };
    let (tx, rx) = tokio::sync::oneshot::channel();
    if e.flush.send(tx).await.is_ok() {
        let _ = tokio::time::timeout(Duration::from_secs(5), rx).await;
    }
}

fn otlp_from_env() -> Option<OtlpLayer> {
    let endpoint = std::env::var("OTEL_EXPORTER_OTLP_ENDPOINT")
        .ok()
        .map(|e| e.trim().trim_end_matches('/').to_string())
        .filter(|e| !e.is_empty())?;
    if !(endpoint.starts_with("http://") || endpoint.starts_with("https://")) {
        eprintln!("OTEL_EXPORTER_OTLP_ENDPOINT '{endpoint}' is not an http(s) URL: traces are off");
        return None;
    }
    let service = std::env::var("OTEL_SERVICE_NAME")
        .ok()
        .filter(|s| !s.trim().is_empty())
        .unwrap_or_else(|| "opsight".into());
    // The collector may sit behind the company CA, like the agents.
    let trust = match std::env::var("OPSIGHT_CA_BUNDLE") {
        Ok(path) if !path.trim().is_empty() => {
            app::ssr::trust::Trust::from_file(std::path::Path::new(path.trim())).unwrap_or_default()
        }
        _ => Default::default(),
    };
    let http = trust.http().timeout(Duration::from_secs(10)).build().ok()?;
    let (spans_tx, spans_rx) = mpsc::channel(QUEUE);
    let (flush_tx, flush_rx) = mpsc::channel(4);
    tokio::spawn(export(
        http,
        format!("{endpoint}/v1/traces"),
        service,
        spans_rx,
        flush_rx,
    ));
    let _ = EXPORTER.set(Exporter { flush: flush_tx });
    Some(OtlpLayer {
        spans: spans_tx,
        dropped: AtomicU64::new(0),
    })
}

/// A finished span, ready to send.
#[derive(Debug)]
struct SpanRecord {
    trace_id: [u8; 16],
    span_id: [u8; 8],
    parent: Option<[u8; 8]>,
    name: &'static str,
    start: u128,
    end: u128,
    attributes: Vec<(String, String)>,
    error: bool,
}

/// What the layer keeps on a live span.
struct Live {
    trace_id: [u8; 16],
    span_id: [u8; 8],
    parent: Option<[u8; 8]>,
    start: u128,
    attributes: Vec<(String, String)>,
    error: bool,
}

struct OtlpLayer {
    spans: mpsc::Sender<SpanRecord>,
    dropped: AtomicU64,
}

fn now_nanos() -> u128 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| d.as_nanos())
}

fn random_bytes<const N: usize>() -> [u8; N] {
    let mut b = [0u8; N];
    // Ids only need to be unique; a failing generator falls back to a counter.
    if getrandom::fill(&mut b).is_err() {
        static NEXT: AtomicU64 = AtomicU64::new(1);
        let n = NEXT.fetch_add(1, Ordering::Relaxed).to_be_bytes();
        for (i, x) in b.iter_mut().enumerate() {
            *x = n[i % 8] ^ (i as u8);
        }
    }
    b
}

/// The trace id of a run: the first 16 bytes of its id's SHA-256, the same on every
/// replica and every build.
fn run_trace(run: &str) -> [u8; 16] {
    let digest = Sha256::digest(run.as_bytes());
    let mut out = [0u8; 16];
    out.copy_from_slice(&digest[..16]);
    out
}

#[derive(Default)]
struct Fields(Vec<(String, String)>);

impl Visit for Fields {
    fn record_debug(&mut self, field: &Field, value: &dyn std::fmt::Debug) {
        self.0
            .push((field.name().to_string(), format!("{value:?}")));
    }

    fn record_str(&mut self, field: &Field, value: &str) {
        self.0.push((field.name().to_string(), value.to_string()));
    }
}

impl<S> Layer<S> for OtlpLayer
where
    S: Subscriber + for<'a> LookupSpan<'a>,
{
    fn on_new_span(&self, attrs: &Attributes<'_>, id: &Id, ctx: Context<'_, S>) {
        let Some(span) = ctx.span(id) else { return };
        let mut fields = Fields::default();
        attrs.record(&mut fields);
        let parent = span.parent().and_then(|p| {
            p.extensions()
                .get::<Live>()
                .map(|l| (l.trace_id, l.span_id))
        });
        let (trace_id, parent) = match parent {
            Some((trace, span_id)) => (trace, Some(span_id)),
            None => match fields.0.iter().find(|(k, _)| k == "run") {
                Some((_, run)) => (run_trace(run), None),
                None => (random_bytes(), None),
            },
        };
        span.extensions_mut().insert(Live {
            trace_id,
            span_id: random_bytes(),
            parent,
            start: now_nanos(),
            attributes: fields.0,
            error: false,
        });
    }

    fn on_record(&self, id: &Id, values: &Record<'_>, ctx: Context<'_, S>) {
        let Some(span) = ctx.span(id) else { return };
        let mut fields = Fields::default();
        values.record(&mut fields);
        let mut extensions = span.extensions_mut();
        if let Some(live) = extensions.get_mut::<Live>() {
            for (k, v) in fields.0 {
                if k == "error" {
                    live.error = true;
                }
                live.attributes.retain(|(old, _)| *old != k);
                live.attributes.push((k, v));
            }
        }
    }

    fn on_event(&self, event: &tracing::Event<'_>, ctx: Context<'_, S>) {
        // An error logged inside a span marks the span failed.
        if *event.metadata().level() == tracing::Level::ERROR {
            if let Some(span) = ctx.event_span(event) {
                let mut extensions = span.extensions_mut();
                if let Some(live) = extensions.get_mut::<Live>() {
                    live.error = true;
                }
            }
        }
    }

    fn on_close(&self, id: Id, ctx: Context<'_, S>) {
        let Some(span) = ctx.span(&id) else { return };
        let name = span.metadata().name();
        let Some(live) = span.extensions_mut().remove::<Live>() else {
            return;
        };
        let record = SpanRecord {
            trace_id: live.trace_id,
            span_id: live.span_id,
            parent: live.parent,
            name,
            start: live.start,
            end: now_nanos(),
            attributes: live.attributes,
            error: live.error,
        };
        if self.spans.try_send(record).is_err() {
            let n = self.dropped.fetch_add(1, Ordering::Relaxed) + 1;
            if n.is_power_of_two() {
                eprintln!("traces: {n} spans dropped (the collector is slow or down)");
            }
        }
    }
}

/// The exporter task: batches and sends; on a flush request, sends what it holds.
async fn export(
    http: reqwest::Client,
    url: String,
    service: String,
    mut spans: mpsc::Receiver<SpanRecord>,
    mut flushes: mpsc::Receiver<tokio::sync::oneshot::Sender<()>>,
) {
    let failures = Mutex::new(0u64);
    let mut batch: Vec<SpanRecord> = Vec::new();
    let mut tick = tokio::time::interval(EVERY);
    loop {
        tokio::select! {
            span = spans.recv() => match span {
                Some(s) => {
                    batch.push(s);
                    if batch.len() >= BATCH {
                        send(&http, &url, &service, &mut batch, &failures).await;
                    }
                }
                None => break,
            },
            _ = tick.tick() => send(&http, &url, &service, &mut batch, &failures).await,
            Some(done) = flushes.recv() => {
                while let Ok(s) = spans.try_recv() {
                    batch.push(s);
                }
                send(&http, &url, &service, &mut batch, &failures).await;
                let _ = done.send(());
            }
        }
    }
    send(&http, &url, &service, &mut batch, &failures).await;
}

async fn send(
    http: &reqwest::Client,
    url: &str,
    service: &str,
    batch: &mut Vec<SpanRecord>,
    failures: &Mutex<u64>,
) {
    if batch.is_empty() {
        return;
    }
    let body = otlp_json(service, batch);
    batch.clear();
    let result = http
        .post(url)
        .header("content-type", "application/json")
        .body(body)
        .send()
        .await;
    let failed = match result {
        Ok(r) if r.status().is_success() => None,
        Ok(r) => Some(format!("HTTP {}", r.status())),
        Err(e) => Some(if e.is_timeout() {
            "timed out".to_string()
        } else {
            "could not connect".to_string()
        }),
    };
    if let Some(why) = failed {
        // Said once, then every 100th time: a collector that is down should not flood the log.
        let mut n = failures.lock().unwrap_or_else(|e| e.into_inner());
        *n += 1;
        if *n == 1 || n.is_multiple_of(100) {
            eprintln!(
                "traces: the collector at {url} refused a batch ({why}); {n} batches lost so far"
            );
        }
    }
}

fn hex(bytes: &[u8]) -> String {
    bytes.iter().fold(String::new(), |mut s, b| {
        let _ = write!(s, "{b:02x}");
        s
    })
}

/// OTLP/HTTP JSON (`ExportTraceServiceRequest`): ids as hex, times as decimal strings.
fn otlp_json(service: &str, spans: &[SpanRecord]) -> String {
    let spans: Vec<serde_json::Value> = spans
        .iter()
        .map(|s| {
            let attributes: Vec<serde_json::Value> = s
                .attributes
                .iter()
                .filter(|(k, _)| !k.starts_with("otel."))
                .map(|(k, v)| serde_json::json!({"key": k, "value": {"stringValue": v}}))
                .collect();
            // A client span for calls out of the process (agents), a server span for an
            // HTTP request (tower-http's `request`), internal otherwise.
            let kind = if s
                .attributes
                .iter()
                .any(|(k, v)| k == "otel.kind" && v == "client")
            {
                3
            } else if s.name == "request" {
                2
            } else {
                1
            };
            let mut span = serde_json::json!({
                "traceId": hex(&s.trace_id),
                "spanId": hex(&s.span_id),
                "name": s.name,
                "kind": kind,
                "startTimeUnixNano": s.start.to_string(),
                "endTimeUnixNano": s.end.to_string(),
                "attributes": attributes,
                // Unset unless it failed (the spec keeps OK for an explicit override).
                "status": {"code": if s.error { 2 } else { 0 }},
            });
            if let Some(p) = s.parent {
                span["parentSpanId"] = hex(&p).into();
            }
            span
        })
        .collect();
    serde_json::json!({
        "resourceSpans": [{
            "resource": {"attributes": [
                {"key": "service.name", "value": {"stringValue": service}},
                {"key": "service.version", "value": {"stringValue": env!("CARGO_PKG_VERSION")}},
            ]},
            "scopeSpans": [{"scope": {"name": "opsight"}, "spans": spans}],
        }]
    })
    .to_string()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_batch_is_otlp_json_with_hex_ids_and_parents() {
        let spans = [
            SpanRecord {
                trace_id: run_trace("run-1"),
                span_id: [1; 8],
                parent: None,
                name: "job",
                start: 10,
                end: 20,
                attributes: vec![("run".into(), "run-1".into())],
                error: false,
            },
            SpanRecord {
                trace_id: run_trace("run-1"),
                span_id: [2; 8],
                parent: Some([1; 8]),
                name: "agent_call",
                start: 11,
                end: 19,
                attributes: vec![("otel.kind".into(), "client".into())],
                error: true,
            },
        ];
        let v: serde_json::Value = serde_json::from_str(&otlp_json("ops", &spans)).unwrap();
        let s = &v["resourceSpans"][0]["scopeSpans"][0]["spans"];
        assert_eq!(s[0]["spanId"], "0101010101010101");
        assert_eq!(s[0]["traceId"].as_str().unwrap().len(), 32);
        assert!(s[0].get("parentSpanId").is_none());
        assert_eq!(s[1]["parentSpanId"], "0101010101010101");
        assert_eq!(
            (s[0]["kind"].as_i64(), s[1]["kind"].as_i64()),
            (Some(1), Some(3))
        );
        assert_eq!(s[1]["status"]["code"], 2);
        assert_eq!(s[0]["startTimeUnixNano"], "10");
        assert_eq!(
            v["resourceSpans"][0]["resource"]["attributes"][0]["value"]["stringValue"],
            "ops"
        );
        // One run, one trace id, whichever replica computes it.
        assert_eq!(run_trace("run-1"), run_trace("run-1"));
        assert_ne!(run_trace("run-1"), run_trace("run-2"));
    }
}
