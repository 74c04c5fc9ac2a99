//! cgroup connect4/connect6 (TCP, connected UDP) and sendmsg4/sendmsg6 (unconnected UDP):
//! the egress verdict at the moment a governed process names its destination.
//! Returning 0 makes the syscall fail with EPERM.

use aya_ebpf::{macros::cgroup_sock_addr, programs::SockAddrContext};
use dataplane_common::{
    directions, hooks, identities, ipv4_mapped, ipv6_from_words, stats, verdicts, workload_flags,
};

use crate::{
    dns_names, egress_table,
    events::{EventFields, report},
    identity::current_workload,
    maps::{CONFIG, bump_stat},
    process,
    verdict::{EGRESS_DEFAULTS, istio_order},
};

const ALLOW: i32 = 1;
const DENY: i32 = 0;

#[cgroup_sock_addr(connect4)]
pub fn mw_connect4(ctx: SockAddrContext) -> i32 {
    on_v4(&ctx, hooks::CONNECT4)
}

#[cgroup_sock_addr(connect6)]
pub fn mw_connect6(ctx: SockAddrContext) -> i32 {
    on_v6(&ctx, hooks::CONNECT6)
}

#[cgroup_sock_addr(sendmsg4)]
pub fn mw_sendmsg4(ctx: SockAddrContext) -> i32 {
    on_v4(&ctx, hooks::SENDMSG4)
}

#[cgroup_sock_addr(sendmsg6)]
pub fn mw_sendmsg6(ctx: SockAddrContext) -> i32 {
    on_v6(&ctx, hooks::SENDMSG6)
}

#[inline(always)]
fn on_v4(ctx: &SockAddrContext, hook: u8) -> i32 {
    // SAFETY: ctx fields read with the width the verifier requires.
    let (ip, port) = unsafe { ((*ctx.sock_addr).user_ip4, (*ctx.sock_addr).user_port) };
    on_connect(ipv4_mapped(ip.to_ne_bytes()), port, hook)
}

#[inline(always)]
fn on_v6(ctx: &SockAddrContext, hook: u8) -> i32 {
    let sa = ctx.sock_addr;
    // SAFETY: four 32-bit context reads, as the verifier requires for user_ip6.
    let words = unsafe {
        [
            (*sa).user_ip6[0],
            (*sa).user_ip6[1],
            (*sa).user_ip6[2],
            (*sa).user_ip6[3],
        ]
    };
    let port = unsafe { (*sa).user_port };
    on_connect(ipv6_from_words(words), port, hook)
}

/// `user_ip4`/`user_ip6` hold network-order bytes, so native-endian byte views are the address.
/// `user_port` is network order in the low 16 bits.
#[inline(always)]
fn on_connect(addr: [u8; 16], user_port: u32, hook: u8) -> i32 {
    let port = u16::from_be(user_port as u16);
    let (slot, events_per_sec) = match CONFIG.get(0) {
        Some(c) => (c.active_slot, c.events_per_sec),
        None => return ALLOW,
    };
    let Some((cgroup_id, workload)) = current_workload(slot) else {
        bump_stat(stats::VERDICT_UNGOVERNED);
        return ALLOW;
    };
    // Policies scoped to binaries: the rules of this process's workload × executable subject.
    let subject = if workload.flags & workload_flags::HAS_BINARY_RULES != 0 {
        process::subject(workload, slot)
    } else {
        workload
    };
    let mut m = egress_table::lookup(subject.workload_id, slot, addr, port);
    if subject.flags & workload_flags::HAS_NAME_RULES != 0 {
        dns_names::merge(
            &mut m,
            workload.workload_id,
            subject.workload_id,
            slot,
            addr,
            port,
        );
    }
    let v = istio_order(
        &m,
        subject.flags & workload_flags::HAS_ALLOW_POLICY != 0,
        &EGRESS_DEFAULTS,
    );
    let event = EventFields {
        cgroup_id,
        workload_id: workload.workload_id,
        rule_id: v.rule_id,
        verdict: verdicts::DENY,
        hook,
        direction: directions::EGRESS,
        addr,
        port,
        peer_addr: [0; 16],
        peer_port: 0,
        peer_identity: identities::UNKNOWN,
        process: true,
    };
    if report(&v, event, events_per_sec) {
        ALLOW
    } else {
        DENY
    }
}
