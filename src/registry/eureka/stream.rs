//! A gzipped `/apps` parsed while it is decompressed, so the decompressed body (about
//! 1 KB per instance: 100 MB at 100,000 instances) is never held whole.
//!
//! The compressed body is kept (it is small, ~25 bytes per instance), so anything the
//! streaming parse does not take (XML, an XStream-shaped or broken document, a body over
//! the limit) is decompressed whole and parsed as before: the result, and every error
//! message, stay exactly what they were.

use std::io::{self, Read};

use super::model::{Known, Snapshot};
use super::parse::parse_apps_json_in_one_pass_from;

/// Read buffer between the decompressor and the JSON parser.
const STREAM_BUFFER: usize = 64 * 1024;

/// Parses the gzipped `/apps` document `wire` without holding it decompressed. `None`
/// when the streaming parse does not apply (see the module); `Some((snapshot,
/// decompressed bytes))` otherwise.
///
/// With `known` (the registry copy), instances it already holds are not parsed into a
/// second copy ([`Snapshot::unchanged`]).
pub fn parse_apps_gzip(
    wire: &[u8],
    limit: usize,
    known: Option<&dyn Known>,
) -> Option<(Snapshot, usize)> {
    let mut counted = Counted {
        inner: flate2::read::GzDecoder::new(wire),
        count: 0,
        limit,
    };
    // serde_json reads on to the end (only whitespace may follow the document), so the
    // count is the whole body's and the gzip trailer's checksum has been checked.
    let snapshot = parse_apps_json_in_one_pass_from(
        io::BufReader::with_capacity(STREAM_BUFFER, Utf8Checked::new(&mut counted)),
        known,
    )?;
    Some((snapshot, counted.count))
}

/// Counts what passes and fails once more than `limit` bytes did.
struct Counted<R> {
    inner: R,
    count: usize,
    limit: usize,
}

impl<R: Read> Read for Counted<R> {
    fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        let n = self.inner.read(buf)?;
        self.count += n;
        if self.count > self.limit {
            return Err(io::Error::other("body over the limit"));
        }
        Ok(n)
    }
}

/// Fails a read that completes invalid UTF-8: serde_json checks the strings it decodes,
/// not those it skips, and the whole-body parse rejects invalid UTF-8 anywhere.
struct Utf8Checked<R> {
    inner: R,
    /// The start of a character the last read cut in two.
    pending: [u8; 4],
    pending_len: usize,
}

impl<R> Utf8Checked<R> {
    fn new(inner: R) -> Self {
        Utf8Checked {
            inner,
            pending: [0; 4],
            pending_len: 0,
        }
    }

    /// Checks `bytes`, which follow what earlier calls checked.
    fn check(&mut self, mut bytes: &[u8]) -> io::Result<()> {
        let invalid = || io::Error::new(io::ErrorKind::InvalidData, "invalid UTF-8");
        // First finish the character the last read cut, one byte at a time (at most 3).
        while self.pending_len > 0 {
            let Some((&b, rest)) = bytes.split_first() else {
                return Ok(());
            };
            self.pending[self.pending_len] = b;
            self.pending_len += 1;
            bytes = rest;
            match std::str::from_utf8(&self.pending[..self.pending_len]) {
                Ok(_) => self.pending_len = 0,
                Err(e) if e.error_len().is_some() => return Err(invalid()),
                Err(_) => {}
            }
        }
        match std::str::from_utf8(bytes) {
            Ok(_) => Ok(()),
            // Cut at the end: valid so far, the rest comes with the next read.
            Err(e) if e.error_len().is_none() => {
                let tail = &bytes[e.valid_up_to()..];
                self.pending[..tail.len()].copy_from_slice(tail);
                self.pending_len = tail.len();
                Ok(())
            }
            Err(_) => Err(invalid()),
        }
    }
}

impl<R: Read> Read for Utf8Checked<R> {
    fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        let n = self.inner.read(buf)?;
        if n == 0 && self.pending_len > 0 {
            return Err(io::Error::new(
                io::ErrorKind::InvalidData,
                "invalid UTF-8 at the end",
            ));
        }
        self.check(&buf[..n])?;
        Ok(n)
    }
}

#[cfg(test)]
mod tests;
