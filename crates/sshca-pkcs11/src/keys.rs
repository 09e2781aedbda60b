//! Keys on the token: reading a key pair's public key (EC points plain or
//! DER-wrapped, RSA modulus and exponent) and generating key pairs.

use super::*;

/// An OID, DER-encoded, as CKA_EC_PARAMS holds it.
pub(crate) const P256_OID: &[u8] = &[0x06, 0x08, 0x2a, 0x86, 0x48, 0xce, 0x3d, 0x03, 0x01, 0x07];
pub(crate) const P384_OID: &[u8] = &[0x06, 0x05, 0x2b, 0x81, 0x04, 0x00, 0x22];
pub(crate) const P521_OID: &[u8] = &[0x06, 0x05, 0x2b, 0x81, 0x04, 0x00, 0x23];
pub(crate) const ED25519_OID: &[u8] = &[0x06, 0x03, 0x2b, 0x65, 0x70];
/// PKCS#11 3.0 also names Edwards curves by a PrintableString.
pub(crate) const ED25519_NAME: &[u8] = b"\x13\x0cedwards25519";

/// CKA_EC_POINT: the point itself, or a DER OCTET STRING holding it.
pub(crate) fn ec_point(value: &[u8], raw_len: usize) -> Option<&[u8]> {
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
pub(crate) fn read_public_key(
    token: &Token,
    s: &Session,
    private: ObjectHandle,
) -> Result<KeyData> {
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
