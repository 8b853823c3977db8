//! Docker's `json-file` log format: one JSON object per line,
//! `{"log":"hello\n","stream":"stdout","time":"2026-01-01T00:00:00.123456789Z"}`, with rotation
//! by size (`max-size`) over `max-file` files (`x.log`, `x.log.1`, ... oldest last).
//!
//! The shim owns the writer; the daemon reads with [`read_all`] (and follows by re-reading from
//! an offset).

use std::fs::{File, OpenOptions};
use std::io::{self, BufRead, BufReader, Write};
use std::path::{Path, PathBuf};
use std::time::SystemTime;

use serde::{Deserialize, Serialize};

/// Docker cuts lines longer than this into several records (partial messages).
pub const MAX_LINE: usize = 16 * 1024;

/// One log record.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Entry {
    /// The bytes (a line with its `\n`, or a partial line).
    pub log: String,
    /// `stdout` or `stderr`.
    pub stream: String,
    /// RFC 3339 with nanoseconds.
    pub time: String,
}

/// Rotation settings (`--log-opt max-size=10m --log-opt max-file=3`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub struct Rotation {
    /// Rotate when the file would exceed this many bytes (0: never).
    pub max_size: u64,
    /// Files kept, the current one included (at least 1).
    pub max_files: u32,
}

impl Default for Rotation {
    fn default() -> Self {
        Rotation {
            max_size: 10 * 1024 * 1024,
            max_files: 3,
        }
    }
}

/// Parse a Docker size (`10m`, `1k`, `512`, `2g`).
pub fn parse_size(s: &str) -> Option<u64> {
    let s = s.trim().to_ascii_lowercase();
    let s = s.strip_suffix('b').unwrap_or(&s);
    let (num, mult) = match s.chars().last()? {
        'k' => (&s[..s.len() - 1], 1024),
        'm' => (&s[..s.len() - 1], 1024 * 1024),
        'g' => (&s[..s.len() - 1], 1024 * 1024 * 1024),
        _ => (s, 1),
    };
    num.trim().parse::<u64>().ok().map(|n| n * mult)
}

/// The json-file writer: splits each stream into lines and appends records.
#[derive(Debug)]
pub struct Writer {
    path: PathBuf,
    file: File,
    size: u64,
    rot: Rotation,
    partial: [Vec<u8>; 2],
}

impl Writer {
    /// Open (append to) `path`.
    pub fn open(path: &Path, rot: Rotation) -> io::Result<Self> {
        let file = OpenOptions::new().create(true).append(true).open(path)?;
        let size = file.metadata()?.len();
        Ok(Writer {
            path: path.to_path_buf(),
            file,
            size,
            rot,
            partial: [Vec::new(), Vec::new()],
        })
    }

    /// Add bytes read from stream 1 (stdout) or 2 (stderr).
    pub fn write(&mut self, stream: u8, data: &[u8]) -> io::Result<()> {
        let i = if stream == 2 { 1 } else { 0 };
        let mut buf = std::mem::take(&mut self.partial[i]);
        buf.extend_from_slice(data);
        let mut start = 0;
        while let Some(nl) = buf[start..].iter().position(|&b| b == b'\n') {
            let end = start + nl + 1;
            self.record(stream, &buf[start..end])?;
            start = end;
        }
        while buf.len() - start >= MAX_LINE {
            self.record(stream, &buf[start..start + MAX_LINE])?;
            start += MAX_LINE;
        }
        self.partial[i] = buf[start..].to_vec();
        Ok(())
    }

    /// Write out incomplete lines (at EOF).
    pub fn flush_partial(&mut self) -> io::Result<()> {
        for (i, stream) in [(0usize, 1u8), (1, 2)] {
            let b = std::mem::take(&mut self.partial[i]);
            if !b.is_empty() {
                self.record(stream, &b)?;
            }
        }
        Ok(())
    }

    fn record(&mut self, stream: u8, line: &[u8]) -> io::Result<()> {
        let e = Entry {
            log: String::from_utf8_lossy(line).into_owned(),
            stream: if stream == 2 { "stderr" } else { "stdout" }.into(),
            time: berth_runtime::timefmt::rfc3339_nanos(SystemTime::now()),
        };
        let mut json = serde_json::to_vec(&e).map_err(io::Error::other)?;
        json.push(b'\n');
        if self.rot.max_size > 0
            && self.size > 0
            && self.size + json.len() as u64 > self.rot.max_size
        {
            self.rotate()?;
        }
        self.file.write_all(&json)?;
        self.size += json.len() as u64;
        Ok(())
    }

    fn rotate(&mut self) -> io::Result<()> {
        let n = self.rot.max_files.max(1);
        if n == 1 {
            self.file.set_len(0)?;
            self.size = 0;
            return Ok(());
        }
        let name = |i: u32| rotated(&self.path, i);
        let _ = std::fs::remove_file(name(n - 1));
        for i in (1..n - 1).rev() {
            let _ = std::fs::rename(name(i), name(i + 1));
        }
        std::fs::rename(&self.path, name(1))?;
        self.file = OpenOptions::new()
            .create(true)
            .append(true)
            .open(&self.path)?;
        self.size = 0;
        Ok(())
    }
}

/// `path` for i = 0, `path.i` otherwise.
pub fn rotated(path: &Path, i: u32) -> PathBuf {
    if i == 0 {
        path.to_path_buf()
    } else {
        let mut s = path.as_os_str().to_owned();
        s.push(format!(".{i}"));
        PathBuf::from(s)
    }
}

/// Every record in the rotated files and `path`, oldest first. Unparsable lines are skipped.
pub fn read_all(path: &Path, max_files: u32) -> io::Result<Vec<Entry>> {
    let mut out = Vec::new();
    for i in (0..max_files.max(1)).rev() {
        let p = rotated(path, i);
        match File::open(&p) {
            Ok(f) => {
                read_from(f, &mut out)?;
            }
            Err(e) if e.kind() == io::ErrorKind::NotFound => {}
            Err(e) => return Err(e),
        }
    }
    Ok(out)
}

/// Append every complete record readable from `r` to `out`; returns the bytes consumed
/// (complete lines only, so a follower can resume from there).
pub fn read_from(r: impl io::Read, out: &mut Vec<Entry>) -> io::Result<u64> {
    let mut br = BufReader::new(r);
    let mut used = 0u64;
    let mut line = Vec::new();
    loop {
        line.clear();
        let n = br.read_until(b'\n', &mut line)?;
        if n == 0 || line.last() != Some(&b'\n') {
            return Ok(used);
        }
        used += n as u64;
        if let Ok(e) = serde_json::from_slice::<Entry>(&line) {
            out.push(e);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn lines_and_partials() {
        let d = tempfile::tempdir().unwrap();
        let p = d.path().join("c.log");
        let mut w = Writer::open(&p, Rotation::default()).unwrap();
        w.write(1, b"hel").unwrap();
        w.write(1, b"lo\nwor").unwrap();
        w.write(2, b"oops\n").unwrap();
        w.flush_partial().unwrap();
        let e = read_all(&p, 3).unwrap();
        let got: Vec<(&str, &str)> = e
            .iter()
            .map(|e| (e.log.as_str(), e.stream.as_str()))
            .collect();
        assert_eq!(
            got,
            vec![
                ("hello\n", "stdout"),
                ("oops\n", "stderr"),
                ("wor", "stdout")
            ]
        );
        assert!(e[0].time.ends_with('Z'));
    }

    #[test]
    fn rotation_keeps_max_files() {
        let d = tempfile::tempdir().unwrap();
        let p = d.path().join("c.log");
        let mut w = Writer::open(
            &p,
            Rotation {
                max_size: 300,
                max_files: 3,
            },
        )
        .unwrap();
        for i in 0..100 {
            w.write(1, format!("line {i}\n").as_bytes()).unwrap();
        }
        assert!(rotated(&p, 1).exists());
        assert!(rotated(&p, 2).exists());
        assert!(!rotated(&p, 3).exists());
        for i in 0..3 {
            assert!(std::fs::metadata(rotated(&p, i)).unwrap().len() <= 300);
        }
        let all = read_all(&p, 3).unwrap();
        assert_eq!(all.last().unwrap().log, "line 99\n");
        // oldest first, consecutive
        let nums: Vec<u32> = all
            .iter()
            .map(|e| e.log.trim().trim_start_matches("line ").parse().unwrap())
            .collect();
        assert!(nums.windows(2).all(|w| w[1] == w[0] + 1));
        assert!(nums.len() < 100);
    }

    #[test]
    fn long_lines_are_cut() {
        let d = tempfile::tempdir().unwrap();
        let p = d.path().join("c.log");
        let mut w = Writer::open(&p, Rotation::default()).unwrap();
        w.write(1, &vec![b'x'; MAX_LINE + 10]).unwrap();
        w.write(1, b"\n").unwrap();
        let e = read_all(&p, 1).unwrap();
        assert_eq!(e.len(), 2);
        assert_eq!(e[0].log.len(), MAX_LINE);
        assert_eq!(e[1].log, "xxxxxxxxxx\n");
    }

    #[test]
    fn sizes() {
        assert_eq!(parse_size("10m"), Some(10 << 20));
        assert_eq!(parse_size("1k"), Some(1024));
        assert_eq!(parse_size("512"), Some(512));
        assert_eq!(parse_size("2g"), Some(2 << 30));
        assert_eq!(parse_size("x"), None);
    }
}
