//! Identity templates in policies: `{identity}`, `{claims.NAME}` and
//! `{webhook.NAME.FIELD}` in principals, key ids and extension values,
//! filled from the requester's credential and what the policy's webhooks
//! answered (pure: the caller supplies the claims it verified; a
//! webhook's field is the claim named `webhook.NAME.FIELD`).
//!
//! A list claim expands an entry into one value per item (several
//! placeholders: every combination, at most [`MAX_EXPANSION`]). A value
//! taken from a credential must be a non-empty, printable string; in
//! principals it must also be free of OpenSSH's pattern characters, so a
//! claim can never widen what a policy allows.

use std::collections::BTreeMap;

use crate::{Error, Result};

/// Characters OpenSSH gives a meaning in principal patterns and lists.
pub const PATTERN_CHARS: &str = "*?!,";

/// A claim of the requester's credential, as templates read it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Claim {
    /// A string.
    Text(String),
    /// A list of strings.
    List(Vec<String>),
    /// Anything else; the text names its kind (`a number`, `an object`, …)
    /// for the error a template using it gets.
    Other(&'static str),
}

/// The claims of a credential by name.
pub type Claims = BTreeMap<String, Claim>;

/// Most values one template entry may expand to.
pub const MAX_EXPANSION: usize = 256;

/// One piece of a template.
#[derive(Debug, Clone, PartialEq, Eq)]
enum Part<'a> {
    Literal(&'a str),
    Identity,
    Claim(&'a str),
    /// Another `{name}` (lenient mode): filled from the caller's variables,
    /// kept as written when unknown.
    Var(&'a str),
}

/// The prefix of the claims that hold webhooks' answers
/// (`webhook.NAME.FIELD`); a credential's own claims never use it.
pub const WEBHOOK_PREFIX: &str = "webhook.";

/// Whether `text` uses an identity placeholder.
pub fn is_template(text: &str) -> bool {
    text.contains("{identity}") || text.contains("{claims.") || text.contains("{webhook.")
}

/// The webhooks whose answers `text` uses (`{webhook.NAME.FIELD}`).
pub fn webhooks_used(text: &str) -> Vec<&str> {
    parse(text, false)
        .unwrap_or_default()
        .into_iter()
        .filter_map(|p| match p {
            Part::Claim(c) => c.strip_prefix(WEBHOOK_PREFIX)?.split('.').next(),
            _ => None,
        })
        .collect()
}

/// Splits `text` into literals and placeholders. `strict`: every `{` must
/// open `{identity}` or `{claims.NAME}` (principal fields); otherwise
/// other braces are literal text (key-id templates have placeholders of
/// their own).
fn parse(text: &str, strict: bool) -> std::result::Result<Vec<Part<'_>>, String> {
    let mut parts = Vec::new();
    let mut rest = text;
    while let Some(open) = rest.find('{') {
        let (lit, tail) = rest.split_at(open);
        let close = tail.find('}');
        let inner = close.map(|c| &tail[1..c]);
        let part = match inner {
            Some("identity") => Some(Part::Identity),
            Some(i) if i.starts_with("claims.") => {
                let name = &i["claims.".len()..];
                if name.is_empty() || name.contains('{') {
                    return Err(format!("`{text}`: `{{{i}}}` names no claim"));
                }
                if name.starts_with(WEBHOOK_PREFIX) {
                    return Err(format!(
                        "`{text}`: a webhook's answer is `{{{name}}}`, not `{{{i}}}`"
                    ));
                }
                Some(Part::Claim(name))
            }
            Some(i) if i.starts_with(WEBHOOK_PREFIX) => {
                let ok = i[WEBHOOK_PREFIX.len()..]
                    .split_once('.')
                    .is_some_and(|(n, f)| !n.is_empty() && !f.is_empty() && !i.contains('{'));
                if !ok {
                    return Err(format!(
                        "`{text}`: `{{{i}}}` is not `{{webhook.NAME.FIELD}}`"
                    ));
                }
                Some(Part::Claim(i))
            }
            _ if strict => {
                return Err(format!(
                    "`{text}`: `{{` opens neither `{{identity}}`, `{{claims.NAME}}` nor \
                     `{{webhook.NAME.FIELD}}`"
                ))
            }
            Some(i) if !i.contains('{') => Some(Part::Var(i)),
            _ => None,
        };
        match (part, close) {
            (Some(p), Some(c)) => {
                if !lit.is_empty() {
                    parts.push(Part::Literal(lit));
                }
                parts.push(p);
                rest = &tail[c + 1..];
            }
            _ => {
                // A literal brace (lenient mode only).
                parts.push(Part::Literal(&rest[..open + 1]));
                rest = &tail[1..];
            }
        }
    }
    if !rest.is_empty() {
        parts.push(Part::Literal(rest));
    }
    if strict
        && parts
            .iter()
            .any(|p| matches!(p, Part::Literal(l) if l.contains('}')))
    {
        return Err(format!("`{text}`: `}}` closes nothing"));
    }
    Ok(parts)
}

/// Checks a principal-field template's placeholders (policy load time).
pub fn check(text: &str) -> std::result::Result<(), String> {
    parse(text, true).map(|_| ())
}

/// Checks a key-id template's identity placeholders (policy load time).
pub fn check_key_id(text: &str) -> std::result::Result<(), String> {
    parse(text, false).map(|_| ())
}

/// What a filled value may hold.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Use {
    /// A principal or principal glob: no pattern characters, no controls.
    Principal,
    /// A key id: no controls; list claims are joined with `,`.
    KeyId,
}

/// The values `text` expands to for `identity` and `claims`; `field` names
/// the policy field in errors. Key-id templates also fill `vars` (other
/// `{name}`s stay as written); every placeholder is filled in one pass, so
/// a filled value is never read as a template.
pub fn expand(
    text: &str,
    field: &str,
    usage: Use,
    identity: Option<&str>,
    claims: &Claims,
    vars: &[(&str, &str)],
) -> Result<Vec<String>> {
    let refuse = |m: String| Error::Template(format!("field `{field}`: {m}"));
    let parts = parse(text, usage == Use::Principal).map_err(refuse)?;
    let mut out = vec![String::new()];
    for part in parts {
        let values: Vec<&str> = match part {
            Part::Literal(l) => vec![l],
            Part::Var(name) => {
                let v = vars.iter().find(|(n, _)| *n == name).map(|(_, v)| *v);
                let written = format!("{{{name}}}");
                let v = v.unwrap_or(&written);
                out.iter_mut().for_each(|o| o.push_str(v));
                continue;
            }
            Part::Identity => vec![identity.ok_or_else(|| {
                refuse("`{identity}` is used but the request has no requester identity".into())
            })?],
            Part::Claim(name) => match claims.get(name) {
                None if name.starts_with(WEBHOOK_PREFIX) => {
                    return Err(refuse(format!(
                        "the answer of webhook `{}` has no field `{}` (used by `{text}`)",
                        name[WEBHOOK_PREFIX.len()..]
                            .split('.')
                            .next()
                            .unwrap_or_default(),
                        name[WEBHOOK_PREFIX.len()..]
                            .split_once('.')
                            .map_or("", |(_, f)| f)
                    )))
                }
                None => {
                    return Err(refuse(format!(
                        "the credential has no claim `{name}` (used by `{text}`)"
                    )))
                }
                Some(Claim::Other(kind)) => {
                    return Err(refuse(format!(
                        "claim `{name}` is {kind}, not a string or a list of strings"
                    )))
                }
                Some(Claim::Text(v)) => vec![v.as_str()],
                Some(Claim::List(items)) if usage == Use::KeyId => {
                    let joined = items.join(",");
                    check_value(name, &joined, usage).map_err(refuse)?;
                    out.iter_mut().for_each(|o| o.push_str(&joined));
                    continue;
                }
                Some(Claim::List(items)) => items.iter().map(String::as_str).collect(),
            },
        };
        if let Part::Claim(name) = part {
            for v in &values {
                check_value(name, v, usage).map_err(refuse)?;
            }
        }
        if let Part::Identity = part {
            for v in &values {
                check_value("identity", v, usage).map_err(refuse)?;
            }
        }
        if out.len() * values.len() > MAX_EXPANSION {
            return Err(refuse(format!(
                "`{text}` expands to more than {MAX_EXPANSION} values"
            )));
        }
        out = out
            .iter()
            .flat_map(|o| values.iter().map(move |v| format!("{o}{v}")))
            .collect();
    }
    out.dedup();
    Ok(out)
}

fn check_value(name: &str, v: &str, usage: Use) -> std::result::Result<(), String> {
    if v.is_empty() && usage == Use::Principal {
        return Err(format!("claim `{name}` holds an empty value"));
    }
    crate::text::check_name(&format!("claim `{name}`"), v).map_err(|e| e.to_string())?;
    if usage == Use::Principal {
        if let Some(c) = v
            .chars()
            .find(|c| PATTERN_CHARS.contains(*c) || "[]{}".contains(*c))
        {
            return Err(format!(
                "claim `{name}` value `{v}` holds `{c}`, which a principal taken from a \
                 credential may not hold (OpenSSH treats it as a pattern)"
            ));
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn claims() -> Claims {
        let mut c = Claims::new();
        c.insert("repo".into(), Claim::Text("acme/web".into()));
        c.insert(
            "groups".into(),
            Claim::List(vec!["ops".into(), "dev".into()]),
        );
        c.insert("n".into(), Claim::Other("a number"));
        c.insert("bad".into(), Claim::Text("a*".into()));
        c
    }

    #[test]
    fn expands_identity_text_and_lists() {
        let c = claims();
        let p = |t: &str| expand(t, "f", Use::Principal, Some("alice"), &c, &[]);
        assert_eq!(p("plain").unwrap(), ["plain"]);
        assert_eq!(p("{identity}").unwrap(), ["alice"]);
        assert_eq!(p("deploy-{claims.repo}").unwrap(), ["deploy-acme/web"]);
        assert_eq!(p("g-{claims.groups}").unwrap(), ["g-ops", "g-dev"]);
        assert_eq!(
            p("{claims.groups}-{claims.groups}").unwrap().len(),
            4,
            "every combination"
        );
        let k = expand(
            "{identity}:{claims.groups}",
            "key_id",
            Use::KeyId,
            Some("a"),
            &c,
            &[],
        );
        assert_eq!(k.unwrap(), ["a:ops,dev"]);
        // Other braces are literal in key ids, errors in principals.
        let k = expand("{requester}-{x", "key_id", Use::KeyId, None, &c, &[]).unwrap();
        assert_eq!(k, ["{requester}-{x"]);
        let k = expand(
            "{policy}/{claims.repo}",
            "key_id",
            Use::KeyId,
            None,
            &c,
            &[("policy", "p")],
        );
        assert_eq!(k.unwrap(), ["p/acme/web"]);
        assert!(check("{requester}").is_err() && check("a}").is_err());
        assert!(check("{claims.}").is_err() && check("x-{claims.sub}").is_ok());
        assert!(check("u-{webhook.hr.login}").is_ok());
        for bad in [
            "{webhook.hr}",
            "{webhook..x}",
            "{webhook.hr.}",
            "{claims.webhook.hr.x}",
        ] {
            assert!(check(bad).is_err(), "{bad}");
        }
        assert_eq!(
            webhooks_used("{webhook.hr.a}-{claims.x}-{webhook.cmdb.b}"),
            ["hr", "cmdb"]
        );
    }

    #[test]
    fn refusals_name_the_claim() {
        let c = claims();
        let p = |t: &str| {
            expand(t, "valid_principals", Use::Principal, None, &c, &[])
                .unwrap_err()
                .to_string()
        };
        assert!(p("{claims.missing}").contains("no claim `missing`"));
        assert!(p("{claims.n}").contains("claim `n` is a number"));
        assert!(p("{claims.bad}").contains("claim `bad` value `a*` holds `*`"));
        assert!(p("{identity}").contains("no requester identity"));
        let mut many = Claims::new();
        many.insert(
            "l".into(),
            Claim::List((0..20).map(|i| i.to_string()).collect()),
        );
        let e = expand(
            "{claims.l}{claims.l}",
            "f",
            Use::Principal,
            None,
            &many,
            &[],
        );
        assert!(e.unwrap_err().to_string().contains("more than 256"));
        let mut ctl = Claims::new();
        ctl.insert("c".into(), Claim::Text("a\nb".into()));
        assert!(expand("{claims.c}", "f", Use::KeyId, None, &ctl, &[]).is_err());
    }
}
