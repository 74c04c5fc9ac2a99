//! Hand-written hostile and edge-case messages, each with its exact outcome.

mod dns_support;
use dataplane_common::dns::{
    Answer, HEADER_LEN, MAX_ADDRS, MAX_CHAIN, MAX_NAME_STEPS, MAX_RECORDS, MSG_LEN, Malformed,
    NAME_LEN, NameError, NameReader, NameStep, classes, decode_name, full_key, header, name_keys,
    parse_query, parse_response, read_name, rr_fixed, skip_question, types,
};
use dataplane_common::sni_policy::{MAX_SUFFIXES, name_key};
use dns_support::wire;

const RESPONSE: u16 = 0x8180; // QR, RD, RA, NOERROR
const TC: u16 = 0x0200;

/// Message bytes, written in order.
#[derive(Clone)]
struct B(Vec<u8>);

impl B {
    fn header(flags: u16, qd: u16, an: u16) -> B {
        let mut v = vec![0x12, 0x34];
        for x in [flags, qd, an, 0, 0] {
            v.extend_from_slice(&x.to_be_bytes());
        }
        B(v)
    }
    /// A response header and the question `qname` A IN.
    fn response(qname: &str, an: u16) -> B {
        B::header(RESPONSE, 1, an)
            .name(qname)
            .u16(types::A)
            .u16(classes::IN)
    }
    fn pos(&self) -> usize {
        self.0.len()
    }
    fn raw(mut self, b: &[u8]) -> B {
        self.0.extend_from_slice(b);
        self
    }
    fn u16(self, v: u16) -> B {
        self.raw(&v.to_be_bytes())
    }
    fn u32(self, v: u32) -> B {
        self.raw(&v.to_be_bytes())
    }
    fn name(self, s: &str) -> B {
        self.raw(&wire(s))
    }
    fn ptr(self, to: usize) -> B {
        self.u16(0xc000 | to as u16)
    }
    /// A record (owner bytes already written): type, class, TTL, RDATA.
    fn fixed(self, rtype: u16, class: u16, ttl: u32, rdata: &[u8]) -> B {
        self.u16(rtype)
            .u16(class)
            .u32(ttl)
            .u16(rdata.len() as u16)
            .raw(rdata)
    }
    fn a(self, owner: &str, ttl: u32, ip: [u8; 4]) -> B {
        self.name(owner).fixed(types::A, classes::IN, ttl, &ip)
    }
    fn aaaa(self, owner: &str, ttl: u32, ip: [u8; 16]) -> B {
        self.name(owner).fixed(types::AAAA, classes::IN, ttl, &ip)
    }
    fn cname(self, owner: &str, ttl: u32, target: &str) -> B {
        self.name(owner)
            .fixed(types::CNAME, classes::IN, ttl, &wire(target))
    }
}

fn buf(bytes: &[u8]) -> Box<[u8; MSG_LEN]> {
    let mut m = Box::new([0u8; MSG_LEN]);
    let n = bytes.len().min(MSG_LEN);
    m[..n].copy_from_slice(&bytes[..n]);
    m
}

fn parse_len(bytes: &[u8], len: usize) -> (Result<(), Malformed>, Box<Answer>) {
    let mut a = Box::new(Answer::ZERO);
    let r = parse_response(&buf(bytes), len, &mut a);
    if r.is_err() {
        assert_eq!(
            (a.chain_len, a.addrs_len),
            (0, 0),
            "an error learns nothing"
        );
    }
    (r, a)
}

fn parse(b: &B) -> (Result<(), Malformed>, Box<Answer>) {
    parse_len(&b.0, b.0.len())
}

fn name_at(bytes: &[u8], pos: usize) -> Result<(usize, String), NameError> {
    let mut out = [0u8; NAME_LEN];
    let (end, n) = decode_name(&buf(bytes), bytes.len(), pos, &mut out)?;
    Ok((end, String::from_utf8(out[..n].to_vec()).unwrap()))
}

fn v4(a: &Answer, i: usize) -> [u8; 4] {
    let x = a.addrs[i].addr;
    assert_eq!(&x[..12], &[0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0xff, 0xff]);
    [x[12], x[13], x[14], x[15]]
}

fn chain(a: &Answer) -> Vec<(String, u32)> {
    a.chain_names()
        .iter()
        .map(|c| (String::from_utf8(c.text().to_vec()).unwrap(), c.ttl))
        .collect()
}

#[test]
fn a_plain_answer() {
    let b = B::response("www.example.test", 1).a("www.example.test", 300, [192, 0, 2, 1]);
    let (r, a) = parse(&b);
    assert_eq!(r, Ok(()));
    assert_eq!(a.id, 0x1234);
    assert_eq!((a.qtype, a.qclass), (types::A, classes::IN));
    assert_eq!(a.qname_key, name_key(b"www.example.test"));
    assert_eq!(chain(&a), [("www.example.test".to_string(), u32::MAX)]);
    assert_eq!(a.addrs_len, 1);
    assert_eq!(v4(&a, 0), [192, 0, 2, 1]);
    assert_eq!((a.addrs[0].ttl, a.addrs[0].chain_index), (300, 0));
    assert_eq!((a.ignored, a.dropped_addrs, a.truncated), (0, 0, false));
}

#[test]
fn compression_loops_are_refused() {
    // A pointer to itself as the question name.
    let b = B::header(RESPONSE, 1, 0).ptr(12).u16(1).u16(1);
    assert_eq!(name_at(&b.0, 12), Err(NameError::Pointer));
    assert_eq!(
        parse(&b).0,
        Err(Malformed::QuestionName(NameError::Pointer))
    );

    // Two pointers pointing at each other (as an answer's owner).
    let q = B::response("a.test", 1);
    let p = q.pos();
    let b = q
        .clone()
        .ptr(p + 2)
        .ptr(p)
        .fixed(types::A, classes::IN, 1, &[1, 2, 3, 4]);
    assert_eq!(name_at(&b.0, p), Err(NameError::Pointer));
    assert_eq!(name_at(&b.0, p + 2), Err(NameError::Pointer));
    assert_eq!(parse(&b).0, Err(Malformed::OwnerName(NameError::Pointer)));

    // A label, then a pointer back to the label.
    let b = q
        .clone()
        .raw(&[1, b'x'])
        .ptr(p)
        .fixed(types::A, classes::IN, 1, &[1, 2, 3, 4]);
    assert_eq!(name_at(&b.0, p), Err(NameError::Pointer));
    assert_eq!(parse(&b).0, Err(Malformed::OwnerName(NameError::Pointer)));

    // Back into a name that itself points forward again: each jump must go strictly below
    // the previous one.
    let b = q.clone().raw(&[1, b'x']).ptr(p + 4).raw(&[1, b'y']).ptr(p);
    assert_eq!(name_at(&b.0, p + 4), Err(NameError::Pointer));
}

#[test]
fn forward_pointers_are_refused() {
    // The question name points at a valid name after the question.
    let b = B::header(RESPONSE, 1, 0)
        .ptr(18)
        .u16(1)
        .u16(1)
        .name("later.test");
    assert_eq!(name_at(&b.0, 18).unwrap().1, "later.test");
    assert_eq!(name_at(&b.0, 12), Err(NameError::Pointer));
    assert_eq!(
        parse(&b).0,
        Err(Malformed::QuestionName(NameError::Pointer))
    );
    // A CNAME target pointing at a name further on.
    let q = B::response("a.test", 2);
    let target_at = q.pos() + wire("a.test").len() + 10 + 2;
    let b = q
        .name("a.test")
        .fixed(
            types::CNAME,
            classes::IN,
            60,
            &(0xc000 | target_at as u16).to_be_bytes(),
        )
        .a("b.test", 60, [1, 1, 1, 1]);
    assert_eq!(parse(&b).0, Err(Malformed::CnameTarget(NameError::Pointer)));
}

#[test]
fn pointers_past_the_end_are_refused() {
    let b = B::header(RESPONSE, 1, 0).raw(&[0xff, 0xff]).u16(1).u16(1);
    assert_eq!(name_at(&b.0, 12), Err(NameError::PointerPastEnd));
    assert_eq!(
        parse(&b).0,
        Err(Malformed::QuestionName(NameError::PointerPastEnd))
    );
    // Past `len` though inside the buffer.
    let b = B::header(RESPONSE, 1, 0).ptr(100).u16(1).u16(1);
    assert_eq!(name_at(&b.0, 12), Err(NameError::PointerPastEnd));
    // A pointer whose second byte is missing.
    let b = B::header(RESPONSE, 1, 0).raw(&[0xc0]);
    assert_eq!(name_at(&b.0, 12), Err(NameError::End));
    assert_eq!(parse(&b).0, Err(Malformed::QuestionName(NameError::End)));
    // Backwards into the header is a legal pointer: the header bytes read as a name.
    let b = B::header(0x0000, 0, 0).ptr(4);
    assert_eq!(name_at(&b.0, 12), Ok((14, String::new())));
}

#[test]
fn label_types_and_lengths() {
    let ok = B::header(RESPONSE, 1, 0)
        .raw(&[63])
        .raw(&[b'a'; 63])
        .raw(&[0]);
    assert_eq!(name_at(&ok.0, 12).unwrap().1, "a".repeat(63));
    let b = B::header(RESPONSE, 1, 0)
        .raw(&[64])
        .raw(&[b'a'; 64])
        .raw(&[0]);
    assert_eq!(name_at(&b.0, 12), Err(NameError::ExtendedLabel));
    assert_eq!(
        parse(&b).0,
        Err(Malformed::QuestionName(NameError::ExtendedLabel))
    );
    for (byte, e) in [
        (0x40, NameError::ExtendedLabel),
        (0x41, NameError::ExtendedLabel),
        (0x7f, NameError::ExtendedLabel),
        (0x80, NameError::ReservedLabel),
        (0xbf, NameError::ReservedLabel),
    ] {
        let b = B::header(RESPONSE, 1, 0).raw(&[1, b'a', byte, 0, 0, 0, 0]);
        assert_eq!(name_at(&b.0, 12), Err(e), "{byte:#x}");
    }
    // In an answer's owner name.
    let b = B::response("a.test", 1)
        .raw(&[0x80, 0])
        .fixed(1, 1, 1, &[1, 2, 3, 4]);
    assert_eq!(
        parse(&b).0,
        Err(Malformed::OwnerName(NameError::ReservedLabel))
    );
}

fn long_name(total: usize) -> String {
    // Labels of 63 and a shorter last one: `total` text bytes.
    let mut s = String::new();
    while s.len() < total {
        if !s.is_empty() {
            s.push('.');
        }
        let n = (total - s.len()).min(63);
        s.push_str(&"x".repeat(n));
    }
    assert_eq!(s.len(), total);
    s
}

#[test]
fn names_longer_than_253_bytes_are_refused() {
    let n253 = long_name(253);
    let b = B::header(RESPONSE, 1, 0).name(&n253).u16(1).u16(1);
    assert_eq!(name_at(&b.0, 12).unwrap().1, n253);
    assert_eq!(parse(&b).0, Ok(()));
    for total in [254, 255, 300] {
        let b = B::header(RESPONSE, 1, 0)
            .name(&long_name(total))
            .u16(1)
            .u16(1);
        assert_eq!(name_at(&b.0, 12), Err(NameError::TooLong), "{total}");
        assert_eq!(
            parse(&b).0,
            Err(Malformed::QuestionName(NameError::TooLong))
        );
    }
    // One-byte labels: 127 of them are 253 bytes, 128 are too many.
    let ones = |n: usize| vec!["a"; n].join(".");
    let b = B::header(RESPONSE, 1, 0).name(&ones(127));
    assert_eq!(name_at(&b.0, 12).unwrap().1.len(), 253);
    let b = B::header(RESPONSE, 1, 0).name(&ones(128));
    assert_eq!(name_at(&b.0, 12), Err(NameError::TooLong));
    // Reaching 254 through a pointer.
    let q = B::header(RESPONSE, 1, 0)
        .name(&long_name(250))
        .u16(1)
        .u16(1);
    let b = q.clone().raw(&[2, b'a', b'b']).ptr(12);
    assert_eq!(name_at(&b.0, q.pos()).unwrap().1.len(), 253);
    let b = q.clone().raw(&[3, b'a', b'b', b'c']).ptr(12);
    assert_eq!(name_at(&b.0, q.pos()), Err(NameError::TooLong));
}

#[test]
fn a_dot_inside_a_label_is_refused() {
    let b = B::header(RESPONSE, 1, 0)
        .raw(&[3, b'a', b'.', b'b', 4])
        .raw(b"test")
        .raw(&[0]);
    assert_eq!(name_at(&b.0, 12), Err(NameError::DotInLabel));
    let b = b.u16(1).u16(1);
    assert_eq!(
        parse(&b).0,
        Err(Malformed::QuestionName(NameError::DotInLabel))
    );
    // Owner and CNAME target.
    let b = B::response("a.test", 1)
        .raw(&[3, b'a', b'.', b'b', 0])
        .fixed(1, 1, 1, &[1, 2, 3, 4]);
    assert_eq!(
        parse(&b).0,
        Err(Malformed::OwnerName(NameError::DotInLabel))
    );
    let b = B::response("a.test", 1).name("a.test").fixed(
        types::CNAME,
        classes::IN,
        1,
        &[3, b'a', b'.', b'b', 0],
    );
    assert_eq!(
        parse(&b).0,
        Err(Malformed::CnameTarget(NameError::DotInLabel))
    );
    // Other odd bytes are kept (and keyed) as they are.
    let b = B::header(RESPONSE, 1, 0).raw(&[3, b'a', b' ', 0xe9, 0]);
    assert_eq!(name_keys_of(&b.0, 12), vec![name_key(b"a \xe9")]);
}

fn name_keys_of(bytes: &[u8], pos: usize) -> Vec<u64> {
    let mut text = [0u8; NAME_LEN];
    let (_, n) = read_name(&buf(bytes), bytes.len(), pos, &mut text).unwrap();
    let mut keys = [0u64; MAX_SUFFIXES + 1];
    let k = name_keys(&text, n, &mut keys);
    keys[..k].to_vec()
}

#[test]
fn truncated_messages() {
    let full = B::response("www.example.test", 1).a("www.example.test", 60, [10, 0, 0, 1]);
    let q_name_end = HEADER_LEN + wire("www.example.test").len();
    let q_end = q_name_end + 4;
    let owner_end = q_end + wire("www.example.test").len();
    let cases = [
        (0, Malformed::Header),
        (11, Malformed::Header),
        (12, Malformed::QuestionName(NameError::End)),
        (q_name_end - 1, Malformed::QuestionName(NameError::End)),
        (q_name_end, Malformed::Question),
        (q_end - 1, Malformed::Question),
        // In the owner name, the fixed part, the RDATA.
        (q_end, Malformed::Record),
        (q_end + 3, Malformed::Record),
        (owner_end + 5, Malformed::Record),
        (owner_end + 10, Malformed::Record),
        (full.pos() - 1, Malformed::Record),
    ];
    for (len, want) in cases {
        assert_eq!(parse_len(&full.0, len).0, Err(want), "cut at {len}");
    }
    assert_eq!(parse_len(&full.0, full.pos()).0, Ok(()));
    assert!(header(&buf(&full.0), 11).is_none());
    assert_eq!(skip_question(&buf(&full.0), full.pos(), 12), Some(q_end));
    assert_eq!(skip_question(&buf(&full.0), q_end - 1, 12), None);
    let rr = rr_fixed(&buf(&full.0), full.pos(), owner_end).unwrap();
    assert_eq!((rr.rtype, rr.class, rr.ttl), (types::A, classes::IN, 60));
    assert_eq!(
        (rr.rdata, rr.rdlen, rr.next),
        (owner_end + 10, 4, full.pos())
    );
    assert_eq!(rr_fixed(&buf(&full.0), full.pos() - 1, owner_end), None);
    assert_eq!(rr_fixed(&buf(&full.0), owner_end + 9, owner_end), None);
}

#[test]
fn an_ancount_that_lies() {
    let b = B::header(RESPONSE, 1, 3)
        .name("a.test")
        .u16(1)
        .u16(1)
        .a("a.test", 60, [10, 0, 0, 1]);
    assert_eq!(parse(&b).0, Err(Malformed::Record));
    // Announced as truncated by the server (TC): the complete record is kept.
    let mut tc = b.clone();
    tc.0[2] |= (TC >> 8) as u8;
    assert!(header(&buf(&tc.0), tc.pos()).unwrap().truncated());
    let (r, a) = parse(&tc);
    assert_eq!(r, Ok(()));
    assert!(a.truncated);
    assert_eq!((a.addrs_len, v4(&a, 0)), (1, [10, 0, 0, 1]));
    // TC does not excuse a record that lies about itself.
    let mut tc = B::response("a.test", 1)
        .name("a.test")
        .fixed(1, 1, 1, &[1, 2, 3, 4, 5]);
    tc.0[2] |= (TC >> 8) as u8;
    assert_eq!(parse(&tc).0, Err(Malformed::AddressLength));
}

#[test]
fn address_lengths_must_match_the_type() {
    let b =
        B::response("a.test", 1)
            .name("a.test")
            .fixed(types::A, classes::IN, 1, &[1, 2, 3, 4, 5]);
    assert_eq!(parse(&b).0, Err(Malformed::AddressLength));
    let b = B::response("a.test", 1)
        .name("a.test")
        .fixed(types::AAAA, classes::IN, 1, &[0; 4]);
    assert_eq!(parse(&b).0, Err(Malformed::AddressLength));
    // Also for a record of another name: the message is broken.
    let b = B::response("a.test", 1)
        .name("b.test")
        .fixed(types::A, classes::IN, 1, &[0; 3]);
    assert_eq!(parse(&b).0, Err(Malformed::AddressLength));
    // Another class has other formats: ignored.
    let b = B::response("a.test", 1)
        .name("a.test")
        .fixed(types::A, classes::CH, 1, &[0; 5]);
    let (r, a) = parse(&b);
    assert_eq!((r, a.addrs_len, a.ignored), (Ok(()), 0, 1));
}

#[test]
fn cname_rdata_must_hold_exactly_the_target() {
    let q = B::response("a.test", 2);
    let target = wire("b.test");
    // RDLENGTH one more than the name (a stray byte after it).
    let mut rdata = target.clone();
    rdata.push(0);
    let b = q
        .clone()
        .name("a.test")
        .fixed(types::CNAME, classes::IN, 1, &rdata)
        .a("b.test", 1, [1; 4]);
    assert_eq!(parse(&b).0, Err(Malformed::CnameLength));
    // RDLENGTH one less: the name runs on past the RDATA.
    let b = q
        .clone()
        .name("a.test")
        .u16(types::CNAME)
        .u16(classes::IN)
        .u32(1)
        .u16(target.len() as u16 - 1)
        .raw(&target)
        .a("b.test", 1, [1; 4]);
    assert_eq!(parse(&b).0, Err(Malformed::CnameLength));
    // ... and past the end of the message.
    let b = B::response("a.test", 1)
        .name("a.test")
        .u16(types::CNAME)
        .u16(classes::IN)
        .u32(1)
        .u16(target.len() as u16 - 1)
        .raw(&target[..target.len() - 1]);
    assert_eq!(parse(&b).0, Err(Malformed::CnameTarget(NameError::End)));
    // Exact, and compressed into the question: fine.
    let b = q
        .clone()
        .name("a.test")
        .fixed(types::CNAME, classes::IN, 1, &[1, b'b', 0xc0, 14])
        .a("b.test", 1, [1; 4]);
    let (r, a) = parse(&b);
    assert_eq!(r, Ok(()));
    assert_eq!(chain(&a)[1].0, "b.test");
    assert_eq!(a.addrs_len, 1);
    // A CNAME of a name not on the chain is not even read.
    let b = B::response("a.test", 1)
        .name("x.test")
        .fixed(types::CNAME, classes::IN, 1, &[0xff; 3]);
    let (r, a) = parse(&b);
    assert_eq!((r, a.ignored), (Ok(()), 1));
}

#[test]
fn records_of_other_names_are_never_learned() {
    let b = B::response("www.example.test", 4)
        .a("bank.test", 60, [192, 0, 2, 66])
        .a("example.test", 60, [192, 0, 2, 67])
        .a("x.www.example.test", 60, [192, 0, 2, 68])
        .a("www.example.test", 60, [192, 0, 2, 1]);
    let (r, a) = parse(&b);
    assert_eq!(r, Ok(()));
    assert_eq!((a.addrs_len, a.ignored), (1, 3));
    assert_eq!(v4(&a, 0), [192, 0, 2, 1]);
    // A CNAME from a foreign name into the chain, and an address before the CNAME that would
    // have put its owner on the chain: both ignored.
    let b = B::response("a.test", 4)
        .cname("evil.test", 60, "a.test")
        .a("b.test", 60, [10, 0, 0, 2])
        .cname("a.test", 60, "b.test")
        .a("evil.test", 60, [10, 0, 0, 3]);
    let (r, a) = parse(&b);
    assert_eq!(r, Ok(()));
    assert_eq!(chain(&a).len(), 2);
    assert_eq!((a.addrs_len, a.ignored), (0, 3));
    // Authority and additional records are never read.
    let mut b = B::response("a.test", 1)
        .a("a.test", 60, [10, 0, 0, 1])
        .a("a.test", 60, [10, 0, 0, 9])
        .a("a.test", 60, [10, 0, 0, 8]);
    b.0[9] = 1; // NSCOUNT
    b.0[11] = 1; // ARCOUNT
    let (r, a) = parse(&b);
    assert_eq!((r, a.addrs_len, a.ignored), (Ok(()), 1, 0));
}

#[test]
fn error_responses_and_other_opcodes_teach_nothing() {
    let with_flags = |flags: u16| {
        B::header(flags, 1, 1)
            .name("a.test")
            .u16(1)
            .u16(1)
            .a("a.test", 60, [10, 0, 0, 1])
    };
    for (flags, want) in [
        (0x8183, Malformed::Rcode(3)),
        (0x8182, Malformed::Rcode(2)),
        (0x8185, Malformed::Rcode(5)),
        (0x8000 | (2 << 11), Malformed::Opcode(2)),
        (0x8000 | (4 << 11), Malformed::Opcode(4)),
        (0x0100, Malformed::NotResponse),
    ] {
        let (r, a) = parse(&with_flags(flags));
        assert_eq!(r, Err(want), "{flags:#x}");
        assert!(want.is_not_answer());
        assert_eq!(a.id, 0x1234);
    }
    assert!(!Malformed::Record.is_not_answer());
    for qd in [0, 2] {
        let mut b = with_flags(RESPONSE);
        b.0[5] = qd;
        assert_eq!(parse(&b).0, Err(Malformed::Questions(u16::from(qd))));
    }
}

#[test]
fn queries() {
    let q = B::header(0x0100, 1, 0)
        .name("WWW.Example.test")
        .u16(types::AAAA)
        .u16(classes::IN);
    assert_eq!(parse(&q).0, Err(Malformed::NotResponse));
    let got = parse_query(&buf(&q.0), q.pos()).unwrap();
    assert_eq!(
        (got.id, got.qtype, got.qclass),
        (0x1234, types::AAAA, classes::IN)
    );
    assert_eq!(got.qname_key, name_key(b"www.example.test"));
    // With an EDNS OPT record in the additional section.
    let mut e = q.clone().raw(&[0]).fixed(types::OPT, 1232, 0, &[]);
    e.0[11] = 1;
    assert_eq!(parse_query(&buf(&e.0), e.pos()), Some(got));
    // Not queries.
    let r = B::response("a.test", 0);
    assert_eq!(parse_query(&buf(&r.0), r.pos()), None);
    let mut op = q.clone();
    op.0[2] |= 5 << 3; // opcode UPDATE
    assert_eq!(parse_query(&buf(&op.0), op.pos()), None);
    let mut two = q.clone();
    two.0[5] = 2;
    assert_eq!(parse_query(&buf(&two.0), two.pos()), None);
    assert_eq!(parse_query(&buf(&q.0), q.pos() - 1), None);
    assert_eq!(parse_query(&buf(&q.0), 11), None);
}

#[test]
fn addresses_past_max_addrs_are_dropped() {
    let n = MAX_ADDRS + 4;
    let mut b = B::response("a.test", n as u16);
    for i in 0..n {
        b = b.a("a.test", 60, [10, 0, 0, i as u8]);
    }
    let (r, a) = parse(&b);
    assert_eq!(r, Ok(()));
    assert_eq!((usize::from(a.addrs_len), a.dropped_addrs), (MAX_ADDRS, 4));
    for i in 0..MAX_ADDRS {
        assert_eq!(v4(&a, i), [10, 0, 0, i as u8]);
    }
}

#[test]
fn keys_ignore_case_and_a_trailing_dot() {
    let want = [
        name_key(b"a.example.test"),
        name_key(b".example.test"),
        name_key(b".test"),
    ];
    for s in [
        "a.example.test",
        "A.Example.TEST",
        "a.example.test.",
        "A.EXAMPLE.TEST.",
    ] {
        let mut text = [0u8; NAME_LEN];
        text[..s.len()].copy_from_slice(s.as_bytes());
        let mut keys = [0u64; MAX_SUFFIXES + 1];
        assert_eq!(name_keys(&text, s.len(), &mut keys), 3, "{s}");
        assert_eq!(keys[..3], want, "{s}");
        assert_eq!(full_key(&text, s.len()), want[0], "{s}");
    }
    // Decoded from the wire in upper case.
    let b = B::header(RESPONSE, 1, 0).name("A.EXAMPLE.Test");
    assert_eq!(name_at(&b.0, 12).unwrap().1, "a.example.test");
    assert_eq!(name_keys_of(&b.0, 12), want);
    // The chain compares names whatever their case.
    let b = B::response("WWW.example.test", 2)
        .cname("www.EXAMPLE.test", 60, "CDN.Example.NET")
        .a("cdn.example.net", 30, [10, 0, 0, 1]);
    let (r, a) = parse(&b);
    assert_eq!(r, Ok(()));
    assert_eq!(chain(&a)[0].0, "www.example.test");
    assert_eq!(chain(&a)[1], ("cdn.example.net".to_string(), 60));
    assert_eq!(
        (a.addrs_len, a.addrs[0].chain_index, a.addrs[0].ttl),
        (1, 1, 30)
    );
    // Deep names keep their MAX_SUFFIXES shortest suffixes.
    let deep = "a.b.c.d.e.f.g.h.i.j.example.test";
    let b = B::header(RESPONSE, 1, 0).name(deep);
    let keys = name_keys_of(&b.0, 12);
    assert_eq!(keys.len(), MAX_SUFFIXES + 1);
    assert_eq!(keys[0], name_key(deep.as_bytes()));
    assert_eq!(keys[MAX_SUFFIXES], name_key(b".test"));
}

#[test]
fn the_root_name() {
    let b = B::header(RESPONSE, 1, 1)
        .raw(&[0])
        .u16(types::NS)
        .u16(classes::IN)
        .raw(&[0])
        .fixed(types::A, classes::IN, 5, &[10, 0, 0, 1]);
    assert_eq!(name_at(&b.0, 12), Ok((13, String::new())));
    let (r, a) = parse(&b);
    assert_eq!(r, Ok(()));
    assert_eq!((a.chain[0].len, a.chain[0].key), (0, name_key(b"")));
    assert_eq!(a.qname_key, name_key(b""));
    assert_eq!(a.addrs_len, 1);
    assert!(name_keys_of(&b.0, 12).is_empty());
    let text = [0u8; NAME_LEN];
    assert_eq!(full_key(&text, 0), name_key(b""));
    let mut dot = [0u8; NAME_LEN];
    dot[0] = b'.';
    assert_eq!(full_key(&dot, 1), name_key(b""));
}

#[test]
fn the_chain_rule() {
    let b = B::response("a.test", 11)
        .cname("a.test", 100, "b.test")
        .cname("b.test", 150, "c.test")
        .cname("c.test", 200, "a.test") // a loop: already on the chain
        .cname("c.test", 20, "d.test")
        .aaaa(
            "b.test",
            170,
            [0x20, 1, 0x0d, 0xb8, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 1],
        )
        .a("c.test", 10, [10, 0, 0, 3])
        .a("c.test", 0x8000_0000, [10, 0, 0, 4]) // TTL with the top bit: 0
        .a("a.test", 1000, [10, 0, 0, 1])
        .a("d.test", 30, [10, 0, 0, 6])
        .name("c.test")
        .fixed(types::TXT, classes::IN, 1, b"\x02hi")
        .name("c.test")
        .fixed(types::A, classes::CH, 1, &[10, 0, 0, 5]);
    let (r, a) = parse(&b);
    assert_eq!(r, Ok(()));
    assert_eq!(
        chain(&a),
        [
            ("a.test".to_string(), u32::MAX),
            ("b.test".to_string(), 100),
            ("c.test".to_string(), 100),
            ("d.test".to_string(), 20),
        ]
    );
    let got: Vec<_> = a
        .learned()
        .iter()
        .map(|l| (l.addr[15], l.ttl, l.chain_index))
        .collect();
    assert_eq!(
        got,
        [(1, 100, 1), (3, 10, 2), (4, 0, 2), (1, 1000, 0), (6, 20, 3)]
    );
    assert_eq!(a.addrs[0].addr[..2], [0x20, 1]);
    assert_eq!(a.ignored, 2);
    // Keys of the chain are distinct and are the names' keys.
    for c in a.chain_names() {
        assert_eq!(c.key, name_key(c.text()));
    }

    // More than MAX_CHAIN names: the CNAMEs past it are ignored, and so are their addresses.
    let names: Vec<String> = (0..MAX_CHAIN + 2).map(|i| format!("n{i}.test")).collect();
    let mut b = B::response(&names[0], (MAX_CHAIN + 2) as u16);
    for w in names.windows(2) {
        b = b.cname(&w[0], 60, &w[1]);
    }
    b = b
        .a(names.last().unwrap(), 60, [10, 0, 0, 1])
        .a(&names[MAX_CHAIN - 1], 60, [10, 0, 0, 2]);
    let mut b2 = b.clone();
    b2.0[7] = (MAX_CHAIN + 1 + 2) as u8;
    let (r, a) = parse(&b2);
    assert_eq!(r, Ok(()));
    assert_eq!(usize::from(a.chain_len), MAX_CHAIN);
    assert_eq!(a.ignored, 2 + 1); // two CNAMEs past the chain, the address of the last name
    assert_eq!((a.addrs_len, v4(&a, 0)), (1, [10, 0, 0, 2]));
    assert_eq!(usize::from(a.addrs[0].chain_index), MAX_CHAIN - 1);
}

#[test]
fn messages_cut_at_msg_len() {
    // Records until past MSG_LEN; the message is longer than what is held.
    let long = format!("{}.test", "x".repeat(50));
    let mut b = B::response(&long, 0);
    let mut n = 0u16;
    while b.pos() < MSG_LEN + 40 {
        b = b.a(&long, 60, [10, 0, 0, n as u8]);
        n += 1;
    }
    b.0[6..8].copy_from_slice(&n.to_be_bytes());
    let record = wire(&long).len() + 14;
    let first = HEADER_LEN + wire(&long).len() + 4;
    let whole_held = (MSG_LEN - first) / record;
    assert!(whole_held < MAX_ADDRS && MAX_ADDRS < MAX_RECORDS && whole_held < usize::from(n));
    let (r, a) = parse(&b);
    assert_eq!(r, Ok(()));
    assert!(a.truncated);
    assert_eq!(usize::from(a.addrs_len), whole_held);
    for i in 0..whole_held {
        assert_eq!(v4(&a, i), [10, 0, 0, i as u8]);
    }
    // The same bytes with `len` = MSG_LEN: the message really ends there, ANCOUNT lies.
    assert_eq!(parse_len(&b.0, MSG_LEN).0, Err(Malformed::Record));

    // A long question-only message: nothing past the answers is needed.
    let mut q = B::response("a.test", 1).a("a.test", 5, [1, 2, 3, 4]);
    q.0.resize(MSG_LEN * 2, 0);
    let (r, a) = parse(&q);
    assert_eq!((r, a.truncated, a.addrs_len), (Ok(()), false, 1));

    // An address whose RDATA straddles MSG_LEN: truncated, not learned (and not misread).
    let pad = B::response("a.test", 2)
        .name("pad.test")
        .u16(types::TXT)
        .u16(classes::IN)
        .u32(1);
    let fill = MSG_LEN - pad.pos() - 2 - (wire("a.test").len() + 10) - 2;
    let b = pad
        .u16(fill as u16)
        .raw(&vec![b'x'; fill])
        .a("a.test", 60, [9, 9, 9, 9]);
    assert!(b.pos() > MSG_LEN && b.pos() - 4 < MSG_LEN);
    let (r, a) = parse(&b);
    assert_eq!(
        (r, a.truncated, a.addrs_len, a.ignored),
        (Ok(()), true, 0, 1)
    );
    // A CNAME target straddling it.
    let pad = B::response("a.test", 2)
        .name("pad.test")
        .u16(types::TXT)
        .u16(classes::IN)
        .u32(1);
    let fill = MSG_LEN - pad.pos() - 2 - (wire("a.test").len() + 10) - 3;
    let b = pad
        .u16(fill as u16)
        .raw(&vec![b'x'; fill])
        .cname("a.test", 60, "target.example.test");
    let (r, a) = parse(&b);
    assert_eq!(
        (r, a.truncated, a.chain_len, a.ignored),
        (Ok(()), true, 1, 1)
    );
    // A CNAME whose RDATA is held but whose name runs on past it and past MSG_LEN: broken,
    // not cut.
    let pad = B::response("a.test", 2)
        .name("pad.test")
        .u16(types::TXT)
        .u16(classes::IN)
        .u32(1);
    let fill = MSG_LEN - pad.pos() - 2 - (wire("a.test").len() + 10) - 4;
    let mut b = pad
        .u16(fill as u16)
        .raw(&vec![b'x'; fill])
        .name("a.test")
        .u16(types::CNAME)
        .u16(classes::IN)
        .u32(1)
        .u16(2)
        .raw(&[10])
        .raw(b"0123456789")
        .raw(&[0]);
    b.0.resize(MSG_LEN + 100, 0);
    assert_eq!(parse(&b).0, Err(Malformed::CnameTarget(NameError::Cut)));
}

#[test]
fn at_most_max_records_are_read() {
    for n in [MAX_RECORDS, MAX_RECORDS + 1] {
        let mut b = B::response("a.test", n as u16);
        for i in 0..n {
            b = b.a("other.test", 60, [10, 0, 0, i as u8]);
        }
        let (r, a) = parse(&b);
        assert_eq!(r, Ok(()));
        assert_eq!(a.truncated, n > MAX_RECORDS, "{n}");
        assert_eq!(usize::from(a.ignored), MAX_RECORDS);
    }
    // The record past MAX_RECORDS is not looked at, even broken.
    let mut b = B::response("a.test", MAX_RECORDS as u16 + 1);
    for i in 0..MAX_RECORDS {
        b = b.a("a.test", 60, [10, 0, 0, i as u8]);
    }
    let b = b.raw(&[0xc0, 0xff]);
    let (r, a) = parse(&b);
    assert_eq!((r, a.truncated), (Ok(()), true));
}

#[test]
fn steps_are_bounded() {
    // "a" at 0, then pointers each to the one before: a decode from the last pointer takes
    // one step per pointer and 3 for the name.
    let chain_of = |pointers: usize| {
        let mut v = vec![1, b'a', 0];
        for i in 0..pointers {
            let to = if i == 0 { 0 } else { 3 + 2 * (i - 1) };
            v.extend_from_slice(&(0xc000u16 | to as u16).to_be_bytes());
        }
        v
    };
    let ok = chain_of(MAX_NAME_STEPS - 3);
    let last = ok.len() - 2;
    assert_eq!(name_at(&ok, last), Ok((last + 2, "a".to_string())));
    let mut r = NameReader::new(last);
    let mut out = [0u8; NAME_LEN];
    let msg = buf(&ok);
    while r.step(&msg, ok.len(), &mut out) == NameStep::More {}
    assert_eq!(r.steps(), MAX_NAME_STEPS);

    let over = chain_of(MAX_NAME_STEPS - 2);
    let last = over.len() - 2;
    assert_eq!(name_at(&over, last), Err(NameError::Steps));
    let mut r = NameReader::new(last);
    let msg = buf(&over);
    let mut steps = vec![];
    loop {
        let s = r.step(&msg, over.len(), &mut out);
        steps.push(s);
        if s != NameStep::More {
            break;
        }
    }
    assert_eq!(steps.len(), MAX_NAME_STEPS);
    assert_eq!(*steps.last().unwrap(), NameStep::Bad(NameError::Steps));
    // Finished readers stay finished.
    assert_eq!(
        r.step(&msg, over.len(), &mut out),
        NameStep::Bad(NameError::Steps)
    );
    assert_eq!(r.steps(), MAX_NAME_STEPS);
    assert!(r.finished());
}

#[test]
fn end_is_after_the_first_pointer() {
    let b = B::header(RESPONSE, 1, 0).name("example.test");
    let p = b.pos();
    let b = b.raw(&[3, b'w', b'w', b'w']).ptr(12).raw(&[0xee; 4]);
    assert_eq!(
        name_at(&b.0, p),
        Ok((p + 6, "www.example.test".to_string()))
    );
    assert_eq!(name_at(&b.0, 12), Ok((p, "example.test".to_string())));
    // Positions far out of range just fail.
    let m = buf(&b.0);
    let mut out = [0u8; NAME_LEN];
    assert_eq!(
        decode_name(&m, b.pos(), usize::MAX, &mut out),
        Err(NameError::End)
    );
    assert_eq!(
        decode_name(&m, usize::MAX, MSG_LEN, &mut out),
        Err(NameError::Cut)
    );
    assert_eq!(rr_fixed(&m, usize::MAX, usize::MAX), None);
}
