//! Reader of the TLS posture aggregates (POSTURE, SNI_NAMES, TLS_STATS) and owner of the
//! stream programs' attachment to the sockhash. The kernel writes the aggregates; user space
//! pulls snapshots when asked.

use std::{
    net::IpAddr,
    time::{Duration, SystemTime},
};

use anyhow::{Context, Result};
use aya::maps::{HashMap, Map, MapData, PerCpuArray};
use dataplane_common::posture::{PostureKey, PostureValue, SniName, stats};

use super::events::to_ip;

pub struct PostureMaps {
    posture: HashMap<MapData, PostureKey, PostureValue>,
    sni_names: HashMap<MapData, u64, SniName>,
    stats: PerCpuArray<MapData, u64>,
}

/// One aggregate row, decoded.
#[derive(Clone, Debug)]
pub struct PostureRow {
    pub workload_id: u32,
    pub role: u8,
    pub version: u16,
    pub cipher: u16,
    pub mtls: u8,
    pub peer: IpAddr,
    pub server_port: u16,
    pub sni: Option<String>,
    /// The governed process's executable (kernel device number, inode), if read.
    pub exe: Option<(u64, u64)>,
    /// What the client offered: highest version, weak-class bits, first ALPN protocol.
    pub offered_version: u16,
    pub offered_weak: u16,
    pub alpn: Option<String>,
    pub count: u64,
    pub first_seen: SystemTime,
    pub last_seen: SystemTime,
}

#[derive(Clone, Copy, Debug, Default, serde::Serialize)]
pub struct PostureStats {
    pub connections_tracked: u64,
    pub handshakes: u64,
    pub not_tls: u64,
    pub malformed: u64,
    pub conns_table_full: u64,
    pub posture_table_full: u64,
    pub sni_table_full: u64,
    pub sockhash_full: u64,
    /// TLS connections cut at their ClientHello by an SNI verdict.
    pub sni_cut: u64,
    /// Connections that closed before their handshake was read to the end.
    pub incomplete: u64,
    /// Handshakes not read on because a segment arrived before bytes it follows.
    pub out_of_order: u64,
}

impl PostureMaps {
    pub fn new(posture: Map, sni_names: Map, stats: Map) -> Result<Self> {
        Ok(Self {
            posture: posture.try_into()?,
            sni_names: sni_names.try_into()?,
            stats: stats.try_into()?,
        })
    }

    pub fn rows(&self) -> Vec<PostureRow> {
        let boot = Boot::now();
        self.posture
            .iter()
            .filter_map(Result::ok)
            .map(|(k, v)| PostureRow {
                workload_id: k.workload_id,
                role: k.role,
                version: k.version,
                cipher: k.cipher,
                mtls: k.mtls,
                peer: to_ip(k.peer),
                server_port: k.server_port,
                sni: (k.sni_hash != 0).then(|| self.sni(k.sni_hash)).flatten(),
                exe: (k.exe_ino != 0).then_some((k.exe_dev, k.exe_ino)),
                offered_version: k.offered_version,
                offered_weak: k.offered_weak,
                alpn: alpn(&k.alpn),
                count: v.count,
                first_seen: boot.wall(v.first_seen_ns),
                last_seen: boot.wall(v.last_seen_ns),
            })
            .collect()
    }

    fn sni(&self, hash: u64) -> Option<String> {
        let n = self.sni_names.get(&hash, 0).ok()?;
        let len = (n.len as usize).min(n.bytes.len());
        Some(String::from_utf8_lossy(&n.bytes[..len]).into_owned())
    }

    pub fn stats(&self) -> Result<PostureStats> {
        let sum = |i: u32| -> Result<u64> {
            Ok(self
                .stats
                .get(&i, 0)
                .context("read TLS_STATS")?
                .iter()
                .sum())
        };
        Ok(PostureStats {
            connections_tracked: sum(stats::CONNS_TRACKED)?,
            handshakes: sum(stats::HANDSHAKES)?,
            not_tls: sum(stats::NOT_TLS)?,
            malformed: sum(stats::MALFORMED)?,
            conns_table_full: sum(stats::CONNS_FULL)?,
            posture_table_full: sum(stats::POSTURE_FULL)?,
            sni_table_full: sum(stats::SNI_NAMES_FULL)?,
            sockhash_full: sum(stats::SOCKHASH_FULL)?,
            sni_cut: sum(stats::SNI_CUT)?,
            incomplete: sum(stats::INCOMPLETE)?,
            out_of_order: sum(stats::OUT_OF_ORDER)?,
        })
    }
}

/// The NUL-padded ALPN protocol of a row (None when the client offered none).
fn alpn(bytes: &[u8; 16]) -> Option<String> {
    let len = bytes.iter().position(|&b| b == 0).unwrap_or(bytes.len());
    (len > 0).then(|| String::from_utf8_lossy(&bytes[..len]).into_owned())
}

/// Converts CLOCK_BOOTTIME nanoseconds (bpf_ktime_get_boot_ns) to wall-clock time.
struct Boot {
    wall_now: SystemTime,
    boot_now_ns: u64,
}

impl Boot {
    fn now() -> Self {
        let mut ts = libc::timespec {
            tv_sec: 0,
            tv_nsec: 0,
        };
        // SAFETY: valid out-pointer.
        unsafe { libc::clock_gettime(libc::CLOCK_BOOTTIME, &mut ts) };
        Self {
            wall_now: SystemTime::now(),
            boot_now_ns: ts.tv_sec as u64 * 1_000_000_000 + ts.tv_nsec as u64,
        }
    }

    fn wall(&self, boot_ns: u64) -> SystemTime {
        self.wall_now - Duration::from_nanos(self.boot_now_ns.saturating_sub(boot_ns))
    }
}

/// Whether this kernel can do kernel TLS (a `tls` ULP), for /healthz.
pub fn ktls_available() -> bool {
    std::path::Path::new("/proc/sys/net/ipv4/tcp_available_ulp").exists()
        && std::fs::read_to_string("/proc/sys/net/ipv4/tcp_available_ulp")
            .map(|s| s.split_whitespace().any(|u| u == "tls"))
            .unwrap_or(false)
}
