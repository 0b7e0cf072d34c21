//! What the resolver may connect to. Identities name their own hosts
//! (`did:web:<host>`, a handle's `/.well-known/atproto-did`), so anyone can
//! point the resolver at an address of their choosing; without these checks
//! the service would fetch from its own private network for them.
//!
//! A public target is a DNS name (never an IP literal, in any notation) on
//! HTTPS port 443, whose every resolved address is a public unicast one; the
//! connection is made to the addresses that were checked, so a second DNS
//! answer cannot aim it elsewhere. The test-only `allow_loopback` adds
//! loopback (`localhost`, `127.0.0.0/8`, `::1`) on any port over plain HTTP,
//! and nothing else.

use std::net::{IpAddr, Ipv4Addr, Ipv6Addr};

#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum Refused {
    #[error("host {0:?} is an IP address; only DNS names are resolved")]
    IpLiteral(String),
    #[error("host {0:?} is not a public DNS name")]
    NotPublicName(String),
    #[error("host {0:?} names a port; only 443 is used")]
    Port(String),
    #[error("{host:?} resolves to the non-public address {addr}")]
    Address { host: String, addr: IpAddr },
    #[error("{0:?} resolves to no address")]
    NoAddress(String),
}

impl Refused {
    /// A short label for metrics.
    pub fn reason(&self) -> &'static str {
        match self {
            Refused::IpLiteral(_) => "ip_literal",
            Refused::NotPublicName(_) => "not_public_name",
            Refused::Port(_) => "port",
            Refused::Address { .. } => "private_address",
            Refused::NoAddress(_) => "no_address",
        }
    }
}

/// Where a URL may point, and whether plain HTTP is allowed.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Policy {
    pub allow_loopback: bool,
}

/// A checked `scheme://authority` for one host.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Origin(pub String);

impl Policy {
    /// Checks `authority` (`host` or `host:port`, as it would appear in a
    /// URL) and returns the origin to fetch from.
    pub fn origin(&self, authority: &str) -> Result<Origin, Refused> {
        let (host, port) = split_authority(authority);
        if self.allow_loopback && is_loopback_host(host) {
            return Ok(Origin(format!("http://{authority}")));
        }
        if port.is_some() {
            return Err(Refused::Port(authority.to_owned()));
        }
        check_public_name(host)?;
        Ok(Origin(format!("https://{host}")))
    }

    /// Whether a resolved address may be connected to.
    pub fn address_allowed(&self, addr: IpAddr) -> bool {
        is_public(addr) || (self.allow_loopback && canonical(addr).is_loopback())
    }
}

/// `host[:port]`, with IPv6 brackets kept on the host.
fn split_authority(authority: &str) -> (&str, Option<&str>) {
    if authority.starts_with('[') {
        return match authority.find(']') {
            Some(end) => {
                let rest = &authority[end + 1..];
                (&authority[..=end], rest.strip_prefix(':'))
            }
            None => (authority, None),
        };
    }
    match authority.rsplit_once(':') {
        Some((host, port)) if !host.contains(':') => (host, Some(port)),
        _ => (authority, None),
    }
}

fn is_loopback_host(host: &str) -> bool {
    let host = host.trim_end_matches('.');
    if host.eq_ignore_ascii_case("localhost") {
        return true;
    }
    let bare = host.trim_start_matches('[').trim_end_matches(']');
    bare.parse::<IpAddr>()
        .is_ok_and(|ip| canonical(ip).is_loopback())
}

/// A public DNS name: letters, digits and hyphens in dot-separated labels,
/// at least two labels, a top-level label that is not all digits (so no
/// notation of an IPv4 address passes: `2130706433`, `0x7f.1`, `017.0.0.1`),
/// and not a name reserved for local use.
pub fn check_public_name(host: &str) -> Result<(), Refused> {
    let name = host.strip_suffix('.').unwrap_or(host).to_ascii_lowercase();
    let bare = name.trim_start_matches('[').trim_end_matches(']');
    if bare.parse::<IpAddr>().is_ok() {
        return Err(Refused::IpLiteral(host.to_owned()));
    }
    let labels: Vec<&str> = name.split('.').collect();
    let label_ok = |l: &&str| {
        !l.is_empty()
            && l.len() <= 63
            && !l.starts_with('-')
            && !l.ends_with('-')
            && l.bytes().all(|b| b.is_ascii_alphanumeric() || b == b'-')
    };
    if name.len() > 253 || labels.len() < 2 || !labels.iter().all(label_ok) {
        return Err(Refused::NotPublicName(host.to_owned()));
    }
    let tld = labels[labels.len() - 1];
    if tld.bytes().all(|b| b.is_ascii_digit()) || looks_numeric(&labels) {
        return Err(Refused::IpLiteral(host.to_owned()));
    }
    const LOCAL_SUFFIXES: [&str; 6] = [
        "localhost",
        "local",
        "internal",
        "localdomain",
        "home.arpa",
        "arpa",
    ];
    if LOCAL_SUFFIXES
        .iter()
        .any(|s| name == *s || name.ends_with(&format!(".{s}")))
    {
        return Err(Refused::NotPublicName(host.to_owned()));
    }
    Ok(())
}

/// Labels that `inet_aton` would read as numbers (`0x7f`, `0177`, `1`):
/// such a name is an IPv4 address to the system resolver.
fn looks_numeric(labels: &[&str]) -> bool {
    labels.len() <= 4
        && labels.iter().all(|l| {
            let l = l.to_ascii_lowercase();
            match l.strip_prefix("0x") {
                Some(hex) => hex.bytes().all(|b| b.is_ascii_hexdigit()),
                None => l.bytes().all(|b| b.is_ascii_digit()),
            }
        })
}

/// IPv4-mapped and -compatible IPv6 addresses as the IPv4 address they carry.
fn canonical(addr: IpAddr) -> IpAddr {
    match addr {
        IpAddr::V6(v6) => match v6.to_ipv4_mapped() {
            Some(v4) => IpAddr::V4(v4),
            None => {
                let s = v6.segments();
                // ::a.b.c.d (deprecated "compatible" form), but not :: or ::1.
                if s[..6] == [0; 6] && (s[6] != 0 || s[7] > 1) {
                    IpAddr::V4(Ipv4Addr::new(
                        (s[6] >> 8) as u8,
                        s[6] as u8,
                        (s[7] >> 8) as u8,
                        s[7] as u8,
                    ))
                } else {
                    addr
                }
            }
        },
        v4 => v4,
    }
}

/// A globally routable unicast address: not loopback, private, link-local,
/// shared (CGNAT), multicast, documentation, benchmarking or otherwise
/// reserved, in either family (IPv4 carried in IPv6 counts as IPv4).
pub fn is_public(addr: IpAddr) -> bool {
    match canonical(addr) {
        IpAddr::V4(v4) => is_public_v4(v4),
        IpAddr::V6(v6) => is_public_v6(v6),
    }
}

fn is_public_v4(ip: Ipv4Addr) -> bool {
    let [a, b, c, _] = ip.octets();
    !(a == 0                                   // "this network"
        || a == 10                             // private
        || a == 127                            // loopback
        || (a == 100 && (64..128).contains(&b)) // shared address space (CGNAT)
        || (a == 169 && b == 254)              // link-local
        || (a == 172 && (16..32).contains(&b)) // private
        || (a == 192 && b == 0 && c == 0)      // IETF protocol assignments
        || (a == 192 && b == 0 && c == 2)      // documentation
        || (a == 192 && b == 88 && c == 99)    // 6to4 relay anycast
        || (a == 192 && b == 168)              // private
        || (a == 198 && (18..20).contains(&b)) // benchmarking
        || (a == 198 && b == 51 && c == 100)   // documentation
        || (a == 203 && b == 0 && c == 113)    // documentation
        || a >= 224) // multicast, reserved, broadcast
}

fn is_public_v6(ip: Ipv6Addr) -> bool {
    let s = ip.segments();
    // Only global unicast (2000::/3) is public, minus its special blocks.
    if s[0] & 0xe000 != 0x2000 {
        return false;
    }
    let special = match s[0] {
        // TEREDO, benchmarking, ORCHID... and documentation
        0x2001 => s[1] < 0x0200 || s[1] == 0x0db8,
        // 6to4: embeds any IPv4 address
        0x2002 => true,
        // documentation (2024)
        0x3fff => s[1] < 0x1000,
        _ => false,
    };
    !special
}

#[cfg(test)]
mod tests {
    use super::*;

    const PUBLIC: Policy = Policy {
        allow_loopback: false,
    };
    const TESTS: Policy = Policy {
        allow_loopback: true,
    };

    #[test]
    fn public_names_get_https_on_443() {
        assert_eq!(
            PUBLIC.origin("example.com").unwrap(),
            Origin("https://example.com".into())
        );
        assert_eq!(
            PUBLIC.origin("alice.bsky.social.").unwrap(),
            Origin("https://alice.bsky.social.".into())
        );
    }

    #[test]
    fn refuses_literals_ports_and_local_names() {
        for host in [
            "127.0.0.1",
            "10.0.0.1",
            "2130706433",
            "0x7f000001",
            "0x7f.0.0.1",
            "0177.0.0.1",
            "017700000001",
            "127.1",
            "1.2.3.4",
            "[::1]",
            "[::ffff:127.0.0.1]",
            "[::ffff:7f00:1]",
            "[fe80::1]",
            "[2606:4700::1]",
            "localhost",
            "localhost.",
            "LOCALHOST",
            "foo.localhost",
            "printer.local",
            "db.internal",
            "example.com:8080",
            "example.com:443",
            "127.0.0.1:80",
            "[::1]:80",
            "",
            "single",
            "under_score.com",
            "-bad.com",
            "a..com",
            "x.arpa",
            "1.0.0.127.in-addr.arpa",
        ] {
            assert!(PUBLIC.origin(host).is_err(), "{host} should be refused");
        }
    }

    #[test]
    fn loopback_only_with_the_test_flag() {
        assert_eq!(
            TESTS.origin("127.0.0.1:8080").unwrap(),
            Origin("http://127.0.0.1:8080".into())
        );
        assert!(TESTS.origin("localhost:1").is_ok());
        assert!(TESTS.origin("[::1]:9").is_ok());
        // The flag opens loopback, not private ranges.
        for host in [
            "10.0.0.1",
            "192.168.1.1:80",
            "[fe80::1]:80",
            "169.254.169.254",
        ] {
            assert!(TESTS.origin(host).is_err(), "{host}");
        }
        assert!(TESTS.address_allowed("127.0.0.1".parse().unwrap()));
        assert!(!TESTS.address_allowed("10.1.2.3".parse().unwrap()));
        assert!(!PUBLIC.address_allowed("127.0.0.1".parse().unwrap()));
        assert!(!PUBLIC.address_allowed("::ffff:127.0.0.1".parse().unwrap()));
    }

    #[test]
    fn address_ranges() {
        for private in [
            "0.0.0.0",
            "10.255.0.1",
            "100.64.0.1",
            "100.127.255.255",
            "127.0.0.1",
            "169.254.169.254",
            "172.16.0.1",
            "172.31.255.255",
            "192.0.0.8",
            "192.0.2.1",
            "192.168.0.1",
            "198.18.0.1",
            "224.0.0.1",
            "240.0.0.1",
            "255.255.255.255",
            "::",
            "::1",
            "::ffff:10.0.0.1",
            "::ffff:169.254.169.254",
            "::10.0.0.1",
            "64:ff9b::a00:1",
            "fc00::1",
            "fd12:3456::1",
            "fe80::1",
            "ff02::1",
            "2001:db8::1",
            "2002:a00:1::",
            "2001::1",
        ] {
            let addr: IpAddr = private.parse().unwrap();
            assert!(!is_public(addr), "{private} is not public");
        }
        for public in [
            "1.1.1.1",
            "8.8.8.8",
            "100.63.255.255",
            "100.128.0.0",
            "172.32.0.1",
            "::ffff:8.8.8.8",
            "2606:4700:4700::1111",
            "2a00:1450::1",
        ] {
            let addr: IpAddr = public.parse().unwrap();
            assert!(is_public(addr), "{public} is public");
        }
    }
}
