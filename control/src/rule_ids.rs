//! Stable numbering of rules, so counters in pinned kernel maps stay attached to the same rule
//! across recompiles and agent restarts.

use std::collections::{BTreeMap, BTreeSet};

use dataplane_common::{FIRST_RULE_ID, MAX_RULES};
use serde::Serialize;

/// A bijection between rule names (`namespace/policy#index`) and ids
/// (`FIRST_RULE_ID..MAX_RULES`).
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize)]
pub struct RuleIds {
    by_name: BTreeMap<String, u32>,
    #[serde(skip)]
    by_id: BTreeMap<u32, String>,
}

impl RuleIds {
    pub fn new() -> Self {
        Self::default()
    }

    pub fn id(&self, name: &str) -> Option<u32> {
        self.by_name.get(name).copied()
    }

    pub fn name(&self, id: u32) -> Option<&str> {
        self.by_id.get(&id).map(String::as_str)
    }

    pub fn len(&self) -> usize {
        self.by_id.len()
    }

    pub fn is_empty(&self) -> bool {
        self.by_id.is_empty()
    }

    /// All (id, name) pairs in id order, e.g. to write `RULE_NAMES`.
    pub fn iter(&self) -> impl Iterator<Item = (u32, &str)> {
        self.by_id.iter().map(|(id, name)| (*id, name.as_str()))
    }

    /// Assigns ids to `names`: a name that had an id in `previous` keeps it; ids of names that
    /// are gone are freed; new names get the smallest free ids, in the order given.
    pub(crate) fn assign<'a>(
        previous: &RuleIds,
        names: impl IntoIterator<Item = &'a str>,
    ) -> RuleIds {
        let names: Vec<&str> = names.into_iter().collect();
        let mut out = RuleIds::default();
        for name in &names {
            if let Some(id) = previous.id(name) {
                out.insert(id, name);
            }
        }
        let used: BTreeSet<u32> = out.by_id.keys().copied().collect();
        let mut free = (FIRST_RULE_ID..).filter(|id| !used.contains(id));
        for name in names {
            if out.by_name.contains_key(name) {
                continue;
            }
            if let Some(id) = free.next() {
                out.insert(id, name);
            }
        }
        out
    }

    fn insert(&mut self, id: u32, name: &str) {
        self.by_name.insert(name.to_string(), id);
        self.by_id.insert(id, name.to_string());
    }
}

/// Rebuilds an assignment read back from the kernel (e.g. the pinned `RULE_NAMES` map).
/// Reserved or out-of-range ids and repeated ids or names are ignored (the first one wins).
impl<S: Into<String>> FromIterator<(u32, S)> for RuleIds {
    fn from_iter<I: IntoIterator<Item = (u32, S)>>(iter: I) -> Self {
        let mut out = RuleIds::default();
        for (id, name) in iter {
            let name = name.into();
            if !(FIRST_RULE_ID..MAX_RULES).contains(&id)
                || out.by_id.contains_key(&id)
                || out.by_name.contains_key(&name)
            {
                tracing::debug!(id, %name, "ignoring unusable previous rule id");
                continue;
            }
            out.insert(id, &name);
        }
        out
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn stable_ids_with_reuse_of_smallest_free() {
        let first = RuleIds::assign(&RuleIds::new(), ["a#0", "a#1", "b#0"]);
        assert_eq!(first.id("a#0"), Some(FIRST_RULE_ID));
        assert_eq!(first.id("a#1"), Some(FIRST_RULE_ID + 1));
        assert_eq!(first.id("b#0"), Some(FIRST_RULE_ID + 2));
        // a#1 removed, c#0 and d#0 added: c#0 takes a#1's freed id, d#0 the next free one.
        let second = RuleIds::assign(&first, ["b#0", "c#0", "a#0", "d#0"]);
        assert_eq!(second.id("a#0"), Some(FIRST_RULE_ID));
        assert_eq!(second.id("b#0"), Some(FIRST_RULE_ID + 2));
        assert_eq!(second.id("c#0"), Some(FIRST_RULE_ID + 1));
        assert_eq!(second.id("d#0"), Some(FIRST_RULE_ID + 3));
        assert_eq!(second.id("a#1"), None);
        assert_eq!(second.len(), 4);
    }

    #[test]
    fn from_pinned_map_continues_counters() {
        let prev: RuleIds = [
            (40u32, "x#0"),
            (3, "reserved#0"),
            (40, "dup#0"),
            (17, "y#0"),
        ]
        .into_iter()
        .collect();
        assert_eq!(prev.len(), 2);
        let next = RuleIds::assign(&prev, ["new#0", "x#0", "y#0", "new#1"]);
        assert_eq!(next.id("x#0"), Some(40));
        assert_eq!(next.id("y#0"), Some(17));
        assert_eq!(next.id("new#0"), Some(16));
        assert_eq!(next.id("new#1"), Some(18));
        assert_eq!(next.name(40), Some("x#0"));
    }
}
