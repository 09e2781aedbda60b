//! Test support of the sshca workspace, a dev-dependency only: what every
//! backend's tests and the command-line tests would otherwise rebuild by hand.
//! A helper that cannot do its job panics: that is the test failing.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

use std::sync::Arc;

use kms_emulator::{Emulator, FaultError};
use sshca_signer::conformance::ServiceHooks;

pub mod cli;
pub mod oidc;
pub mod pg;
pub mod softhsm;
pub mod tls;

/// The fault hooks of the shared remote conformance suite for one emulated
/// service: throttling and corrupt signatures injected into `sign_op`
/// requests, and the counts of `sign_op` and `key_op` (the public-key
/// operation) requests, as the emulator's `/stats` names them.
pub fn emulator_hooks(
    emu: &Arc<Emulator>,
    service: &'static str,
    sign_op: &'static str,
    key_op: &'static str,
) -> ServiceHooks {
    let (a, b, c) = (emu.clone(), emu.clone(), emu.clone());
    ServiceHooks {
        throttle_signs: Box::new(move |n| {
            a.fail_next(service, sign_op, FaultError::Throttle, n)
                .unwrap()
        }),
        corrupt_signs: Box::new(move |n| b.corrupt_next(service, sign_op, n).unwrap()),
        counts: Box::new(move || (c.count(service, sign_op), c.count(service, key_op))),
    }
}
