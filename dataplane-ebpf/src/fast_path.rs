//! The same-node fast path: the sk_msg stage that sends a message of a governed socket straight
//! into its local peer's receive queue (`bpf_msg_redirect_hash` with `BPF_F_INGRESS`), or lets
//! the stack carry it. Both sockets joined the sockhash at established (posture_sockops), which
//! the connect and sk_lookup verdicts had to allow first: only authorized connections get here.
//!
//! Order is kept by one rule: a direction is redirected only while the stack holds none of its
//! bytes, i.e. the peer has read every byte this socket queued to TCP (`peer.copied_seq ==
//! self.write_seq`). The receiver reads its redirected queue before the stack's, so moving to
//! the stack is always safe; moving back waits for the stack to drain. A full peer receive
//! buffer sends the direction to the stack, where TCP's flow control holds the sender.

use core::{ffi::c_void, ptr::read_volatile};

use aya_ebpf::{
    bindings::{BPF_F_INGRESS, sk_action},
    helpers::generated::bpf_skc_to_tcp_sock,
    macros::{map, sk_msg},
    maps::{Array, LruHashMap, PerCpuArray},
    programs::SkMsgContext,
};
use dataplane_common::{
    fast_path::{SockOffsets, Switches, stats},
    posture::{ConnKey, MAX_SOCKS},
};

use crate::{
    posture_maps::{CONNS, SOCKS},
    posture_stream::msg_key,
    process,
};

/// Owner: dataplane::kernel::loader (the running agent's switches).
#[map(name = "MW_SWITCHES")]
pub static SWITCHES: Array<Switches> = Array::pinned(1, 0);

/// Owner: dataplane::kernel::loader (offsets from the kernel's BTF).
#[map(name = "MW_SOCK_OFFSETS")]
pub static SOCK_OFFSETS: Array<SockOffsets> = Array::pinned(1, 0);

/// Kernel-private: the address of each fast-path socket's `struct sock`, by its key (sk_msg
/// cannot take a reference to a socket in the sockhash: it has no `bpf_sk_release`).
#[map(name = "MW_FAST_PEERS")]
pub static PEER_SOCKS: LruHashMap<ConnKey, u64> = LruHashMap::pinned(MAX_SOCKS, 0);

/// Written by the kernel; read by dataplane::kernel::fast_path.
#[map(name = "MW_FAST_STATS")]
pub static FAST_STATS: PerCpuArray<u64> = PerCpuArray::pinned(stats::COUNT, 0);

#[sk_msg]
pub fn mw_fast_msg(ctx: SkMsgContext) -> u32 {
    let size = ctx.size();
    match decide(&ctx) {
        Ok(()) => {
            bump(stats::REDIRECTED, 1);
            bump(stats::REDIRECTED_BYTES, u64::from(size));
        }
        Err(reason) => bump(reason, 1),
    }
    // A redirect set by the helper is taken with SK_PASS; without one, SK_PASS is the stack.
    sk_action::SK_PASS
}

/// The switches the running agent wrote (all off if none did).
#[inline(always)]
pub fn switches() -> Switches {
    SWITCHES.get(0).copied().unwrap_or_default()
}

#[inline(always)]
pub fn bump(index: u32, by: u64) {
    if let Some(v) = FAST_STATS.get_ptr_mut(index) {
        // SAFETY: per-CPU slot.
        unsafe { *v += by };
    }
}

/// Ok: the message is redirected to the peer. Err: the stack carries it, for this reason.
#[inline(always)]
fn decide(ctx: &SkMsgContext) -> Result<(), u32> {
    let switches = switches();
    if switches.fast_path == 0 {
        return Err(stats::STACK_DISABLED);
    }
    let offsets = SOCK_OFFSETS.get(0).copied().unwrap_or_default();
    if offsets.valid == 0 {
        return Err(stats::STACK_NO_OFFSETS);
    }
    let key = msg_key(ctx.msg).ok_or(stats::STACK_PEER_NOT_LOCAL)?;
    let mut peer = key.peer();
    // Both ends' handshakes must have been read: bytes redirected now would never reach the
    // peer's cgroup_skb parser.
    if switches.tls_posture != 0 && CONNS.get_ptr(&peer).is_some() {
        return Err(stats::STACK_POSTURE);
    }
    // SAFETY: sk_msg_md.sk is the sending socket (a full socket, never NULL in sk_msg).
    let own = unsafe { read_volatile(&(*ctx.msg).__bindgen_anon_3.sk) };
    let own_write_seq = tcp_field(own.cast(), offsets.write_seq).ok_or(stats::STACK_NO_OFFSETS)?;
    peer_ready(&peer, own_write_seq, &offsets)?;
    // SAFETY: helper on our own context and a sockhash key on the stack.
    let r = SOCKS.redirect_msg(ctx, &mut peer, u64::from(BPF_F_INGRESS));
    if r == i64::from(sk_action::SK_PASS) {
        Ok(())
    } else {
        Err(stats::STACK_REDIRECT_FAILED)
    }
}

/// Whether the peer socket (`peer`, the connection seen from the other end) is local, has room,
/// and has read every byte this socket queued to TCP (`own_write_seq`).
#[inline(always)]
fn peer_ready(peer: &ConnKey, own_write_seq: u32, o: &SockOffsets) -> Result<(), u32> {
    // SAFETY: the value is copied out at once.
    let sk = unsafe { PEER_SOCKS.get(peer) }
        .copied()
        .ok_or(stats::STACK_PEER_NOT_LOCAL)?;
    // The address may belong to a socket that closed a moment ago: the reads below are probe
    // reads (they never fault), and the redirect itself goes through the sockhash, which holds
    // only live sockets.
    let copied = read_u32(sk, o.copied_seq)?;
    let queued = read_u32(sk, o.rmem_alloc)?;
    let room = read_u32(sk, o.rcvbuf)?;
    if queued as i32 >= room as i32 {
        Err(stats::STACK_PEER_FULL)
    } else if copied != own_write_seq {
        Err(stats::STACK_DRAINING)
    } else {
        Ok(())
    }
}

/// Records a fast-path socket's address under its key (sock_ops, at established): what
/// [`peer_ready`] reads when the other end sends. Removed at close.
#[inline(always)]
pub fn remember(key: &ConnKey, sk: u64) {
    let _ = PEER_SOCKS.insert(key, &sk, 0);
}

#[inline(always)]
pub fn forget(key: &ConnKey) {
    let _ = PEER_SOCKS.remove(key);
}

/// A u32 field at `offset` of the socket at address `sk` (a probe read).
#[inline(always)]
fn read_u32(sk: u64, offset: u32) -> Result<u32, u32> {
    // SAFETY: a probe read; fails cleanly on a bad address.
    unsafe { process::read(sk as *const u8, offset) }.ok_or(stats::STACK_NO_OFFSETS)
}

/// A u32 field at `offset` of the TCP socket `sk` (struct sock and tcp_sock share their
/// start); None if `sk` is not a TCP socket.
#[inline(always)]
fn tcp_field(sk: *mut c_void, offset: u32) -> Option<u32> {
    // SAFETY: the helper checks the socket type and returns NULL for anything but TCP; the
    // read is a probe read, and `read` rejects NULL.
    unsafe { process::read(bpf_skc_to_tcp_sock(sk) as *const u8, offset) }
}
