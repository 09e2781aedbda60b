//! Writing a KRL: sections, and certificate serials in the smallest of
//! OpenSSH's list, range and bitmap encodings.

use super::*;

pub(super) fn put_blob_section<'a, B: AsRef<[u8]> + 'a>(
    out: &mut Vec<u8>,
    kind: u8,
    blobs: impl Iterator<Item = &'a B>,
) -> Result<()> {
    let mut blobs = blobs.peekable();
    if blobs.peek().is_none() {
        return Ok(());
    }
    out.push(kind);
    put_nested(out, |o| {
        for b in blobs {
            put_string(o, b.as_ref())?;
        }
        Ok(())
    })
}

pub(super) fn encode_cert_section(out: &mut Vec<u8>, section: &CertSection) -> Result<()> {
    match &section.ca_key {
        Some(k) => put_string(out, &encode_key_blob(k)?)?,
        None => put_string(out, &[])?,
    }
    put_string(out, &[])?;
    encode_serials(out, section.serials.ranges())?;
    if !section.key_ids.is_empty() {
        out.push(CERT_KEY_ID);
        put_nested(out, |o| {
            for id in &section.key_ids {
                if id.as_bytes().contains(&0) {
                    return Err(krl_error("a key id holds a NUL byte"));
                }
                put_string(o, id.as_bytes())?;
            }
            Ok(())
        })?;
    }
    Ok(())
}

/// Which subsection to emit for the next run, and whether to start a new
/// one of the same kind: the bit-cost model of ssh-keygen's encoder.
pub(super) fn choose_next(
    state: u8,
    contig: u64,
    last: bool,
    last_gap: u64,
    next_gap: u64,
) -> (u8, bool) {
    let contig = contig.min(1 << 31);
    let last_gap = last_gap.min(1 << 31);
    let next_gap = next_gap.min(1 << 31);
    // The cost of switching from the current kind to each candidate.
    let (mut list, mut bitmap, mut restart, mut range) = match state {
        CERT_SERIAL_LIST => (0u64, 8 + 64, 8 + 64, 8u64),
        CERT_SERIAL_BITMAP => (8, 0, 8 + 64, 8),
        _ => (8, 8 + 64, 8 + 64, 8),
    };
    let follow = if last { 0 } else { 8 + 64 };
    list += 64 * contig + follow;
    range += 2 * 64 + follow;
    let next = if last { 0 } else { next_gap.min(8 + 64) };
    bitmap += last_gap + contig + next;
    restart += contig + next;
    let bytes = |bits: u64| bits.div_ceil(8);
    let (list, range, bitmap, restart) = (bytes(list), bytes(range), bytes(bitmap), bytes(restart));

    let (mut kind, mut cost, mut fresh) = (CERT_SERIAL_BITMAP, bitmap, false);
    if range < cost {
        (kind, cost) = (CERT_SERIAL_RANGE, range);
    }
    if list < cost {
        (kind, cost) = (CERT_SERIAL_LIST, list);
    }
    if restart < cost {
        (kind, fresh) = (CERT_SERIAL_BITMAP, true);
    }
    (kind, fresh)
}

/// A bitmap under construction: bit N set means serial `start + N`.
pub(super) struct Bitmap {
    pub(super) start: u64,
    pub(super) bits: Vec<u8>,
}

impl Bitmap {
    pub(super) fn set_run(&mut self, lo: u64, hi: u64) {
        for s in lo..=hi {
            let n = (s - self.start) as usize;
            if self.bits.len() <= n / 8 {
                self.bits.resize(n / 8 + 1, 0);
            }
            self.bits[n / 8] |= 1 << (n % 8);
        }
    }

    /// `uint64 offset, mpint bitmap`.
    pub(super) fn write(&self, out: &mut Vec<u8>) -> Result<()> {
        put_u64(out, self.start);
        let mut be: Vec<u8> = self.bits.iter().rev().copied().collect();
        let lead = be.iter().take_while(|&&b| b == 0).count();
        be.drain(..lead);
        if be.first().is_some_and(|&b| b & 0x80 != 0) {
            be.insert(0, 0);
        }
        put_string(out, &be)
    }
}

pub(super) fn encode_serials(out: &mut Vec<u8>, ranges: &[(u64, u64)]) -> Result<()> {
    let mut state = 0u8;
    let mut sect: Vec<u8> = Vec::new();
    let mut bitmap: Option<Bitmap> = None;
    let mut prev_hi = 0u64;
    let flush = |out: &mut Vec<u8>, state: u8, sect: &mut Vec<u8>, bitmap: &mut Option<Bitmap>| {
        if let Some(b) = bitmap.take() {
            b.write(sect)?;
        }
        out.push(state);
        put_string(out, sect)?;
        sect.clear();
        Ok::<(), Error>(())
    };
    for (i, &(lo, hi)) in ranges.iter().enumerate() {
        let next = ranges.get(i + 1);
        let gap = next.map_or(0, |&(nlo, _)| nlo - hi);
        let contig = hi - lo + 1;
        let last_gap = if state == 0 { 0 } else { lo - prev_hi };
        let (mut next_state, mut fresh) = choose_next(state, contig, next.is_none(), last_gap, gap);
        if next_state == CERT_SERIAL_BITMAP {
            // Keep every bitmap within what OpenSSH reads.
            let start = match (&bitmap, fresh) {
                (Some(b), false) if state == CERT_SERIAL_BITMAP => b.start,
                _ => lo,
            };
            if hi - start >= MAX_BITMAP_BITS {
                if hi - lo < MAX_BITMAP_BITS {
                    fresh = true;
                } else {
                    next_state = CERT_SERIAL_RANGE;
                    fresh = false;
                }
            }
        }
        if state != 0 && (fresh || next_state != state || state == CERT_SERIAL_RANGE) {
            flush(out, state, &mut sect, &mut bitmap)?;
        }
        if next_state != state || fresh || state == CERT_SERIAL_RANGE {
            state = next_state;
            if state == CERT_SERIAL_BITMAP {
                bitmap = Some(Bitmap {
                    start: lo,
                    bits: Vec::new(),
                });
            }
        }
        match state {
            CERT_SERIAL_LIST => {
                for s in lo..=hi {
                    put_u64(&mut sect, s);
                }
            }
            CERT_SERIAL_RANGE => {
                put_u64(&mut sect, lo);
                put_u64(&mut sect, hi);
            }
            _ => {
                if let Some(b) = bitmap.as_mut() {
                    b.set_run(lo, hi);
                }
            }
        }
        prev_hi = hi;
    }
    if state != 0 {
        flush(out, state, &mut sect, &mut bitmap)?;
    }
    Ok(())
}
