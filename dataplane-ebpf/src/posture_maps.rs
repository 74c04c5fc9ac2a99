//! Maps of the TLS posture path (kernel side). Owners named per map; ABI in
//! `dataplane_common::posture`.

use aya_ebpf::{
    macros::map,
    maps::{HashMap, LruHashMap, PerCpuArray, ProgramArray, SockHash},
};
use dataplane_common::posture::{
    ConnKey, ListenerKey, MAX_OWNERS, MAX_POSTURE_ENTRIES, MAX_SNI_NAMES, MAX_SOCKS,
    MAX_TRACKED_CONNS, Owner, PostureKey, PostureValue, SniName, stats,
};

use crate::posture_conn::ConnTls;

/// Written by sock_ops (insert at established); entries leave when their socket closes.
/// The sk_msg programs are attached to it by dataplane::loader.
#[map(name = "MW_TLS_SOCKS")]
pub static SOCKS: SockHash<ConnKey> = SockHash::pinned(MAX_SOCKS, 0);

/// Kernel-private parser state per connection being read; deleted when its handshake is read or
/// the socket closes. LRU: a flood of connections that never finish cannot wedge it.
#[map(name = "MW_TLS_CONNS")]
pub static CONNS: LruHashMap<ConnKey, ConnTls> = LruHashMap::pinned(MAX_TRACKED_CONNS, 0);

/// Kernel-private: socket cookie → owner (workload, subject, executable), at connect() (process
/// context).
#[map(name = "MW_SOCK_OWNERS")]
pub static SOCK_OWNERS: LruHashMap<u64, Owner> = LruHashMap::pinned(MAX_OWNERS, 0);

/// Kernel-private: (netns cookie, port) → owner, at listen() (process context).
#[map(name = "MW_LISTENERS")]
pub static LISTENERS: LruHashMap<ListenerKey, Owner> = LruHashMap::pinned(MAX_OWNERS, 0);

/// Written by the kernel; read by dataplane::posture (the aggregates users see).
#[map(name = "MW_POSTURE")]
pub static POSTURE: HashMap<PostureKey, PostureValue> = HashMap::pinned(MAX_POSTURE_ENTRIES, 0);

/// Written by the kernel (interned SNI strings); read by dataplane::posture.
#[map(name = "MW_SNI_NAMES")]
pub static SNI_NAMES: HashMap<u64, SniName> = HashMap::pinned(MAX_SNI_NAMES, 0);

/// Written by the kernel; read by dataplane::posture.
#[map(name = "MW_TLS_STATS")]
pub static TLS_STATS: PerCpuArray<u64> = PerCpuArray::pinned(stats::COUNT, 0);

pub use dataplane_common::posture::stages;

/// Owner: dataplane::loader (fills them with the stage programs; a program array holds one
/// program type, hence one per stream program type). Pinned: a live socket keeps the sk_msg
/// program it joined the sockhash with, and that program tail-calls through this array; pinned,
/// the array outlives its agent, and a restarted agent puts its own stages in it.
#[map(name = "MW_TLS_MSG_STAGES")]
pub static MSG_STAGES: ProgramArray = ProgramArray::pinned(stages::SLOTS, 0);

/// Owner: dataplane::loader, as MW_TLS_MSG_STAGES (the cgroup_skb ingress stages).
#[map(name = "MW_TLS_INGRESS_STAGES")]
pub static INGRESS_STAGES: ProgramArray = ProgramArray::pinned(stages::SLOTS, 0);

/// Owner: dataplane::loader, as MW_TLS_MSG_STAGES (the cgroup_skb egress stages).
#[map(name = "MW_TLS_EGRESS_STAGES")]
pub static EGRESS_STAGES: ProgramArray = ProgramArray::pinned(stages::SLOTS, 0);

/// Kernel-private, per CPU: the connection the cgroup_skb egress feed stage of this run is
/// reading, for the stages it tail-calls.
#[map(name = "MW_TLS_CURRENT_OUT")]
pub static CURRENT_EGRESS: PerCpuArray<ConnKey> = PerCpuArray::with_max_entries(1, 0);

/// Kernel-private, per CPU: the connection the ingress feed stage is reading, for the stages it
/// tail-calls in the same run.
#[map(name = "MW_TLS_CURRENT")]
pub static CURRENT: PerCpuArray<ConnKey> = PerCpuArray::with_max_entries(1, 0);

/// Per-CPU scratch for the parser's outputs.
#[map(name = "MW_TLS_SCRATCH")]
pub static SCRATCH: PerCpuArray<crate::posture_parse::Scratch> =
    PerCpuArray::with_max_entries(1, 0);

/// An all-zero ConnTls to insert from (the value is too large for the BPF stack).
#[map(name = "MW_TLS_ZERO")]
pub static ZERO: PerCpuArray<ConnTls> = PerCpuArray::with_max_entries(1, 0);

#[inline(always)]
pub fn bump(index: u32) {
    if let Some(v) = TLS_STATS.get_ptr_mut(index) {
        // SAFETY: per-CPU slot.
        unsafe { *v += 1 };
    }
}
