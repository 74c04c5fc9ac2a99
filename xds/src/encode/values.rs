//! Single values of control's model in the wire forms, read back by `convert/values.rs` as the
//! same values.

use std::net::IpAddr;

use control::{HostMatch, Prefix};

use crate::proto::Empty;
use crate::proto::authorization::string_match::MatchType;
use crate::proto::authorization::{Address, StringMatch};

/// An address: 4 bytes (IPv4) or 16 (IPv6).
pub(crate) fn ip(ip: IpAddr) -> Vec<u8> {
    match ip {
        IpAddr::V4(v4) => v4.octets().to_vec(),
        IpAddr::V6(v6) => v6.octets().to_vec(),
    }
}

/// A prefix of control's IPv4-mapped space: IPv4 (4 bytes) where it lies in `::ffff:0:0/96`,
/// else IPv6 (16 bytes).
pub(crate) fn cidr(p: &Prefix) -> Address {
    let len = u32::from(p.prefix_len());
    if len >= 96 && p.bits() >> 32 == 0xffff {
        Address {
            address: ((p.bits() & 0xffff_ffff) as u32).to_be_bytes().to_vec(),
            length: len - 96,
        }
    } else {
        Address {
            address: p.bits().to_be_bytes().to_vec(),
            length: len,
        }
    }
}

/// A condition value of `source.ip` / `destination.ip` (an address or a CIDR), read as the
/// compiler reads it.
pub(crate) fn cidr_text(text: &str) -> Result<Address, String> {
    match control::parse_host(text.trim()) {
        Ok((HostMatch::Prefix(p), _)) => Ok(cidr(&p)),
        _ => Err(format!("`{text}` is not an IP address or CIDR")),
    }
}

/// A `destination.port` condition value.
pub(crate) fn port_text(text: &str) -> Result<u32, String> {
    match text.trim().parse::<u16>() {
        Ok(p) if p != 0 => Ok(u32::from(p)),
        _ => Err(format!("`{text}` is not a port (1-65535)")),
    }
}

/// A principal or namespace pattern as control's compiler reads it, after trimming: `*` is
/// presence, a leading `*` a suffix match, else a trailing `*` a prefix match, else exact. Only
/// that one `*` is a wildcard: any other `*` is a literal character, in control as in ztunnel's
/// StringMatch (which compares exact, prefix and suffix values literally), so it is sent as
/// written, for example `cluster.local/ns/*/sa/reader` as an exact match of that text and
/// `*a*` as a suffix match of `a*`. Every pattern therefore has a wire form; `convert` reads
/// each of these back as the same text (`convert/values.rs`).
pub(crate) fn string_match(text: &str) -> StringMatch {
    let t = text.trim();
    let kind = if t == "*" {
        MatchType::Presence(Empty {})
    } else if let Some(s) = t.strip_prefix('*') {
        MatchType::Suffix(s.to_string())
    } else if let Some(p) = t.strip_suffix('*') {
        MatchType::Prefix(p.to_string())
    } else {
        MatchType::Exact(t.to_string())
    };
    StringMatch {
        match_type: Some(kind),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn kind(text: &str) -> MatchType {
        string_match(text).match_type.unwrap()
    }

    #[test]
    fn string_patterns() {
        assert_eq!(kind("*"), MatchType::Presence(Empty {}));
        assert_eq!(kind(" a* "), MatchType::Prefix("a".into()));
        assert_eq!(kind("*/sa/x"), MatchType::Suffix("/sa/x".into()));
        assert_eq!(kind("ns1"), MatchType::Exact("ns1".into()));
        assert_eq!(kind(""), MatchType::Exact(String::new()));
        // Only the one leading or trailing `*` is a wildcard; any other is literal text.
        assert_eq!(
            kind("cluster.local/ns/*/sa/reader"),
            MatchType::Exact("cluster.local/ns/*/sa/reader".into())
        );
        assert_eq!(kind("*a*"), MatchType::Suffix("a*".into()));
        assert_eq!(kind("**"), MatchType::Suffix("*".into()));
        assert_eq!(kind("a*b*"), MatchType::Prefix("a*b".into()));
        // White space inside is kept, as the compiler keeps it.
        assert_eq!(kind("* a"), MatchType::Suffix(" a".into()));
        assert_eq!(kind("a *"), MatchType::Prefix("a ".into()));
    }

    #[test]
    fn prefixes_take_the_family_they_are_written_in() {
        let p = |t: &str| match control::parse_host(t).unwrap().0 {
            HostMatch::Prefix(p) => p,
            other => panic!("{other:?}"),
        };
        let a = cidr(&p("10.1.0.0/16"));
        assert_eq!((a.address, a.length), (vec![10, 1, 0, 0], 16));
        let a = cidr(&p("2001:db8::/32"));
        assert_eq!((a.address.len(), a.length), (16, 32));
        let a = cidr(&p("::/0"));
        assert_eq!((a.address.len(), a.length), (16, 0));
        assert_eq!(cidr_text(" 10.0.0.1 ").unwrap().length, 32);
        assert!(cidr_text("example.com").is_err());
        assert_eq!(port_text("8080"), Ok(8080));
        assert!(port_text("0").is_err());
    }
}
