//! Owner of DNS_PORTS and DNS_CONFIG; reader (and sweeper of expired entries) of DNS_LEARNED and DNS_STATS.
//! The kernel learns; user space says which resolver ports to watch, shows what was learned,
//! and deletes pairs whose every name expired (the map is bounded, so dead entries would
//! otherwise crowd out new ones).

use std::collections::BTreeMap;
use std::net::IpAddr;

use anyhow::{Context, Result};
use aya::maps::{Array, HashMap, Map, MapData, PerCpuArray};
use dataplane_common::dns_learning::{
    DnsConfig, KEYS_PER_ADDR, LearnedKey, LearnedNames, MAX_DNS_PORTS, stats,
};
use serde::Serialize;

use super::events::to_ip;

pub struct DnsMaps {
    ports: HashMap<MapData, u16, u8>,
    config: Array<MapData, DnsConfig>,
    learned: HashMap<MapData, LearnedKey, LearnedNames>,
    stats: PerCpuArray<MapData, u64>,
}

/// One learned (workload, address, name) association.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Learned {
    pub workload_id: u32,
    pub addr: IpAddr,
    pub name_key: u64,
    /// Seconds left (0 once expired).
    pub ttl_left_secs: u64,
}

#[derive(Clone, Copy, Debug, Default, Serialize)]
pub struct DnsStats {
    pub queries: u64,
    pub answers: u64,
    pub learned: u64,
    pub unmatched: u64,
    pub malformed: u64,
    pub table_full: u64,
    pub keys_dropped: u64,
    pub truncated: u64,
}

/// CLOCK_MONOTONIC in nanoseconds: the clock of `bpf_ktime_get_ns`.
pub fn monotonic_ns() -> u64 {
    let mut ts = libc::timespec {
        tv_sec: 0,
        tv_nsec: 0,
    };
    // SAFETY: clock_gettime writes into ts.
    unsafe { libc::clock_gettime(libc::CLOCK_MONOTONIC, &mut ts) };
    ts.tv_sec as u64 * 1_000_000_000 + ts.tv_nsec as u64
}

impl DnsMaps {
    pub fn new(ports: Map, config: Map, learned: Map, stats: Map) -> Result<Self> {
        Ok(Self {
            ports: ports.try_into().context("DNS_PORTS")?,
            config: config.try_into().context("DNS_CONFIG")?,
            learned: learned.try_into().context("DNS_LEARNED")?,
            stats: stats.try_into().context("DNS_STATS")?,
        })
    }

    /// TTL bounds applied to what is learned.
    pub fn set_ttl_bounds(&mut self, min_ttl_secs: u32, max_ttl_secs: u32) -> Result<()> {
        let c = DnsConfig {
            min_ttl_secs,
            max_ttl_secs: max_ttl_secs.max(min_ttl_secs),
        };
        self.config.set(0, &c, 0).context("write DNS_CONFIG")
    }

    /// Watches exactly `ports` (answers from them are parsed; queries to them recorded).
    pub fn set_ports(&mut self, ports: &[u16]) -> Result<()> {
        anyhow::ensure!(
            ports.len() <= MAX_DNS_PORTS as usize,
            "at most {MAX_DNS_PORTS} DNS ports can be watched"
        );
        let stale: Vec<u16> = self
            .ports
            .keys()
            .filter_map(Result::ok)
            .filter(|p| !ports.contains(p))
            .collect();
        for p in stale {
            self.ports.remove(&p).context("clear DNS_PORTS")?;
        }
        for p in ports {
            self.ports.insert(p, &1, 0).context("write DNS_PORTS")?;
        }
        Ok(())
    }

    /// Every live association, by workload and address.
    pub fn learned(&self) -> Vec<Learned> {
        let now = monotonic_ns();
        let mut out = Vec::new();
        for (k, v) in self.learned.iter().filter_map(Result::ok) {
            for i in 0..KEYS_PER_ADDR {
                if v.keys[i] != 0 && v.expires_ns[i] > now {
                    out.push(Learned {
                        workload_id: k.workload_id,
                        addr: to_ip(k.addr),
                        name_key: v.keys[i],
                        ttl_left_secs: (v.expires_ns[i] - now).div_ceil(1_000_000_000),
                    });
                }
            }
        }
        out.sort_by_key(|l| (l.workload_id, l.addr, l.name_key));
        out
    }

    /// The live name keys of one (workload, address), in the kernel's slot order.
    pub fn keys_for(&self, workload_id: u32, addr: std::net::IpAddr) -> Vec<u64> {
        let addr = match addr {
            std::net::IpAddr::V4(v4) => dataplane_common::ipv4_mapped(v4.octets()),
            std::net::IpAddr::V6(v6) => v6.octets(),
        };
        let now = monotonic_ns();
        let key = LearnedKey {
            workload_id,
            _pad: 0,
            addr,
        };
        match self.learned.get(&key, 0) {
            Ok(v) => (0..KEYS_PER_ADDR)
                .filter(|&i| v.keys[i] != 0 && v.expires_ns[i] > now)
                .map(|i| v.keys[i])
                .collect(),
            Err(_) => Vec::new(),
        }
    }

    /// Moves what was learned to the workloads' new ids after a generation renumbered them
    /// (`moves`: old id → new id, or None for a workload that is gone). Learning is per
    /// workload: without this, addresses a workload looked up would belong to whichever
    /// workload took its id. Returns how many pairs moved or went.
    pub fn renumber(&mut self, moves: &BTreeMap<u32, Option<u32>>) -> Result<usize> {
        if moves.is_empty() {
            return Ok(0);
        }
        let affected: Vec<(LearnedKey, LearnedNames)> = self
            .learned
            .iter()
            .filter_map(Result::ok)
            .filter(|(k, _)| moves.contains_key(&k.workload_id))
            .collect();
        // Every old key first, then the new ones: ids may move onto each other.
        for (k, _) in &affected {
            self.learned.remove(k).context("clear DNS_LEARNED")?;
        }
        for (k, v) in &affected {
            if let Some(Some(new_id)) = moves.get(&k.workload_id) {
                let key = LearnedKey {
                    workload_id: *new_id,
                    ..*k
                };
                self.learned
                    .insert(&key, v, 0)
                    .context("write DNS_LEARNED")?;
            }
        }
        Ok(affected.len())
    }

    /// Deletes the pairs whose every name has expired; returns how many.
    pub fn sweep(&mut self) -> usize {
        let now = monotonic_ns();
        let dead: Vec<LearnedKey> = self
            .learned
            .iter()
            .filter_map(Result::ok)
            .filter(|(_, v)| !v.live(now))
            .map(|(k, _)| k)
            .collect();
        // Read again just before the delete: a pair the kernel refreshed since the scan stays.
        // (The window left between this read and the delete is a few microseconds.)
        dead.iter()
            .filter(|k| {
                let now = monotonic_ns();
                self.learned.get(k, 0).is_ok_and(|v| !v.live(now)) && self.learned.remove(k).is_ok()
            })
            .count()
    }

    pub fn stats(&self) -> Result<DnsStats> {
        let sum = |i: u32| -> Result<u64> {
            Ok(self
                .stats
                .get(&i, 0)
                .context("read DNS_STATS")?
                .iter()
                .sum())
        };
        Ok(DnsStats {
            queries: sum(stats::QUERIES)?,
            answers: sum(stats::ANSWERS)?,
            learned: sum(stats::LEARNED)?,
            unmatched: sum(stats::UNMATCHED)?,
            malformed: sum(stats::MALFORMED)?,
            table_full: sum(stats::TABLE_FULL)?,
            keys_dropped: sum(stats::KEYS_DROPPED)?,
            truncated: sum(stats::TRUNCATED)?,
        })
    }
}
