//! cgroup_skb programs on each governed cgroup read the TCP payload of connections whose
//! handshake is being read, in sequence order, and run the same parser stages as the sk_msg side
//! (tail calls through INGRESS_STAGES / EGRESS_STAGES): ingress for what every governed socket
//! receives, egress for what a governed socket outside the sockhash sends. On this kernel a
//! socket in a sockhash takes the psock path (tcp_bpf) for its whole life — an sk_skb verdict
//! program cost receivers ~30% of bulk throughput, a sockhash membership with sk_msg ~8% — while
//! these hooks leave the socket's paths as they are and cost one lookup per segment. Only
//! sockets whose ClientHello an SNI verdict may cut stay in the sockhash (sk_msg can refuse the
//! send). The ingress programs never drop a packet.

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
    posture_maps::{CONNS, CURRENT, CURRENT_EGRESS, EGRESS_STAGES, INGRESS_STAGES},
    posture_parse::{Way, feed_stage, offer_stage, sni_stage},
    posture_stream::{chain, hello},
};

const PASS: i32 = 1;
const DROP: i32 = 0;
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
    feed::<true>(&ctx)
}

#[cgroup_skb(ingress)]
pub fn mw_tls_ingress_hello(ctx: SkBuffContext) -> i32 {
    hello_of::<true>(&ctx)
}

#[cgroup_skb(ingress)]
pub fn mw_tls_ingress_offer(ctx: SkBuffContext) -> i32 {
    offer_of::<true>(&ctx)
}

/// What a governed socket outside the sockhash sends (a socket in it is read by sk_msg).
#[cgroup_skb(egress)]
pub fn mw_tls_egress(ctx: SkBuffContext) -> i32 {
    feed::<false>(&ctx)
}

#[cgroup_skb(egress)]
pub fn mw_tls_egress_hello(ctx: SkBuffContext) -> i32 {
    hello_of::<false>(&ctx)
}

/// Sockets outside the sockhash have no name rules, so no SNI verdict can cut them; the stage
/// still runs the check (and drops, should one ever say so) to keep one stage order.
#[cgroup_skb(egress)]
pub fn mw_tls_egress_sni(ctx: SkBuffContext) -> i32 {
    let Some(key) = current::<false>() else {
        return PASS;
    };
    let Some(conn) = CONNS.get_ptr_mut(&key) else {
        return PASS;
    };
    // SAFETY: map value pointer, used within this program run.
    match sni_stage(&key, unsafe { &mut *conn }) {
        Some(next) => chain(&ctx, next, &EGRESS_STAGES, &key) as i32,
        None => DROP,
    }
}

#[cgroup_skb(egress)]
pub fn mw_tls_egress_offer(ctx: SkBuffContext) -> i32 {
    offer_of::<false>(&ctx)
}

/// The feed stage of one direction: the segment placed by sequence number, one parser step,
/// then the next stage by tail call.
#[inline(always)]
fn feed<const INGRESS: bool>(ctx: &SkBuffContext) -> i32 {
    let Some(seg) = segment::<INGRESS>(ctx) else {
        return PASS;
    };
    let Some(conn) = CONNS.get_ptr_mut(&seg.key) else {
        return PASS;
    };
    // SAFETY: map value pointer, used within this program run.
    let conn = unsafe { &mut *conn };
    if conn.cut != 0 || (!INGRESS && conn.parse.egress_by_msg != 0) {
        return PASS;
    }
    let mut first = 0;
    // A continuation (tail call back from a later stage) goes on from the cursor.
    if conn.parse.continuing == 0 {
        let expected = if INGRESS {
            conn.parse.ingress_seq
        } else {
            conn.parse.egress_seq
        };
        match segment_fit(expected, seg.seq, seg.len) {
            SegmentFit::Old => return PASS,
            SegmentFit::Gap => {
                give_up(&seg.key, stats::OUT_OF_ORDER);
                return PASS;
            }
            SegmentFit::From(skip) => {
                let next = seg.seq.wrapping_add(seg.len);
                if INGRESS {
                    conn.parse.ingress_seq = next;
                } else {
                    conn.parse.egress_seq = next;
                }
                first = skip;
            }
        }
    }
    // The later stages of this run (same CPU) find the connection here instead of parsing the
    // headers again.
    if let Some(current) = current_map::<INGRESS>().get_ptr_mut(0) {
        // SAFETY: per-CPU slot.
        unsafe { *current = seg.key };
    }
    let src = PayloadBytes {
        ctx,
        base: seg.payload,
    };
    let next = feed_stage(conn, way::<INGRESS>(), &src, first, seg.len);
    chain(ctx, next, stages_map::<INGRESS>(), &seg.key) as i32
}

#[inline(always)]
fn hello_of<const INGRESS: bool>(ctx: &SkBuffContext) -> i32 {
    let Some(key) = current::<INGRESS>() else {
        return PASS;
    };
    let next = hello(&key, way::<INGRESS>());
    chain(ctx, next, stages_map::<INGRESS>(), &key) as i32
}

#[inline(always)]
fn offer_of<const INGRESS: bool>(ctx: &SkBuffContext) -> i32 {
    let Some(key) = current::<INGRESS>() else {
        return PASS;
    };
    let Some(conn) = CONNS.get_ptr_mut(&key) else {
        return PASS;
    };
    // SAFETY: map value pointer, used within this program run.
    let next = offer_stage(&key, unsafe { &mut *conn }, way::<INGRESS>());
    chain(ctx, next, stages_map::<INGRESS>(), &key) as i32
}

#[inline(always)]
fn way<const INGRESS: bool>() -> Way {
    if INGRESS { Way::Ingress } else { Way::Egress }
}

#[inline(always)]
fn stages_map<const INGRESS: bool>() -> &'static aya_ebpf::maps::ProgramArray {
    if INGRESS {
        &INGRESS_STAGES
    } else {
        &EGRESS_STAGES
    }
}

#[inline(always)]
fn current_map<const INGRESS: bool>() -> &'static aya_ebpf::maps::PerCpuArray<ConnKey> {
    if INGRESS { &CURRENT } else { &CURRENT_EGRESS }
}

/// The connection the feed stage of this run is reading.
#[inline(always)]
fn current<const INGRESS: bool>() -> Option<ConnKey> {
    current_map::<INGRESS>().get(0).copied()
}

/// The segment's connection (from the receiver's side), sequence number and payload, from the
/// IPv4 or IPv6 and TCP headers; None for anything else (fragments, IPv6 extension headers).
/// Not inlined: its header buffers get their own stack frame.
#[inline(never)]
fn segment<const INGRESS: bool>(ctx: &SkBuffContext) -> Option<Segment> {
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
        key: if INGRESS {
            ConnKey {
                local: dst,
                remote: src,
                local_port: u16::from_be_bytes([tcp[2], tcp[3]]),
                remote_port: u16::from_be_bytes([tcp[0], tcp[1]]),
                _pad: 0,
            }
        } else {
            ConnKey {
                local: src,
                remote: dst,
                local_port: u16::from_be_bytes([tcp[0], tcp[1]]),
                remote_port: u16::from_be_bytes([tcp[2], tcp[3]]),
                _pad: 0,
            }
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
