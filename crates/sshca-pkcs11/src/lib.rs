//! sshca backend for CA keys on PKCS#11 tokens: HSMs, YubiHSM, cloud HSMs'
//! PKCS#11 libraries, SoftHSM.
//!
//! URI (RFC 7512):
//! `pkcs11:token=LABEL;object=LABEL;id=%01?module-path=/usr/lib/...so&pin-source=FILE`
//! - path attributes `token`, `serial`, `slot-id` pick the token; `object`
//!   and `id` the key (a private key; `type=private` may be written);
//! - `module-path` is the module (default: `$PKCS11_MODULE`);
//! - `pin-source` a file whose first line is the user PIN (`file:` prefix
//!   allowed); `pin-value` the PIN itself, refused unless the program allows
//!   it ([`allow_pin_value`], the CLI's `--allow-pin-value`), since a URI
//!   ends up in configs, logs and shell history.
//!
//! Mechanisms: Ed25519 with CKM_EDDSA over the message; ECDSA P-256/P-384/
//! P-521 with CKM_ECDSA over a digest hashed here (the raw `r‖s` converted);
//! RSA with CKM_SHA256_RSA_PKCS / CKM_SHA512_RSA_PKCS. The public key is read
//! from the token once, when the signer opens (CKA_EC_POINT, plain or
//! DER-wrapped; CKA_MODULUS/CKA_PUBLIC_EXPONENT).
//!
//! Sessions: a pool of read-only sessions, logged in once (the login holds
//! for every session of the process), each used by one signature at a time
//! on a blocking thread. A session the token no longer knows (closed,
//! token removed and reinserted: `CKR_SESSION_HANDLE_INVALID` and the like)
//! is dropped, the token found again, and the signature retried once.

use std::collections::HashMap;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex, OnceLock};

use async_trait::async_trait;
use cryptoki::context::{CInitializeArgs, CInitializeFlags, Pkcs11};
use cryptoki::error::{Error as CkError, RvError};
use cryptoki::mechanism::eddsa::{EddsaParams, EddsaSignatureScheme};
use cryptoki::mechanism::Mechanism;
use cryptoki::object::{Attribute, AttributeType, KeyType, ObjectClass, ObjectHandle};
use cryptoki::session::{Session, UserType};
use cryptoki::slot::Slot;
use cryptoki::types::AuthPin;
use ssh_key::public::{EcdsaPublicKey, Ed25519PublicKey, KeyData, RsaPublicKey};
use ssh_key::EcdsaCurve;
use sshca_core::convert::{ecdsa_raw_to_ssh, ed25519_to_ssh, rsa_pkcs1_to_ssh};
use sshca_core::{SigAlg, Signature};
use sshca_signer::{
    Error, ErrorKind, FixedKey, FixedKeyBackend, KeySigner, KeySpec, KeyUri, Registry, Result,
    Secret,
};

mod keys;
mod uri;

pub use keys::generate;
use keys::read_public_key;
pub use uri::Pkcs11Uri;
use uri::{bad, redacted};

/// The URI scheme of this backend.
pub const SCHEME: &str = "pkcs11";

/// Environment variable naming the default PKCS#11 module.
pub const MODULE_ENV: &str = "PKCS11_MODULE";

/// Sessions kept open per signer when idle.
const MAX_IDLE_SESSIONS: usize = 16;

static ALLOW_PIN_VALUE: AtomicBool = AtomicBool::new(false);

/// Lets URIs carry the PIN itself (`pin-value=`); off by default.
pub fn allow_pin_value(allow: bool) {
    ALLOW_PIN_VALUE.store(allow, Ordering::Relaxed);
}

/// Registers the `pkcs11:` scheme.
pub fn register(registry: &mut Registry) {
    registry.register(SCHEME, |uri| {
        Box::pin(async move {
            let s: Arc<dyn KeySigner> = Arc::new(Pkcs11Signer::open(uri).await?);
            Ok(s)
        })
    });
}

/// Loaded modules: one `C_Initialize` per module per process.
fn module(path: &Path) -> Result<Pkcs11> {
    static MODULES: OnceLock<Mutex<HashMap<PathBuf, Pkcs11>>> = OnceLock::new();
    let map = MODULES.get_or_init(Default::default);
    let mut map = map
        .lock()
        .map_err(|_| Error::new(ErrorKind::Internal, "the PKCS#11 module table is poisoned"))?;
    if let Some(m) = map.get(path) {
        return Ok(m.clone());
    }
    let m = Pkcs11::new(path).map_err(|e| {
        Error::new(
            ErrorKind::InvalidInput,
            format!("cannot load the PKCS#11 module {}: {e}", path.display()),
        )
    })?;
    match m.initialize(CInitializeArgs::new(CInitializeFlags::OS_LOCKING_OK)) {
        Ok(()) | Err(CkError::Pkcs11(RvError::CryptokiAlreadyInitialized, _)) => {}
        Err(e) => {
            return Err(Error::new(
                ErrorKind::Unavailable,
                format!(
                    "cannot initialise the PKCS#11 module {}: {e}",
                    path.display()
                ),
            ))
        }
    }
    map.insert(path.to_owned(), m.clone());
    Ok(m)
}

/// An error of the token, classified.
fn ck_err(what: &str, e: CkError) -> Error {
    let kind = match &e {
        CkError::Pkcs11(rv, _) => match rv {
            RvError::PinIncorrect | RvError::PinInvalid | RvError::PinLenRange => {
                ErrorKind::Unauthenticated
            }
            RvError::PinLocked | RvError::PinExpired => ErrorKind::PermissionDenied,
            RvError::UserNotLoggedIn => ErrorKind::Unauthenticated,
            RvError::TokenNotPresent
            | RvError::DeviceRemoved
            | RvError::DeviceError
            | RvError::DeviceMemory
            | RvError::SessionHandleInvalid
            | RvError::SessionClosed
            | RvError::SessionCount => ErrorKind::Unavailable,
            RvError::MechanismInvalid
            | RvError::KeyTypeInconsistent
            | RvError::KeyFunctionNotPermitted => ErrorKind::Unsupported,
            _ => ErrorKind::BadResponse,
        },
        CkError::LibraryLoading(_) => ErrorKind::InvalidInput,
        _ => ErrorKind::BadResponse,
    };
    let msg = match &e {
        CkError::Pkcs11(RvError::PinIncorrect, _) => format!("{what}: the PIN is incorrect"),
        CkError::Pkcs11(rv, f) => format!("{what}: {f:?} returned {rv:?}"),
        other => format!("{what}: {other}"),
    };
    Error::new(kind, msg)
}

/// Whether an error means the session is gone (reopen and retry).
fn session_lost(e: &CkError) -> bool {
    matches!(
        e,
        CkError::Pkcs11(
            RvError::SessionHandleInvalid
                | RvError::SessionClosed
                | RvError::DeviceRemoved
                | RvError::TokenNotPresent
                | RvError::UserNotLoggedIn
                | RvError::ObjectHandleInvalid
                | RvError::KeyHandleInvalid,
            _
        )
    )
}

/// The token: module, slot and login.
struct Token {
    uri: KeyUri,
    parsed: Pkcs11Uri,
    module: Pkcs11,
    slot: Mutex<Slot>,
}

impl Token {
    fn open(uri: &KeyUri) -> Result<Self> {
        let parsed = Pkcs11Uri::parse(uri)?;
        let module = module(&parsed.module)?;
        let slot = find_slot(&module, &parsed, uri)?;
        Ok(Self {
            uri: uri.clone(),
            parsed,
            module,
            slot: Mutex::new(slot),
        })
    }

    fn slot(&self) -> Result<Slot> {
        self.slot
            .lock()
            .map(|s| *s)
            .map_err(|_| Error::new(ErrorKind::Internal, "the slot lock is poisoned"))
    }

    /// Finds the token again (after it was removed and reinserted, its
    /// slot may differ).
    fn refind(&self) -> Result<()> {
        let slot = find_slot(&self.module, &self.parsed, &self.uri)?;
        if let Ok(mut s) = self.slot.lock() {
            *s = slot;
        }
        Ok(())
    }

    /// A session, logged in when a PIN is given.
    fn session(&self, rw: bool) -> Result<Session> {
        let slot = self.slot()?;
        let s = if rw {
            self.module.open_rw_session(slot)
        } else {
            self.module.open_ro_session(slot)
        }
        .map_err(|e| {
            ck_err(
                &format!("`{}`: cannot open a session", redacted(&self.uri)),
                e,
            )
        })?;
        if let Some(pin) = self.parsed.read_pin(&self.uri)? {
            match s.login(UserType::User, Some(&pin)) {
                Ok(()) | Err(CkError::Pkcs11(RvError::UserAlreadyLoggedIn, _)) => {}
                Err(e) => {
                    return Err(ck_err(
                        &format!("`{}`: cannot log in to the token", redacted(&self.uri)),
                        e,
                    ))
                }
            }
        }
        Ok(s)
    }

    /// The one object of `class` the URI names.
    fn find(&self, s: &Session, class: ObjectClass) -> Result<Option<ObjectHandle>> {
        find_object(&self.parsed, &self.uri, s, class)
    }

    fn private_key(&self, s: &Session) -> Result<ObjectHandle> {
        self.find(s, ObjectClass::PRIVATE_KEY)?.ok_or_else(|| {
            Error::new(
                ErrorKind::NotFound,
                format!(
                    "`{}`: no private key {} on the token{}",
                    redacted(&self.uri),
                    self.parsed.describe(),
                    if self.parsed.pin.is_none() {
                        " (private keys are only visible after login: add pin-source=FILE)"
                    } else {
                        ""
                    }
                ),
            )
        })
    }
}

/// The one object of `class` that `p`'s `object=` and `id=` name.
fn find_object(
    p: &Pkcs11Uri,
    uri: &KeyUri,
    s: &Session,
    class: ObjectClass,
) -> Result<Option<ObjectHandle>> {
    let mut template = vec![Attribute::Class(class)];
    if let Some(o) = &p.object {
        template.push(Attribute::Label(o.as_bytes().to_vec()));
    }
    if let Some(id) = &p.id {
        template.push(Attribute::Id(id.clone()));
    }
    let found = s
        .find_objects(&template)
        .map_err(|e| ck_err(&format!("`{}`: cannot search the token", redacted(uri)), e))?;
    match found.as_slice() {
        [] => Ok(None),
        [one] => Ok(Some(*one)),
        many => Err(bad(
            uri,
            format_args!(
                "{} keys match {}; name one with both `object=` and `id=`",
                many.len(),
                p.describe()
            ),
        )),
    }
}

fn find_slot(module: &Pkcs11, p: &Pkcs11Uri, uri: &KeyUri) -> Result<Slot> {
    let slots = module
        .get_slots_with_token()
        .map_err(|e| ck_err(&format!("`{}`: cannot list the slots", redacted(uri)), e))?;
    let mut labels = Vec::new();
    let mut matches = Vec::new();
    for slot in slots {
        let info = module
            .get_token_info(slot)
            .map_err(|e| ck_err(&format!("`{}`: cannot read a token", redacted(uri)), e))?;
        let label = info.label().trim_end().to_owned();
        let serial = info.serial_number().trim_end().to_owned();
        let ok = p.token.as_ref().is_none_or(|t| *t == label)
            && p.serial.as_ref().is_none_or(|s| *s == serial)
            && p.slot_id.is_none_or(|id| id == slot.id());
        if ok {
            matches.push(slot);
        }
        labels.push(label);
    }
    match matches.as_slice() {
        [one] => Ok(*one),
        [] => Err(Error::new(
            ErrorKind::NotFound,
            format!(
                "`{}`: no token matches (tokens present: {})",
                redacted(uri),
                if labels.is_empty() {
                    "none".to_owned()
                } else {
                    labels.join(", ")
                }
            ),
        )),
        _ => Err(bad(
            uri,
            format_args!(
                "{} tokens match ({}); name one with `token=`, `serial=` or `slot-id=`",
                matches.len(),
                labels.join(", ")
            ),
        )),
    }
}

struct Inner {
    token: Token,
    key: FixedKey,
    rsa_len: usize,
    /// Idle sessions with the key's handle in them.
    idle: Mutex<Vec<(Session, ObjectHandle)>>,
}

/// A CA key on a PKCS#11 token.
pub struct Pkcs11Signer {
    inner: Arc<Inner>,
}

impl std::fmt::Debug for Pkcs11Signer {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Pkcs11Signer")
            .field("uri", &redacted(self.inner.key.uri()))
            .finish_non_exhaustive()
    }
}

/// Runs a blocking PKCS#11 call off the async runtime.
async fn blocking<T: Send + 'static>(f: impl FnOnce() -> Result<T> + Send + 'static) -> Result<T> {
    tokio::task::spawn_blocking(f).await.map_err(|e| {
        Error::new(
            ErrorKind::Internal,
            format!("the PKCS#11 thread failed: {e}"),
        )
    })?
}

impl Pkcs11Signer {
    /// Opens the key: loads the module, finds the token, logs in, finds
    /// the private key and reads its public key.
    pub async fn open(uri: KeyUri) -> Result<Self> {
        blocking(move || Self::open_blocking(uri)).await
    }

    fn open_blocking(uri: KeyUri) -> Result<Self> {
        let token = Token::open(&uri)?;
        let s = token.session(false)?;
        let private = token.private_key(&s)?;
        let public = read_public_key(&token, &s, private)?;
        let algorithms = SigAlg::for_key(&public).map_err(|e| {
            Error::new(ErrorKind::Unsupported, format!("`{}`: {e}", redacted(&uri)))
        })?;
        let rsa_len = match &public {
            KeyData::Rsa(k) => k.n.as_positive_bytes().map_or(0, <[u8]>::len),
            _ => 0,
        };
        Ok(Self {
            inner: Arc::new(Inner {
                token,
                key: FixedKey::new(uri, public, algorithms),
                rsa_len,
                idle: Mutex::new(vec![(s, private)]),
            }),
        })
    }
}

impl Inner {
    fn checkout(&self) -> Result<(Session, ObjectHandle)> {
        if let Some(s) = self.idle.lock().ok().and_then(|mut v| v.pop()) {
            return Ok(s);
        }
        let s = self.token.session(false)?;
        let key = self.token.private_key(&s)?;
        Ok((s, key))
    }

    fn checkin(&self, s: (Session, ObjectHandle)) {
        if let Ok(mut idle) = self.idle.lock() {
            if idle.len() < MAX_IDLE_SESSIONS {
                idle.push(s);
            }
        }
    }

    fn sign_blocking(&self, alg: SigAlg, message: &[u8]) -> Result<Signature> {
        let digest;
        let (mechanism, data): (Mechanism<'_>, &[u8]) = match alg {
            SigAlg::Ed25519 => (
                Mechanism::Eddsa(EddsaParams::new(EddsaSignatureScheme::Pure)),
                message,
            ),
            SigAlg::EcdsaP256 | SigAlg::EcdsaP384 | SigAlg::EcdsaP521 => {
                digest = alg.digest(message).unwrap_or_default();
                (Mechanism::Ecdsa, &digest)
            }
            SigAlg::RsaSha256 => (Mechanism::Sha256RsaPkcs, message),
            SigAlg::RsaSha512 => (Mechanism::Sha512RsaPkcs, message),
            other => {
                return Err(Error::new(
                    ErrorKind::Unsupported,
                    format!("`{}` cannot sign with {other}", redacted(self.key.uri())),
                ))
            }
        };
        let what = format!("`{}`: signing failed", redacted(self.key.uri()));
        let mut attempt = 0;
        let raw = loop {
            let (s, key) = self.checkout()?;
            match s.sign(&mechanism, key, data) {
                Ok(sig) => {
                    self.checkin((s, key));
                    break sig;
                }
                Err(e) if session_lost(&e) && attempt == 0 => {
                    // Drop every idle session too: they died with this one.
                    drop(s);
                    if let Ok(mut idle) = self.idle.lock() {
                        idle.clear();
                    }
                    self.token.refind()?;
                    attempt += 1;
                }
                Err(e) => return Err(ck_err(&what, e)),
            }
        };
        let sig = match alg {
            SigAlg::Ed25519 => ed25519_to_ssh(&raw),
            SigAlg::EcdsaP256 => ecdsa_raw_to_ssh(EcdsaCurve::NistP256, &raw),
            SigAlg::EcdsaP384 => ecdsa_raw_to_ssh(EcdsaCurve::NistP384, &raw),
            SigAlg::EcdsaP521 => ecdsa_raw_to_ssh(EcdsaCurve::NistP521, &raw),
            _ => rsa_pkcs1_to_ssh(alg, &raw, self.rsa_len),
        };
        sig.map_err(|e| {
            Error::new(
                ErrorKind::BadResponse,
                format!("`{}`: the token's signature: {e}", redacted(self.key.uri())),
            )
        })
    }
}

#[async_trait]
impl FixedKeyBackend for Pkcs11Signer {
    fn fixed_key(&self) -> &FixedKey {
        &self.inner.key
    }

    async fn sign_checked(&self, alg: SigAlg, message: &[u8]) -> Result<Signature> {
        let inner = self.inner.clone();
        let message = message.to_vec();
        blocking(move || inner.sign_blocking(alg, &message)).await
    }
}

sshca_signer::fixed_key_signer!(Pkcs11Signer);

/// Logs the process out of the URI's token (every session loses the
/// login and its private-key handles, as after a token reset): for drills
/// and tests of recovery; signers log in again on their next signature.
pub fn logout(uri: &KeyUri) -> Result<()> {
    let token = Token::open(uri)?;
    let s = token.session(false)?;
    s.logout()
        .map_err(|e| ck_err(&format!("`{}`: cannot log out", redacted(uri)), e))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::keys::ec_point;
    use crate::uri::PinFrom;

    fn parse(text: &str) -> Result<Pkcs11Uri> {
        Pkcs11Uri::parse(&KeyUri::parse(text)?)
    }

    #[test]
    fn uris() {
        let u = parse("pkcs11:token=CA%20one;object=user-ca;id=%01%ff?module-path=/m.so&pin-source=file:/run/pin").unwrap();
        assert_eq!(u.token.as_deref(), Some("CA one"));
        assert_eq!(u.object.as_deref(), Some("user-ca"));
        assert_eq!(u.id.as_deref(), Some(&[1u8, 0xff][..]));
        assert_eq!(u.module, Path::new("/m.so"));
        assert_eq!(u.pin, Some(PinFrom::File("/run/pin".into())));
        assert_eq!(u.location(), "token=CA%20one;object=user-ca;id=%01%ff");
        for (text, needle) in [
            ("pkcs11:token=a?module-path=/m.so", "object="),
            (
                "pkcs11:object=a;color=red?module-path=/m.so",
                "unknown path attribute `color`",
            ),
            ("pkcs11:object=a;object=b?module-path=/m.so", "given twice"),
            (
                "pkcs11:object=a;type=public?module-path=/m.so",
                "`type` must be `private`",
            ),
            (
                "pkcs11:object=a?module-path=/m.so&pin-value=1234",
                "--allow-pin-value",
            ),
            (
                "pkcs11:object=a?module-path=/m.so&colour=x",
                "unknown option `colour`",
            ),
        ] {
            let e = parse(text).unwrap_err().to_string();
            assert!(e.contains(needle), "{text}: {e}");
            assert!(!e.contains("1234"), "the PIN reached an error: {e}");
        }
    }

    #[test]
    fn ec_points_plain_or_wrapped() {
        let raw = [4u8; 65];
        assert_eq!(ec_point(&raw, 65), Some(&raw[..]));
        let mut wrapped = vec![0x04, 65];
        wrapped.extend_from_slice(&raw);
        assert_eq!(ec_point(&wrapped, 65), Some(&raw[..]));
        let mut long = vec![0x04, 0x81, 133];
        long.extend_from_slice(&[4u8; 133]);
        assert_eq!(ec_point(&long, 133).map(<[u8]>::len), Some(133));
        assert_eq!(ec_point(&[0x04, 0x20, 1, 2], 32), None);
        let mut ed = vec![0x04, 0x20];
        ed.extend_from_slice(&[9u8; 32]);
        assert_eq!(ec_point(&ed, 32), Some(&[9u8; 32][..]));
    }
}
