//! Capped line reading over any `Read`: the only place that buffers bytes from the server.

use std::io::{self, Read};

use crate::error::ClientError;

/// Initial buffer size; it grows only when a single line needs more.
const INITIAL_BUFFER: usize = 64 * 1024;

/// Reads LF-terminated lines from `inner`, refusing any line longer than the caller's cap.
pub struct LineReader<R> {
    inner: R,
    buf: Vec<u8>,
    start: usize,
    end: usize,
}

impl<R: Read> LineReader<R> {
    pub fn new(inner: R) -> Self {
        Self {
            inner,
            buf: vec![0; INITIAL_BUFFER],
            start: 0,
            end: 0,
        }
    }

    /// The wrapped reader, once every buffered byte has been read (e.g. to start TLS on the
    /// socket after STARTTLS's reply); `None` if bytes are still buffered.
    pub fn into_inner(self) -> Option<R> {
        (self.start == self.end).then_some(self.inner)
    }

    /// The wrapped reader, e.g. to write a command on the same socket.
    pub fn get_mut(&mut self) -> &mut R {
        &mut self.inner
    }

    /// Returns the next line including its terminating LF (and CR, if any).
    /// Fails with `LineTooLong` if no LF comes within `max` bytes, `Closed` on EOF.
    pub fn read_line(&mut self, max: usize) -> Result<&[u8], ClientError> {
        let mut scanned = 0;
        loop {
            let window = &self.buf[self.start + scanned..self.end];
            if let Some(pos) = window.iter().position(|&b| b == b'\n') {
                let line_start = self.start;
                let line_end = self.start + scanned + pos + 1;
                if line_end - line_start > max {
                    return Err(ClientError::LineTooLong(max));
                }
                self.start = line_end;
                return Ok(&self.buf[line_start..line_end]);
            }
            scanned = self.end - self.start;
            if scanned > max {
                return Err(ClientError::LineTooLong(max));
            }
            self.make_room(max);
            let n = loop {
                match self.inner.read(&mut self.buf[self.end..]) {
                    Ok(n) => break n,
                    Err(e) if e.kind() == io::ErrorKind::Interrupted => continue,
                    Err(e) => return Err(ClientError::Io(e)),
                }
            };
            if n == 0 {
                return Err(ClientError::Closed);
            }
            self.end += n;
        }
    }

    /// Ensures there is free space after `end`: compacts first, grows (up to about `max`) only
    /// when the unfinished line already fills the buffer.
    fn make_room(&mut self, max: usize) {
        if self.start == self.end {
            self.start = 0;
            self.end = 0;
        }
        if self.end < self.buf.len() {
            return;
        }
        if self.start > 0 {
            self.buf.copy_within(self.start..self.end, 0);
            self.end -= self.start;
            self.start = 0;
            return;
        }
        let grown = (self.buf.len() * 2).min(max + 2).max(self.buf.len() + 1);
        self.buf.resize(grown, 0);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A reader that hands out at most `chunk` bytes per read, to exercise reassembly.
    struct Trickle<'a> {
        data: &'a [u8],
        chunk: usize,
    }

    impl Read for Trickle<'_> {
        fn read(&mut self, out: &mut [u8]) -> io::Result<usize> {
            let n = self.chunk.min(out.len()).min(self.data.len());
            out[..n].copy_from_slice(&self.data[..n]);
            self.data = &self.data[n..];
            Ok(n)
        }
    }

    fn all_lines(data: &[u8], chunk: usize, max: usize) -> (Vec<Vec<u8>>, Option<String>) {
        let mut reader = LineReader::new(Trickle { data, chunk });
        let mut lines = Vec::new();
        loop {
            match reader.read_line(max) {
                Ok(line) => lines.push(line.to_vec()),
                Err(e) => return (lines, Some(e.to_string())),
            }
        }
    }

    /// (input, bytes per read, line cap, lines expected, expected error text)
    type Case<'a> = (&'a [u8], usize, usize, &'a [&'a [u8]], &'a str);

    #[test]
    fn splits_lines_across_reads() {
        let cases: &[Case] = &[
            (b"a\r\nbb\r\n", 1, 10, &[b"a\r\n", b"bb\r\n"], "closed"),
            (b"a\r\nbb\r\n", 100, 10, &[b"a\r\n", b"bb\r\n"], "closed"),
            (b"a\nrest", 3, 10, &[b"a\n"], "closed"),
            (b"toolong\r\n", 2, 4, &[], "longer than 4"),
            (b"ok\r\ntoolong\r\n", 64, 4, &[b"ok\r\n"], "longer than 4"),
        ];
        for (data, chunk, max, want, err) in cases {
            let (lines, e) = all_lines(data, *chunk, *max);
            let want: Vec<Vec<u8>> = want.iter().map(|l| l.to_vec()).collect();
            assert_eq!(lines, want, "input {data:?} chunk {chunk}");
            assert!(e.unwrap_or_default().contains(err), "input {data:?}");
        }
    }

    #[test]
    fn grows_for_a_long_line_and_compacts_for_many_short_ones() {
        let mut data = vec![b'x'; 200_000];
        data.extend_from_slice(b"\r\n");
        for _ in 0..50_000 {
            data.extend_from_slice(b"short\r\n");
        }
        let (lines, _) = all_lines(&data, 7_000, 300_000);
        assert_eq!(lines.len(), 50_001);
        assert_eq!(lines[0].len(), 200_002);
        assert!(lines[1..].iter().all(|l| l == b"short\r\n"));
    }
}
