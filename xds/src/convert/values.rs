//! Single values of the wire types, read as the YAML forms read their text.

use std::net::{IpAddr, Ipv4Addr, Ipv6Addr};

use control::Prefix;

use crate::proto::authorization::string_match::MatchType;
use crate::proto::authorization::{Address, ServiceAccountMatch, StringMatch};

/// An address of 4 (IPv4) or 16 (IPv6) bytes.
pub(crate) fn ip(bytes: &[u8]) -> Result<IpAddr, String> {
    match bytes.len() {
        4 => Ok(IpAddr::V4(Ipv4Addr::from(
            <[u8; 4]>::try_from(bytes).unwrap_or_default(),
        ))),
        16 => Ok(IpAddr::V6(Ipv6Addr::from(
            <[u8; 16]>::try_from(bytes).unwrap_or_default(),
        ))),
        n => Err(format!("an address has {n} bytes (expected 4 or 16)")),
    }
}

/// A CIDR. The flag is true if host bits were set and cleared (the YAML forms warn then).
pub(crate) fn prefix(address: &Address) -> Result<(Prefix, bool), String> {
    let ip = ip(&address.address)?;
    let max = if ip.is_ipv4() { 32 } else { 128 };
    if address.length > max {
        return Err(format!(
            "`{ip}/{}` is not a valid CIDR: prefix length must be 0-{max}",
            address.length
        ));
    }
    let host = Prefix::host(ip);
    // IPv4 lives in ::ffff:0:0/96 of control's 128-bit space.
    let len = (address.length + 128 - max) as u8;
    let p = Prefix::new(host.bits(), len);
    Ok((p, p.bits() != host.bits()))
}

/// A port: 1-65535, as the YAML forms require.
pub(crate) fn port(value: u32) -> Result<u16, String> {
    match u16::try_from(value) {
        Ok(p) if p != 0 => Ok(p),
        _ => Err(format!("port {value} is out of range (1-65535)")),
    }
}

/// A StringMatch in the text form control reads (`*` presence, `*x` suffix, else `x*` prefix,
/// else exact, after trimming; any other `*` is a literal character, as in the StringMatch).
/// So an exact `cluster.local/ns/*/sa/reader` is that literal text, and a suffix `a*` is `*a*`.
/// Values that this form cannot carry faithfully are refused rather than changed: an exact
/// value that starts or ends with `*` (it would read as a wildcard), a prefix that starts with
/// `*` (it would read as a suffix), and white space that trimming would remove.
pub(crate) fn string_match(m: &StringMatch) -> Result<String, String> {
    let (kind, value) = match &m.match_type {
        None => return Err("no match type (exact, prefix, suffix or presence) is set".into()),
        Some(MatchType::Presence(_)) => return Ok("*".to_string()),
        Some(MatchType::Exact(v)) => ("exact", v),
        Some(MatchType::Prefix(v)) => ("prefix", v),
        Some(MatchType::Suffix(v)) => ("suffix", v),
    };
    let text = match kind {
        // An empty prefix or suffix matches any value; identities never have empty attributes.
        "prefix" | "suffix" if value.is_empty() => return Ok("*".to_string()),
        "prefix" => format!("{value}*"),
        "suffix" => format!("*{value}"),
        _ => value.clone(),
    };
    // The text is faithful if control reads it back as this very match (the encoder is that
    // reading).
    if crate::encode::values::string_match(&text) == *m {
        return Ok(text);
    }
    Err(if text.trim() != text {
        format!(
            "{kind} `{value}` has leading or trailing white space, which the policy model trims"
        )
    } else {
        format!(
            "{kind} `{value}` {} `*`, which the policy model reads as a wildcard there (only a `*` inside a value is literal)",
            if kind == "exact" && !value.starts_with('*') {
                "ends with"
            } else {
                "starts with"
            }
        )
    })
}

/// A service account match as a principal pattern: `*/ns/NS/sa/SA` matches that account in
/// any trust domain, which is what ztunnel's ServiceAccountMatch checks.
pub(crate) fn service_account(m: &ServiceAccountMatch) -> Result<String, String> {
    control::check_dns_label(&m.namespace).map_err(|e| format!("namespace: {e}"))?;
    control::check_dns_subdomain(&m.service_account)
        .map_err(|e| format!("service account: {e}"))?;
    Ok(format!("*/ns/{}/sa/{}", m.namespace, m.service_account))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::proto::Empty;

    fn sm(t: MatchType) -> StringMatch {
        StringMatch {
            match_type: Some(t),
        }
    }

    #[test]
    fn string_matches() {
        assert_eq!(
            string_match(&sm(MatchType::Exact("a".into()))).unwrap(),
            "a"
        );
        assert_eq!(
            string_match(&sm(MatchType::Prefix("a".into()))).unwrap(),
            "a*"
        );
        assert_eq!(
            string_match(&sm(MatchType::Suffix("a".into()))).unwrap(),
            "*a"
        );
        assert_eq!(
            string_match(&sm(MatchType::Presence(Empty {}))).unwrap(),
            "*"
        );
        assert_eq!(
            string_match(&sm(MatchType::Prefix(String::new()))).unwrap(),
            "*"
        );
        assert_eq!(
            string_match(&sm(MatchType::Exact(String::new()))).unwrap(),
            ""
        );
        assert!(string_match(&StringMatch { match_type: None }).is_err());
        // A `*` inside a value is literal text, in the StringMatch as in the policy model.
        assert_eq!(
            string_match(&sm(MatchType::Exact("cluster.local/ns/*/sa/reader".into()))).unwrap(),
            "cluster.local/ns/*/sa/reader"
        );
        assert_eq!(
            string_match(&sm(MatchType::Suffix("a*".into()))).unwrap(),
            "*a*"
        );
        assert_eq!(
            string_match(&sm(MatchType::Suffix("*".into()))).unwrap(),
            "**"
        );
        assert_eq!(
            string_match(&sm(MatchType::Prefix("a*b".into()))).unwrap(),
            "a*b*"
        );
        assert_eq!(
            string_match(&sm(MatchType::Suffix(" a".into()))).unwrap(),
            "* a"
        );
        // A `*` at either end of an exact value, or at the start of a prefix, would be read
        // as a wildcard; trimmed white space would be lost.
        for (t, e) in [
            (MatchType::Exact("a*".into()), "exact `a*` ends with `*`"),
            (MatchType::Exact("*a".into()), "exact `*a` starts with `*`"),
            (MatchType::Exact("*".into()), "exact `*` starts with `*`"),
            (
                MatchType::Prefix("*a".into()),
                "prefix `*a` starts with `*`",
            ),
            (
                MatchType::Suffix("a ".into()),
                "suffix `a ` has leading or trailing white space",
            ),
            (
                MatchType::Exact(" a".into()),
                "exact ` a` has leading or trailing white space",
            ),
            (
                MatchType::Prefix(" a".into()),
                "prefix ` a` has leading or trailing white space",
            ),
        ] {
            let got = string_match(&sm(t)).unwrap_err();
            assert!(got.starts_with(e), "{e}\n{got}");
        }
    }

    #[test]
    fn prefixes() {
        let a = |b: &[u8], l| Address {
            address: b.to_vec(),
            length: l,
        };
        let (p, fixed) = prefix(&a(&[10, 0, 0, 0], 8)).unwrap();
        assert_eq!((p.to_string(), fixed), ("10.0.0.0/8".to_string(), false));
        let (p, fixed) = prefix(&a(&[10, 1, 2, 3], 8)).unwrap();
        assert_eq!((p.to_string(), fixed), ("10.0.0.0/8".to_string(), true));
        let mut v6 = [0u8; 16];
        v6[..4].copy_from_slice(&[0x20, 0x01, 0x0d, 0xb8]);
        let (p, _) = prefix(&a(&v6, 32)).unwrap();
        assert_eq!(p.to_string(), "2001:db8::/32");
        assert_eq!(
            prefix(&a(&[10, 0, 0, 0], 33)).unwrap_err(),
            "`10.0.0.0/33` is not a valid CIDR: prefix length must be 0-32"
        );
        assert!(prefix(&a(&v6, 129)).is_err());
        assert_eq!(
            prefix(&a(&[1, 2, 3], 8)).unwrap_err(),
            "an address has 3 bytes (expected 4 or 16)"
        );
    }

    #[test]
    fn ports() {
        assert_eq!(port(1), Ok(1));
        assert_eq!(port(65535), Ok(65535));
        assert_eq!(port(0).unwrap_err(), "port 0 is out of range (1-65535)");
        assert_eq!(
            port(65536).unwrap_err(),
            "port 65536 is out of range (1-65535)"
        );
    }

    #[test]
    fn service_accounts() {
        let m = |ns: &str, sa: &str| ServiceAccountMatch {
            namespace: ns.into(),
            service_account: sa.into(),
        };
        assert_eq!(
            service_account(&m("ns1", "sa1")).unwrap(),
            "*/ns/ns1/sa/sa1"
        );
        assert!(service_account(&m("ns/1", "sa")).is_err());
        assert!(service_account(&m("ns", "*")).is_err());
    }
}
