//! Parsing of the buffered ClientHello / ServerHello bodies. Bounded loops, masked reads, and
//! no output field is filled from a part of the message that failed validation.

use super::ciphers::{FALLBACK_SCSV, RENEGOTIATION_SCSV, is_grease, versions, weak_classes};
use super::{Direction, HELLO_BUF, HELLO_CAP, HELLO_MASK, dir_flags, handshake, launder};

/// Bytes of the server name kept.
pub const SNI_CAP: usize = 128;
/// Bytes of the first ALPN protocol kept.
pub const ALPN_CAP: usize = 16;
/// Non-GREASE cipher suites recorded in [`ClientHello::ciphers`].
pub const MAX_CIPHERS: usize = 32;
/// Cipher suites examined (for counting and weak classes).
pub const MAX_CIPHER_SCAN: u32 = 128;
/// Extensions examined per ClientHello (browsers send about 20).
pub const MAX_EXTENSIONS: u32 = 32;
/// Extensions examined per ServerHello (servers send a handful).
pub const MAX_SERVER_EXTENSIONS: u32 = 16;
/// Versions examined in supported_versions.
pub const MAX_VERSIONS: u32 = 16;
/// ALPN protocols counted.
pub const MAX_ALPN_PROTOCOLS: u32 = 16;
/// Key shares recorded.
pub const MAX_KEY_SHARES: usize = 4;
/// Key share entries examined.
pub const MAX_KEY_SHARE_SCAN: u32 = 8;

/// Words of scratch in [`ClientHello`] / [`ServerHello`]: one to launder offsets, two per
/// extension of interest (body offset + 1, length) recorded during the framing walk.
pub const SCRATCH_WORDS: usize = 9;

/// Extension types the parser reads.
pub mod ext {
    pub const SERVER_NAME: u16 = 0;
    pub const SUPPORTED_GROUPS: u16 = 10;
    pub const ALPN: u16 = 16;
    pub const SUPPORTED_VERSIONS: u16 = 43;
    pub const KEY_SHARE: u16 = 51;
    pub const RENEGOTIATION_INFO: u16 = 0xff01;
}

/// [`ClientHello::flags`] / [`ServerHello::flags`].
pub mod hello_flags {
    /// The message does not parse; only `flags` is meaningful (the function returned false).
    pub const MALFORMED: u32 = 1 << 0;
    /// The message was longer than `HELLO_CAP`: fields past the cut are missing.
    pub const TRUNCATED: u32 = 1 << 1;
    /// More than `MAX_EXTENSIONS` extensions (or more than `MAX_VERSIONS` versions): later
    /// ones were not read, so a value may be missing (never invented).
    pub const EXTENSIONS_PARTIAL: u32 = 1 << 2;
    /// More than `MAX_CIPHER_SCAN` suites: `cipher_count` / `weak_offered` cover the first ones.
    pub const CIPHERS_PARTIAL: u32 = 1 << 3;
    /// The server name is longer than `SNI_CAP` (`sni_len` is the full length).
    pub const SNI_TRUNCATED: u32 = 1 << 4;
    /// The first ALPN protocol is longer than `ALPN_CAP` (`alpn_len` is the full length).
    pub const ALPN_TRUNCATED: u32 = 1 << 5;
    /// GREASE values were present (and ignored).
    pub const GREASE: u32 = 1 << 6;
    /// TLS_FALLBACK_SCSV offered (a downgraded retry).
    pub const FALLBACK_SCSV: u32 = 1 << 7;
    /// Secure renegotiation signalled (SCSV or renegotiation_info).
    pub const SECURE_RENEGOTIATION: u32 = 1 << 8;
    /// A compression method other than null offered / selected.
    pub const COMPRESSION: u32 = 1 << 9;
    pub const HAS_SNI: u32 = 1 << 10;
    pub const HAS_ALPN: u32 = 1 << 11;
    pub const HAS_SUPPORTED_VERSIONS: u32 = 1 << 12;
    pub const HAS_KEY_SHARE: u32 = 1 << 13;
    /// An extension type appeared twice (with MALFORMED).
    pub const DUPLICATE_EXTENSION: u32 = 1 << 14;
    /// The message has no extensions block (allowed before TLS 1.3).
    pub const NO_EXTENSIONS: u32 = 1 << 15;
    /// A post-quantum hybrid group among the key shares.
    pub const PQ_KEY_SHARE: u32 = 1 << 16;
    /// Parsed from a HelloRetryRequest.
    pub const HELLO_RETRY: u32 = 1 << 17;
}

/// What a ClientHello offers. 276 bytes; in the kernel it must live in a map value (per-CPU
/// scratch): the parser launders offsets through its `scratch` words.
#[repr(C)]
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct ClientHello {
    pub legacy_version: u16,
    /// Highest non-GREASE version in supported_versions, else `legacy_version` (0: unknown, the
    /// hello was truncated before any supported_versions).
    pub max_supported_version: u16,
    /// Full length of the host name (bytes kept: `min(sni_len, SNI_CAP)`).
    pub sni_len: u16,
    /// Non-GREASE suites offered (counted up to `MAX_CIPHER_SCAN` examined).
    pub cipher_count: u16,
    /// Non-GREASE extensions.
    pub ext_count: u16,
    /// Full length of the first ALPN protocol (bytes kept: `min(alpn_len, ALPN_CAP)`).
    pub alpn_len: u8,
    /// ALPN protocols offered.
    pub alpn_count: u8,
    /// Bit n: version 0x0300 + n offered (n ≤ 4; from supported_versions, else the legacy one).
    pub offered_versions: u8,
    /// Entries in `key_share_groups`.
    pub key_share_count: u8,
    pub _pad0: [u8; 2],
    /// [`hello_flags`].
    pub flags: u32,
    /// Union of [`super::weak_classes`] over the offered suites.
    pub weak_offered: u32,
    /// First non-GREASE key share groups.
    pub key_share_groups: [u16; MAX_KEY_SHARES],
    /// First `MAX_CIPHERS` non-GREASE suites, in offer order.
    pub ciphers: [u16; MAX_CIPHERS],
    pub sni: [u8; SNI_CAP],
    pub alpn_first: [u8; ALPN_CAP],
    /// Scratch words used while parsing (no meaning afterwards).
    pub scratch: [u32; SCRATCH_WORDS],
}

impl ClientHello {
    pub const ZERO: ClientHello = ClientHello {
        legacy_version: 0,
        max_supported_version: 0,
        sni_len: 0,
        cipher_count: 0,
        ext_count: 0,
        alpn_len: 0,
        alpn_count: 0,
        offered_versions: 0,
        key_share_count: 0,
        _pad0: [0; 2],
        flags: 0,
        weak_offered: 0,
        key_share_groups: [0; MAX_KEY_SHARES],
        ciphers: [0; MAX_CIPHERS],
        sni: [0; SNI_CAP],
        alpn_first: [0; ALPN_CAP],
        scratch: [0; SCRATCH_WORDS],
    };

    /// Recorded suites.
    pub fn ciphers(&self) -> &[u16] {
        let n = (self.cipher_count as usize).min(MAX_CIPHERS);
        &self.ciphers[..n]
    }
    /// The kept part of the server name.
    pub fn sni(&self) -> &[u8] {
        &self.sni[..(self.sni_len as usize).min(SNI_CAP)]
    }
    /// The kept part of the first ALPN protocol.
    pub fn alpn(&self) -> &[u8] {
        &self.alpn_first[..(self.alpn_len as usize).min(ALPN_CAP)]
    }
}

/// What a ServerHello (or HelloRetryRequest) selects. 76 bytes; in the kernel it must live in a
/// map value, like [`ClientHello`].
#[repr(C)]
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct ServerHello {
    pub legacy_version: u16,
    /// Negotiated version: supported_versions if present (TLS 1.3), else `legacy_version`.
    pub version: u16,
    pub cipher: u16,
    /// key_share group (TLS 1.3; for a HelloRetryRequest the group asked for), else 0.
    pub key_share_group: u16,
    /// 1 for a HelloRetryRequest.
    pub hello_retry: u8,
    pub compression: u8,
    /// Full length of the selected ALPN protocol (only visible before TLS 1.3).
    pub alpn_len: u8,
    pub _pad0: u8,
    pub ext_count: u16,
    pub _pad1: u16,
    /// [`hello_flags`].
    pub flags: u32,
    /// [`super::weak_classes`] of `cipher`.
    pub weak: u32,
    pub alpn: [u8; ALPN_CAP],
    /// Scratch words used while parsing (no meaning afterwards).
    pub scratch: [u32; SCRATCH_WORDS],
}

impl ServerHello {
    pub const ZERO: ServerHello = ServerHello {
        legacy_version: 0,
        version: 0,
        cipher: 0,
        key_share_group: 0,
        hello_retry: 0,
        compression: 0,
        alpn_len: 0,
        _pad0: 0,
        ext_count: 0,
        _pad1: 0,
        flags: 0,
        weak: 0,
        alpn: [0; ALPN_CAP],
        scratch: [0; SCRATCH_WORDS],
    };

    /// The kept part of the selected ALPN protocol.
    pub fn alpn(&self) -> &[u8] {
        &self.alpn[..(self.alpn_len as usize).min(ALPN_CAP)]
    }
}

/// Masked reads over the hello buffer; callers check offsets against `len` first.
struct Buf<'a> {
    b: &'a [u8; HELLO_BUF],
    /// Scratch word in the caller's map value, for [`launder`].
    cell: *mut u32,
    /// Bytes available.
    len: u32,
    /// Declared body length (≥ `len`).
    msg_len: u32,
    /// The message continues past `len` (truncated at `HELLO_CAP`).
    cut: bool,
}

impl Buf<'_> {
    #[inline(always)]
    fn u8(&self, off: u32) -> u8 {
        // The offset was checked against `len`; laundering hides that from both the compiler
        // (which would drop the mask) and the verifier (which would track every offset).
        self.b[(launder(self.cell, off) as usize) & HELLO_MASK]
    }
    #[inline(always)]
    fn u16(&self, off: u32) -> u16 {
        ((self.u8(off) as u16) << 8) | self.u8(off + 1) as u16
    }
    /// Whether `[off, off + n)` is available.
    #[inline(always)]
    fn has(&self, off: u32, n: u32) -> bool {
        off <= self.len && n <= self.len - off
    }
}

/// The buffered hello of type `typ`, if complete. Takes the fields (not the `Direction`) so
/// that `cell` may point into the same `Direction`.
#[inline(always)]
fn buffered<'a>(
    flags: u32,
    hello_type: u8,
    hello_len: u32,
    hello_msg_len: u32,
    hello: &'a [u8; HELLO_BUF],
    cell: *mut u32,
    typ: u8,
) -> Option<Buf<'a>> {
    if flags & dir_flags::HELLO_COMPLETE == 0 || hello_type != typ {
        return None;
    }
    let len = if (hello_len as usize) < HELLO_CAP {
        hello_len
    } else {
        HELLO_CAP as u32
    };
    Some(Buf {
        b: hello,
        cell,
        len,
        msg_len: hello_msg_len,
        cut: hello_msg_len > len,
    })
}

/// Where one extension's body is (valid when `seen`).
#[derive(Clone, Copy, Default)]
struct Span {
    off: u32,
    len: u32,
    seen: bool,
}

/// The extensions the parser reads.
struct Found {
    sni: Span,
    alpn: Span,
    versions: Span,
    key_share: Span,
}

// The extension block is walked once to validate its framing, count and find duplicates, then
// once per extension of interest. Several simple loops instead of one that tracks everything:
// the verifier's cost grows with the distinct states a loop carries, not with the loop count.

/// Validates the framing of the extension block `[off, end)` (up to `max` extensions) and
/// rejects duplicates. Returns the number of non-GREASE extensions, or None when malformed.
#[inline(always)]
fn check_extensions(buf: &Buf, mut off: u32, end: u32, max: u32, flags: &mut u32) -> Option<u16> {
    // Spans of the extensions of interest go to scratch words 1..=8 (volatile stores into the
    // caller's map value): recording them costs the verifier no extra states.
    let mut k = 1;
    while k < SCRATCH_WORDS {
        // SAFETY: `cell` points at `scratch[0]` of a live `[u32; SCRATCH_WORDS]`.
        unsafe { core::ptr::write_volatile(buf.cell.add(k), 0) };
        k += 1;
    }
    // Exact duplicate detection for types < 64 (all the ones read here) and renegotiation_info.
    let mut seen_lo: u64 = 0;
    let mut other: u32 = 0;
    let mut count: u32 = 0;
    let mut i = 0;
    while i < max {
        if off >= end {
            break;
        }
        if !buf.has(off, 4) || end - off < 4 {
            // Fewer than 4 bytes: a broken header, unless the message was cut here.
            if buf.cut && !buf.has(off, 4) {
                break;
            }
            return None;
        }
        let typ = buf.u16(off);
        let len = buf.u16(off + 2) as u32;
        let body = off + 4;
        if len > end - body {
            return None;
        }
        if !buf.has(body, len) {
            break; // cut inside this extension
        }
        off = body + len;
        i += 1;
        if is_grease(typ) {
            other |= hello_flags::GREASE;
            continue;
        }
        count += 1;
        let bit = if typ < 64 { 1u64 << typ } else { 0 };
        if seen_lo & bit != 0 {
            *flags |= hello_flags::DUPLICATE_EXTENSION;
            return None;
        }
        seen_lo |= bit;
        let slot = match typ {
            ext::SERVER_NAME => 1,
            ext::ALPN => 3,
            ext::SUPPORTED_VERSIONS => 5,
            ext::KEY_SHARE => 7,
            _ => 0,
        };
        if slot != 0 {
            // SAFETY: slot + 1 < SCRATCH_WORDS.
            unsafe {
                core::ptr::write_volatile(buf.cell.add(slot), body + 1);
                core::ptr::write_volatile(buf.cell.add(slot + 1), len);
            }
        }
        if typ == ext::RENEGOTIATION_INFO {
            if other & hello_flags::SECURE_RENEGOTIATION != 0 {
                *flags |= hello_flags::DUPLICATE_EXTENSION;
                return None;
            }
            other |= hello_flags::SECURE_RENEGOTIATION;
        }
    }
    if i >= max && off < end && buf.has(off, 1) {
        other |= hello_flags::EXTENSIONS_PARTIAL;
    }
    *flags |= other;
    Some(count as u16)
}

/// The span `check_extensions` recorded in scratch word `slot` (and `slot + 1`).
#[inline(always)]
fn recorded(buf: &Buf, slot: usize) -> Span {
    // SAFETY: slot + 1 < SCRATCH_WORDS; `cell` points at `scratch[0]`.
    let (off1, len) = unsafe {
        (
            core::ptr::read_volatile(buf.cell.add(slot & 7)),
            core::ptr::read_volatile(buf.cell.add((slot & 7) + 1)),
        )
    };
    Span {
        off: off1.wrapping_sub(1),
        len,
        seen: off1 != 0,
    }
}

/// The body of extension `want` in a block already validated by `check_extensions`.
#[inline(always)]
fn find_extension(buf: &Buf, mut off: u32, end: u32, max: u32, want: u16) -> Span {
    let mut i = 0;
    while i < max {
        if off >= end || !buf.has(off, 4) {
            break;
        }
        let len = buf.u16(off + 2) as u32;
        let body = off + 4;
        if !buf.has(body, len) {
            break;
        }
        if buf.u16(off) == want {
            return Span {
                off: body,
                len,
                seen: true,
            };
        }
        off = body + len;
        i += 1;
    }
    Span::default()
}

/// Copies `n` (≤ `N`) bytes from the buffer at `off` into `dst`.
#[inline(always)]
fn copy_out<const N: usize>(buf: &Buf, off: u32, n: u32, dst: &mut [u8; N]) {
    let mut k = 0u32;
    while k < N as u32 {
        if k < n {
            dst[(launder(buf.cell, k) as usize) % N] = buf.u8(off + k);
        }
        k += 1;
    }
}

/// Validates an ALPN extension body (`protocol_name_list`) and copies its first protocol.
/// Returns (full length of the first protocol, count) or None when malformed.
#[inline(always)]
fn read_alpn(buf: &Buf, s: Span, dst: &mut [u8; ALPN_CAP]) -> Option<(u8, u8)> {
    if s.len < 3 {
        return None;
    }
    let list = buf.u16(s.off) as u32;
    if list + 2 != s.len {
        return None;
    }
    let first = buf.u8(s.off + 2) as u32;
    let mut off = s.off + 2;
    let end = s.off + s.len;
    let mut count = 0u32;
    let mut i = 0;
    while i < MAX_ALPN_PROTOCOLS {
        if off >= end {
            break;
        }
        let l = buf.u8(off) as u32;
        if l == 0 || l > end - off - 1 {
            return None;
        }
        off += 1 + l;
        count += 1;
        i += 1;
    }
    if off < end && i >= MAX_ALPN_PROTOCOLS {
        // Too many to count: still well-formed as far as read.
        count = MAX_ALPN_PROTOCOLS;
    }
    copy_out(buf, s.off + 3, first, dst);
    Some((first as u8, count as u8))
}

/// Parses the buffered ClientHello (after [`super::Events::CLIENT_HELLO`]). Returns false when
/// no complete ClientHello is buffered or it is malformed (`out.flags` has MALFORMED; other
/// fields are then not to be trusted). A truncated hello parses what is complete
/// (`hello_flags::TRUNCATED`).
#[inline(always)]
pub fn parse_client_hello(dir: &Direction, out: &mut ClientHello) -> bool {
    *out = ClientHello::ZERO;
    let cell = out.scratch.as_mut_ptr();
    let Some(buf) = buffered(
        dir.flags,
        dir.hello_type,
        dir.hello_len,
        dir.hello_msg_len,
        &dir.hello,
        cell,
        handshake::CLIENT_HELLO,
    ) else {
        return false;
    };
    let mut flags = 0u32;
    if buf.cut {
        flags |= hello_flags::TRUNCATED;
    }
    let ok = client_hello_body(&buf, out, &mut flags);
    if buf.cut && flags & hello_flags::HAS_SUPPORTED_VERSIONS == 0 {
        // supported_versions may lie past the cut: the versions are unknown, not legacy.
        out.max_supported_version = 0;
        out.offered_versions = 0;
    }
    if !ok {
        flags |= hello_flags::MALFORMED;
    }
    out.flags = flags;
    ok
}

#[inline(always)]
fn client_hello_body(buf: &Buf, out: &mut ClientHello, flags: &mut u32) -> bool {
    // legacy_version, random, session_id length
    if !buf.has(0, 35) {
        return false;
    }
    let legacy = buf.u16(0);
    out.legacy_version = legacy;
    out.max_supported_version = legacy;
    if legacy >= versions::SSL3 && legacy <= versions::TLS13 {
        out.offered_versions = 1 << ((legacy - versions::SSL3) & 7);
    }
    let sid = buf.u8(34) as u32;
    if sid > 32 {
        return false;
    }
    let mut off = 35 + sid;
    if !buf.has(off, 2) {
        return buf.cut;
    }
    let cs_len = buf.u16(off) as u32;
    off += 2;
    if cs_len == 0 || cs_len & 1 != 0 || cs_len > buf.msg_len - off {
        return false;
    }
    // Suites: the available part of the list.
    let mut count = 0u32;
    let mut weak = 0u32;
    let mut k = 0u32;
    while k < MAX_CIPHER_SCAN {
        let at = off + 2 * k;
        if 2 * k >= cs_len || !buf.has(at, 2) {
            break;
        }
        let id = buf.u16(at);
        k += 1;
        if is_grease(id) {
            *flags |= hello_flags::GREASE;
            continue;
        }
        if count < MAX_CIPHERS as u32 {
            out.ciphers[(launder(buf.cell, count) as usize) % MAX_CIPHERS] = id;
        }
        count += 1;
        weak |= weak_classes(id);
        if id == FALLBACK_SCSV {
            *flags |= hello_flags::FALLBACK_SCSV;
        } else if id == RENEGOTIATION_SCSV {
            *flags |= hello_flags::SECURE_RENEGOTIATION;
        }
    }
    if 2 * k < cs_len && buf.has(off, cs_len) {
        *flags |= hello_flags::CIPHERS_PARTIAL;
    }
    out.cipher_count = count as u16;
    out.weak_offered = weak;
    if !buf.has(off, cs_len) {
        return true; // cut inside the suites
    }
    off += cs_len;
    // Compression methods.
    if !buf.has(off, 1) {
        return buf.cut;
    }
    let comp = buf.u8(off) as u32;
    if comp == 0 || comp > buf.msg_len - off - 1 {
        return false;
    }
    if !buf.has(off + 1, comp) {
        return buf.cut;
    }
    if comp > 1 || buf.u8(off + 1) != 0 {
        *flags |= hello_flags::COMPRESSION;
    }
    off += 1 + comp;
    // Extensions.
    if off == buf.msg_len {
        *flags |= hello_flags::NO_EXTENSIONS;
        return true;
    }
    if !buf.has(off, 2) {
        return buf.cut;
    }
    let ext_len = buf.u16(off) as u32;
    off += 2;
    let end = off + ext_len;
    if end != buf.msg_len {
        return false;
    }
    let Some(count) = check_extensions(buf, off, end, MAX_EXTENSIONS, flags) else {
        return false;
    };
    out.ext_count = count;
    let found = Found {
        sni: recorded(buf, 1),
        alpn: recorded(buf, 3),
        versions: recorded(buf, 5),
        key_share: recorded(buf, 7),
    };

    // server_name: ServerNameList { NameType name_type; opaque HostName<1..2^16-1> } <1..>.
    if found.sni.seen {
        let s = found.sni;
        if s.len < 5 || buf.u16(s.off) as u32 + 2 != s.len || buf.u8(s.off + 2) != 0 {
            return false;
        }
        let name_len = buf.u16(s.off + 3) as u32;
        if name_len == 0 || name_len + 5 > s.len {
            return false;
        }
        copy_out(buf, s.off + 5, name_len, &mut out.sni);
        out.sni_len = name_len as u16;
        if name_len as usize > SNI_CAP {
            *flags |= hello_flags::SNI_TRUNCATED;
        }
        *flags |= hello_flags::HAS_SNI;
    }

    if found.alpn.seen {
        let Some((len, count)) = read_alpn(buf, found.alpn, &mut out.alpn_first) else {
            return false;
        };
        out.alpn_len = len;
        out.alpn_count = count;
        if len as usize > ALPN_CAP {
            *flags |= hello_flags::ALPN_TRUNCATED;
        }
        *flags |= hello_flags::HAS_ALPN;
    }

    // supported_versions (client): ProtocolVersion versions<2..254>.
    if found.versions.seen {
        let s = found.versions;
        if s.len < 3 {
            return false;
        }
        let list = buf.u8(s.off) as u32;
        if list + 1 != s.len || list & 1 != 0 {
            return false;
        }
        let mut max = 0u16;
        let mut offered = 0u8;
        let mut i = 0u32;
        while i < MAX_VERSIONS {
            if 2 * i >= list {
                break;
            }
            let v = buf.u16(s.off + 1 + 2 * i);
            i += 1;
            if is_grease(v) {
                *flags |= hello_flags::GREASE;
                continue;
            }
            if v > max {
                max = v;
            }
            if v >= versions::SSL3 && v <= versions::TLS13 {
                offered |= 1 << ((v - versions::SSL3) & 7);
            }
        }
        if max == 0 {
            return false;
        }
        if list > 2 * MAX_VERSIONS {
            // More versions than examined: the maximum may be among the rest.
            *flags |= hello_flags::EXTENSIONS_PARTIAL;
        }
        out.max_supported_version = max;
        out.offered_versions = offered;
        *flags |= hello_flags::HAS_SUPPORTED_VERSIONS;
    }

    // key_share (client): KeyShareEntry client_shares<0..2^16-1>, entry = group, key<1..>.
    if found.key_share.seen {
        let s = found.key_share;
        if s.len < 2 || buf.u16(s.off) as u32 + 2 != s.len {
            return false;
        }
        let end = s.off + s.len;
        let mut off = s.off + 2;
        let mut n = 0u32;
        let mut i = 0;
        while i < MAX_KEY_SHARE_SCAN {
            if off >= end {
                break;
            }
            if end - off < 4 {
                return false;
            }
            let g = buf.u16(off);
            let kl = buf.u16(off + 2) as u32;
            if kl == 0 || kl > end - off - 4 {
                return false;
            }
            off += 4 + kl;
            i += 1;
            if is_grease(g) {
                *flags |= hello_flags::GREASE;
                continue;
            }
            if super::groups::is_post_quantum(g) {
                *flags |= hello_flags::PQ_KEY_SHARE;
            }
            if n < MAX_KEY_SHARES as u32 {
                out.key_share_groups[(launder(buf.cell, n) as usize) % MAX_KEY_SHARES] = g;
                n += 1;
            }
        }
        out.key_share_count = n as u8;
        *flags |= hello_flags::HAS_KEY_SHARE;
    }
    true
}

/// Parses the buffered ServerHello or HelloRetryRequest (after
/// [`super::Events::SERVER_HELLO`]). Returns false when none is buffered or it is malformed.
#[inline(always)]
pub fn parse_server_hello(dir: &Direction, out: &mut ServerHello) -> bool {
    *out = ServerHello::ZERO;
    let cell = out.scratch.as_mut_ptr();
    let Some(buf) = buffered(
        dir.flags,
        dir.hello_type,
        dir.hello_len,
        dir.hello_msg_len,
        &dir.hello,
        cell,
        handshake::SERVER_HELLO,
    ) else {
        return false;
    };
    let mut flags = 0u32;
    if buf.cut {
        flags |= hello_flags::TRUNCATED;
    }
    let hrr = super::has_hrr_random(&dir.hello, dir.hello_len, cell);
    let ok = server_hello_body(hrr, &buf, out, &mut flags);
    if !ok {
        flags |= hello_flags::MALFORMED;
    }
    out.flags = flags;
    ok
}

#[inline(always)]
fn server_hello_body(hrr: bool, buf: &Buf, out: &mut ServerHello, flags: &mut u32) -> bool {
    if !buf.has(0, 35) {
        return false;
    }
    let legacy = buf.u16(0);
    if hrr {
        out.hello_retry = 1;
        *flags |= hello_flags::HELLO_RETRY;
    }
    let sid = buf.u8(34) as u32;
    if sid > 32 {
        return false;
    }
    let mut off = 35 + sid;
    if !buf.has(off, 3) {
        return false;
    }
    let cipher = buf.u16(off);
    let comp = buf.u8(off + 2);
    if is_grease(cipher) {
        return false;
    }
    off += 3;
    let mut version = legacy;
    if off == buf.msg_len && !buf.cut {
        *flags |= hello_flags::NO_EXTENSIONS;
    } else {
        if !buf.has(off, 2) {
            return false;
        }
        let ext_len = buf.u16(off) as u32;
        off += 2;
        let end = off + ext_len;
        if end != buf.msg_len || buf.cut {
            // A ServerHello never needs HELLO_CAP bytes: a cut one is not trusted.
            return false;
        }
        let Some(count) = check_extensions(buf, off, end, MAX_SERVER_EXTENSIONS, flags) else {
            return false;
        };
        out.ext_count = count;
        let found = Found {
            sni: recorded(buf, 1),
            alpn: recorded(buf, 3),
            versions: recorded(buf, 5),
            key_share: recorded(buf, 7),
        };
        if found.versions.seen {
            // selected_version
            if found.versions.len != 2 {
                return false;
            }
            let v = buf.u16(found.versions.off);
            if is_grease(v) {
                return false;
            }
            version = v;
            *flags |= hello_flags::HAS_SUPPORTED_VERSIONS;
        }
        if found.key_share.seen {
            // ServerHello: KeyShareEntry; HelloRetryRequest: NamedGroup.
            let s = found.key_share;
            if s.len < 2 {
                return false;
            }
            let g = buf.u16(s.off);
            if hrr {
                if s.len != 2 {
                    return false;
                }
            } else if s.len < 4 || buf.u16(s.off + 2) as u32 + 4 != s.len {
                return false;
            }
            out.key_share_group = g;
            if super::groups::is_post_quantum(g) {
                *flags |= hello_flags::PQ_KEY_SHARE;
            }
            *flags |= hello_flags::HAS_KEY_SHARE;
        }
        if found.alpn.seen {
            let Some((len, count)) = read_alpn(buf, found.alpn, &mut out.alpn) else {
                return false;
            };
            if count != 1 {
                return false;
            }
            out.alpn_len = len;
            if len as usize > ALPN_CAP {
                *flags |= hello_flags::ALPN_TRUNCATED;
            }
            *flags |= hello_flags::HAS_ALPN;
        }
        if found.sni.seen {
            *flags |= hello_flags::HAS_SNI;
        }
    }
    if comp != 0 {
        *flags |= hello_flags::COMPRESSION;
    }
    out.legacy_version = legacy;
    out.version = version;
    out.cipher = cipher;
    out.compression = comp;
    out.weak = weak_classes(cipher);
    true
}

/// Version and suite chosen by the buffered ServerHello, as `feed` needs them to end a TLS 1.3
/// direction: the fixed fields and supported_versions only (the full check is
/// [`parse_server_hello`], which the caller runs for reporting).
#[inline(always)]
pub(crate) fn server_hello_choice(dir: &mut Direction) -> Option<(u16, u16)> {
    let buf = buffered(
        dir.flags,
        dir.hello_type,
        dir.hello_len,
        dir.hello_msg_len,
        &dir.hello,
        &mut dir.scratch as *mut u32,
        handshake::SERVER_HELLO,
    )?;
    if buf.cut || !buf.has(0, 35) {
        return None;
    }
    let legacy = buf.u16(0);
    let sid = buf.u8(34) as u32;
    if sid > 32 || !buf.has(35 + sid, 3) {
        return None;
    }
    let mut off = 35 + sid;
    let cipher = buf.u16(off);
    off += 3;
    if off == buf.msg_len {
        return Some((legacy, cipher));
    }
    if !buf.has(off, 2) {
        return None;
    }
    let end = off + 2 + buf.u16(off) as u32;
    off += 2;
    if end != buf.msg_len {
        return None;
    }
    let v = find_extension(
        &buf,
        off,
        end,
        MAX_SERVER_EXTENSIONS,
        ext::SUPPORTED_VERSIONS,
    );
    if !v.seen {
        return Some((legacy, cipher));
    }
    if v.len != 2 {
        return None;
    }
    Some((buf.u16(v.off), cipher))
}
