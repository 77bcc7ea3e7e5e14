//! One open watch: newline-separated JSON events read from a streamed answer.

use std::marker::PhantomData;
use std::time::Duration;

use bytes::{Buf, BytesMut};
use serde::de::DeserializeOwned;
use serde::Deserialize;
use serde_json::value::RawValue;

use super::error::KubeError;
use super::object::{Status, WatchEvent};

/// The largest event accepted: an object is at most 1.5 MB in etcd, so a line longer than
/// this is not an event but a fault, and must not grow the buffer without end.
pub const MAX_EVENT_BYTES: usize = 4 << 20;

pub struct Watch<T> {
    resp: reqwest::Response,
    buf: BytesMut,
    url: String,
    idle: Duration,
    done: bool,
    _kind: PhantomData<fn() -> T>,
}

#[derive(Deserialize)]
struct RawEvent<'a> {
    #[serde(rename = "type")]
    kind: &'a str,
    #[serde(borrow)]
    object: &'a RawValue,
}

#[derive(Deserialize)]
#[serde(rename_all = "camelCase")]
struct BookmarkObject {
    metadata: BookmarkMeta,
}

#[derive(Deserialize)]
#[serde(rename_all = "camelCase")]
struct BookmarkMeta {
    #[serde(default)]
    resource_version: String,
}

/// One line of a watch answer as an event.
pub fn parse_event<T: DeserializeOwned>(line: &[u8]) -> Result<WatchEvent<T>, String> {
    let raw: RawEvent = serde_json::from_slice(line).map_err(|e| e.to_string())?;
    let obj = raw.object.get();
    let object = || serde_json::from_str::<T>(obj).map_err(|e| format!("{} object: {e}", raw.kind));
    Ok(match raw.kind {
        "ADDED" => WatchEvent::Added(object()?),
        "MODIFIED" => WatchEvent::Modified(object()?),
        "DELETED" => WatchEvent::Deleted(object()?),
        "BOOKMARK" => {
            let b: BookmarkObject = serde_json::from_str(obj).map_err(|e| e.to_string())?;
            WatchEvent::Bookmark {
                resource_version: b.metadata.resource_version,
            }
        }
        "ERROR" => {
            WatchEvent::Error(serde_json::from_str::<Status>(obj).map_err(|e| e.to_string())?)
        }
        other => return Err(format!("unknown watch event type {other:?}")),
    })
}

impl<T: DeserializeOwned> Watch<T> {
    pub(super) fn new(resp: reqwest::Response, url: String, idle: Duration) -> Self {
        Watch {
            resp,
            buf: BytesMut::new(),
            url,
            idle,
            done: false,
            _kind: PhantomData,
        }
    }

    /// The next event; `None` when the server ended the watch (its timeout, or a restart
    /// that closed the connection cleanly): resume from the last version seen.
    pub async fn next(&mut self) -> Result<Option<WatchEvent<T>>, KubeError> {
        loop {
            if let Some(pos) = self.buf.iter().position(|b| *b == b'\n') {
                let line = self.buf.split_to(pos + 1);
                let line = &line[..pos];
                if line.iter().all(u8::is_ascii_whitespace) {
                    continue;
                }
                return parse_event(line)
                    .map(Some)
                    .map_err(|reason| KubeError::Decode {
                        url: self.url.clone(),
                        reason,
                    });
            }
            if self.done {
                // A last event without its newline still counts.
                if self.buf.iter().all(u8::is_ascii_whitespace) {
                    return Ok(None);
                }
                let line = std::mem::take(&mut self.buf);
                return parse_event(line.chunk())
                    .map(Some)
                    .map_err(|reason| KubeError::Decode {
                        url: self.url.clone(),
                        reason,
                    });
            }
            if self.buf.len() > MAX_EVENT_BYTES {
                return Err(KubeError::TooLarge {
                    url: self.url.clone(),
                    limit: MAX_EVENT_BYTES,
                });
            }
            let chunk = tokio::time::timeout(self.idle, self.resp.chunk())
                .await
                .map_err(|_| KubeError::Timeout {
                    url: self.url.clone(),
                    secs: self.idle.as_secs(),
                })?
                .map_err(|e| KubeError::WatchCut {
                    url: self.url.clone(),
                    reason: super::error::error_chain(&e),
                })?;
            match chunk {
                Some(c) => self.buf.extend_from_slice(&c),
                None => self.done = true,
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::kube::object::{Object, ObjectMeta};

    #[derive(Debug, Clone, PartialEq, Deserialize)]
    struct Thing {
        metadata: ObjectMeta,
    }
    impl Object for Thing {
        fn meta(&self) -> &ObjectMeta {
            &self.metadata
        }
    }

    #[test]
    fn each_event_type_parses() {
        let added = br#"{"type":"ADDED","object":{"kind":"EndpointSlice","metadata":{"name":"a","namespace":"shop","resourceVersion":"7"}}}"#;
        match parse_event::<Thing>(added).unwrap() {
            WatchEvent::Added(t) => {
                assert_eq!(t.meta().name, "a");
                assert_eq!(t.meta().resource_version, "7");
            }
            e => panic!("{e:?}"),
        }
        let bookmark = br#"{"type":"BOOKMARK","object":{"kind":"EndpointSlice","apiVersion":"discovery.k8s.io/v1","metadata":{"resourceVersion":"12","annotations":{"k8s.io/initial-events-end":"true"}}}}"#;
        assert_eq!(
            parse_event::<Thing>(bookmark).unwrap(),
            WatchEvent::Bookmark {
                resource_version: "12".into()
            }
        );
        let gone = br#"{"type":"ERROR","object":{"kind":"Status","apiVersion":"v1","metadata":{},"status":"Failure","message":"too old resource version: 5 (90)","reason":"Expired","code":410}}"#;
        match parse_event::<Thing>(gone).unwrap() {
            WatchEvent::Error(s) => assert_eq!((s.code, s.reason.as_str()), (410, "Expired")),
            e => panic!("{e:?}"),
        }
        assert!(parse_event::<Thing>(br#"{"type":"WHAT","object":{}}"#).is_err());
        assert!(parse_event::<Thing>(b"not json").is_err());
    }
}
