//! The stream programs on the sockhash: sk_msg sees what a governed socket sends, sk_skb
//! stream_verdict what it receives. Both feed the connection's handshake parser while the
//! connection is tracked and are no-ops afterwards. They never drop or hold data (SK_PASS).

use core::ptr::read_volatile;

use aya_ebpf::{
    EbpfContext as _,
    bindings::{__sk_buff, sk_action},
    helpers::generated::{bpf_msg_pull_data, bpf_probe_read_kernel, bpf_skb_load_bytes},
    macros::{sk_msg, stream_verdict},
    programs::{SkBuffContext, SkMsgContext},
};
use dataplane_common::{ipv4_mapped, ipv6_from_words, posture::ConnKey, tls::ByteSource};

use crate::{
    posture_maps::CONNS,
    posture_parse::{Way, feed},
    posture_sockops::remote_port,
};

const AF_INET: u32 = 2;
const AF_INET6: u32 = 10;

#[sk_msg]
pub fn mw_tls_msg(ctx: SkMsgContext) -> u32 {
    let md = ctx.msg;
    // SAFETY: context fields read once each at constant offsets.
    let key = unsafe {
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
    };
    let Some(key) = key else {
        return sk_action::SK_PASS;
    };
    if unsafe { CONNS.get(&key) }.is_none() {
        return sk_action::SK_PASS;
    }
    let size = ctx.size();
    // Make the whole message one contiguous buffer (handshake messages are small).
    // SAFETY: helper on our own context.
    if unsafe { bpf_msg_pull_data(md.cast(), 0, size, 0) } != 0 {
        return sk_action::SK_PASS;
    }
    let src = MsgBytes {
        data: ctx.data(),
        data_end: ctx.data_end(),
    };
    feed(&key, Way::Egress, src, size);
    sk_action::SK_PASS
}

#[stream_verdict]
pub fn mw_tls_skb(ctx: SkBuffContext) -> u32 {
    let skb = ctx.as_ptr() as *const __sk_buff;
    // SAFETY: context fields read once each at constant offsets.
    let key = unsafe {
        conn_key(
            read_volatile(&(*skb).family),
            read_volatile(&(*skb).local_ip4),
            read_volatile(&(*skb).remote_ip4),
            [
                read_volatile(&(*skb).local_ip6[0]),
                read_volatile(&(*skb).local_ip6[1]),
                read_volatile(&(*skb).local_ip6[2]),
                read_volatile(&(*skb).local_ip6[3]),
            ],
            [
                read_volatile(&(*skb).remote_ip6[0]),
                read_volatile(&(*skb).remote_ip6[1]),
                read_volatile(&(*skb).remote_ip6[2]),
                read_volatile(&(*skb).remote_ip6[3]),
            ],
            read_volatile(&(*skb).local_port),
            read_volatile(&(*skb).remote_port),
        )
    };
    let Some(key) = key else {
        return sk_action::SK_PASS;
    };
    if unsafe { CONNS.get(&key) }.is_none() {
        return sk_action::SK_PASS;
    }
    // SAFETY: context field read at a constant offset.
    let len = unsafe { read_volatile(&(*skb).len) };
    let src = SkbBytes { skb: ctx.as_ptr() };
    feed(&key, Way::Ingress, src, len);
    sk_action::SK_PASS
}

/// An skb's payload, read with bpf_skb_load_bytes (offset 0 is the first payload byte).
struct SkbBytes {
    skb: *mut core::ffi::c_void,
}

impl ByteSource for SkbBytes {
    #[inline(always)]
    fn load(&self, offset: u32, dst: &mut [u8]) -> bool {
        // SAFETY: dst is a valid buffer of dst.len() bytes (never empty, ≤ LOAD_MAX).
        unsafe {
            bpf_skb_load_bytes(self.skb, offset, dst.as_mut_ptr().cast(), dst.len() as u32) == 0
        }
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
