//! The kernel/user ABI of meshward, defined once.
//!
//! Every map the kernel programs use is declared in `dataplane-ebpf/src/maps.rs` with the key and
//! value types below; user space (`dataplane`) is the only writer of the policy maps and the only
//! reader of the counter and event maps. Layouts are `#[repr(C)]` with explicit padding so both
//! sides agree byte for byte.
#![no_std]

// Range checks are written out as comparisons: the same code is compiled for the BPF target.
#[allow(clippy::manual_range_contains)]
pub mod dns;
pub mod dns_learning;
pub mod fast_path;
pub mod posture;
pub mod sni_policy;
// Range checks are written out as comparisons: the same code is compiled for the BPF target.
#[allow(clippy::manual_range_contains)]
pub mod tls;

/// Map names as they appear in the object file and under the pin directory.
pub mod map_names {
    pub const CONFIG: &str = "MW_CONFIG";
    pub const WORKLOADS: &str = "MW_WORKLOADS";
    pub const EGRESS_RULES: &str = "MW_EGRESS_RULES";
    pub const RULE_COUNTERS: &str = "MW_RULE_COUNTERS";
    pub const RULE_NAMES: &str = "MW_RULE_NAMES";
    pub const STATS: &str = "MW_STATS";
    pub const EVENTS: &str = "MW_EVENTS";
    pub const EVENT_BUDGET: &str = "MW_EVENT_BUDGET";
    pub const IDENTITIES: &str = "MW_IDENTITIES";
    pub const INBOUND_RULES: &str = "MW_INBOUND_RULES";
    pub const BINARIES: &str = "MW_BINARIES";
    pub const SUBJECTS: &str = "MW_SUBJECTS";
    pub const KERNEL_OFFSETS: &str = "MW_KERNEL_OFFSETS";
    /// Full-length (/128 in the IPv4-mapped space) entries of `EGRESS_RULES`, split off into an
    /// exact-match hash probed before the trie.
    pub const EGRESS_EXACT: &str = "MW_EGRESS_EXACT";
    /// Full-length entries of `INBOUND_RULES`, likewise.
    pub const INBOUND_EXACT: &str = "MW_INBOUND_EXACT";
}

/// Program names (the Rust function names in `dataplane-ebpf`).
pub mod program_names {
    pub const CONNECT4: &str = "mw_connect4";
    pub const CONNECT6: &str = "mw_connect6";
    pub const SENDMSG4: &str = "mw_sendmsg4";
    pub const SENDMSG6: &str = "mw_sendmsg6";
    pub const SK_LOOKUP: &str = "mw_sk_lookup";
}

/// Capacities. User space refuses a config that would not fit instead of half-applying it.
pub const MAX_WORKLOADS: u32 = 16_384;
/// Egress table entries per generation slot; the trie holds two slots.
pub const MAX_EGRESS_ENTRIES_PER_SLOT: u32 = 262_144;
pub const MAX_RULES: u32 = 262_144;
/// Inbound table entries per generation slot; the trie holds two slots.
pub const MAX_INBOUND_ENTRIES_PER_SLOT: u32 = 262_144;
/// Full-length egress entries per generation slot (`EGRESS_EXACT`, two slots). As large as the
/// trie's slot, so every table that fits the trie fits whatever its split.
pub const MAX_EGRESS_EXACT_PER_SLOT: u32 = MAX_EGRESS_ENTRIES_PER_SLOT;
/// Full-length inbound entries per generation slot (`INBOUND_EXACT`, two slots).
pub const MAX_INBOUND_EXACT_PER_SLOT: u32 = MAX_INBOUND_ENTRIES_PER_SLOT;
/// Workload addresses (identity by IP) per generation slot.
pub const MAX_IDENTITIES_PER_SLOT: u32 = 65_536;
pub const EVENTS_RING_BYTES: u32 = 256 * 1024;
/// Length of a rule's display name kept in `RULE_NAMES` (policy namespace/name#index).
pub const RULE_NAME_LEN: usize = 128;
/// Depth of cgroup ancestors searched when the current cgroup is not itself a workload.
pub const MAX_CGROUP_DEPTH: u32 = 16;

/// Reserved rule ids. Real rules start at [`FIRST_RULE_ID`].
pub mod rule_ids {
    /// No rule: the slot in [`super::RuleMatch`] is empty.
    pub const NONE: u32 = 0;
    /// Denied because ALLOW policies select the workload and none matched.
    pub const DEFAULT_DENY: u32 = 1;
    /// Allowed because no ALLOW policy selects the workload.
    pub const DEFAULT_ALLOW: u32 = 2;
    /// Inbound twins of the two above (AuthorizationPolicy), counted apart from egress.
    pub const INBOUND_DEFAULT_DENY: u32 = 3;
    pub const INBOUND_DEFAULT_ALLOW: u32 = 4;
    /// A TLS connection allowed at connect only by DNS-name ALLOW rules whose server name (SNI)
    /// no ALLOW rule names: cut at its ClientHello.
    pub const SNI_DEFAULT_DENY: u32 = 5;
}
pub const FIRST_RULE_ID: u32 = 16;

/// `CONFIG[0]`: which generation slot is live. Flipping `active_slot` switches every table at once.
#[repr(C)]
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct Config {
    pub active_slot: u32,
    /// Deny/audit events allowed per second per CPU (0 = no limit); excess is counted in `STATS`.
    pub events_per_sec: u32,
    /// Monotonic generation number, for user space to recognise what it wrote.
    pub generation: u64,
}

/// `WORKLOADS` key: a governed cgroup in one generation slot.
#[repr(C)]
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Hash)]
pub struct WorkloadKey {
    pub cgroup_id: u64,
    pub slot: u32,
    pub _pad: u32,
}

pub mod workload_flags {
    /// At least one ALLOW EgressPolicy selects this workload (so unmatched egress is denied).
    pub const HAS_ALLOW_POLICY: u32 = 1;
    /// At least one ALLOW AuthorizationPolicy selects this workload (unmatched inbound is denied).
    pub const HAS_ALLOW_INBOUND: u32 = 2;
    /// Some EgressPolicy selecting this workload is scoped to binaries: the kernel looks up the
    /// caller's executable (`BINARIES`) and the workload × binary subject (`SUBJECTS`).
    pub const HAS_BINARY_RULES: u32 = 4;
    /// Some EgressPolicy host rule of this workload (or subject) names a DNS name: at connect
    /// the kernel also looks up the names learned for the destination (`DNS_LEARNED`).
    pub const HAS_NAME_RULES: u32 = 8;
}

/// Executables named by `spec.binaries`, and workload × binary subjects, per generation slot.
pub const MAX_BINARIES_PER_SLOT: u32 = 16_384;
pub const MAX_SUBJECTS_PER_SLOT: u32 = 16_384;

/// `BINARIES` key: an executable file's identity (device, inode) in one slot. `dev` uses the
/// kernel's encoding (`MKDEV(major, minor)` = major << 20 | minor), as in `super_block.s_dev`.
#[repr(C)]
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct FileKey {
    pub dev: u64,
    pub ino: u64,
    pub slot: u32,
    pub _pad: u32,
}

/// `SUBJECTS` key: (workload, binary id) in one slot → the subject's [`WorkloadValue`]: an id
/// keyed into `EGRESS_RULES` like a workload's, whose entries hold the workload's rules plus
/// those of the policies scoped to that binary.
#[repr(C)]
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Hash)]
pub struct SubjectKey {
    pub workload_id: u32,
    pub binary_id: u32,
    pub slot: u32,
}

/// `KERNEL_OFFSETS[0]`: byte offsets of the kernel struct fields on the path
/// task_struct → mm → exe_file → f_inode → (i_ino, i_sb → s_dev), read from the running
/// kernel's BTF by user space (a poor man's CO-RE). `valid` = 0 until written.
#[repr(C)]
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct KernelOffsets {
    pub task_mm: u32,
    pub mm_exe_file: u32,
    pub file_inode: u32,
    pub inode_ino: u32,
    pub inode_sb: u32,
    pub sb_dev: u32,
    pub valid: u32,
    pub _pad: u32,
}

/// Source identities in [`InboundKey`]: a workload id, or one of these.
pub mod identities {
    /// A peer whose address belongs to no known workload (no principal, no namespace).
    pub const UNKNOWN: u32 = 0;
    /// Wildcard group: any identity that has no group of its own for this workload.
    pub const ANY: u32 = u32::MAX;
}

/// `WORKLOADS` value.
#[repr(C)]
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct WorkloadValue {
    pub workload_id: u32,
    pub flags: u32,
}

/// `prefix_len` of a compiled entry that names one address (/32 IPv4, /128 IPv6, in the
/// IPv4-mapped space): such entries go to the exact-match maps (`EGRESS_EXACT`, `INBOUND_EXACT`).
pub const FULL_PREFIX_LEN: u8 = 128;

/// Bits of [`EgressKey`] that are always matched in full: workload, port, slot, reserved.
pub const EGRESS_KEY_FIXED_BITS: u32 = 64;
/// Prefix length for an exact lookup of one address.
pub const EGRESS_KEY_FULL_BITS: u32 = EGRESS_KEY_FIXED_BITS + 128;

/// `EGRESS_RULES` (LPM trie) key data. The prefix covers the fixed fields, then `addr` bits.
/// IPv4 destinations are stored IPv4-mapped (`::ffff:a.b.c.d`), so one trie serves both families.
/// `port` 0 means "any port": the kernel looks up the exact port and port 0, and merges.
/// Also the `EGRESS_EXACT` (hash) key, with `addr` in full: user space stores full-length entries
/// there instead of in the trie, and the kernel probes it first (a hit is the longest match).
#[repr(C)]
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Hash)]
pub struct EgressKey {
    pub workload_id: u32,
    /// Destination port, host byte order; 0 = any.
    pub port: u16,
    pub slot: u8,
    pub _reserved: u8,
    pub addr: [u8; 16],
}

/// `EGRESS_RULES` value: the rules of each action that match everything under this prefix.
/// The compiler folds covering (shorter) prefixes into longer ones, so the longest match alone
/// is complete.
#[repr(C)]
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Hash)]
pub struct RuleMatch {
    pub deny: u32,
    pub allow: u32,
    pub audit: u32,
}

/// One compiled egress table entry before it is placed in a generation slot: `control` produces
/// it, `dataplane` turns it into an [`EgressKey`] + [`RuleMatch`]. `addr`'s first `prefix_len`
/// bits (0..=128, IPv4-mapped space) are significant.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub struct EgressEntry {
    pub workload_id: u32,
    /// 0 = any port.
    pub port: u16,
    pub addr: [u8; 16],
    pub prefix_len: u8,
    pub rules: RuleMatch,
}

/// `IDENTITIES` key: a workload's address (IPv4-mapped) in one generation slot.
/// The value is the workload's [`WorkloadValue`]: identity of a peer, and the server side of
/// inbound connections.
#[repr(C)]
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Hash)]
pub struct AddrKey {
    pub addr: [u8; 16],
    pub slot: u32,
}

/// Bits of [`InboundKey`] always matched in full: workload, identity, port, slot, reserved.
pub const INBOUND_KEY_FIXED_BITS: u32 = 96;
pub const INBOUND_KEY_FULL_BITS: u32 = INBOUND_KEY_FIXED_BITS + 128;

/// `INBOUND_RULES` (LPM trie) key: (server workload, source identity, port, slot, source prefix).
/// Groups are tried in order (identity, port), (identity, any port), (ANY, port), (ANY, any
/// port); the first group with a match decides. Every group holds a `::/0` entry, and the
/// compiler makes each group complete (it already includes the rules of the wider groups that
/// apply to it), so negated fields (notPorts, notPrincipals, notIpBlocks) need no fallback.
/// Also the `INBOUND_EXACT` (hash) key, with `addr` in full: within each group the kernel probes
/// it first, and walks the trie (which then holds only the shorter prefixes) on a miss.
#[repr(C)]
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Hash)]
pub struct InboundKey {
    pub workload_id: u32,
    pub identity: u32,
    /// Destination port, host byte order; 0 = the any-port group.
    pub port: u16,
    pub slot: u8,
    pub _reserved: u8,
    /// Source address, IPv4-mapped.
    pub addr: [u8; 16],
}

/// One compiled inbound entry before it is placed in a slot (see [`InboundKey`]).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub struct InboundEntry {
    pub workload_id: u32,
    pub identity: u32,
    pub port: u16,
    pub addr: [u8; 16],
    pub prefix_len: u8,
    pub rules: RuleMatch,
}

/// `RULE_COUNTERS[rule_id]` (per CPU).
#[repr(C)]
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct RuleCounters {
    pub allowed: u64,
    pub denied: u64,
    pub audited: u64,
}

/// `RULE_NAMES[rule_id]`: the rule's name, written by user space so that a restarted agent maps
/// the pinned counters back to the same rules. The kernel never reads it.
#[repr(C)]
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct RuleName {
    pub len: u32,
    pub bytes: [u8; RULE_NAME_LEN],
}

/// Indexes of `STATS` (per-CPU u64 counters).
pub mod stats {
    pub const VERDICT_UNGOVERNED: u32 = 0;
    pub const EVENTS_RATE_LIMITED: u32 = 1;
    pub const EVENTS_RING_FULL: u32 = 2;
    pub const COUNT: u32 = 3;
}

/// `EVENT_BUDGET[0]` (per CPU): token bucket for the event ring.
#[repr(C)]
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct EventBudget {
    pub window_start_ns: u64,
    pub used: u64,
}

/// Which hook produced a verdict.
pub mod hooks {
    pub const CONNECT4: u8 = 1;
    pub const CONNECT6: u8 = 2;
    pub const SENDMSG4: u8 = 3;
    pub const SENDMSG6: u8 = 4;
    pub const SK_LOOKUP: u8 = 5;
    /// sk_msg: a governed client's TLS ClientHello, decided on its server name.
    pub const TLS_SNI: u8 = 6;
}

/// Verdict codes carried by events.
pub mod verdicts {
    pub const ALLOW: u8 = 1;
    pub const DENY: u8 = 2;
    pub const AUDIT: u8 = 3;
}

/// Direction of a verdict.
pub mod directions {
    pub const EGRESS: u8 = 1;
    pub const INBOUND: u8 = 2;
}

/// A deny or audit decision, sent through the `EVENTS` ring buffer.
#[repr(C)]
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct VerdictEvent {
    pub timestamp_ns: u64,
    /// Egress: the caller's cgroup. Inbound: 0 (decided in softirq, no process).
    pub cgroup_id: u64,
    /// Egress: the caller. Inbound: 0.
    pub pid: u32,
    pub rule_id: u32,
    /// The governed workload: egress source, inbound server.
    pub workload_id: u32,
    /// Destination port, host byte order.
    pub port: u16,
    pub verdict: u8,
    pub hook: u8,
    /// Destination address, IPv4-mapped.
    pub addr: [u8; 16],
    /// Inbound: the client's address (IPv4-mapped) and port. Egress: zero.
    pub peer_addr: [u8; 16],
    pub peer_port: u16,
    pub direction: u8,
    pub _pad: [u8; 5],
    /// Inbound: the client's identity (workload id or `identities::UNKNOWN`).
    pub peer_identity: u32,
    pub comm: [u8; 16],
}

#[cfg(feature = "user")]
mod pod {
    use super::*;
    // SAFETY: all types are repr(C), Copy, with explicit padding and no pointers.
    unsafe impl aya::Pod for Config {}
    unsafe impl aya::Pod for WorkloadKey {}
    unsafe impl aya::Pod for WorkloadValue {}
    unsafe impl aya::Pod for EgressKey {}
    unsafe impl aya::Pod for RuleMatch {}
    unsafe impl aya::Pod for RuleCounters {}
    unsafe impl aya::Pod for RuleName {}
    unsafe impl aya::Pod for EventBudget {}
    unsafe impl aya::Pod for VerdictEvent {}
    unsafe impl aya::Pod for AddrKey {}
    unsafe impl aya::Pod for InboundKey {}
    unsafe impl aya::Pod for FileKey {}
    unsafe impl aya::Pod for SubjectKey {}
    unsafe impl aya::Pod for KernelOffsets {}
}

/// An IPv6 address from the four 32-bit context words the kernel gives (each word holds
/// network-order bytes, so its native-endian bytes are the address bytes).
#[inline(always)]
pub fn ipv6_from_words(words: [u32; 4]) -> [u8; 16] {
    let mut a = [0u8; 16];
    let mut i = 0;
    while i < 4 {
        let b = words[i].to_ne_bytes();
        a[i * 4] = b[0];
        a[i * 4 + 1] = b[1];
        a[i * 4 + 2] = b[2];
        a[i * 4 + 3] = b[3];
        i += 1;
    }
    a
}

/// Maps an address to the 16-byte form used in keys and events.
pub fn ipv4_mapped(octets: [u8; 4]) -> [u8; 16] {
    let mut a = [0u8; 16];
    a[10] = 0xff;
    a[11] = 0xff;
    a[12] = octets[0];
    a[13] = octets[1];
    a[14] = octets[2];
    a[15] = octets[3];
    a
}

#[cfg(test)]
mod tests {
    use super::*;
    use core::mem::size_of;

    #[test]
    fn layouts_have_no_implicit_padding() {
        assert_eq!(size_of::<Config>(), 16);
        assert_eq!(size_of::<WorkloadKey>(), 16);
        assert_eq!(size_of::<WorkloadValue>(), 8);
        assert_eq!(size_of::<EgressKey>(), 24);
        assert_eq!(size_of::<RuleMatch>(), 12);
        assert_eq!(size_of::<RuleCounters>(), 24);
        assert_eq!(size_of::<RuleName>(), 4 + RULE_NAME_LEN);
        assert_eq!(size_of::<VerdictEvent>(), 96);
        assert_eq!(EGRESS_KEY_FULL_BITS as usize, (size_of::<EgressKey>()) * 8);
        assert_eq!(size_of::<AddrKey>(), 20);
        assert_eq!(size_of::<FileKey>(), 24);
        assert_eq!(size_of::<SubjectKey>(), 12);
        assert_eq!(size_of::<KernelOffsets>(), 32);
        assert_eq!(INBOUND_KEY_FULL_BITS as usize, size_of::<InboundKey>() * 8);
    }

    #[test]
    fn ipv4_mapping() {
        assert_eq!(
            ipv4_mapped([10, 0, 0, 1]),
            [0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0xff, 0xff, 10, 0, 0, 1]
        );
    }
}
