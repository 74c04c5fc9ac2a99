//! ABI of SNI verdicts: EgressPolicy host names checked against the server name of a governed
//! client's TLS ClientHello (the connection is cut there when the name is not allowed).
//!
//! Names are keyed by a hash taken from the *last* byte backwards, so that one backward pass
//! over a server name yields the key of the whole name and of every `.suffix` in it: the kernel
//! looks up `a.b.example.com`, `.b.example.com`, `.example.com` and `.com` from one walk. An
//! exact host `example.com` is stored under `name_key(b"example.com")`, a wildcard
//! `*.example.com` under `name_key(b".example.com")` (so it never matches `example.com` itself).

use crate::posture::SNI_LEN;

/// Map names.
pub mod map_names {
    /// (slot, subject, port, name key) → `RuleMatch` of the name rules.
    pub const SNI_RULES: &str = "MW_SNI_RULES";
    /// (slot, subject, port, address) → rule id: connections to this address were allowed at
    /// connect only by a DNS-name ALLOW rule, so their SNI must be allowed by name too. A value of
    /// 0 exempts the address on that port (an address rule allows it there).
    pub const SNI_REQUIRED: &str = "MW_SNI_REQUIRED";
}

pub mod program_names {
    /// sk_msg stage that decides a ClientHello's server name.
    pub const MSG_SNI: &str = "mw_tls_msg_sni";
}

/// Entries per generation slot (two slots per map).
pub const MAX_SNI_RULES_PER_SLOT: u32 = 65_536;
pub const MAX_SNI_REQUIRED_PER_SLOT: u32 = 65_536;
/// Labels of a server name whose `.suffix` keys are looked up (deeper names match by their
/// nearest 8 suffixes).
pub const MAX_SUFFIXES: usize = 8;

/// `SNI_RULES` key.
#[repr(C)]
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Hash)]
pub struct SniRuleKey {
    pub subject_id: u32,
    /// 0 = any port.
    pub port: u16,
    pub slot: u8,
    pub _pad: u8,
    pub name: u64,
}

/// `SNI_REQUIRED` key.
#[repr(C)]
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Hash)]
pub struct SniRequiredKey {
    pub subject_id: u32,
    /// 0 = any port.
    pub port: u16,
    pub slot: u8,
    pub _pad: u8,
    /// IPv4-mapped.
    pub addr: [u8; 16],
}

const FNV_OFFSET: u64 = 0xcbf2_9ce4_8422_2325;
const FNV_PRIME: u64 = 0x0100_0000_01b3;

/// Reserved key: "a server name too long to read" (over `SNI_LEN` bytes). Name keys are odd, so
/// no name has it. The compiler stores under it, per subject and port, the DENY rules that name
/// hosts: an overlong name is cut wherever a name could have been denied.
pub const OVERLONG_NAME_KEY: u64 = 0;

#[inline(always)]
fn step(h: u64, byte: u8) -> u64 {
    (h ^ u64::from(byte.to_ascii_lowercase())).wrapping_mul(FNV_PRIME)
}

/// Key of a whole name or of a `.suffix` (ASCII case-insensitive; hashed from the end).
pub fn name_key(name: &[u8]) -> u64 {
    name.iter().rev().fold(FNV_OFFSET, |h, &b| step(h, b)) | 1
}

/// The keys a server name is looked up under: the whole name first, then its `.suffix`es from
/// the longest to the shortest; a trailing dot is ignored. Only the [`MAX_SUFFIXES`] shortest
/// suffixes are kept (wildcards are written short: `*.example.com`), so a wildcard of more than
/// `MAX_SUFFIXES` labels could never match (the compiler warns about such a host).
///
/// `len` > `SNI_LEN` means the name was longer than what was kept: the only key is
/// [`OVERLONG_NAME_KEY`]. The kernel does exactly this, with [`name_span`] and one
/// [`KeyWalk::step`] per byte in a `bpf_loop` callback.
pub fn lookup_keys(bytes: &[u8; SNI_LEN], len: usize, out: &mut [u64; MAX_SUFFIXES + 1]) -> usize {
    match name_span(bytes, len) {
        NameSpan::Overlong => {
            out[0] = OVERLONG_NAME_KEY;
            1
        }
        NameSpan::Bytes(0) => 0,
        NameSpan::Bytes(end) => {
            let mut walk = KeyWalk::new();
            for i in (0..end).rev() {
                walk.step(bytes[i]);
            }
            walk.keys(out)
        }
    }
}

/// What part of a kept server name is hashed.
pub enum NameSpan {
    /// Longer than `SNI_LEN`: not readable.
    Overlong,
    /// Bytes `[0, end)` (a trailing dot dropped; 0 = no name).
    Bytes(usize),
}

#[inline(always)]
pub fn name_span(bytes: &[u8; SNI_LEN], len: usize) -> NameSpan {
    if len > SNI_LEN {
        return NameSpan::Overlong;
    }
    if len > 0 && bytes[(len - 1) & (SNI_LEN - 1)] == b'.' {
        return NameSpan::Bytes(len - 1);
    }
    NameSpan::Bytes(len)
}

/// A backward walk over a name: fed its bytes from the last to the first, it yields the keys of
/// the whole name and of its shortest `.suffix`es.
#[repr(C)]
#[derive(Clone, Copy)]
pub struct KeyWalk {
    h: u64,
    found: u64,
    suffixes: [u64; MAX_SUFFIXES],
}

impl Default for KeyWalk {
    fn default() -> Self {
        Self::new()
    }
}

impl KeyWalk {
    pub const fn new() -> Self {
        KeyWalk {
            h: FNV_OFFSET,
            found: 0,
            suffixes: [0; MAX_SUFFIXES],
        }
    }

    #[inline(always)]
    pub fn step(&mut self, byte: u8) {
        self.h = step(self.h, byte);
        if byte == b'.' && self.found < MAX_SUFFIXES as u64 {
            self.suffixes[(self.found as usize) & (MAX_SUFFIXES - 1)] = self.h | 1;
            self.found += 1;
        }
    }

    /// The keys (whole name, then suffixes longest first); returns how many. Call only after
    /// at least one byte.
    #[inline(always)]
    pub fn keys(&self, out: &mut [u64; MAX_SUFFIXES + 1]) -> usize {
        out[0] = self.h | 1;
        let found = (self.found as usize).min(MAX_SUFFIXES);
        for k in 0..MAX_SUFFIXES {
            if k >= found {
                break;
            }
            out[1 + k] = self.suffixes[(found - 1 - k) & (MAX_SUFFIXES - 1)];
        }
        1 + found
    }
}

/// [`lookup_keys`] for a name held anywhere (user space: `explain`, tests).
pub fn server_name_keys(name: &[u8], out: &mut [u64; MAX_SUFFIXES + 1]) -> usize {
    let mut bytes = [0u8; SNI_LEN];
    let kept = name.len().min(SNI_LEN);
    bytes[..kept].copy_from_slice(&name[..kept]);
    lookup_keys(&bytes, name.len(), out)
}

/// Labels of a wildcard's suffix (`*.b.example.com` → 3): at most [`MAX_SUFFIXES`] can match.
pub fn suffix_labels(suffix: &str) -> usize {
    suffix.split('.').count()
}

#[cfg(feature = "user")]
mod pod {
    use super::*;
    // SAFETY: repr(C), Copy, explicit padding, no pointers.
    unsafe impl aya::Pod for SniRuleKey {}
    unsafe impl aya::Pod for SniRequiredKey {}
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn lookup_keys_are_the_name_then_its_suffixes_longest_first() {
        let mut out = [0; MAX_SUFFIXES + 1];
        let n = server_name_keys(b"A.b.Example.com.", &mut out);
        assert_eq!(n, 4);
        assert_eq!(out[0], name_key(b"a.b.example.com"));
        assert_eq!(out[1], name_key(b".b.example.com"));
        assert_eq!(out[2], name_key(b".example.com"));
        assert_eq!(out[3], name_key(b".com"));
        assert_ne!(name_key(b"example.com"), name_key(b".example.com"));
    }

    #[test]
    fn deep_names_keep_their_shortest_suffixes() {
        let mut out = [0; MAX_SUFFIXES + 1];
        let name = b"a.b.c.d.e.f.g.h.i.j.example.com";
        let n = server_name_keys(name, &mut out);
        assert_eq!(n, MAX_SUFFIXES + 1);
        assert_eq!(out[0], name_key(name));
        assert_eq!(out[1], name_key(b".e.f.g.h.i.j.example.com"));
        assert_eq!(out[MAX_SUFFIXES - 1], name_key(b".example.com"));
        assert_eq!(out[MAX_SUFFIXES], name_key(b".com"));
        assert_eq!(suffix_labels("example.com"), 2);
        assert_eq!(server_name_keys(b"", &mut out), 0);
        assert_eq!(server_name_keys(b"localhost", &mut out), 1);
        let long = [b'a'; SNI_LEN + 1];
        assert_eq!(server_name_keys(&long, &mut out), 1);
        assert_eq!(out[0], OVERLONG_NAME_KEY);
    }
}
