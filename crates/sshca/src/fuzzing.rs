//! Fuzz entry points of the facade (config TOML, public-key lines), shared by
//! the cargo-fuzz targets in `fuzz/` and the corpus replay test.

use std::path::Path;

/// Config parsing never panics; an accepted config has coherent policies.
pub fn config(data: &[u8]) {
    let Ok(text) = std::str::from_utf8(data) else {
        return;
    };
    if let Ok(cfg) = crate::config::Config::parse(text, Path::new("fuzz.toml")) {
        for entry in cfg.policies.values() {
            if entry.policy.check().is_err() || !cfg.cas.contains_key(&entry.ca) {
                #[allow(clippy::panic)]
                {
                    panic!("an incoherent policy was accepted");
                }
            }
        }
    }
}

/// Public-key parsing never panics; a parsed key re-encodes and re-parses.
pub fn public_key(data: &[u8]) {
    let Ok(text) = std::str::from_utf8(data) else {
        return;
    };
    if let Ok(k) = crate::parse_public_key(text, "fuzz") {
        if let Ok(line) = k.to_openssh() {
            let again = crate::parse_public_key(&line, "fuzz").map(|p| p.key_data().clone());
            #[allow(clippy::panic)]
            if again.as_ref().ok() != Some(k.key_data()) {
                panic!("a public key does not re-parse to itself");
            }
        }
    }
}
