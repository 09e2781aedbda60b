//! The seed and state file (TOML): each service reads and writes its own
//! top-level tables ([`Emulated::SEED_KEYS`]); a table no service claims is
//! refused. The [`SeedIo`] the emulator gives its [`State`].

use std::path::{Path, PathBuf};

use serde::{Deserialize, Deserializer, Serialize, Serializer};

use crate::service::{for_each_service, Emulated};
use crate::state::{SeedIo, State};

/// Reads and writes seeds through every service.
pub(crate) const IO: SeedIo = SeedIo {
    load: load_into,
    export: export_toml,
};

fn load_into(path: Option<&Path>, state: &State) -> Result<(), String> {
    // Without a seed the services still get their defaults (the metadata
    // services' instances).
    let seed = match path {
        Some(p) => Seed::load(p)?,
        None => Seed::default(),
    };
    seed.apply(state)
}

fn export_toml(state: &State) -> Result<String, String> {
    let seed = Seed::export(state)?;
    toml::to_string(&seed).map_err(|e| format!("cannot serialise state: {e}"))
}

/// Reads `file` (relative to `base`) into `pem` when it is set, so a seed
/// can name key files instead of holding PEM.
pub(crate) fn read_file(
    base: &Path,
    file: &mut Option<PathBuf>,
    pem: &mut Option<String>,
) -> Result<(), String> {
    if let Some(f) = file.take() {
        let f = if f.is_relative() { base.join(f) } else { f };
        *pem = Some(
            std::fs::read_to_string(&f).map_err(|e| format!("cannot read {}: {e}", f.display()))?,
        );
    }
    Ok(())
}

macro_rules! seed_struct {
    ($($field:ident: $variant:ident = $ty:ty => $store:ty,)*) => {
        /// The seed and state file: every service's sections.
        #[derive(Debug, Default, Clone)]
        pub struct Seed {
            $(
                #[doc = concat!("The sections of `", stringify!($field), "`.")]
                pub(crate) $field: <$ty as Emulated>::Seed,
            )*
        }

        impl Seed {
            fn from_table(mut table: toml::Table) -> Result<Seed, String> {
                let claimed: &[&[&str]] = &[$(<$ty as Emulated>::SEED_KEYS),*];
                if let Some(unknown) = table
                    .keys()
                    .find(|k| !claimed.iter().any(|keys| keys.contains(&k.as_str())))
                {
                    let known: Vec<&str> = claimed.iter().flat_map(|k| k.iter().copied()).collect();
                    return Err(format!(
                        "unknown section `{unknown}` (known: {})",
                        known.join(", ")
                    ));
                }
                Ok(Seed {
                    $(
                        $field: {
                            let mut own = toml::Table::new();
                            for key in <$ty as Emulated>::SEED_KEYS {
                                if let Some(v) = table.remove(*key) {
                                    own.insert((*key).to_string(), v);
                                }
                            }
                            toml::Value::Table(own).try_into().map_err(|e| {
                                format!("{} section: {e}", <$ty as Emulated>::NAME)
                            })?
                        },
                    )*
                })
            }

            fn to_table(&self) -> Result<toml::Table, String> {
                let mut table = toml::Table::new();
                $(
                    match toml::Value::try_from(&self.$field) {
                        Ok(toml::Value::Table(own)) => table.extend(own),
                        Ok(_) => {
                            return Err(format!(
                                "{}: its seed is not a table",
                                <$ty as Emulated>::NAME
                            ))
                        }
                        Err(e) => return Err(format!("{}: {e}", <$ty as Emulated>::NAME)),
                    }
                )*
                Ok(table)
            }

            fn resolve_files(&mut self, base: &Path) -> Result<(), String> {
                $(<$ty as Emulated>::resolve_files(&mut self.$field, base)?;)*
                Ok(())
            }

            /// Puts the seed into `state`, service by service in
            /// [`Emulated::SEED_ORDER`] order.
            pub(crate) fn apply(self, state: &State) -> Result<(), String> {
                let Seed { $($field),* } = self;
                $(let mut $field = Some($field);)*
                let mut order = [$(<$ty as Emulated>::SEED_ORDER),*];
                order.sort_unstable();
                let mut last = None;
                for phase in order {
                    if last == Some(phase) {
                        continue;
                    }
                    last = Some(phase);
                    $(
                        if <$ty as Emulated>::SEED_ORDER == phase {
                            if let Some(s) = $field.take() {
                                <$ty as Emulated>::load_seed(state, s)?;
                            }
                        }
                    )*
                }
                Ok(())
            }

            /// Captures every service's state (with private keys).
            pub(crate) fn export(state: &State) -> Result<Seed, String> {
                Ok(Seed {
                    $($field: <$ty as Emulated>::export_seed(state)?,)*
                })
            }
        }
    };
}
for_each_service!(seed_struct);

impl Seed {
    /// Reads a seed or state file; key files it names are read relative to
    /// the file's folder.
    pub fn load(path: &Path) -> Result<Seed, String> {
        let text = std::fs::read_to_string(path)
            .map_err(|e| format!("cannot read {}: {e}", path.display()))?;
        let mut seed: Seed =
            toml::from_str(&text).map_err(|e| format!("{}: {e}", path.display()))?;
        let base = path.parent().unwrap_or(Path::new(".")).to_path_buf();
        seed.resolve_files(&base)?;
        Ok(seed)
    }
}

impl<'de> Deserialize<'de> for Seed {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        let table = toml::Table::deserialize(d)?;
        Seed::from_table(table).map_err(serde::de::Error::custom)
    }
}

impl Serialize for Seed {
    fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        self.to_table()
            .map_err(serde::ser::Error::custom)?
            .serialize(s)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_section_no_service_claims_is_refused_by_name() {
        let err = toml::from_str::<Seed>("[[awz]]\nid = \"x\"\n").unwrap_err();
        let msg = err.to_string();
        assert!(msg.contains("unknown section `awz`"), "{msg}");
        assert!(msg.contains("gcp_ekm_connections"), "{msg}");
    }

    #[test]
    fn a_bad_section_names_its_service() {
        let err = toml::from_str::<Seed>("[[azure]]\nname = \"k\"\nwhat = 1\n").unwrap_err();
        let msg = err.to_string();
        assert!(msg.starts_with("azure section:"), "{msg}");
        assert!(msg.contains("what"), "{msg}");
    }

    macro_rules! claims_check {
        ($($field:ident: $variant:ident = $ty:ty => $store:ty,)*) => {
            /// Each service writes exactly the tables it claims, and no two
            /// services claim the same table.
            #[test]
            fn every_service_writes_only_its_own_tables() {
                let mut seen = std::collections::BTreeSet::new();
                $(
                    let own = <$ty as Emulated>::SEED_KEYS;
                    for k in own {
                        assert!(seen.insert(*k), "{k} claimed twice");
                    }
                    let toml::Value::Table(t) =
                        toml::Value::try_from(<$ty as Emulated>::Seed::default()).unwrap()
                    else {
                        panic!("{}: not a table", <$ty as Emulated>::NAME);
                    };
                    for k in t.keys() {
                        assert!(own.contains(&k.as_str()), "{} writes {k}", <$ty as Emulated>::NAME);
                    }
                )*
            }
        };
    }
    for_each_service!(claims_check);

    #[test]
    fn a_seed_survives_a_round_trip() {
        let text = "[[aws]]\nid = \"11111111-2222-3333-4444-555555555555\"\nspec = \"ECC_NIST_P256\"\n\n[[gcp_ekm_configs]]\nlocation = \"projects/p/locations/l\"\ndefault_ekm_connection = \"projects/p/locations/l/ekmConnections/c\"\n";
        let seed: Seed = toml::from_str(text).unwrap();
        let back: Seed = toml::from_str(&toml::to_string(&seed).unwrap()).unwrap();
        assert_eq!(back.aws.aws.len(), 1);
        assert_eq!(back.gcp.ekm_configs.len(), 1);
        assert_eq!(back.gcp.ekm_configs[0].location, "projects/p/locations/l");
    }
}
