//! Classification of TLS versions and cipher suites, shared by the kernel and user space.

use super::weak_table::{WEAK_00, WEAK_C0};

/// Weak classes of cipher suites: one bit each in [`weak_classes`] and
/// [`super::ClientHello::weak_offered`]. Derived from the IANA registry attributes
/// (key exchange, authentication, cipher, mode, MAC, export).
pub mod weak {
    /// CBC-mode block cipher with an HMAC-SHA1 record MAC (Lucky13-class, no AEAD).
    pub const CBC_SHA1: u32 = 1 << 0;
    /// Static RSA key transport (no forward secrecy), including RSA_PSK.
    pub const RSA_KX: u32 = 1 << 1;
    /// Triple DES (Sweet32).
    pub const TDES: u32 = 1 << 2;
    /// RC4.
    pub const RC4: u32 = 1 << 3;
    /// No encryption (NULL cipher, including TLS 1.3 integrity-only suites).
    pub const NULL: u32 = 1 << 4;
    /// Export-grade suites.
    pub const EXPORT: u32 = 1 << 5;
    /// Anonymous (unauthenticated) key exchange: DH_anon, ECDH_anon.
    pub const ANON: u32 = 1 << 6;
    /// Single DES (56 or 40 bits).
    pub const DES: u32 = 1 << 7;
}

/// TLS_FALLBACK_SCSV (RFC 7507): a client retrying with a lower version.
pub const FALLBACK_SCSV: u16 = 0x5600;
/// TLS_EMPTY_RENEGOTIATION_INFO_SCSV (RFC 5746).
pub const RENEGOTIATION_SCSV: u16 = 0x00ff;

/// Protocol versions as they appear on the wire.
pub mod versions {
    pub const SSL3: u16 = 0x0300;
    pub const TLS10: u16 = 0x0301;
    pub const TLS11: u16 = 0x0302;
    pub const TLS12: u16 = 0x0303;
    pub const TLS13: u16 = 0x0304;
}

/// GREASE values (RFC 8701): 0x0A0A, 0x1A1A, ..., 0xFAFA. Ignored in versions, suites,
/// extensions and groups.
#[inline(always)]
pub const fn is_grease(v: u16) -> bool {
    (v & 0x0f0f) == 0x0a0a && (v >> 8) == (v & 0xff)
}

/// Weak-class bits ([`weak`]) of one cipher suite; 0 for strong, unknown, GREASE and
/// signalling values. Usable in the kernel: two 256-byte tables (read-only data) and a compare.
#[inline(always)]
pub fn weak_classes(id: u16) -> u32 {
    let lo = (id & 0xff) as usize;
    match id >> 8 {
        0x00 => WEAK_00[lo] as u32,
        0xc0 => WEAK_C0[lo] as u32,
        // TLS_RSA_PSK_WITH_CHACHA20_POLY1305_SHA256: the one weak suite outside both pages.
        0xcc if lo == 0xae => weak::RSA_KX,
        _ => 0,
    }
}

/// Display name of a protocol version.
pub fn version_name(v: u16) -> &'static str {
    match v {
        0x0002 => "SSL 2.0",
        versions::SSL3 => "SSL 3.0",
        versions::TLS10 => "TLS 1.0",
        versions::TLS11 => "TLS 1.1",
        versions::TLS12 => "TLS 1.2",
        versions::TLS13 => "TLS 1.3",
        0x7f00..=0x7fff => "TLS 1.3 draft",
        0xfeff => "DTLS 1.0",
        0xfefd => "DTLS 1.2",
        0xfefc => "DTLS 1.3",
        0 => "none",
        _ if is_grease(v) => "GREASE",
        _ => "unknown",
    }
}

/// IANA name of a cipher suite ("GREASE" for GREASE values, "unknown" otherwise).
#[cfg(not(target_arch = "bpf"))]
pub fn cipher_name(id: u16) -> &'static str {
    let names = super::names::CIPHER_NAMES;
    match names.binary_search_by_key(&id, |&(i, _)| i) {
        Ok(i) => names[i].1,
        Err(_) if is_grease(id) => "GREASE",
        Err(_) => "unknown",
    }
}

/// Names of the bits set in a [`weak`] mask, for logs and reports.
#[cfg(not(target_arch = "bpf"))]
pub fn weak_class_names(mask: u32) -> impl Iterator<Item = &'static str> {
    const NAMES: [&str; 8] = [
        "CBC-SHA1", "RSA-KX", "3DES", "RC4", "NULL", "EXPORT", "ANON", "DES",
    ];
    (0..8)
        .filter(move |b| mask & (1 << b) != 0)
        .map(|b| NAMES[b])
}

/// Named groups worth recognising in posture reports.
pub mod groups {
    pub const X25519: u16 = 0x001d;
    pub const SECP256R1: u16 = 0x0017;
    pub const SECP384R1: u16 = 0x0018;
    /// Post-quantum hybrids (draft-kwiatkowski-tls-ecdhe-mlkem).
    pub const X25519MLKEM768: u16 = 0x11ec;
    pub const SECP256R1MLKEM768: u16 = 0x11eb;
    pub const SECP384R1MLKEM1024: u16 = 0x11ed;
    /// Pre-standard Kyber hybrid (Chrome 124–130).
    pub const X25519KYBER768_DRAFT00: u16 = 0x6399;

    /// Whether a group is a post-quantum hybrid.
    #[inline(always)]
    pub const fn is_post_quantum(g: u16) -> bool {
        matches!(
            g,
            X25519MLKEM768 | SECP256R1MLKEM768 | SECP384R1MLKEM1024 | X25519KYBER768_DRAFT00
        ) || (g >= 0x0200 && g <= 0x0202)
    }
}
