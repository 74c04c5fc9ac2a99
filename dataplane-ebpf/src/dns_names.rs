//! At connect: the name rules of the names learned for the destination from the workload's own
//! DNS answers (DNS_LEARNED), merged with the address rules. `control::evaluate_with_names` is
//! the user-space twin.

use aya_ebpf::helpers::bpf_ktime_get_ns;
use dataplane_common::{
    RuleMatch,
    dns_learning::{KEYS_PER_ADDR, LearnedKey},
};

use crate::{dns_maps::DNS_LEARNED, name_rules};

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
    let mut live = [0u64; KEYS_PER_ADDR];
    let mut n = 0;
    for i in 0..KEYS_PER_ADDR {
        if learned.keys[i] != 0 && learned.expires_ns[i] > now {
            live[n & (KEYS_PER_ADDR - 1)] = learned.keys[i];
            n += 1;
        }
    }
    name_rules::fill(m, &live, n, subject_id, slot, port);
}
