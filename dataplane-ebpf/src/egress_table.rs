//! Egress lookup: the exact-port and any-port groups, merged slot by slot (exact port first).
//! Each group probes the exact-match hash of full-length destinations first (a hit is the longest
//! possible match) and walks the trie of the shorter prefixes only on a miss.

use aya_ebpf::maps::lpm_trie::Key;
use dataplane_common::{EGRESS_KEY_FULL_BITS, EgressKey, RuleMatch};

use crate::maps::{EGRESS_EXACT, EGRESS_RULES};

#[inline(always)]
pub fn lookup(workload_id: u32, slot: u32, addr: [u8; 16], port: u16) -> RuleMatch {
    let exact = get(workload_id, port, slot, addr).unwrap_or_default();
    let any = get(workload_id, 0, slot, addr).unwrap_or_default();
    let pick = |a: u32, b: u32| if a != 0 { a } else { b };
    RuleMatch {
        deny: pick(exact.deny, any.deny),
        allow: pick(exact.allow, any.allow),
        audit: pick(exact.audit, any.audit),
    }
}

#[inline(always)]
fn get(workload_id: u32, port: u16, slot: u32, addr: [u8; 16]) -> Option<RuleMatch> {
    let data = EgressKey {
        workload_id,
        port,
        slot: slot as u8,
        _reserved: 0,
        addr,
    };
    // SAFETY: the value is copied out at once.
    if let Some(m) = unsafe { EGRESS_EXACT.get(&data) } {
        return Some(*m);
    }
    EGRESS_RULES
        .get(&Key::new(EGRESS_KEY_FULL_BITS, data))
        .copied()
}
