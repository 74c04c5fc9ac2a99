//! The egress table: entries keyed by (workload, port, prefix), and the folding that makes a
//! single longest-prefix match complete.

use std::collections::HashMap;

use dataplane_common::RuleMatch;

use crate::model::Action;
use crate::net::{Prefix, mask};

/// Identifies one trie entry.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub(crate) struct EntryKey {
    pub workload_id: u32,
    pub port: u16,
    pub prefix: Prefix,
}

/// Entries under construction, in insertion order, with an index by key.
#[derive(Default)]
pub(crate) struct TableBuilder {
    pub keys: Vec<EntryKey>,
    pub values: Vec<RuleMatch>,
    index: HashMap<EntryKey, usize>,
}

fn slot(m: &mut RuleMatch, action: Action) -> &mut u32 {
    match action {
        Action::Deny => &mut m.deny,
        Action::Allow => &mut m.allow,
        Action::Audit => &mut m.audit,
    }
}

impl TableBuilder {
    pub fn len(&self) -> usize {
        self.keys.len()
    }

    /// Records that `rule_id` (of `action`) matches everything under `key`. The first rule to
    /// claim a slot keeps it, so callers insert in policy order.
    pub fn insert(&mut self, key: EntryKey, action: Action, rule_id: u32) {
        let i = *self.index.entry(key).or_insert_with(|| {
            self.keys.push(key);
            self.values.push(RuleMatch::default());
            self.keys.len() - 1
        });
        let s = slot(&mut self.values[i], action);
        if *s == 0 {
            *s = rule_id;
        }
    }

    /// Fills every entry's empty slots from the entries that strictly cover it (same workload
    /// and port), longest cover first. Afterwards the longest match of an address carries every
    /// action that matches it, which is all the kernel looks at.
    pub fn fold(&mut self) {
        // Distinct prefix lengths per (workload, port), longest first: we only probe lengths
        // that exist, so a table of /32s costs nothing to fold.
        let mut lengths: HashMap<(u32, u16), Vec<u8>> = HashMap::new();
        for k in &self.keys {
            let v = lengths.entry((k.workload_id, k.port)).or_default();
            if !v.contains(&k.prefix.prefix_len()) {
                v.push(k.prefix.prefix_len());
            }
        }
        for v in lengths.values_mut() {
            v.sort_unstable_by(|a, b| b.cmp(a));
        }
        // Covers are read before any folding: folding from an already folded cover gives the
        // same result (its additions come from covers of ours, which we visit anyway, longest
        // first) but the copy keeps the reasoning simple.
        let original = self.values.clone();
        for (i, key) in self.keys.iter().enumerate() {
            let Some(lens) = lengths.get(&(key.workload_id, key.port)) else {
                continue;
            };
            let value = &mut self.values[i];
            for &len in lens.iter().filter(|&&l| l < key.prefix.prefix_len()) {
                if value.deny != 0 && value.allow != 0 && value.audit != 0 {
                    break;
                }
                let cover = EntryKey {
                    prefix: Prefix::new(key.prefix.bits() & mask(len), len),
                    ..*key
                };
                if let Some(&j) = self.index.get(&cover) {
                    fill_empty(value, &original[j]);
                }
            }
        }
    }
}

fn fill_empty(into: &mut RuleMatch, from: &RuleMatch) {
    if into.deny == 0 {
        into.deny = from.deny;
    }
    if into.allow == 0 {
        into.allow = from.allow;
    }
    if into.audit == 0 {
        into.audit = from.audit;
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::net::parse_cidr;

    fn key(cidr: &str, port: u16) -> EntryKey {
        EntryKey {
            workload_id: 1,
            port,
            prefix: parse_cidr(cidr).unwrap().0,
        }
    }

    #[test]
    fn longer_prefix_inherits_covering_slots() {
        let mut t = TableBuilder::default();
        t.insert(key("10.0.0.0/8", 0), Action::Deny, 20);
        t.insert(key("10.1.0.0/16", 0), Action::Audit, 22);
        t.insert(key("10.1.2.3/32", 0), Action::Allow, 21);
        t.insert(key("10.1.2.3/32", 0), Action::Allow, 99); // slot taken: ignored
        t.insert(key("11.0.0.0/8", 0), Action::Allow, 23);
        t.insert(key("10.1.2.3/32", 80), Action::Allow, 24); // other port: not a cover
        t.fold();
        assert_eq!(
            t.values[2],
            RuleMatch {
                deny: 20,
                allow: 21,
                audit: 22
            }
        );
        assert_eq!(
            t.values[1],
            RuleMatch {
                deny: 20,
                allow: 0,
                audit: 22
            }
        );
        assert_eq!(
            t.values[3],
            RuleMatch {
                deny: 0,
                allow: 23,
                audit: 0
            }
        );
        assert_eq!(
            t.values[4],
            RuleMatch {
                deny: 0,
                allow: 24,
                audit: 0
            }
        );
    }

    #[test]
    fn nearest_cover_wins_a_slot() {
        let mut t = TableBuilder::default();
        t.insert(key("0.0.0.0/0", 0), Action::Deny, 30);
        t.insert(key("10.0.0.0/8", 0), Action::Deny, 31);
        t.insert(key("10.0.0.1/32", 0), Action::Allow, 32);
        t.insert(key("::/0", 0), Action::Audit, 33);
        t.fold();
        assert_eq!(
            t.values[2],
            RuleMatch {
                deny: 31,
                allow: 32,
                audit: 33
            }
        );
    }
}
