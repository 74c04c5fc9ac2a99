//! Real handshakes (tests/data/handshakes, made by make_vectors.py with OpenSSL through Python's
//! ssl module and the openssl tools): the parser reports what the stacks negotiated, identically
//! for every way of splitting the byte streams, and agrees with tls-parser.

mod common;

use std::{collections::BTreeMap, path::PathBuf};

use common::{Rng, Seen, conversation, disagreements, feed_chunks_hrr, fresh, mtls, reference};
use dataplane_common::tls::{
    Events, HELLO_CAP, dir_flags, hello_flags, state, versions, weak, weak_classes,
};

fn data_dir() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("tests/data/handshakes")
}

struct Vector {
    name: String,
    c2s: Vec<u8>,
    s2c: Vec<u8>,
    expect: serde_json::Value,
}

fn vectors() -> Vec<Vector> {
    let dir = data_dir();
    let expected: BTreeMap<String, serde_json::Value> =
        serde_json::from_slice(&std::fs::read(dir.join("expected.json")).unwrap()).unwrap();
    assert!(expected.len() >= 16, "vectors missing: run make_vectors.py");
    expected
        .into_iter()
        .map(|(name, expect)| Vector {
            c2s: std::fs::read(dir.join(format!("{name}.c2s"))).unwrap(),
            s2c: std::fs::read(dir.join(format!("{name}.s2c"))).unwrap(),
            name,
            expect,
        })
        .collect()
}

fn whole() -> Box<dyn Iterator<Item = usize>> {
    Box::new(std::iter::empty())
}

/// The facts a vector promises, checked against one reading.
fn check(v: &Vector, client: &Seen, server: &Seen) {
    let e = &v.expect;
    let name = &v.name;
    let sh = server
        .server_hello()
        .unwrap_or_else(|| panic!("{name}: no ServerHello: {server:?}"));
    assert_eq!(
        sh.version as u64,
        e["version"].as_u64().unwrap(),
        "{name}: version"
    );
    assert_eq!(
        sh.cipher as u64,
        e["cipher"].as_u64().unwrap(),
        "{name}: cipher"
    );
    assert_eq!(sh.weak, weak_classes(sh.cipher), "{name}");
    let ch = client
        .client_hello()
        .unwrap_or_else(|| panic!("{name}: no ClientHello: {client:?}"));
    let sni = e["sni"].as_str().unwrap();
    assert_eq!(ch.sni(), sni.as_bytes(), "{name}: sni");
    assert_eq!(
        ch.flags & hello_flags::HAS_SNI != 0,
        !sni.is_empty(),
        "{name}"
    );
    let huge = name.contains("huge");
    let alpn = e["alpn_offered_first"].as_str().unwrap();
    if huge {
        // Over HELLO_CAP: the ALPN extension lies past the cut; what is reported is correct.
        assert!(
            ch.flags & hello_flags::TRUNCATED != 0,
            "{name}: truncated flag"
        );
        assert!(client.events & Events::TRUNCATED.0 != 0);
        assert_eq!(
            ch.flags & hello_flags::HAS_ALPN,
            0,
            "{name}: ALPN is past the cut"
        );
    } else {
        assert_eq!(ch.alpn(), alpn.as_bytes(), "{name}: alpn offered");
        assert_eq!(ch.flags & hello_flags::TRUNCATED, 0, "{name}");
    }
    assert!(
        ch.cipher_count > 0 && ch.ciphers().contains(&sh.cipher),
        "{name}: suite offered"
    );
    let selected = e["alpn_selected"].as_str().unwrap();
    if sh.version < versions::TLS13 {
        assert_eq!(sh.alpn(), selected.as_bytes(), "{name}: alpn selected");
    }
    let want_mtls = e["mtls"].as_str().unwrap();
    let got = mtls(client, server);
    match want_mtls {
        "none" => assert_eq!(got, "none", "{name}"),
        "cert" => assert_eq!(got, "cert", "{name}"),
        "empty" => assert_eq!(got, "empty", "{name}"),
        _ => assert_eq!(got, "unknown", "{name}"),
    }
    if want_mtls == "cert" || want_mtls == "empty" {
        assert!(
            server.flags & dir_flags::CERT_REQUEST != 0,
            "{name}: CertificateRequest"
        );
    }
    let hrr = e
        .get("hello_retry")
        .and_then(|h| h.as_bool())
        .unwrap_or(false);
    assert_eq!(
        server.flags & dir_flags::HELLO_RETRY != 0,
        hrr,
        "{name}: hrr"
    );
    if hrr {
        // Both ClientHellos read; the second follows the retry.
        assert_eq!(client.client_hellos.len(), 2, "{name}");
        assert!(server.server_hellos.iter().any(|(_, s)| s.hello_retry == 1));
    }
    // Both directions end (ChangeCipherSpec / application data / TLS 1.3 ServerHello).
    assert_eq!(client.state, state::DONE, "{name}: client direction");
    assert_eq!(server.state, state::DONE, "{name}: server direction");
    assert_eq!(client.events & Events::MALFORMED.0, 0, "{name}");
    assert_eq!(server.events & Events::MALFORMED.0, 0, "{name}");
}

#[test]
fn real_handshakes_whole() {
    for v in vectors() {
        let (c, s) = conversation(&v.c2s, &v.s2c, &mut whole);
        check(&v, &c, &s);
    }
}

#[test]
fn real_handshakes_specific_facts() {
    let all: BTreeMap<String, Vector> =
        vectors().into_iter().map(|v| (v.name.clone(), v)).collect();
    let read = |n: &str| conversation(&all[n].c2s, &all[n].s2c, &mut whole);

    let (c, s) = read("tls10");
    assert_eq!(s.server_hello().unwrap().version, versions::TLS10);
    assert_eq!(
        c.client_hello().unwrap().max_supported_version,
        versions::TLS10
    );
    let (_, s) = read("tls12_dhe_aes256_sha");
    let sh = s.server_hello().unwrap();
    assert_eq!(sh.cipher, 0x0039);
    assert_eq!(sh.weak, weak::CBC_SHA1);
    let (_, s) = read("tls12_rsa_kx");
    assert_eq!(
        s.server_hello().unwrap().weak,
        weak::CBC_SHA1 | weak::RSA_KX
    );
    let (c, s) = read("tls13");
    let ch = c.client_hello().unwrap();
    assert_eq!(ch.max_supported_version, versions::TLS13);
    assert!(ch.offered_versions & (1 << 4) != 0 && ch.offered_versions & (1 << 3) != 0);
    assert!(ch.key_share_count >= 1);
    assert!(s.flags & dir_flags::TLS13 != 0);
    // Python's default list has no SHA-1 suites; the SECLEVEL=0 legacy one has both classes.
    assert_eq!(ch.weak_offered & weak::CBC_SHA1, 0);
    let (c, _) = read("tls10");
    let w = c.client_hello().unwrap().weak_offered;
    assert!(w & weak::CBC_SHA1 != 0 && w & weak::RSA_KX != 0, "{w:#x}");
    let (c, _) = read("tls13_big_hello");
    assert!(
        all["tls13_big_hello"].c2s.len() > 2048,
        "spans several segments"
    );
    assert_eq!(
        c.client_hello().unwrap().alpn_count,
        16,
        "counted up to the bound"
    );
    let (c, _) = read("tls13_huge_hello");
    assert!(c.client_hello().unwrap().flags & hello_flags::TRUNCATED != 0);
    assert!(all["tls13_huge_hello"].c2s.len() > HELLO_CAP);
    let (c, s) = read("tls12_mtls_cert");
    assert!(c.events & Events::CERTIFICATE.0 != 0);
    assert!(s.events & Events::CERT_REQUEST.0 != 0);
    let (c, _) = read("tls12_mtls_empty");
    assert!(c.events & Events::CERTIFICATE_EMPTY.0 != 0);
    let (_, s) = read("tls13_hrr_openssl");
    assert!(s.events & Events::HELLO_RETRY.0 != 0);
    let hrr = s
        .server_hellos
        .iter()
        .find(|(_, h)| h.hello_retry == 1)
        .unwrap()
        .1;
    assert_eq!(
        hrr.key_share_group,
        dataplane_common::tls::groups::SECP256R1
    );
}

/// Every way of cutting the streams gives the same reading.
#[test]
fn real_handshakes_every_split() {
    for v in vectors() {
        let (c0, s0) = conversation(&v.c2s, &v.s2c, &mut whole);
        // One byte at a time.
        let (c, s) = conversation(&v.c2s, &v.s2c, &mut || Box::new(std::iter::repeat(1)));
        assert_eq!((&c, &s), (&c0, &s0), "{}: bytewise", v.name);
        // Fixed sizes.
        for n in [2usize, 3, 4, 5, 6, 7, 9, 13, 64, 100, 517, 1400, 1448, 4096] {
            let (c, s) = conversation(&v.c2s, &v.s2c, &mut || Box::new(std::iter::repeat(n)));
            assert_eq!((&c, &s), (&c0, &s0), "{}: chunks of {n}", v.name);
        }
        // Random sizes.
        for seed in 1..=40u64 {
            let mut rng = Rng(seed.wrapping_mul(0x9e37_79b9_7f4a_7c15));
            let sizes: Vec<usize> = (0..20_000).map(|_| 1 + rng.below(700) as usize).collect();
            let (c, s) = conversation(&v.c2s, &v.s2c, &mut || Box::new(sizes.clone().into_iter()));
            assert_eq!((&c, &s), (&c0, &s0), "{}: random seed {seed}", v.name);
        }
        // Every single cut point (two chunks), each direction.
        for (data, other, is_client) in [(&v.c2s, &v.s2c, true), (&v.s2c, &v.c2s, false)] {
            let want = if is_client { &c0 } else { &s0 };
            let _ = other;
            for cut in 1..data.len() {
                let mut d = fresh();
                let hrr = is_client && s0.events & Events::HELLO_RETRY.0 != 0;
                let got = feed_chunks_hrr(&mut d, data, &mut [cut].into_iter(), hrr);
                assert_eq!(&got, want, "{}: cut at {cut}", v.name);
            }
        }
    }
}

/// Record boundaries: cutting exactly at, just before and just after each record header.
#[test]
fn real_handshakes_record_boundaries() {
    for v in vectors() {
        let (c0, s0) = conversation(&v.c2s, &v.s2c, &mut whole);
        for (data, want) in [(&v.c2s, &c0), (&v.s2c, &s0)] {
            let mut bounds = vec![];
            let mut at = 0usize;
            while at + 5 <= data.len() {
                bounds.push(at);
                at += 5 + u16::from_be_bytes([data[at + 3], data[at + 4]]) as usize;
            }
            for delta in [0isize, 1, 2, 3, 4, 5, 6, 9, -1, -2] {
                let mut sizes = vec![];
                let mut last = 0usize;
                for &b in &bounds {
                    let cut = (b as isize + delta).clamp(0, data.len() as isize) as usize;
                    if cut > last {
                        sizes.push(cut - last);
                        last = cut;
                    }
                }
                let mut d = fresh();
                let hrr = std::ptr::eq(want, &c0) && s0.events & Events::HELLO_RETRY.0 != 0;
                let got = feed_chunks_hrr(&mut d, data, &mut sizes.into_iter(), hrr);
                assert_eq!(&got, want, "{}: record cuts {delta:+}", v.name);
            }
        }
        check(&v, &c0, &s0);
    }
}

/// An independent parser (tls-parser) reads the same SNI, versions and suites.
#[test]
fn real_handshakes_agree_with_tls_parser() {
    for v in vectors() {
        let (c, s) = conversation(&v.c2s, &v.s2c, &mut whole);
        let rc = reference(&v.c2s).expect("client stream is TLS");
        let rs = reference(&v.s2c).expect("server stream is TLS");
        assert!(
            rc.client_hello,
            "{}: tls-parser read the ClientHello",
            v.name
        );
        assert!(
            rs.server_hello,
            "{}: tls-parser read the ServerHello",
            v.name
        );
        assert!(
            disagreements(&c, &rc).is_empty(),
            "{}: {:?}",
            v.name,
            disagreements(&c, &rc)
        );
        assert!(
            disagreements(&s, &rs).is_empty(),
            "{}: {:?}",
            v.name,
            disagreements(&s, &rs)
        );
    }
}

/// The chunk offsets the kernel passes are relative to its own buffer: a chunk inside a larger
/// buffer (start > 0) reads the same.
#[test]
fn offsets_inside_a_larger_buffer() {
    use dataplane_common::tls::{ClientHello, feed_all, parse_client_hello};
    let v = vectors().into_iter().find(|v| v.name == "tls13").unwrap();
    let mut buf = vec![0xEEu8; 37];
    buf.extend_from_slice(&v.c2s);
    buf.extend_from_slice(&[0xEE; 11]);
    let mut d = fresh();
    let mut ch = Box::new(ClientHello::ZERO);
    let mut ok = false;
    feed_all(
        &mut d,
        buf.as_slice(),
        37,
        37 + v.c2s.len() as u32,
        |d, ev| {
            if ev.contains(Events::CLIENT_HELLO) {
                ok = parse_client_hello(d, &mut ch);
            }
        },
    );
    assert!(ok);
    assert_eq!(ch.sni(), b"server.test");
    assert_eq!(d.state, state::DONE);
}

/// The kernel's small SNI walk (`client_hello_sni`) agrees with `parse_client_hello` on every
/// real handshake.
#[test]
fn kernel_sni_walk_agrees_with_the_full_parser() {
    use dataplane_common::tls::{ClientHello, client_hello_sni, feed, parse_client_hello};
    let mut checked = 0;
    for v in vectors() {
        let mut dir = fresh();
        let ev = feed(&mut dir, v.c2s.as_slice(), 0, v.c2s.len() as u32);
        if !ev.contains(Events::CLIENT_HELLO) {
            continue;
        }
        let mut full = ClientHello::ZERO;
        assert!(parse_client_hello(&dir, &mut full), "{}", v.name);
        let mut sni = [0u8; 128];
        let n = client_hello_sni(&dir, &mut sni);
        assert_eq!(n, full.sni_len as usize, "{}: SNI length", v.name);
        let kept = n.min(128);
        assert_eq!(&sni[..kept], &full.sni[..kept], "{}: SNI", v.name);
        checked += 1;
    }
    assert!(
        checked >= 10,
        "only {checked} vectors had a ClientHello in one feed"
    );
}

/// The kernel's offer walk (`client_hello_offer`) agrees with `parse_client_hello` on every real
/// handshake: highest offered version, weak classes offered, first ALPN protocol.
#[test]
fn kernel_offer_walk_agrees_with_the_full_parser() {
    use dataplane_common::tls::{
        ALPN_LEN, ClientHello, Offer, client_hello_offer, feed, parse_client_hello,
    };
    let mut checked = 0;
    let mut with_alpn = 0;
    for v in vectors() {
        let mut dir = fresh();
        let ev = feed(&mut dir, v.c2s.as_slice(), 0, v.c2s.len() as u32);
        if !ev.contains(Events::CLIENT_HELLO) {
            continue;
        }
        let mut full = ClientHello::ZERO;
        assert!(parse_client_hello(&dir, &mut full), "{}", v.name);
        let mut offer = Offer::default();
        assert!(client_hello_offer(&dir, &mut offer), "{}", v.name);
        let expected_max = if full.max_supported_version != 0 {
            full.max_supported_version
        } else {
            full.legacy_version
        };
        assert_eq!(offer.max_version, expected_max, "{}: version", v.name);
        assert_eq!(u32::from(offer.weak), full.weak_offered, "{}: weak", v.name);
        assert_eq!(offer.alpn_len, full.alpn_len, "{}: ALPN length", v.name);
        let kept = usize::from(offer.alpn_len).min(ALPN_LEN);
        assert_eq!(
            &offer.alpn[..kept],
            &full.alpn_first[..kept],
            "{}: ALPN",
            v.name
        );
        with_alpn += usize::from(offer.alpn_len > 0);
        checked += 1;
    }
    assert!(checked >= 10, "only {checked} vectors had a ClientHello");
    assert!(with_alpn >= 1, "no vector offers ALPN");
}
