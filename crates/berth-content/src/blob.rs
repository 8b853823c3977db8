//! Readers of committed blobs.

use std::fs::File;
use std::io::{self, Read, Seek, SeekFrom};
use std::os::unix::fs::FileExt;

use berth_core::Digest;

use crate::{Error, Result};

/// A committed blob opened for reading: `Read + Seek` from the start, plus positional reads.
#[derive(Debug)]
pub struct Blob {
    file: File,
    digest: Digest,
    size: u64,
}

impl Blob {
    pub(crate) fn new(file: File, digest: Digest, size: u64) -> Self {
        Blob { file, digest, size }
    }

    /// The blob's digest.
    pub fn digest(&self) -> &Digest {
        &self.digest
    }

    /// The blob's size in bytes.
    pub fn size(&self) -> u64 {
        self.size
    }

    /// Read into `buf` at `offset` without moving the cursor; returns the bytes read (0 at end).
    pub fn read_at(&self, buf: &mut [u8], offset: u64) -> io::Result<usize> {
        if offset >= self.size {
            return Ok(0);
        }
        let max = ((self.size - offset).min(buf.len() as u64)) as usize;
        self.file.read_at(&mut buf[..max], offset)
    }

    /// A reader over `len` bytes from `offset` (an HTTP Range request); independent of this
    /// blob's cursor. Fails with [`Error::InvalidRange`] when the range exceeds the blob.
    pub fn range(&self, offset: u64, len: u64) -> Result<Range> {
        let end = offset.checked_add(len);
        if end.is_none_or(|e| e > self.size) {
            return Err(Error::InvalidRange {
                digest: self.digest.clone(),
                offset,
                len,
                size: self.size,
            });
        }
        let file = self
            .file
            .try_clone()
            .map_err(|e| Error::io(format!("open range of blob {}", self.digest), e))?;
        Ok(Range {
            file,
            pos: offset,
            end: offset + len,
        })
    }

    /// The underlying read-only file (for zero-copy consumers such as `sendfile`).
    pub fn into_file(self) -> File {
        self.file
    }
}

impl Read for Blob {
    fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        self.file.read(buf)
    }
}

impl Seek for Blob {
    fn seek(&mut self, pos: SeekFrom) -> io::Result<u64> {
        self.file.seek(pos)
    }
}

/// A bounded positional reader over part of a blob, from [`Blob::range`].
#[derive(Debug)]
pub struct Range {
    file: File,
    pos: u64,
    end: u64,
}

impl Range {
    /// Bytes left to read.
    pub fn remaining(&self) -> u64 {
        self.end - self.pos
    }
}

impl Read for Range {
    fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        let max = (self.end - self.pos).min(buf.len() as u64) as usize;
        if max == 0 {
            return Ok(0);
        }
        let n = self.file.read_at(&mut buf[..max], self.pos)?;
        self.pos += n as u64;
        Ok(n)
    }
}
