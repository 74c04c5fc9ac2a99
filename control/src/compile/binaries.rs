//! Process-aware egress: EgressPolicies scoped to `spec.binaries`.
//!
//! A binary is identified by its executable *file* (device, inode), resolved by the agent from
//! the patterns (exact path, or `prefix*`). Files named by the same set of binary-scoped
//! policies share a binary id. For a workload W and a binary id b whose policies select W, a
//! *subject* (W, b) gets its own egress entries: W's rules for every process plus the rules of
//! the policies scoped to b. The kernel looks the subject up from the caller's executable and
//! falls back to W, so processes running other binaries see only W's own rules.

use std::collections::{BTreeMap, BTreeSet};

use crate::model::{BinaryMatch, EgressPolicy};

/// An executable file's identity: (device in the kernel's `MKDEV` encoding, inode).
pub type FileId = (u64, u64);

/// For each `spec.binaries` pattern (as written: `/usr/bin/curl`, `/opt/app/*`), the files it
/// names now. Patterns without an entry name nothing yet.
pub type BinaryResolutions = BTreeMap<String, Vec<FileId>>;

/// A workload × binary subject.
#[derive(Clone, Debug, PartialEq, Eq, serde::Serialize)]
pub struct CompiledSubject {
    pub workload_id: u32,
    pub binary_id: u32,
    /// Id keyed into the egress table in place of the workload's.
    pub subject_id: u32,
    pub flags: u32,
    /// Indexes (into the sorted policy list) of the binary-scoped policies that apply.
    #[serde(skip)]
    pub policies: BTreeSet<usize>,
}

/// The text of a pattern, as the key of [`BinaryResolutions`].
pub fn pattern_text(m: &BinaryMatch) -> String {
    match m {
        BinaryMatch::Exact(p) => p.clone(),
        BinaryMatch::Prefix(p) => format!("{p}*"),
    }
}

/// Every pattern the policies use (for the agent to resolve).
pub fn patterns<'a>(policies: impl IntoIterator<Item = &'a EgressPolicy>) -> BTreeSet<String> {
    policies
        .into_iter()
        .flat_map(|p| &p.binaries)
        .map(|b| pattern_text(&b.value))
        .collect()
}

/// Each executable's binary id, and for each binary id the binary-scoped policies (indexes)
/// that name its files.
pub struct Classes {
    pub files: Vec<(FileId, u32)>,
    pub policies: BTreeMap<u32, BTreeSet<usize>>,
}

/// Binary ids: one per distinct set of binary-scoped policies naming a file, numbered from 1
/// in a deterministic order.
pub fn classify(policies: &[&EgressPolicy], resolved: &BinaryResolutions) -> Classes {
    let mut by_file: BTreeMap<FileId, BTreeSet<usize>> = BTreeMap::new();
    for (pi, p) in policies.iter().enumerate() {
        for b in &p.binaries {
            for file in resolved.get(&pattern_text(&b.value)).into_iter().flatten() {
                by_file.entry(*file).or_default().insert(pi);
            }
        }
    }
    let sets: BTreeSet<&BTreeSet<usize>> = by_file.values().collect();
    let ids: BTreeMap<&BTreeSet<usize>, u32> = sets.into_iter().zip(1u32..).collect();
    Classes {
        files: by_file.iter().map(|(f, set)| (*f, ids[set])).collect(),
        policies: ids.iter().map(|(set, id)| (*id, (*set).clone())).collect(),
    }
}
