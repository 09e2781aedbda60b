//! The state every handler sees: it only aggregates the services' stores
//! (each service owns its types, and its section of the seed and state
//! file), the faults and counters, and how the state file is written.

use std::path::Path;
use std::sync::{Mutex, RwLock};
use std::time::{SystemTime, UNIX_EPOCH};

use crate::faults::{lock, Faults};
use crate::gcp::link::Link;
use crate::metadata::Signer;
use crate::Config;

/// How seeds reach the services: `load` reads a seed or state file (none:
/// the services' defaults) into the stores, `export` writes the stores as
/// a state file. Given by whoever builds the [`State`] (the emulator knows
/// its services; the state does not).
#[derive(Debug, Clone, Copy)]
pub struct SeedIo {
    /// Reads a seed or state file into the stores.
    pub load: fn(Option<&Path>, &State) -> Result<(), String>,
    /// Captures the stores as a state file (TOML).
    pub export: fn(&State) -> Result<String, String>,
}

/// Seconds since the Unix epoch.
pub fn now() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map(|d| d.as_secs())
        .unwrap_or(0)
}

macro_rules! state_struct {
    ($($field:ident: $variant:ident = $ty:ty => $store:ty,)*) => {
        /// Everything the handlers share.
        #[derive(Debug)]
        pub struct State {
            /// Emulator settings.
            pub config: Config,
            $(
                #[doc = concat!("The store of `", stringify!($field), "`.")]
                pub $field: RwLock<$store>,
            )*
            /// Faults and counters.
            pub faults: Faults,
            /// Every service's requests (the admin API's `GET /requests`,
            /// `--request-log`).
            pub requests: crate::requests::RequestLog,
            /// How the emulated Cloud KMS reaches external key managers.
            pub ekm_link: Link,
            /// The key metadata documents and tokens are signed with (set at
            /// start).
            pub metadata_signer: std::sync::OnceLock<Signer>,
            seed_io: SeedIo,
            /// Set while keys are loaded: the state file is written once at the
            /// end, never half-loaded.
            loading: std::sync::atomic::AtomicBool,
            persist: Mutex<()>,
        }

        impl State {
            fn empty(
                config: Config,
                seed_io: SeedIo,
                requests: crate::requests::RequestLog,
            ) -> State {
                State {
                    config,
                    $($field: RwLock::default(),)*
                    faults: Faults::default(),
                    requests,
                    ekm_link: Link::default(),
                    metadata_signer: std::sync::OnceLock::new(),
                    seed_io,
                    loading: std::sync::atomic::AtomicBool::new(false),
                    persist: Mutex::new(()),
                }
            }

            fn clear_stores(&self) {
                $(*write(&self.$field) = Default::default();)*
            }
        }
    };
}
crate::service::for_each_service!(state_struct);

/// Read lock that survives a poisoned lock.
pub fn read<T>(l: &RwLock<T>) -> std::sync::RwLockReadGuard<'_, T> {
    l.read().unwrap_or_else(|p| p.into_inner())
}

/// Write lock that survives a poisoned lock.
pub fn write<T>(l: &RwLock<T>) -> std::sync::RwLockWriteGuard<'_, T> {
    l.write().unwrap_or_else(|p| p.into_inner())
}

impl State {
    /// Builds the state: the state file when it exists, else the seed file.
    pub fn new(config: Config, seed_io: SeedIo) -> Result<State, String> {
        let requests = crate::requests::RequestLog::open(config.request_log.as_deref())?;
        let state = State::empty(config, seed_io, requests);
        state.load_keys()?;
        Ok(state)
    }

    /// (Re)loads the keys from the state file or the seed.
    pub fn load_keys(&self) -> Result<(), String> {
        let source = match &self.config.state_file {
            Some(p) if p.exists() => Some(p.clone()),
            _ => self.config.seed.clone(),
        };
        self.clear_stores();
        use std::sync::atomic::Ordering;
        self.loading.store(true, Ordering::SeqCst);
        let loaded = (self.seed_io.load)(source.as_deref(), self);
        self.loading.store(false, Ordering::SeqCst);
        loaded?;
        self.persist();
        Ok(())
    }

    /// Writes the state file, if one is configured (atomically).
    pub fn persist(&self) {
        let Some(path) = &self.config.state_file else {
            return;
        };
        if self.loading.load(std::sync::atomic::Ordering::SeqCst) {
            return;
        }
        let _guard = lock(&self.persist);
        let text = match (self.seed_io.export)(self) {
            Ok(t) => t,
            Err(e) => {
                tracing::error!("{e}");
                return;
            }
        };
        let tmp = path.with_extension("tmp");
        if let Err(e) = std::fs::write(&tmp, text).and_then(|()| std::fs::rename(&tmp, path)) {
            tracing::error!("cannot write state file {}: {e}", path.display());
        }
    }
}
