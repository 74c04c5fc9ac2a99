//! The steppable forms against the whole ones, on random inputs (random bytes, name-like bytes,
//! mutated valid messages): `read_name` = stepping a `NameReader` by hand = a plainly written
//! reference decoder, within `MAX_NAME_STEPS` steps; `parse_response` = the kernel's sequence
//! of steps driven by hand; and the invariants of every reading.

mod dns_support;
use dataplane_common::dns::{
    Answer, HEADER_LEN, MAX_ADDRS, MAX_CHAIN, MAX_NAME_STEPS, MAX_RECORDS, MAX_TEXT, MSG_LEN,
    Malformed, NAME_LEN, NameError, NameReader, NameStep, RecordStep, answer_record, cname_failed,
    cname_target, decode_name, full_key, owner_failed, parse_query, parse_response, question_done,
    read_name, records_done, response_header,
};
use dataplane_common::sni_policy::name_key;
use dns_support::{Rng, wire};

const SEED: u64 = 0x5eed_d115_0000_0001;

/// Bytes that look like names: label lengths, letters, pointers to earlier positions, dots,
/// zeros, label types.
fn name_like(rng: &mut Rng, n: usize) -> Vec<u8> {
    let mut v = Vec::with_capacity(n);
    while v.len() < n {
        match rng.below(100) {
            0..=29 => v.push(1 + rng.below(8) as u8),
            30..=49 => {
                let to = rng.below(v.len() + 8);
                v.push(0xc0 | ((to >> 8) as u8 & 0x3f));
                v.push(to as u8);
            }
            50..=89 => v.push(b"abcXYZ09-_"[rng.below(10)]),
            90..=93 => v.push(b'.'),
            94..=97 => v.push(0),
            _ => v.push(rng.next() as u8),
        }
    }
    v.truncate(n);
    v
}

/// Long names and long pointer chains: near the text and step limits.
fn deep(rng: &mut Rng) -> Vec<u8> {
    let mut v = vec![];
    // Long labels (or none) ending in the root...
    let labels = if rng.chance(50) { rng.below(6) } else { 0 };
    for _ in 0..labels {
        let n = 50 + rng.below(14);
        v.push(n as u8);
        v.extend((0..n).map(|_| b"aB-"[rng.below(3)]));
    }
    v.push(0);
    // ... then pointers, each mostly to the one just before, a few with a label before them.
    let (mut prev, mut starts) = (0usize, vec![0usize]);
    while v.len() < MSG_LEN - 4 {
        let here = v.len();
        if rng.chance(2) {
            v.extend([1, b'x']);
        }
        let to = if rng.chance(95) {
            prev
        } else {
            starts[rng.below(starts.len())]
        };
        v.push(0xc0 | (to >> 8) as u8);
        v.push(to as u8);
        starts.push(here);
        prev = here;
    }
    v
}

/// A valid response: a CNAME chain with compressed names, addresses, a foreign record.
fn valid(rng: &mut Rng) -> Vec<u8> {
    let mut m = vec![0xab, 0xcd, 0x81, 0x80, 0, 1, 0, 0, 0, 0, 0, 0];
    m.extend(wire("www.example.test"));
    m.extend([0, 1, 0, 1]);
    let mut an = 0u16;
    // www.example.test (ptr 12) CNAME edge.cdn.test
    m.extend([0xc0, 12, 0, 5, 0, 1, 0, 0, 1, 0]);
    let t = wire("edge.cdn.test");
    m.extend((t.len() as u16).to_be_bytes());
    let target_at = m.len();
    m.extend(t);
    an += 1;
    for i in 0..rng.below(6) {
        // edge.cdn.test (ptr) A / AAAA
        m.extend([0xc0 | (target_at >> 8) as u8, target_at as u8]);
        if rng.chance(50) {
            m.extend([0, 1, 0, 1, 0, 0, 0, 60, 0, 4, 10, 0, 0, i as u8]);
        } else {
            m.extend([0, 28, 0, 1, 0, 0, 0, 60, 0, 16]);
            m.extend([0x20, 1, 0xd, 0xb8, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, i as u8]);
        }
        an += 1;
    }
    // cdn.test (ptr into the target) TXT
    m.extend([0xc0 | (target_at >> 8) as u8, (target_at + 5) as u8]);
    m.extend([0, 16, 0, 1, 0, 0, 0, 5, 0, 3, 2, b'h', b'i']);
    an += 1;
    m[6..8].copy_from_slice(&an.to_be_bytes());
    m
}

fn mutated(rng: &mut Rng) -> Vec<u8> {
    let mut m = valid(rng);
    for _ in 0..1 + rng.below(4) {
        if m.is_empty() {
            break;
        }
        let i = rng.below(m.len());
        match rng.below(4) {
            0 => m[i] = rng.next() as u8,
            1 => m[i] ^= 1 << rng.below(8),
            2 => m[i] = [0, 0x3f, 0x40, 0x80, 0xc0, b'.', 0xff][rng.below(7)],
            _ => m.truncate(i),
        }
    }
    m
}

fn held(bytes: &[u8]) -> Box<[u8; MSG_LEN]> {
    let mut msg = Box::new([0u8; MSG_LEN]);
    let n = bytes.len().min(MSG_LEN);
    msg[..n].copy_from_slice(&bytes[..n]);
    msg
}

/// The decoding rules, written plainly: one label at a time over a slice. Returns the outcome
/// and how many steps (label-length bytes, label bytes, pointers, the root byte) it took.
fn reference(msg: &[u8], len: usize, pos: usize) -> (Result<(usize, Vec<u8>), NameError>, usize) {
    let mut steps = 0;
    let mut p = pos;
    let mut start = pos;
    let mut end = None;
    let mut text: Vec<u8> = vec![];
    let at = |q: usize| -> Result<u8, NameError> {
        if q >= len {
            Err(NameError::End)
        } else if q >= MSG_LEN {
            Err(NameError::Cut)
        } else {
            Ok(msg[q])
        }
    };
    loop {
        steps += 1;
        let b = match at(p) {
            Ok(b) => b,
            Err(e) => return (Err(e), steps),
        };
        match b {
            0 => return (Ok((end.unwrap_or(p + 1), text)), steps),
            1..=63 => {
                let sep = usize::from(!text.is_empty());
                if text.len() + sep + usize::from(b) > MAX_TEXT {
                    return (Err(NameError::TooLong), steps);
                }
                if sep == 1 {
                    text.push(b'.');
                }
                for k in 1..=usize::from(b) {
                    steps += 1;
                    match at(p + k) {
                        Err(e) => return (Err(e), steps),
                        Ok(b'.') => return (Err(NameError::DotInLabel), steps),
                        Ok(c) => text.push(c.to_ascii_lowercase()),
                    }
                }
                p += 1 + usize::from(b);
            }
            0x40..=0x7f => return (Err(NameError::ExtendedLabel), steps),
            0x80..=0xbf => return (Err(NameError::ReservedLabel), steps),
            _ => {
                let lo = match at(p + 1) {
                    Ok(lo) => lo,
                    Err(e) => return (Err(e), steps),
                };
                let target = (usize::from(b & 0x3f) << 8) | usize::from(lo);
                if target >= len {
                    return (Err(NameError::PointerPastEnd), steps);
                }
                if target >= start {
                    return (Err(NameError::Pointer), steps);
                }
                end.get_or_insert(p + 2);
                p = target;
                start = target;
            }
        }
    }
}

/// One name three ways.
fn check_name(msg: &[u8; MSG_LEN], len: usize, pos: usize) -> Result<(usize, usize), NameError> {
    let mut whole = [0u8; NAME_LEN];
    let r = decode_name(msg, len, pos, &mut whole);
    assert_eq!(r.ok(), read_name(msg, len, pos, &mut [0u8; NAME_LEN]));

    let mut stepped = [0u8; NAME_LEN];
    let mut reader = NameReader::new(pos);
    let mut calls = 0;
    let last = loop {
        let s = reader.step(msg, len, &mut stepped);
        calls += 1;
        assert!(
            calls <= MAX_NAME_STEPS,
            "more than MAX_NAME_STEPS steps at {pos}"
        );
        if s != NameStep::More {
            break s;
        }
    };
    assert_eq!(reader.steps(), calls);
    assert!(reader.finished());
    assert_eq!(
        reader.step(msg, len, &mut stepped),
        last,
        "a finished reader stays put"
    );
    assert_eq!(reader.steps(), calls);
    match (last, r) {
        (NameStep::Done, Ok((end, n))) => {
            assert_eq!((reader.end(), reader.out_len()), (end, n));
        }
        (NameStep::Bad(e), Err(f)) => assert_eq!(e, f),
        other => panic!("step and whole differ at {pos}: {other:?}"),
    }
    assert_eq!(whole, stepped, "text buffers at {pos}");

    let (want, steps) = reference(&msg[..], len, pos);
    let want = if steps > MAX_NAME_STEPS {
        Err(NameError::Steps)
    } else {
        want
    };
    match (&want, r) {
        (Ok((end, text)), Ok((e, n))) => {
            assert_eq!((*end, text.as_slice()), (e, &whole[..n]), "name at {pos}");
            assert_eq!(calls, steps);
            assert!(n <= MAX_TEXT);
            assert!(!whole[..n].iter().any(u8::is_ascii_uppercase));
            assert!(n == 0 || (whole[0] != b'.' && whole[n - 1] != b'.'));
            assert!(!whole[..n].windows(2).any(|w| w == b".."));
        }
        (Err(a), Err(b)) => assert_eq!(*a, b, "error at {pos}"),
        _ => panic!("reference {want:?} vs {r:?} at {pos}"),
    }
    r
}

#[test]
fn stepping_a_name_by_hand_is_reading_it_whole() {
    let mut rng = Rng(SEED);
    let (mut done, mut bad, mut longest) = (0usize, [0usize; 10], 0);
    for i in 0..3000 {
        let bytes = match i % 4 {
            0 => (0..rng.below(MSG_LEN + 64))
                .map(|_| rng.next() as u8)
                .collect(),
            3 => deep(&mut rng),
            1 => {
                let n = rng.below(MSG_LEN + 64);
                name_like(&mut rng, n)
            }
            _ => mutated(&mut rng),
        };
        let msg = held(&bytes);
        // Sometimes the message goes on past what is held.
        let len = if rng.chance(10) {
            MSG_LEN + 1 + rng.below(100)
        } else {
            bytes.len()
        };
        let positions: Vec<usize> = if i % 50 == 0 {
            (0..bytes.len().min(MSG_LEN) + 2).collect()
        } else {
            (0..24)
                .map(|_| rng.below(bytes.len().min(MSG_LEN) + 2))
                .collect()
        };
        for pos in positions {
            match check_name(&msg, len, pos) {
                Ok((_, n)) => {
                    done += 1;
                    longest = longest.max(n);
                }
                Err(e) => bad[e as usize] += 1,
            }
        }
    }
    // Every outcome was met.
    assert!(done > 1000, "{done}");
    assert_eq!(longest, MAX_TEXT, "the longest name read");
    for e in [
        NameError::End,
        NameError::Cut,
        NameError::ExtendedLabel,
        NameError::ReservedLabel,
        NameError::DotInLabel,
        NameError::Pointer,
        NameError::PointerPastEnd,
        NameError::TooLong,
        NameError::Steps,
    ] {
        assert!(bad[e as usize] > 10, "{e:?}: {bad:?}");
    }
}

/// `parse_response` as the kernel runs it: each step function called in turn, each name read
/// by calling `NameReader::step` in a bounded loop (the kernel's `bpf_loop`).
fn kernel_shaped(msg: &[u8; MSG_LEN], len: usize, out: &mut Answer) -> Result<(), Malformed> {
    fn name(
        r: &mut NameReader,
        msg: &[u8; MSG_LEN],
        len: usize,
        out: &mut [u8; NAME_LEN],
    ) -> NameStep {
        for _ in 0..MAX_NAME_STEPS {
            let s = r.step(msg, len, out);
            if s != NameStep::More {
                return s;
            }
        }
        unreachable!("a name ends within MAX_NAME_STEPS steps")
    }
    let r = (|| {
        let h = response_header(msg, len, out)?;
        let mut q = NameReader::new(HEADER_LEN);
        if let NameStep::Bad(e) = name(&mut q, msg, len, &mut out.chain[0].text) {
            return Err(Malformed::QuestionName(e));
        }
        let qkey = stepped_key(&out.chain[0].text, q.out_len());
        let mut pos = question_done(msg, len, out, &q, qkey)?;
        let mut scratch: [u8; NAME_LEN];
        for i in 0..MAX_RECORDS {
            if i >= usize::from(h.ancount) {
                return Ok(());
            }
            let mut owner = NameReader::new(pos);
            scratch = [0; NAME_LEN];
            if let NameStep::Bad(e) = name(&mut owner, msg, len, &mut scratch) {
                return owner_failed(&h, out, e);
            }
            match answer_record(
                msg,
                len,
                &h,
                out,
                &owner,
                stepped_key(&scratch, owner.out_len()),
            )? {
                RecordStep::Next(next) => pos = next,
                RecordStep::Stop => return Ok(()),
                RecordStep::Cname(rr, index) => {
                    let mut t = NameReader::new(rr.rdata);
                    scratch = [0; NAME_LEN];
                    if let NameStep::Bad(e) = name(&mut t, msg, len, &mut scratch) {
                        return cname_failed(out, &rr, e);
                    }
                    let key = stepped_key(&scratch, t.out_len());
                    cname_target(out, &rr, index, &t, &scratch, key)?;
                    pos = rr.next;
                }
            }
        }
        records_done(&h, out);
        Ok(())
    })();
    if r.is_err() {
        out.forget();
    }
    r
}

fn garble(a: &mut Answer, rng: &mut Rng) {
    for c in a.chain.iter_mut() {
        c.text.fill(rng.next() as u8);
        c.len = rng.next() as u16;
        c.key = rng.next();
        c.ttl = rng.next() as u32;
    }
    for l in a.addrs.iter_mut() {
        l.addr.fill(rng.next() as u8);
        l.ttl = rng.next() as u32;
        l.chain_index = rng.next() as u8;
    }
    a.qname_key = rng.next();
    a.chain_len = rng.next() as u16;
    a.addrs_len = rng.next() as u16;
    a.ignored = rng.next() as u16;
    a.dropped_addrs = rng.next() as u16;
    a.truncated = rng.chance(50);
}

/// What an answer says: its scalars and the entries within its lengths.
fn reading(a: &Answer) -> impl PartialEq + std::fmt::Debug {
    (
        (
            a.qname_key,
            a.id,
            a.qtype,
            a.qclass,
            a.chain_len,
            a.addrs_len,
        ),
        (a.ignored, a.dropped_addrs, a.truncated),
        a.chain[..usize::from(a.chain_len).min(MAX_CHAIN)].to_vec(),
        a.addrs[..usize::from(a.addrs_len).min(MAX_ADDRS)].to_vec(),
    )
}

/// What must hold of any reading.
fn invariants(r: Result<(), Malformed>, a: &Answer) {
    if r.is_err() {
        assert_eq!((a.chain_len, a.addrs_len), (0, 0));
        return;
    }
    let n = usize::from(a.chain_len);
    assert!((1..=MAX_CHAIN).contains(&n));
    assert!(usize::from(a.addrs_len) <= MAX_ADDRS);
    assert!(usize::from(a.dropped_addrs) == 0 || usize::from(a.addrs_len) == MAX_ADDRS);
    assert!(usize::from(a.ignored) + usize::from(a.addrs_len) + n - 1 <= MAX_RECORDS + 1);
    assert_eq!(a.chain[0].ttl, u32::MAX);
    assert_eq!(a.qname_key, a.chain[0].key);
    for (i, c) in a.chain_names().iter().enumerate() {
        let t = c.text();
        assert!(t.len() <= MAX_TEXT);
        assert_eq!(c.key, name_key(t));
        assert_eq!(c.key, full_key(&c.text, t.len()));
        assert!(!t.iter().any(u8::is_ascii_uppercase));
        assert!(c.text[t.len()..].iter().all(|&b| b == 0));
        for d in &a.chain_names()[..i] {
            assert_ne!(c.key, d.key, "chain keys are distinct");
        }
    }
    for l in a.learned() {
        assert!(usize::from(l.chain_index) < n);
        assert!(l.ttl <= a.chain[usize::from(l.chain_index)].ttl);
        assert!(l.ttl <= 0x7fff_ffff);
    }
}

#[test]
fn the_kernel_sequence_of_steps_is_parse_response() {
    let mut rng = Rng(SEED ^ 1);
    let mut whole = Box::new(Answer::ZERO);
    let mut stepped = Box::new(Answer::ZERO);
    let (mut ok, mut learned, mut errs) = (0, 0, std::collections::HashSet::new());
    for i in 0..20_000 {
        let bytes = match i % 4 {
            0 => valid(&mut rng),
            1 | 2 => mutated(&mut rng),
            _ => {
                let mut v = valid(&mut rng);
                v.truncate(14);
                let n = rng.below(300);
                v.extend(name_like(&mut rng, n));
                v
            }
        };
        let msg = held(&bytes);
        let len = if rng.chance(5) {
            MSG_LEN + 1 + rng.below(100)
        } else {
            bytes.len()
        };
        let r = parse_response(&msg, len, &mut whole);
        // Leftovers in a reused output (the kernel's per-CPU scratch) must not matter.
        garble(&mut stepped, &mut rng);
        let s = kernel_shaped(&msg, len, &mut stepped);
        assert_eq!(r, s, "message {i}");
        assert_eq!(reading(&whole), reading(&stepped), "message {i}");
        invariants(r, &whole);
        let _ = parse_query(&msg, len);
        match r {
            Ok(()) => {
                ok += 1;
                learned += usize::from(whole.addrs_len);
            }
            Err(e) => {
                errs.insert(core::mem::discriminant(&e));
            }
        }
    }
    assert!(ok > 5000 && learned > 10_000, "{ok} {learned}");
    assert!(errs.len() >= 7, "kinds of errors met: {}", errs.len());
}

/// A name's full key as the kernel takes it: [`key_step`] byte by byte, then
/// [`walked_full_key`].
fn stepped_key(text: &[u8; NAME_LEN], text_len: usize) -> u64 {
    let span = dataplane_common::dns::key_span(text, text_len);
    let mut w = dataplane_common::sni_policy::KeyWalk::new();
    let mut i = 0;
    while dataplane_common::dns::key_step(&mut w, text, span, i) {
        i += 1;
    }
    let k = dataplane_common::dns::walked_full_key(&w, span);
    assert_eq!(k, full_key(text, text_len), "stepped and whole keys agree");
    k
}
