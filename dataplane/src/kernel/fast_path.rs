//! Reader of the fast path's counters (FAST_STATS): what each message of a fast-path socket did
//! (redirected, or sent by the stack and why) and how many sockets joined the sockhash.

use anyhow::{Context, Result};
use aya::maps::{Map, MapData, PerCpuArray};
use dataplane_common::fast_path::stats;

pub struct FastPathStats {
    stats: PerCpuArray<MapData, u64>,
}

impl FastPathStats {
    pub fn new(stats: Map) -> Result<Self> {
        Ok(Self {
            stats: stats.try_into()?,
        })
    }

    /// Totals over every CPU, with their `stats::LABELS`.
    pub fn totals(&self) -> Result<Vec<(&'static str, u64)>> {
        (0..stats::COUNT)
            .map(|i| {
                let per_cpu = self.stats.get(&i, 0).context("read FAST_STATS")?;
                Ok((stats::LABELS[i as usize], per_cpu.iter().sum()))
            })
            .collect()
    }
}
