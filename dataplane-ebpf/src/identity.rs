//! Which workload is the current task? The cgroup it runs in, or its nearest governed ancestor.

use aya_ebpf::helpers::generated::{bpf_get_current_ancestor_cgroup_id, bpf_get_current_cgroup_id};
use dataplane_common::{MAX_CGROUP_DEPTH, WorkloadKey, WorkloadValue};

use crate::maps::WORKLOADS;

#[inline(always)]
pub fn current_workload(slot: u32) -> Option<(u64, WorkloadValue)> {
    // SAFETY: helpers without pointer arguments.
    let cgroup_id = unsafe { bpf_get_current_cgroup_id() };
    if let Some(w) = lookup(cgroup_id, slot) {
        return Some((cgroup_id, w));
    }
    // A process in a child cgroup of a governed one: search ancestors, deepest first.
    // Levels beyond the task's depth return 0 and are skipped.
    let mut level = MAX_CGROUP_DEPTH as i32;
    while level > 0 {
        let id = unsafe { bpf_get_current_ancestor_cgroup_id(level) };
        if id != 0 && id != cgroup_id {
            if let Some(w) = lookup(id, slot) {
                return Some((id, w));
            }
        }
        level -= 1;
    }
    None
}

#[inline(always)]
fn lookup(cgroup_id: u64, slot: u32) -> Option<WorkloadValue> {
    let key = WorkloadKey {
        cgroup_id,
        slot,
        _pad: 0,
    };
    // SAFETY: value is Copy and read immediately.
    unsafe { WORKLOADS.get(&key).copied() }
}
