//! What an emulated service is, and the one list of them.
//!
//! A service is a folder (`aws/`, `gcp/`, ...) with a unit type that
//! implements [`Emulated`]: its name, its
//! sections of the seed and state file, its listeners, what it does at
//! start and what it writes to the ready file, its request handler and its
//! fuzz entry. [`for_each_service!`] lists the services once; the fault
//! and counter keys ([`Service`](crate::Service)), the state's stores, the
//! seed, the listeners and the dispatch are all generated from that list.

use std::future::Future;
use std::path::{Path, PathBuf};
use std::sync::Arc;

use serde::de::DeserializeOwned;
use serde::Serialize;

use crate::state::State;
use crate::tls::ServerTls;
use crate::{Reply, Request};

/// Calls `$m! { field: Variant = Type => Store, ... }` with every emulated
/// service (its field in the [`State`], its variant of
/// [`Service`](crate::Service), its [`Emulated`] type and its store type),
/// in port order (`--port N` gives the first listener of the first service
/// N, the next one N+1, ...; the admin API sits at slot
/// [`ADMIN_SLOT`]). Seeds are applied in [`Emulated::SEED_ORDER`] order.
///
/// Adding a service is one line here.
macro_rules! for_each_service {
    ($m:ident) => {
        $m! {
            aws: Aws = crate::aws::Aws => crate::aws::store::AwsStore,
            gcp: Gcp = crate::gcp::Gcp => crate::gcp::store::GcpStore,
            azure: Azure = crate::azure::Azure => crate::azure::store::AzureStore,
            ekm: Ekm = crate::ekm::Ekm => crate::ekm::store::EkmStore,
            metadata: Metadata = crate::metadata::Metadata => crate::metadata::MetadataStore,
        }
    };
}
pub(crate) use for_each_service;

/// The listener slot of the admin API (after AWS, Google Cloud and Azure,
/// as the first releases had it).
pub(crate) const ADMIN_SLOT: usize = 3;

/// The port of listener `slot` with `--port N`: N + slot.
pub(crate) fn slot_port(config: &crate::Config, slot: usize) -> Option<u16> {
    config
        .port
        .map(|p| p.saturating_add(u16::try_from(slot).unwrap_or(u16::MAX)))
}

/// How a service's listeners speak.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Transport {
    /// Plain HTTP.
    Http,
    /// HTTPS with the emulator's server certificate.
    Tls,
    /// HTTPS that requires the emulator's client certificate.
    MutualTls,
}

/// What a service sees at start: the state, where certificates are
/// written and the generated TLS identity.
pub(crate) struct Setup<'a> {
    /// The shared state.
    pub state: &'a State,
    /// Where certificate files go.
    pub cert_dir: &'a Path,
    /// The CA, server and client certificates of the HTTPS services.
    pub tls: &'a ServerTls,
}

impl Setup<'_> {
    /// Writes `pem` to `name` under the certificate directory.
    pub fn write_pem(&self, name: &str, pem: &str) -> Result<PathBuf, String> {
        let path = self.cert_dir.join(name);
        std::fs::write(&path, pem)
            .map(|()| path.clone())
            .map_err(|e| format!("cannot write {}: {e}", path.display()))
    }
}

/// Entries of the ready file (`Endpoints`): a key and its value.
pub(crate) type ReadyEntries = Vec<(&'static str, serde_json::Value)>;

/// One emulated service.
pub(crate) trait Emulated {
    /// Its name in fault rules, `/stats` and the ready file (`aws`).
    const NAME: &'static str;
    /// The top-level tables of the seed and state file it reads and
    /// writes (its [`Emulated::Seed`]'s fields).
    const SEED_KEYS: &'static [&'static str];
    /// Seeds are applied lowest first (a service whose seeded keys name
    /// another's goes after it).
    const SEED_ORDER: u8 = 1;
    /// How its listeners speak.
    const TRANSPORT: Transport = Transport::Http;

    /// Its sections of the seed and state file.
    type Seed: Default + Clone + std::fmt::Debug + Serialize + DeserializeOwned;

    /// How many listeners it has (replicas).
    fn listeners(_config: &crate::Config) -> usize {
        1
    }

    /// The fixed port of its listener at `slot`, if any.
    fn port(config: &crate::Config, slot: usize) -> Option<u16> {
        slot_port(config, slot)
    }

    /// Puts its seed sections into the state.
    fn load_seed(state: &State, seed: Self::Seed) -> Result<(), String>;

    /// Reads its seed sections back (with private keys) for the state file.
    fn export_seed(state: &State) -> Result<Self::Seed, String>;

    /// Reads the files its seed names (key files, relative to `base`) into
    /// the seed.
    fn resolve_files(seed: &mut Self::Seed, base: &Path) -> Result<(), String> {
        let _ = (seed, base);
        Ok(())
    }

    /// Runs once the listeners are bound (`urls`, one per listener):
    /// writes its files, sets up what it needs, and returns its entries of
    /// the ready file. By default the entry `NAME` with the first URL.
    fn start(
        setup: &Setup<'_>,
        urls: &[String],
    ) -> impl Future<Output = Result<ReadyEntries, String>> + Send {
        let _ = setup;
        let first = urls.first().cloned().unwrap_or_default();
        async move { Ok(vec![(Self::NAME, serde_json::Value::String(first))]) }
    }

    /// Answers one request on listener `replica`.
    fn handle(
        state: &Arc<State>,
        req: Request,
        replica: usize,
    ) -> impl Future<Output = Reply> + Send;

    /// What the fuzzer runs for one request; by default the whole handler
    /// of the first listener.
    #[cfg(feature = "fuzzing")]
    fn fuzz(state: &Arc<State>, req: Request) -> impl Future<Output = Reply> + Send {
        Self::handle(state, req, 0)
    }

    /// Checks that an error answer (status ≥ 400) has the service's error
    /// shape; the fuzzer fails an input whose answer does not.
    #[cfg(feature = "fuzzing")]
    fn check_error(status: u16, body: &serde_json::Value) -> Result<(), String>;
}

/// Checks a `google.rpc.Status` error body: `error.code` (the HTTP
/// status), `error.status` and `error.message`.
#[cfg(feature = "fuzzing")]
pub(crate) fn check_rpc_status(status: u16, body: &serde_json::Value) -> Result<(), String> {
    let e = &body["error"];
    if e["code"].as_u64() != Some(u64::from(status))
        || e["status"].as_str().is_none()
        || e["message"].as_str().is_none()
    {
        return Err(format!(
            "error {status} not in google.rpc.Status shape: {body}"
        ));
    }
    Ok(())
}
