//! What a buffered ClientHello offers, in a walk the kernel verifier accepts: the highest
//! version (supported_versions, else the legacy version), the weak classes among the offered
//! cipher suites, and the first ALPN protocol. Every loop has a constant bound and runs
//! straight through; extensions are located in one pass and read after it, so no loop nests.
//! [`parse_client_hello`](super::parse_client_hello) is the full user-space parse; tests check
//! both agree on every real handshake.

use super::{Direction, HELLO_CAP, handshake, is_grease, weak_classes};

const MASK: usize = HELLO_CAP - 1;
/// Cipher suites examined (a ClientHello offering more is read for its first 128).
pub const OFFER_MAX_SUITES: u32 = 128;
/// Extensions examined when looking for supported_versions and ALPN.
pub const OFFER_MAX_EXTENSIONS: u32 = 32;
/// supported_versions entries examined.
pub const OFFER_MAX_VERSIONS: u32 = 16;
pub const ALPN_LEN: usize = 16;

/// A ClientHello's offer, as kept in posture rows.
#[repr(C)]
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct Offer {
    /// Highest offered protocol version (GREASE ignored); 0 = not a readable ClientHello.
    pub max_version: u16,
    /// Weak-class bits ([`super::weak`]) of every offered suite, OR-ed.
    pub weak: u16,
    /// First ALPN protocol (truncated to `ALPN_LEN`), `alpn_len` its full length (0 = none).
    pub alpn: [u8; ALPN_LEN],
    pub alpn_len: u8,
    pub _pad: [u8; 3],
}

#[inline(always)]
fn byte(dir: &Direction, i: u32) -> u32 {
    u32::from(dir.hello[opaque(i) as usize & MASK])
}

/// `v`, hidden from the optimiser: otherwise LLVM drops the index mask where an earlier bounds
/// check implies it, and the verifier (which tracks that check on another register) rejects
/// the unmasked access.
#[inline(always)]
fn opaque(v: u32) -> u32 {
    let x = v;
    // SAFETY: reads a local.
    unsafe { core::ptr::read_volatile(&x) }
}

#[inline(always)]
fn be16(dir: &Direction, i: u32) -> u32 {
    (byte(dir, i) << 8) | byte(dir, i + 1)
}

/// Reads the offer of the buffered ClientHello; false if there is none readable. The kernel
/// runs the same steps, each loop as a `bpf_loop` whose body is one step.
pub fn client_hello_offer(dir: &Direction, out: &mut Offer) -> bool {
    let mut w = OfferWalk::default();
    if !offer_start(dir, &mut w) {
        *out = Offer::default();
        return false;
    }
    for i in 0..OFFER_MAX_SUITES {
        if !offer_suite(dir, &mut w, i) {
            break;
        }
    }
    for _ in 0..OFFER_MAX_EXTENSIONS {
        if !offer_extension(dir, &mut w) {
            break;
        }
    }
    for i in 0..OFFER_MAX_VERSIONS {
        if !offer_version(dir, &mut w, i) {
            break;
        }
    }
    offer_finish(dir, &w, out);
    true
}

/// Where a ClientHello walk is; offsets into the hello buffer.
#[repr(C)]
#[derive(Clone, Copy, Debug, Default)]
pub struct OfferWalk {
    pub len: u32,
    pub legacy: u32,
    pub suites: u32,
    pub suites_len: u32,
    pub weak: u32,
    /// Next extension header; `end` is where extensions end.
    pub ext: u32,
    pub end: u32,
    /// Bodies of supported_versions and ALPN (0 = absent).
    pub versions: u32,
    pub alpn: u32,
    pub max_version: u32,
}

/// Reads the fixed part of the ClientHello up to the extensions.
#[inline(always)]
pub fn offer_start(dir: &Direction, w: &mut OfferWalk) -> bool {
    *w = OfferWalk::default();
    if dir.hello_type != handshake::CLIENT_HELLO {
        return false;
    }
    let len = dir.hello_len.min(HELLO_CAP as u32);
    if len < 35 {
        return false;
    }
    w.len = len;
    w.legacy = be16(dir, 0);
    let mut p: u32 = 34;
    p += 1 + byte(dir, p); // session id
    if p + 2 > len {
        return false;
    }
    w.suites_len = be16(dir, p);
    w.suites = p + 2;
    p = w.suites + w.suites_len;
    if p > len {
        return false;
    }
    if p + 1 > len {
        return true;
    }
    p += 1 + byte(dir, p); // compression methods
    if p + 2 > len {
        return true;
    }
    w.end = (p + 2 + be16(dir, p)).min(len);
    w.ext = p + 2;
    true
}

/// Suite `i`; false once past the last.
#[inline(always)]
pub fn offer_suite(dir: &Direction, w: &mut OfferWalk, i: u32) -> bool {
    if i >= OFFER_MAX_SUITES || 2 * i + 2 > w.suites_len {
        return false;
    }
    let id = be16(dir, w.suites + 2 * i) as u16;
    if !is_grease(id) {
        w.weak |= weak_classes(id);
    }
    true
}

/// The next extension: notes supported_versions and ALPN; false once past the last.
#[inline(always)]
pub fn offer_extension(dir: &Direction, w: &mut OfferWalk) -> bool {
    let p = w.ext;
    if p + 4 > w.end {
        return false;
    }
    let (ty, ext_len) = (be16(dir, p), be16(dir, p + 2));
    if p + 4 + ext_len > w.end {
        return false;
    }
    if ty == super::ext::SUPPORTED_VERSIONS as u32 && w.versions == 0 {
        w.versions = p + 4;
    } else if ty == super::ext::ALPN as u32 && w.alpn == 0 {
        w.alpn = p + 4;
    }
    w.ext = p + 4 + ext_len;
    true
}

/// supported_versions entry `i`; false once past the last (or without the extension).
#[inline(always)]
pub fn offer_version(dir: &Direction, w: &mut OfferWalk, i: u32) -> bool {
    let body = w.versions;
    if body == 0 || body + 1 > w.end {
        return false;
    }
    let list_len = byte(dir, body);
    let at = body + 1 + 2 * i;
    if i >= OFFER_MAX_VERSIONS || 2 * i + 2 > list_len || at + 2 > w.end {
        return false;
    }
    let v = be16(dir, at);
    if !is_grease(v as u16) && v > w.max_version {
        w.max_version = v;
    }
    true
}

/// Fills `out` from a finished walk (and copies the first ALPN protocol).
#[inline(always)]
pub fn offer_finish(dir: &Direction, w: &OfferWalk, out: &mut Offer) {
    *out = Offer::default();
    out.weak = w.weak as u16;
    out.max_version = if w.max_version != 0 {
        w.max_version
    } else {
        w.legacy
    } as u16;
    if w.alpn != 0 {
        first_alpn(dir, w.alpn, w.end, out);
    }
}

#[inline(always)]
fn first_alpn(dir: &Direction, body: u32, end: u32, out: &mut Offer) {
    // protocol_name_list length (2), then the first name: length (1), bytes.
    if body + 3 > end {
        return;
    }
    let name_len = byte(dir, body + 2);
    if name_len == 0 || body + 3 + name_len > end {
        return;
    }
    let base = body + 3;
    let mut i = 0;
    while i < ALPN_LEN {
        out.alpn[i] = if (i as u32) < name_len {
            byte(dir, base + i as u32) as u8
        } else {
            0
        };
        i += 1;
    }
    out.alpn_len = name_len as u8;
}
