//! Addresses, prefixes, host names and ports as policies write them.
//!
//! All prefixes live in one 128-bit space with IPv4 mapped into `::ffff:0:0/96`, the same space
//! the kernel's egress trie uses, so an IPv4 `/n` is a `/96+n` here and `::/0` covers both families.

use std::fmt;
use std::net::{IpAddr, Ipv4Addr, Ipv6Addr};

use serde::Serialize;

/// A prefix of the IPv4-mapped 128-bit address space. Bits past `len` are always zero.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct Prefix {
    bits: u128,
    len: u8,
}

const V4_MAPPED: u128 = 0xffff_u128 << 32;

impl Prefix {
    /// Everything, both families.
    pub const ANY: Prefix = Prefix { bits: 0, len: 0 };

    /// The prefix of `addr` of length `len` (0..=128), host bits cleared.
    pub fn new(bits: u128, len: u8) -> Prefix {
        let len = len.min(128);
        Prefix {
            bits: bits & mask(len),
            len,
        }
    }

    /// One address as a full-length prefix.
    pub fn host(ip: IpAddr) -> Prefix {
        Prefix {
            bits: to_bits(ip),
            len: 128,
        }
    }

    pub fn bits(&self) -> u128 {
        self.bits
    }

    /// Number of leading bits that are significant (0..=128).
    pub fn prefix_len(&self) -> u8 {
        self.len
    }

    /// The address in the 16-byte network-order form of kernel keys.
    pub fn addr_bytes(&self) -> [u8; 16] {
        self.bits.to_be_bytes()
    }

    pub fn contains(&self, ip: IpAddr) -> bool {
        to_bits(ip) & mask(self.len) == self.bits
    }

    /// True if `other` lies inside `self` (including equal).
    pub fn covers(&self, other: &Prefix) -> bool {
        self.len <= other.len && other.bits & mask(self.len) == self.bits
    }
}

impl fmt::Display for Prefix {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        if self.len >= 96 && self.bits >> 32 == 0xffff {
            let v4 = Ipv4Addr::from((self.bits & 0xffff_ffff) as u32);
            write!(f, "{v4}/{}", self.len - 96)
        } else {
            write!(f, "{}/{}", Ipv6Addr::from(self.bits), self.len)
        }
    }
}

impl Serialize for Prefix {
    fn serialize<S: serde::Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        s.collect_str(self)
    }
}

/// The mask of the first `len` bits.
pub(crate) fn mask(len: u8) -> u128 {
    if len == 0 {
        0
    } else {
        u128::MAX << (128 - u32::from(len.min(128)))
    }
}

/// An address in the mapped 128-bit space.
pub fn to_bits(ip: IpAddr) -> u128 {
    match ip {
        IpAddr::V4(v4) => V4_MAPPED | u128::from(u32::from(v4)),
        IpAddr::V6(v6) => u128::from(v6),
    }
}

/// Parses `a.b.c.d/n` or `x::y/n` into a prefix. Returns the prefix and whether host bits had
/// to be cleared.
pub(crate) fn parse_cidr(text: &str) -> Result<(Prefix, bool), String> {
    let Some((addr, len)) = text.split_once('/') else {
        return match text.parse::<IpAddr>() {
            Ok(ip) => Ok((Prefix::host(ip), false)),
            Err(_) => Err(format!("`{text}` is not a valid IP address")),
        };
    };
    let ip: IpAddr = addr
        .parse()
        .map_err(|_| format!("`{text}` is not a valid CIDR: `{addr}` is not an IP address"))?;
    let max = if ip.is_ipv4() { 32 } else { 128 };
    let n: u8 =
        len.parse().ok().filter(|n| *n <= max).ok_or_else(|| {
            format!("`{text}` is not a valid CIDR: prefix length must be 0-{max}")
        })?;
    let len128 = if ip.is_ipv4() { n + 96 } else { n };
    let prefix = Prefix::new(to_bits(ip), len128);
    Ok((prefix, prefix.bits != to_bits(ip)))
}

/// A host name (lowercase, no trailing dot) if `text` is a valid one.
pub(crate) fn parse_hostname(text: &str) -> Result<String, String> {
    let name = text.strip_suffix('.').unwrap_or(text).to_ascii_lowercase();
    if name.is_empty() {
        return Err("empty host name".to_string());
    }
    if name.len() > 253 {
        return Err(format!("host name `{text}` is longer than 253 characters"));
    }
    if !name.is_ascii() {
        return Err(format!(
            "`{text}` is not a valid host name: write internationalized names in their A-label (punycode) form, as DNS carries them, e.g. `xn--bcher-kva.example` for `bücher.example`"
        ));
    }
    for label in name.split('.') {
        if label.is_empty() || label.len() > 63 {
            return Err(format!(
                "`{text}` is not a valid host name: each dot-separated label must have 1-63 characters"
            ));
        }
        if !label
            .bytes()
            .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'-')
        {
            return Err(format!(
                "`{text}` is not a valid host name: only letters, digits, `-` and `.` are allowed"
            ));
        }
        if label.starts_with('-') || label.ends_with('-') {
            return Err(format!(
                "`{text}` is not a valid host name: a label may not start or end with `-`"
            ));
        }
    }
    // An all-numeric last label is an IP address typo, not a name (RFC 3696 section 2).
    if name
        .rsplit('.')
        .next()
        .is_some_and(|l| l.bytes().all(|b| b.is_ascii_digit()))
    {
        return Err(format!("`{text}` is not a valid IP address"));
    }
    Ok(name)
}

/// What a `hosts` entry of an EgressPolicy matches.
#[derive(Clone, Debug, PartialEq, Eq, Hash, Serialize)]
#[serde(tag = "type", content = "value", rename_all = "snake_case")]
pub enum HostMatch {
    /// `*`: every address of both families.
    Any,
    /// An address (full-length prefix) or a CIDR.
    Prefix(Prefix),
    /// An exact DNS name, lowercase, without trailing dot.
    Exact(String),
    /// `*.suffix`: any name ending in `.suffix` (stored without the `*.`).
    Suffix(String),
}

/// Parses one EgressPolicy `hosts` entry. The flag is true if a CIDR had host bits set and was
/// normalised. Public so that other sources of policy (xDS) read hosts exactly as YAML does.
pub fn parse_host(text: &str) -> Result<(HostMatch, bool), String> {
    let text = text.trim();
    if text == "*" {
        return Ok((HostMatch::Any, false));
    }
    if let Some(rest) = text.strip_prefix("*.") {
        if rest.contains('*') {
            return Err(format!(
                "`{text}`: a wildcard host must be `*` or start with a single `*.`"
            ));
        }
        return parse_hostname(rest)
            .map(|s| (HostMatch::Suffix(s), false))
            .map_err(|e| format!("in wildcard host `{text}`: {e}"));
    }
    if text.contains('*') {
        return Err(format!(
            "`{text}`: a wildcard host must be `*` or start with `*.`"
        ));
    }
    if text.contains('/') || text.contains(':') || text.parse::<IpAddr>().is_ok() {
        return parse_cidr(text).map(|(p, fixed)| (HostMatch::Prefix(p), fixed));
    }
    parse_hostname(text).map(|s| (HostMatch::Exact(s), false))
}

/// What a `ports` entry matches.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum PortMatch {
    Any,
    Port(u16),
}

/// Parses a port written as a number or a string of digits; `*` when `allow_any`.
pub(crate) fn parse_port(text: &str, allow_any: bool) -> Result<PortMatch, String> {
    let text = text.trim();
    if text == "*" {
        return if allow_any {
            Ok(PortMatch::Any)
        } else {
            Err("`*` is not allowed here; omit the field to match any port".to_string())
        };
    }
    if text.is_empty() || !text.bytes().all(|b| b.is_ascii_digit()) {
        return Err(format!("`{text}` is not a valid port (expected 1-65535)"));
    }
    match text.parse::<u32>() {
        Ok(n) if (1..=65535).contains(&n) => Ok(PortMatch::Port(n as u16)),
        _ => Err(format!("port {text} is out of range (1-65535)")),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn cidr_forms() {
        let (p, fixed) = parse_cidr("10.0.0.0/8").unwrap();
        assert_eq!(p.prefix_len(), 104);
        assert!(!fixed);
        assert!(p.contains("10.1.2.3".parse().unwrap()));
        assert!(!p.contains("11.1.2.3".parse().unwrap()));
        assert_eq!(p.to_string(), "10.0.0.0/8");
        let (p, fixed) = parse_cidr("10.1.2.3/8").unwrap();
        assert!(fixed);
        assert_eq!(p.to_string(), "10.0.0.0/8");
        let (p, _) = parse_cidr("2001:db8::/32").unwrap();
        assert_eq!(p.prefix_len(), 32);
        assert!(p.contains("2001:db8::1".parse().unwrap()));
        assert!(parse_cidr("10.0.0.0/33").is_err());
        assert!(parse_cidr("2001:db8::/129").is_err());
        assert!(parse_cidr("10.0.0/8").is_err());
        assert!(parse_cidr("300.0.0.1").is_err());
        // IPv4-mapped IPv6 and IPv4 are the same space.
        let (p, _) = parse_cidr("::ffff:10.0.0.1").unwrap();
        assert_eq!(p, Prefix::host("10.0.0.1".parse().unwrap()));
    }

    #[test]
    fn any_covers_both_families() {
        assert!(Prefix::ANY.contains("1.2.3.4".parse().unwrap()));
        assert!(Prefix::ANY.contains("::1".parse().unwrap()));
        assert_eq!(mask(128), u128::MAX);
        assert_eq!(mask(0), 0);
    }

    #[test]
    fn internationalized_names_are_taken_in_a_label_form() {
        assert_eq!(
            parse_host("*.XN--Bcher-KVA.example.").unwrap().0,
            HostMatch::Suffix("xn--bcher-kva.example".into())
        );
        let e = parse_host("bücher.example").unwrap_err();
        assert!(
            e.contains("A-label") && e.contains("xn--bcher-kva.example"),
            "{e}"
        );
    }

    #[test]
    fn host_forms() {
        assert_eq!(parse_host("*").unwrap().0, HostMatch::Any);
        assert_eq!(
            parse_host("Example.COM.").unwrap().0,
            HostMatch::Exact("example.com".into())
        );
        assert_eq!(
            parse_host("*.Example.com").unwrap().0,
            HostMatch::Suffix("example.com".into())
        );
        assert!(matches!(
            parse_host("1.2.3.4").unwrap().0,
            HostMatch::Prefix(_)
        ));
        assert!(matches!(
            parse_host("fe80::1").unwrap().0,
            HostMatch::Prefix(_)
        ));
        for bad in [
            "a..b",
            "-a.com",
            "a_b.com",
            "foo*.com",
            "*.*.com",
            "1.2.3.400",
            "10.0.0",
            "fe80::zz",
            "a b",
        ] {
            assert!(parse_host(bad).is_err(), "{bad} should be rejected");
        }
    }

    #[test]
    fn port_forms() {
        assert_eq!(parse_port("443", true).unwrap(), PortMatch::Port(443));
        assert_eq!(parse_port("*", true).unwrap(), PortMatch::Any);
        assert!(parse_port("*", false).is_err());
        assert_eq!(
            parse_port("70000", true).unwrap_err(),
            "port 70000 is out of range (1-65535)"
        );
        assert!(parse_port("0", true).is_err());
        assert!(parse_port("-1", true).is_err());
        assert!(parse_port("80-90", true).is_err());
    }
}
