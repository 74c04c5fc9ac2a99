//! DNS messages read for name-based egress rules: the kernel (cgroup_skb, on the DNS answers a
//! governed workload receives) learns which addresses answer which names before the
//! application sees them, so that a rule like `*.example.test` can be decided at connect time
//! by address. User space (tests, fuzzing, `explain`) runs the very same functions.
//!
//! # What is read
//! - The 12-byte [`Header`] ([`header`]).
//! - The question: exactly one ([`parse_query`] for queries, [`parse_response`] for answers).
//! - The answer section, record by record: owner name, type, class, TTL, RDLENGTH
//!   ([`rr_fixed`]), and the RDATA of A (4 bytes), AAAA (16 bytes) and CNAME (a possibly
//!   compressed name that must end exactly at the end of the RDATA). The authority and
//!   additional sections are never read: glue and "helpful" extra records are never learned.
//!
//! Names ([`NameReader`]) decode to lowercase dotted ASCII text without a trailing dot (the root
//! is the empty text). A name is refused when it runs past the message, has a label type
//! 0x40/0x80, more than [`MAX_TEXT`] bytes of text, a `.` inside a label (it would forge a label
//! boundary in the text), or a compression pointer that does not point strictly before the
//! start of the label sequence being read. That last rule alone makes every decode end (each
//! pointer moves to a strictly smaller position) and forbids loops and forward pointers;
//! [`MAX_NAME_STEPS`] bounds the steps besides. Names are keyed like SNI rules
//! ([`name_keys`], [`full_key`]: `crate::sni_policy` keys, hashed from the last byte).
//!
//! # The chain rule
//! Only what the application asked about is learned. The chain starts with the question name
//! (`Answer::chain[0]`, TTL `u32::MAX`). Answer records are walked in order; a record counts
//! only if its class is IN and its owner's [`full_key`] equals the key of a name already on the
//! chain:
//! - CNAME: its target joins the chain (unless already on it), with TTL = min(TTL of the chain
//!   name it follows, the CNAME's TTL). A chain of more than [`MAX_CHAIN`] names: the CNAMEs
//!   past it are counted in `ignored`.
//! - A (RDLENGTH 4) / AAAA (RDLENGTH 16): a [`Learned`] address, TTL = min(record TTL, TTL of
//!   the owning chain name), `chain_index` = that name. IPv4 is stored IPv4-mapped.
//! - Anything else (other types, other classes, owners not on the chain, records that come
//!   before the CNAME that would put their owner on the chain): `ignored += 1`, never learned.
//!   A response for `evil.test` carrying `bank.test A 192.0.2.1` must never teach that
//!   192.0.2.1 is `bank.test`.
//!
//! Every learned address answers the question name; `chain_index` says which chain name owned
//! its record. Matching policy on a CNAME target (not only on the question name) trusts the
//! answering server's word that the question resolves through that target: sound with a
//! resolver that follows CNAMEs itself and discards out-of-bailiwick data, not when the
//! answering server is the workload's own choice (though such a server could as well answer
//! the question name with any address). Chain names are compared by their 64-bit key: a
//! collision only lets a response's author chain names it could chain anyway with a CNAME.
//!
//! TTLs with the top bit set read as 0 (RFC 2181 §8). Only a response with QR = 1, opcode
//! QUERY, RCODE NOERROR (the header's 4 bits: the additional section, hence EDNS's extended
//! RCODE, is not read) and one question is read; anything else is an `Err` that
//! [`Malformed::is_not_answer`] tells apart from a broken message.
//!
//! # Limits
//! - [`MSG_LEN`] bytes of a message are held (the kernel copies that much). Every function takes
//!   the message's real length `len`; a read at or past `MSG_LEN` while `len` says the message
//!   goes on is a cut, not an error: `parse_response` keeps what it learned from the records
//!   before and sets `Answer::truncated`. The question always fits.
//! - [`MAX_RECORDS`] answer records are looked at; with more, `truncated` is set.
//! - [`MAX_CHAIN`] chain names (past it: `ignored`), [`MAX_ADDRS`] addresses (past it:
//!   `dropped_addrs`).
//! - A message whose answer section ends early (ANCOUNT larger than the records present, a
//!   record or RDATA running past `len`) is [`Malformed::Record`], except when it was cut at
//!   `MSG_LEN` (`truncated`: the missing part is not known to be missing) or has the TC bit
//!   (a server-truncated UDP answer: the complete records before are kept, `truncated` set).
//! - Any other error ([`Malformed`]) means nothing is learned: `chain_len` and `addrs_len` are 0.
//!
//! # In the kernel
//! `#![no_std]`, no allocation, no recursion, no panicking paths: message bytes are read as
//! `msg[i & (MSG_LEN - 1)]` after a comparison with the length, text bytes as
//! `out[i & (NAME_LEN - 1)]`, every loop has a constant bound. [`parse_response`] is written from
//! the steps the kernel calls one by one: [`response_header`], then the question name decoded
//! with [`NameReader::step`] (a `bpf_loop` of [`MAX_NAME_STEPS`]) into `chain[0].text`,
//! [`question_done`]; per record (a `bpf_loop` of [`MAX_RECORDS`]): the owner name with
//! `NameReader::step` into a scratch buffer, [`answer_record`], and for a CNAME on the chain its
//! target with `NameReader::step`, then [`cname_target`] ([`owner_failed`] / [`cname_failed`]
//! when a name does not decode); finally [`records_done`]. [`Answer`] ([`ANSWER_SIZE`] bytes)
//! belongs in a per-CPU map value, as do the message and a scratch name buffer; it is never
//! cleared whole ([`Answer::reset`] zeroes its counts; entries past its lengths are stale). The
//! query side is a [`header`] check, a `NameReader` over the question into scratch, and
//! [`full_key`] ([`parse_query`] is that with a stack buffer, for user space).
//!
//! Checked here: the crate type-checks for `bpfel-unknown-none`. Not yet checked: the verifier
//! (the kernel program that calls these steps is not written yet).

mod answer;
mod name;

pub use answer::*;
pub use name::*;

/// Bytes of a message held (the kernel buffer). A power of two: offsets are masked with it.
pub const MSG_LEN: usize = 1024;
pub(crate) const MSG_MASK: usize = MSG_LEN - 1;
/// Decoded text buffer of one name. A power of two.
pub const NAME_LEN: usize = 256;
pub(crate) const NAME_MASK: usize = NAME_LEN - 1;
/// Longest name text: 253 bytes (255 wire bytes: label lengths, labels and the root byte).
pub const MAX_TEXT: usize = 253;
/// Names in a CNAME chain, the question name included.
pub const MAX_CHAIN: usize = 8;
/// Addresses learned from one answer.
pub const MAX_ADDRS: usize = 16;
/// Answer records looked at.
pub const MAX_RECORDS: usize = 32;
/// Steps of one name decode. The longest legal name takes 255 steps over label lengths, label
/// bytes and its root byte (text + 2), plus at most one pointer per label (127) and one to the
/// root: 383.
pub const MAX_NAME_STEPS: usize = 384;
/// Bytes of the header; the question starts there.
pub const HEADER_LEN: usize = 12;

const _: () = assert!(MSG_LEN.is_power_of_two() && NAME_LEN.is_power_of_two());
const _: () = assert!(MAX_CHAIN.is_power_of_two() && MAX_ADDRS.is_power_of_two());
const _: () = assert!(MAX_TEXT + 2 + 128 <= MAX_NAME_STEPS && MAX_TEXT < NAME_LEN);
const _: () = assert!(MAX_CHAIN <= u8::MAX as usize);

/// Record types read.
pub mod types {
    pub const A: u16 = 1;
    pub const NS: u16 = 2;
    pub const CNAME: u16 = 5;
    pub const SOA: u16 = 6;
    pub const MX: u16 = 15;
    pub const TXT: u16 = 16;
    pub const AAAA: u16 = 28;
    pub const OPT: u16 = 41;
    pub const DNAME: u16 = 39;
}

/// Classes.
pub mod classes {
    pub const IN: u16 = 1;
    pub const CH: u16 = 3;
}

/// Response codes.
pub mod rcodes {
    pub const NOERROR: u8 = 0;
    pub const FORMERR: u8 = 1;
    pub const SERVFAIL: u8 = 2;
    pub const NXDOMAIN: u8 = 3;
    pub const REFUSED: u8 = 5;
}

/// Bytes of the message held for a message of length `len`.
#[inline(always)]
pub(crate) fn held(len: usize) -> usize {
    if len < MSG_LEN { len } else { MSG_LEN }
}

#[inline(always)]
pub(crate) fn byte(msg: &[u8; MSG_LEN], i: usize) -> u8 {
    msg[i & MSG_MASK]
}

#[inline(always)]
pub(crate) fn be16(msg: &[u8; MSG_LEN], i: usize) -> u16 {
    (u16::from(byte(msg, i)) << 8) | u16::from(byte(msg, i + 1))
}

#[inline(always)]
pub(crate) fn be32(msg: &[u8; MSG_LEN], i: usize) -> u32 {
    (u32::from(be16(msg, i)) << 16) | u32::from(be16(msg, i + 2))
}

/// The message header.
#[repr(C)]
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct Header {
    pub id: u16,
    pub flags: u16,
    pub qdcount: u16,
    pub ancount: u16,
    pub nscount: u16,
    pub arcount: u16,
}

impl Header {
    /// A query (QR = 0) of opcode QUERY with exactly one question: what is recorded.
    #[inline(always)]
    pub const fn is_single_query(&self) -> bool {
        !self.is_response() && self.opcode() == 0 && self.qdcount == 1
    }

    /// QR: a response.
    #[inline(always)]
    pub const fn is_response(&self) -> bool {
        self.flags & 0x8000 != 0
    }
    /// OPCODE (0 = QUERY).
    #[inline(always)]
    pub const fn opcode(&self) -> u8 {
        ((self.flags >> 11) & 0xf) as u8
    }
    /// RCODE (header bits only; 0 = NOERROR).
    #[inline(always)]
    pub const fn rcode(&self) -> u8 {
        (self.flags & 0xf) as u8
    }
    /// TC: the server truncated the message.
    #[inline(always)]
    pub const fn truncated(&self) -> bool {
        self.flags & 0x0200 != 0
    }
}

/// The header of a message of length `len`, if it has one.
#[inline(always)]
pub fn header(msg: &[u8; MSG_LEN], len: usize) -> Option<Header> {
    if held(len) < HEADER_LEN {
        return None;
    }
    Some(Header {
        id: be16(msg, 0),
        flags: be16(msg, 2),
        qdcount: be16(msg, 4),
        ancount: be16(msg, 6),
        nscount: be16(msg, 8),
        arcount: be16(msg, 10),
    })
}

/// The fixed part of a resource record. Positions are message offsets.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct Rr {
    pub rtype: u16,
    pub class: u16,
    /// TTL; a value with the top bit set reads as 0 (RFC 2181 §8).
    pub ttl: u32,
    pub rdata: usize,
    pub rdlen: usize,
    /// Where the next record starts (`rdata + rdlen`).
    pub next: usize,
}

/// The fixed part of the record whose owner name ends at `pos`: `None` when it is not held
/// (past `len` or past [`MSG_LEN`]) or its RDATA runs past `len`. The RDATA itself may lie
/// past `MSG_LEN` (`next > MSG_LEN`): the caller checks before reading it.
#[inline(always)]
pub fn rr_fixed(msg: &[u8; MSG_LEN], len: usize, pos: usize) -> Option<Rr> {
    let rr = rr_header(msg, len, pos)?;
    if rr.next > len {
        return None;
    }
    Some(rr)
}

/// [`rr_fixed`] without the RDATA check.
#[inline(always)]
pub(crate) fn rr_header(msg: &[u8; MSG_LEN], len: usize, pos: usize) -> Option<Rr> {
    let held = held(len);
    if pos > held || held - pos < 10 {
        return None;
    }
    let ttl = be32(msg, pos + 4);
    let rdlen = usize::from(be16(msg, pos + 8));
    Some(Rr {
        rtype: be16(msg, pos),
        class: be16(msg, pos + 2),
        ttl: if ttl > 0x7fff_ffff { 0 } else { ttl },
        rdata: pos + 10,
        rdlen,
        next: pos + 10 + rdlen,
    })
}

/// A query, as a governed workload sends it.
#[repr(C)]
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct Query {
    pub id: u16,
    pub qtype: u16,
    pub qclass: u16,
    pub _pad: u16,
    /// [`full_key`] of the question name.
    pub qname_key: u64,
}

/// Reads a query: QR = 0, opcode QUERY, exactly one question.
pub fn parse_query(msg: &[u8; MSG_LEN], len: usize) -> Option<Query> {
    let h = header(msg, len)?;
    if !h.is_single_query() {
        return None;
    }
    let mut text = [0u8; NAME_LEN];
    let (end, text_len) = read_name(msg, len, HEADER_LEN, &mut text)?;
    let (qtype, qclass, _) = question_fixed(msg, len, end)?;
    Some(Query {
        id: h.id,
        qtype,
        qclass,
        _pad: 0,
        qname_key: full_key(&text, text_len),
    })
}
