//! One module per kernel-side concept. Each map has exactly one owner here (see docs/architecture.md).

pub mod attach;
pub mod bpffs;
pub mod btf;
pub mod cgroup;
pub mod counters;
pub mod dns_learning;
pub mod events;
pub mod fast_path;
pub mod loader;
pub mod posture;
pub mod sock_diag;
pub mod tables;
