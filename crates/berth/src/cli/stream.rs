//! Hijacked attach/exec streams: stdcopy demultiplexing, stdin pumping, detach keys, raw tty.

use std::io::{self, BufReader, Read, Write};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;

use super::http::Conn;

/// Copy a stdcopy-multiplexed stream (8-byte headers) to stdout/stderr until EOF.
pub fn demux(mut r: impl Read, out: &mut dyn Write, err: &mut dyn Write) -> io::Result<()> {
    let mut hdr = [0u8; 8];
    let mut buf = vec![0u8; 32 * 1024];
    loop {
        if let Err(e) = r.read_exact(&mut hdr) {
            if e.kind() == io::ErrorKind::UnexpectedEof {
                return Ok(());
            }
            return Err(e);
        }
        let mut n = u32::from_be_bytes([hdr[4], hdr[5], hdr[6], hdr[7]]) as usize;
        let dst: &mut dyn Write = if hdr[0] == 2 { &mut *err } else { &mut *out };
        while n > 0 {
            let m = n.min(buf.len());
            r.read_exact(&mut buf[..m])?;
            dst.write_all(&buf[..m])?;
            n -= m;
        }
        dst.flush()?;
    }
}

/// Copy a raw (tty) stream to `out` until EOF.
pub fn raw_copy(mut r: impl Read, out: &mut dyn Write) -> io::Result<()> {
    let mut buf = vec![0u8; 32 * 1024];
    loop {
        let n = match r.read(&mut buf) {
            Ok(0) => return Ok(()),
            Ok(n) => n,
            Err(e) if e.kind() == io::ErrorKind::Interrupted => continue,
            Err(e) => return Err(e),
        };
        out.write_all(&buf[..n])?;
        out.flush()?;
    }
}

/// Parse docker's `--detach-keys` ("ctrl-p,ctrl-q", "ctrl-@", "a").
pub fn parse_detach_keys(s: &str) -> Result<Vec<u8>, String> {
    let mut out = Vec::new();
    for k in s.split(',') {
        let k = k.trim();
        if let Some(c) = k.strip_prefix("ctrl-") {
            let b = match c.as_bytes() {
                [b @ b'a'..=b'z'] => b - b'a' + 1,
                [b'@'] => 0,
                [b'['] => 27,
                [b'\\'] => 28,
                [b']'] => 29,
                [b'^'] => 30,
                [b'_'] => 31,
                _ => {
                    return Err(format!(
                        "invalid detach keys {s:?}: unknown character {k:?}"
                    ))
                }
            };
            out.push(b);
        } else if k.len() == 1 {
            out.push(k.as_bytes()[0]);
        } else {
            return Err(format!(
                "invalid detach keys {s:?}: unknown character {k:?}"
            ));
        }
    }
    Ok(out)
}

/// Result of pumping a hijacked stream.
pub struct Pumped {
    /// The user typed the detach keys.
    pub detached: bool,
}

/// Pump a hijacked connection: stdin → socket (in a thread, half-closing at EOF, watching
/// for `detach_keys` when given), socket → stdout/stderr (demultiplexed unless `tty`).
pub fn pump(
    reader: BufReader<Conn>,
    stdin: bool,
    tty: bool,
    detach_keys: Option<Vec<u8>>,
) -> io::Result<Pumped> {
    let detached = Arc::new(AtomicBool::new(false));
    if stdin {
        let mut w = reader.get_ref().try_clone()?;
        let closer = reader.get_ref().try_clone()?;
        let det = detached.clone();
        std::thread::spawn(move || {
            let mut input = io::stdin().lock();
            let mut buf = [0u8; 4096];
            let keys = detach_keys.unwrap_or_default();
            let mut matched = 0usize;
            loop {
                let n = match input.read(&mut buf) {
                    Ok(0) => break,
                    Ok(n) => n,
                    Err(e) if e.kind() == io::ErrorKind::Interrupted => continue,
                    Err(_) => break,
                };
                let mut send = Vec::with_capacity(n);
                for &b in &buf[..n] {
                    if !keys.is_empty() && b == keys[matched] {
                        matched += 1;
                        if matched == keys.len() {
                            det.store(true, Ordering::SeqCst);
                            closer.shutdown_both();
                            return;
                        }
                        continue;
                    }
                    if matched > 0 {
                        send.extend_from_slice(&keys[..matched]);
                        matched = 0;
                    }
                    send.push(b);
                }
                if !send.is_empty() && w.write_all(&send).is_err() {
                    return;
                }
            }
            w.shutdown_write();
        });
    }
    let stdout = io::stdout();
    let mut out = stdout.lock();
    let res = if tty {
        raw_copy(reader, &mut out)
    } else {
        let stderr = io::stderr();
        let mut err = stderr.lock();
        demux(reader, &mut out, &mut err)
    };
    let det = detached.load(Ordering::SeqCst);
    if !det {
        res?;
    }
    Ok(Pumped { detached: det })
}

/// Puts the terminal on stdin into raw mode; restores it on drop.
pub struct RawTerminal {
    saved: Option<rustix::termios::Termios>,
}

impl RawTerminal {
    /// Enter raw mode if stdin is a terminal.
    pub fn enter() -> RawTerminal {
        let fd = rustix::stdio::stdin();
        let saved = rustix::termios::tcgetattr(fd).ok();
        if let Some(t) = &saved {
            let mut raw = t.clone();
            raw.make_raw();
            let _ = rustix::termios::tcsetattr(fd, rustix::termios::OptionalActions::Now, &raw);
        }
        RawTerminal { saved }
    }
}

impl Drop for RawTerminal {
    fn drop(&mut self) {
        if let Some(t) = &self.saved {
            let _ = rustix::termios::tcsetattr(
                rustix::stdio::stdin(),
                rustix::termios::OptionalActions::Now,
                t,
            );
        }
    }
}

/// The terminal size of stdout (or stdin), as (rows, cols).
pub fn term_size() -> Option<(u16, u16)> {
    for fd in [rustix::stdio::stdout(), rustix::stdio::stdin()] {
        if let Ok(w) = rustix::termios::tcgetwinsize(fd) {
            if w.ws_row > 0 && w.ws_col > 0 {
                return Some((w.ws_row, w.ws_col));
            }
        }
    }
    None
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn demux_frames() {
        let mut data = vec![1, 0, 0, 0, 0, 0, 0, 6];
        data.extend_from_slice(b"hello\n");
        data.extend_from_slice(&[2, 0, 0, 0, 0, 0, 0, 4]);
        data.extend_from_slice(b"err\n");
        let (mut o, mut e) = (Vec::new(), Vec::new());
        demux(&data[..], &mut o, &mut e).unwrap();
        assert_eq!(o, b"hello\n");
        assert_eq!(e, b"err\n");
    }

    #[test]
    fn detach_keys() {
        assert_eq!(parse_detach_keys("ctrl-p,ctrl-q").unwrap(), vec![16, 17]);
        assert_eq!(parse_detach_keys("ctrl-@,a").unwrap(), vec![0, b'a']);
        assert!(parse_detach_keys("ctrl-pp").is_err());
    }
}
