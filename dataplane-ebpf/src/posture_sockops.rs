//! sock_ops on governed cgroups: learns who owns a socket while the owner is running
//! (connect() and listen() happen in process context); at established it starts reading the
//! handshake (TLS posture) and puts the socket in the sockhash where sk_msg must see what it
//! sends (SNI verdicts, the same-node fast path).

use core::ptr::read_volatile;

use aya_ebpf::{
    helpers::generated::{bpf_get_netns_cookie, bpf_get_socket_cookie},
    macros::sock_ops,
    programs::SockOpsContext,
};
use dataplane_common::{
    fast_path::stats as fast_stats,
    ipv4_mapped, ipv6_from_words,
    posture::{ConnKey, ListenerKey, Owner, roles, stats},
    workload_flags,
};

use crate::{
    fast_path,
    identity::current_workload,
    maps::CONFIG,
    posture_maps::{CONNS, LISTENERS, SOCK_OWNERS, SOCKS, ZERO, bump},
    process,
};

const TCP_CONNECT_CB: u32 = 3;
const ACTIVE_ESTABLISHED_CB: u32 = 4;
const PASSIVE_ESTABLISHED_CB: u32 = 5;
const STATE_CB: u32 = 10;
const TCP_LISTEN_CB: u32 = 11;
const STATE_CB_FLAG: i32 = 1 << 2;
const TCP_CLOSE: u32 = 7;
const AF_INET: u32 = 2;
const AF_INET6: u32 = 10;

#[sock_ops]
pub fn mw_sockops(ctx: SockOpsContext) -> u32 {
    match ctx.op() {
        TCP_CONNECT_CB => {
            if let Some(w) = owner_now() {
                let cookie = unsafe { bpf_get_socket_cookie(ctx.ops.cast()) };
                let _ = SOCK_OWNERS.insert(&cookie, &w, 0);
            }
        }
        TCP_LISTEN_CB => {
            if let Some(w) = owner_now() {
                let _ = LISTENERS.insert(&listener_key(&ctx), &w, 0);
            }
        }
        ACTIVE_ESTABLISHED_CB => {
            let cookie = unsafe { bpf_get_socket_cookie(ctx.ops.cast()) };
            let owner = unsafe { SOCK_OWNERS.get(&cookie) }.copied();
            established(&ctx, owner, roles::CLIENT);
        }
        PASSIVE_ESTABLISHED_CB => {
            let owner = unsafe { LISTENERS.get(&listener_key(&ctx)) }.copied();
            established(&ctx, owner, roles::SERVER);
        }
        STATE_CB => {
            if ctx.arg(1) == TCP_CLOSE {
                if let Some(key) = conn_key(&ctx) {
                    closed_in_handshake(&key);
                    fast_path::forget(&key);
                }
            }
        }
        _ => {}
    }
    1
}

/// A connection closed while its handshake was still being read: counted (unless an SNI verdict
/// cut it, counted already), and its state goes.
#[inline(never)]
fn closed_in_handshake(key: &ConnKey) {
    // SAFETY: the value is read at once.
    let Some(cut) = (unsafe { CONNS.get(key) }).map(|c| c.cut) else {
        return;
    };
    if cut == 0 {
        bump(stats::INCOMPLETE);
    }
    let _ = CONNS.remove(key);
}

/// The governed workload, egress subject and executable of the current task (process context
/// only). Not inlined: its own stack frame.
#[inline(never)]
fn owner_now() -> Option<Owner> {
    let slot = CONFIG.get(0)?.active_slot;
    let (_, workload) = current_workload(slot)?;
    let exe = process::current_exe();
    let subject = if workload.flags & workload_flags::HAS_BINARY_RULES != 0 {
        process::subject_of(workload, slot, exe)
    } else {
        workload
    };
    let (exe_dev, exe_ino) = exe.unwrap_or((0, 0));
    Some(Owner {
        workload_id: workload.workload_id,
        subject_id: subject.workload_id,
        exe_dev,
        exe_ino,
        flags: subject.flags,
        _pad: 0,
    })
}

#[inline(always)]
fn listener_key(ctx: &SockOpsContext) -> ListenerKey {
    ListenerKey {
        netns_cookie: unsafe { bpf_get_netns_cookie(ctx.ops.cast()) },
        port: ctx.local_port() as u16,
        _pad: [0; 6],
    }
}

/// A socket of a governed cgroup (this program runs for no other) is established: posture starts
/// reading its handshake if its owner is known, and it joins the sockhash if sk_msg must see
/// what it sends. The owner is unknown for a socket that connected or listened before this
/// agent attached: the fast path still applies to it, posture does not.
#[inline(always)]
fn established(ctx: &SockOpsContext, owner: Option<Owner>, role: u8) {
    let Some(key) = conn_key(ctx) else { return };
    let switches = fast_path::switches();
    let mut by_msg = false;
    if let (Some(owner), true) = (owner, switches.tls_posture != 0) {
        // Only sockets whose ClientHello an SNI verdict may cut need sk_msg for posture; the
        // others are read by cgroup_skb on both sides.
        let wants_msg = owner.flags & workload_flags::HAS_NAME_RULES != 0;
        by_msg = track(ctx, &key, owner, role, wants_msg) && wants_msg;
    }
    if !by_msg && switches.fast_path == 0 {
        return;
    }
    if switches.fast_path != 0 {
        // Before the socket is in the sockhash: a peer that can redirect to it can read it.
        // SAFETY: context field at a constant offset; the address is only kept as a number.
        let sk = unsafe { read_volatile(&(*ctx.ops).__bindgen_anon_2.sk) };
        fast_path::remember(&key, sk as u64);
    }
    let mut k = key;
    // SAFETY: ctx.ops is the kernel's bpf_sock_ops.
    if SOCKS.update(&mut k, unsafe { &mut *ctx.ops }, 0).is_err() {
        fast_path::forget(&key);
        // The socket keeps the stack; posture stops expecting sk_msg to read it.
        fast_path::bump(fast_stats::SOCKHASH_FULL, 1);
        if by_msg {
            bump(stats::SOCKHASH_FULL);
            let _ = CONNS.remove(&key);
        }
        return;
    }
    if switches.fast_path != 0 {
        fast_path::bump(fast_stats::SOCKETS_JOINED, 1);
        let _ = ctx.set_cb_flags(STATE_CB_FLAG);
    }
}

/// Starts reading the connection's handshake; false if it cannot be tracked (counted).
#[inline(always)]
fn track(ctx: &SockOpsContext, key: &ConnKey, owner: Owner, role: u8, by_msg: bool) -> bool {
    let Some(zero) = ZERO.get_ptr_mut(0) else {
        return false;
    };
    // SAFETY: the per-CPU scratch is ours for the duration of the program.
    let conn = unsafe { &mut *zero };
    conn.owner = owner;
    conn.role = role;
    // SAFETY: context fields read at constant offsets.
    conn.parse.ingress_seq = unsafe { read_volatile(&(*ctx.ops).rcv_nxt) };
    conn.parse.egress_seq = unsafe { read_volatile(&(*ctx.ops).snd_nxt) };
    conn.parse.egress_by_msg = u8::from(by_msg);
    let inserted = CONNS.insert(key, conn, 0);
    // Restore the template for the next connection.
    conn.owner = Owner::default();
    conn.role = 0;
    conn.parse.ingress_seq = 0;
    conn.parse.egress_seq = 0;
    conn.parse.egress_by_msg = 0;
    if inserted.is_err() {
        bump(stats::CONNS_FULL);
        return false;
    }
    let _ = ctx.set_cb_flags(STATE_CB_FLAG);
    bump(stats::CONNS_TRACKED);
    true
}

/// The connection's addresses and ports. Every field is read once, unconditionally, with
/// read_volatile: the verifier rejects context loads through a pointer LLVM computed in
/// branches.
#[inline(always)]
fn conn_key(ctx: &SockOpsContext) -> Option<ConnKey> {
    let o = ctx.ops;
    // SAFETY: `o` is the kernel's bpf_sock_ops; widths match the UAPI fields.
    let (family, l4, r4, l6, r6, lport, rport) = unsafe {
        (
            read_volatile(&(*o).family),
            read_volatile(&(*o).local_ip4),
            read_volatile(&(*o).remote_ip4),
            [
                read_volatile(&(*o).local_ip6[0]),
                read_volatile(&(*o).local_ip6[1]),
                read_volatile(&(*o).local_ip6[2]),
                read_volatile(&(*o).local_ip6[3]),
            ],
            [
                read_volatile(&(*o).remote_ip6[0]),
                read_volatile(&(*o).remote_ip6[1]),
                read_volatile(&(*o).remote_ip6[2]),
                read_volatile(&(*o).remote_ip6[3]),
            ],
            read_volatile(&(*o).local_port),
            read_volatile(&(*o).remote_port),
        )
    };
    let (local, remote) = match family {
        AF_INET => (ipv4_mapped(l4.to_ne_bytes()), ipv4_mapped(r4.to_ne_bytes())),
        AF_INET6 => (ipv6_from_words(l6), ipv6_from_words(r6)),
        _ => return None,
    };
    Some(ConnKey {
        local,
        remote,
        local_port: lport as u16,
        remote_port: remote_port(rport),
        _pad: 0,
    })
}

/// `remote_port` context fields hold the network-order port shifted into the upper 16 bits on
/// little-endian machines (older kernels: the low 16 bits); both are handled.
#[inline(always)]
pub fn remote_port(v: u32) -> u16 {
    let p = if v > 0xffff { v >> 16 } else { v };
    u16::from_be(p as u16)
}
