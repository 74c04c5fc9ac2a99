//! Classifier study (issue 3): the same inbound rule semantics behind three lookup designs, each
//! wrapped in an XDP program so that BPF_PROG_TEST_RUN can time it (sk_lookup has no test_run).
//! Driven by `dataplane/benches/classifier.rs`; never loaded by the agent.
//!
//! - `cs_baseline`: returns at once (the per-run overhead of test_run itself);
//! - `cs_fetch_only`: the wrappers' own work (read the packet, pick the next query) and no lookup;
//! - `cs_lpm_groups`: design A, the LPM trie alone (`../inbound_table.rs`'s `lookup_in` without a
//!   hash: the production lookup before the exact-match split);
//! - `cs_exact_lpm`: design A', the production lookup (`../inbound_table.rs`, not a copy): an
//!   exact-match hash of the full-length entries in front of each group's trie walk;
//! - `cs_tuple_space`: design B; `cs_bitmap`: design C.
#![no_std]
#![no_main]

mod abi;
mod bitmap;
#[path = "../inbound_table.rs"]
mod inbound_table;
mod maps;
mod tuple_space;
mod wrapper;

use aya_ebpf::{bindings::xdp_action::XDP_PASS, macros::xdp, programs::XdpContext};
use dataplane_common::RuleMatch;

#[xdp]
pub fn cs_baseline(_ctx: XdpContext) -> u32 {
    XDP_PASS
}

#[xdp]
pub fn cs_fetch_only(ctx: XdpContext) -> u32 {
    wrapper::classify(&ctx, |q| RuleMatch {
        deny: q.workload_id,
        allow: q.identity,
        audit: u32::from(q.port),
    })
}

#[xdp]
pub fn cs_lpm_groups(ctx: XdpContext) -> u32 {
    wrapper::classify(&ctx, |q| {
        inbound_table::lookup_in(
            None,
            &maps::LPM_RULES,
            q.workload_id,
            q.identity,
            0,
            q.addr,
            q.port,
        )
    })
}

#[xdp]
pub fn cs_exact_lpm(ctx: XdpContext) -> u32 {
    wrapper::classify(&ctx, |q| {
        inbound_table::lookup(q.workload_id, q.identity, 0, q.addr, q.port)
    })
}

#[xdp]
pub fn cs_tuple_space(ctx: XdpContext) -> u32 {
    wrapper::classify(&ctx, tuple_space::lookup)
}

#[xdp]
pub fn cs_bitmap(ctx: XdpContext) -> u32 {
    wrapper::classify(&ctx, bitmap::lookup)
}

#[cfg(not(test))]
#[panic_handler]
fn panic(_info: &core::panic::PanicInfo) -> ! {
    loop {}
}

#[unsafe(link_section = "license")]
#[unsafe(no_mangle)]
static LICENSE: [u8; 4] = *b"GPL\0";
