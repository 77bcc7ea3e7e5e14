//! Reads a backend's chunked body and writes it on to the client in canonical form.
//!
//! Chunk data and trailer lines pass through unchanged, but every chunk-size line is
//! written anew as `<hex size>\r\n` (extensions dropped, the last one `0\r\n`). So
//! whatever a backend's size lines look like, the client (or a front that pools its
//! connections to the edge) reads exactly the framing the edge read: a lenient size line
//! (empty, odd whitespace, a bare LF inside an extension) cannot end the body at a
//! different place for a stricter reader. Size lines are read with
//! `httparse::parse_chunk_size`, the function Pingora's engine uses, so both engines accept
//! the same bodies; the trailer section is held to Pingora's rules too: CRLF line ends
//! only (no bare LF, no lone CR) and at most [`MAX_TRAILERS`] bytes. (Pingora's engine
//! drops the trailers; this one passes them on.)

/// Why a chunked body cannot be passed on.
#[derive(Debug, PartialEq, Eq, thiserror::Error)]
#[error("malformed chunked body: {0}")]
pub struct ChunkError(&'static str);

/// Longest chunk-size line accepted (size and extensions): Pingora's (pingora-core's
/// `http::v1::body::PARTIAL_CHUNK_HEAD_LIMIT`, not exported).
const MAX_LINE: usize = 8 * 1024;

/// Longest trailer section accepted after the last chunk: Pingora's (pingora-core's
/// `http::v1::body::TRAILER_SIZE_LIMIT`, not exported).
pub const MAX_TRAILERS: usize = 64 * 1024;

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

/// Incremental reader over a chunked body.
#[derive(Debug)]
pub struct Chunked {
    state: State,
    /// Bytes of a size or trailer line that arrived split across reads.
    line: Vec<u8>,
    /// Trailer bytes read so far.
    trailers: usize,
    /// The last chunk and the trailer lines read so far, for the client once they end.
    tail: Vec<u8>,
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
            trailers: 0,
            tail: Vec::new(),
        }
    }

    pub fn is_done(&self) -> bool {
        self.state == State::Done
    }

    /// Reads the next bytes of the body and appends what goes to the client to `out`.
    /// Returns how many of them belong to the body: all of them, or fewer when the body
    /// ends inside `buf` (anything after is not ours).
    pub fn feed(&mut self, buf: &[u8], out: &mut Vec<u8>) -> Result<usize, ChunkError> {
        let mut i = 0;
        while i < buf.len() {
            match self.state {
                State::Done => break,
                State::Data(left) => {
                    let take = left.min((buf.len() - i) as u64);
                    out.extend_from_slice(&buf[i..i + take as usize]);
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
                    out.push(want);
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
                    self.end_line(out)?;
                }
            }
        }
        Ok(i)
    }

    fn push_line(&mut self, part: &[u8]) -> Result<(), ChunkError> {
        if self.state == State::Trailer {
            self.trailers += part.len();
            if self.trailers > MAX_TRAILERS {
                return Err(ChunkError("the trailer section is too long"));
            }
        } else if self.line.len() + part.len() > MAX_LINE {
            return Err(ChunkError("a chunk-size line is too long"));
        }
        self.line.extend_from_slice(part);
        Ok(())
    }

    /// `self.line` ends in LF.
    fn end_line(&mut self, out: &mut Vec<u8>) -> Result<(), ChunkError> {
        match self.state {
            State::Size => match httparse::parse_chunk_size(&self.line) {
                Ok(httparse::Status::Complete((_, 0))) => {
                    // Held back with the trailers until their end: a client must not see
                    // a last chunk whose trailer section then turns out malformed.
                    self.tail.extend_from_slice(b"0\r\n");
                    self.state = State::Trailer;
                }
                Ok(httparse::Status::Complete((_, n))) => {
                    out.extend_from_slice(format!("{n:x}\r\n").as_bytes());
                    self.state = State::Data(n);
                }
                // An LF inside an extension: httparse reads on to the CRLF, so do we.
                Ok(httparse::Status::Partial) => return Ok(()),
                Err(_) => return Err(ChunkError("bad chunk-size line")),
            },
            State::Trailer => {
                // CR only right before the LF: a bare LF or a lone CR is what a lenient
                // and a strict reader disagree on.
                let body = self.line.strip_suffix(b"\r\n");
                if body.is_none_or(|b| b.contains(&b'\r')) {
                    return Err(ChunkError("a trailer line does not end in CRLF"));
                }
                self.tail.extend_from_slice(&self.line);
                if self.line.len() == 2 {
                    out.append(&mut self.tail);
                    self.state = State::Done;
                }
            }
            State::Data(_) | State::DataEnd(_) | State::Done => {}
        }
        self.line.clear();
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    /// (bytes of the input that were the body, whether it ended, what went out)
    fn scan_all(parts: &[&[u8]]) -> Result<(usize, bool, Vec<u8>), ChunkError> {
        let mut c = Chunked::new();
        let mut out = Vec::new();
        let mut total = 0;
        for p in parts {
            total += c.feed(p, &mut out)?;
            if c.is_done() {
                break;
            }
        }
        Ok((total, c.is_done(), out))
    }

    #[test]
    fn table() {
        type Case = (
            &'static [u8],
            Result<(usize, bool, &'static [u8]), ChunkError>,
        );
        let cases: &[Case] = &[
            (b"0\r\n\r\n", Ok((5, true, b"0\r\n\r\n"))),
            (
                b"5\r\nhello\r\n0\r\n\r\n",
                Ok((15, true, b"5\r\nhello\r\n0\r\n\r\n")),
            ),
            (
                b"5\r\nhello\r\n0\r\n\r\nEXTRA",
                Ok((15, true, b"5\r\nhello\r\n0\r\n\r\n")),
            ),
            // Extensions and whitespace are dropped: the size line goes out canonical.
            (
                b"5;ext=1\r\nhello\r\n0\r\n\r\n",
                Ok((21, true, b"5\r\nhello\r\n0\r\n\r\n")),
            ),
            (
                b"05 ; a=\"b\nc\"\r\nhello\r\n0\r\n\r\n",
                Ok((26, true, b"5\r\nhello\r\n0\r\n\r\n")),
            ),
            (
                b"A\r\n0123456789\r\n",
                Ok((15, false, b"a\r\n0123456789\r\n")),
            ),
            (
                b"5\r\nhello\r\n0;e\r\nx-t: 1\r\n\r\n",
                Ok((25, true, b"5\r\nhello\r\n0\r\nx-t: 1\r\n\r\n")),
            ),
            // An empty size line is a last chunk to httparse (and so to Pingora's engine):
            // the client gets a real one.
            (
                b"5\r\nhello\r\n\r\n\r\n",
                Ok((14, true, b"5\r\nhello\r\n0\r\n\r\n")),
            ),
            (b"5\r\nhello\r\n0\r\n", Ok((13, false, b"5\r\nhello\r\n"))),
            (
                b"5\r\nhelloXX",
                Err(ChunkError("chunk data is not followed by CRLF")),
            ),
            (b"zz\r\n", Err(ChunkError("bad chunk-size line"))),
            (b"5\n", Err(ChunkError("bad chunk-size line"))),
            (
                b"5\r\nhello\r\n0\r\n\n",
                Err(ChunkError("a trailer line does not end in CRLF")),
            ),
            (
                b"5\r\nhello\r\n0\r\nx-t: 1\n\r\n",
                Err(ChunkError("a trailer line does not end in CRLF")),
            ),
            (
                b"0\r\nx-t: 1\r2\r\n\r\n",
                Err(ChunkError("a trailer line does not end in CRLF")),
            ),
        ];
        for (input, want) in cases {
            let got = scan_all(&[input]);
            let want = want.as_ref().map(|(n, d, o)| (*n, *d, o.to_vec()));
            assert_eq!(
                got.as_ref(),
                want.as_ref().map_err(|e| *e),
                "{}",
                String::from_utf8_lossy(input)
            );
        }
    }

    #[test]
    fn long_lines_and_trailer_sections_are_refused() {
        let mut line = vec![b'1'; MAX_LINE + 1];
        line.extend_from_slice(b"\r\n");
        assert!(Chunked::new().feed(&line, &mut Vec::new()).is_err());

        let mut c = Chunked::new();
        let mut out = Vec::new();
        c.feed(b"0\r\n", &mut out).expect("last chunk");
        let trailer = format!("x-t: {}\r\n", "a".repeat(1000));
        let mut err = None;
        for _ in 0..=MAX_TRAILERS / trailer.len() {
            if let Err(e) = c.feed(trailer.as_bytes(), &mut out) {
                err = Some(e);
                break;
            }
        }
        assert_eq!(err, Some(ChunkError("the trailer section is too long")));
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
        /// However a valid body is split across reads, the reader ends exactly at its end
        /// and not before, never counts the bytes of the next message, and passes a
        /// canonical body on unchanged.
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
            let mut out = Vec::new();
            let mut taken = 0;
            let mut from = 0;
            for to in cuts.into_iter().chain(std::iter::once(wire.len())) {
                if to < from { continue; }
                let n = c.feed(&wire[from..to], &mut out).expect("valid body");
                taken += n;
                if c.is_done() { break; }
                prop_assert_eq!(n, to - from);
                from = to;
            }
            prop_assert!(c.is_done());
            prop_assert_eq!(taken, body.len());
            prop_assert_eq!(out, body);
        }
    }
}
