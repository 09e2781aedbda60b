//! Minimal strict reader and writer for the SSH wire format (RFC 4251).

use crate::{Error, Result};

/// A strict cursor over SSH wire data: every read is bounds-checked and
/// [`Cursor::finish`] rejects trailing bytes.
pub(crate) struct Cursor<'a> {
    buf: &'a [u8],
    what: &'static str,
}

impl<'a> Cursor<'a> {
    pub(crate) fn new(buf: &'a [u8], what: &'static str) -> Self {
        Self { buf, what }
    }

    fn take(&mut self, n: usize, field: &str) -> Result<&'a [u8]> {
        if self.buf.len() < n {
            return Err(Error::decode(format_args!(
                "{}: truncated while reading {field} (need {n} bytes, {} left)",
                self.what,
                self.buf.len()
            )));
        }
        let (head, tail) = self.buf.split_at(n);
        self.buf = tail;
        Ok(head)
    }

    pub(crate) fn u32(&mut self, field: &str) -> Result<u32> {
        let b = self.take(4, field)?;
        Ok(u32::from_be_bytes([b[0], b[1], b[2], b[3]]))
    }

    pub(crate) fn u64(&mut self, field: &str) -> Result<u64> {
        let b = self.take(8, field)?;
        let mut a = [0u8; 8];
        a.copy_from_slice(b);
        Ok(u64::from_be_bytes(a))
    }

    pub(crate) fn string(&mut self, field: &str) -> Result<&'a [u8]> {
        let len = self.u32(field)? as usize;
        self.take(len, field)
    }

    pub(crate) fn utf8(&mut self, field: &str) -> Result<&'a str> {
        let b = self.string(field)?;
        std::str::from_utf8(b)
            .map_err(|_| Error::decode(format_args!("{}: {field} is not UTF-8", self.what)))
    }

    pub(crate) fn is_empty(&self) -> bool {
        self.buf.is_empty()
    }

    pub(crate) fn remaining(&self) -> &'a [u8] {
        self.buf
    }

    pub(crate) fn finish(&self) -> Result<()> {
        if self.buf.is_empty() {
            Ok(())
        } else {
            Err(Error::decode(format_args!(
                "{}: {} trailing bytes",
                self.what,
                self.buf.len()
            )))
        }
    }
}

pub(crate) fn put_u32(out: &mut Vec<u8>, v: u32) {
    out.extend_from_slice(&v.to_be_bytes());
}

pub(crate) fn put_u64(out: &mut Vec<u8>, v: u64) {
    out.extend_from_slice(&v.to_be_bytes());
}

pub(crate) fn put_string(out: &mut Vec<u8>, s: &[u8]) -> Result<()> {
    let len = u32::try_from(s.len())
        .map_err(|_| Error::Template(format!("field of {} bytes is too long", s.len())))?;
    put_u32(out, len);
    out.extend_from_slice(s);
    Ok(())
}

/// Writes a length placeholder, runs `f`, then patches the length.
pub(crate) fn put_nested(
    out: &mut Vec<u8>,
    f: impl FnOnce(&mut Vec<u8>) -> Result<()>,
) -> Result<()> {
    let at = out.len();
    put_u32(out, 0);
    f(out)?;
    let len = u32::try_from(out.len() - at - 4)
        .map_err(|_| Error::Template("nested field is too long".into()))?;
    out[at..at + 4].copy_from_slice(&len.to_be_bytes());
    Ok(())
}
