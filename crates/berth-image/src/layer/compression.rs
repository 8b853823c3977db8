//! Compression detection and stream (de)compression for layers.

use std::io::{self, BufRead, BufReader, Read, Write};

use berth_core::{Algorithm, Digest, Digester};

use super::LayerError;

/// A layer's compression.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum Compression {
    /// A plain tar.
    #[default]
    None,
    /// gzip (`application/vnd.oci.image.layer.v1.tar+gzip`, Docker's default).
    Gzip,
    /// zstd (`application/vnd.oci.image.layer.v1.tar+zstd`).
    Zstd,
}

const GZIP_MAGIC: &[u8] = &[0x1f, 0x8b];
const ZSTD_MAGIC: &[u8] = &[0x28, 0xb5, 0x2f, 0xfd];
const XZ_MAGIC: &[u8] = &[0xfd, b'7', b'z', b'X', b'Z', 0x00];
const BZIP2_MAGIC: &[u8] = b"BZh";

/// Detect the compression from the first bytes of a stream (give at least 4 bytes).
/// Anything that is neither gzip nor zstd is taken as a plain tar.
pub fn detect(head: &[u8]) -> Compression {
    if head.starts_with(GZIP_MAGIC) {
        Compression::Gzip
    } else if head.starts_with(ZSTD_MAGIC) {
        Compression::Zstd
    } else {
        Compression::None
    }
}

/// Formats we recognise but do not decompress.
fn unsupported_format(head: &[u8]) -> Option<&'static str> {
    if head.starts_with(XZ_MAGIC) {
        Some("xz")
    } else if head.starts_with(BZIP2_MAGIC) && head.len() >= 4 && head[3].is_ascii_digit() {
        Some("bzip2")
    } else {
        None
    }
}

/// Stream buffer size for layer I/O.
pub(crate) const BUF_SIZE: usize = 256 * 1024;

/// A `BufRead` adapter that hashes and counts the bytes its consumer consumes.
pub(crate) struct HashBufRead<R> {
    inner: R,
    digester: Digester,
    count: u64,
}

impl<R: BufRead> HashBufRead<R> {
    pub(crate) fn new(inner: R) -> Self {
        HashBufRead {
            inner,
            digester: Digester::new(Algorithm::Sha256),
            count: 0,
        }
    }

    /// Read the rest of the stream (hashing it) and return the inner reader, digest and count.
    fn drain(mut self) -> io::Result<(R, Digest, u64)> {
        io::copy(&mut self, &mut io::sink())?;
        Ok((self.inner, self.digester.finish(), self.count))
    }
}

impl<R: BufRead> Read for HashBufRead<R> {
    fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        // Through the inner reader's own `read`: a BufReader hands large reads straight to its
        // source when its buffer is empty, saving a copy.
        let n = self.inner.read(buf)?;
        self.digester.update(&buf[..n]);
        self.count += n as u64;
        Ok(n)
    }
}

impl<R: BufRead> BufRead for HashBufRead<R> {
    fn fill_buf(&mut self) -> io::Result<&[u8]> {
        self.inner.fill_buf()
    }

    fn consume(&mut self, amt: usize) {
        if amt == 0 {
            return;
        }
        // The buffer is still filled (consume follows fill_buf), so this does no I/O.
        if let Ok(buf) = self.inner.fill_buf() {
            let n = amt.min(buf.len());
            self.digester.update(&buf[..n]);
            self.count += n as u64;
        }
        self.inner.consume(amt);
    }
}

/// The digests and sizes of a layer stream read to its end.
pub(crate) struct StreamSums {
    pub(crate) diff_id: Digest,
    pub(crate) uncompressed_size: u64,
    pub(crate) compressed_digest: Digest,
    pub(crate) size: u64,
}

/// A decompressing reader of a layer that hashes both the compressed and the uncompressed
/// stream in the same pass.
pub(crate) enum LayerStream<R: BufRead> {
    Plain(Box<HashBufRead<R>>),
    Gzip(Box<HashBufRead<BufReader<flate2::bufread::MultiGzDecoder<HashBufRead<R>>>>>),
    Zstd(Box<HashBufRead<BufReader<zstd::stream::read::Decoder<'static, HashBufRead<R>>>>>),
}

impl<R: BufRead> LayerStream<R> {
    /// Detect the compression of `reader` from its first bytes and open the stream.
    pub(crate) fn open(mut reader: R) -> Result<(Compression, Self), LayerError> {
        let head = loop {
            match reader.fill_buf() {
                Ok(b) => break b,
                Err(e) if e.kind() == io::ErrorKind::Interrupted => continue,
                Err(e) => return Err(LayerError::Read(e)),
            }
        };
        if let Some(fmt) = unsupported_format(head) {
            return Err(LayerError::Unsupported(format!(
                "{fmt} compressed layers are not supported"
            )));
        }
        let c = detect(head);
        let s = match c {
            Compression::None => LayerStream::Plain(Box::new(HashBufRead::new(reader))),
            Compression::Gzip => {
                LayerStream::Gzip(Box::new(HashBufRead::new(BufReader::with_capacity(
                    BUF_SIZE,
                    flate2::bufread::MultiGzDecoder::new(HashBufRead::new(reader)),
                ))))
            }
            Compression::Zstd => {
                LayerStream::Zstd(Box::new(HashBufRead::new(BufReader::with_capacity(
                    BUF_SIZE,
                    zstd::stream::read::Decoder::with_buffer(HashBufRead::new(reader))
                        .map_err(LayerError::Read)?,
                ))))
            }
        };
        Ok((c, s))
    }

    /// Read both streams to their ends and return their digests and sizes.
    pub(crate) fn finish(self) -> io::Result<StreamSums> {
        match self {
            LayerStream::Plain(h) => {
                let (_, d, n) = h.drain()?;
                Ok(StreamSums {
                    diff_id: d.clone(),
                    uncompressed_size: n,
                    compressed_digest: d,
                    size: n,
                })
            }
            LayerStream::Gzip(h) => {
                let (inner, diff_id, un) = h.drain()?;
                let (_, cd, cn) = inner.into_inner().into_inner().drain()?;
                Ok(StreamSums {
                    diff_id,
                    uncompressed_size: un,
                    compressed_digest: cd,
                    size: cn,
                })
            }
            LayerStream::Zstd(h) => {
                let (inner, diff_id, un) = h.drain()?;
                let (_, cd, cn) = inner.into_inner().finish().drain()?;
                Ok(StreamSums {
                    diff_id,
                    uncompressed_size: un,
                    compressed_digest: cd,
                    size: cn,
                })
            }
        }
    }
}

impl<R: BufRead> Read for LayerStream<R> {
    fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        match self {
            LayerStream::Plain(h) => h.read(buf),
            LayerStream::Gzip(h) => h.read(buf),
            LayerStream::Zstd(h) => h.read(buf),
        }
    }
}

/// A compressing writer that must be finished explicitly.
pub(crate) enum Encoder<W: Write> {
    None(W),
    Gzip(flate2::write::GzEncoder<W>),
    Zstd(zstd::stream::write::Encoder<'static, W>),
}

impl<W: Write> Encoder<W> {
    pub(crate) fn new(c: Compression, w: W) -> io::Result<Self> {
        Ok(match c {
            Compression::None => Encoder::None(w),
            Compression::Gzip => Encoder::Gzip(flate2::write::GzEncoder::new(
                w,
                flate2::Compression::fast(),
            )),
            Compression::Zstd => Encoder::Zstd(zstd::stream::write::Encoder::new(w, 3)?),
        })
    }

    pub(crate) fn finish(self) -> io::Result<W> {
        match self {
            Encoder::None(w) => Ok(w),
            Encoder::Gzip(e) => e.finish(),
            Encoder::Zstd(e) => e.finish(),
        }
    }
}

impl<W: Write> Write for Encoder<W> {
    fn write(&mut self, buf: &[u8]) -> io::Result<usize> {
        match self {
            Encoder::None(w) => w.write(buf),
            Encoder::Gzip(w) => w.write(buf),
            Encoder::Zstd(w) => w.write(buf),
        }
    }
    fn flush(&mut self) -> io::Result<()> {
        match self {
            Encoder::None(w) => w.flush(),
            Encoder::Gzip(w) => w.flush(),
            Encoder::Zstd(w) => w.flush(),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn detects_magic() {
        assert_eq!(detect(&[0x1f, 0x8b, 8, 0]), Compression::Gzip);
        assert_eq!(detect(&[0x28, 0xb5, 0x2f, 0xfd, 0]), Compression::Zstd);
        assert_eq!(detect(b"etc/\0\0\0"), Compression::None);
        assert_eq!(detect(&[]), Compression::None);
        assert_eq!(unsupported_format(b"BZh91AY"), Some("bzip2"));
        assert_eq!(unsupported_format(XZ_MAGIC), Some("xz"));
        assert_eq!(unsupported_format(b"BZhx"), None);
    }
}
