//! What a governed socket receives: a cgroup_skb ingress program on each governed cgroup reads
//! the TCP payload of the segments of connections whose handshake is being read, in sequence
//! order, and runs the same parser stages as the sk_msg side (tail calls through
//! INGRESS_STAGES). Measured on this kernel, an sk_skb verdict program on the sockhash costs
//! ~30% of a receiver's bulk throughput for the whole life of every connection (the psock
//! receive path); this hook leaves the receive path as it is and costs one lookup per segment.
//! It never drops a packet.

use dataplane_common::{
    ipv4_mapped,
    posture::{ConnKey, SegmentFit, segment_fit, stats},
    tls::ByteSource,
};

use core::ptr::read_volatile;

use aya_ebpf::{
    EbpfContext as _, bindings::__sk_buff, helpers::generated::bpf_skb_load_bytes,
    macros::cgroup_skb, programs::SkBuffContext,
};

use crate::{
    posture_conn::give_up,
    posture_maps::{CONNS, CURRENT, INGRESS_STAGES},
    posture_parse::{Way, feed_stage, offer_stage},
    posture_stream::{chain, hello},
};

const PASS: i32 = 1;
const IPPROTO_TCP: u8 = 6;

/// A TCP segment as the receiving socket sees it.
struct Segment {
    key: ConnKey,
    seq: u32,
    /// Offset of the payload from the network header, and its length.
    payload: u32,
    len: u32,
}

#[cgroup_skb(ingress)]
pub fn mw_tls_ingress(ctx: SkBuffContext) -> i32 {
    let Some(seg) = segment(&ctx) else {
        return PASS;
    };
    let Some(conn) = CONNS.get_ptr_mut(&seg.key) else {
        return PASS;
    };
    // SAFETY: map value pointer, used within this program run.
    let conn = unsafe { &mut *conn };
    if conn.cut != 0 {
        return PASS;
    }
    let mut first = 0;
    // A continuation (tail call back from a later stage) goes on from the cursor.
    if conn.parse.continuing == 0 {
        match segment_fit(conn.parse.ingress_seq, seg.seq, seg.len) {
            SegmentFit::Old => return PASS,
            SegmentFit::Gap => {
                give_up(&seg.key, stats::OUT_OF_ORDER);
                return PASS;
            }
            SegmentFit::From(skip) => {
                conn.parse.ingress_seq = seg.seq.wrapping_add(seg.len);
                first = skip;
            }
        }
    }
    // The later stages of this run (same CPU) find the connection here instead of parsing the
    // headers again.
    if let Some(current) = CURRENT.get_ptr_mut(0) {
        // SAFETY: per-CPU slot.
        unsafe { *current = seg.key };
    }
    let src = PayloadBytes {
        ctx: &ctx,
        base: seg.payload,
    };
    let next = feed_stage(conn, Way::Ingress, &src, first, seg.len);
    chain(&ctx, next, &INGRESS_STAGES, &seg.key) as i32
}

#[cgroup_skb(ingress)]
pub fn mw_tls_ingress_hello(ctx: SkBuffContext) -> i32 {
    let Some(key) = current() else {
        return PASS;
    };
    let next = hello(&key, Way::Ingress);
    chain(&ctx, next, &INGRESS_STAGES, &key) as i32
}

#[cgroup_skb(ingress)]
pub fn mw_tls_ingress_offer(ctx: SkBuffContext) -> i32 {
    let Some(key) = current() else {
        return PASS;
    };
    let Some(conn) = CONNS.get_ptr_mut(&key) else {
        return PASS;
    };
    // SAFETY: map value pointer, used within this program run.
    let next = offer_stage(&key, unsafe { &mut *conn }, Way::Ingress);
    chain(&ctx, next, &INGRESS_STAGES, &key) as i32
}

/// The connection the feed stage of this run is reading.
#[inline(always)]
fn current() -> Option<ConnKey> {
    CURRENT.get(0).copied()
}

/// The segment's connection (from the receiver's side), sequence number and payload, from the
/// IPv4 or IPv6 and TCP headers; None for anything else (fragments, IPv6 extension headers).
/// Not inlined: its header buffers get their own stack frame.
#[inline(never)]
fn segment(ctx: &SkBuffContext) -> Option<Segment> {
    let skb = ctx.as_ptr() as *const __sk_buff;
    // SAFETY: context field read once at a constant offset.
    let total = unsafe { read_volatile(&(*skb).len) };
    let first: [u8; 1] = ctx.load(0).ok()?;
    let (l4, src, dst) = match first[0] >> 4 {
        4 => {
            let ip: [u8; 20] = ctx.load(0).ok()?;
            let ihl = u32::from(ip[0] & 0x0f) * 4;
            // More-fragments or a fragment offset: not a whole segment.
            let fragment = (u16::from(ip[6]) << 8 | u16::from(ip[7])) & 0x3fff != 0;
            if ip[9] != IPPROTO_TCP || ihl < 20 || fragment {
                return None;
            }
            let s = [ip[12], ip[13], ip[14], ip[15]];
            let d = [ip[16], ip[17], ip[18], ip[19]];
            (ihl, ipv4_mapped(s), ipv4_mapped(d))
        }
        6 => {
            let next_header: [u8; 1] = ctx.load(6).ok()?;
            if next_header[0] != IPPROTO_TCP {
                return None;
            }
            let s: [u8; 16] = ctx.load(8).ok()?;
            let d: [u8; 16] = ctx.load(24).ok()?;
            (40, s, d)
        }
        _ => return None,
    };
    let tcp: [u8; 20] = ctx.load(l4 as usize).ok()?;
    let doff = u32::from(tcp[12] >> 4) * 4;
    let payload = l4 + doff;
    if doff < 20 || payload > total {
        return None;
    }
    Some(Segment {
        key: ConnKey {
            local: dst,
            remote: src,
            local_port: u16::from_be_bytes([tcp[2], tcp[3]]),
            remote_port: u16::from_be_bytes([tcp[0], tcp[1]]),
            _pad: 0,
        },
        seq: u32::from_be_bytes([tcp[4], tcp[5], tcp[6], tcp[7]]),
        payload,
        len: total - payload,
    })
}

/// A segment's payload: offset 0 is its first byte.
struct PayloadBytes<'a> {
    ctx: &'a SkBuffContext,
    base: u32,
}

impl ByteSource for PayloadBytes<'_> {
    #[inline(always)]
    fn load(&self, offset: u32, dst: &mut [u8]) -> bool {
        // SAFETY: dst is a valid buffer of dst.len() bytes (never empty, ≤ LOAD_MAX).
        unsafe {
            bpf_skb_load_bytes(
                self.ctx.as_ptr(),
                self.base + offset,
                dst.as_mut_ptr().cast(),
                dst.len() as u32,
            ) == 0
        }
    }
}
