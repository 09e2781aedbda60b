//! Reading a KRL strictly: every section, serials in each encoding, and
//! what OpenSSH refuses refused here too.

use super::*;

/// A certificate section being read; serials are normalised at the end.
pub(super) struct PendingSection {
    pub(super) ca_key: Option<KeyData>,
    pub(super) ranges: Vec<(u64, u64)>,
    pub(super) key_ids: BTreeSet<String>,
}

pub(super) fn decode(bytes: &[u8]) -> Result<Krl> {
    let mut c = Cursor::new(bytes, "KRL");
    if c.take(MAGIC.len(), "magic").ok() != Some(&MAGIC[..]) {
        return Err(krl_error("not a KRL (bad magic)"));
    }
    let format = c.u32("format version")?;
    if format != FORMAT_VERSION {
        return Err(krl_error(format_args!(
            "unsupported KRL format version {format}"
        )));
    }
    let mut krl = Krl {
        version: c.u64("krl_version")?,
        generated_date: c.u64("generated_date")?,
        flags: c.u64("flags")?,
        ..Krl::default()
    };
    c.string("reserved")?;
    krl.comment = cstring(c.string("comment")?, "comment")?.to_owned();

    let mut pending: Vec<PendingSection> = Vec::new();
    while !c.is_empty() {
        let kind = c.take(1, "section type")?[0];
        if kind == SECTION_SIGNATURE {
            krl.signatures.push(EmbeddedSignature {
                key: c.string("signature key")?.to_vec(),
                signature: c.string("signature")?.to_vec(),
            });
            continue;
        }
        if !krl.signatures.is_empty() {
            return Err(krl_error(format_args!(
                "section {kind} after a signature section (signatures must come last)"
            )));
        }
        let data = c.string("section")?;
        match kind {
            SECTION_CERTIFICATES => decode_cert_section(data, &mut pending)?,
            SECTION_EXPLICIT_KEY => {
                let mut s = Cursor::new(data, "KRL explicit key section");
                while !s.is_empty() {
                    let blob = s.string("key")?;
                    decode_key(blob, "revoked key").map_err(krl_err)?;
                    krl.keys.insert(blob.to_vec());
                }
            }
            SECTION_FINGERPRINT_SHA1 => {
                for h in hashes::<20>(data, "SHA1")? {
                    krl.sha1.insert(h);
                }
            }
            SECTION_FINGERPRINT_SHA256 => {
                for h in hashes::<32>(data, "SHA256")? {
                    krl.sha256.insert(h);
                }
            }
            SECTION_EXTENSION => extension(data, "extension section")?,
            other => return Err(krl_error(format_args!("unsupported section type {other}"))),
        }
    }
    for p in pending {
        krl.certs.push(CertSection {
            ca_key: p.ca_key,
            serials: Serials::normalized(p.ranges),
            key_ids: p.key_ids,
        });
    }
    Ok(krl)
}

pub(super) fn cstring<'a>(b: &'a [u8], field: &str) -> Result<&'a str> {
    if b.contains(&0) {
        return Err(krl_error(format_args!("{field} holds a NUL byte")));
    }
    std::str::from_utf8(b).map_err(|_| krl_error(format_args!("{field} is not UTF-8")))
}

pub(super) fn hashes<const N: usize>(data: &[u8], what: &'static str) -> Result<Vec<[u8; N]>> {
    let mut s = Cursor::new(data, "KRL hash section");
    let mut out = Vec::new();
    while !s.is_empty() {
        let h = s.string("hash")?;
        let h: [u8; N] = h.try_into().map_err(|_| {
            krl_error(format_args!(
                "a {what} hash of {} bytes (expected {N})",
                h.len()
            ))
        })?;
        out.push(h);
    }
    Ok(out)
}

/// An extension: ignored unless critical (no extensions are defined).
pub(super) fn extension(data: &[u8], what: &'static str) -> Result<()> {
    let mut s = Cursor::new(data, "KRL extension");
    let name = s.string("extension name")?;
    let critical = s.take(1, "critical flag")?[0];
    s.string("extension contents")?;
    s.finish()?;
    if critical != 0 {
        return Err(krl_error(format_args!(
            "unsupported critical {what} \"{}\"",
            crate::text::escape(&String::from_utf8_lossy(name))
        )));
    }
    Ok(())
}

pub(super) fn decode_cert_section(data: &[u8], pending: &mut Vec<PendingSection>) -> Result<()> {
    let mut c = Cursor::new(data, "KRL certificate section");
    let blob = c.string("CA key")?;
    c.string("reserved")?;
    let ca_key = if blob.is_empty() {
        None
    } else {
        Some(decode_key(blob, "CA key").map_err(krl_err)?)
    };
    let at = match pending.iter().position(|p| p.ca_key == ca_key) {
        Some(i) => i,
        None => {
            pending.push(PendingSection {
                ca_key,
                ranges: Vec::new(),
                key_ids: BTreeSet::new(),
            });
            pending.len() - 1
        }
    };
    let p = &mut pending[at];
    while !c.is_empty() {
        let kind = c.take(1, "subsection type")?[0];
        let mut s = Cursor::new(c.string("subsection")?, "KRL certificate subsection");
        match kind {
            CERT_SERIAL_LIST => {
                while !s.is_empty() {
                    let serial = s.u64("serial")?;
                    push_range(&mut p.ranges, serial, serial)?;
                }
            }
            CERT_SERIAL_RANGE => {
                let lo = s.u64("serial_min")?;
                let hi = s.u64("serial_max")?;
                push_range(&mut p.ranges, lo, hi)?;
            }
            CERT_SERIAL_BITMAP => {
                let start = s.u64("serial_offset")?;
                let bits = s.string("bitmap")?;
                decode_bitmap(start, bits, &mut p.ranges)?;
            }
            CERT_KEY_ID => {
                while !s.is_empty() {
                    let id = cstring(s.string("key id")?, "a revoked key id")?;
                    p.key_ids.insert(id.to_owned());
                }
            }
            CERT_EXTENSION => {
                extension(s.remaining(), "certificate extension subsection")?;
                continue;
            }
            other => {
                return Err(krl_error(format_args!(
                    "unsupported certificate subsection type {other:#04x}"
                )))
            }
        }
        s.finish()?;
    }
    Ok(())
}

pub(super) fn push_range(ranges: &mut Vec<(u64, u64)>, lo: u64, hi: u64) -> Result<()> {
    check_range(lo, hi)?;
    ranges.push((lo, hi));
    Ok(())
}

/// An mpint bitmap: bit N set revokes serial `start + N`.
pub(super) fn decode_bitmap(start: u64, mpint: &[u8], ranges: &mut Vec<(u64, u64)>) -> Result<()> {
    if mpint.first().is_some_and(|&b| b & 0x80 != 0) {
        return Err(krl_error("serial bitmap is a negative mpint"));
    }
    let max_bytes = (MAX_BITMAP_BITS / 8) as usize;
    if mpint.len() > max_bytes + 1 || (mpint.len() == max_bytes + 1 && mpint[0] != 0) {
        return Err(krl_error(format_args!(
            "serial bitmap of {} bytes (OpenSSH reads at most {max_bytes})",
            mpint.len()
        )));
    }
    let mut run: Option<(u64, u64)> = None;
    for (byte_index, &byte) in mpint.iter().rev().enumerate() {
        if byte == 0 {
            continue;
        }
        for bit in 0..8u64 {
            if byte & (1 << bit) == 0 {
                continue;
            }
            let n = byte_index as u64 * 8 + bit;
            let serial = start
                .checked_add(n)
                .ok_or_else(|| krl_error("serial bitmap runs past the largest serial"))?;
            run = match run {
                Some((lo, hi)) if hi + 1 == serial => Some((lo, serial)),
                Some((lo, hi)) => {
                    push_range(ranges, lo, hi)?;
                    Some((serial, serial))
                }
                None => Some((serial, serial)),
            };
        }
    }
    if let Some((lo, hi)) = run {
        push_range(ranges, lo, hi)?;
    }
    Ok(())
}
