//! Property and strictness tests of the certificate core.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic, missing_docs)]

use ed25519_dalek::Signer as _;
use proptest::prelude::*;
use sshca_core::convert::{
    ecdsa_der_to_ssh, ecdsa_raw_to_ssh, ecdsa_ssh_to_raw, ed25519_to_ssh, rsa_pkcs1_to_ssh,
};
use sshca_core::ssh_key::public::Ed25519PublicKey;
use sshca_core::ssh_key::EcdsaCurve;
use sshca_core::{
    CertTemplate, CertType, Certificate, KeyData, OptionValue, SigAlg, TbsCertificate,
};

fn ca() -> (ed25519_dalek::SigningKey, KeyData) {
    let sk = ed25519_dalek::SigningKey::from_bytes(&[7u8; 32]);
    let pk = KeyData::Ed25519(Ed25519PublicKey(sk.verifying_key().to_bytes()));
    (sk, pk)
}

fn issue(t: &CertTemplate, subject: &KeyData) -> Certificate {
    let (sk, pk) = ca();
    let tbs = TbsCertificate::encode(t, subject, &pk).unwrap();
    let sig = ed25519_to_ssh(&sk.sign(tbs.as_bytes()).to_bytes()).unwrap();
    tbs.assemble(sig).unwrap()
}

fn option_value() -> impl Strategy<Value = OptionValue> {
    prop_oneof![
        Just(OptionValue::Flag),
        "[ -~]{1,30}".prop_map(OptionValue::Text),
        proptest::collection::vec(any::<u8>(), 1..20).prop_map(OptionValue::Raw),
    ]
}

prop_compose! {
    fn template()(
        host in any::<bool>(),
        key_id in "\\PC{0,40}",
        principals in proptest::collection::btree_set("[a-z0-9.@-]{1,20}", 0..6),
        after in 0u64..u64::MAX / 2,
        span in 1u64..u64::MAX / 2,
        serial in any::<u64>(),
        crit in proptest::collection::btree_map("[a-z-]{1,16}", option_value(), 0..4),
        ext in proptest::collection::btree_map("[a-zA-Z0-9@.-]{1,24}", option_value(), 0..6),
        nonce in proptest::collection::vec(any::<u8>(), 1..40),
    ) -> CertTemplate {
        let mut t = CertTemplate::new(if host { CertType::Host } else { CertType::User }, key_id);
        t.principals = principals.into_iter().collect();
        t.valid_after = after;
        t.valid_before = after + span;
        t.serial = serial;
        t.critical_options = crit;
        t.extensions = ext;
        t.nonce = Some(nonce);
        t
    }
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(256))]

    #[test]
    fn encode_decode_is_identity(t in template(), subject_bytes in any::<[u8; 32]>()) {
        let subject = KeyData::Ed25519(Ed25519PublicKey(subject_bytes));
        let cert = issue(&t, &subject);
        let bytes = cert.to_bytes().unwrap();
        let back = Certificate::from_bytes(&bytes).unwrap();
        prop_assert_eq!(&back, &cert);
        prop_assert_eq!(back.to_bytes().unwrap(), bytes.clone());
        prop_assert_eq!(back.key_id(), t.key_id.as_str());
        prop_assert_eq!(back.principals(), t.principals.as_slice());
        prop_assert_eq!(back.serial(), t.serial);
        prop_assert_eq!(back.critical_options(), &t.critical_options);
        prop_assert_eq!(back.extensions(), &t.extensions);
        prop_assert_eq!(back.public_key(), &subject);
        back.verify_signature().unwrap();
        prop_assert_eq!(back.tbs(), &bytes[..back.tbs().len()]);
        // A prepared CA key encodes exactly what the plain key encodes.
        let (_, pk) = ca();
        let prepared = sshca_core::PreparedCa::new(&pk).unwrap();
        let mut fixed = t.clone();
        fixed.nonce = Some(vec![1; 32]);
        let plain = TbsCertificate::encode(&fixed, &subject, &pk).unwrap();
        let fast = TbsCertificate::encode_prepared(&fixed, &subject, &prepared).unwrap();
        prop_assert_eq!(plain.as_bytes(), fast.as_bytes());
        let text = cert.to_openssh().unwrap();
        prop_assert_eq!(Certificate::from_openssh(&text).unwrap().to_openssh().unwrap(), text);
    }

    #[test]
    fn decoding_arbitrary_bytes_never_panics(bytes in proptest::collection::vec(any::<u8>(), 0..600)) {
        if let Ok(c) = Certificate::from_bytes(&bytes) {
            prop_assert_eq!(c.to_bytes().unwrap(), bytes);
        }
    }

    #[test]
    fn mutated_certificates_never_panic(t in template(), pos in any::<prop::sample::Index>(), byte in any::<u8>()) {
        let subject = KeyData::Ed25519(Ed25519PublicKey([3u8; 32]));
        let mut bytes = issue(&t, &subject).to_bytes().unwrap();
        let i = pos.index(bytes.len());
        bytes[i] = byte;
        if let Ok(c) = Certificate::from_bytes(&bytes) {
            prop_assert_eq!(c.to_bytes().unwrap(), bytes);
        }
    }

    #[test]
    fn converters_never_panic(bytes in proptest::collection::vec(any::<u8>(), 0..200)) {
        for curve in [EcdsaCurve::NistP256, EcdsaCurve::NistP384, EcdsaCurve::NistP521] {
            let _ = ecdsa_der_to_ssh(curve, &bytes);
            let _ = ecdsa_raw_to_ssh(curve, &bytes);
        }
        let _ = rsa_pkcs1_to_ssh(SigAlg::RsaSha256, &bytes, 256);
        let _ = ed25519_to_ssh(&bytes);
    }

    #[test]
    fn ecdsa_conversions_round_trip(seed in any::<[u8; 32]>(), msg in proptest::collection::vec(any::<u8>(), 0..100)) {
        use p256::ecdsa::signature::Signer;
        let Ok(sk) = p256::ecdsa::SigningKey::from_slice(&seed) else { return Ok(()); };
        let sig: p256::ecdsa::Signature = sk.sign(&msg);
        let from_der = ecdsa_der_to_ssh(EcdsaCurve::NistP256, sig.to_der().as_bytes()).unwrap();
        let from_raw = ecdsa_raw_to_ssh(EcdsaCurve::NistP256, &sig.to_bytes()).unwrap();
        prop_assert_eq!(&from_der, &from_raw);
        prop_assert_eq!(ecdsa_ssh_to_raw(&from_der).unwrap(), sig.to_bytes().to_vec());
        let vk = KeyData::Ecdsa(sshca_core::ssh_key::public::EcdsaPublicKey::from(sk.verifying_key()));
        use signature::Verifier;
        prop_assert!(vk.verify(&msg, &from_der).is_ok());
    }
}

fn sample() -> Vec<u8> {
    let mut t = CertTemplate::new(CertType::User, "strict");
    t.valid_after = 1;
    t.valid_before = 2;
    t.extensions.insert("a".into(), OptionValue::Flag);
    t.extensions.insert("b".into(), OptionValue::Flag);
    issue(&t, &KeyData::Ed25519(Ed25519PublicKey([9u8; 32])))
        .to_bytes()
        .unwrap()
}

fn replace(hay: &[u8], from: &[u8], to: &[u8]) -> Vec<u8> {
    let i = hay.windows(from.len()).position(|w| w == from).unwrap();
    [&hay[..i], to, &hay[i + from.len()..]].concat()
}

#[test]
fn strict_decoding() {
    let good = sample();
    Certificate::from_bytes(&good).unwrap();
    let mut trailing = good.clone();
    trailing.push(0);
    assert!(Certificate::from_bytes(&trailing)
        .unwrap_err()
        .to_string()
        .contains("trailing"));
    let ab = b"\0\0\0\x01a\0\0\0\0\0\0\0\x01b\0\0\0\0";
    let unsorted = replace(&good, ab, b"\0\0\0\x01b\0\0\0\0\0\0\0\x01a\0\0\0\0");
    let e = Certificate::from_bytes(&unsorted).unwrap_err().to_string();
    assert!(e.contains("out of order"), "{e}");
    let dup = replace(&good, ab, b"\0\0\0\x01a\0\0\0\0\0\0\0\x01a\0\0\0\0");
    let e = Certificate::from_bytes(&dup).unwrap_err().to_string();
    assert!(e.contains("twice"), "{e}");
    for n in 0..good.len() {
        assert!(
            Certificate::from_bytes(&good[..n]).is_err(),
            "truncated at {n} accepted"
        );
    }
    // A signature that does not verify: assemble refuses it.
    let (_, pk) = ca();
    let t = CertTemplate::new(CertType::User, "x");
    let tbs = TbsCertificate::encode(&t, &pk, &pk).unwrap();
    let e = tbs
        .assemble(ed25519_to_ssh(&[1u8; 64]).unwrap())
        .unwrap_err();
    assert!(e.to_string().contains("does not verify"), "{e}");
}

#[test]
fn template_errors_name_the_field() {
    let (_, pk) = ca();
    let mut t = CertTemplate::new(CertType::User, "x");
    t.valid_after = 10;
    t.valid_before = 10;
    assert!(TbsCertificate::encode(&t, &pk, &pk)
        .unwrap_err()
        .to_string()
        .contains("empty validity interval"));
    let mut t = CertTemplate::new(CertType::User, "x");
    t.principals = vec!["a".into(), "".into()];
    assert!(TbsCertificate::encode(&t, &pk, &pk)
        .unwrap_err()
        .to_string()
        .contains("principal is empty"));
    t.principals = vec!["a".into(), "a".into()];
    assert!(TbsCertificate::encode(&t, &pk, &pk)
        .unwrap_err()
        .to_string()
        .contains("listed twice"));
}

#[test]
fn random_serials_are_non_zero_and_differ() {
    let a: std::collections::HashSet<u64> =
        (0..1000).map(|_| sshca_core::random_serial()).collect();
    assert!(a.len() > 990 && !a.contains(&0));
}
