//! sk_lookup: the inbound verdict for a TCP SYN to a governed server workload, before any
//! listening socket is chosen. SK_DROP makes the kernel answer with a RST: the client sees
//! ECONNREFUSED at once and the server never accepts. Attached per network namespace.

use core::ptr::read_volatile;

use aya_ebpf::{macros::sk_lookup, programs::SkLookupContext};
use dataplane_common::{
    AddrKey, directions, hooks, identities, ipv4_mapped, ipv6_from_words, verdicts, workload_flags,
};

use crate::{
    events::{EventFields, report},
    inbound_table,
    maps::{CONFIG, IDENTITIES},
    verdict::{INBOUND_DEFAULTS, istio_order},
};

const SK_PASS: u32 = 1;
const SK_DROP: u32 = 0;
const AF_INET: u32 = 2;
const AF_INET6: u32 = 10;
const IPPROTO_TCP: u32 = 6;

#[sk_lookup]
pub fn mw_sk_lookup(ctx: SkLookupContext) -> u32 {
    let l = ctx.lookup;
    // Every context field is read once, up front, unconditionally, with read_volatile: each is
    // then a single load at a constant offset from the context pointer. (Reads inside branches
    // get merged by LLVM into a load through a computed pointer, which the verifier rejects.)
    // SAFETY: `l` is the kernel's bpf_sk_lookup context; the widths match the UAPI fields.
    let f = unsafe {
        Fields {
            family: read_volatile(&(*l).family),
            protocol: read_volatile(&(*l).protocol),
            remote_ip4: read_volatile(&(*l).remote_ip4),
            local_ip4: read_volatile(&(*l).local_ip4),
            remote_ip6: [
                read_volatile(&(*l).remote_ip6[0]),
                read_volatile(&(*l).remote_ip6[1]),
                read_volatile(&(*l).remote_ip6[2]),
                read_volatile(&(*l).remote_ip6[3]),
            ],
            local_ip6: [
                read_volatile(&(*l).local_ip6[0]),
                read_volatile(&(*l).local_ip6[1]),
                read_volatile(&(*l).local_ip6[2]),
                read_volatile(&(*l).local_ip6[3]),
            ],
            local_port: read_volatile(&(*l).local_port),
            remote_port: read_volatile(&(*l).remote_port),
        }
    };
    if f.protocol != IPPROTO_TCP {
        return SK_PASS;
    }
    let (remote, local) = match f.family {
        AF_INET => (
            ipv4_mapped(f.remote_ip4.to_ne_bytes()),
            ipv4_mapped(f.local_ip4.to_ne_bytes()),
        ),
        AF_INET6 => (ipv6_from_words(f.remote_ip6), ipv6_from_words(f.local_ip6)),
        _ => return SK_PASS,
    };
    let (local_port, remote_port) = (f.local_port as u16, u16::from_be(f.remote_port));
    let (slot, events_per_sec) = match CONFIG.get(0) {
        Some(c) => (c.active_slot, c.events_per_sec),
        None => return SK_PASS,
    };
    let Some(server) = identity(local, slot) else {
        return SK_PASS;
    };
    let peer_identity = identity(remote, slot)
        .map(|w| w.workload_id)
        .unwrap_or(identities::UNKNOWN);
    let m = inbound_table::lookup(server.workload_id, peer_identity, slot, remote, local_port);
    let v = istio_order(
        &m,
        server.flags & workload_flags::HAS_ALLOW_INBOUND != 0,
        &INBOUND_DEFAULTS,
    );
    let event = EventFields {
        cgroup_id: 0,
        workload_id: server.workload_id,
        rule_id: v.rule_id,
        verdict: verdicts::DENY,
        hook: hooks::SK_LOOKUP,
        direction: directions::INBOUND,
        addr: local,
        port: local_port,
        peer_addr: remote,
        peer_port: remote_port,
        peer_identity,
        process: false,
    };
    if report(&v, event, events_per_sec) {
        SK_PASS
    } else {
        SK_DROP
    }
}

/// The bpf_sk_lookup fields the verdict needs.
struct Fields {
    family: u32,
    protocol: u32,
    remote_ip4: u32,
    local_ip4: u32,
    remote_ip6: [u32; 4],
    local_ip6: [u32; 4],
    local_port: u32,
    remote_port: u16,
}

#[inline(always)]
fn identity(addr: [u8; 16], slot: u32) -> Option<dataplane_common::WorkloadValue> {
    let key = AddrKey { addr, slot };
    // SAFETY: value is Copy and read immediately.
    unsafe { IDENTITIES.get(&key).copied() }
}
