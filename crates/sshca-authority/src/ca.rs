//! A CA with every key opened: the current key that signs, the `next` keys
//! published ahead of a rotation and the `retired` keys still trusted while
//! their certificates live.

use std::collections::BTreeMap;
use std::sync::Arc;

use sshca::config::Config;
use sshca::core::KeyData;
use sshca::signer::{Error, ErrorKind, KeySigner, Result};
use sshca_store::Store;

/// The part a CA key plays.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum KeyRole {
    /// Signs now.
    Current,
    /// Will sign after the next rotation.
    Next,
    /// Signed before.
    Retired,
}

impl KeyRole {
    /// `current`, `next` or `retired`.
    pub fn as_str(self) -> &'static str {
        match self {
            KeyRole::Current => "current",
            KeyRole::Next => "next",
            KeyRole::Retired => "retired",
        }
    }
}

/// One key of a CA.
#[derive(Debug, Clone)]
pub struct CaKey {
    /// Its role.
    pub role: KeyRole,
    /// Its public key.
    pub key: KeyData,
    /// Its SHA256 fingerprint.
    pub fingerprint: String,
}

/// A CA with every key opened: the current one to sign with, the others for
/// their public keys.
#[derive(Debug, Clone)]
pub struct OpenedCa {
    /// The CA's name in the config.
    pub name: String,
    /// The current key's signer.
    pub signer: Arc<dyn KeySigner>,
    /// The current key.
    pub current: CaKey,
    /// The next keys, then the retired ones.
    pub others: Vec<CaKey>,
}

impl OpenedCa {
    /// Opens `[ca.NAME]`: its current key (pin checked) and the public keys
    /// of its next and retired keys.
    pub async fn open(config: &Config, name: &str) -> Result<Self> {
        let ca = config.cas.get(name).ok_or_else(|| {
            Error::new(
                ErrorKind::NotFound,
                format!(
                    "no CA named `{name}` in the config (CAs: {})",
                    config.cas.keys().cloned().collect::<Vec<_>>().join(", ")
                ),
            )
        })?;
        let registry = sshca::default_registry();
        let ctx = |role: &str| format!("CA `{name}` ({role} key)");
        let signer = registry
            .open(&ca.uri()?)
            .await
            .map_err(|e| e.context(ctx("current")))?;
        let key = signer
            .public_key()
            .await
            .map_err(|e| e.context(ctx("current")))?;
        let current = CaKey {
            role: KeyRole::Current,
            fingerprint: sshca::fingerprint(&key),
            key,
        };
        let mut others = Vec::new();
        for (role, list) in [(KeyRole::Next, &ca.next), (KeyRole::Retired, &ca.retired)] {
            for uri in list {
                let s = registry
                    .open(uri)
                    .await
                    .map_err(|e| e.context(ctx(role.as_str())))?;
                let key = s
                    .public_key()
                    .await
                    .map_err(|e| e.context(ctx(role.as_str())))?;
                others.push(CaKey {
                    role,
                    fingerprint: sshca::fingerprint(&key),
                    key,
                });
            }
        }
        Ok(Self {
            name: name.to_owned(),
            signer,
            current,
            others,
        })
    }

    /// Every key, the current one first.
    pub fn keys(&self) -> impl Iterator<Item = &CaKey> {
        std::iter::once(&self.current).chain(&self.others)
    }

    /// The SHA256 fingerprints of every key.
    pub fn fingerprints(&self) -> Vec<String> {
        self.keys().map(|k| k.fingerprint.clone()).collect()
    }

    /// The keys a host or user must trust now: the current and next keys,
    /// and retired keys unless the store shows that every certificate they
    /// signed has expired (a retired key the store has no certificate of
    /// may have signed outside it, and is kept; so is every retired key
    /// when no store is given).
    pub async fn trusted_keys(&self, store: Option<&dyn Store>, now: u64) -> Result<Vec<&CaKey>> {
        let mut out = Vec::new();
        for k in self.keys() {
            let keep = match (k.role, store) {
                (KeyRole::Retired, Some(s)) => {
                    let known = s
                        .certs(&sshca_store::CertQuery {
                            ca_fingerprint: Some(k.fingerprint.clone()),
                            limit: 1,
                            ..Default::default()
                        })
                        .await?;
                    known.is_empty() || s.has_unexpired(&k.fingerprint, now).await?
                }
                _ => true,
            };
            if keep {
                out.push(k);
            }
        }
        Ok(out)
    }
}

/// Opens every CA a policy of `config` uses, with its next and retired keys
/// (each key URI through the registry, so pins are checked and signatures
/// verified).
pub async fn open_cas(config: &Config) -> Result<BTreeMap<String, OpenedCa>> {
    let mut cas = BTreeMap::new();
    for entry in config.policies.values() {
        if cas.contains_key(&entry.ca) || !config.cas.contains_key(&entry.ca) {
            continue;
        }
        cas.insert(entry.ca.clone(), OpenedCa::open(config, &entry.ca).await?);
    }
    Ok(cas)
}
