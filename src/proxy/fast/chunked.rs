//! Finds where a chunked body ends while its bytes pass through unchanged.
//!
//! The fast path copies the upstream's chunked body to the client as it is; it only has to
//! know where the message ends, to reuse both connections. Chunk sizes are read with
//! `httparse::parse_chunk_size`; trailers are skipped line by line.

/// Why a chunked body cannot be passed on.
#[derive(Debug, PartialEq, Eq, thiserror::Error)]
#[error("malformed chunked body: {0}")]
pub struct ChunkError(&'static str);

/// Longest chunk-size line or trailer line accepted.
const MAX_LINE: usize = 4096;

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum State {
    /// Reading a chunk-size line.
    Size,
    /// Inside chunk data, this many bytes left.
    Data(u64),
    /// The CRLF after chunk data; how many of its 2 bytes were seen.
    DataEnd(u8),
    /// Trailer lines after the last chunk (an empty line ends the message).
    Trailer,
    Done,
}

/// Incremental scanner over a chunked body.
#[derive(Debug)]
pub struct Chunked {
    state: State,
    /// Bytes of a size or trailer line that arrived split across reads.
    line: Vec<u8>,
}

impl Default for Chunked {
    fn default() -> Self {
        Self::new()
    }
}

impl Chunked {
    pub fn new() -> Self {
        Chunked {
            state: State::Size,
            line: Vec::new(),
        }
    }

    pub fn is_done(&self) -> bool {
        self.state == State::Done
    }

    /// Scans the next bytes of the body. Returns how many of them belong to the body: all
    /// of them, or fewer when the body ends inside `buf` (anything after is not ours).
    pub fn feed(&mut self, buf: &[u8]) -> Result<usize, ChunkError> {
        let mut i = 0;
        while i < buf.len() {
            match self.state {
                State::Done => break,
                State::Data(left) => {
                    let take = left.min((buf.len() - i) as u64);
                    i += take as usize;
                    self.state = if take == left {
                        State::DataEnd(0)
                    } else {
                        State::Data(left - take)
                    };
                }
                State::DataEnd(seen) => {
                    let want = if seen == 0 { b'\r' } else { b'\n' };
                    if buf[i] != want {
                        return Err(ChunkError("chunk data is not followed by CRLF"));
                    }
                    i += 1;
                    self.state = if seen == 0 {
                        State::DataEnd(1)
                    } else {
                        State::Size
                    };
                }
                State::Size | State::Trailer => {
                    let Some(nl) = buf[i..].iter().position(|&b| b == b'\n') else {
                        self.push_line(&buf[i..])?;
                        i = buf.len();
                        break;
                    };
                    self.push_line(&buf[i..i + nl + 1])?;
                    i += nl + 1;
                    self.end_line()?;
                }
            }
        }
        Ok(i)
    }

    fn push_line(&mut self, part: &[u8]) -> Result<(), ChunkError> {
        if self.line.len() + part.len() > MAX_LINE {
            return Err(ChunkError("a chunk-size or trailer line is too long"));
        }
        self.line.extend_from_slice(part);
        Ok(())
    }

    /// A whole line (ending in LF) is in `self.line`.
    fn end_line(&mut self) -> Result<(), ChunkError> {
        let line = std::mem::take(&mut self.line);
        match self.state {
            State::Size => match httparse::parse_chunk_size(&line) {
                Ok(httparse::Status::Complete((_, 0))) => self.state = State::Trailer,
                Ok(httparse::Status::Complete((_, n))) => self.state = State::Data(n),
                _ => return Err(ChunkError("bad chunk-size line")),
            },
            State::Trailer if line == b"\r\n" || line == b"\n" => self.state = State::Done,
            _ => {}
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    fn scan_all(parts: &[&[u8]]) -> Result<(usize, bool), ChunkError> {
        let mut c = Chunked::new();
        let mut total = 0;
        for p in parts {
            total += c.feed(p)?;
            if c.is_done() {
                break;
            }
        }
        Ok((total, c.is_done()))
    }

    #[test]
    fn table() {
        type Case = (&'static [u8], Result<(usize, bool), ChunkError>);
        let cases: &[Case] = &[
            (b"0\r\n\r\n", Ok((5, true))),
            (b"5\r\nhello\r\n0\r\n\r\n", Ok((15, true))),
            (b"5\r\nhello\r\n0\r\n\r\nEXTRA", Ok((15, true))),
            (b"5;ext=1\r\nhello\r\n0\r\n\r\n", Ok((21, true))),
            (b"5\r\nhello\r\n0\r\nx-t: 1\r\n\r\n", Ok((23, true))),
            (b"A\r\n0123456789\r\n", Ok((15, false))),
            (b"5\r\nhello\r\n0\r\n", Ok((13, false))),
            (
                b"5\r\nhelloXX",
                Err(ChunkError("chunk data is not followed by CRLF")),
            ),
            (b"zz\r\n", Err(ChunkError("bad chunk-size line"))),
        ];
        for (input, want) in cases {
            assert_eq!(
                &scan_all(&[input]),
                want,
                "{}",
                String::from_utf8_lossy(input)
            );
        }
    }

    #[test]
    fn long_lines_are_refused() {
        let mut line = vec![b'1'; MAX_LINE + 1];
        line.extend_from_slice(b"\r\n");
        assert!(Chunked::new().feed(&line).is_err());
    }

    fn encode(chunks: &[Vec<u8>]) -> Vec<u8> {
        let mut out = Vec::new();
        for c in chunks.iter().filter(|c| !c.is_empty()) {
            out.extend_from_slice(format!("{:x}\r\n", c.len()).as_bytes());
            out.extend_from_slice(c);
            out.extend_from_slice(b"\r\n");
        }
        out.extend_from_slice(b"0\r\n\r\n");
        out
    }

    proptest! {
        /// However a valid body is split across reads, the scanner ends exactly at its end
        /// and not before, and never counts the bytes of the next message.
        #[test]
        fn ends_exactly_at_the_end(
            chunks in proptest::collection::vec(proptest::collection::vec(any::<u8>(), 0..40), 0..6),
            cuts in proptest::collection::vec(0usize..200, 0..8),
        ) {
            let body = encode(&chunks);
            let mut wire = body.clone();
            wire.extend_from_slice(b"HTTP/1.1 200 OK\r\n");
            let mut cuts: Vec<usize> = cuts.into_iter().map(|c| c % wire.len()).collect();
            cuts.sort_unstable();
            let mut c = Chunked::new();
            let mut taken = 0;
            let mut from = 0;
            for to in cuts.into_iter().chain(std::iter::once(wire.len())) {
                if to < from { continue; }
                let n = c.feed(&wire[from..to]).expect("valid body");
                taken += n;
                if c.is_done() { break; }
                prop_assert_eq!(n, to - from);
                from = to;
            }
            prop_assert!(c.is_done());
            prop_assert_eq!(taken, body.len());
        }
    }
}
