//! Replays the committed fuzz corpora of the emulator's request parsing
//! (`fuzz/corpus/emulator_*`) through the same entry points the cargo-fuzz
//! targets use, so every `cargo test` exercises them on stable.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic, missing_docs)]

use std::path::Path;

fn replay(target: &str, f: fn(&[u8]) -> Option<u16>) -> Vec<(String, Option<u16>)> {
    let dir = Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("../fuzz/corpus")
        .join(target);
    let mut out = Vec::new();
    for e in std::fs::read_dir(&dir).unwrap() {
        let p = e.unwrap().path();
        let data = std::fs::read(&p).unwrap();
        out.push((p.display().to_string(), f(&data)));
    }
    assert!(!out.is_empty(), "empty corpus {target}");
    out
}

/// The seeds are real requests: most of them succeed, so the fuzzer starts
/// from inputs that reach the operations, not only the error paths.
fn mostly_ok(target: &str, results: &[(String, Option<u16>)]) {
    let ok = results
        .iter()
        .filter(|(_, s)| matches!(s, Some(200..=299)))
        .count();
    assert!(
        ok * 2 >= results.len(),
        "{target}: only {ok} of {} seeds succeed: {results:?}",
        results.len()
    );
}

#[test]
fn aws_corpus_replays() {
    let r = replay("emulator_aws", kms_emulator::fuzzing::aws);
    mostly_ok("aws", &r);
}

#[test]
fn gcp_corpus_replays() {
    let r = replay("emulator_gcp", kms_emulator::fuzzing::gcp);
    mostly_ok("gcp", &r);
}

#[test]
fn azure_corpus_replays() {
    let r = replay("emulator_azure", kms_emulator::fuzzing::azure);
    mostly_ok("azure", &r);
}

#[test]
fn malformed_requests_get_errors_not_panics() {
    for f in [
        kms_emulator::fuzzing::aws,
        kms_emulator::fuzzing::gcp,
        kms_emulator::fuzzing::azure,
    ] {
        assert_eq!(f(b"not http"), None);
        let s = f(b"POST /v1/x:asymmetricSign?api-version=7.5 HTTP/1.1\r\nx-amz-target: TrentService.Sign\r\nauthorization: Bearer x\r\n\r\n{\"KeyId\":")
            .unwrap();
        assert!((400..500).contains(&s), "status {s}");
    }
}

#[test]
fn ekm_corpus_replays() {
    let r = replay("emulator_ekm", kms_emulator::fuzzing::ekm);
    mostly_ok("ekm", &r);
}
