//! Owner of CONFIG, WORKLOADS, EGRESS_RULES, EGRESS_EXACT, IDENTITIES, INBOUND_RULES,
//! INBOUND_EXACT, BINARIES, SUBJECTS, SNI_RULES and SNI_REQUIRED.
//! A policy generation is written into the inactive slot, then CONFIG's `active_slot` flips:
//! every hook sees either the whole old generation or the whole new one. The old slot is
//! cleared after a grace period longer than any program run.
//!
//! Rule entries are split at write time: a full-length entry (one address, `FULL_PREFIX_LEN`) goes
//! to the exact-match hash (`*_EXACT`), every other one to the LPM trie (`*_RULES`). The kernel
//! probes the hash first in each group; a hit is the longest match the trie would have given.

use std::time::Duration;

use anyhow::{Context, Result, bail};
use aya::maps::{
    Array, HashMap, Map, MapData,
    lpm_trie::{Key, LpmTrie},
};
use dataplane_common::{
    AddrKey, Config, EGRESS_KEY_FIXED_BITS, EgressEntry, EgressKey, FULL_PREFIX_LEN, FileKey,
    INBOUND_KEY_FIXED_BITS, InboundEntry, InboundKey, MAX_BINARIES_PER_SLOT,
    MAX_EGRESS_ENTRIES_PER_SLOT, MAX_IDENTITIES_PER_SLOT, MAX_INBOUND_ENTRIES_PER_SLOT,
    MAX_SUBJECTS_PER_SLOT, MAX_WORKLOADS, RuleMatch, SubjectKey, WorkloadKey, WorkloadValue,
    sni_policy::{MAX_SNI_REQUIRED_PER_SLOT, MAX_SNI_RULES_PER_SLOT, SniRequiredKey, SniRuleKey},
};

/// Programs run for microseconds; this leaves a wide margin before old entries go.
pub const GRACE: Duration = Duration::from_millis(50);
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
    current: Config,
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
            current,
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
        ] {
            if len > max as usize {
                bail!("{len} {what} exceed the kernel table ({max})");
            }
        }
        let old_slot = self.current.active_slot;
        let slot = 1 - old_slot.min(1);
        // Leftovers from an interrupted earlier write.
        self.clear_slot(slot)?;
        if let Err(e) = self.write_slot(slot, next) {
            let _ = self.clear_slot(slot);
            return Err(e);
        }
        let config = Config {
            active_slot: slot,
            events_per_sec,
            generation: self.current.generation + 1,
        };
        self.config
            .set(0, &config, 0)
            .context("switch CONFIG to the new generation")?;
        self.current = config;
        tokio::time::sleep(GRACE).await;
        self.clear_slot(old_slot)?;
        Ok(config.generation)
    }

    fn write_slot(&mut self, slot: u32, next: &Generation) -> Result<()> {
        for (cgroup_id, value) in &next.workloads {
            let key = WorkloadKey {
                cgroup_id: *cgroup_id,
                slot,
                _pad: 0,
            };
            self.workloads
                .insert(&key, value, 0)
                .context("write WORKLOADS")?;
        }
        for e in &next.egress {
            let data = EgressKey {
                workload_id: e.workload_id,
                port: e.port,
                slot: slot as u8,
                _reserved: 0,
                addr: e.addr,
            };
            if e.prefix_len == FULL_PREFIX_LEN {
                self.egress_exact
                    .insert(&data, &e.rules, 0)
                    .context("write EGRESS_EXACT")?;
            } else {
                let key = Key::new(EGRESS_KEY_FIXED_BITS + u32::from(e.prefix_len), data);
                self.egress
                    .insert(&key, &e.rules, 0)
                    .context("write EGRESS_RULES")?;
            }
        }
        for (addr, value) in &next.identities {
            let key = AddrKey { addr: *addr, slot };
            self.identities
                .insert(&key, value, 0)
                .context("write IDENTITIES")?;
        }
        for e in &next.inbound {
            let data = InboundKey {
                workload_id: e.workload_id,
                identity: e.identity,
                port: e.port,
                slot: slot as u8,
                _reserved: 0,
                addr: e.addr,
            };
            if e.prefix_len == FULL_PREFIX_LEN {
                self.inbound_exact
                    .insert(&data, &e.rules, 0)
                    .context("write INBOUND_EXACT")?;
            } else {
                let key = Key::new(INBOUND_KEY_FIXED_BITS + u32::from(e.prefix_len), data);
                self.inbound
                    .insert(&key, &e.rules, 0)
                    .context("write INBOUND_RULES")?;
            }
        }
        for ((dev, ino), binary_id) in &next.binaries {
            let key = FileKey {
                dev: *dev,
                ino: *ino,
                slot,
                _pad: 0,
            };
            self.binaries
                .insert(&key, binary_id, 0)
                .context("write BINARIES")?;
        }
        for ((workload_id, binary_id), value) in &next.subjects {
            let key = SubjectKey {
                workload_id: *workload_id,
                binary_id: *binary_id,
                slot,
            };
            self.subjects
                .insert(&key, value, 0)
                .context("write SUBJECTS")?;
        }
        for ((subject_id, port, name), rules) in &next.sni_rules {
            let key = SniRuleKey {
                subject_id: *subject_id,
                port: *port,
                slot: slot as u8,
                _pad: 0,
                name: *name,
            };
            self.sni_rules
                .insert(&key, rules, 0)
                .context("write SNI_RULES")?;
        }
        for ((subject_id, port, addr), rule_id) in &next.sni_required {
            let key = SniRequiredKey {
                subject_id: *subject_id,
                port: *port,
                slot: slot as u8,
                _pad: 0,
                addr: *addr,
            };
            self.sni_required
                .insert(&key, rule_id, 0)
                .context("write SNI_REQUIRED")?;
        }
        Ok(())
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
