//! Reading a response: the steps the kernel takes one by one, and [`parse_response`], their
//! user-space composition.

use super::{
    HEADER_LEN, Header, MAX_ADDRS, MAX_CHAIN, MAX_RECORDS, MSG_LEN, NAME_LEN, NameError,
    NameReader, Rr, byte, classes, clear_name, copy_name, full_key, header, question_fixed,
    rr_header, run_name, types,
};

const CHAIN_MASK: usize = MAX_CHAIN - 1;
const ADDRS_MASK: usize = MAX_ADDRS - 1;

/// A name on the CNAME chain.
#[repr(C)]
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct ChainName {
    /// Lowercase dotted text, `len` bytes (zeros after).
    pub text: [u8; NAME_LEN],
    pub len: u16,
    pub _pad: u16,
    /// `u32::MAX` for the question name; for a CNAME target, min(TTL of the name it follows,
    /// the CNAME's TTL).
    pub ttl: u32,
    /// [`full_key`] of the text.
    pub key: u64,
}

impl ChainName {
    pub const ZERO: ChainName = ChainName {
        text: [0; NAME_LEN],
        len: 0,
        _pad: 0,
        ttl: 0,
        key: 0,
    };

    /// The text (user space).
    #[cfg(not(target_arch = "bpf"))]
    pub fn text(&self) -> &[u8] {
        &self.text[..usize::from(self.len).min(NAME_LEN)]
    }
}

/// An address learned from an answer.
#[repr(C)]
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct Learned {
    /// IPv6, or IPv4 as IPv4-mapped `::ffff:a.b.c.d`.
    pub addr: [u8; 16],
    /// min(record TTL, TTL of the owning chain name).
    pub ttl: u32,
    /// Index in `Answer::chain` of the record's owner.
    pub chain_index: u8,
    pub _pad: [u8; 3],
}

/// What a response teaches: `chain[..chain_len]`, `addrs[..addrs_len]` (entries past them are
/// stale). After an `Err`, `chain_len` and `addrs_len` are 0.
#[repr(C)]
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Answer {
    /// `chain[0]` is the question name.
    pub chain: [ChainName; MAX_CHAIN],
    pub addrs: [Learned; MAX_ADDRS],
    /// [`full_key`] of the question name.
    pub qname_key: u64,
    pub id: u16,
    pub qtype: u16,
    pub qclass: u16,
    pub chain_len: u16,
    pub addrs_len: u16,
    /// Answer records not learned from: owner not on the chain, class not IN, type other than
    /// A/AAAA/CNAME, CNAMEs past a full chain.
    pub ignored: u16,
    /// A/AAAA records of the chain past [`MAX_ADDRS`].
    pub dropped_addrs: u16,
    /// Records were left unread: more than [`MAX_RECORDS`], the message was cut at
    /// [`MSG_LEN`], or the server truncated it (TC) before the records ANCOUNT announces.
    pub truncated: bool,
    pub _pad: u8,
}

/// Size of [`Answer`] in bytes.
pub const ANSWER_SIZE: usize = 2584;
const _: () = assert!(core::mem::size_of::<Answer>() == ANSWER_SIZE);
const _: () = assert!(core::mem::size_of::<ChainName>() == 272);
const _: () = assert!(core::mem::size_of::<Learned>() == 24);

impl Answer {
    pub const ZERO: Answer = Answer {
        chain: [ChainName::ZERO; MAX_CHAIN],
        addrs: [Learned {
            addr: [0; 16],
            ttl: 0,
            chain_index: 0,
            _pad: [0; 3],
        }; MAX_ADDRS],
        qname_key: 0,
        id: 0,
        qtype: 0,
        qclass: 0,
        chain_len: 0,
        addrs_len: 0,
        ignored: 0,
        dropped_addrs: 0,
        truncated: false,
        _pad: 0,
    };

    /// Starts a new reading: every count and length to 0. The arrays are not cleared (the
    /// kernel's copy is a 2.6 KiB per-CPU map value): entries past `chain_len` / `addrs_len`
    /// are stale and meaningless.
    #[inline(always)]
    pub fn reset(&mut self) {
        // The question is decoded straight into `chain[0].text`.
        clear_name(&mut self.chain[0].text);
        self.qname_key = 0;
        self.id = 0;
        self.qtype = 0;
        self.qclass = 0;
        self.chain_len = 0;
        self.addrs_len = 0;
        self.ignored = 0;
        self.dropped_addrs = 0;
        self.truncated = false;
        self._pad = 0;
    }

    /// Learn nothing: what the caller of a failed parse sees.
    #[inline(always)]
    pub fn forget(&mut self) {
        self.chain_len = 0;
        self.addrs_len = 0;
    }

    /// The learned addresses (user space).
    #[cfg(not(target_arch = "bpf"))]
    pub fn learned(&self) -> &[Learned] {
        &self.addrs[..usize::from(self.addrs_len).min(MAX_ADDRS)]
    }

    /// The chain names (user space).
    #[cfg(not(target_arch = "bpf"))]
    pub fn chain_names(&self) -> &[ChainName] {
        &self.chain[..usize::from(self.chain_len).min(MAX_CHAIN)]
    }
}

/// Why nothing is learned from a message. The first four are well-formed messages that are
/// not answers ([`Malformed::is_not_answer`]); the rest are broken.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum Malformed {
    /// QR = 0: a query.
    NotResponse,
    /// An opcode other than QUERY.
    Opcode(u8),
    /// An RCODE other than NOERROR (NXDOMAIN, SERVFAIL, ...).
    Rcode(u8),
    /// QDCOUNT other than 1.
    Questions(u16),
    /// Shorter than a header.
    Header,
    /// The question name does not decode.
    QuestionName(NameError),
    /// The question's type and class run past the end.
    Question,
    /// An answer's owner name does not decode.
    OwnerName(NameError),
    /// The answer section ends early: ANCOUNT announces more records than present, or a
    /// record's fixed part or RDATA runs past the end.
    Record,
    /// A class IN A record whose RDLENGTH is not 4, or AAAA not 16.
    AddressLength,
    /// The target of a CNAME on the chain does not decode.
    CnameTarget(NameError),
    /// The target of a CNAME on the chain does not end exactly where its RDATA does.
    CnameLength,
}

impl Malformed {
    /// A well-formed message that is not an answer to learn from (a query, an error response,
    /// another opcode, not one question).
    pub const fn is_not_answer(self) -> bool {
        matches!(
            self,
            Malformed::NotResponse
                | Malformed::Opcode(_)
                | Malformed::Rcode(_)
                | Malformed::Questions(_)
        )
    }
}

/// What to do after [`answer_record`].
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum RecordStep {
    /// The record is handled (learned or counted); the next one starts here.
    Next(usize),
    /// A CNAME whose owner is `chain[index]`: decode its target from `rr.rdata` (a
    /// [`NameReader`]), then call [`cname_target`] (or [`cname_failed`]); the next record
    /// starts at `rr.next`.
    Cname(Rr, u8),
    /// The message stops short of this record (cut at [`MSG_LEN`], or TC): `truncated` is set;
    /// read no more.
    Stop,
}

/// Step 1: resets `out` ([`Answer::reset`]), reads the header and checks that the message is an answer: a
/// response, opcode QUERY, NOERROR, one question. The question name follows at
/// [`HEADER_LEN`]: decode it into `out.chain[0].text`.
#[inline(always)]
pub fn response_header(
    msg: &[u8; MSG_LEN],
    len: usize,
    out: &mut Answer,
) -> Result<Header, Malformed> {
    out.reset();
    let h = header(msg, len).ok_or(Malformed::Header)?;
    out.id = h.id;
    if !h.is_response() {
        return Err(Malformed::NotResponse);
    }
    if h.opcode() != 0 {
        return Err(Malformed::Opcode(h.opcode()));
    }
    if h.rcode() != 0 {
        return Err(Malformed::Rcode(h.rcode()));
    }
    if h.qdcount != 1 {
        return Err(Malformed::Questions(h.qdcount));
    }
    Ok(h)
}

/// Step 2, once `question` (started at [`HEADER_LEN`], writing to `out.chain[0].text`) is
/// `Done` and `key` is the [`full_key`] of its text: reads the question's type and class and starts the chain. Returns where the first
/// answer record starts.
#[inline(always)]
pub fn question_done(
    msg: &[u8; MSG_LEN],
    len: usize,
    out: &mut Answer,
    question: &NameReader,
    key: u64,
) -> Result<usize, Malformed> {
    let (qtype, qclass, next) =
        question_fixed(msg, len, question.end()).ok_or(Malformed::Question)?;
    let n = question.out_len();
    // The text was decoded into a zeroed buffer (see `reset`): zeros after its length.
    let name = &mut out.chain[0];
    name.len = n as u16;
    name._pad = 0;
    name.key = key;
    name.ttl = u32::MAX;
    out.chain_len = 1;
    out.qname_key = key;
    out.qtype = qtype;
    out.qclass = qclass;
    Ok(next)
}

/// The answer section ends early: truncated if the server said so (TC), else malformed.
#[inline(always)]
fn ends_early(h: &Header, out: &mut Answer) -> Result<RecordStep, Malformed> {
    if h.truncated() {
        out.truncated = true;
        return Ok(RecordStep::Stop);
    }
    Err(Malformed::Record)
}

/// When a record's owner name does not decode: `Ok` (with `truncated` set: stop reading) if
/// the message was cut there or announced as truncated (TC), else why it is malformed.
#[inline(always)]
pub fn owner_failed(h: &Header, out: &mut Answer, e: NameError) -> Result<(), Malformed> {
    match e {
        NameError::Cut => {
            out.truncated = true;
            Ok(())
        }
        NameError::End => ends_early(h, out).map(|_| ()),
        _ => Err(Malformed::OwnerName(e)),
    }
}

/// When the target of a CNAME on the chain does not decode: `Ok` (with `truncated` set: stop
/// reading) if its RDATA is past what is held, else why it is malformed.
#[inline(always)]
pub fn cname_failed(out: &mut Answer, rr: &Rr, e: NameError) -> Result<(), Malformed> {
    if e == NameError::Cut && rr.next > MSG_LEN {
        out.truncated = true;
        return Ok(());
    }
    Err(Malformed::CnameTarget(e))
}

/// Index of the chain name with this key.
#[inline(always)]
pub fn chain_find(out: &Answer, key: u64) -> Option<usize> {
    let n = usize::from(out.chain_len);
    let mut i = 0;
    while i < MAX_CHAIN {
        if i >= n {
            break;
        }
        if out.chain[i & CHAIN_MASK].key == key {
            return Some(i);
        }
        i += 1;
    }
    None
}

#[inline(always)]
fn min(a: u32, b: u32) -> u32 {
    if a < b { a } else { b }
}

#[inline(always)]
fn learn(msg: &[u8; MSG_LEN], out: &mut Answer, rr: &Rr, index: usize) {
    if usize::from(out.addrs_len) >= MAX_ADDRS {
        out.dropped_addrs = out.dropped_addrs.saturating_add(1);
        return;
    }
    let mut addr = [0u8; 16];
    if rr.rtype == types::A {
        addr[10] = 0xff;
        addr[11] = 0xff;
        let mut k = 0;
        while k < 4 {
            addr[12 + k] = byte(msg, rr.rdata + k);
            k += 1;
        }
    } else {
        let mut k = 0;
        while k < 16 {
            addr[k] = byte(msg, rr.rdata + k);
            k += 1;
        }
    }
    let owner_ttl = out.chain[index & CHAIN_MASK].ttl;
    let slot = usize::from(out.addrs_len) & ADDRS_MASK;
    out.addrs[slot] = Learned {
        addr,
        ttl: min(rr.ttl, owner_ttl),
        chain_index: index as u8,
        _pad: [0; 3],
    };
    out.addrs_len += 1;
}

/// Step 3, per answer record, once its `owner` name is `Done` (`owner_key`: the [`full_key`]
/// of its text): reads the
/// record's fixed part and applies the chain rule. A/AAAA records of the chain are learned
/// here; a CNAME of the chain asks for its target to be decoded.
#[inline(always)]
pub fn answer_record(
    msg: &[u8; MSG_LEN],
    len: usize,
    h: &Header,
    out: &mut Answer,
    owner: &NameReader,
    owner_key: u64,
) -> Result<RecordStep, Malformed> {
    let pos = owner.end();
    let Some(rr) = rr_header(msg, len, pos) else {
        if pos.saturating_add(10) > len {
            return ends_early(h, out);
        }
        // Past what is held, but the message goes on.
        out.truncated = true;
        return Ok(RecordStep::Stop);
    };
    if rr.next > len {
        return ends_early(h, out);
    }
    let is_in = rr.class == classes::IN;
    if is_in
        && ((rr.rtype == types::A && rr.rdlen != 4) || (rr.rtype == types::AAAA && rr.rdlen != 16))
    {
        return Err(Malformed::AddressLength);
    }
    let index = if is_in {
        chain_find(out, owner_key)
    } else {
        None
    };
    let Some(index) = index else {
        out.ignored = out.ignored.saturating_add(1);
        return Ok(RecordStep::Next(rr.next));
    };
    if rr.rtype == types::A || rr.rtype == types::AAAA {
        if rr.next > MSG_LEN {
            out.truncated = true;
            return Ok(RecordStep::Stop);
        }
        learn(msg, out, &rr, index);
        return Ok(RecordStep::Next(rr.next));
    }
    if rr.rtype == types::CNAME {
        return Ok(RecordStep::Cname(rr, index as u8));
    }
    out.ignored = out.ignored.saturating_add(1);
    Ok(RecordStep::Next(rr.next))
}

/// Step 3b, once the `target` of the CNAME `rr` owned by `chain[index]` is `Done` (text in
/// `text`, decoded into a zeroed buffer; `key` its [`full_key`]): it must end exactly at the end of the RDATA; it joins the chain unless already
/// there (or the chain is full: `ignored`).
#[inline(always)]
pub fn cname_target(
    out: &mut Answer,
    rr: &Rr,
    index: u8,
    target: &NameReader,
    text: &[u8; NAME_LEN],
    key: u64,
) -> Result<(), Malformed> {
    if target.end() != rr.next {
        return Err(Malformed::CnameLength);
    }
    let n = target.out_len();
    if chain_find(out, key).is_some() {
        return Ok(());
    }
    let slot = usize::from(out.chain_len);
    if slot >= MAX_CHAIN {
        out.ignored = out.ignored.saturating_add(1);
        return Ok(());
    }
    let ttl = min(out.chain[usize::from(index) & CHAIN_MASK].ttl, rr.ttl);
    let name = &mut out.chain[slot & CHAIN_MASK];
    // One fixed-size copy (a loop here costs the verifier one pass per byte); `text` was
    // decoded into a zeroed buffer, so the copy has zeros after its length too.
    copy_name(&mut name.text, text);
    name.len = n as u16;
    name._pad = 0;
    name.key = key;
    name.ttl = ttl;
    out.chain_len += 1;
    Ok(())
}

/// Step 4, after the last record read: more than [`MAX_RECORDS`] announced → `truncated`.
#[inline(always)]
pub fn records_done(h: &Header, out: &mut Answer) {
    if usize::from(h.ancount) > MAX_RECORDS {
        out.truncated = true;
    }
}

/// Reads a response of length `len` (its first [`MSG_LEN`] bytes in `msg`) by the chain rule
/// (see the module docs). On `Err`, `out` learned nothing (`chain_len` = `addrs_len` = 0).
pub fn parse_response(msg: &[u8; MSG_LEN], len: usize, out: &mut Answer) -> Result<(), Malformed> {
    let mut scratch = [0u8; NAME_LEN];
    let r = read_response(msg, len, out, &mut scratch);
    if r.is_err() {
        out.forget();
    }
    r
}

fn read_response(
    msg: &[u8; MSG_LEN],
    len: usize,
    out: &mut Answer,
    scratch: &mut [u8; NAME_LEN],
) -> Result<(), Malformed> {
    let h = response_header(msg, len, out)?;
    let mut question = NameReader::new(HEADER_LEN);
    run_name(&mut question, msg, len, &mut out.chain[0].text).map_err(Malformed::QuestionName)?;
    let qkey = full_key(&out.chain[0].text, question.out_len());
    let mut pos = question_done(msg, len, out, &question, qkey)?;
    let mut i = 0;
    while i < MAX_RECORDS {
        if i >= usize::from(h.ancount) {
            return Ok(());
        }
        let mut owner = NameReader::new(pos);
        clear_name(scratch);
        if let Err(e) = run_name(&mut owner, msg, len, scratch) {
            return owner_failed(&h, out, e);
        }
        let owner_key = full_key(scratch, owner.out_len());
        match answer_record(msg, len, &h, out, &owner, owner_key)? {
            RecordStep::Next(next) => pos = next,
            RecordStep::Stop => return Ok(()),
            RecordStep::Cname(rr, index) => {
                let mut target = NameReader::new(rr.rdata);
                clear_name(scratch);
                if let Err(e) = run_name(&mut target, msg, len, scratch) {
                    return cname_failed(out, &rr, e);
                }
                let key = full_key(scratch, target.out_len());
                cname_target(out, &rr, index, &target, scratch, key)?;
                pos = rr.next;
            }
        }
        i += 1;
    }
    records_done(&h, out);
    Ok(())
}
