//! Arbitrary bytes in arbitrary chunks into the TLS handshake parser (the user-space twin of the
//! kernel's): no panic (debug assertions on: no overflow, no out-of-bounds), no endless loop,
//! and the same reading whatever the chunking. The kernel's small ClientHello walks (SNI, offer)
//! must read what the full parser reads from every hello it accepts.
#![no_main]

use dataplane_common::tls::{
    ALPN_LEN, ClientHello, Direction, Events, Offer, ServerHello, client_hello_offer,
    client_hello_sni, feed, parse_client_hello, parse_server_hello,
};
use libfuzzer_sys::fuzz_target;

#[derive(Debug, PartialEq)]
struct Reading {
    events: u32,
    state: u8,
    flags: u32,
    client: Vec<(bool, ClientHello)>,
    server: Vec<(bool, ServerHello)>,
}

fn read(data: &[u8], sizes: &mut dyn Iterator<Item = usize>) -> Reading {
    let mut dir = Box::new(Direction::ZERO);
    let mut ch = Box::new(ClientHello::ZERO);
    let mut sh = Box::new(ServerHello::ZERO);
    let mut r = Reading {
        events: 0,
        state: 0,
        flags: 0,
        client: vec![],
        server: vec![],
    };
    let mut pos = 0usize;
    while pos < data.len() {
        let n = sizes
            .next()
            .unwrap_or(data.len())
            .clamp(1, data.len() - pos);
        let chunk = &data[pos..pos + n];
        let mut start = 0u32;
        // Each call consumes at least one byte or ends the direction.
        let mut calls = 0;
        loop {
            calls += 1;
            assert!(calls <= n + 1, "feed made no progress");
            let ev = feed(&mut dir, chunk, start, n as u32);
            r.events |= ev.0 & !Events::MORE.0;
            if ev.contains(Events::CLIENT_HELLO) {
                let ok = parse_client_hello(&dir, &mut ch);
                if ok {
                    kernel_walks_agree(&dir, &ch);
                }
                r.client.push((ok, *ch));
            }
            if ev.contains(Events::SERVER_HELLO) {
                let ok = parse_server_hello(&dir, &mut sh);
                r.server.push((ok, *sh));
            }
            if !ev.contains(Events::MORE) {
                break;
            }
            assert!(
                dir.resume > start && dir.resume < n as u32,
                "resume must advance"
            );
            start = dir.resume;
        }
        pos += n;
    }
    r.state = dir.state;
    r.flags = dir.flags;
    r
}

/// The kernel reads a hello with `client_hello_sni` and `client_hello_offer`: on a hello the full
/// parser accepts, they must say the same.
fn kernel_walks_agree(dir: &Direction, full: &ClientHello) {
    let mut sni = [0u8; 128];
    let n = client_hello_sni(dir, &mut sni);
    if full.sni_len > 0 {
        assert_eq!(n, full.sni_len as usize, "SNI length");
        let kept = n.min(128);
        assert_eq!(&sni[..kept], &full.sni[..kept], "SNI");
    }
    let mut offer = Offer::default();
    assert!(client_hello_offer(dir, &mut offer), "offer of an accepted hello");
    let max = if full.max_supported_version != 0 {
        full.max_supported_version
    } else {
        full.legacy_version
    };
    assert_eq!(offer.max_version, max, "offered version");
    assert_eq!(u32::from(offer.weak), full.weak_offered, "offered weak classes");
    assert_eq!(offer.alpn_len, full.alpn_len, "ALPN length");
    let kept = usize::from(offer.alpn_len).min(ALPN_LEN);
    assert_eq!(&offer.alpn[..kept], &full.alpn_first[..kept], "ALPN");
}

fuzz_target!(|input: &[u8]| {
    // First two bytes choose the chunking; the rest is the stream.
    let (seed, data) = match input {
        [a, b, rest @ ..] => (u16::from_le_bytes([*a, *b]), rest),
        _ => return,
    };
    let whole = read(data, &mut std::iter::empty());
    let mut x = seed as u64 | 1;
    let mut sizes = std::iter::from_fn(move || {
        x ^= x << 13;
        x ^= x >> 7;
        x ^= x << 17;
        Some(1 + (x % 97) as usize)
    });
    let split = read(data, &mut sizes);
    assert_eq!(whole, split, "the reading depends on the chunking");
    let bytewise = read(data, &mut std::iter::repeat(1));
    assert_eq!(whole, bytewise, "bytewise reading differs");
});
