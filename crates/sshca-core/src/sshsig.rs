//! SSHSIG file signatures (OpenSSH PROTOCOL.sshsig, `ssh-keygen -Y`):
//! checking a signature, and the allowed-signers file that says which key
//! may sign for which identity and namespace. Signing itself goes through
//! a key backend (`SignerExt::sign_sshsig` in sshca-signer); the blob and
//! its armour are ssh-key's [`SshSig`].

use ssh_key::public::KeyData;
use ssh_key::SshSig;

use crate::glob::wildcard_match;
use crate::{Error, Result};

/// Checks that `sig` is a signature of `msg` in `namespace` by the key it
/// carries; returns that key.
pub fn verify<'a>(sig: &'a SshSig, namespace: &str, msg: &[u8]) -> Result<&'a KeyData> {
    if sig.namespace() != namespace {
        return Err(Error::Signature(format!(
            "the signature is for namespace \"{}\", not \"{namespace}\"",
            crate::text::escape(sig.namespace())
        )));
    }
    let data = SshSig::signed_data(namespace, sig.hash_alg(), msg)
        .map_err(|e| Error::Signature(format!("cannot encode the signed data: {e}")))?;
    if !crate::verify::verifies(sig.public_key(), &data, sig.signature()) {
        return Err(Error::Signature(format!(
            "the {} signature does not verify under {}",
            sig.signature().algorithm().as_str(),
            sig.public_key().fingerprint(ssh_key::HashAlg::Sha256)
        )));
    }
    Ok(sig.public_key())
}

/// Decodes an armoured signature (`-----BEGIN SSH SIGNATURE-----`).
pub fn decode(pem: &[u8]) -> Result<SshSig> {
    SshSig::from_pem(pem).map_err(|e| Error::Invalid(format!("not an SSH signature: {e}")))
}

/// One line of an allowed-signers file (ssh-keygen(1), ALLOWED SIGNERS).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct AllowedSigner {
    /// Principal patterns (`*`, `?`, `!` negation), any of which may match.
    pub principals: Vec<String>,
    /// Namespaces the key may sign in (`None`: any).
    pub namespaces: Option<Vec<String>>,
    /// Not valid before this time (unix seconds).
    pub valid_after: Option<u64>,
    /// Not valid from this time on (unix seconds).
    pub valid_before: Option<u64>,
    /// The key.
    pub key: KeyData,
}

impl AllowedSigner {
    /// Whether this line lets `key` sign for `identity` in `namespace` at `now`.
    pub fn allows(&self, identity: &str, key: &KeyData, namespace: &str, now: u64) -> bool {
        &self.key == key
            && principal_matches(&self.principals, identity)
            && self
                .namespaces
                .as_ref()
                .is_none_or(|ns| ns.iter().any(|n| wildcard_match(n, namespace)))
            && self.valid_after.is_none_or(|t| now >= t)
            && self.valid_before.is_none_or(|t| now < t)
    }
}

/// OpenSSH pattern lists: a negated match (`!pattern`) wins over any other.
fn principal_matches(patterns: &[String], identity: &str) -> bool {
    let mut matched = false;
    for p in patterns {
        match p.strip_prefix('!') {
            Some(neg) if wildcard_match(neg, identity) => return false,
            Some(_) => {}
            None if wildcard_match(p, identity) => matched = true,
            None => {}
        }
    }
    matched
}

/// Splits off the next whitespace-separated field; a field may hold
/// double-quoted parts (`namespaces="git,file"`).
fn next_field(s: &str) -> Option<(&str, &str)> {
    let s = s.trim_start();
    if s.is_empty() {
        return None;
    }
    let mut quoted = false;
    for (i, c) in s.char_indices() {
        match c {
            '"' => quoted = !quoted,
            c if c.is_whitespace() && !quoted => return Some((&s[..i], &s[i..])),
            _ => {}
        }
    }
    Some((s, ""))
}

/// Splits `a,b="x,y",c` at the commas outside quotes.
fn split_options(field: &str) -> impl Iterator<Item = &str> {
    let mut parts = Vec::new();
    let (mut start, mut quoted) = (0, false);
    for (i, c) in field.char_indices() {
        match c {
            '"' => quoted = !quoted,
            ',' if !quoted => {
                parts.push(&field[start..i]);
                start = i + 1;
            }
            _ => {}
        }
    }
    parts.push(&field[start..]);
    parts.into_iter()
}

/// Parses an allowed-signers file; errors name the line.
pub fn parse_allowed_signers(text: &str) -> Result<Vec<AllowedSigner>> {
    let mut out = Vec::new();
    for (n, line) in text.lines().enumerate() {
        let err = |m: String| Error::Invalid(format!("allowed signers line {}: {m}", n + 1));
        let line = line.trim();
        if line.is_empty() || line.starts_with('#') {
            continue;
        }
        let (principals, mut rest) = next_field(line).ok_or_else(|| err("empty".into()))?;
        let mut signer = AllowedSigner {
            principals: principals.split(',').map(str::to_owned).collect(),
            namespaces: None,
            valid_after: None,
            valid_before: None,
            key: KeyData::Ed25519(ssh_key::public::Ed25519PublicKey([0; 32])),
        };
        // Options until the field that is a key type.
        loop {
            let (field, after) =
                next_field(rest).ok_or_else(|| err("no public key after the principals".into()))?;
            if field.starts_with("ssh-")
                || field.starts_with("ecdsa-")
                || field.starts_with("sk-")
                || field.starts_with("rsa-")
            {
                let (blob, _comment) =
                    next_field(after).ok_or_else(|| err(format!("{field}: no base64 key")))?;
                let key = ssh_key::PublicKey::from_openssh(&format!("{field} {blob}"))
                    .map_err(|e| err(format!("not a public key: {e}")))?;
                signer.key = key.key_data().clone();
                break;
            }
            for opt in split_options(field).filter(|o| !o.is_empty()) {
                let (name, value) = match opt.split_once('=') {
                    Some((k, v)) => (k, Some(v.trim_matches('"'))),
                    None => (opt, None),
                };
                match (name.to_ascii_lowercase().as_str(), value) {
                    ("cert-authority", None) => {
                        return Err(err(
                            "cert-authority lines (signatures by certificates) are not supported"
                                .into(),
                        ))
                    }
                    ("namespaces", Some(v)) => {
                        signer.namespaces = Some(v.split(',').map(str::to_owned).collect())
                    }
                    ("valid-after", Some(v)) => {
                        signer.valid_after = Some(
                            crate::validity::parse_absolute(v)
                                .map_err(|e| err(format!("valid-after: {e}")))?,
                        )
                    }
                    ("valid-before", Some(v)) => {
                        signer.valid_before = Some(
                            crate::validity::parse_absolute(v)
                                .map_err(|e| err(format!("valid-before: {e}")))?,
                        )
                    }
                    _ => {
                        return Err(err(format!(
                            "unknown option `{}`",
                            crate::text::escape(opt)
                        )))
                    }
                }
            }
            rest = after;
        }
        out.push(signer);
    }
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    const KEY: &str =
        "ssh-ed25519 AAAAC3NzaC1lZDI1NTE5AAAAIH1i9NcBEhwWrvjHucG2W9YoKCOR9B5MEd2beUZ9IPRa";

    #[test]
    fn allowed_signers_lines() {
        let text = format!(
            "# comment\n\nalice@example.com,*@ops.example.com,!mallory@ops.example.com namespaces=\"git,file\" valid-after=\"20200101\" {KEY} alice\n\
             ci {KEY}\n"
        );
        let list = parse_allowed_signers(&text).unwrap();
        assert_eq!(list.len(), 2);
        let key = ssh_key::PublicKey::from_openssh(KEY)
            .unwrap()
            .key_data()
            .clone();
        let a = &list[0];
        assert!(a.allows("alice@example.com", &key, "git", 1_700_000_000));
        assert!(a.allows("bob@ops.example.com", &key, "file", 1_700_000_000));
        assert!(!a.allows("mallory@ops.example.com", &key, "git", 1_700_000_000));
        assert!(!a.allows("alice@example.com", &key, "sshca-krl", 1_700_000_000));
        assert!(!a.allows("alice@example.com", &key, "git", 1_500_000_000));
        assert!(list[1].allows("ci", &key, "anything", 0));
        for (bad, needle) in [
            ("alice", "no public key"),
            ("alice frobnicate ssh-ed25519 AAAA", "unknown option"),
            ("alice cert-authority ssh-ed25519 AAAA", "cert-authority"),
            ("alice ssh-ed25519 AAAA", "not a public key"),
            (
                "alice valid-after=\"yesterday\" ssh-ed25519 AAAA",
                "valid-after",
            ),
        ] {
            let e = parse_allowed_signers(bad).unwrap_err().to_string();
            assert!(e.contains("line 1") && e.contains(needle), "{bad}: {e}");
        }
    }
}
