//! What every design's XDP wrapper does around its lookup: read the study packet, take the next
//! query of the mix, classify it, write the verdict back into the packet.

use aya_ebpf::{
    bindings::xdp_action::{XDP_ABORTED, XDP_PASS},
    programs::XdpContext,
};
use dataplane_common::RuleMatch;

use crate::{
    abi::{StudyPacket, StudyQuery},
    maps::{CURSOR, QUERIES},
};

#[inline(always)]
pub fn classify(ctx: &XdpContext, lookup: impl Fn(&StudyQuery) -> RuleMatch) -> u32 {
    let start = ctx.data();
    if start + size_of::<StudyPacket>() > ctx.data_end() {
        return XDP_ABORTED;
    }
    let packet = start as *mut StudyPacket;
    // SAFETY: bounds checked above; the packet buffer is writable in XDP.
    let (first, count) = unsafe { ((*packet).first, (*packet).count) };
    let Some(cursor) = CURSOR.get_ptr_mut(0) else {
        return XDP_ABORTED;
    };
    // SAFETY: per-CPU slot, no other writer on this CPU while the program runs.
    let runs = unsafe {
        let runs = *cursor;
        *cursor = runs.wrapping_add(1);
        runs
    };
    let index = first.wrapping_add(if count > 0 { runs % count } else { 0 });
    let Some(query) = QUERIES.get(index) else {
        return XDP_ABORTED;
    };
    let m = lookup(query);
    // SAFETY: as above.
    unsafe { (*packet).result = [m.deny, m.allow, m.audit] };
    XDP_PASS
}
