//! A digest already made, in the shape of a hash function for Ed25519ph.

/// A SHA-512 digest already made, handed to Ed25519ph as the "hash" it
/// finalizes (Ed25519ph takes a hash function's state, a KMS takes the
/// digest).
#[derive(Clone, Default)]
pub(super) struct Prehashed(Vec<u8>);

impl Prehashed {
    pub(super) fn new(digest: &[u8]) -> Prehashed {
        Prehashed(digest.to_vec())
    }
}

impl digest::HashMarker for Prehashed {}

impl digest::OutputSizeUser for Prehashed {
    type OutputSize = digest::consts::U64;
}

impl digest::Update for Prehashed {
    fn update(&mut self, data: &[u8]) {
        self.0.extend_from_slice(data);
    }
}

impl digest::FixedOutput for Prehashed {
    fn finalize_into(self, out: &mut digest::Output<Self>) {
        // Callers check the length (64) first; a wrong one leaves zeros.
        if self.0.len() == out.len() {
            out.copy_from_slice(&self.0);
        }
    }
}
