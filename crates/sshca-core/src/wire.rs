//! Minimal strict reader and writer for the SSH wire format (RFC 4251).

use crate::{Error, Result};

/// A strict cursor over SSH wire data: every read is bounds-checked and
/// [`Cursor::finish`] rejects trailing bytes.
pub struct Cursor<'a> {
    buf: &'a [u8],
    what: &'static str,
}

impl<'a> Cursor<'a> {
    /// A cursor over `buf`; `what` names the structure in errors.
    pub fn new(buf: &'a [u8], what: &'static str) -> Self {
        Self { buf, what }
    }

    /// Reads `n` raw bytes.
    pub fn take(&mut self, n: usize, field: &str) -> Result<&'a [u8]> {
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

    /// Reads a `uint32`; `field` names it in errors.
    pub fn u32(&mut self, field: &str) -> Result<u32> {
        let b = self.take(4, field)?;
        Ok(u32::from_be_bytes([b[0], b[1], b[2], b[3]]))
    }

    /// Reads a `uint64`.
    pub fn u64(&mut self, field: &str) -> Result<u64> {
        let b = self.take(8, field)?;
        let mut a = [0u8; 8];
        a.copy_from_slice(b);
        Ok(u64::from_be_bytes(a))
    }

    /// Reads an SSH `string`.
    pub fn string(&mut self, field: &str) -> Result<&'a [u8]> {
        let len = self.u32(field)? as usize;
        self.take(len, field)
    }

    /// Reads an SSH `string` that must be UTF-8.
    pub fn utf8(&mut self, field: &str) -> Result<&'a str> {
        let b = self.string(field)?;
        std::str::from_utf8(b)
            .map_err(|_| Error::decode(format_args!("{}: {field} is not UTF-8", self.what)))
    }

    /// Whether everything was read.
    pub fn is_empty(&self) -> bool {
        self.buf.is_empty()
    }

    /// The unread bytes.
    pub fn remaining(&self) -> &'a [u8] {
        self.buf
    }

    /// Errors if anything is left unread.
    pub fn finish(&self) -> Result<()> {
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

/// Appends a big-endian `uint32`.
pub fn put_u32(out: &mut Vec<u8>, v: u32) {
    out.extend_from_slice(&v.to_be_bytes());
}

/// Appends a big-endian `uint64`.
pub fn put_u64(out: &mut Vec<u8>, v: u64) {
    out.extend_from_slice(&v.to_be_bytes());
}

/// Appends an SSH `string` (length-prefixed bytes).
pub fn put_string(out: &mut Vec<u8>, s: &[u8]) -> Result<()> {
    let len = u32::try_from(s.len())
        .map_err(|_| Error::Template(format!("field of {} bytes is too long", s.len())))?;
    put_u32(out, len);
    out.extend_from_slice(s);
    Ok(())
}

/// Writes a length placeholder, runs `f`, then patches the length.
pub fn put_nested(out: &mut Vec<u8>, f: impl FnOnce(&mut Vec<u8>) -> Result<()>) -> Result<()> {
    let at = out.len();
    put_u32(out, 0);
    f(out)?;
    let len = u32::try_from(out.len() - at - 4)
        .map_err(|_| Error::Template("nested field is too long".into()))?;
    out[at..at + 4].copy_from_slice(&len.to_be_bytes());
    Ok(())
}

/// A key's OpenSSH wire blob (its algorithm name and fields).
pub(crate) fn encode_key_blob(key: &ssh_key::public::KeyData) -> Result<Vec<u8>> {
    use ssh_encoding::Encode;
    let mut out = Vec::with_capacity(128);
    key.encode(&mut out)
        .map_err(|e| Error::Key(format!("cannot encode {} key: {e}", key.algorithm())))?;
    Ok(out)
}
