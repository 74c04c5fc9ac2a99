//! What `/policy` shows of the names learned in the kernel from DNS answers: each (workload,
//! address, host pattern) with the seconds left before it expires.

use std::collections::HashMap;

use serde::Serialize;

use super::state::Shared;

#[derive(Serialize)]
pub struct LearnedRecord {
    /// `namespace/name` of the workload whose query was answered.
    pub workload: String,
    pub address: String,
    /// The EgressPolicy host (`*.example.com`, `api.example.com`) the answered name matched.
    pub host: String,
    pub ttl_left_secs: u64,
}

pub fn records(shared: &Shared) -> Vec<LearnedRecord> {
    let snapshot = shared.snapshot();
    let Some(compiled) = &snapshot.compiled else {
        return Vec::new();
    };
    let patterns: HashMap<(u32, u64), &str> = compiled
        .dns_watch
        .iter()
        .map(|w| ((w.workload_id, w.name_key), w.pattern.as_str()))
        .collect();
    let learned = shared.dns().learned();
    learned
        .into_iter()
        .map(|l| LearnedRecord {
            workload: compiled
                .workload(l.workload_id)
                .map(|w| format!("{}/{}", w.namespace, w.name))
                .unwrap_or_else(|| format!("workload {}", l.workload_id)),
            address: l.addr.to_string(),
            host: patterns
                .get(&(l.workload_id, l.name_key))
                .map(|p| p.to_string())
                // A name of an earlier generation that no host rule names any more.
                .unwrap_or_else(|| format!("(name key {:#x}, not in the policy)", l.name_key)),
            ttl_left_secs: l.ttl_left_secs,
        })
        .collect()
}
