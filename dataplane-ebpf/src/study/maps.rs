//! The study's maps. None is pinned and every name starts with `CS_`, so loading the study object
//! can never touch the production maps (`MW_*`).

use aya_ebpf::{
    bindings::BPF_F_NO_PREALLOC,
    macros::map,
    maps::{Array, HashMap, LpmTrie, PerCpuArray},
};
use dataplane_common::{InboundKey, RuleMatch};

use crate::abi::{BvDimKey, MAX_QUERIES, MAX_SHAPES, StudyQuery, TssKey, TssShape};

/// Entries per table; the bench fills at most 100k rules plus the adversarial sets.
const CAPACITY: u32 = 262_144;

/// Design A: every entry in one trie, read through `inbound_table::lookup_in` without a hash.
#[map(name = "CS_LPM_RULES")]
pub static LPM_RULES: LpmTrie<InboundKey, RuleMatch> = LpmTrie::with_max_entries(CAPACITY, 0);

/// Design A': the full-length entries. Named like the production maps because the production
/// lookup (`../inbound_table.rs`, compiled into this object unchanged) reads
/// `crate::maps::{INBOUND_EXACT, INBOUND_RULES}`: here they resolve to these unpinned copies with
/// the same key and value types and flags.
#[map(name = "CS_EXACT_RULES")]
pub static INBOUND_EXACT: HashMap<InboundKey, RuleMatch> =
    HashMap::with_max_entries(CAPACITY, BPF_F_NO_PREALLOC);

/// Design A': every other entry (shorter prefixes), walked on a miss of `CS_EXACT_RULES`.
#[map(name = "CS_EXACT_LPM")]
pub static INBOUND_RULES: LpmTrie<InboundKey, RuleMatch> = LpmTrie::with_max_entries(CAPACITY, 0);

/// Design B: the shapes in priority order; `CS_TSS_COUNT[0]` of them are in use.
#[map(name = "CS_TSS_SHAPES")]
pub static TSS_SHAPES: Array<TssShape> = Array::with_max_entries(MAX_SHAPES, 0);

#[map(name = "CS_TSS_COUNT")]
pub static TSS_COUNT: Array<u32> = Array::with_max_entries(1, 0);

/// Design B: every shape's entries. Not preallocated, so its memory follows its contents.
#[map(name = "CS_TSS_RULES")]
pub static TSS_RULES: HashMap<TssKey, RuleMatch> =
    HashMap::with_max_entries(CAPACITY, BPF_F_NO_PREALLOC);

/// Design C: (dimension, value) → word offset of that value's rule bitmap in `CS_BV_WORDS`.
#[map(name = "CS_BV_DIMS")]
pub static BV_DIMS: HashMap<BvDimKey, u32> = HashMap::with_max_entries(4_096, 0);

/// Design C: source prefix → word offset of the bitmap of rules covering it.
#[map(name = "CS_BV_ADDRS")]
pub static BV_ADDRS: LpmTrie<[u8; 16], u32> = LpmTrie::with_max_entries(CAPACITY, 0);

/// Design C: all bitmaps, back to back. The bench sizes it at load time.
#[map(name = "CS_BV_WORDS")]
pub static BV_WORDS: Array<u64> = Array::with_max_entries(1, 0);

/// Design C: `[0]` = words per bitmap.
#[map(name = "CS_BV_COUNT")]
pub static BV_COUNT: Array<u32> = Array::with_max_entries(1, 0);

/// Design C: rule index (priority order) → its verdict.
#[map(name = "CS_BV_RESULTS")]
pub static BV_RESULTS: Array<RuleMatch> = Array::with_max_entries(65_536, 0);

/// The query mix the wrappers cycle through.
#[map(name = "CS_QUERIES")]
pub static QUERIES: Array<StudyQuery> = Array::with_max_entries(MAX_QUERIES, 0);

/// Runs so far on this CPU: selects the next query.
#[map(name = "CS_CURSOR")]
pub static CURSOR: PerCpuArray<u32> = PerCpuArray::with_max_entries(1, 0);
