//! Differential test: random but valid responses built and encoded by hickory-proto (random
//! names, depths and case, CNAME chains, A/AAAA, records for other names, other types and
//! classes, authority/additional records, EDNS, compressed and uncompressed, messages longer
//! than MSG_LEN and with more than MAX_RECORDS answers). The expectation is computed from
//! hickory's own decoding of the bytes, by the chain rule written here with strings (no keys,
//! no code of the parser).

mod dns_support;
use dns_support::Rng;
use std::net::{Ipv4Addr, Ipv6Addr};

use dataplane_common::dns::{
    Answer, MAX_ADDRS, MAX_CHAIN, MAX_RECORDS, MSG_LEN, Malformed, parse_query, parse_response,
};
use dataplane_common::sni_policy::name_key;
use hickory_proto::op::{Edns, Message, MessageType, OpCode, Query};
use hickory_proto::rr::rdata::{A, AAAA, CNAME, MX, NS, TXT};
use hickory_proto::rr::{DNSClass, Name, RData, Record, RecordType};
use hickory_proto::serialize::binary::{
    BinDecodable, BinDecoder, BinEncodable, BinEncoder, NameEncoding,
};

const SEED: u64 = 0x6d65_7368_7761_7264;
const MESSAGES: usize = 4000;

/// TTLs with the edge cases: 0, the top bit set (reads as 0), the largest, small, any.
fn ttl(rng: &mut Rng) -> u32 {
    match rng.below(10) {
        0 => 0,
        1 => rng.next() as u32 | 0x8000_0000,
        2 => 0x7fff_ffff,
        3..=5 => rng.below(600) as u32,
        _ => rng.next() as u32 >> rng.below(32),
    }
}

type Labels = Vec<Vec<u8>>;

const LABEL_CHARS: &[u8] = b"abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ0123456789-_";

fn label(rng: &mut Rng) -> Vec<u8> {
    let len = if rng.chance(4) {
        63
    } else if rng.chance(10) {
        rng.range(20, 62)
    } else {
        rng.range(1, 10)
    };
    (0..len).map(|_| *rng.pick(LABEL_CHARS)).collect()
}

fn wire_len(labels: &Labels) -> usize {
    labels.iter().map(|l| l.len() + 1).sum::<usize>() + 1
}

fn name_under(rng: &mut Rng, base: &Labels) -> Labels {
    let mut labels: Labels = (0..rng.range(0, 4)).map(|_| label(rng)).collect();
    if rng.chance(3) {
        // Deep: up to the 255-byte limit.
        while wire_len(&labels) + wire_len(base) < 240 {
            labels.push(label(rng));
        }
    }
    labels.extend(base.iter().cloned());
    while wire_len(&labels) > 255 {
        labels.remove(0);
    }
    labels
}

fn recase(rng: &mut Rng, labels: &Labels) -> Labels {
    if rng.chance(50) {
        return labels.clone();
    }
    labels
        .iter()
        .map(|l| {
            l.iter()
                .map(|&b| {
                    if rng.chance(30) {
                        b ^ (b.is_ascii_alphabetic() as u8 * 0x20)
                    } else {
                        b
                    }
                })
                .collect()
        })
        .collect()
}

fn hname(labels: &Labels) -> Name {
    Name::from_labels(labels.iter().map(|l| l.as_slice())).unwrap()
}

/// Lowercase dotted text of a hickory name (root = "").
fn text(name: &Name) -> String {
    name.iter()
        .map(|l| String::from_utf8(l.to_ascii_lowercase()).unwrap())
        .collect::<Vec<_>>()
        .join(".")
}

fn rec(name: &Labels, ttl: u32, data: RData) -> Record {
    Record::from_rdata(hname(name), ttl, data)
}

fn v4(rng: &mut Rng) -> RData {
    RData::A(A(Ipv4Addr::from(rng.next() as u32)))
}

fn v6(rng: &mut Rng) -> RData {
    RData::AAAA(AAAA(Ipv6Addr::from(
        (u128::from(rng.next()) << 64) | u128::from(rng.next()),
    )))
}

fn addr(rng: &mut Rng) -> RData {
    if rng.chance(50) { v4(rng) } else { v6(rng) }
}

/// A random response and whether it is to be encoded with compression.
fn response(rng: &mut Rng) -> (Message, bool) {
    let bases: Vec<Labels> = (0..3)
        .map(|_| (0..rng.range(1, 3)).map(|_| label(rng)).collect())
        .collect();
    let root: Labels = vec![];
    let qname = if rng.chance(2) {
        root.clone()
    } else {
        let b = rng.pick(&bases).clone();
        name_under(rng, &b)
    };
    let qtype = *rng.pick(&[
        RecordType::A,
        RecordType::AAAA,
        RecordType::A,
        RecordType::AAAA,
        RecordType::TXT,
        RecordType::MX,
    ]);
    let mut m = Message::response(rng.next() as u16, OpCode::Query);
    m.metadata.recursion_desired = rng.chance(80);
    m.metadata.recursion_available = rng.chance(80);
    m.metadata.authoritative = rng.chance(20);
    m.metadata.truncation = rng.chance(5);
    m.add_query(Query::query(hname(&recase(rng, &qname)), qtype));

    // The chain: qname, then 0..=5 (sometimes up to 10) CNAME targets, sometimes looping back.
    let hops = if rng.chance(10) {
        rng.range(6, 10)
    } else {
        rng.range(0, 5)
    };
    let mut chain = vec![qname.clone()];
    for _ in 0..hops {
        let next = if chain.len() > 1 && rng.chance(8) {
            rng.pick(&chain).clone()
        } else {
            let b = rng.pick(&bases).clone();
            name_under(rng, &b)
        };
        chain.push(next);
    }
    let mut edges = vec![];
    for w in chain.windows(2) {
        let (from, to) = (recase(rng, &w[0]), recase(rng, &w[1]));
        let t = ttl(rng);
        edges.push(rec(&from, t, RData::CNAME(CNAME(hname(&to)))));
    }

    let mut others = vec![];
    let n_addrs = if rng.chance(8) {
        rng.range(MAX_ADDRS + 1, MAX_ADDRS + 8)
    } else {
        rng.range(0, 5)
    };
    for _ in 0..n_addrs {
        let owner = if rng.chance(70) {
            chain.last().unwrap().clone()
        } else {
            rng.pick(&chain).clone()
        };
        let owner = recase(rng, &owner);
        let (t, d) = (ttl(rng), addr(rng));
        others.push((true, rec(&owner, t, d)));
    }
    for _ in 0..rng.range(0, 4) {
        let c = rng.pick(&chain).clone();
        let b = rng.pick(&bases).clone();
        let t = ttl(rng);
        let r = match rng.below(8) {
            0 => {
                let d = addr(rng);
                rec(&name_under(rng, &b), t, d)
            }
            1 => {
                // A child of a chain name.
                let mut child = vec![label(rng)];
                child.extend(c.iter().cloned());
                while wire_len(&child) > 255 {
                    child.pop();
                }
                let d = addr(rng);
                rec(&child, t, d)
            }
            2 => {
                // Its parent.
                let parent = if c.is_empty() {
                    c.clone()
                } else {
                    c[1..].to_vec()
                };
                let d = addr(rng);
                rec(&parent, t, d)
            }
            3 => {
                // A CNAME from elsewhere into the chain.
                let from = name_under(rng, &b);
                rec(&from, t, RData::CNAME(CNAME(hname(&c))))
            }
            4 => rec(&c, t, RData::TXT(TXT::new(vec!["v=decoy".to_string()]))),
            5 => rec(&c, t, RData::MX(MX::new(10, hname(&b)))),
            6 => {
                let d = v4(rng);
                let mut r = rec(&c, t, d);
                r.dns_class = DNSClass::CH;
                r
            }
            _ => {
                let (from, to) = (name_under(rng, &b), name_under(rng, &b));
                rec(&from, t, RData::CNAME(CNAME(hname(&to))))
            }
        };
        others.push((false, r));
    }
    if rng.chance(10) {
        // Long: past MSG_LEN.
        for _ in 0..rng.range(3, 7) {
            let c = rng.pick(&chain).clone();
            let s: String = (0..rng.range(150, 255))
                .map(|_| *rng.pick(LABEL_CHARS) as char)
                .collect();
            let t = ttl(rng);
            others.push((false, rec(&c, t, RData::TXT(TXT::new(vec![s])))));
        }
    }
    if rng.chance(5) {
        // Many: past MAX_RECORDS.
        for _ in 0..rng.range(MAX_RECORDS, MAX_RECORDS + 10) {
            let c = rng.pick(&chain).clone();
            let (t, d) = (ttl(rng), addr(rng));
            others.push((true, rec(&c, t, d)));
        }
    }

    let mut answers = edges;
    if rng.chance(80) {
        // Addresses after every CNAME, other records anywhere.
        let mut extra = vec![];
        for (is_addr, r) in others {
            if is_addr {
                extra.push(r);
            } else {
                let at = rng.below(answers.len() + 1);
                answers.insert(at, r);
            }
        }
        for r in extra {
            let at = rng.range(answers.len().min(hops), answers.len());
            answers.insert(at, r);
        }
    } else {
        answers.extend(others.into_iter().map(|(_, r)| r));
        for i in (1..answers.len()).rev() {
            let j = rng.below(i + 1);
            answers.swap(i, j);
        }
    }
    for r in answers {
        m.add_answer(r);
    }
    if rng.chance(30) {
        let b = rng.pick(&bases).clone();
        let t = ttl(rng);
        m.add_authority(rec(&b, t, RData::NS(NS(hname(&b)))));
        let c = rng.pick(&chain).clone();
        let (t, d) = (ttl(rng), addr(rng));
        m.add_authority(rec(&c, t, d));
    }
    if rng.chance(30) {
        for _ in 0..rng.range(1, 3) {
            let c = rng.pick(&chain).clone();
            let (t, d) = (ttl(rng), addr(rng));
            m.add_additional(rec(&c, t, d));
        }
    }
    if rng.chance(50) {
        m.set_edns(Edns::new());
    }
    (m, rng.chance(75))
}

fn encode(m: &Message, compressed: bool) -> Vec<u8> {
    if compressed {
        return m.to_vec().unwrap();
    }
    let mut buf = vec![];
    let mut enc = BinEncoder::new(&mut buf);
    enc.set_name_encoding(NameEncoding::Uncompressed);
    m.emit(&mut enc).unwrap();
    buf
}

fn held(bytes: &[u8]) -> Box<[u8; MSG_LEN]> {
    let mut msg = Box::new([0u8; MSG_LEN]);
    let n = bytes.len().min(MSG_LEN);
    msg[..n].copy_from_slice(&bytes[..n]);
    msg
}

/// Where each answer record's owner name ends and the record ends, from hickory: the encoding
/// of the message with only its first k answers is a prefix of the whole (names only point
/// backwards).
fn layout(m: &Message, compressed: bool, full: &[u8]) -> Vec<(usize, usize)> {
    let mut out = vec![];
    let mut start = {
        let mut p = m.clone();
        p.answers.clear();
        p.authorities.clear();
        p.additionals.clear();
        p.edns = None;
        encode(&p, compressed).len()
    };
    for k in 0..m.answers.len() {
        let mut p = m.clone();
        p.answers.truncate(k + 1);
        p.authorities.clear();
        p.additionals.clear();
        p.edns = None;
        let b = encode(&p, compressed);
        assert_eq!(&b[12..], &full[12..b.len()], "prefix encoding");
        let mut d = BinDecoder::new(full).clone(start as u16);
        Name::read(&mut d).unwrap();
        out.push((d.index(), b.len()));
        start = b.len();
    }
    out
}

#[derive(Debug, Default, PartialEq)]
struct Expect {
    chain: Vec<(String, u32)>,
    addrs: Vec<([u8; 16], u32, u8)>,
    ignored: u16,
    dropped: u16,
    truncated: bool,
}

fn rfc2181(ttl: u32) -> u32 {
    if ttl & 0x8000_0000 != 0 { 0 } else { ttl }
}

/// The chain rule, over hickory's decoding. `layout` is given when only MSG_LEN bytes are held.
fn expect(m: &Message, layout: Option<&[(usize, usize)]>) -> Expect {
    let mut e = Expect {
        chain: vec![(text(&m.queries[0].name), u32::MAX)],
        ..Expect::default()
    };
    let n = m.answers.len();
    for (k, r) in m.answers.iter().take(MAX_RECORDS).enumerate() {
        let owner = text(&r.name);
        let on = if r.dns_class == DNSClass::IN {
            e.chain.iter().position(|(t, _)| *t == owner)
        } else {
            None
        };
        let ignore = !matches!(
            (&r.data, on),
            (RData::A(_) | RData::AAAA(_) | RData::CNAME(_), Some(_))
        );
        if let Some(lay) = layout {
            let (owner_end, end) = lay[k];
            if end > MSG_LEN {
                if ignore && owner_end + 10 <= MSG_LEN {
                    e.ignored += 1;
                    if k + 1 < n {
                        e.truncated = true;
                        return e;
                    }
                    continue;
                }
                e.truncated = true;
                return e;
            }
        }
        let ttl = rfc2181(r.ttl);
        match (&r.data, on) {
            (RData::CNAME(CNAME(target)), Some(i)) => {
                let t = text(target);
                if e.chain.iter().any(|(c, _)| *c == t) {
                } else if e.chain.len() == MAX_CHAIN {
                    e.ignored += 1;
                } else {
                    let ttl = e.chain[i].1.min(ttl);
                    e.chain.push((t, ttl));
                }
            }
            (RData::A(A(a)), Some(i)) => push_addr(&mut e, a.to_ipv6_mapped().octets(), ttl, i),
            (RData::AAAA(AAAA(a)), Some(i)) => push_addr(&mut e, a.octets(), ttl, i),
            _ => e.ignored += 1,
        }
    }
    if n > MAX_RECORDS {
        e.truncated = true;
    }
    e
}

fn push_addr(e: &mut Expect, addr: [u8; 16], ttl: u32, i: usize) {
    if e.addrs.len() == MAX_ADDRS {
        e.dropped += 1;
    } else {
        e.addrs.push((addr, ttl.min(e.chain[i].1), i as u8));
    }
}

fn got(a: &Answer) -> Expect {
    Expect {
        chain: a
            .chain_names()
            .iter()
            .map(|c| {
                let t = String::from_utf8(c.text().to_vec()).unwrap();
                assert_eq!(c.key, name_key(t.as_bytes()), "chain key of {t}");
                assert!(c.text[c.len as usize..].iter().all(|&b| b == 0));
                (t, c.ttl)
            })
            .collect(),
        addrs: a
            .learned()
            .iter()
            .map(|l| (l.addr, l.ttl, l.chain_index))
            .collect(),
        ignored: a.ignored,
        dropped: a.dropped_addrs,
        truncated: a.truncated,
    }
}

#[test]
fn hickory_responses_read_by_the_chain_rule() {
    let mut rng = Rng(SEED);
    let mut answer = Box::new(Answer::ZERO);
    let (mut learned, mut long, mut many, mut chained, mut cut_checks) = (0, 0, 0, 0, 0);
    for i in 0..MESSAGES {
        let (m, compressed) = response(&mut rng);
        let bytes = encode(&m, compressed);
        let decoded = Message::from_vec(&bytes).unwrap();
        assert_eq!(decoded.answers.len(), m.answers.len());
        let lay = if bytes.len() > MSG_LEN || i % 4 == 0 {
            Some(layout(&m, compressed, &bytes))
        } else {
            None
        };
        let cut = bytes.len() > MSG_LEN;
        let want = expect(&decoded, if cut { lay.as_deref() } else { None });

        let msg = held(&bytes);
        let r = parse_response(&msg, bytes.len(), &mut answer);
        assert_eq!(r, Ok(()), "message {i}: {decoded:?}");
        let q = &decoded.queries[0];
        assert_eq!(answer.id, decoded.metadata.id);
        assert_eq!(answer.qtype, u16::from(q.query_type));
        assert_eq!(answer.qclass, u16::from(q.query_class));
        assert_eq!(answer.qname_key, name_key(text(&q.name).as_bytes()));
        assert_eq!(
            got(&answer),
            want,
            "message {i} ({} bytes): {decoded:?}",
            bytes.len()
        );

        learned += want.addrs.len();
        long += usize::from(cut);
        many += usize::from(decoded.answers.len() > MAX_RECORDS);
        chained += usize::from(want.chain.len() > 2);

        // Cut inside the answer section (the message says more follows): malformed, or
        // truncated with what the complete records gave when the server set TC.
        if let Some(lay) = &lay
            && !cut
            && lay.len() > 1
        {
            let first = lay[0].0;
            let last = lay[lay.len() - 1].1;
            let at = if rng.chance(50) {
                lay[rng.below(lay.len() - 1)].1
            } else {
                rng.range(first - 1, last - 1)
            };
            let r = parse_response(&msg, at, &mut answer);
            if decoded.metadata.truncation {
                assert_eq!(r, Ok(()), "message {i} cut at {at}");
                assert!(answer.truncated);
            } else {
                assert_eq!(r, Err(Malformed::Record), "message {i} cut at {at}");
                assert_eq!((answer.chain_len, answer.addrs_len), (0, 0));
            }
            cut_checks += 1;
        }

        // The query side: the same question as a query.
        let mut query = Message::new(rng.next() as u16, MessageType::Query, OpCode::Query);
        query.add_query(q.clone());
        if rng.chance(50) {
            query.set_edns(Edns::new());
        }
        let qbytes = encode(&query, compressed);
        let qmsg = held(&qbytes);
        let parsed = parse_query(&qmsg, qbytes.len()).expect("query");
        assert_eq!(parsed.id, query.metadata.id);
        assert_eq!(parsed.qtype, u16::from(q.query_type));
        assert_eq!(parsed.qname_key, answer_key(q));
        assert_eq!(
            parse_response(&qmsg, qbytes.len(), &mut answer),
            Err(Malformed::NotResponse)
        );
        assert!(
            parse_query(&msg, bytes.len()).is_none(),
            "a response is not a query"
        );
    }
    eprintln!(
        "learned {learned} long {long} many {many} chained {chained} cut_checks {cut_checks}"
    );
    // The generator covers what it means to.
    assert!(learned > MESSAGES, "addresses learned: {learned}");
    assert!(long > MESSAGES / 20, "long messages: {long}");
    assert!(many > MESSAGES / 50, "messages with many records: {many}");
    assert!(chained > MESSAGES / 4, "chains: {chained}");
    assert!(cut_checks > MESSAGES / 8, "cut checks: {cut_checks}");
}

fn answer_key(q: &Query) -> u64 {
    name_key(text(&q.name).as_bytes())
}

/// The expectation itself can fail: a parse that learned from a record of another name would
/// be caught.
#[test]
fn the_expectation_sees_a_foreign_record() {
    let mut m = Message::response(7, OpCode::Query);
    let q: Labels = vec![b"www".to_vec(), b"example".to_vec(), b"test".to_vec()];
    let other: Labels = vec![b"bank".to_vec(), b"test".to_vec()];
    m.add_query(Query::query(hname(&q), RecordType::A));
    m.add_answer(rec(&other, 60, RData::A(A(Ipv4Addr::new(192, 0, 2, 1)))));
    m.add_answer(rec(&q, 60, RData::A(A(Ipv4Addr::new(192, 0, 2, 2)))));
    let bytes = m.to_vec().unwrap();
    let want = expect(&Message::from_vec(&bytes).unwrap(), None);
    assert_eq!(want.addrs.len(), 1);
    assert_eq!(want.ignored, 1);
    let mut answer = Box::new(Answer::ZERO);
    parse_response(&held(&bytes), bytes.len(), &mut answer).unwrap();
    assert_eq!(got(&answer), want);
    assert_eq!(
        answer.addrs[0].addr,
        Ipv4Addr::new(192, 0, 2, 2).to_ipv6_mapped().octets()
    );
}
