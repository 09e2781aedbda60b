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
    Error, ErrorKind, FixedKey, KeySigner, KeySpec, KeyUri, Registry, Result, Secret,
};

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

/// What a `pkcs11:` URI says.
#[derive(Clone, PartialEq, Eq)]
pub struct Pkcs11Uri {
    /// Token label.
    pub token: Option<String>,
    /// Token serial number.
    pub serial: Option<String>,
    /// Slot id.
    pub slot_id: Option<u64>,
    /// Object label.
    pub object: Option<String>,
    /// Object id (bytes).
    pub id: Option<Vec<u8>>,
    /// The module to load.
    pub module: PathBuf,
    pin: Option<PinFrom>,
}

#[derive(Clone, PartialEq, Eq)]
enum PinFrom {
    File(PathBuf),
    Value(Secret),
}

impl std::fmt::Debug for PinFrom {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            PinFrom::File(p) => write!(f, "File({})", p.display()),
            PinFrom::Value(_) => f.write_str("Value(REDACTED)"),
        }
    }
}

impl std::fmt::Debug for Pkcs11Uri {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Pkcs11Uri")
            .field("token", &self.token)
            .field("serial", &self.serial)
            .field("slot_id", &self.slot_id)
            .field("object", &self.object)
            .field("id", &self.id.as_deref().map(pct))
            .field("module", &self.module)
            .field("pin", &self.pin)
            .finish()
    }
}

fn bad(uri: &KeyUri, what: impl std::fmt::Display) -> Error {
    Error::new(
        ErrorKind::InvalidInput,
        format!("`{}`: {what}", redacted(uri)),
    )
}

/// The URI as it may be shown: `pin-value` replaced.
fn redacted(uri: &KeyUri) -> String {
    let mut u = uri.clone();
    if u.option("pin-value").is_some() {
        u.set_option("pin-value", "REDACTED");
    }
    u.to_string()
}

/// `%XX` for every byte (ids are bytes).
fn pct(bytes: &[u8]) -> String {
    bytes.iter().map(|b| format!("%{b:02x}")).collect()
}

impl Pkcs11Uri {
    /// Reads a `pkcs11:` URI; errors name the attribute.
    pub fn parse(uri: &KeyUri) -> Result<Self> {
        uri.check_options(&["module-path", "pin-source", "pin-value"])?;
        let mut out = Self {
            token: None,
            serial: None,
            slot_id: None,
            object: None,
            id: None,
            module: PathBuf::new(),
            pin: None,
        };
        for attr in uri.location().split(';').filter(|a| !a.is_empty()) {
            let (name, value) = attr.split_once('=').ok_or_else(|| {
                bad(
                    uri,
                    format_args!("path attribute `{attr}` is not NAME=VALUE"),
                )
            })?;
            let bytes: Vec<u8> = percent_encoding::percent_decode_str(value).collect();
            let text = || {
                String::from_utf8(bytes.clone())
                    .map_err(|_| bad(uri, format_args!("`{name}` is not UTF-8 after %-decoding")))
            };
            let slot = match name {
                "token" => &mut out.token,
                "serial" => &mut out.serial,
                "object" => &mut out.object,
                "id" => {
                    if out.id.replace(bytes.clone()).is_some() {
                        return Err(bad(uri, "`id` is given twice"));
                    }
                    continue;
                }
                "slot-id" => {
                    let n = text()?
                        .parse()
                        .map_err(|_| bad(uri, "`slot-id` is not a number"))?;
                    out.slot_id = Some(n);
                    continue;
                }
                "type" => {
                    if text()? != "private" {
                        return Err(bad(
                            uri,
                            "`type` must be `private`: a CA key URI names a private key",
                        ));
                    }
                    continue;
                }
                "manufacturer" | "model" | "library-manufacturer" | "library-description"
                | "library-version" | "slot-manufacturer" | "slot-description" => continue,
                other => {
                    return Err(bad(
                        uri,
                        format_args!(
                            "unknown path attribute `{other}` (known: token, serial, slot-id, object, id, type)"
                        ),
                    ))
                }
            };
            if slot.replace(text()?).is_some() {
                return Err(bad(uri, format_args!("`{name}` is given twice")));
            }
        }
        if out.object.is_none() && out.id.is_none() {
            return Err(bad(uri, "name the key with `object=LABEL` and/or `id=%XX`"));
        }
        out.module = match uri.option("module-path") {
            Some(p) => PathBuf::from(p),
            None => std::env::var_os(MODULE_ENV)
                .map(PathBuf::from)
                .ok_or_else(|| {
                    bad(
                        uri,
                        format_args!(
                            "no module: add `?module-path=/path/to/module.so` or set {MODULE_ENV}"
                        ),
                    )
                })?,
        };
        out.pin = match (uri.option("pin-source"), uri.option("pin-value")) {
            (Some(_), Some(_)) => {
                return Err(bad(uri, "give `pin-source` or `pin-value`, not both"))
            }
            (Some(src), None) => Some(PinFrom::File(PathBuf::from(
                src.strip_prefix("file:").unwrap_or(src),
            ))),
            (None, Some(v)) => {
                if !ALLOW_PIN_VALUE.load(Ordering::Relaxed) {
                    return Err(bad(
                        uri,
                        "`pin-value` puts the PIN in the URI (configs, logs, shell history); \
                         use `pin-source=FILE`, or allow it with --allow-pin-value",
                    ));
                }
                Some(PinFrom::Value(Secret::new(v.to_owned())))
            }
            (None, None) => None,
        };
        Ok(out)
    }

    /// The URI path naming the same token and key (what `sshca keygen
    /// --pkcs11` prints).
    fn location(&self) -> String {
        let enc = |s: &str| pct_text(s);
        let mut parts = Vec::new();
        if let Some(t) = &self.token {
            parts.push(format!("token={}", enc(t)));
        }
        if let Some(s) = &self.serial {
            parts.push(format!("serial={}", enc(s)));
        }
        if let Some(s) = self.slot_id {
            parts.push(format!("slot-id={s}"));
        }
        if let Some(o) = &self.object {
            parts.push(format!("object={}", enc(o)));
        }
        if let Some(id) = &self.id {
            parts.push(format!("id={}", pct(id)));
        }
        parts.join(";")
    }

    fn describe(&self) -> String {
        let mut d = Vec::new();
        if let Some(o) = &self.object {
            d.push(format!("object={o}"));
        }
        if let Some(id) = &self.id {
            d.push(format!("id={}", pct(id)));
        }
        d.join(" ")
    }

    fn read_pin(&self, uri: &KeyUri) -> Result<Option<AuthPin>> {
        match &self.pin {
            None => Ok(None),
            Some(PinFrom::Value(v)) => Ok(Some(AuthPin::from(v.expose().to_owned()))),
            Some(PinFrom::File(path)) => {
                warn_if_shared(path);
                // The file's text (the PIN and whatever follows it) is
                // zeroized when dropped, as the PIN is after the login.
                let text =
                    zeroize::Zeroizing::new(std::fs::read_to_string(path).map_err(|e| {
                        Error::io("cannot read the PIN file (pin-source)", path, &e)
                    })?);
                let pin = text.lines().next().unwrap_or("").trim_end_matches('\r');
                if pin.is_empty() {
                    return Err(bad(
                        uri,
                        format_args!("{}: the PIN file is empty", path.display()),
                    ));
                }
                Ok(Some(AuthPin::from(pin.to_owned())))
            }
        }
    }
}

/// Warns when a PIN file is readable or writable by its group or others.
fn warn_if_shared(path: &Path) {
    #[cfg(unix)]
    {
        use std::os::unix::fs::PermissionsExt;
        if let Ok(m) = std::fs::metadata(path) {
            let mode = m.permissions().mode() & 0o777;
            if mode & 0o077 != 0 {
                tracing::warn!(
                    file = %path.display(),
                    mode = format!("{mode:o}"),
                    "the PIN file (pin-source) is readable or writable by other users; chmod 600 it"
                );
            }
        }
    }
    #[cfg(not(unix))]
    let _ = path;
}

/// %-escapes what RFC 7512 does not allow bare in a path value.
fn pct_text(s: &str) -> String {
    const SET: &percent_encoding::AsciiSet = &percent_encoding::CONTROLS
        .add(b' ')
        .add(b'%')
        .add(b';')
        .add(b'?')
        .add(b'&')
        .add(b'=')
        .add(b'/')
        .add(b'#');
    percent_encoding::utf8_percent_encode(s, SET).to_string()
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

/// An OID, DER-encoded, as CKA_EC_PARAMS holds it.
const P256_OID: &[u8] = &[0x06, 0x08, 0x2a, 0x86, 0x48, 0xce, 0x3d, 0x03, 0x01, 0x07];
const P384_OID: &[u8] = &[0x06, 0x05, 0x2b, 0x81, 0x04, 0x00, 0x22];
const P521_OID: &[u8] = &[0x06, 0x05, 0x2b, 0x81, 0x04, 0x00, 0x23];
const ED25519_OID: &[u8] = &[0x06, 0x03, 0x2b, 0x65, 0x70];
/// PKCS#11 3.0 also names Edwards curves by a PrintableString.
const ED25519_NAME: &[u8] = b"\x13\x0cedwards25519";

/// CKA_EC_POINT: the point itself, or a DER OCTET STRING holding it.
fn ec_point(value: &[u8], raw_len: usize) -> Option<&[u8]> {
    if value.len() == raw_len {
        return Some(value);
    }
    let rest = value.strip_prefix(&[0x04])?;
    let (len, body) = match rest.first()? {
        n @ 0..=0x7f => (usize::from(*n), &rest[1..]),
        0x81 => (usize::from(*rest.get(1)?), rest.get(2..)?),
        0x82 => (
            usize::from(*rest.get(1)?) << 8 | usize::from(*rest.get(2)?),
            rest.get(3..)?,
        ),
        _ => return None,
    };
    (len == body.len() && len == raw_len).then_some(body)
}

/// The public key of the URI's key, read from the token.
fn read_public_key(token: &Token, s: &Session, private: ObjectHandle) -> Result<KeyData> {
    let attrs = s
        .get_attributes(private, &[AttributeType::KeyType])
        .map_err(|e| ck_err("cannot read the key type", e))?;
    let key_type = attrs.iter().find_map(|a| match a {
        Attribute::KeyType(k) => Some(*k),
        _ => None,
    });
    let unsupported = |what: String| {
        Error::new(
            ErrorKind::Unsupported,
            format!("`{}`: {what}", redacted(&token.uri)),
        )
    };
    // EC points live on the public key object.
    let public = token.find(s, ObjectClass::PUBLIC_KEY)?;
    // Two byte-string attributes of an object, in the order asked.
    let read_pair =
        |obj: ObjectHandle, types: [AttributeType; 2]| -> Result<Option<[Vec<u8>; 2]>> {
            let attrs = s.get_attributes(obj, &types).map_err(|e| {
                ck_err(
                    &format!("`{}`: cannot read the public key", redacted(&token.uri)),
                    e,
                )
            })?;
            let mut out: [Option<Vec<u8>>; 2] = [None, None];
            for a in attrs {
                let t = a.attribute_type();
                let (Attribute::Modulus(v)
                | Attribute::PublicExponent(v)
                | Attribute::EcParams(v)
                | Attribute::EcPoint(v)) = a
                else {
                    continue;
                };
                if let Some(i) = types.iter().position(|x| *x == t) {
                    out[i] = Some(v);
                }
            }
            Ok(match out {
                [Some(a), Some(b)] => Some([a, b]),
                _ => None,
            })
        };
    match key_type {
        Some(KeyType::RSA) => {
            let [n, e] = read_pair(
                public.unwrap_or(private),
                [AttributeType::Modulus, AttributeType::PublicExponent],
            )?
            .ok_or_else(|| {
                unsupported("the token does not show the RSA modulus and exponent".into())
            })?;
            let key = RsaPublicKey {
                e: ssh_key::Mpint::from_positive_bytes(&e)
                    .map_err(|err| unsupported(format!("bad RSA exponent: {err}")))?,
                n: ssh_key::Mpint::from_positive_bytes(&n)
                    .map_err(|err| unsupported(format!("bad RSA modulus: {err}")))?,
            };
            Ok(KeyData::Rsa(key))
        }
        Some(KeyType::EC) | Some(KeyType::EC_EDWARDS) => {
            let public = public.ok_or_else(|| {
                Error::new(
                    ErrorKind::NotFound,
                    format!(
                        "`{}`: no public key object {} beside the private key (its point is read from there)",
                        redacted(&token.uri),
                        token.parsed.describe()
                    ),
                )
            })?;
            let [params, point] =
                read_pair(public, [AttributeType::EcParams, AttributeType::EcPoint])?.ok_or_else(
                    || unsupported("the token does not show the EC parameters and point".into()),
                )?;
            let bad_point = || unsupported("the EC point does not fit its curve".into());
            let ecdsa = |curve: EcdsaCurve, len: usize| -> Result<KeyData> {
                let raw = ec_point(&point, len).ok_or_else(bad_point)?;
                let k = EcdsaPublicKey::from_sec1_bytes(raw).map_err(|_| bad_point())?;
                debug_assert_eq!(k.curve(), curve);
                Ok(KeyData::Ecdsa(k))
            };
            match params.as_slice() {
                P256_OID => ecdsa(EcdsaCurve::NistP256, 65),
                P384_OID => ecdsa(EcdsaCurve::NistP384, 97),
                P521_OID => ecdsa(EcdsaCurve::NistP521, 133),
                ED25519_OID | ED25519_NAME => {
                    let raw = ec_point(&point, 32).ok_or_else(bad_point)?;
                    let mut k = [0u8; 32];
                    k.copy_from_slice(raw);
                    Ok(KeyData::Ed25519(Ed25519PublicKey(k)))
                }
                _ => Err(unsupported(
                    "the key's curve is not P-256, P-384, P-521 or Ed25519".into(),
                )),
            }
        }
        _ => Err(unsupported("the key is not RSA, EC or Ed25519".into())),
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
impl KeySigner for Pkcs11Signer {
    fn uri(&self) -> &KeyUri {
        self.inner.key.uri()
    }

    async fn public_key(&self) -> Result<KeyData> {
        Ok(self.inner.key.public_key())
    }

    async fn algorithms(&self) -> Result<Vec<SigAlg>> {
        Ok(self.inner.key.algorithms())
    }

    async fn sign(&self, alg: SigAlg, message: &[u8]) -> Result<Signature> {
        self.inner.key.check(alg)?;
        let inner = self.inner.clone();
        let message = message.to_vec();
        blocking(move || inner.sign_blocking(alg, &message)).await
    }
}

/// Logs the process out of the URI's token (every session loses the
/// login and its private-key handles, as after a token reset): for drills
/// and tests of recovery; signers log in again on their next signature.
pub fn logout(uri: &KeyUri) -> Result<()> {
    let token = Token::open(uri)?;
    let s = token.session(false)?;
    s.logout()
        .map_err(|e| ck_err(&format!("`{}`: cannot log out", redacted(uri)), e))
}

/// Creates a key pair on the token the URI names (non-extractable,
/// sensitive, `object=` as its label, `id=` as its id — a random 16-byte id
/// when the URI has none) and returns the URI of the new key (with the
/// input URI's options).
pub fn generate(uri: &KeyUri, spec: KeySpec) -> Result<KeyUri> {
    let mut parsed = Pkcs11Uri::parse(uri)?;
    if parsed.object.is_none() {
        return Err(bad(uri, "name the new key with `object=LABEL`"));
    }
    if parsed.id.is_none() {
        let mut id = vec![0u8; 16];
        rand_core::RngCore::fill_bytes(&mut rand_core::OsRng, &mut id);
        parsed.id = Some(id);
    }
    if parsed.pin.is_none() {
        return Err(bad(
            uri,
            "creating a key needs the user PIN: add pin-source=FILE",
        ));
    }
    let token = Token::open(uri)?;
    let s = token.session(true)?;
    // Neither the label nor a given id may be taken already.
    let mut by_label = parsed.clone();
    by_label.id = None;
    let mut by_id = parsed.clone();
    by_id.object = None;
    let given_id = Pkcs11Uri::parse(uri)?.id.is_some();
    for class in [ObjectClass::PRIVATE_KEY, ObjectClass::PUBLIC_KEY] {
        let taken = if find_object(&by_label, uri, &s, class)?.is_some() {
            Some(by_label.describe())
        } else if given_id && find_object(&by_id, uri, &s, class)?.is_some() {
            Some(by_id.describe())
        } else {
            None
        };
        if let Some(what) = taken {
            return Err(Error::new(
                ErrorKind::InvalidInput,
                format!(
                    "`{}`: the token already holds a key {what}; pick another",
                    redacted(uri)
                ),
            ));
        }
    }
    let label = parsed.object.clone().unwrap_or_default().into_bytes();
    let id = parsed.id.clone().unwrap_or_default();
    let mut public = vec![
        Attribute::Token(true),
        Attribute::Private(false),
        Attribute::Verify(true),
        Attribute::Label(label.clone()),
        Attribute::Id(id.clone()),
    ];
    let private = vec![
        Attribute::Token(true),
        Attribute::Private(true),
        Attribute::Sensitive(true),
        Attribute::Extractable(false),
        Attribute::Sign(true),
        Attribute::Label(label),
        Attribute::Id(id),
    ];
    let mechanism = match spec {
        KeySpec::Ed25519 => {
            public.push(Attribute::EcParams(ED25519_OID.to_vec()));
            Mechanism::EccEdwardsKeyPairGen
        }
        KeySpec::Ecdsa(bits) => {
            let oid = match bits {
                256 => P256_OID,
                384 => P384_OID,
                _ => P521_OID,
            };
            public.push(Attribute::EcParams(oid.to_vec()));
            Mechanism::EccKeyPairGen
        }
        KeySpec::Rsa(bits) => {
            public.push(Attribute::ModulusBits(u64::from(bits).into()));
            public.push(Attribute::PublicExponent(vec![0x01, 0x00, 0x01]));
            Mechanism::RsaPkcsKeyPairGen
        }
    };
    s.generate_key_pair(&mechanism, &public, &private)
        .map_err(|e| {
            ck_err(
                &format!("`{}`: cannot create the key pair", redacted(uri)),
                e,
            )
        })?;
    let mut out = KeyUri::parse(&format!("{SCHEME}:{}", parsed.location()))?;
    for (n, v) in uri.options() {
        out.set_option(n, v);
    }
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;

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
