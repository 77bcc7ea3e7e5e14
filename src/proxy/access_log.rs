//! The access log: one record per request, written by both engines through
//! [`AccessLog::write`], so a request looks the same whichever engine served it.
//!
//! Two sinks. By default a text line in the process log (target `xipgate::access`), which
//! `RUST_LOG` can filter. With `xipgate.log.access_file`, a JSON object per line appended
//! to that file. Either way a writer thread writes: the proxy only formats the record and
//! hands it over a bounded queue, so a slow disk or a stalled reader of stderr never stalls
//! a request. When the queue is full the record is dropped and counted
//! (`xipgate_access_log_dropped_total`) rather than waited for.

use std::fs::{File, OpenOptions};
use std::io::{BufWriter, Write};
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::sync::mpsc::{sync_channel, Receiver, SyncSender, TryRecvError, TrySendError};
use std::sync::Arc;
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use log::{info, warn};
use serde::Serialize;

use crate::config::AccessLogConfig;
use crate::metrics::Metrics;
use crate::names;

/// Records waiting for the writer thread; beyond this they are dropped and counted.
const QUEUE: usize = 16_384;

/// What the access log records about one request.
pub struct AccessEntry<'a> {
    pub client: Option<SocketAddr>,
    /// `METHOD URI` (the request line without the version).
    pub request_line: &'a str,
    pub host: &'a str,
    pub label: &'a str,
    pub instance: Option<&'a str>,
    pub status: u16,
    pub upstream_time: Option<Duration>,
    pub started: Instant,
    pub tries: usize,
    pub error: Option<&'a str>,
    /// Who asked, when `xipgate.access` knew (a session, token or basic credentials).
    pub user: Option<&'a str>,
    /// The `xipgate.access` rule that decided.
    pub rule: Option<&'a str>,
    /// `open`, `allow`, `deny`, `unauthorized`, `login` or `bad_path`; `None` when no
    /// decision was taken (the request ended before: a bad Host, an unknown label).
    pub decision: Option<&'a str>,
}

/// The JSON form of one record (`xipgate.log.access_file`).
#[derive(Serialize)]
struct JsonRecord<'a> {
    /// Unix time in milliseconds when the record was written.
    ts_ms: u128,
    client: Option<String>,
    request: &'a str,
    host: &'a str,
    label: &'a str,
    instance: Option<&'a str>,
    status: u16,
    upstream_ms: Option<f64>,
    total_ms: f64,
    tries: usize,
    error: Option<&'a str>,
    user: Option<&'a str>,
    rule: Option<&'a str>,
    decision: Option<&'a str>,
}

/// Why the access-log file could not be opened.
#[derive(Debug, thiserror::Error)]
#[error("xipgate.log.access_file: cannot open {path}: {source}")]
pub struct AccessLogError {
    path: PathBuf,
    source: std::io::Error,
}

enum Sink {
    Off,
    /// Text lines to the process log, written by a thread of their own.
    Log(SyncSender<String>),
    File(SyncSender<String>),
}

/// Where access records go; shared by both engines.
pub struct AccessLog {
    sink: Sink,
    metrics: Arc<Metrics>,
}

impl AccessLog {
    /// Opens the file sink (if configured) and starts its writer thread.
    pub fn new(cfg: &AccessLogConfig, metrics: Arc<Metrics>) -> Result<Self, AccessLogError> {
        let sink = match (&cfg.enabled, &cfg.file) {
            (false, _) => Sink::Off,
            (true, None) => Sink::Log(spawn_log_writer()?),
            (true, Some(path)) => Sink::File(spawn_writer(path)?),
        };
        Ok(AccessLog { sink, metrics })
    }

    /// A log that records nothing (tests and benchmarks of other parts).
    pub fn off(metrics: Arc<Metrics>) -> Self {
        AccessLog {
            sink: Sink::Off,
            metrics,
        }
    }

    /// True when a record would be kept, so callers can skip building one.
    pub fn enabled(&self) -> bool {
        match self.sink {
            Sink::Off => false,
            Sink::Log(_) => log::log_enabled!(target: "xipgate::access", log::Level::Info),
            Sink::File(_) => true,
        }
    }

    pub fn write(&self, e: &AccessEntry<'_>) {
        let (tx, line) = match &self.sink {
            Sink::Off => return,
            Sink::Log(tx) => (tx, text_line(e)),
            Sink::File(tx) => (tx, json_line(e)),
        };
        match tx.try_send(line) {
            Ok(()) => {}
            Err(TrySendError::Full(_)) | Err(TrySendError::Disconnected(_)) => {
                self.metrics.access_log_dropped.inc()
            }
        }
    }
}

fn ms(d: Duration) -> f64 {
    // One decimal, as the text line shows it.
    (d.as_secs_f64() * 10_000.0).round() / 10.0
}

/// The text form: `client METHOD URI host= label= instance= status= upstream_ms= total_ms= tries=
/// user= rule= decision= [error=]`.
pub fn text_line(e: &AccessEntry<'_>) -> String {
    format!(
        "{} {} host={} label={} instance={} status={} upstream_ms={} total_ms={:.1} tries={} user={} rule={} decision={}{}",
        e.client.map(|a| a.to_string()).unwrap_or_default(),
        names::printable(e.request_line),
        e.host,
        e.label,
        // Registry data: a line break in an instanceId would forge a record.
        names::printable(e.instance.unwrap_or("-")),
        e.status,
        e.upstream_time
            .map_or("-".to_string(), |d| format!("{:.1}", ms(d))),
        ms(e.started.elapsed()),
        e.tries,
        // Identity claims and rule names: quoted-printable like the request line.
        names::printable(e.user.unwrap_or("-")),
        names::printable(e.rule.unwrap_or("-")),
        e.decision.unwrap_or("-"),
        e.error.map(|e| format!(" error={e}")).unwrap_or_default(),
    )
}

/// The JSON form, one object without a newline.
pub fn json_line(e: &AccessEntry<'_>) -> String {
    let printable = names::printable(e.request_line);
    let rec = JsonRecord {
        ts_ms: SystemTime::now()
            .duration_since(UNIX_EPOCH)
            .map_or(0, |d| d.as_millis()),
        client: e.client.map(|a| a.to_string()),
        request: &printable,
        host: e.host,
        label: e.label,
        instance: e.instance,
        status: e.status,
        upstream_ms: e.upstream_time.map(ms),
        total_ms: ms(e.started.elapsed()),
        tries: e.tries,
        error: e.error,
        user: e.user,
        rule: e.rule,
        decision: e.decision,
    };
    // Serialising a struct of strings and numbers cannot fail.
    serde_json::to_string(&rec).unwrap_or_default()
}

fn spawn_writer(path: &Path) -> Result<SyncSender<String>, AccessLogError> {
    let file = OpenOptions::new()
        .create(true)
        .append(true)
        .open(path)
        .map_err(|source| AccessLogError {
            path: path.to_path_buf(),
            source,
        })?;
    let (tx, rx) = sync_channel(QUEUE);
    let path = path.to_path_buf();
    std::thread::Builder::new()
        .name("xipgate access log".into())
        .spawn(move || write_lines(rx, file, &path))
        .map_err(|source| AccessLogError {
            path: PathBuf::from("(writer thread)"),
            source,
        })?;
    Ok(tx)
}

/// The default sink's writer: the text lines into the process log, off the request threads
/// (the log writes to stderr, which a stalled reader can block).
fn spawn_log_writer() -> Result<SyncSender<String>, AccessLogError> {
    let (tx, rx) = sync_channel::<String>(QUEUE);
    std::thread::Builder::new()
        .name("xipgate access log".into())
        .spawn(move || {
            while let Ok(line) = rx.recv() {
                info!(target: "xipgate::access", "{line}");
            }
        })
        .map_err(|source| AccessLogError {
            path: PathBuf::from("(log writer thread)"),
            source,
        })?;
    Ok(tx)
}

/// Writes records as they come, flushing whenever the queue runs dry, so a record is on
/// disk soon after its request without a write call per record under load.
fn write_lines(rx: Receiver<String>, file: File, path: &Path) {
    let mut out = BufWriter::with_capacity(64 * 1024, file);
    let mut failed = false;
    while let Ok(mut line) = rx.recv() {
        loop {
            line.push('\n');
            if let Err(e) = out.write_all(line.as_bytes()) {
                if !failed {
                    warn!("access log {}: {e}", path.display());
                    failed = true;
                }
            }
            match rx.try_recv() {
                Ok(next) => line = next,
                Err(TryRecvError::Empty) | Err(TryRecvError::Disconnected) => break,
            }
        }
        if out.flush().is_ok() {
            failed = false;
        }
    }
    let _ = out.flush();
}

#[cfg(test)]
mod tests {
    use super::*;

    fn entry<'a>(started: Instant) -> AccessEntry<'a> {
        AccessEntry {
            client: Some("127.0.0.1:5000".parse().expect("addr")),
            request_line: "GET /a\u{1}b",
            host: "orders.example",
            label: "orders",
            instance: Some("pod-1:orders:8080"),
            status: 502,
            upstream_time: Some(Duration::from_micros(1_250)),
            started,
            tries: 2,
            error: Some("ConnectRefused"),
            user: Some("alice"),
            rule: Some("team"),
            decision: Some("allow"),
        }
    }

    #[test]
    fn the_json_and_text_forms_carry_the_same_fields() {
        let started = Instant::now();
        let e = entry(started);
        let v: serde_json::Value = serde_json::from_str(&json_line(&e)).expect("json");
        assert_eq!(v["status"], 502);
        assert_eq!(v["tries"], 2);
        assert_eq!(v["instance"], "pod-1:orders:8080");
        assert_eq!(v["upstream_ms"], 1.3);
        assert_eq!(v["error"], "ConnectRefused");
        assert_eq!(v["client"], "127.0.0.1:5000");
        assert_eq!(
            (&v["user"], &v["rule"], &v["decision"]),
            (&"alice".into(), &"team".into(), &"allow".into())
        );
        let request = v["request"].as_str().expect("request");
        assert!(
            !request.contains('\u{1}'),
            "control bytes escaped: {request}"
        );
        let text = text_line(&e);
        assert!(text.contains(" status=502 ") && text.contains(" error=ConnectRefused"));
        assert!(
            text.contains(" tries=2 user=alice rule=team decision=allow "),
            "{text}"
        );
        assert!(text.contains(&format!("GET {}", &request[4..])), "{text}");
    }

    #[test]
    fn a_line_break_in_registry_data_does_not_forge_a_text_record() {
        let mut e = entry(Instant::now());
        e.instance = Some("pod-1\n127.0.0.1:1 GET /admin host=x status=200");
        let text = text_line(&e);
        assert!(!text.contains('\n'), "{text}");
        assert!(text.contains(" instance=pod-1"), "{text}");
    }

    #[test]
    fn the_file_sink_appends_one_json_object_per_request() {
        let dir = tempfile::tempdir().expect("tempdir");
        let path = dir.path().join("access.jsonl");
        let cfg = AccessLogConfig {
            enabled: true,
            file: Some(path.clone()),
        };
        let log = AccessLog::new(&cfg, Arc::new(Metrics::new())).expect("open");
        assert!(log.enabled());
        for _ in 0..3 {
            log.write(&entry(Instant::now()));
        }
        drop(log); // the writer drains and exits
        let deadline = Instant::now() + Duration::from_secs(5);
        let lines = loop {
            let text = std::fs::read_to_string(&path).unwrap_or_default();
            if text.lines().count() == 3 || Instant::now() > deadline {
                break text;
            }
            std::thread::sleep(Duration::from_millis(10));
        };
        let statuses: Vec<u64> = lines
            .lines()
            .map(|l| {
                serde_json::from_str::<serde_json::Value>(l).expect("json")["status"]
                    .as_u64()
                    .expect("status")
            })
            .collect();
        assert_eq!(statuses, [502, 502, 502]);
    }

    #[test]
    fn an_unopenable_file_is_an_error_naming_the_key() {
        let cfg = AccessLogConfig {
            enabled: true,
            file: Some(PathBuf::from("/nonexistent-dir/access.jsonl")),
        };
        let err = AccessLog::new(&cfg, Arc::new(Metrics::new()))
            .err()
            .expect("refused")
            .to_string();
        assert!(
            err.starts_with("xipgate.log.access_file: cannot open /nonexistent-dir/access.jsonl"),
            "{err}"
        );
    }

    #[test]
    fn switched_off_records_nothing() {
        let cfg = AccessLogConfig {
            enabled: false,
            file: None,
        };
        assert!(!AccessLog::new(&cfg, Arc::new(Metrics::new()))
            .expect("off")
            .enabled());
    }
}
