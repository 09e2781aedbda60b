//! The state every handler sees: it only aggregates the services' stores
//! (each service owns its types, and its section of the seed and state
//! file), the faults and counters, and how the state file is written.

use std::path::Path;
use std::sync::atomic::{AtomicI64, Ordering};
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

/// Seconds since the Unix epoch by the machine's clock (SigV4 and the
/// request log); the services' own times come from [`State::now`].
pub fn real_now() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map(|d| d.as_secs())
        .unwrap_or(0)
}

/// The emulated clock: the machine's clock moved by an offset
/// (`--clock-offset`, the admin API's `POST /clock`). Token expiry,
/// deletion and destroy windows, `exp`/`nbf` and rotation schedules follow
/// it.
#[derive(Debug, Default)]
pub struct Clock {
    offset: AtomicI64,
}

impl Clock {
    /// Seconds since the Unix epoch on the emulated clock.
    pub fn now(&self) -> u64 {
        let t = real_now() as i64 + self.offset();
        t.max(0) as u64
    }

    /// The offset from the machine's clock, in seconds.
    pub fn offset(&self) -> i64 {
        self.offset.load(Ordering::SeqCst)
    }

    /// Moves the clock to the machine's clock plus `secs`.
    pub fn set_offset(&self, secs: i64) {
        self.offset.store(secs, Ordering::SeqCst);
    }
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
            /// The emulated clock.
            pub clock: Clock,
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
                    clock: Clock::default(),
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
        state.clock.set_offset(state.config.clock_offset);
        state.load_keys()?;
        Ok(state)
    }

    /// Seconds since the Unix epoch on the emulated clock.
    pub fn now(&self) -> u64 {
        self.clock.now()
    }

    /// (Re)loads the keys from the state file or the seed.
    pub fn load_keys(&self) -> Result<(), String> {
        let source = match &self.config.state_file {
            Some(p) if p.exists() => Some(p.clone()),
            _ => self.config.seed.clone(),
        };
        self.load_from(source.as_deref())
    }

    /// Returns every service's whole state to the seed (the state file is
    /// rewritten from it).
    pub fn reset_to_seed(&self) -> Result<(), String> {
        self.load_from(self.config.seed.as_deref())
    }

    fn load_from(&self, source: Option<&Path>) -> Result<(), String> {
        self.clear_stores();
        self.loading.store(true, Ordering::SeqCst);
        let loaded = (self.seed_io.load)(source, self);
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
        if self.loading.load(Ordering::SeqCst) {
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
        // The state holds private keys: owner only.
        let written = {
            use std::io::Write;
            use std::os::unix::fs::OpenOptionsExt;
            let _ = std::fs::remove_file(&tmp);
            std::fs::OpenOptions::new()
                .write(true)
                .create_new(true)
                .mode(0o600)
                .open(&tmp)
                .and_then(|mut f| f.write_all(text.as_bytes()).and_then(|()| f.sync_all()))
        };
        if let Err(e) = written.and_then(|()| std::fs::rename(&tmp, path)) {
            tracing::error!("cannot write state file {}: {e}", path.display());
        }
    }
}
