//! Arbitrary bytes as a DNS message in the kernel's buffer, into the answer and query parsers
//! and the name decoder at every offset (the user-space twins of the kernel's steps): no panic
//! (debug assertions on: no overflow, no out-of-bounds), every name decoded within
//! `MAX_NAME_STEPS` steps and the same stepped by hand as whole, and the invariants of a
//! reading: learned addresses belong to a chain name and live no longer than it, chain keys
//! are distinct and are the keys of the chain texts, an error learns nothing.
#![no_main]

use dataplane_common::dns::{
    Answer, ChainName, Learned, MAX_ADDRS, MAX_CHAIN, MAX_NAME_STEPS, MAX_RECORDS, MAX_TEXT,
    MSG_LEN, NAME_LEN, NameReader, NameStep, decode_name, full_key, parse_query, parse_response,
    read_name,
};
use dataplane_common::sni_policy::name_key;
use libfuzzer_sys::fuzz_target;

fn check_answer(ok: bool, a: &Answer) {
    if !ok {
        assert_eq!(
            (a.chain_len, a.addrs_len),
            (0, 0),
            "an error learns nothing"
        );
        return;
    }
    let n = usize::from(a.chain_len);
    assert!(n >= 1 && n <= MAX_CHAIN, "chain length {n}");
    assert!(usize::from(a.addrs_len) <= MAX_ADDRS);
    assert!(
        usize::from(a.ignored) + usize::from(a.addrs_len) + n - 1 <= MAX_RECORDS + 1,
        "more outcomes than records"
    );
    assert_eq!(a.chain[0].ttl, u32::MAX);
    assert_eq!(a.qname_key, a.chain[0].key);
    for i in 0..n {
        let c = &a.chain[i];
        let len = usize::from(c.len);
        assert!(len <= MAX_TEXT);
        let text = &c.text[..len];
        assert_eq!(c.key, name_key(text), "chain key is the text's key");
        assert_eq!(c.key, full_key(&c.text, len));
        assert!(!text.iter().any(u8::is_ascii_uppercase));
        for d in &a.chain[..i] {
            assert_ne!(c.key, d.key, "chain keys are distinct");
        }
    }
    for l in &a.addrs[..usize::from(a.addrs_len)] {
        let i = usize::from(l.chain_index);
        assert!(i < n, "chain_index {i} of {n}");
        assert!(l.ttl <= a.chain[i].ttl, "an address outlives its name");
        assert!(l.ttl <= 0x7fff_ffff);
    }
}

/// What an answer says: its scalars and the entries within its lengths.
fn reading(a: &Answer) -> (Vec<u8>, Vec<ChainName>, Vec<Learned>) {
    let scalars = format!(
        "{} {} {} {} {} {} {} {} {}",
        a.qname_key,
        a.id,
        a.qtype,
        a.qclass,
        a.chain_len,
        a.addrs_len,
        a.ignored,
        a.dropped_addrs,
        a.truncated
    );
    (
        scalars.into_bytes(),
        a.chain[..usize::from(a.chain_len).min(MAX_CHAIN)].to_vec(),
        a.addrs[..usize::from(a.addrs_len).min(MAX_ADDRS)].to_vec(),
    )
}

fn check_name(msg: &[u8; MSG_LEN], len: usize, pos: usize) {
    let mut whole = [0u8; NAME_LEN];
    let r = decode_name(msg, len, pos, &mut whole);
    assert_eq!(r.ok(), read_name(msg, len, pos, &mut [0u8; NAME_LEN]));
    let mut stepped = [0u8; NAME_LEN];
    let mut reader = NameReader::new(pos);
    let mut calls = 0;
    let last = loop {
        let s = reader.step(msg, len, &mut stepped);
        calls += 1;
        assert!(calls <= MAX_NAME_STEPS, "unbounded name at {pos}");
        if s != NameStep::More {
            break s;
        }
    };
    assert_eq!(reader.steps(), calls);
    assert_eq!(whole, stepped);
    match (last, r) {
        (NameStep::Done, Ok((end, n))) => {
            assert_eq!((reader.end(), reader.out_len()), (end, n));
            assert!(n <= MAX_TEXT && end <= len.min(MSG_LEN));
            let t = &whole[..n];
            assert!(!t.iter().any(u8::is_ascii_uppercase));
            assert!(n == 0 || (t[0] != b'.' && t[n - 1] != b'.'));
            assert!(!t.windows(2).any(|w| w == b".."));
        }
        (NameStep::Bad(e), Err(f)) => assert_eq!(e, f),
        other => panic!("step and whole differ at {pos}: {other:?}"),
    }
}

fuzz_target!(|input: &[u8]| {
    // The first byte says whether the message goes on past what is held, and by how much.
    let (flag, data) = match input {
        [f, rest @ ..] => (*f, rest),
        _ => return,
    };
    let mut msg = Box::new([0u8; MSG_LEN]);
    let held = data.len().min(MSG_LEN);
    msg[..held].copy_from_slice(&data[..held]);
    let len = if flag & 1 == 1 {
        MSG_LEN + 1 + usize::from(flag >> 1)
    } else {
        data.len()
    };

    let mut a = Box::new(Answer::ZERO);
    let r = parse_response(&msg, len, &mut a);
    check_answer(r.is_ok(), &a);
    // A reused output (the kernel's per-CPU scratch, stale entries and all) reads the same.
    let mut again = Box::new(Answer::ZERO);
    for i in 0..MAX_CHAIN {
        again.chain[i].text = [b'Z'; NAME_LEN];
        again.chain[i].key = i as u64;
    }
    again.addrs_len = 3;
    again.ignored = 7;
    again.truncated = true;
    assert_eq!(parse_response(&msg, len, &mut again), r);
    assert_eq!(reading(&again), reading(&a));

    if let Some(q) = parse_query(&msg, len) {
        let mut text = [0u8; NAME_LEN];
        let (_, n) = read_name(&msg, len, 12, &mut text).expect("a query's name reads");
        assert_eq!(q.qname_key, full_key(&text, n));
    }

    let end = len.min(MSG_LEN);
    for pos in 0..=end + 1 {
        check_name(&msg, len, pos);
    }
});
