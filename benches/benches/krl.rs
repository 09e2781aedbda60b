//! KRL encoding at scale: 1,000,000 revoked serials (sparse random serials,
//! long runs and dense clusters with gaps), built into a KRL, compared with
//! the file `ssh-keygen -k` writes for the same serials.
#![allow(clippy::unwrap_used, clippy::expect_used, missing_docs)]

use std::io::Write;
use std::time::Instant;

use criterion::{criterion_group, criterion_main, Criterion};
use sshca_core::krl::{Krl, Serials};

/// The revoked serials: 400k random, 300k in runs of 1000, 300k in
/// clusters of 1000 with every other serial revoked.
fn serials() -> Vec<u64> {
    let mut x = 0x9e37_79b9_7f4a_7c15u64;
    let mut next = || {
        x ^= x << 13;
        x ^= x >> 7;
        x ^= x << 17;
        x
    };
    let mut v = Vec::with_capacity(1_000_000);
    for _ in 0..400_000 {
        v.push(next() | 1);
    }
    for run in 0..300u64 {
        let base = 1_000_000 + run * 10_000;
        v.extend(base..base + 1000);
    }
    for cluster in 0..300u64 {
        let base = 10_000_000 + cluster * 100_000;
        v.extend((0..1000).map(|i| base + 2 * i));
    }
    v
}

fn build(ca: &sshca_core::KeyData, serials: &[u64]) -> Vec<u8> {
    let mut krl = Krl::new(1, 1_800_000_000, "");
    krl.section_mut(Some(ca)).serials = Serials::from_serials(serials.iter().copied()).unwrap();
    krl.encode().unwrap()
}

fn bench(c: &mut Criterion) {
    let serials = serials();
    // The same revocations through ssh-keygen, once, for the same CA key.
    let dir = tempfile::tempdir().unwrap();
    let ca_path = dir.path().join("ca");
    let made = std::process::Command::new("ssh-keygen")
        .args(["-q", "-t", "ed25519", "-N", "", "-f"])
        .arg(&ca_path)
        .status()
        .unwrap();
    assert!(made.success(), "ssh-keygen is needed for the reference KRL");
    let ca_pub = ca_path.with_extension("pub");
    let ca = sshca_core::PublicKey::from_openssh(&std::fs::read_to_string(&ca_pub).unwrap())
        .unwrap()
        .key_data()
        .clone();
    let ours = build(&ca, &serials);
    let spec = dir.path().join("spec");
    let mut f = std::io::BufWriter::new(std::fs::File::create(&spec).unwrap());
    for s in &serials {
        writeln!(f, "serial: {s}").unwrap();
    }
    f.flush().unwrap();
    drop(f);
    let out = dir.path().join("krl");
    let t = Instant::now();
    let status = std::process::Command::new("ssh-keygen")
        .args(["-q", "-k", "-f"])
        .arg(&out)
        .arg("-s")
        .arg(&ca_pub)
        .arg(&spec)
        .status();
    let keygen_secs = t.elapsed().as_secs_f64();
    let theirs = match status {
        Ok(s) if s.success() => std::fs::metadata(&out).map(|m| m.len()).ok(),
        _ => None,
    };
    println!(
        "KRL of 1,000,000 serials: ours {} bytes, ssh-keygen's {} bytes (ssh-keygen took {keygen_secs:.2} s)",
        ours.len(),
        theirs.map_or("?".into(), |n| n.to_string())
    );
    sshca_benches::record(&serde_json::json!({
        "bench": "krl",
        "serials": serials.len(),
        "ours_bytes": ours.len(),
        "ssh_keygen_bytes": theirs,
        "ssh_keygen_secs": keygen_secs,
    }));
    let mut g = c.benchmark_group("krl");
    g.sample_size(10);
    g.bench_function("build_1m_serials", |b| b.iter(|| build(&ca, &serials)));
    g.finish();
}

criterion_group!(benches, bench);
criterion_main!(benches);
