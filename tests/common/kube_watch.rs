//! A watch stream as the API server sends it: one JSON event per line
//! (`{"type":"ADDED","object":{...}}`), kept byte for byte too.

use std::time::{Duration, Instant};

use serde_json::Value;

/// One watch event: its `type` (ADDED, MODIFIED, DELETED, BOOKMARK, ERROR), its object,
/// and the line exactly as received (without the newline).
#[derive(Clone, Debug)]
pub struct Event {
    pub kind: String,
    pub object: Value,
    pub line: String,
}

impl Event {
    /// `object.metadata.name`.
    pub fn name(&self) -> &str {
        self.object["metadata"]["name"].as_str().unwrap_or("")
    }

    /// `object.metadata.resourceVersion`.
    pub fn resource_version(&self) -> &str {
        self.object["metadata"]["resourceVersion"]
            .as_str()
            .unwrap_or("")
    }
}

pub struct Watch {
    pub status: u16,
    resp: reqwest::Response,
    buf: Vec<u8>,
    closed: bool,
    /// Every event received so far.
    pub seen: Vec<Event>,
}

impl Watch {
    pub(crate) fn new(resp: reqwest::Response) -> Self {
        Watch {
            status: resp.status().as_u16(),
            resp,
            buf: Vec::new(),
            closed: false,
            seen: Vec::new(),
        }
    }

    /// The next event within `within`; `None` when the stream ended or nothing came.
    pub async fn next(&mut self, within: Duration) -> Option<Event> {
        let deadline = Instant::now() + within;
        loop {
            if let Some(i) = self.buf.iter().position(|&b| b == b'\n') {
                let line: Vec<u8> = self.buf.drain(..=i).collect();
                let line = String::from_utf8_lossy(&line[..i]).into_owned();
                if line.trim().is_empty() {
                    continue;
                }
                let v: Value = serde_json::from_str(&line)
                    .unwrap_or_else(|e| panic!("a watch line that is not JSON ({e}): {line}"));
                let event = Event {
                    kind: v["type"].as_str().unwrap_or("").to_string(),
                    object: v["object"].clone(),
                    line,
                };
                self.seen.push(event.clone());
                return Some(event);
            }
            if self.closed {
                return None;
            }
            let left = deadline.saturating_duration_since(Instant::now());
            match tokio::time::timeout(left, self.resp.chunk()).await {
                Err(_) => return None,
                Ok(Ok(Some(chunk))) => self.buf.extend_from_slice(&chunk),
                Ok(Ok(None)) | Ok(Err(_)) => self.closed = true,
            }
        }
    }

    /// Reads events until one satisfies `wanted`, within `within`; panics with what was
    /// seen otherwise.
    pub async fn until(&mut self, within: Duration, wanted: impl Fn(&Event) -> bool) -> Event {
        let deadline = Instant::now() + within;
        loop {
            let left = deadline.saturating_duration_since(Instant::now());
            match self.next(left).await {
                Some(e) if wanted(&e) => return e,
                Some(_) => {}
                None => panic!(
                    "the watch {} without the event wanted; seen:\n{}",
                    if self.closed { "ended" } else { "went quiet" },
                    self.seen
                        .iter()
                        .map(|e| e.line.as_str())
                        .collect::<Vec<_>>()
                        .join("\n")
                ),
            }
        }
    }

    /// The next event of type `kind` (ADDED, BOOKMARK, ...) within `within`.
    pub async fn next_of(&mut self, kind: &str, within: Duration) -> Event {
        self.until(within, |e| e.kind == kind).await
    }

    /// Whether the server ended the stream (read to its end).
    pub fn closed(&self) -> bool {
        self.closed
    }
}
