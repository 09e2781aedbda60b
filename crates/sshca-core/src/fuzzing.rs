//! Fuzz entry points, shared by the cargo-fuzz targets in `fuzz/` and by the
//! corpus replay test that runs on stable in every `cargo test`.
//! Each function panics only when a property is broken.

#![allow(clippy::panic)]

use crate::convert::{
    ecdsa_der_to_ssh, ecdsa_raw_to_ssh, ecdsa_ssh_to_raw, ed25519_to_ssh, rsa_pkcs1_to_ssh,
};
use crate::{Certificate, SigAlg};
use ssh_key::EcdsaCurve;

/// Certificate decoding: never panics; whatever decodes re-encodes to the
/// same bytes; the text form decodes too.
pub fn cert_decode(data: &[u8]) {
    if let Ok(c) = Certificate::from_bytes(data) {
        match c.to_bytes() {
            Ok(b) if b == data => {}
            _ => panic!("decode -> encode does not reproduce the input"),
        }
        let _ = c.verify_signature();
    }
    if let Ok(s) = std::str::from_utf8(data) {
        if let Ok(c) = Certificate::from_openssh(s) {
            if c.to_openssh().is_err() {
                panic!("a decoded certificate cannot be encoded");
            }
        }
    }
}

/// Signature converters: never panic; DER and raw forms agree.
pub fn convert(data: &[u8]) {
    for curve in [
        EcdsaCurve::NistP256,
        EcdsaCurve::NistP384,
        EcdsaCurve::NistP521,
    ] {
        if let Ok(s) = ecdsa_der_to_ssh(curve, data) {
            let raw = ecdsa_ssh_to_raw(&s).unwrap_or_default();
            match ecdsa_raw_to_ssh(curve, &raw) {
                Ok(again) if again == s => {}
                _ => panic!("DER and raw conversions disagree"),
            }
        }
        let _ = ecdsa_raw_to_ssh(curve, data);
    }
    let _ = rsa_pkcs1_to_ssh(SigAlg::RsaSha512, data, 256);
    let _ = ed25519_to_ssh(data);
}

/// `-V` and `-O` syntax: never panics; a parsed interval is non-empty.
pub fn syntax(data: &[u8]) {
    let Ok(s) = std::str::from_utf8(data) else {
        return;
    };
    if let Ok(v) = crate::validity::parse_validity(s, 1_795_000_000) {
        if v.valid_before <= v.valid_after {
            panic!("empty validity interval accepted");
        }
    }
    let mut b = crate::options::OptionsBuilder::new(crate::CertType::User);
    for opt in s.split('\n') {
        let _ = b.apply(opt);
    }
    let _ = b.build();
}

/// SSHSIG signatures and allowed-signers files: decoding and checking never
/// panic; a signature that checks out re-encodes to one that checks out.
pub fn sshsig(data: &[u8]) {
    if let Ok(sig) = crate::sshsig::decode(data) {
        if crate::sshsig::verify(&sig, sig.namespace(), b"").is_ok() {
            if let Ok(pem) = sig.to_pem(ssh_key::LineEnding::LF) {
                let again = crate::sshsig::decode(pem.as_bytes());
                if !again.is_ok_and(|s| crate::sshsig::verify(&s, s.namespace(), b"").is_ok()) {
                    panic!("a verified signature did not survive re-encoding");
                }
            }
        }
    }
    if let Ok(text) = std::str::from_utf8(data) {
        let _ = crate::sshsig::parse_allowed_signers(text);
    }
}

/// KRL decoding: never panics; whatever decodes (without embedded
/// signatures) re-encodes to a KRL that decodes to the same contents, and
/// every revoked serial stays revoked.
pub fn krl(data: &[u8]) {
    let Ok(k) = crate::krl::Krl::decode(data) else {
        return;
    };
    for section in &k.certs {
        for &(lo, hi) in section.serials.ranges() {
            if !section.serials.contains(lo) || !section.serials.contains(hi) {
                panic!("a decoded serial range is not reported revoked");
            }
        }
    }
    if !k.signatures.is_empty() {
        return;
    }
    let Ok(bytes) = k.encode() else {
        panic!("a decoded KRL cannot be encoded");
    };
    let mut expected = k;
    expected
        .certs
        .retain(|s| !s.serials.is_empty() || !s.key_ids.is_empty());
    match crate::krl::Krl::decode(&bytes) {
        Ok(again) if again == expected => {}
        _ => panic!("decode -> encode -> decode changed the KRL"),
    }
}
