//! In-kernel DNS learning on governed cgroups (docs/dns.md): cgroup_skb egress records each
//! query a workload sends to a watched resolver port; cgroup_skb ingress reads the answer to
//! it — before the socket queues it for the application — and associates each address of the
//! question's CNAME chain with the watched names of that chain (DNS_LEARNED). The parsing is
//! `dataplane_common::dns`, step by step: every loop is a `bpf_loop` whose callback is one
//! step, so the verifier checks each step once. Neither program ever drops a packet.

use core::ffi::c_void;

use aya_ebpf::{
    EbpfContext as _,
    bindings::{__sk_buff, BPF_NOEXIST},
    helpers::{
        bpf_ktime_get_ns,
        generated::{bpf_loop, bpf_skb_ancestor_cgroup_id, bpf_skb_cgroup_id, bpf_skb_load_bytes},
    },
    macros::cgroup_skb,
    programs::SkBuffContext,
};
use core::ptr::read_volatile;
use dataplane_common::{
    MAX_CGROUP_DEPTH, WorkloadKey,
    dns::{
        Answer, HEADER_LEN, Header, MAX_ADDRS, MAX_CHAIN, MAX_NAME_STEPS, MAX_RECORDS, MSG_LEN,
        NAME_LEN, NameError, NameReader, NameStep, RecordStep, Rr, answer_record, clear_name,
        cname_failed, cname_target, header, key_span, key_step, owner_failed, question_done,
        question_fixed, records_done, response_header, walked_full_key,
    },
    dns_learning::{
        KEYS_PER_ADDR, LearnedKey, LearnedNames, QueryKey, QueryValue, WatchKey, stats,
    },
    ipv4_mapped,
    sni_policy::{KeyWalk, MAX_SUFFIXES},
};

use crate::{
    dns_maps::{DNS_CONFIG, DNS_LEARNED, DNS_PORTS, DNS_QUERIES, DNS_SCRATCH, DNS_WATCH, bump},
    maps::{CONFIG, WORKLOADS},
};

const PASS: i32 = 1;
const IPPROTO_TCP: u8 = 6;
const IPPROTO_UDP: u8 = 17;
const CHAIN_MASK: usize = MAX_CHAIN - 1;
const ADDRS_MASK: usize = MAX_ADDRS - 1;
const KEYS_MASK: usize = KEYS_PER_ADDR - 1;
/// `walk_of` for the `name` buffer (chain names are 0..MAX_CHAIN).
const NAME: u32 = MAX_CHAIN as u32;

/// Per-CPU state of one program run, shared with the bpf_loop callbacks.
#[repr(C)]
pub struct Scratch {
    pub msg: [u8; MSG_LEN],
    pub name: [u8; NAME_LEN],
    pub answer: Answer,
    pub reader: NameReader,
    pub header: Header,
    /// Length of the message (may exceed MSG_LEN: only MSG_LEN bytes are held).
    pub len: u32,
    /// Where the next answer record starts.
    pub pos: u32,
    /// 0 reading, 1 done, 2 malformed.
    pub state: u32,
    /// Of the last name decode: 0 more, 1 done, 2 bad (`name_error`).
    pub name_state: u32,
    pub name_error: u32,
    pub workload_id: u32,
    pub slot: u32,
    /// Watched name keys of each chain name.
    pub watched: [[u64; KEYS_PER_ADDR]; MAX_CHAIN],
    pub watched_len: [u32; MAX_CHAIN],
    pub keys: [u64; MAX_SUFFIXES + 1],
    /// The key walk in progress: over `chain[walk_of].text`, or `name` (`walk_of` = NAME).
    pub walk: KeyWalk,
    pub walk_of: u32,
    pub walk_span: u32,
    /// The address being recorded (learn_name).
    pub cur: LearnedKey,
    pub cur_expires: u64,
    pub cur_owner: u32,
    pub _pad: u32,
    pub now: u64,
    pub min_ttl: u64,
    pub max_ttl: u64,
}

/// A DNS message in a packet, seen from the governed workload's side.
struct Packet {
    proto: u8,
    remote: [u8; 16],
    local_port: u16,
    remote_port: u16,
    /// Offset of the DNS message from the network header, and its length.
    offset: u32,
    len: u32,
    /// 1: a TCP segment holding only the start of a message, not read. (Not a bool: a bool's
    /// niche would make `Option<Packet>` a layout whose BTF the kernel rejects.)
    partial: u8,
}

#[cgroup_skb(egress)]
pub fn mw_dns_egress(ctx: SkBuffContext) -> i32 {
    let _ = record_query(&ctx);
    PASS
}

#[cgroup_skb(ingress)]
pub fn mw_dns_ingress(ctx: SkBuffContext) -> i32 {
    let _ = learn_answer(&ctx);
    PASS
}

#[inline(always)]
fn scratch() -> Option<&'static mut Scratch> {
    // SAFETY: per-CPU slot, one program run at a time on a CPU.
    DNS_SCRATCH.get_ptr_mut(0).map(|p| unsafe { &mut *p })
}

#[inline(never)]
fn record_query(ctx: &SkBuffContext) -> Option<()> {
    let pkt = packet(ctx, false)?;
    if pkt.partial != 0 {
        return None;
    }
    let workload_id = watched(ctx)?;
    let s = scratch()?;
    load(ctx, s, &pkt)?;
    let h = header(&s.msg, s.len as usize)?;
    if !h.is_single_query() {
        return None;
    }
    s.reader = NameReader::new(HEADER_LEN);
    decode_name::<true>()?;
    let s = scratch()?;
    let n = s.reader.out_len();
    question_fixed(&s.msg, s.len as usize, s.reader.end())?;
    let qname_key = walk_key(0, n)?;
    let key = query_key(workload_id, &pkt, h.id);
    let value = QueryValue {
        qname_key,
        // SAFETY: no arguments.
        sent_ns: unsafe { bpf_ktime_get_ns() },
    };
    let _ = DNS_QUERIES.insert(&key, &value, 0);
    bump(stats::QUERIES);
    Some(())
}

#[inline(never)]
fn learn_answer(ctx: &SkBuffContext) -> Option<()> {
    let pkt = packet(ctx, true)?;
    let workload_id = watched(ctx)?;
    if pkt.partial != 0 {
        bump(stats::TRUNCATED);
        return None;
    }
    let s = scratch()?;
    load(ctx, s, &pkt)?;
    let h = match response_header(&s.msg, s.len as usize, &mut s.answer) {
        Ok(h) => h,
        Err(e) => {
            if !e.is_not_answer() {
                bump(stats::MALFORMED);
            }
            return None;
        }
    };
    // Only the answer to an outstanding query of this workload, from the resolver it asked.
    let key = query_key(workload_id, &pkt, h.id);
    // SAFETY: copied out at once.
    let Some(query) = (unsafe { DNS_QUERIES.get(&key) }).copied() else {
        bump(stats::UNMATCHED);
        return None;
    };
    s.header = h;
    s.reader = NameReader::new(HEADER_LEN);
    if decode_name::<true>().is_none() {
        bump(stats::MALFORMED);
        return None;
    }
    let reader = scratch()?.reader;
    let qkey = walk_key(0, reader.out_len())?;
    let s = scratch()?;
    let Ok(pos) = question_done(&s.msg, s.len as usize, &mut s.answer, &reader, qkey) else {
        bump(stats::MALFORMED);
        return None;
    };
    if s.answer.qname_key != query.qname_key {
        bump(stats::UNMATCHED);
        return None;
    }
    let _ = DNS_QUERIES.remove(&key);
    s.pos = pos as u32;
    s.state = 0;
    // SAFETY: callback and (null) context are valid for the call.
    unsafe {
        bpf_loop(
            MAX_RECORDS as u32,
            record_step as *mut c_void,
            core::ptr::null_mut(),
            0,
        )
    };
    let s = scratch()?;
    if s.state == 2 {
        bump(stats::MALFORMED);
        return None;
    }
    if s.state == 0 {
        let h = s.header;
        records_done(&h, &mut s.answer);
    }
    bump(stats::ANSWERS);
    if s.answer.truncated || s.answer.dropped_addrs != 0 {
        bump(stats::TRUNCATED);
    }
    if s.answer.addrs_len == 0 {
        return Some(());
    }
    s.workload_id = workload_id;
    // SAFETY: CONFIG is an array of one.
    s.slot = CONFIG.get(0).map_or(0, |c| c.active_slot);
    s.now = unsafe { bpf_ktime_get_ns() };
    let (min_ttl, max_ttl) = DNS_CONFIG.get(0).map_or((0, u64::from(u32::MAX)), |c| {
        (u64::from(c.min_ttl_secs), u64::from(c.max_ttl_secs))
    });
    s.min_ttl = min_ttl;
    s.max_ttl = max_ttl;
    // SAFETY: as above.
    unsafe {
        bpf_loop(
            MAX_CHAIN as u32,
            chain_watch as *mut c_void,
            core::ptr::null_mut(),
            0,
        );
        bpf_loop(
            MAX_ADDRS as u32,
            learn_addr as *mut c_void,
            core::ptr::null_mut(),
            0,
        );
    }
    Some(())
}

/// The governed workload of the packet's socket (`packet` has checked the port).
#[inline(always)]
fn watched(ctx: &SkBuffContext) -> Option<u32> {
    let slot = CONFIG.get(0)?.active_slot;
    skb_workload(ctx, slot)
}

/// Loads the message (its first MSG_LEN bytes) into `s.msg`.
#[inline(always)]
fn load(ctx: &SkBuffContext, s: &mut Scratch, pkt: &Packet) -> Option<()> {
    let n = if pkt.len > MSG_LEN as u32 {
        MSG_LEN as u32
    } else {
        pkt.len
    };
    if n < HEADER_LEN as u32 {
        return None;
    }
    // SAFETY: s.msg holds MSG_LEN bytes and n ≤ MSG_LEN.
    let rc = unsafe { bpf_skb_load_bytes(ctx.as_ptr(), pkt.offset, s.msg.as_mut_ptr().cast(), n) };
    if rc != 0 {
        return None;
    }
    s.len = pkt.len;
    Some(())
}

#[inline(always)]
fn query_key(workload_id: u32, pkt: &Packet, id: u16) -> QueryKey {
    QueryKey {
        workload_id,
        local_port: pkt.local_port,
        resolver_port: pkt.remote_port,
        resolver: pkt.remote,
        id,
        proto: pkt.proto,
        _pad: 0,
        _pad2: 0,
    }
}

/// The governed workload of the packet's socket: its cgroup's, or its nearest governed
/// ancestor's.
#[inline(always)]
fn skb_workload(ctx: &SkBuffContext, slot: u32) -> Option<u32> {
    let skb = ctx.as_ptr() as *mut __sk_buff;
    // SAFETY: helpers on the program's own skb.
    let cgroup_id = unsafe { bpf_skb_cgroup_id(skb) };
    if let Some(w) = workload_of(cgroup_id, slot) {
        return Some(w);
    }
    let mut level = MAX_CGROUP_DEPTH as i32;
    while level > 0 {
        let id = unsafe { bpf_skb_ancestor_cgroup_id(skb, level) };
        if id != 0 && id != cgroup_id {
            if let Some(w) = workload_of(id, slot) {
                return Some(w);
            }
        }
        level -= 1;
    }
    None
}

#[inline(always)]
fn workload_of(cgroup_id: u64, slot: u32) -> Option<u32> {
    let key = WorkloadKey {
        cgroup_id,
        slot,
        _pad: 0,
    };
    // SAFETY: copied out at once.
    unsafe { WORKLOADS.get(&key) }.map(|w| w.workload_id)
}

/// A UDP datagram, or a TCP segment holding a length-prefixed message, to (`ingress` false)
/// or from (`ingress` true) a watched resolver port; None for anything else.
#[inline(never)]
fn packet(ctx: &SkBuffContext, ingress: bool) -> Option<Packet> {
    let skb = ctx.as_ptr() as *const __sk_buff;
    // SAFETY: context field read once at a constant offset.
    let total = unsafe { read_volatile(&(*skb).len) };
    let first: [u8; 1] = ctx.load(0).ok()?;
    let (l4, proto, src, dst) = match first[0] >> 4 {
        4 => {
            let ip: [u8; 20] = ctx.load(0).ok()?;
            let ihl = u32::from(ip[0] & 0x0f) * 4;
            let fragment = (u16::from(ip[6]) << 8 | u16::from(ip[7])) & 0x3fff != 0;
            if ihl < 20 || fragment {
                return None;
            }
            let s = [ip[12], ip[13], ip[14], ip[15]];
            let d = [ip[16], ip[17], ip[18], ip[19]];
            (ihl, ip[9], ipv4_mapped(s), ipv4_mapped(d))
        }
        6 => {
            let next_header: [u8; 1] = ctx.load(6).ok()?;
            let s: [u8; 16] = ctx.load(8).ok()?;
            let d: [u8; 16] = ctx.load(24).ok()?;
            (40, next_header[0], s, d)
        }
        _ => return None,
    };
    if proto != IPPROTO_UDP && proto != IPPROTO_TCP {
        return None;
    }
    let ports: [u8; 4] = ctx.load(l4 as usize).ok()?;
    let sport = u16::from_be_bytes([ports[0], ports[1]]);
    let dport = u16::from_be_bytes([ports[2], ports[3]]);
    // Most packets are not DNS: one lookup of the resolver-side port, before anything else.
    let remote_port = if ingress { sport } else { dport };
    // SAFETY: a one-byte value, presence only.
    unsafe { DNS_PORTS.get(&remote_port) }?;
    let mut partial = 0;
    let (offset, len) = match proto {
        IPPROTO_UDP => (l4 + 8, total.checked_sub(l4 + 8)?),
        IPPROTO_TCP => {
            let doff: [u8; 1] = ctx.load(l4 as usize + 12).ok()?;
            let payload = l4 + u32::from(doff[0] >> 4) * 4;
            let prefix: [u8; 2] = ctx.load(payload as usize).ok()?;
            let len = u32::from(u16::from_be_bytes(prefix));
            // Only a whole message in this segment is read (see `partial`).
            partial = u8::from(payload + 2 + len > total);
            (payload + 2, len)
        }
        _ => return None,
    };
    let (remote, local_port, remote_port) = if ingress {
        (src, dport, sport)
    } else {
        (dst, sport, dport)
    };
    Some(Packet {
        proto,
        remote,
        local_port,
        remote_port,
        offset,
        len,
        partial,
    })
}

/// Decodes the name `reader` points at into the question's text (`QUESTION`) or `name`.
#[inline(always)]
fn decode_name<const QUESTION: bool>() -> Option<()> {
    let s = scratch()?;
    s.name_state = 0;
    // Decoded text is followed by zeros (cname_target copies the whole buffer).
    if QUESTION {
        clear_name(&mut s.answer.chain[0].text);
    } else {
        clear_name(&mut s.name);
    }
    // SAFETY: callback and (null) context are valid for the call.
    unsafe {
        bpf_loop(
            MAX_NAME_STEPS as u32,
            name_step::<QUESTION> as *mut c_void,
            core::ptr::null_mut(),
            0,
        )
    };
    let s = scratch()?;
    if s.name_state == 1 { Some(()) } else { None }
}

extern "C" fn name_step<const QUESTION: bool>(_i: u64, _ctx: *mut c_void) -> i64 {
    let Some(s) = scratch() else { return 1 };
    let len = s.len as usize;
    let out = if QUESTION {
        &mut s.answer.chain[0].text
    } else {
        &mut s.name
    };
    match s.reader.step(&s.msg, len, out) {
        NameStep::More => 0,
        NameStep::Done => {
            s.name_state = 1;
            1
        }
        NameStep::Bad(e) => {
            s.name_state = 2;
            s.name_error = e as u32;
            1
        }
    }
}

/// One answer record; 1 stops the loop (`state` says why).
extern "C" fn record_step(i: u64, _ctx: *mut c_void) -> i64 {
    let Some(s) = scratch() else { return 1 };
    if i >= u64::from(s.header.ancount) {
        s.state = 1;
        return 1;
    }
    s.reader = NameReader::new(s.pos as usize);
    let decoded = decode_name::<false>();
    let Some(s) = scratch() else { return 1 };
    let h = s.header;
    if decoded.is_none() {
        let r = owner_failed(&h, &mut s.answer, NameError::from_code(s.name_error as u8));
        return finish(s, r);
    }
    let owner = s.reader;
    let Some(owner_key) = walk_key(NAME, owner.out_len()) else {
        return 1;
    };
    let Some(s) = scratch() else { return 1 };
    let len = s.len as usize;
    match answer_record(&s.msg, len, &h, &mut s.answer, &owner, owner_key) {
        Err(_) => {
            s.state = 2;
            1
        }
        Ok(RecordStep::Stop) => {
            s.state = 1;
            1
        }
        Ok(RecordStep::Next(next)) => {
            s.pos = next as u32;
            0
        }
        Ok(RecordStep::Cname(rr, index)) => cname(rr, index),
    }
}

#[inline(always)]
fn cname(rr: Rr, index: u8) -> i64 {
    let Some(s) = scratch() else { return 1 };
    s.reader = NameReader::new(rr.rdata);
    let decoded = decode_name::<false>();
    let Some(s) = scratch() else { return 1 };
    if decoded.is_none() {
        let r = cname_failed(&mut s.answer, &rr, NameError::from_code(s.name_error as u8));
        return finish(s, r);
    }
    let target = s.reader;
    let Some(key) = walk_key(NAME, target.out_len()) else {
        return 1;
    };
    let Some(s) = scratch() else { return 1 };
    if cname_target(&mut s.answer, &rr, index, &target, &s.name, key).is_err() {
        s.state = 2;
        return 1;
    }
    s.pos = rr.next as u32;
    0
}

/// Ends the record loop: `Ok` = stop reading (truncated), `Err` = malformed.
#[inline(always)]
fn finish(s: &mut Scratch, r: Result<(), dataplane_common::dns::Malformed>) -> i64 {
    s.state = if r.is_ok() { 1 } else { 2 };
    1
}

/// Walks the text of `chain[of]` (or `name`), `text_len` bytes, backwards: the whole name's
/// key and its suffixes' end up in `walk`. Returns the whole name's key.
#[inline(always)]
fn walk_key(of: u32, text_len: usize) -> Option<u64> {
    let s = scratch()?;
    s.walk = KeyWalk::new();
    s.walk_of = of;
    let text = if of == NAME {
        &s.name
    } else {
        &s.answer.chain[of as usize & CHAIN_MASK].text
    };
    let span = key_span(text, text_len);
    s.walk_span = span as u32;
    // SAFETY: callback and (null) context are valid for the call.
    unsafe {
        bpf_loop(
            NAME_LEN as u32,
            key_byte as *mut c_void,
            core::ptr::null_mut(),
            0,
        )
    };
    let s = scratch()?;
    Some(walked_full_key(&s.walk, s.walk_span as usize))
}

extern "C" fn key_byte(i: u64, _ctx: *mut c_void) -> i64 {
    let Some(s) = scratch() else { return 1 };
    let text = if s.walk_of == NAME {
        &s.name
    } else {
        &s.answer.chain[s.walk_of as usize & CHAIN_MASK].text
    };
    if key_step(&mut s.walk, text, s.walk_span as usize, i as usize) {
        0
    } else {
        1
    }
}

/// The watched keys of chain name `i`.
extern "C" fn chain_watch(i: u64, _ctx: *mut c_void) -> i64 {
    let Some(s) = scratch() else { return 1 };
    if i >= u64::from(s.answer.chain_len) {
        return 1;
    }
    let c = i as usize & CHAIN_MASK;
    let len = usize::from(s.answer.chain[c].len);
    if walk_key(c as u32, len).is_none() {
        return 1;
    }
    let Some(s) = scratch() else { return 1 };
    let n = if s.walk_span == 0 {
        0
    } else {
        s.walk.keys(&mut s.keys)
    };
    let mut found = 0usize;
    let mut k = 0usize;
    while k < MAX_SUFFIXES + 1 {
        if k >= n || found >= KEYS_PER_ADDR {
            break;
        }
        let key = WatchKey {
            workload_id: s.workload_id,
            slot: s.slot as u8,
            _pad: [0; 3],
            name: s.keys[k],
        };
        // SAFETY: presence only.
        if unsafe { DNS_WATCH.get(&key) }.is_some() {
            s.watched[c][found & KEYS_MASK] = s.keys[k];
            found += 1;
        }
        k += 1;
    }
    s.watched_len[c] = found as u32;
    0
}

/// Associates learned address `i` with the watched names of the chain up to its owner.
extern "C" fn learn_addr(i: u64, _ctx: *mut c_void) -> i64 {
    let Some(s) = scratch() else { return 1 };
    if i >= u64::from(s.answer.addrs_len) {
        return 1;
    }
    let a = s.answer.addrs[i as usize & ADDRS_MASK];
    let mut ttl = u64::from(a.ttl);
    if ttl < s.min_ttl {
        ttl = s.min_ttl;
    }
    if ttl > s.max_ttl {
        ttl = s.max_ttl;
    }
    let expires = s.now + ttl * 1_000_000_000;
    let owner = usize::from(a.chain_index);
    let mut any = false;
    let mut c = 0usize;
    while c < MAX_CHAIN {
        if c > owner {
            break;
        }
        if s.watched_len[c & CHAIN_MASK] != 0 {
            any = true;
        }
        c += 1;
    }
    if !any {
        return 0;
    }
    let key = LearnedKey {
        workload_id: s.workload_id,
        _pad: 0,
        addr: a.addr,
    };
    if DNS_LEARNED.get_ptr_mut(&key).is_none()
        && DNS_LEARNED
            .insert(&key, &LearnedNames::default(), u64::from(BPF_NOEXIST))
            .is_err()
        && DNS_LEARNED.get_ptr_mut(&key).is_none()
    {
        bump(stats::TABLE_FULL);
        return 0;
    }
    s.cur = key;
    s.cur_expires = expires;
    s.cur_owner = owner as u32;
    // SAFETY: callback and (null) context are valid for the call.
    unsafe {
        bpf_loop(
            (MAX_CHAIN * KEYS_PER_ADDR) as u32,
            learn_name as *mut c_void,
            core::ptr::null_mut(),
            0,
        )
    };
    0
}

/// Pair `j` = (chain name `j / KEYS_PER_ADDR`, its watched key `j % KEYS_PER_ADDR`) of the
/// address in `cur`: recorded in its DNS_LEARNED entry.
extern "C" fn learn_name(j: u64, _ctx: *mut c_void) -> i64 {
    let Some(s) = scratch() else { return 1 };
    let c = j as usize / KEYS_PER_ADDR;
    let k = j as usize % KEYS_PER_ADDR;
    if c > s.cur_owner as usize {
        return 1;
    }
    if k >= s.watched_len[c & CHAIN_MASK] as usize {
        return 0;
    }
    let Some(entry) = DNS_LEARNED.get_ptr_mut(&s.cur) else {
        return 1;
    };
    // SAFETY: map value pointer, used within this callback.
    let entry = unsafe { &mut *entry };
    if entry.learn(
        s.watched[c & CHAIN_MASK][k & KEYS_MASK],
        s.cur_expires,
        s.now,
    ) {
        bump(stats::LEARNED);
    } else {
        bump(stats::KEYS_DROPPED);
    }
    0
}
