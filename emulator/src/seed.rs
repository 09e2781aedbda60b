//! The seed and state file through the services: each service reads and
//! writes its own sections. The [`SeedIo`] the emulator gives its
//! [`State`].

use crate::state::{Seed, SeedIo, State};
use crate::{aws, azure, ekm, gcp, metadata};

/// Reads and writes seeds through every service.
pub(crate) const IO: SeedIo = SeedIo { apply, export };

/// Puts the seeded keys into `state`: key manager keys first (EXTERNAL_VPC
/// keys name them), then connections, Cloud KMS keys, configs, AWS and Azure.
fn apply(seed: Seed, state: &State) -> Result<(), String> {
    aws::seed::load_seed(state, seed.aws)?;
    for k in seed.ekm {
        ekm::seed_key(state, k)?;
    }
    for c in seed.gcp_ekm_connections {
        gcp::ekm_service::seed_connection(state, c)?;
    }
    for k in seed.gcp {
        gcp::seed::seed_key(state, k)?;
    }
    for c in seed.gcp_ekm_configs {
        gcp::ekm_service::seed_config(state, c)?;
    }
    for k in seed.azure {
        azure::seed_key(state, k)?;
    }
    metadata::seed(state, seed.instances)
}

/// Captures the current keys (with their private keys) for the state file.
fn export(state: &State) -> Result<Seed, String> {
    let gcp = gcp::seed::export_seed(state)?;
    Ok(Seed {
        aws: aws::seed::export_seed(state)?,
        gcp: gcp.keys,
        azure: azure::export_seed(state)?,
        ekm: ekm::export_seed(state)?,
        gcp_ekm_connections: gcp.ekm_connections,
        gcp_ekm_configs: gcp.ekm_configs,
        instances: metadata::export(state),
    })
}
