//! The server name of a buffered ClientHello, found with a small walk the kernel verifier
//! accepts (one bounded loop over extensions, one bounded copy). [`parse_client_hello`]
//! (super::parse_client_hello) reads everything else a ClientHello offers; the kernel uses
//! this for the SNI alone, and tests check both agree.

use super::{Direction, HELLO_CAP, handshake};

const MASK: usize = HELLO_CAP - 1;
/// Extensions examined before giving up on finding server_name.
pub const SNI_MAX_EXTENSIONS: u32 = 24;

#[inline(always)]
fn byte(dir: &Direction, i: u32) -> u32 {
    u32::from(dir.hello[i as usize & MASK])
}

#[inline(always)]
fn be16(dir: &Direction, i: u32) -> u32 {
    (byte(dir, i) << 8) | byte(dir, i + 1)
}

/// Copies the host name of the buffered ClientHello into `out` (at most `out.len()` bytes);
/// returns its full length, or 0 when there is none (or the hello is not a complete, readable
/// ClientHello).
#[inline(always)]
pub fn client_hello_sni(dir: &Direction, out: &mut [u8; 128]) -> usize {
    if dir.hello_type != handshake::CLIENT_HELLO {
        return 0;
    }
    let len = dir.hello_len.min(HELLO_CAP as u32);
    // version (2), random (32), then session id.
    let mut p: u32 = 34;
    if p + 1 > len {
        return 0;
    }
    p += 1 + byte(dir, p);
    if p + 2 > len {
        return 0;
    }
    p += 2 + be16(dir, p); // cipher suites
    if p + 1 > len {
        return 0;
    }
    p += 1 + byte(dir, p); // compression methods
    if p + 2 > len {
        return 0;
    }
    let end = (p + 2 + be16(dir, p)).min(len);
    p += 2;
    let mut n = 0;
    while n < SNI_MAX_EXTENSIONS {
        if p + 4 > end {
            return 0;
        }
        let (ty, ext_len) = (be16(dir, p), be16(dir, p + 2));
        if ty == 0 {
            // server_name_list length (2), name type (1, 0 = host_name), name length (2).
            if ext_len < 5 || p + 9 > end || byte(dir, p + 6) != 0 {
                return 0;
            }
            let name_len = be16(dir, p + 7);
            if p + 9 + name_len > end || name_len == 0 {
                return 0;
            }
            // A fixed-length copy (no data-dependent exit) keeps the verifier's work linear;
            // bytes past the name are meaningless and bounded by the returned length.
            let base = p as usize + 9;
            let mut i = 0;
            while i < out.len() {
                out[i] = dir.hello[(base + i) & MASK];
                i += 1;
            }
            return name_len as usize;
        }
        p += 4 + ext_len;
        n += 1;
    }
    0
}
