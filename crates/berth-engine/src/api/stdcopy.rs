//! Docker's stdcopy framing for non-TTY attach/exec/logs streams: each frame is
//! `[stream, 0, 0, 0, len_be32]` followed by `len` bytes; stream 0 stdin, 1 stdout, 2 stderr.

use tokio::io::{AsyncWrite, AsyncWriteExt};

/// A stream id.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[repr(u8)]
pub enum StdStream {
    /// 0.
    Stdin = 0,
    /// 1.
    Stdout = 1,
    /// 2.
    Stderr = 2,
}

/// The 8-byte header of a frame carrying `len` bytes.
pub fn header(stream: StdStream, len: u32) -> [u8; 8] {
    let l = len.to_be_bytes();
    [stream as u8, 0, 0, 0, l[0], l[1], l[2], l[3]]
}

/// One frame (header + payload) as bytes. Payloads over 4 GiB are split by the writer, not
/// here: `data` must fit a u32.
pub fn frame(stream: StdStream, data: &[u8]) -> Vec<u8> {
    let mut v = Vec::with_capacity(8 + data.len());
    v.extend_from_slice(&header(stream, data.len() as u32));
    v.extend_from_slice(data);
    v
}

/// Write `data` as one or more frames.
pub async fn write_frames<W: AsyncWrite + Unpin>(
    w: &mut W,
    stream: StdStream,
    data: &[u8],
) -> std::io::Result<()> {
    for chunk in data.chunks(u32::MAX as usize) {
        w.write_all(&header(stream, chunk.len() as u32)).await?;
        w.write_all(chunk).await?;
    }
    Ok(())
}

/// Incremental decoder: feed bytes, take complete frames.
#[derive(Debug, Default)]
pub struct Decoder {
    buf: Vec<u8>,
}

impl Decoder {
    /// A new decoder.
    pub fn new() -> Self {
        Self::default()
    }

    /// Add received bytes.
    pub fn push(&mut self, b: &[u8]) {
        self.buf.extend_from_slice(b);
    }

    /// The next complete frame (stream byte, payload), if any. A header with an unknown stream
    /// byte or non-zero padding is an error.
    pub fn next_frame(&mut self) -> Result<Option<(u8, Vec<u8>)>, String> {
        if self.buf.len() < 8 {
            return Ok(None);
        }
        let h = &self.buf[..8];
        if h[0] > 2 || h[1..4] != [0, 0, 0] {
            return Err(format!("bad stdcopy header {h:02x?}"));
        }
        let len = u32::from_be_bytes([h[4], h[5], h[6], h[7]]) as usize;
        if self.buf.len() < 8 + len {
            return Ok(None);
        }
        let s = h[0];
        let payload = self.buf[8..8 + len].to_vec();
        self.buf.drain(..8 + len);
        Ok(Some((s, payload)))
    }

    /// Bytes held that do not form a complete frame yet.
    pub fn pending(&self) -> usize {
        self.buf.len()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn trace_example() {
        assert_eq!(
            frame(StdStream::Stdout, b"hello\n"),
            b"\x01\x00\x00\x00\x00\x00\x00\x06hello\n"
        );
        assert_eq!(
            header(StdStream::Stderr, 0x01020304),
            [2, 0, 0, 0, 1, 2, 3, 4]
        );
    }

    #[test]
    fn decode_split() {
        let mut all = frame(StdStream::Stdout, b"ab");
        all.extend(frame(StdStream::Stderr, b"xyz"));
        let mut d = Decoder::new();
        d.push(&all[..5]);
        assert_eq!(d.next_frame().unwrap(), None);
        d.push(&all[5..]);
        assert_eq!(d.next_frame().unwrap(), Some((1, b"ab".to_vec())));
        assert_eq!(d.next_frame().unwrap(), Some((2, b"xyz".to_vec())));
        assert_eq!(d.next_frame().unwrap(), None);
        let mut bad = Decoder::new();
        bad.push(&[9, 0, 0, 0, 0, 0, 0, 0]);
        assert!(bad.next_frame().is_err());
    }

    #[tokio::test]
    async fn writer() {
        let mut out = Vec::new();
        write_frames(&mut out, StdStream::Stderr, b"oops")
            .await
            .unwrap();
        assert_eq!(out, frame(StdStream::Stderr, b"oops"));
    }
}
