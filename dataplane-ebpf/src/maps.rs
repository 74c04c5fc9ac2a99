//! Every map of the kernel side, with its single user-space owner named.
//! Maps are pinned by name so a restarted agent adopts them (and the programs keep enforcing).

use aya_ebpf::{
    bindings::BPF_F_NO_PREALLOC,
    macros::map,
    maps::{Array, HashMap, LpmTrie, PerCpuArray, RingBuf},
};
use dataplane_common::{
    AddrKey, Config, EVENTS_RING_BYTES, EgressKey, EventBudget, FileKey, InboundKey, KernelOffsets,
    MAX_BINARIES_PER_SLOT, MAX_EGRESS_ENTRIES_PER_SLOT, MAX_EGRESS_EXACT_PER_SLOT,
    MAX_IDENTITIES_PER_SLOT, MAX_INBOUND_ENTRIES_PER_SLOT, MAX_INBOUND_EXACT_PER_SLOT, MAX_RULES,
    MAX_SUBJECTS_PER_SLOT, MAX_WORKLOADS, RuleCounters, RuleMatch, RuleName, SubjectKey,
    WorkloadKey, WorkloadValue,
    sni_policy::{MAX_SNI_REQUIRED_PER_SLOT, MAX_SNI_RULES_PER_SLOT, SniRequiredKey, SniRuleKey},
    stats,
};

/// Owner: dataplane::tables (writes the active slot last, after both tables are complete).
#[map(name = "MW_CONFIG")]
pub static CONFIG: Array<Config> = Array::pinned(1, 0);

/// Owner: dataplane::tables. cgroup id (+ slot) → workload.
#[map(name = "MW_WORKLOADS")]
pub static WORKLOADS: HashMap<WorkloadKey, WorkloadValue> = HashMap::pinned(MAX_WORKLOADS * 2, 0);

/// Owner: dataplane::tables. (workload, port, slot, address prefix) → matching rules.
#[map(name = "MW_EGRESS_RULES")]
pub static EGRESS_RULES: LpmTrie<EgressKey, RuleMatch> =
    LpmTrie::pinned(MAX_EGRESS_ENTRIES_PER_SLOT * 2, 0);

/// Owner: dataplane::tables. (workload, port, slot, full address) → matching rules: the
/// full-length entries, kept out of EGRESS_RULES and probed before it. Not preallocated: memory
/// follows the entries (plus the bucket array).
#[map(name = "MW_EGRESS_EXACT")]
pub static EGRESS_EXACT: HashMap<EgressKey, RuleMatch> =
    HashMap::pinned(MAX_EGRESS_EXACT_PER_SLOT * 2, BPF_F_NO_PREALLOC);

/// Owner: dataplane::tables. Workload address (+ slot) → workload: the peer identity of a
/// connection, and the server side of inbound connections.
#[map(name = "MW_IDENTITIES")]
pub static IDENTITIES: HashMap<AddrKey, WorkloadValue> =
    HashMap::pinned(MAX_IDENTITIES_PER_SLOT * 2, 0);

/// Owner: dataplane::tables. (server workload, source identity, port, slot, source prefix) →
/// matching rules.
#[map(name = "MW_INBOUND_RULES")]
pub static INBOUND_RULES: LpmTrie<InboundKey, RuleMatch> =
    LpmTrie::pinned(MAX_INBOUND_ENTRIES_PER_SLOT * 2, 0);

/// Owner: dataplane::tables. (server workload, source identity, port, slot, full source address)
/// → matching rules: the full-length entries, kept out of INBOUND_RULES and probed first in each
/// group. Not preallocated.
#[map(name = "MW_INBOUND_EXACT")]
pub static INBOUND_EXACT: HashMap<InboundKey, RuleMatch> =
    HashMap::pinned(MAX_INBOUND_EXACT_PER_SLOT * 2, BPF_F_NO_PREALLOC);

/// Owner: dataplane::tables. Executable (device, inode) + slot → binary id.
#[map(name = "MW_BINARIES")]
pub static BINARIES: HashMap<FileKey, u32> = HashMap::pinned(MAX_BINARIES_PER_SLOT * 2, 0);

/// Owner: dataplane::tables. (workload, binary id) + slot → subject (id into EGRESS_RULES).
#[map(name = "MW_SUBJECTS")]
pub static SUBJECTS: HashMap<SubjectKey, WorkloadValue> =
    HashMap::pinned(MAX_SUBJECTS_PER_SLOT * 2, 0);

/// Owner: dataplane::tables. (subject, port, slot, server-name key) → the EgressPolicy name rules
/// that match a TLS server name (see dataplane_common::sni_policy).
#[map(name = "MW_SNI_RULES")]
pub static SNI_RULES: HashMap<SniRuleKey, RuleMatch> =
    HashMap::pinned(MAX_SNI_RULES_PER_SLOT * 2, BPF_F_NO_PREALLOC);

/// Owner: dataplane::tables. (subject, port, slot, address) → the name ALLOW rule that alone
/// admits connections to that address (0: an address rule admits them on that port).
#[map(name = "MW_SNI_REQUIRED")]
pub static SNI_REQUIRED: HashMap<SniRequiredKey, u32> =
    HashMap::pinned(MAX_SNI_REQUIRED_PER_SLOT * 2, BPF_F_NO_PREALLOC);

/// Owner: dataplane::loader (from the kernel's BTF, at every start).
#[map(name = "MW_KERNEL_OFFSETS")]
pub static KERNEL_OFFSETS: Array<KernelOffsets> = Array::pinned(1, 0);

/// Written by the kernel; read and reset per rule id by dataplane::counters.
#[map(name = "MW_RULE_COUNTERS")]
pub static RULE_COUNTERS: PerCpuArray<RuleCounters> = PerCpuArray::pinned(MAX_RULES, 0);

/// Owner: dataplane::counters. Never read by the kernel; survives agent restarts with the pins.
#[map(name = "MW_RULE_NAMES")]
pub static RULE_NAMES: HashMap<u32, RuleName> = HashMap::pinned(MAX_RULES, 0);

/// Written by the kernel; read by dataplane::counters.
#[map(name = "MW_STATS")]
pub static STATS: PerCpuArray<u64> = PerCpuArray::pinned(stats::COUNT, 0);

/// Written by the kernel; drained by dataplane::events.
#[map(name = "MW_EVENTS")]
pub static EVENTS: RingBuf = RingBuf::pinned(EVENTS_RING_BYTES, 0);

/// Kernel-private rate-limit state for EVENTS.
#[map(name = "MW_EVENT_BUDGET")]
pub static EVENT_BUDGET: PerCpuArray<EventBudget> = PerCpuArray::pinned(1, 0);

#[inline(always)]
pub fn bump_stat(index: u32) {
    if let Some(v) = STATS.get_ptr_mut(index) {
        // SAFETY: per-CPU slot, no concurrent writer on this CPU while the program runs.
        unsafe { *v += 1 };
    }
}
