//! The maps of in-kernel DNS learning (dataplane_common::dns_learning), with their owners.

use aya_ebpf::{
    bindings::BPF_F_NO_PREALLOC,
    macros::map,
    maps::{Array, HashMap, LruHashMap, PerCpuArray},
};
use dataplane_common::dns_learning::{
    DnsConfig, LearnedKey, LearnedNames, MAX_DNS_LEARNED, MAX_DNS_PORTS, MAX_DNS_QUERIES,
    MAX_DNS_WATCH_PER_SLOT, QueryKey, QueryValue, WatchKey, stats,
};

/// Owner: dataplane::dns_learning (written at start). Resolver port → 1.
#[map(name = "MW_DNS_PORTS")]
pub static DNS_PORTS: HashMap<u16, u8> = HashMap::pinned(MAX_DNS_PORTS, 0);

/// Owner: dataplane::dns_learning (written at start).
#[map(name = "MW_DNS_CONFIG")]
pub static DNS_CONFIG: Array<DnsConfig> = Array::pinned(1, 0);

/// Written by the kernel (mw_dns_egress), consumed by mw_dns_ingress.
#[map(name = "MW_DNS_QUERIES")]
pub static DNS_QUERIES: LruHashMap<QueryKey, QueryValue> = LruHashMap::pinned(MAX_DNS_QUERIES, 0);

/// Owner: dataplane::tables. (workload, slot, name key) → 1.
#[map(name = "MW_DNS_WATCH")]
pub static DNS_WATCH: HashMap<WatchKey, u8> =
    HashMap::pinned(MAX_DNS_WATCH_PER_SLOT * 2, BPF_F_NO_PREALLOC);

/// Written by the kernel (mw_dns_ingress); expired entries deleted by dataplane::dns_learning.
#[map(name = "MW_DNS_LEARNED")]
pub static DNS_LEARNED: HashMap<LearnedKey, LearnedNames> =
    HashMap::pinned(MAX_DNS_LEARNED, BPF_F_NO_PREALLOC);

/// Written by the kernel; read by dataplane::dns_learning.
#[map(name = "MW_DNS_STATS")]
pub static DNS_STATS: PerCpuArray<u64> = PerCpuArray::pinned(stats::COUNT, 0);

#[inline(always)]
pub fn bump(index: u32) {
    add(index, 1);
}

#[inline(always)]
pub fn add(index: u32, n: u64) {
    if let Some(v) = DNS_STATS.get_ptr_mut(index) {
        // SAFETY: per-CPU slot.
        unsafe { *v += n };
    }
}

/// Kernel-private: the answer parser's per-CPU state (dns_learn::Scratch).
#[map(name = "MW_DNS_SCRATCH")]
pub static DNS_SCRATCH: PerCpuArray<crate::dns_learn::Scratch> =
    PerCpuArray::with_max_entries(1, 0);
