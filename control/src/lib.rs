//! meshward's policy control: the policy model, YAML parsing with precise source locations,
//! validation, a pure compiler from configuration to the kernel's tables, and a user-space
//! evaluator that emulates the kernel lookup exactly.
//!
//! `control` knows nothing of aya or of the kernel; `dataplane` calls this API and writes the
//! maps. The ABI types come from [`dataplane_common`].
//!
//! # API
//! ```text
//! load_config(path: &Path) -> Result<Config, Diagnostics>          // file or directory
//! load_config_str(source_name: &str, text: &str) -> Result<Config, Diagnostics>
//! compile(&Config, &Settings, &Resolutions, previous_rule_ids: &RuleIds)
//!     -> Result<CompiledPolicy, Diagnostics>
//! evaluate(&CompiledPolicy, workload_id: u32, dst: IpAddr, port: u16) -> Decision
//! evaluate_inbound(&CompiledPolicy, dst_workload_id: u32, src: IpAddr, src_identity: u32,
//!                  port: u16) -> Decision
//! identity_of(&CompiledPolicy, ip: IpAddr) -> u32                   // IDENTITIES lookup
//! evaluate_sni(&CompiledPolicy, subject_id, dst, port, server_name) -> Decision  // at ClientHello
//! CompiledPolicy::{rule(id), rule_name(id), workload(id), workload_by_name(ns, name),
//!                  workload_by_address(ip), summary()}
//! ```
//!
//! # Flow
//! 1. [`load_config`] reads WorkloadEntry, EgressPolicy and AuthorizationPolicy documents into a
//!    [`Config`]; every problem is a [`Diagnostic`] with `file:line`, and any error rejects the
//!    whole configuration.
//! 2. [`compile`] turns it into a [`CompiledPolicy`]: workloads with ids and flags, the folded
//!    egress trie entries, the inbound (AuthorizationPolicy) groups, the workload addresses
//!    (source identities), and rule ids that stay stable across compiles (pass the previous
//!    [`RuleIds`] back in). Exact DNS names it needs are listed in `dns_names`; the agent
//!    resolves them and compiles again with [`Resolutions`].
//! 3. [`evaluate`] and [`evaluate_inbound`] answer "what would the kernel do" for one
//!    outgoing or incoming connection.
//!
//! See `docs/policy-reference.md` for the user-facing semantics.

mod compile;
mod decode;
mod diagnostics;
mod evaluate;
mod evaluate_sni;
mod model;
mod net;
mod parse;
mod rule_ids;
pub mod yaml;

#[cfg(test)]
mod tests;

pub use compile::pattern_text;
pub use compile::{
    BinaryResolutions, CompiledPolicy, CompiledSubject, CompiledWorkload, DnsWatch, EgressEntry,
    FileId, PolicySummary, Resolutions, RuleInfo, RuleKind, Settings, SniRequired, SniRule,
    binary_patterns, compile, compile_with_binaries, inbound_rule_name,
};
pub use dataplane_common::InboundEntry;
pub use decode::Spanned;
pub use diagnostics::{Diagnostic, Diagnostics, Location, Severity};
pub use evaluate::{
    Decision, Verdict, evaluate, evaluate_inbound, evaluate_with_names, identity_of,
};
pub use evaluate_sni::evaluate_sni;
pub use model::{
    Action, AuthorizationAction, AuthorizationPolicy, AuthorizationRule, BinaryMatch, Condition,
    Config, EgressPolicy, EgressRule, EgressTarget, Host, Operation, Source, Workload,
};
pub use net::{HostMatch, PortMatch, Prefix, parse_host};
pub use parse::{
    CGROUP_ANNOTATION, check_dns_label, check_dns_subdomain, load_config, load_config_str,
};
pub use rule_ids::RuleIds;
