//! At connect: the name rules of the names learned for the destination from the workload's own
//! DNS answers (DNS_LEARNED), merged with the address rules. `control::evaluate_with_names` is
//! the user-space twin.

use aya_ebpf::helpers::bpf_ktime_get_ns;
use dataplane_common::{
    RuleMatch,
    dns_learning::{KEYS_PER_ADDR, LearnedKey},
    sni_policy::SniRuleKey,
};

use crate::{dns_maps::DNS_LEARNED, maps::SNI_RULES};

/// Fills the actions `m` has no rule for from the name rules of each live learned name, exact
/// port first, names in slot order.
#[inline(always)]
pub fn merge(
    m: &mut RuleMatch,
    workload_id: u32,
    subject_id: u32,
    slot: u32,
    addr: [u8; 16],
    port: u16,
) {
    let key = LearnedKey {
        workload_id,
        _pad: 0,
        addr,
    };
    // SAFETY: copied out at once.
    let Some(learned) = (unsafe { DNS_LEARNED.get(&key) }).copied() else {
        return;
    };
    // SAFETY: no arguments.
    let now = unsafe { bpf_ktime_get_ns() };
    for p in [port, 0] {
        for i in 0..KEYS_PER_ADDR {
            let name = learned.keys[i];
            if name == 0 || learned.expires_ns[i] <= now {
                continue;
            }
            let k = SniRuleKey {
                subject_id,
                port: p,
                slot: slot as u8,
                _pad: 0,
                name,
            };
            // SAFETY: copied out at once.
            if let Some(r) = unsafe { SNI_RULES.get(&k) } {
                fill(&mut m.deny, r.deny);
                fill(&mut m.allow, r.allow);
                fill(&mut m.audit, r.audit);
            }
        }
    }
}

#[inline(always)]
fn fill(into: &mut u32, from: u32) {
    if *into == 0 {
        *into = from;
    }
}
