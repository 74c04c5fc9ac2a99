//! The sk_msg programs on the sockhash: what a governed socket of a workload with name rules
//! sends (SNI verdicts may cut it; posture_skb reads everything else). Each runs the parser's feed stage and chains to the hello, SNI and offer stages
//! or back to the feed stage by tail calls (see posture_parse). They never hold data, drop it
//! only for a connection an SNI verdict cut, and are no-ops for connections whose handshake was
//! read.

use core::ptr::read_volatile;

use aya_ebpf::{
    bindings::{sk_action, sk_msg_md},
    helpers::generated::{bpf_msg_pull_data, bpf_probe_read_kernel},
    macros::sk_msg,
    maps::ProgramArray,
    programs::SkMsgContext,
};
use dataplane_common::{ipv4_mapped, ipv6_from_words, posture::ConnKey, tls::ByteSource};

use crate::{
    posture_maps::{CONNS, MSG_STAGES, SCRATCH, stages},
    posture_parse::{Next, Way, feed_stage, hello_stage, offer_stage, sni_stage},
    posture_sockops::remote_port,
};

const AF_INET: u32 = 2;
const AF_INET6: u32 = 10;

#[sk_msg]
pub fn mw_tls_msg(ctx: SkMsgContext) -> u32 {
    let Some(key) = msg_key(ctx.msg) else {
        return sk_action::SK_PASS;
    };
    let Some(conn) = CONNS.get_ptr_mut(&key) else {
        // Nothing (left) to parse: the fast path decides where the message goes.
        // SAFETY: the stages map holds sk_msg programs (filled by the loader).
        unsafe { MSG_STAGES.tail_call(&ctx, stages::FAST) };
        return sk_action::SK_PASS;
    };
    // SAFETY: map value pointer, used within this program run.
    if unsafe { (*conn).cut } != 0 {
        return sk_action::SK_DROP;
    }
    // A socket in the sockhash only for the fast path: cgroup_skb egress reads what it sends
    // until its handshake is read, and the stack carries it meanwhile.
    // SAFETY: as above.
    if unsafe { (*conn).parse.egress_by_msg } == 0 {
        crate::fast_path::bump(dataplane_common::fast_path::stats::STACK_POSTURE, 1);
        return sk_action::SK_PASS;
    }
    let size = ctx.size();
    // Make the whole message one contiguous buffer (handshake messages are small).
    // SAFETY: helper on our own context.
    if unsafe { bpf_msg_pull_data(ctx.msg.cast(), 0, size, 0) } != 0 {
        return sk_action::SK_PASS;
    }
    let src = MsgBytes {
        data: ctx.data(),
        data_end: ctx.data_end(),
    };
    // SAFETY: map value pointer, used within this program run.
    let next = feed_stage(unsafe { &mut *conn }, Way::Egress, &src, 0, size);
    chain(&ctx, next, &MSG_STAGES, &key)
}

#[sk_msg]
pub fn mw_tls_msg_hello(ctx: SkMsgContext) -> u32 {
    let Some(key) = msg_key(ctx.msg) else {
        return sk_action::SK_PASS;
    };
    let next = hello(&key, Way::Egress);
    chain(&ctx, next, &MSG_STAGES, &key)
}

/// Decides a governed client's ClientHello on its server name (see sni_verdict): SK_DROP cuts
/// it (the sender gets EACCES, the server never sees the hello).
#[sk_msg]
pub fn mw_tls_msg_sni(ctx: SkMsgContext) -> u32 {
    let Some(key) = msg_key(ctx.msg) else {
        return sk_action::SK_PASS;
    };
    let Some(conn) = CONNS.get_ptr_mut(&key) else {
        return sk_action::SK_PASS;
    };
    // SAFETY: map value pointer, used within this program run.
    match sni_stage(&key, unsafe { &mut *conn }) {
        Some(next) => chain(&ctx, next, &MSG_STAGES, &key),
        None => sk_action::SK_DROP,
    }
}

#[sk_msg]
pub fn mw_tls_msg_offer(ctx: SkMsgContext) -> u32 {
    let Some(key) = msg_key(ctx.msg) else {
        return sk_action::SK_PASS;
    };
    let Some(conn) = CONNS.get_ptr_mut(&key) else {
        return sk_action::SK_PASS;
    };
    // SAFETY: map value pointer, used within this program run.
    let next = offer_stage(&key, unsafe { &mut *conn }, Way::Egress);
    chain(&ctx, next, &MSG_STAGES, &key)
}

#[inline(always)]
pub fn hello(key: &ConnKey, way: Way) -> Next {
    let (Some(conn), Some(scratch)) = (CONNS.get_ptr_mut(key), SCRATCH.get_ptr_mut(0)) else {
        return Next::Done;
    };
    // SAFETY: map value pointers, used within this program run.
    unsafe { hello_stage(key, &mut *conn, way, &mut (*scratch).server_hello) }
}

/// Tail-calls the next stage; if that fails (tail-call limit), the chunk's remaining bytes
/// are not read and the connection is left for the next chunk.
#[inline(always)]
pub fn chain<C: aya_ebpf::EbpfContext>(
    ctx: &C,
    next: Next,
    stages_map: &ProgramArray,
    key: &ConnKey,
) -> u32 {
    let index = match next {
        Next::Done => return sk_action::SK_PASS,
        Next::Feed => stages::FEED,
        Next::Hello => stages::HELLO,
        Next::Sni => stages::SNI,
        Next::Offer => stages::OFFER,
    };
    // SAFETY: the stages map holds programs of this program's type (filled by the loader).
    unsafe { stages_map.tail_call(ctx, index) };
    if let Some(conn) = CONNS.get_ptr_mut(key) {
        // SAFETY: map value pointer.
        unsafe { (*conn).parse.continuing = 0 };
    }
    sk_action::SK_PASS
}

/// Not inlined: its temporaries get their own stack frame (tail-calling programs keep
/// frames under 256 bytes).
#[inline(never)]
pub fn msg_key(md: *mut sk_msg_md) -> Option<ConnKey> {
    // SAFETY: context fields read once each at constant offsets.
    unsafe {
        conn_key(
            read_volatile(&(*md).family),
            read_volatile(&(*md).local_ip4),
            read_volatile(&(*md).remote_ip4),
            [
                read_volatile(&(*md).local_ip6[0]),
                read_volatile(&(*md).local_ip6[1]),
                read_volatile(&(*md).local_ip6[2]),
                read_volatile(&(*md).local_ip6[3]),
            ],
            [
                read_volatile(&(*md).remote_ip6[0]),
                read_volatile(&(*md).remote_ip6[1]),
                read_volatile(&(*md).remote_ip6[2]),
                read_volatile(&(*md).remote_ip6[3]),
            ],
            read_volatile(&(*md).local_port),
            read_volatile(&(*md).remote_port),
        )
    }
}

/// An sk_msg's bytes after bpf_msg_pull_data: [data, data_end).
struct MsgBytes {
    data: usize,
    data_end: usize,
}

impl ByteSource for MsgBytes {
    #[inline(always)]
    fn load(&self, offset: u32, dst: &mut [u8]) -> bool {
        let start = self.data + offset as usize;
        if start + dst.len() > self.data_end {
            return false;
        }
        // SAFETY: [start, start + len) lies inside the message buffer checked above; the
        // probe read fails cleanly rather than fault.
        unsafe {
            bpf_probe_read_kernel(dst.as_mut_ptr().cast(), dst.len() as u32, start as *const _) == 0
        }
    }
}

#[inline(always)]
fn conn_key(
    family: u32,
    local4: u32,
    remote4: u32,
    local6: [u32; 4],
    remote6: [u32; 4],
    local_port: u32,
    remote: u32,
) -> Option<ConnKey> {
    let (local, remote_addr) = match family {
        AF_INET => (
            ipv4_mapped(local4.to_ne_bytes()),
            ipv4_mapped(remote4.to_ne_bytes()),
        ),
        AF_INET6 => (ipv6_from_words(local6), ipv6_from_words(remote6)),
        _ => return None,
    };
    Some(ConnKey {
        local,
        remote: remote_addr,
        local_port: local_port as u16,
        remote_port: remote_port(remote),
        _pad: 0,
    })
}
