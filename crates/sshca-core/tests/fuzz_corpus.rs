//! Replays the committed fuzz corpora (`fuzz/corpus/*`) through the fuzz
//! entry points on stable, so every `cargo test` exercises them.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic, missing_docs)]

use std::path::Path;

fn replay(target: &str, f: fn(&[u8])) -> usize {
    let dir = Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("../../fuzz/corpus")
        .join(target);
    let mut n = 0;
    for e in std::fs::read_dir(&dir).unwrap_or_else(|e| panic!("{}: {e}", dir.display())) {
        let data = std::fs::read(e.unwrap().path()).unwrap();
        f(&data);
        n += 1;
    }
    assert!(n > 0, "empty corpus {target}");
    n
}

#[test]
fn corpora_replay() {
    let decoded = replay("cert_decode", |d| {
        sshca_core::fuzzing::cert_decode(d);
    });
    assert!(decoded >= 4);
    replay("convert", sshca_core::fuzzing::convert);
    replay("syntax", sshca_core::fuzzing::syntax);
    replay("sshsig", sshca_core::fuzzing::sshsig);
    replay("krl", sshca_core::fuzzing::krl);
}

#[test]
fn cert_corpus_holds_decodable_certificates() {
    let dir = Path::new(env!("CARGO_MANIFEST_DIR")).join("../../fuzz/corpus/cert_decode");
    let ok = std::fs::read_dir(dir)
        .unwrap()
        .filter(|e| {
            let d = std::fs::read(e.as_ref().unwrap().path()).unwrap();
            sshca_core::Certificate::from_bytes(&d).is_ok()
        })
        .count();
    assert!(ok >= 2, "the seed corpus should hold real certificates");
}
