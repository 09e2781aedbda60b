//! Endpoint filters: which of the addresses a resolver's hostname resolves
//! to may be used, in the syntax of Cloud EKM's `endpointFilter` (Service
//! Directory filters) restricted to what applies without Service
//! Directory: clauses `FIELD OP VALUE` joined by `AND`, with `FIELD` one of
//! `address` and `port` and `OP` one of `=`, `!=`, `<`, `>`, `<=`, `>=`.
//!
//! ```text
//! address>=10.20.0.0 AND address<=10.20.255.255 AND port=8443
//! ```

use std::cmp::Ordering;
use std::net::{IpAddr, SocketAddr};

use sshca_signer::{Error, ErrorKind, Result};

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Op {
    Eq,
    Ne,
    Lt,
    Gt,
    Le,
    Ge,
}

impl Op {
    fn holds(self, o: Ordering) -> bool {
        match self {
            Op::Eq => o == Ordering::Equal,
            Op::Ne => o != Ordering::Equal,
            Op::Lt => o == Ordering::Less,
            Op::Gt => o == Ordering::Greater,
            Op::Le => o != Ordering::Greater,
            Op::Ge => o != Ordering::Less,
        }
    }
}

#[derive(Debug, Clone, PartialEq, Eq)]
enum Clause {
    Address(Op, IpAddr),
    Port(Op, u16),
}

/// A parsed endpoint filter; every clause must hold.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct EndpointFilter {
    text: String,
    clauses: Vec<Clause>,
}

impl std::fmt::Display for EndpointFilter {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(&self.text)
    }
}

fn bad(filter: &str, why: impl std::fmt::Display) -> Error {
    Error::new(
        ErrorKind::InvalidInput,
        format!("endpoint filter {filter:?}: {why}"),
    )
}

impl EndpointFilter {
    /// Parses a filter.
    pub fn parse(text: &str) -> Result<Self> {
        let mut clauses = Vec::new();
        for part in text.split(" AND ") {
            let part = part.trim();
            if part.is_empty() {
                return Err(bad(text, "an empty clause"));
            }
            if part.contains(" OR ") || part.starts_with("NOT ") {
                return Err(bad(
                    text,
                    "only clauses joined by AND are supported (no OR, NOT)",
                ));
            }
            let at = part
                .find(['=', '!', '<', '>'])
                .ok_or_else(|| bad(text, format!("`{part}` is not FIELD OP VALUE")))?;
            let (field, rest) = part.split_at(at);
            let (op, value) = [
                ("!=", Op::Ne),
                ("<=", Op::Le),
                (">=", Op::Ge),
                ("=", Op::Eq),
                ("<", Op::Lt),
                (">", Op::Gt),
            ]
            .iter()
            .find_map(|(s, op)| rest.strip_prefix(s).map(|v| (*op, v)))
            .ok_or_else(|| bad(text, format!("`{part}` has no operator")))?;
            let value = value.trim().trim_matches('"');
            let clause = match field.trim() {
                "address" => Clause::Address(
                    op,
                    value
                        .parse()
                        .map_err(|_| bad(text, format!("`{value}` is not an IP address")))?,
                ),
                "port" => Clause::Port(
                    op,
                    value
                        .parse()
                        .map_err(|_| bad(text, format!("`{value}` is not a port number")))?,
                ),
                other => {
                    return Err(bad(
                        text,
                        format!("field `{other}`: only address and port can be filtered on"),
                    ))
                }
            };
            clauses.push(clause);
        }
        Ok(Self {
            text: text.to_string(),
            clauses,
        })
    }

    /// Whether an endpoint passes every clause.
    pub fn matches(&self, endpoint: &SocketAddr) -> bool {
        self.clauses.iter().all(|c| match c {
            Clause::Address(op, ip) => {
                let addr = endpoint.ip().to_canonical();
                // Addresses of different families never compare.
                if addr.is_ipv4() != ip.is_ipv4() {
                    return *op == Op::Ne;
                }
                op.holds(addr.cmp(ip))
            }
            Clause::Port(op, p) => op.holds(endpoint.port().cmp(p)),
        })
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]
    use super::*;

    fn addr(s: &str) -> SocketAddr {
        s.parse().unwrap()
    }

    #[test]
    fn filters_addresses_and_ports() {
        let f =
            EndpointFilter::parse("address>=10.20.0.0 AND address<=10.20.255.255 AND port=8443")
                .unwrap();
        assert!(f.matches(&addr("10.20.3.4:8443")));
        assert!(!f.matches(&addr("10.21.0.1:8443")));
        assert!(!f.matches(&addr("10.20.3.4:443")));
        assert!(!f.matches(&addr("[::1]:8443")));
        let f = EndpointFilter::parse("address!=\"127.0.0.2\"").unwrap();
        assert!(f.matches(&addr("127.0.0.1:1")));
        assert!(!f.matches(&addr("127.0.0.2:1")));
        assert!(f.matches(&addr("[::1]:1")));
        let f = EndpointFilter::parse("port>8080").unwrap();
        assert!(f.matches(&addr("[::1]:8081")));
        assert!(!f.matches(&addr("[::1]:8080")));
    }

    #[test]
    fn bad_filters_name_the_problem() {
        for (f, want) in [
            ("", "empty clause"),
            ("address", "not FIELD OP VALUE"),
            ("address=x", "not an IP address"),
            ("port=70000", "not a port number"),
            ("name=x", "only address and port"),
            ("port=1 OR port=2", "no OR"),
            ("port=1 AND ", "empty clause"),
        ] {
            let e = EndpointFilter::parse(f).unwrap_err().to_string();
            assert!(e.contains(want), "{f}: {e}");
        }
    }
}
