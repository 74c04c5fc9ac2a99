//! Owner of CONFIG, WORKLOADS, EGRESS_RULES, EGRESS_EXACT, IDENTITIES, INBOUND_RULES,
//! INBOUND_EXACT, BINARIES, SUBJECTS, SNI_RULES, SNI_REQUIRED and DNS_WATCH.
//! A policy generation is written into the inactive slot, then CONFIG's `active_slot` flips:
//! every hook sees either the whole old generation or the whole new one. The old slot is
//! cleared after a grace period longer than any program run.
//!
//! Rule entries are split at write time: a full-length entry (one address, `FULL_PREFIX_LEN`) goes
//! to the exact-match hash (`*_EXACT`), every other one to the LPM trie (`*_RULES`). The kernel
//! probes the hash first in each group; a hit is the longest match the trie would have given.

use std::{hash::Hash, time::Duration};

use anyhow::{Context, Result, bail};
use aya::{
    Pod,
    maps::{
        Array, HashMap, Map, MapData,
        lpm_trie::{Key, LpmTrie},
    },
};
use dataplane_common::{
    AddrKey, Config, EGRESS_KEY_FIXED_BITS, EgressEntry, EgressKey, FULL_PREFIX_LEN, FileKey,
    INBOUND_KEY_FIXED_BITS, InboundEntry, InboundKey, MAX_BINARIES_PER_SLOT,
    MAX_EGRESS_ENTRIES_PER_SLOT, MAX_IDENTITIES_PER_SLOT, MAX_INBOUND_ENTRIES_PER_SLOT,
    MAX_SUBJECTS_PER_SLOT, MAX_WORKLOADS, RuleMatch, SubjectKey, WorkloadKey, WorkloadValue,
    dns_learning::{MAX_DNS_WATCH_PER_SLOT, WatchKey},
    sni_policy::{MAX_SNI_REQUIRED_PER_SLOT, MAX_SNI_RULES_PER_SLOT, SniRequiredKey, SniRuleKey},
};

/// A slot is rewritten no sooner than this after it stopped being the active one: a program
/// that read the old `active_slot` finishes its lookups within microseconds (it runs under
/// RCU with migration disabled), so 5 ms is a margin of three orders of magnitude.
pub const GRACE: Duration = Duration::from_millis(5);
pub const DEFAULT_EVENTS_PER_SEC: u32 = 1000;

/// (subject, port, IPv4-mapped address) of `SNI_REQUIRED`.
pub type SniAddress = (u32, u16, [u8; 16]);

/// A complete policy generation, as compiled by `control` and resolved to kernel ids.
#[derive(Clone, Debug, Default)]
pub struct Generation {
    /// cgroup id → workload (egress source identity).
    pub workloads: Vec<(u64, WorkloadValue)>,
    pub egress: Vec<EgressEntry>,
    /// Workload address (IPv4-mapped) → workload (peer identity, inbound server).
    pub identities: Vec<([u8; 16], WorkloadValue)>,
    pub inbound: Vec<InboundEntry>,
    /// Executable (kernel dev, inode) → binary id.
    pub binaries: Vec<((u64, u64), u32)>,
    /// (workload id, binary id) → subject.
    pub subjects: Vec<((u32, u32), WorkloadValue)>,
    /// (subject, port, name key) → name rules (TLS server names).
    pub sni_rules: Vec<((u32, u16, u64), RuleMatch)>,
    /// (subject, port, address) → the name ALLOW rule that alone admits it (0 = exempt).
    pub sni_required: Vec<(SniAddress, u32)>,
    /// (workload, name key): names learned from the workload's DNS answers.
    pub dns_watch: Vec<(u32, u64)>,
}

/// The maps this module owns, as taken from the loaded object.
pub struct TableMaps {
    pub config: Map,
    pub workloads: Map,
    pub egress: Map,
    pub egress_exact: Map,
    pub identities: Map,
    pub inbound: Map,
    pub inbound_exact: Map,
    pub binaries: Map,
    pub subjects: Map,
    pub sni_rules: Map,
    pub sni_required: Map,
    pub dns_watch: Map,
}

pub struct Tables {
    config: Array<MapData, Config>,
    workloads: HashMap<MapData, WorkloadKey, WorkloadValue>,
    egress: LpmTrie<MapData, EgressKey, RuleMatch>,
    egress_exact: HashMap<MapData, EgressKey, RuleMatch>,
    identities: HashMap<MapData, AddrKey, WorkloadValue>,
    inbound: LpmTrie<MapData, InboundKey, RuleMatch>,
    inbound_exact: HashMap<MapData, InboundKey, RuleMatch>,
    binaries: HashMap<MapData, FileKey, u32>,
    subjects: HashMap<MapData, SubjectKey, WorkloadValue>,
    sni_rules: HashMap<MapData, SniRuleKey, RuleMatch>,
    sni_required: HashMap<MapData, SniRequiredKey, u32>,
    dns_watch: HashMap<MapData, WatchKey, u8>,
    current: Config,
    /// What each slot holds, when this agent wrote it: the base of the next write there.
    held: [Option<Generation>; 2],
    /// When each slot stopped being the active one.
    deactivated_at: [Option<std::time::Instant>; 2],
}

impl Tables {
    pub fn new(maps: TableMaps) -> Result<Self> {
        let config: Array<MapData, Config> = maps.config.try_into()?;
        let current = config.get(&0, 0).context("read CONFIG")?;
        Ok(Self {
            config,
            workloads: maps.workloads.try_into()?,
            egress: maps.egress.try_into()?,
            egress_exact: maps.egress_exact.try_into()?,
            identities: maps.identities.try_into()?,
            inbound: maps.inbound.try_into()?,
            inbound_exact: maps.inbound_exact.try_into()?,
            binaries: maps.binaries.try_into()?,
            subjects: maps.subjects.try_into()?,
            sni_rules: maps.sni_rules.try_into()?,
            sni_required: maps.sni_required.try_into()?,
            dns_watch: maps.dns_watch.try_into()?,
            current,
            held: [None, None],
            deactivated_at: [None, None],
        })
    }

    /// The generation currently enforced (0 if none was ever written).
    pub fn generation(&self) -> u64 {
        self.current.generation
    }

    /// Writes `next` into the inactive slot and switches to it. On error nothing changes: the
    /// previous generation stays in force and the half-written slot is cleared.
    pub async fn apply(&mut self, next: &Generation, events_per_sec: u32) -> Result<u64> {
        for (what, len, max) in [
            ("workloads", next.workloads.len(), MAX_WORKLOADS),
            (
                "egress entries",
                next.egress.len(),
                MAX_EGRESS_ENTRIES_PER_SLOT,
            ),
            (
                "workload addresses",
                next.identities.len(),
                MAX_IDENTITIES_PER_SLOT,
            ),
            (
                "inbound entries",
                next.inbound.len(),
                MAX_INBOUND_ENTRIES_PER_SLOT,
            ),
            ("binaries", next.binaries.len(), MAX_BINARIES_PER_SLOT),
            (
                "workload × binary subjects",
                next.subjects.len(),
                MAX_SUBJECTS_PER_SLOT,
            ),
            (
                "SNI name rules",
                next.sni_rules.len(),
                MAX_SNI_RULES_PER_SLOT,
            ),
            (
                "name-only addresses",
                next.sni_required.len(),
                MAX_SNI_REQUIRED_PER_SLOT,
            ),
            (
                "watched DNS names",
                next.dns_watch.len(),
                MAX_DNS_WATCH_PER_SLOT,
            ),
        ] {
            if len > max as usize {
                bail!("{len} {what} exceed the kernel table ({max})");
            }
        }
        let old_slot = self.current.active_slot;
        let slot = 1 - old_slot.min(1);
        let i = slot as usize;
        // Programs that started before the slot was switched away from may still read it.
        if let Some(at) = self.deactivated_at[i] {
            let since = at.elapsed();
            if since < GRACE {
                tokio::time::sleep(GRACE - since).await;
            }
        }
        // What the slot holds: the generation before the current one, if this agent wrote it;
        // otherwise (first write after start, or after a failed one) it is cleared first.
        let prev = match self.held[i].take() {
            Some(prev) => prev,
            None => {
                self.clear_slot(slot)?;
                Generation::default()
            }
        };
        if let Err(e) = self.write_slot(slot, &prev, next) {
            let _ = self.clear_slot(slot);
            return Err(e);
        }
        let config = Config {
            active_slot: slot,
            events_per_sec,
            generation: self.current.generation + 1,
        };
        if let Err(e) = self.config.set(0, &config, 0) {
            let _ = self.clear_slot(slot);
            return Err(e).context("switch CONFIG to the new generation");
        }
        self.current = config;
        self.held[i] = Some(next.clone());
        self.deactivated_at[old_slot.min(1) as usize] = Some(std::time::Instant::now());
        Ok(config.generation)
    }

    /// Brings `slot` from holding `prev` to holding `next`: removes what `next` lacks, writes
    /// what is new or changed. Only the difference touches the kernel.
    fn write_slot(&mut self, slot: u32, prev: &Generation, next: &Generation) -> Result<()> {
        let s8 = slot as u8;
        write_diff(
            &mut self.workloads,
            "WORKLOADS",
            (&prev.workloads, &next.workloads),
            |&(cgroup_id, v)| {
                let key = WorkloadKey {
                    cgroup_id,
                    slot,
                    _pad: 0,
                };
                (key, v)
            },
        )?;
        write_rule_diff(
            RuleTable {
                exact: &mut self.egress_exact,
                trie: &mut self.egress,
                fixed_bits: EGRESS_KEY_FIXED_BITS,
                name: "EGRESS",
            },
            (&prev.egress, &next.egress),
            |e: &EgressEntry| {
                let key = EgressKey {
                    workload_id: e.workload_id,
                    port: e.port,
                    slot: s8,
                    _reserved: 0,
                    addr: e.addr,
                };
                (key, e.prefix_len, e.rules)
            },
        )?;
        write_diff(
            &mut self.identities,
            "IDENTITIES",
            (&prev.identities, &next.identities),
            |&(addr, v)| (AddrKey { addr, slot }, v),
        )?;
        write_rule_diff(
            RuleTable {
                exact: &mut self.inbound_exact,
                trie: &mut self.inbound,
                fixed_bits: INBOUND_KEY_FIXED_BITS,
                name: "INBOUND",
            },
            (&prev.inbound, &next.inbound),
            |e: &InboundEntry| {
                let key = InboundKey {
                    workload_id: e.workload_id,
                    identity: e.identity,
                    port: e.port,
                    slot: s8,
                    _reserved: 0,
                    addr: e.addr,
                };
                (key, e.prefix_len, e.rules)
            },
        )?;
        write_diff(
            &mut self.binaries,
            "BINARIES",
            (&prev.binaries, &next.binaries),
            |&((dev, ino), id)| {
                let key = FileKey {
                    dev,
                    ino,
                    slot,
                    _pad: 0,
                };
                (key, id)
            },
        )?;
        write_diff(
            &mut self.subjects,
            "SUBJECTS",
            (&prev.subjects, &next.subjects),
            |&((workload_id, binary_id), v)| {
                let key = SubjectKey {
                    workload_id,
                    binary_id,
                    slot,
                };
                (key, v)
            },
        )?;
        write_diff(
            &mut self.sni_rules,
            "SNI_RULES",
            (&prev.sni_rules, &next.sni_rules),
            |&((subject_id, port, name), rules)| {
                let key = SniRuleKey {
                    subject_id,
                    port,
                    slot: s8,
                    _pad: 0,
                    name,
                };
                (key, rules)
            },
        )?;
        write_diff(
            &mut self.sni_required,
            "SNI_REQUIRED",
            (&prev.sni_required, &next.sni_required),
            |&((subject_id, port, addr), rule_id)| {
                let key = SniRequiredKey {
                    subject_id,
                    port,
                    slot: s8,
                    _pad: 0,
                    addr,
                };
                (key, rule_id)
            },
        )?;
        write_diff(
            &mut self.dns_watch,
            "DNS_WATCH",
            (&prev.dns_watch, &next.dns_watch),
            |&(workload_id, name)| {
                let key = WatchKey {
                    workload_id,
                    slot: s8,
                    _pad: [0; 3],
                    name,
                };
                (key, 1u8)
            },
        )
    }

    fn clear_slot(&mut self, slot: u32) -> Result<()> {
        // Keys are collected first: deleting while iterating would skip entries.
        macro_rules! clear {
            ($map:expr, $in_slot:expr, $name:literal) => {{
                let stale: Vec<_> = $map
                    .keys()
                    .filter_map(Result::ok)
                    .filter($in_slot)
                    .collect();
                for k in &stale {
                    $map.remove(k).context(concat!("clear ", $name))?;
                }
            }};
        }
        clear!(self.workloads, |k| k.slot == slot, "WORKLOADS");
        clear!(self.identities, |k| k.slot == slot, "IDENTITIES");
        clear!(self.binaries, |k| k.slot == slot, "BINARIES");
        clear!(self.subjects, |k| k.slot == slot, "SUBJECTS");
        clear!(
            self.egress_exact,
            |k| u32::from(k.slot) == slot,
            "EGRESS_EXACT"
        );
        clear!(
            self.inbound_exact,
            |k| u32::from(k.slot) == slot,
            "INBOUND_EXACT"
        );
        clear!(self.sni_rules, |k| u32::from(k.slot) == slot, "SNI_RULES");
        clear!(
            self.sni_required,
            |k| u32::from(k.slot) == slot,
            "SNI_REQUIRED"
        );
        clear!(self.dns_watch, |k| u32::from(k.slot) == slot, "DNS_WATCH");
        clear!(
            self.egress,
            |k| u32::from(k.data().slot) == slot,
            "EGRESS_RULES"
        );
        clear!(
            self.inbound,
            |k| u32::from(k.data().slot) == slot,
            "INBOUND_RULES"
        );
        Ok(())
    }
}

/// What to write (new or changed values) and what to remove to go from `prev` to `next`.
/// Brings one hash map's slot entries from `prev` to `next` (each item → key and value in
/// the map): removes what went, writes what is new or changed.
fn write_diff<T, K, V>(
    map: &mut HashMap<MapData, K, V>,
    name: &str,
    (prev, next): (&[T], &[T]),
    entry: impl Fn(&T) -> (K, V),
) -> Result<()>
where
    K: Pod + Hash + Eq,
    V: Pod + PartialEq,
{
    let (put, del) = diff(prev.iter().map(&entry), next.iter().map(&entry));
    for k in del {
        map.remove(&k).with_context(|| format!("clear {name}"))?;
    }
    for (k, v) in put {
        map.insert(&k, &v, 0)
            .with_context(|| format!("write {name}"))?;
    }
    Ok(())
}

/// A rule table split by prefix length: one-address entries in the exact hash, the rest in
/// the LPM trie (`*_EXACT` / `*_RULES`).
struct RuleTable<'a, K> {
    exact: &'a mut HashMap<MapData, K, RuleMatch>,
    trie: &'a mut LpmTrie<MapData, K, RuleMatch>,
    /// Bits of the key before the address (always matched whole).
    fixed_bits: u32,
    name: &'a str,
}

/// [`write_diff`] for a split rule table; `entry` gives the key, its prefix length and rules.
fn write_rule_diff<T, K>(
    table: RuleTable<'_, K>,
    (prev, next): (&[T], &[T]),
    entry: impl Fn(&T) -> (K, u8, RuleMatch),
) -> Result<()>
where
    K: Pod + Hash + Eq,
{
    let keyed = |t: &T| {
        let (key, prefix_len, rules) = entry(t);
        ((key, prefix_len), rules)
    };
    let RuleTable {
        exact,
        trie,
        fixed_bits,
        name,
    } = table;
    let (put, del) = diff(prev.iter().map(keyed), next.iter().map(keyed));
    for (key, prefix_len) in del {
        if prefix_len == FULL_PREFIX_LEN {
            exact.remove(&key)
        } else {
            trie.remove(&Key::new(fixed_bits + u32::from(prefix_len), key))
        }
        .with_context(|| format!("clear {name} rules"))?;
    }
    for ((key, prefix_len), rules) in put {
        if prefix_len == FULL_PREFIX_LEN {
            exact.insert(&key, &rules, 0)
        } else {
            let key = Key::new(fixed_bits + u32::from(prefix_len), key);
            trie.insert(&key, &rules, 0)
        }
        .with_context(|| format!("write {name} rules"))?;
    }
    Ok(())
}

fn diff<K: Hash + Eq, V: PartialEq + Copy>(
    prev: impl Iterator<Item = (K, V)>,
    next: impl Iterator<Item = (K, V)>,
) -> (Vec<(K, V)>, Vec<K>) {
    let mut old: std::collections::HashMap<K, V> = prev.collect();
    let mut put = Vec::new();
    for (k, v) in next {
        if old.remove(&k) != Some(v) {
            put.push((k, v));
        }
    }
    (put, old.into_keys().collect())
}

#[cfg(test)]
mod tests {
    use super::diff;

    #[test]
    fn diff_writes_only_what_changed_and_removes_what_went() {
        let prev = [(1, 'a'), (2, 'b'), (3, 'c')];
        let next = [(1, 'a'), (2, 'x'), (4, 'd')];
        let (mut put, mut del) = diff(prev.into_iter(), next.into_iter());
        put.sort();
        del.sort();
        assert_eq!(put, vec![(2, 'x'), (4, 'd')]);
        assert_eq!(del, vec![3]);
        let (put, del) = diff(std::iter::empty(), next.into_iter());
        assert_eq!((put.len(), del.len()), (3, 0));
    }
}
