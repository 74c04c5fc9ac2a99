//! Hostile and odd inputs: never a panic, never a loop, never a wrong value.

mod common;

use common::{Rng, feed_chunks, fresh};
use dataplane_common::tls::{
    ClientHello, Direction, Events, HELLO_CAP, ServerHello, feed, groups, hello_flags,
    parse_client_hello, parse_server_hello, state, versions,
};

fn record(typ: u8, body: &[u8]) -> Vec<u8> {
    let mut r = vec![typ, 3, 1];
    r.extend_from_slice(&(body.len() as u16).to_be_bytes());
    r.extend_from_slice(body);
    r
}

fn handshake(typ: u8, body: &[u8]) -> Vec<u8> {
    let mut m = vec![typ];
    m.extend_from_slice(&(body.len() as u32).to_be_bytes()[1..]);
    m.extend_from_slice(body);
    m
}

fn ext(typ: u16, body: &[u8]) -> Vec<u8> {
    let mut e = typ.to_be_bytes().to_vec();
    e.extend_from_slice(&(body.len() as u16).to_be_bytes());
    e.extend_from_slice(body);
    e
}

fn sni(name: &[u8]) -> Vec<u8> {
    let mut b = ((name.len() + 3) as u16).to_be_bytes().to_vec();
    b.push(0);
    b.extend_from_slice(&(name.len() as u16).to_be_bytes());
    b.extend_from_slice(name);
    ext(0, &b)
}

fn alpn(protos: &[&[u8]]) -> Vec<u8> {
    let mut list = vec![];
    for p in protos {
        list.push(p.len() as u8);
        list.extend_from_slice(p);
    }
    let mut b = (list.len() as u16).to_be_bytes().to_vec();
    b.extend_from_slice(&list);
    ext(16, &b)
}

fn supported_versions(vs: &[u16]) -> Vec<u8> {
    let mut b = vec![(vs.len() * 2) as u8];
    for v in vs {
        b.extend_from_slice(&v.to_be_bytes());
    }
    ext(43, &b)
}

fn key_share(shares: &[(u16, usize)]) -> Vec<u8> {
    let mut list = vec![];
    for &(g, n) in shares {
        list.extend_from_slice(&g.to_be_bytes());
        list.extend_from_slice(&(n as u16).to_be_bytes());
        list.extend(std::iter::repeat_n(0x42, n));
    }
    let mut b = (list.len() as u16).to_be_bytes().to_vec();
    b.extend_from_slice(&list);
    ext(51, &b)
}

fn client_hello_body(ciphers: &[u16], exts: &[Vec<u8>]) -> Vec<u8> {
    let mut b = vec![3, 3];
    b.extend_from_slice(&[7; 32]);
    b.push(32);
    b.extend_from_slice(&[9; 32]);
    b.extend_from_slice(&((ciphers.len() * 2) as u16).to_be_bytes());
    for c in ciphers {
        b.extend_from_slice(&c.to_be_bytes());
    }
    b.extend_from_slice(&[1, 0]);
    let all: Vec<u8> = exts.concat();
    b.extend_from_slice(&(all.len() as u16).to_be_bytes());
    b.extend_from_slice(&all);
    b
}

fn server_hello_body(random: [u8; 32], cipher: u16, exts: &[Vec<u8>]) -> Vec<u8> {
    let mut b = vec![3, 3];
    b.extend_from_slice(&random);
    b.push(0);
    b.extend_from_slice(&cipher.to_be_bytes());
    b.push(0);
    let all: Vec<u8> = exts.concat();
    b.extend_from_slice(&(all.len() as u16).to_be_bytes());
    b.extend_from_slice(&all);
    b
}

/// Feeds a stream whole and returns (events, parse result of the ClientHello if any).
fn read_client(stream: &[u8]) -> (Box<Direction>, u32, Option<(bool, ClientHello)>) {
    let mut d = fresh();
    let seen = feed_chunks(&mut d, stream, &mut std::iter::empty());
    let ch = seen.client_hellos.last().copied();
    (d, seen.events, ch)
}

fn ch_stream(ciphers: &[u16], exts: &[Vec<u8>]) -> Vec<u8> {
    record(22, &handshake(1, &client_hello_body(ciphers, exts)))
}

#[test]
fn plain_protocols_are_not_tls() {
    for s in [
        &b"GET / HTTP/1.1\r\nHost: x\r\n\r\n"[..],
        b"SSH-2.0-OpenSSH_9.2\r\n",
        b"PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n",
        b"\x16\x03\x09\x00\x10",         // version 3.9
        b"\x16\x02\x01\x00\x10",         // major 2
        b"\x80\x2e\x01\x03\x01\x00\x15", // SSLv2-framed ClientHello
        b"\x17\x03\x03\x00\x10",         // application data first
    ] {
        let mut d = fresh();
        let ev = feed(&mut d, s, 0, s.len() as u32);
        assert!(ev.contains(Events::NOT_TLS), "{s:?}");
        assert_eq!(d.state, state::NOT_TLS);
        // Afterwards: nothing, at once.
        assert_eq!(feed(&mut d, s, 0, s.len() as u32), Events::NONE);
    }
    // Decided at the first byte that betrays it, even one byte at a time.
    let mut d = fresh();
    assert!(feed(&mut d, &b"G"[..], 0, 1).contains(Events::NOT_TLS));
}

#[test]
fn random_bytes_never_panic_or_spin() {
    let mut rng = Rng(0x1234_5678);
    let mut not_tls = 0;
    for i in 0..3000 {
        let len = 1 + rng.below(3000) as usize;
        let mut data: Vec<u8> = (0..len).map(|_| rng.next() as u8).collect();
        if i % 3 == 0 {
            // Looks like a handshake record header, random after.
            data[0] = 22;
            if len > 2 {
                data[1] = 3;
                data[2] = (rng.below(5)) as u8;
            }
        }
        let mut d = fresh();
        let sizes: Vec<usize> = (0..len).map(|_| 1 + rng.below(200) as usize).collect();
        let seen = feed_chunks(&mut d, &data, &mut sizes.into_iter());
        if seen.state == state::NOT_TLS {
            not_tls += 1;
        }
        for (ok, ch) in &seen.client_hellos {
            if *ok {
                assert!(ch.sni_len as usize <= u16::MAX as usize);
            }
        }
    }
    assert!(not_tls >= 1900, "{not_tls}");
}

#[test]
fn well_formed_synthetic_hello() {
    let s = ch_stream(
        &[0x1a1a, 0x1301, 0xc02f, 0x000a],
        &[
            ext(0x2a2a, &[]),
            sni(b"example.test"),
            alpn(&[b"h2", b"http/1.1"]),
            supported_versions(&[0x3a3a, 0x0304, 0x0303]),
            key_share(&[
                (0x4a4a, 1),
                (groups::X25519MLKEM768, 1216),
                (groups::X25519, 32),
            ]),
            ext(23, &[]), // zero-length extension: legal (extended_master_secret)
        ],
    );
    assert!(s.len() > 1400, "post-quantum sized: {}", s.len());
    let (d, ev, ch) = read_client(&s);
    assert!(ev & Events::CLIENT_HELLO.0 != 0);
    let (ok, ch) = ch.unwrap();
    assert!(ok, "{:#x}", ch.flags);
    assert_eq!(ch.sni(), b"example.test");
    assert_eq!(ch.alpn(), b"h2");
    assert_eq!(ch.alpn_count, 2);
    assert_eq!(ch.ciphers(), &[0x1301, 0xc02f, 0x000a]);
    assert_eq!(ch.max_supported_version, versions::TLS13);
    assert_eq!(ch.ext_count, 5);
    assert!(ch.flags & hello_flags::GREASE != 0);
    assert!(ch.flags & hello_flags::PQ_KEY_SHARE != 0);
    assert_eq!(
        &ch.key_share_groups[..2],
        &[groups::X25519MLKEM768, groups::X25519]
    );
    assert!(ch.weak_offered != 0);
    assert_eq!(d.state, state::ACTIVE);

    // The same message fragmented over three records and fed in odd pieces.
    let msg = handshake(
        1,
        &client_hello_body(
            &[0x1301],
            &[sni(b"frag.test"), key_share(&[(0x11ec, 1216)])],
        ),
    );
    let mut stream = vec![];
    for part in [&msg[..3], &msg[3..700], &msg[700..]] {
        stream.extend(record(22, part));
    }
    for n in [1usize, 2, 5, 7, 333, 1500] {
        let mut d = fresh();
        let seen = feed_chunks(&mut d, &stream, &mut std::iter::repeat(n));
        let (ok, ch) = seen.client_hellos[0];
        assert!(ok);
        assert_eq!(ch.sni(), b"frag.test", "chunks of {n}");
    }
}

#[test]
fn malformed_extensions_report_nothing() {
    let cases: Vec<(&str, Vec<Vec<u8>>, u32)> = vec![
        (
            "duplicate SNI",
            vec![sni(b"a.test"), sni(b"b.test")],
            hello_flags::DUPLICATE_EXTENSION,
        ),
        (
            "duplicate ALPN",
            vec![alpn(&[b"h2"]), alpn(&[b"h2"])],
            hello_flags::DUPLICATE_EXTENSION,
        ),
        ("empty SNI extension", vec![ext(0, &[])], 0),
        ("empty host name", vec![sni(b"")], 0),
        (
            "SNI list length lies",
            vec![ext(0, &[0, 9, 0, 0, 3, b'a', b'b', b'c'])],
            0,
        ),
        (
            "SNI name length lies",
            vec![ext(0, &[0, 6, 0, 0, 9, b'a', b'b', b'c'])],
            0,
        ),
        ("ALPN empty protocol", vec![ext(16, &[0, 1, 0])], 0),
        ("ALPN list lies", vec![ext(16, &[0, 9, 2, b'h', b'2'])], 0),
        ("supported_versions odd", vec![ext(43, &[3, 3, 4, 3])], 0),
        (
            "supported_versions only GREASE",
            vec![supported_versions(&[0x0a0a])],
            0,
        ),
        (
            "key share length lies",
            vec![ext(51, &[0, 8, 0, 29, 0, 40, 1, 2, 3, 4])],
            0,
        ),
        (
            "extension longer than block",
            vec![vec![0, 0, 0, 200, 1, 2]],
            0,
        ),
    ];
    for (what, exts, flag) in cases {
        let (_, ev, ch) = read_client(&ch_stream(&[0x1301], &exts));
        assert!(ev & Events::CLIENT_HELLO.0 != 0, "{what}");
        let (ok, ch) = ch.unwrap();
        assert!(!ok, "{what}");
        assert!(ch.flags & hello_flags::MALFORMED != 0, "{what}");
        assert!(ch.flags & flag == flag, "{what}");
        assert_eq!(
            ch.sni_len, 0,
            "{what}: no SNI reported from a malformed hello"
        );
    }
}

#[test]
fn malformed_framing() {
    // Record longer than 2^14 + 2048.
    let mut d = fresh();
    let ev = feed(&mut d, &[22u8, 3, 1, 0x50, 0x01][..], 0, 5);
    assert!(ev.contains(Events::MALFORMED));
    assert_eq!(d.state, state::MALFORMED);
    // First handshake message is neither hello.
    let (d, ev, _) = read_client(&record(22, &handshake(11, &[0, 0, 0])));
    assert!(ev & Events::MALFORMED.0 != 0 && d.state == state::MALFORMED);
    // ChangeCipherSpec in the middle of a handshake message.
    let msg = handshake(1, &client_hello_body(&[0x1301], &[sni(b"x.test")]));
    let mut s = record(22, &msg[..20]);
    s.extend(record(20, &[1]));
    let (d, ev, _) = read_client(&s);
    assert!(ev & Events::MALFORMED.0 != 0 && d.state == state::MALFORMED);
    // Unknown record type after the start.
    let mut s = ch_stream(&[0x1301], &[]);
    s.extend(record(99, &[1, 2]));
    let (d, _, _) = read_client(&s);
    assert_eq!(d.state, state::MALFORMED);
    // A handshake length that runs past the stream: no event, no value.
    let mut body = client_hello_body(&[0x1301], &[sni(b"x.test")]);
    let mut m = vec![1, 0, 0x10, 0];
    m.append(&mut body);
    let (d, ev, ch) = read_client(&record(22, &m));
    assert_eq!(ev & Events::CLIENT_HELLO.0, 0);
    assert!(ch.is_none());
    assert_eq!(d.state, state::ACTIVE);
    // Session id length > 32 / cipher list odd / no compression method.
    for bad in [
        {
            let mut b = client_hello_body(&[0x1301], &[]);
            b[34] = 33;
            b
        },
        {
            let mut b = client_hello_body(&[0x1301], &[]);
            b[68] = 3; // cipher list length 3
            b
        },
    ] {
        let (_, _, ch) = read_client(&record(22, &handshake(1, &bad)));
        assert!(!ch.unwrap().0);
    }
    // Zero-length records and alerts before the hello are skipped.
    let mut s = record(22, &[]);
    s.extend(record(21, &[1, 0]));
    s.extend(ch_stream(&[0x1301], &[sni(b"z.test")]));
    let (_, ev, ch) = read_client(&s);
    assert!(ev & Events::ALERT.0 != 0);
    assert_eq!(ch.unwrap().1.sni(), b"z.test");
}

#[test]
fn oversized_hello_is_truncated_not_wrong() {
    // SNI first, then 5 KB of padding: over HELLO_CAP.
    let pad = ext(21, &vec![0u8; 5000]);
    let s = ch_stream(
        &[0x1301, 0xc02f],
        &[sni(b"big.test"), pad, supported_versions(&[0x0304])],
    );
    assert!(s.len() > HELLO_CAP + 100);
    for n in [1usize, 100, 1448, 65536] {
        let mut d = fresh();
        let seen = feed_chunks(&mut d, &s, &mut std::iter::repeat(n));
        assert!(seen.events & Events::TRUNCATED.0 != 0);
        let (ok, ch) = seen.client_hellos[0];
        assert!(ok);
        assert!(ch.flags & hello_flags::TRUNCATED != 0);
        assert_eq!(ch.sni(), b"big.test");
        assert_eq!(ch.ciphers(), &[0x1301, 0xc02f]);
        // supported_versions is past the cut: unknown, not the legacy version.
        assert_eq!(ch.max_supported_version, 0);
    }
    // A long SNI is cut to 128 bytes and flagged.
    let name = vec![b'a'; 200];
    let (_, _, ch) = read_client(&ch_stream(&[0x1301], &[sni(&name)]));
    let (ok, ch) = ch.unwrap();
    assert!(ok);
    assert_eq!(ch.sni_len, 200);
    assert_eq!(ch.sni(), &name[..128]);
    assert!(ch.flags & hello_flags::SNI_TRUNCATED != 0);
}

#[test]
fn server_hello_versions_and_retry() {
    let hrr = dataplane_common::tls::HRR_RANDOM;
    // TLS 1.3 ServerHello: the direction ends right after it.
    let share = [&[0u8, 29, 0, 32][..], &[0x42; 32]].concat();
    let sh13 = record(
        22,
        &handshake(
            2,
            &server_hello_body([5; 32], 0x1302, &[ext(43, &[3, 4]), ext(51, &share)]),
        ),
    );
    let mut d = fresh();
    let seen = feed_chunks(&mut d, &sh13, &mut std::iter::empty());
    let sh = seen.server_hello().unwrap();
    assert_eq!(
        (sh.version, sh.cipher, sh.key_share_group),
        (versions::TLS13, 0x1302, 29)
    );
    assert_eq!(d.state, state::DONE);
    // TLS 1.2 (no supported_versions): stays active for Certificate & co.
    let sh12 = record(22, &handshake(2, &server_hello_body([5; 32], 0xc02f, &[])));
    let mut d = fresh();
    let seen = feed_chunks(&mut d, &sh12, &mut std::iter::empty());
    assert_eq!(seen.server_hello().unwrap().version, versions::TLS12);
    assert_eq!(d.state, state::ACTIVE);
    // HelloRetryRequest, compatibility CCS, then the real ServerHello: all in one chunk.
    let mut s = record(
        22,
        &handshake(
            2,
            &server_hello_body(hrr, 0x1301, &[ext(43, &[3, 4]), ext(51, &[0, 23])]),
        ),
    );
    s.extend(record(20, &[1]));
    s.extend(sh13.clone());
    let mut d = fresh();
    let seen = feed_chunks(&mut d, &s, &mut std::iter::empty());
    assert!(seen.events & Events::HELLO_RETRY.0 != 0);
    assert_eq!(seen.server_hellos.len(), 2);
    assert_eq!(seen.server_hellos[0].1.hello_retry, 1);
    assert_eq!(seen.server_hellos[0].1.key_share_group, 23);
    assert_eq!(seen.server_hello().unwrap().version, versions::TLS13);
    assert_eq!(d.state, state::DONE);
    // Malformed selected_version: parse fails, no version reported.
    let bad = record(
        22,
        &handshake(
            2,
            &server_hello_body([5; 32], 0x1301, &[ext(43, &[3, 4, 0])]),
        ),
    );
    let mut d = fresh();
    let seen = feed_chunks(&mut d, &bad, &mut std::iter::empty());
    assert!(!seen.server_hellos[0].0);
    assert!(seen.events & Events::MALFORMED.0 != 0);
    let mut out = ServerHello::ZERO;
    assert!(!parse_server_hello(&d, &mut out));
    assert_eq!(out.version, 0);
    // Parsing without a buffered hello says no.
    let d = fresh();
    let mut ch = ClientHello::ZERO;
    assert!(!parse_client_hello(&d, &mut ch));
}

/// Mutations of real handshakes: whatever comes out, it comes out without a panic, and a hello
/// that parses reports values that are in the bytes.
#[test]
fn mutated_real_handshakes() {
    let dir = std::path::PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("tests/data/handshakes");
    let mut rng = Rng(77);
    for entry in std::fs::read_dir(dir).unwrap() {
        let path = entry.unwrap().path();
        if path.extension().is_some_and(|e| e == "json") {
            continue;
        }
        let orig = std::fs::read(&path).unwrap();
        for _ in 0..150 {
            let mut data = orig.clone();
            for _ in 0..1 + rng.below(4) {
                let i = rng.below(data.len() as u64) as usize;
                match rng.below(3) {
                    0 => data[i] ^= 1 << rng.below(8),
                    1 => data[i] = rng.next() as u8,
                    _ => data.truncate(i.max(1)),
                }
            }
            let mut d = fresh();
            let sizes: Vec<usize> = (0..data.len())
                .map(|_| 1 + rng.below(300) as usize)
                .collect();
            let seen = feed_chunks(&mut d, &data, &mut sizes.into_iter());
            for (ok, ch) in &seen.client_hellos {
                if *ok && ch.sni_len > 0 {
                    let name = ch.sni();
                    assert!(data.windows(name.len()).any(|w| w == name));
                }
            }
        }
    }
}

/// A peer that answers with an alert before any handshake (openssl s_server on an empty
/// connection) speaks TLS: not plaintext.
#[test]
fn an_alert_first_stream_is_tls_not_plaintext() {
    let mut dir = fresh();
    let alert = [0x15, 0x03, 0x03, 0x00, 0x02, 0x02, 0x32];
    let ev = feed(&mut dir, alert.as_slice(), 0, alert.len() as u32);
    assert!(ev.contains(Events::ALERT), "{ev:?}");
    assert!(!ev.contains(Events::NOT_TLS), "{ev:?}");
    let mut other = fresh();
    let smtp = b"220 mail.example ESMTP\r\n";
    let ev = feed(&mut other, smtp.as_slice(), 0, smtp.len() as u32);
    assert!(ev.contains(Events::NOT_TLS), "{ev:?}");
}
