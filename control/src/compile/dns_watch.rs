//! `DNS_WATCH`: which names the kernel learns addresses for, per workload — those that some
//! EgressPolicy host rule of the workload (or of one of its workload × binary subjects) names.
//! The name rules themselves are the SNI rules (`sni.rs`): one set of name rules serves TLS
//! server names and DNS-learned addresses.

use std::collections::BTreeMap;

use dataplane_common::{sni_policy::OVERLONG_NAME_KEY, workload_flags};

use super::{CompiledSubject, CompiledWorkload, SniRule};

/// One `DNS_WATCH` entry.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct DnsWatch {
    /// The cgroup's workload (answers arrive for a socket, not for a process).
    pub workload_id: u32,
    pub name_key: u64,
    /// The host as written (`*.example.com`).
    pub pattern: String,
}

/// The watch entries, sorted by (workload, key); marks workloads and subjects with name rules.
pub(crate) fn build(
    workloads: &mut [CompiledWorkload],
    subjects: &mut [CompiledSubject],
    sni_rules: &[SniRule],
) -> Vec<DnsWatch> {
    let workload_of: BTreeMap<u32, u32> = subjects
        .iter()
        .map(|s| (s.subject_id, s.workload_id))
        .collect();
    let mut watch: BTreeMap<(u32, u64), String> = BTreeMap::new();
    for r in sni_rules.iter().filter(|r| r.name_key != OVERLONG_NAME_KEY) {
        let workload_id = workload_of
            .get(&r.subject_id)
            .copied()
            .unwrap_or(r.subject_id);
        watch
            .entry((workload_id, r.name_key))
            .or_insert_with(|| r.pattern.clone());
        if let Some(s) = subjects.iter_mut().find(|s| s.subject_id == r.subject_id) {
            s.flags |= workload_flags::HAS_NAME_RULES;
        }
        if let Some(w) = workloads.iter_mut().find(|w| w.workload_id == r.subject_id) {
            w.flags |= workload_flags::HAS_NAME_RULES;
        }
    }
    watch
        .into_iter()
        .map(|((workload_id, name_key), pattern)| DnsWatch {
            workload_id,
            name_key,
            pattern,
        })
        .collect()
}
