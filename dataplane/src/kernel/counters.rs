//! Owner of RULE_NAMES; reader of RULE_COUNTERS and STATS (written by the kernel).
//! Counters are per CPU and summed here, when somebody asks ("pull, not push").

use std::collections::BTreeMap;

use anyhow::{Context, Result};
use aya::maps::{HashMap, Map, MapData, PerCpuArray, PerCpuValues};
use aya::util::nr_cpus;
use dataplane_common::{RULE_NAME_LEN, RuleCounters, RuleName, stats};

pub struct Counters {
    counters: PerCpuArray<MapData, RuleCounters>,
    names: HashMap<MapData, u32, RuleName>,
    stats: PerCpuArray<MapData, u64>,
    /// What RULE_NAMES holds (this module is its only writer): read from the map once at
    /// start, so that a generation touches only the names that changed.
    recorded: BTreeMap<u32, String>,
}

/// Kernel-side statistics that are not per rule.
#[derive(Clone, Copy, Debug, Default, serde::Serialize)]
pub struct KernelStats {
    pub ungoverned_verdicts: u64,
    pub events_rate_limited: u64,
    pub events_ring_full: u64,
}

impl Counters {
    pub fn new(counters: Map, names: Map, stats: Map) -> Result<Self> {
        let names: HashMap<MapData, u32, RuleName> = names.try_into()?;
        let recorded = names
            .iter()
            .filter_map(Result::ok)
            .map(|(id, n)| {
                let len = (n.len as usize).min(RULE_NAME_LEN);
                (id, String::from_utf8_lossy(&n.bytes[..len]).into_owned())
            })
            .collect();
        Ok(Self {
            counters: counters.try_into()?,
            names,
            stats: stats.try_into()?,
            recorded,
        })
    }

    /// Rule id → name as recorded by the agent that wrote the tables (maybe a previous run).
    pub fn recorded_names(&self) -> Vec<(u32, String)> {
        self.recorded
            .iter()
            .map(|(id, n)| (*id, n.clone()))
            .collect()
    }

    /// Records the names of the live rules before a generation that uses them goes live. A rule id
    /// that is new (or now names another rule) starts from zero.
    pub fn record_names(&mut self, live: &BTreeMap<u32, String>) -> Result<()> {
        for (id, name) in live {
            if self.recorded.get(id) != Some(name) {
                self.zero(*id)?;
                self.names
                    .insert(id, &encode_name(name), 0)
                    .context("write RULE_NAMES")?;
                self.recorded.insert(*id, name.clone());
            }
        }
        Ok(())
    }

    /// Forgets the rules not in `live` (after the generation without them is live).
    pub fn forget_others(&mut self, live: &BTreeMap<u32, String>) -> Result<()> {
        let gone: Vec<u32> = self
            .recorded
            .keys()
            .filter(|id| !live.contains_key(id))
            .copied()
            .collect();
        for id in gone {
            self.names.remove(&id).context("remove RULE_NAMES entry")?;
            self.zero(id)?;
            self.recorded.remove(&id);
        }
        Ok(())
    }

    /// Counters of one rule, summed over CPUs.
    pub fn rule(&self, id: u32) -> Result<RuleCounters> {
        let per_cpu = self.counters.get(&id, 0).context("read RULE_COUNTERS")?;
        Ok(per_cpu
            .iter()
            .fold(RuleCounters::default(), |a, c| RuleCounters {
                allowed: a.allowed + c.allowed,
                denied: a.denied + c.denied,
                audited: a.audited + c.audited,
            }))
    }

    pub fn kernel_stats(&self) -> Result<KernelStats> {
        let sum = |i: u32| -> Result<u64> {
            Ok(self.stats.get(&i, 0).context("read STATS")?.iter().sum())
        };
        Ok(KernelStats {
            ungoverned_verdicts: sum(stats::VERDICT_UNGOVERNED)?,
            events_rate_limited: sum(stats::EVENTS_RATE_LIMITED)?,
            events_ring_full: sum(stats::EVENTS_RING_FULL)?,
        })
    }

    fn zero(&mut self, id: u32) -> Result<()> {
        let cpus = nr_cpus().map_err(|(_, e)| e).context("count CPUs")?.get() as usize;
        let zeros = PerCpuValues::try_from(vec![RuleCounters::default(); cpus])?;
        self.counters
            .set(id, zeros, 0)
            .context("zero RULE_COUNTERS entry")
    }
}

fn encode_name(name: &str) -> RuleName {
    let mut bytes = [0u8; RULE_NAME_LEN];
    // Truncate on a char boundary so the name reads back as valid UTF-8.
    let mut len = name.len().min(RULE_NAME_LEN);
    while !name.is_char_boundary(len) {
        len -= 1;
    }
    bytes[..len].copy_from_slice(&name.as_bytes()[..len]);
    RuleName {
        len: len as u32,
        bytes,
    }
}
