//! Reading byte streams (files, stdin) into blocks of complete lines for the engine.
//!
//! [`LineReader`] never loses or stalls on a line: a line longer than the cap is cut to the
//! cap, counted, and the rest of it is skipped up to the next newline; invalid UTF-8 and NUL
//! bytes pass through untouched; a last line without a newline is delivered at end of input.

use std::io::{self, Read};
use std::path::Path;
use std::time::SystemTime;

use crate::engine::{Engine, Input};
use crate::timestamp::{now_millis, Millis};

/// Reads go into a buffer of at least this size: fewer, larger blocks. With one 64 KiB block
/// per read, the per-block work (system call, block setup) cost 13% of a scan of an auth log.
const MIN_BUFFER: usize = 1 << 20;

/// Splits a reader into blocks of whole lines, each line at most `max_line` bytes.
#[derive(Debug)]
pub struct LineReader<R> {
    inner: R,
    buf: Vec<u8>,
    start: usize,
    end: usize,
    eof: bool,
    /// Inside an over-long line: discard up to the next newline.
    skipping: bool,
    max_line: usize,
    /// Lines cut because they were longer than the cap.
    pub truncated: u64,
}

impl<R: Read> LineReader<R> {
    /// A reader whose lines are cut at `max_line` bytes. The buffer holds at least one
    /// line, so that a partial line longer than the cap is noticed; complete lines longer than
    /// the cap inside a block are found by [`first_long_line`].
    pub fn new(inner: R, max_line: usize) -> LineReader<R> {
        let max_line = max_line.max(1);
        LineReader {
            inner,
            buf: vec![0; (max_line + 1).max(MIN_BUFFER)],
            start: 0,
            end: 0,
            eof: false,
            skipping: false,
            max_line,
            truncated: 0,
        }
    }

    /// The next block of complete lines, or `None` at end of input.
    pub fn next_block(&mut self) -> io::Result<Option<&[u8]>> {
        loop {
            if self.skipping {
                match memchr::memchr(b'\n', &self.buf[self.start..self.end]) {
                    Some(i) => {
                        self.start += i + 1;
                        self.skipping = false;
                    }
                    None => self.start = self.end,
                }
            }
            if !self.skipping {
                let data = &self.buf[self.start..self.end];
                if let Some(i) = memchr::memrchr(b'\n', data) {
                    let s = self.start;
                    let block = &data[..i + 1];
                    match first_long_line(block, self.max_line) {
                        None => {
                            self.start += i + 1;
                            return Ok(Some(&self.buf[s..s + i + 1]));
                        }
                        // The whole lines before the long one first.
                        Some((ls, _)) if ls > 0 => {
                            self.start += ls;
                            return Ok(Some(&self.buf[s..s + ls]));
                        }
                        // Then the long line, cut (its newline is in the buffer: no skipping).
                        Some((_, le)) => {
                            self.start += le + 1;
                            self.truncated += 1;
                            return Ok(Some(&self.buf[s..s + self.max_line]));
                        }
                    }
                }
                if data.len() > self.max_line {
                    let s = self.start;
                    self.start += self.max_line;
                    self.skipping = true;
                    self.truncated += 1;
                    return Ok(Some(&self.buf[s..s + self.max_line]));
                }
                if self.eof {
                    if data.is_empty() {
                        return Ok(None);
                    }
                    let s = self.start;
                    self.start = self.end;
                    return Ok(Some(&self.buf[s..self.end]));
                }
            } else if self.eof {
                return Ok(None);
            }
            // Need more input: keep the partial line, refill behind it.
            self.buf.copy_within(self.start..self.end, 0);
            self.end -= self.start;
            self.start = 0;
            let n = loop {
                match self.inner.read(&mut self.buf[self.end..]) {
                    Ok(n) => break n,
                    Err(e) if e.kind() == io::ErrorKind::Interrupted => continue,
                    Err(e) => return Err(e),
                }
            };
            if n == 0 {
                self.eof = true;
            }
            self.end += n;
        }
    }
}

/// The first line of `block` (whole lines) longer than `max` bytes without its newline: its
/// start and the index of its newline.
///
/// A line starting at `start` is longer than `max` exactly when `block[start..=start + max]`
/// holds no newline, so the search jumps from window to window (to just after the last
/// newline of each) instead of visiting every line: about 16 searches per MiB of short lines
/// instead of 10,000.
fn first_long_line(block: &[u8], max: usize) -> Option<(usize, usize)> {
    let mut start = 0;
    while block.len() - start > max {
        let window = &block[start..=start + max];
        match memchr::memrchr(b'\n', window) {
            Some(i) => start += i + 1,
            None => {
                let rest = start + max + 1;
                return memchr::memchr(b'\n', &block[rest..]).map(|i| (start, rest + i));
            }
        }
    }
    None
}

/// The year-inference reference for a file: its modification time (logs are written up to
/// then), or now.
pub fn file_reference(path: &Path) -> Millis {
    std::fs::metadata(path)
        .and_then(|m| m.modified())
        .ok()
        .and_then(|t| t.duration_since(SystemTime::UNIX_EPOCH).ok())
        .map_or_else(now_millis, |d| d.as_millis() as Millis)
}

/// How [`run_reader`] reads.
#[derive(Debug, Clone, Copy)]
pub struct ReadOptions {
    /// Lines are cut at this many bytes.
    pub max_line: usize,
    /// Run policy and correlation (`scan`), or only report hits (`match`).
    pub correlate: bool,
}

/// Runs `engine` over everything `reader` yields as `input`. `progress` is called with the
/// bytes of each block (for a progress bar).
pub fn run_reader<R: Read>(
    engine: &mut Engine,
    reader: R,
    mut input: Input,
    opts: ReadOptions,
    mut on_hit: impl FnMut(&Engine, &Input, &crate::engine::Hit),
    mut progress: impl FnMut(u64),
) -> io::Result<()> {
    let mut lr = LineReader::new(reader, opts.max_line);
    let mut truncated = 0;
    while let Some(block) = lr.next_block()? {
        let len = block.len() as u64;
        engine.process_block(block, &mut input, opts.correlate, &mut on_hit);
        progress(len);
        engine.stats.truncated_lines += lr.truncated - truncated;
        truncated = lr.truncated;
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Reads everything with a tiny reader chunk size, to exercise refills.
    struct Trickle<'a>(&'a [u8], usize);
    impl Read for Trickle<'_> {
        fn read(&mut self, out: &mut [u8]) -> io::Result<usize> {
            let n = self.0.len().min(self.1).min(out.len());
            out[..n].copy_from_slice(&self.0[..n]);
            self.0 = &self.0[n..];
            Ok(n)
        }
    }

    /// The window-jumping search finds the same first long line as visiting every line.
    #[test]
    fn first_long_line_equals_a_line_by_line_search() {
        fn naive(block: &[u8], max: usize) -> Option<(usize, usize)> {
            let mut start = 0;
            for nl in memchr::memchr_iter(b'\n', block) {
                if nl - start > max {
                    return Some((start, nl));
                }
                start = nl + 1;
            }
            None
        }
        let mut rng = fastrand::Rng::with_seed(3);
        for _ in 0..2000 {
            let len = rng.usize(0..400);
            let block: Vec<u8> = (0..len)
                .map(|_| if rng.u8(..) < 20 { b'\n' } else { b'a' })
                .collect();
            let max = rng.usize(0..60);
            assert_eq!(
                first_long_line(&block, max),
                naive(&block, max),
                "max {max}, block {block:?}"
            );
        }
    }

    fn lines(input: &[u8], max: usize, chunk: usize) -> (Vec<String>, u64) {
        let mut lr = LineReader::new(Trickle(input, chunk), max);
        let mut out = Vec::new();
        while let Some(b) = lr.next_block().unwrap() {
            let b = b.strip_suffix(b"\n").unwrap_or(b);
            out.extend(
                b.split(|&c| c == b'\n')
                    .map(|l| String::from_utf8_lossy(l).into_owned()),
            );
        }
        (out, lr.truncated)
    }

    #[test]
    fn splits_lines_across_reads_and_keeps_the_unterminated_last_line() {
        for chunk in [1, 3, 7, 1000] {
            let (got, t) = lines(b"a\nbb\n\nccc\nlast", 16, chunk);
            assert_eq!(got, ["a", "bb", "", "ccc", "last"], "chunk {chunk}");
            assert_eq!(t, 0);
        }
    }

    #[test]
    fn long_lines_are_cut_counted_and_the_next_line_survives() {
        // Small reads (the long line spans refills) and one read of everything (the long
        // lines sit complete inside one block).
        for chunk in [1, 5, 64, 1 << 20] {
            let mut input = b"ok1\n".to_vec();
            input.extend(std::iter::repeat_n(b'x', 50));
            input.extend_from_slice(b"\nok2\n");
            input.extend(std::iter::repeat_n(b'y', 10));
            input.extend_from_slice(b"\n12345678\nok3");
            let (got, t) = lines(&input, 8, chunk);
            assert_eq!(
                got,
                ["ok1", "xxxxxxxx", "ok2", "yyyyyyyy", "12345678", "ok3"],
                "chunk {chunk}"
            );
            assert_eq!(t, 2);
        }
    }

    #[test]
    fn empty_input_yields_nothing() {
        assert_eq!(lines(b"", 8, 4).0, Vec::<String>::new());
    }
}
