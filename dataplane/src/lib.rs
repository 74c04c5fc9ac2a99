//! The user-space owner of meshward's kernel side: loads and pins the programs and maps, attaches
//! them to governed cgroups, writes policy generations, and pulls counters and events.
//!
//! This crate knows nothing of YAML or xDS: it takes tables already compiled by `control`
//! (see [`kernel::tables::Generation`]).

pub mod kernel;

/// The compiled eBPF object, built by build.rs from `dataplane-ebpf`.
pub static EBPF_OBJECT: &[u8] =
    aya::include_bytes_aligned!(concat!(env!("OUT_DIR"), "/meshward.bpf.o"));
