//! OpenSSH key revocation lists (KRLs, as specified by OpenSSH's
//! `PROTOCOL.krl`), the file sshd reads through `RevokedKeys`.
//!
//! [`Krl`] is the model. [`Krl::encode`] writes it compactly: each run of
//! revoked serials becomes a list, a range or a bitmap, whichever costs the
//! fewest bytes (the cost model ssh-keygen applies), bitmaps kept within
//! the 16384 bits OpenSSH reads. [`Krl::decode`] reads whatever OpenSSH
//! reads, including KRLs ssh-keygen wrote with SHA1 sections or embedded
//! signature sections, and refuses what OpenSSH refuses (serial 0, reversed
//! ranges, unknown critical extensions, trailing data). [`Krl::check_cert`]
//! and [`Krl::check_key`] answer as `ssh-keygen -Q` and sshd do.
//!
//! ```
//! use sshca_core::krl::{Krl, Serials};
//! let mut krl = Krl::new(7, 1_700_000_000, "example");
//! krl.section_mut(None).serials = Serials::from_ranges([(5, 9), (100, 100)]).unwrap();
//! let bytes = krl.encode().unwrap();
//! let back = Krl::decode(&bytes).unwrap();
//! assert!(back.certs[0].serials.contains(7));
//! assert!(!back.certs[0].serials.contains(10));
//! ```

use std::collections::BTreeSet;
use std::fmt;

use ssh_key::public::KeyData;

use crate::cert::{decode_key, encode_key_blob};
use crate::wire::{put_nested, put_string, put_u32, put_u64, Cursor};
use crate::{Certificate, Error, Result};

mod decode;
mod encode;

use decode::decode;
use encode::{encode_cert_section, put_blob_section};

/// The bytes every KRL starts with.
pub const MAGIC: [u8; 8] = *b"SSHKRL\n\0";
/// The KRL format version written and read.
pub const FORMAT_VERSION: u32 = 1;

const SECTION_CERTIFICATES: u8 = 1;
const SECTION_EXPLICIT_KEY: u8 = 2;
const SECTION_FINGERPRINT_SHA1: u8 = 3;
const SECTION_SIGNATURE: u8 = 4;
const SECTION_FINGERPRINT_SHA256: u8 = 5;
const SECTION_EXTENSION: u8 = 255;

const CERT_SERIAL_LIST: u8 = 0x20;
const CERT_SERIAL_RANGE: u8 = 0x21;
const CERT_SERIAL_BITMAP: u8 = 0x22;
const CERT_KEY_ID: u8 = 0x23;
const CERT_EXTENSION: u8 = 0x39;

/// The SSHSIG namespace of sshca's detached KRL signatures (`FILE.sig`).
pub const SSHSIG_NAMESPACE: &str = "sshca-krl";

/// The largest bitmap OpenSSH reads: an mpint of at most 2048 bytes.
pub const MAX_BITMAP_BITS: u64 = 16384;

fn krl_error(msg: impl fmt::Display) -> Error {
    Error::Krl(msg.to_string())
}

/// Cursor errors name the KRL, not a certificate.
fn krl_err(e: Error) -> Error {
    match e {
        Error::Decode(m) => Error::Krl(m),
        other => other,
    }
}

/// A set of revoked serial numbers, held as sorted, disjoint, non-adjacent
/// inclusive ranges. Serial 0 is never in it: OpenSSH treats 0 as "no
/// serial" and refuses to revoke it.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Serials {
    ranges: Vec<(u64, u64)>,
}

impl Serials {
    /// The set of the given inclusive ranges (in any order, overlapping or
    /// not). Errors on a range starting at 0 or ending before it starts.
    pub fn from_ranges(ranges: impl IntoIterator<Item = (u64, u64)>) -> Result<Self> {
        let v: Vec<(u64, u64)> = ranges.into_iter().collect();
        for &(lo, hi) in &v {
            check_range(lo, hi)?;
        }
        Ok(Self::normalized(v))
    }

    /// The set of checked ranges, in any order.
    fn normalized(mut v: Vec<(u64, u64)>) -> Self {
        v.sort_unstable();
        Self {
            ranges: merge_sorted(v),
        }
    }

    /// The set of the given serials.
    pub fn from_serials(serials: impl IntoIterator<Item = u64>) -> Result<Self> {
        Self::from_ranges(serials.into_iter().map(|s| (s, s)))
    }

    /// The ranges, sorted, disjoint and non-adjacent.
    pub fn ranges(&self) -> &[(u64, u64)] {
        &self.ranges
    }

    /// Whether `serial` is in the set.
    pub fn contains(&self, serial: u64) -> bool {
        let i = self.ranges.partition_point(|&(_, hi)| hi < serial);
        self.ranges.get(i).is_some_and(|&(lo, _)| lo <= serial)
    }

    /// How many serials the set holds.
    pub fn count(&self) -> u128 {
        self.ranges
            .iter()
            .map(|&(lo, hi)| u128::from(hi - lo) + 1)
            .sum()
    }

    /// Whether the set is empty.
    pub fn is_empty(&self) -> bool {
        self.ranges.is_empty()
    }

    /// Adds every serial of `other`.
    pub fn extend(&mut self, other: &Serials) {
        let mut v = std::mem::take(&mut self.ranges);
        v.extend_from_slice(&other.ranges);
        *self = Self::normalized(v);
    }
}

/// A range OpenSSH accepts: not starting at 0, not reversed.
fn check_range(lo: u64, hi: u64) -> Result<()> {
    if lo == 0 {
        return Err(krl_error(
            "serial 0 cannot be revoked (OpenSSH reads 0 as \"no serial\" and refuses a KRL \
             that lists it)",
        ));
    }
    if lo > hi {
        return Err(krl_error(format_args!(
            "serial range {lo}-{hi} ends before it starts"
        )));
    }
    Ok(())
}

fn merge_sorted(v: Vec<(u64, u64)>) -> Vec<(u64, u64)> {
    let mut out: Vec<(u64, u64)> = Vec::with_capacity(v.len());
    for (lo, hi) in v {
        match out.last_mut() {
            Some(last) if lo <= last.1.saturating_add(1) => last.1 = last.1.max(hi),
            _ => out.push((lo, hi)),
        }
    }
    out
}

/// Certificates revoked for one CA (or, with no CA key, for any CA).
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct CertSection {
    /// The CA whose certificates this section revokes; `None` for every CA.
    pub ca_key: Option<KeyData>,
    /// Revoked serial numbers.
    pub serials: Serials,
    /// Revoked key ids.
    pub key_ids: BTreeSet<String>,
}

/// A signature section found in a KRL (written by old ssh-keygen `-k -s`
/// runs); kept so it can be shown, never written, not verified: OpenSSH 9.4
/// and later refuse KRLs that carry one.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct EmbeddedSignature {
    /// The signing key's blob.
    pub key: Vec<u8>,
    /// The signature blob.
    pub signature: Vec<u8>,
}

/// Why a key or certificate is revoked.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Revoked {
    /// The key's SHA1 hash is listed.
    KeySha1,
    /// The key's SHA256 hash is listed.
    KeySha256,
    /// The key itself is listed.
    ExplicitKey,
    /// The certificate's serial is revoked for its CA (or every CA).
    Serial(u64),
    /// The certificate's key id is revoked for its CA (or every CA).
    KeyId(String),
    /// The key that signed the certificate is revoked (for this reason).
    CaKey(Box<Revoked>),
}

impl fmt::Display for Revoked {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Revoked::KeySha1 => f.write_str("key revoked by SHA1 hash"),
            Revoked::KeySha256 => f.write_str("key revoked by SHA256 hash"),
            Revoked::ExplicitKey => f.write_str("key revoked"),
            Revoked::Serial(s) => write!(f, "certificate serial {s} revoked"),
            Revoked::KeyId(id) => write!(
                f,
                "certificate key id \"{}\" revoked",
                crate::text::escape(id)
            ),
            Revoked::CaKey(why) => write!(f, "signing CA {why}"),
        }
    }
}

/// A key revocation list.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Krl {
    /// Increases with every new KRL of the same issuer.
    pub version: u64,
    /// When it was made (unix seconds).
    pub generated_date: u64,
    /// Flags (none are defined).
    pub flags: u64,
    /// Free text.
    pub comment: String,
    /// Certificate revocations, one section per CA.
    pub certs: Vec<CertSection>,
    /// Revoked plain keys (their wire blobs).
    pub keys: BTreeSet<Vec<u8>>,
    /// Revoked keys by SHA1 hash of their blob.
    pub sha1: BTreeSet<[u8; 20]>,
    /// Revoked keys by SHA256 hash of their blob.
    pub sha256: BTreeSet<[u8; 32]>,
    /// Embedded signature sections of a decoded KRL.
    pub signatures: Vec<EmbeddedSignature>,
}

impl Krl {
    /// An empty KRL.
    pub fn new(version: u64, generated_date: u64, comment: impl Into<String>) -> Self {
        Self {
            version,
            generated_date,
            comment: comment.into(),
            ..Self::default()
        }
    }

    /// The section for `ca_key` (`None`: every CA), added when missing.
    pub fn section_mut(&mut self, ca_key: Option<&KeyData>) -> &mut CertSection {
        let at = self.certs.iter().position(|s| s.ca_key.as_ref() == ca_key);
        let i = match at {
            Some(i) => i,
            None => {
                self.certs.push(CertSection {
                    ca_key: ca_key.cloned(),
                    ..CertSection::default()
                });
                self.certs.len() - 1
            }
        };
        &mut self.certs[i]
    }

    /// Revokes a plain key (and so every certificate of it) by the SHA256
    /// hash of its blob.
    pub fn revoke_key_hash(&mut self, key: &KeyData) -> Result<()> {
        self.sha256.insert(sha256(&encode_key_blob(key)?));
        Ok(())
    }

    /// Revokes a plain key by listing it (used for CA keys: every
    /// certificate they signed is then refused).
    pub fn revoke_key_explicit(&mut self, key: &KeyData) -> Result<()> {
        self.keys.insert(encode_key_blob(key)?);
        Ok(())
    }

    /// Why a plain key is revoked, if it is.
    pub fn check_key(&self, key: &KeyData) -> Result<Option<Revoked>> {
        let blob = encode_key_blob(key)?;
        if !self.sha1.is_empty() {
            let d = ring::digest::digest(&ring::digest::SHA1_FOR_LEGACY_USE_ONLY, &blob);
            let mut h = [0u8; 20];
            h.copy_from_slice(d.as_ref());
            if self.sha1.contains(&h) {
                return Ok(Some(Revoked::KeySha1));
            }
        }
        if self.sha256.contains(&sha256(&blob)) {
            return Ok(Some(Revoked::KeySha256));
        }
        if self.keys.contains(&blob) {
            return Ok(Some(Revoked::ExplicitKey));
        }
        Ok(None)
    }

    /// Why a certificate is revoked, if it is: its key, its serial or key
    /// id (for its CA or every CA), or the key of the CA that signed it.
    pub fn check_cert(&self, cert: &Certificate) -> Result<Option<Revoked>> {
        if let Some(why) = self.check_key(cert.public_key())? {
            return Ok(Some(why));
        }
        let ca = cert.signature_key();
        for section in &self.certs {
            if section.ca_key.as_ref().is_some_and(|k| k != ca) {
                continue;
            }
            if section.key_ids.contains(cert.key_id()) {
                return Ok(Some(Revoked::KeyId(cert.key_id().to_owned())));
            }
            if cert.serial() != 0 && section.serials.contains(cert.serial()) {
                return Ok(Some(Revoked::Serial(cert.serial())));
            }
        }
        Ok(self.check_key(ca)?.map(|why| Revoked::CaKey(Box::new(why))))
    }

    /// The KRL in its wire form. Refuses a KRL that carries embedded
    /// signatures: sign the encoded bytes with SSHSIG instead.
    pub fn encode(&self) -> Result<Vec<u8>> {
        if !self.signatures.is_empty() {
            return Err(krl_error(
                "embedded signature sections are not written (OpenSSH 9.4 and later \
                 refuse them); sign the KRL with SSHSIG instead",
            ));
        }
        let mut out = Vec::with_capacity(256);
        out.extend_from_slice(&MAGIC);
        put_u32(&mut out, FORMAT_VERSION);
        put_u64(&mut out, self.version);
        put_u64(&mut out, self.generated_date);
        put_u64(&mut out, self.flags);
        put_string(&mut out, &[])?;
        put_string(&mut out, self.comment.as_bytes())?;
        for section in &self.certs {
            if section.serials.is_empty() && section.key_ids.is_empty() {
                continue;
            }
            out.push(SECTION_CERTIFICATES);
            put_nested(&mut out, |o| encode_cert_section(o, section))?;
        }
        put_blob_section(&mut out, SECTION_EXPLICIT_KEY, self.keys.iter())?;
        put_blob_section(&mut out, SECTION_FINGERPRINT_SHA1, self.sha1.iter())?;
        put_blob_section(&mut out, SECTION_FINGERPRINT_SHA256, self.sha256.iter())?;
        Ok(out)
    }

    /// Reads a KRL, strictly: whatever OpenSSH would refuse is an error
    /// naming what is wrong.
    pub fn decode(bytes: &[u8]) -> Result<Self> {
        decode(bytes).map_err(krl_err)
    }
}

fn sha256(blob: &[u8]) -> [u8; 32] {
    let d = ring::digest::digest(&ring::digest::SHA256, blob);
    let mut h = [0u8; 32];
    h.copy_from_slice(d.as_ref());
    h
}

/// The key a blob of the explicit key or signature sections holds.
pub fn key_from_blob(blob: &[u8]) -> Result<KeyData> {
    decode_key(blob, "key").map_err(krl_err)
}

/// The SHA256 fingerprint (`SHA256:...`) form of a hash from a KRL.
pub fn sha256_fingerprint(hash: &[u8; 32]) -> String {
    use base64ct::{Base64Unpadded, Encoding};
    format!("SHA256:{}", Base64Unpadded::encode_string(hash))
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    fn round_trip(krl: &Krl) -> Krl {
        let bytes = krl.encode().unwrap();
        Krl::decode(&bytes).unwrap()
    }

    fn sections(bytes: &[u8]) -> Vec<u8> {
        // Subsection kinds of the first certificate section, in order.
        let mut c = Cursor::new(bytes, "t");
        c.take(8 + 4 + 24, "h").unwrap();
        c.string("r").unwrap();
        c.string("c").unwrap();
        assert_eq!(c.take(1, "k").unwrap()[0], SECTION_CERTIFICATES);
        let mut s = Cursor::new(c.string("s").unwrap(), "s");
        s.string("ca").unwrap();
        s.string("r").unwrap();
        let mut kinds = Vec::new();
        while !s.is_empty() {
            kinds.push(s.take(1, "k").unwrap()[0]);
            s.string("d").unwrap();
        }
        kinds
    }

    fn with_serials(ranges: &[(u64, u64)]) -> Krl {
        let mut k = Krl::new(1, 2, "c");
        k.section_mut(None).serials = Serials::from_ranges(ranges.iter().copied()).unwrap();
        k
    }

    #[test]
    fn picks_list_range_and_bitmap_as_ssh_keygen_does() {
        // Far-apart serials: a list.
        let k = with_serials(&[(10, 10), (1 << 40, 1 << 40)]);
        assert_eq!(sections(&k.encode().unwrap()), [CERT_SERIAL_LIST]);
        // A long run: a range.
        let k = with_serials(&[(5, 5000)]);
        assert_eq!(sections(&k.encode().unwrap()), [CERT_SERIAL_RANGE]);
        // Dense but gappy: a bitmap.
        let ranges: Vec<_> = (1..200).map(|i| (i * 3, i * 3)).collect();
        let k = with_serials(&ranges);
        assert_eq!(sections(&k.encode().unwrap()), [CERT_SERIAL_BITMAP]);
        assert_eq!(round_trip(&k), k);
    }

    #[test]
    fn bitmaps_stay_within_what_openssh_reads() {
        let ranges: Vec<_> = (1..40_000u64).map(|i| (i * 2, i * 2)).collect();
        let k = with_serials(&ranges);
        let bytes = k.encode().unwrap();
        let kinds = sections(&bytes);
        assert!(kinds.len() >= 5, "{kinds:?}");
        assert!(kinds.iter().all(|&t| t == CERT_SERIAL_BITMAP));
        assert_eq!(Krl::decode(&bytes).unwrap(), k);
    }

    #[test]
    fn serial_zero_and_reversed_ranges_are_refused() {
        assert!(Serials::from_serials([0]).is_err());
        assert!(Serials::from_ranges([(9, 3)]).is_err());
        let mut bytes = with_serials(&[(1, 1)]).encode().unwrap();
        // The list's single serial is the last 8 bytes: make it 0.
        let n = bytes.len();
        bytes[n - 8..].fill(0);
        let e = Krl::decode(&bytes).unwrap_err().to_string();
        assert!(e.contains("serial 0"), "{e}");
    }

    #[test]
    fn truncation_and_trailing_bytes_are_errors() {
        let k = with_serials(&[(3, 3), (7, 90)]);
        let bytes = k.encode().unwrap();
        let header = 8 + 4 + 24 + 4 + 4 + 1;
        for n in 0..bytes.len() {
            // Cut at the end of the header, it is a valid empty KRL.
            assert_eq!(Krl::decode(&bytes[..n]).is_ok(), n == header, "prefix {n}");
        }
        let mut extra = bytes.clone();
        extra.push(1);
        assert!(Krl::decode(&extra).is_err());
    }

    #[test]
    fn critical_extensions_are_refused_others_ignored() {
        let mut bytes = Krl::new(1, 1, "").encode().unwrap();
        let mut ext = Vec::new();
        put_string(&mut ext, b"x@example.com").unwrap();
        ext.push(0);
        put_string(&mut ext, b"v").unwrap();
        let mut ok = bytes.clone();
        ok.push(SECTION_EXTENSION);
        put_string(&mut ok, &ext).unwrap();
        assert!(Krl::decode(&ok).is_ok());
        ext[4 + 13] = 1;
        bytes.push(SECTION_EXTENSION);
        put_string(&mut bytes, &ext).unwrap();
        let e = Krl::decode(&bytes).unwrap_err().to_string();
        assert!(e.contains("critical"), "{e}");
    }

    #[test]
    fn signatures_are_read_but_never_written() {
        let mut bytes = Krl::new(3, 4, "signed").encode().unwrap();
        bytes.push(SECTION_SIGNATURE);
        put_string(&mut bytes, b"key").unwrap();
        put_string(&mut bytes, b"sig").unwrap();
        let k = Krl::decode(&bytes).unwrap();
        assert_eq!(k.signatures.len(), 1);
        assert!(k.encode().is_err());
        // Nothing but signatures may follow a signature.
        bytes.push(SECTION_FINGERPRINT_SHA256);
        put_string(&mut bytes, &[]).unwrap();
        assert!(Krl::decode(&bytes).is_err());
    }

    fn ssh_keygen_krl(name: &str) -> Vec<u8> {
        let p = std::path::Path::new(env!("CARGO_MANIFEST_DIR"))
            .join("../../fuzz/corpus/krl")
            .join(name);
        std::fs::read(p).unwrap()
    }

    #[test]
    fn reads_ssh_keygen_krls_and_rewrites_them_byte_for_byte() {
        // k1: `ssh-keygen -k -s ca.pub -z 7` of serials 1, 5-9000, 12000,
        // 20000..=20600 step 3 and ids alice, bob@example.com.
        let bytes = ssh_keygen_krl("k1");
        let k = Krl::decode(&bytes).unwrap();
        assert_eq!(k.version, 7);
        assert_eq!(k.certs.len(), 1);
        let s = &k.certs[0];
        assert!(matches!(s.ca_key, Some(KeyData::Ed25519(_))));
        let mut expected = vec![(1, 1), (5, 9000), (12000, 12000)];
        expected.extend((20000..=20600).step_by(3).map(|i| (i, i)));
        assert_eq!(s.serials.ranges(), &expected[..]);
        assert_eq!(
            s.key_ids.iter().map(String::as_str).collect::<Vec<_>>(),
            ["alice", "bob@example.com"]
        );
        assert_eq!(k.encode().unwrap(), bytes, "same choices as ssh-keygen");
        // k2: two plain keys, listed explicitly; k3: hash, SHA1, SHA256 and an
        // explicit key; k4: a key id for one CA; k5: empty.
        let k2 = Krl::decode(&ssh_keygen_krl("k2")).unwrap();
        assert_eq!(k2.keys.len(), 2);
        assert_eq!(k2.encode().unwrap(), ssh_keygen_krl("k2"));
        let k3 = Krl::decode(&ssh_keygen_krl("k3")).unwrap();
        assert_eq!((k3.sha1.len(), k3.sha256.len(), k3.keys.len()), (1, 2, 1));
        assert_eq!(k3.encode().unwrap(), ssh_keygen_krl("k3"));
        let k4 = Krl::decode(&ssh_keygen_krl("k4")).unwrap();
        assert!(k4.certs[0].key_ids.contains("everyone"));
        assert_eq!(k4.encode().unwrap(), ssh_keygen_krl("k4"));
        let k5 = Krl::decode(&ssh_keygen_krl("k5")).unwrap();
        assert!(k5.certs.is_empty() && k5.sha256.is_empty());
    }

    fn clustered_serials() -> impl Strategy<Value = Vec<(u64, u64)>> {
        // Runs near a few bases, so lists, ranges and bitmaps all occur.
        prop::collection::vec(
            (
                prop::sample::select(vec![1u64, 1 << 20, u64::MAX - 100_000]),
                0u64..50_000,
                0u64..300,
            ),
            0..200,
        )
        .prop_map(|v| {
            v.into_iter()
                .map(|(base, off, len)| {
                    let lo = base.saturating_add(off);
                    (lo, lo.saturating_add(len))
                })
                .collect()
        })
    }

    proptest! {
        #[test]
        fn encode_decode_is_identity_and_membership_exact(
            ranges in clustered_serials(),
            probes in prop::collection::vec(any::<u64>(), 0..50),
            ids in prop::collection::btree_set("[a-z0-9@.-]{1,12}", 0..5),
        ) {
            let mut k = with_serials(&ranges);
            k.section_mut(None).key_ids = ids;
            k.certs.retain(|s| !s.serials.is_empty() || !s.key_ids.is_empty());
            let back = round_trip(&k);
            prop_assert_eq!(&back, &k);
            let set = &back.certs.first().map(|s| s.serials.clone()).unwrap_or_default();
            for &(lo, hi) in &ranges {
                prop_assert!(set.contains(lo) && set.contains(hi) && set.contains(lo + (hi - lo) / 2));
            }
            for p in probes.into_iter().chain(ranges.iter().flat_map(|&(lo, hi)| [lo - 1, hi.saturating_add(1)])) {
                let expected = ranges.iter().any(|&(lo, hi)| lo <= p && p <= hi);
                prop_assert_eq!(set.contains(p), expected, "serial {}", p);
            }
        }
    }
}
