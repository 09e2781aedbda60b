//! The client's address: the TCP peer, or, when the peer is a trusted
//! proxy, the rightmost address of `Forwarded` (else `X-Forwarded-For`)
//! that is not a trusted proxy. From any other peer the headers are
//! ignored: a client cannot choose the address it is limited by.

use std::net::IpAddr;

use axum::http::HeaderMap;
use ipnet::IpNet;

/// The client's address as `trusted` proxies report it.
pub(crate) fn client_ip(peer: IpAddr, headers: &HeaderMap, trusted: &[IpNet]) -> IpAddr {
    let is_trusted = |ip: &IpAddr| trusted.iter().any(|n| n.contains(ip));
    if !is_trusted(&peer) {
        return peer;
    }
    let hops = forwarded_for(headers);
    let mut current = peer;
    for hop in hops.iter().rev() {
        match parse_hop(hop) {
            Some(ip) => {
                current = ip;
                if !is_trusted(&ip) {
                    return ip;
                }
            }
            // `unknown` or an obfuscated name, written by a trusted proxy:
            // the last address known.
            None => return current,
        }
    }
    current
}

/// The rate-limit key of an address: IPv4 as it is, IPv6 per /64 (one
/// host usually holds a whole /64).
pub(crate) fn bucket(ip: IpAddr) -> String {
    match ip {
        IpAddr::V4(v4) => v4.to_string(),
        IpAddr::V6(v6) => match v6.to_ipv4_mapped() {
            Some(v4) => v4.to_string(),
            None => {
                let s = v6.segments();
                format!("{:x}:{:x}:{:x}:{:x}::/64", s[0], s[1], s[2], s[3])
            }
        },
    }
}

/// The `for=` values of `Forwarded` (RFC 7239), else the entries of
/// `X-Forwarded-For`, leftmost first, across every header line.
fn forwarded_for(headers: &HeaderMap) -> Vec<String> {
    let lines = |name: &str| {
        headers
            .get_all(name)
            .iter()
            .filter_map(|v| v.to_str().ok().map(str::to_owned))
            .collect::<Vec<_>>()
    };
    let forwarded = lines("forwarded");
    if !forwarded.is_empty() {
        return forwarded
            .iter()
            .flat_map(|l| l.split(','))
            .filter_map(|element| {
                element.split(';').find_map(|pair| {
                    let (k, v) = pair.trim().split_once('=')?;
                    k.trim()
                        .eq_ignore_ascii_case("for")
                        .then(|| v.trim().trim_matches('"').to_owned())
                })
            })
            .collect();
    }
    lines("x-forwarded-for")
        .iter()
        .flat_map(|l| l.split(','))
        .map(|h| h.trim().to_owned())
        .filter(|h| !h.is_empty())
        .collect()
}

/// An address, with or without a port (`[v6]:port`, `v4:port`).
fn parse_hop(hop: &str) -> Option<IpAddr> {
    if let Ok(ip) = hop.parse() {
        return Some(ip);
    }
    if let Some(rest) = hop.strip_prefix('[') {
        return rest.split_once(']').and_then(|(ip, _)| ip.parse().ok());
    }
    hop.rsplit_once(':').and_then(|(ip, _)| ip.parse().ok())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn headers(pairs: &[(&str, &str)]) -> HeaderMap {
        let mut h = HeaderMap::new();
        for (k, v) in pairs {
            h.append(
                axum::http::HeaderName::from_bytes(k.as_bytes()).unwrap(),
                v.parse().unwrap(),
            );
        }
        h
    }

    #[test]
    fn forwarding_headers_only_from_trusted_proxies() {
        let proxies: Vec<IpNet> = vec!["10.0.0.0/8".parse().unwrap()];
        let lb: IpAddr = "10.1.2.3".parse().unwrap();
        let stranger: IpAddr = "198.51.100.7".parse().unwrap();
        let xff = headers(&[("x-forwarded-for", "1.2.3.4, 203.0.113.9, 10.9.9.9")]);
        // From a trusted proxy: the rightmost hop that is not a proxy (the
        // client's own claim, 1.2.3.4, is not believed).
        assert_eq!(
            client_ip(lb, &xff, &proxies),
            "203.0.113.9".parse::<IpAddr>().unwrap()
        );
        // From anyone else: the peer.
        assert_eq!(client_ip(stranger, &xff, &proxies), stranger);
        assert_eq!(client_ip(lb, &xff, &[]), lb);
        // Forwarded wins over X-Forwarded-For; ports and brackets.
        let fwd = headers(&[
            (
                "forwarded",
                "for=192.0.2.60;proto=https, for=\"[2001:db8::1]:4711\"",
            ),
            ("x-forwarded-for", "5.5.5.5"),
        ]);
        assert_eq!(
            client_ip(lb, &fwd, &proxies),
            "2001:db8::1".parse::<IpAddr>().unwrap()
        );
        let port = headers(&[("x-forwarded-for", "203.0.113.9:5555")]);
        assert_eq!(
            client_ip(lb, &port, &proxies),
            "203.0.113.9".parse::<IpAddr>().unwrap()
        );
        // `unknown` from a trusted proxy: the last address known.
        let unknown = headers(&[("forwarded", "for=unknown")]);
        assert_eq!(client_ip(lb, &unknown, &proxies), lb);
        // No header: the proxy itself.
        assert_eq!(client_ip(lb, &HeaderMap::new(), &proxies), lb);
    }

    #[test]
    fn ipv6_clients_share_their_64() {
        let a = bucket("2001:db8:1:2:aaaa::1".parse().unwrap());
        let b = bucket("2001:db8:1:2:bbbb::9".parse().unwrap());
        assert_eq!(a, b);
        assert_ne!(a, bucket("2001:db8:1:3::1".parse().unwrap()));
        assert_eq!(bucket("::ffff:192.0.2.1".parse().unwrap()), "192.0.2.1");
        assert_eq!(bucket("192.0.2.1".parse().unwrap()), "192.0.2.1");
    }
}
