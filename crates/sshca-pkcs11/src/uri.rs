//! `pkcs11:` URIs (RFC 7512): the token, the key, the module and where
//! the PIN comes from, with the PIN never shown.

use super::*;

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
    pub(crate) pin: Option<PinFrom>,
}

#[derive(Clone, PartialEq, Eq)]
pub(crate) enum PinFrom {
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

pub(crate) fn bad(uri: &KeyUri, what: impl std::fmt::Display) -> Error {
    Error::new(
        ErrorKind::InvalidInput,
        format!("`{}`: {what}", redacted(uri)),
    )
}

/// The URI as it may be shown: `pin-value` replaced.
pub(crate) fn redacted(uri: &KeyUri) -> String {
    let mut u = uri.clone();
    if u.option("pin-value").is_some() {
        u.set_option("pin-value", "REDACTED");
    }
    u.to_string()
}

/// `%XX` for every byte (ids are bytes).
pub(crate) fn pct(bytes: &[u8]) -> String {
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
    pub(crate) fn location(&self) -> String {
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

    pub(crate) fn describe(&self) -> String {
        let mut d = Vec::new();
        if let Some(o) = &self.object {
            d.push(format!("object={o}"));
        }
        if let Some(id) = &self.id {
            d.push(format!("id={}", pct(id)));
        }
        d.join(" ")
    }

    pub(crate) fn read_pin(&self, uri: &KeyUri) -> Result<Option<AuthPin>> {
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
pub(crate) fn warn_if_shared(path: &Path) {
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
pub(crate) fn pct_text(s: &str) -> String {
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
