//! The classifier study's kernel/user layouts, defined once: the study's eBPF programs include this
//! file as a module, and so does `dataplane/benches/classifier.rs` (by path). Nothing here is part
//! of meshward's production ABI (`dataplane-common`).

/// One inbound query: the server workload, the peer's identity, the destination port and the
/// peer's address (IPv4-mapped), exactly the inputs of `inbound_table::lookup`.
#[repr(C)]
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct StudyQuery {
    pub workload_id: u32,
    pub identity: u32,
    pub port: u16,
    pub _pad: u16,
    pub addr: [u8; 16],
}

/// The packet each wrapper program is test-run with. Run `k` (k = 0, 1, …) classifies
/// `CS_QUERIES[first + k % count]` (a per-CPU cursor counts the runs) and writes the verdict back
/// into `result`, so a single run doubles as a correctness probe.
#[repr(C)]
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct StudyPacket {
    pub first: u32,
    pub count: u32,
    pub result: [u32; 3],
    pub _pad: [u32; 3],
}

/// Capacity of `CS_QUERIES`.
pub const MAX_QUERIES: u32 = 65_536;

/// Design B: a wildcard shape (one "tuple" of tuple-space search). `mask` is the source-prefix
/// mask over the 16 address bytes, as two native-endian words of the same bytes. `id` is stable
/// (it is in every entry's key), so a new shape only rewrites the priority order, not entries.
#[repr(C)]
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct TssShape {
    pub mask: [u64; 2],
    pub id: u16,
    pub any_identity: u8,
    pub any_port: u8,
    pub prefix_len: u8,
    pub _pad: [u8; 3],
}

/// Design B: one hash table for all shapes; the shape's index is part of the key.
#[repr(C)]
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Hash)]
pub struct TssKey {
    pub workload_id: u32,
    /// The query's identity, or `identities::ANY` in identity-wildcard shapes.
    pub identity: u32,
    /// The query's port, or 0 in port-wildcard shapes.
    pub port: u16,
    /// The shape's `id`.
    pub shape: u16,
    /// The query's address masked to the shape's prefix.
    pub addr: [u8; 16],
}

/// Every (group, prefix length) pair: 4 wildcard groups × prefix lengths 0..=128.
pub const MAX_SHAPES: u32 = 4 * 129;

/// Design C: the bitmaps of one query dimension value, as an offset (in words) into
/// `CS_BV_WORDS`.
#[repr(C)]
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Hash)]
pub struct BvDimKey {
    /// 0 workload, 1 identity, 2 port.
    pub dim: u32,
    pub value: u32,
}

/// Design C dimensions (the address dimension is an LPM trie of its own).
pub mod bv_dims {
    pub const WORKLOAD: u32 = 0;
    pub const IDENTITY: u32 = 1;
    pub const PORT: u32 = 2;
}

/// Design C: the most rules it can hold (bits per bitmap); the AND loop is bounded by it.
pub const BV_MAX_WORDS: u32 = 1_024;
