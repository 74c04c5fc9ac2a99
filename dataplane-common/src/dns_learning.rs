//! ABI of in-kernel DNS learning: addresses from the DNS answers a governed workload receives,
//! associated with the EgressPolicy host names they answer for, before the application reads
//! the answer (docs/dns.md).
//!
//! - `DNS_PORTS`: the resolver ports watched (53 and `--dns-port`).
//! - `DNS_QUERIES`: each query a governed workload sends, so that only the answer to an
//!   outstanding query of that workload is learned (spoofed answers are not).
//! - `DNS_WATCH`: per generation slot and workload, the name keys (`sni_policy::name_key` of an
//!   exact host or of a wildcard's `.suffix`) that some EgressPolicy host rule of the workload
//!   names: the only names learned.
//! - `DNS_LEARNED`: (workload, address) → up to [`KEYS_PER_ADDR`] watched name keys with their
//!   expiry. At connect the kernel looks each live key up in `SNI_RULES` (the same name rules
//!   TLS server names are checked against) and merges the rules with the address rules.

/// Map names.
pub mod map_names {
    pub const DNS_PORTS: &str = "MW_DNS_PORTS";
    pub const DNS_CONFIG: &str = "MW_DNS_CONFIG";
    pub const DNS_QUERIES: &str = "MW_DNS_QUERIES";
    pub const DNS_WATCH: &str = "MW_DNS_WATCH";
    pub const DNS_LEARNED: &str = "MW_DNS_LEARNED";
    pub const DNS_STATS: &str = "MW_DNS_STATS";
    /// Per-CPU scratch of the answer parser (message, names, chain).
    pub const DNS_SCRATCH: &str = "MW_DNS_SCRATCH";
}

pub mod program_names {
    /// cgroup_skb egress: records a governed workload's DNS queries.
    pub const DNS_EGRESS: &str = "mw_dns_egress";
    /// cgroup_skb ingress: learns from the answers to them.
    pub const DNS_INGRESS: &str = "mw_dns_ingress";
}

pub const MAX_DNS_PORTS: u32 = 16;
/// Outstanding queries kept (LRU: the oldest are forgotten first; an answer to a forgotten query
/// is not learned and is counted as unmatched).
pub const MAX_DNS_QUERIES: u32 = 16_384;
pub const MAX_DNS_WATCH_PER_SLOT: u32 = 65_536;
/// (workload, address) pairs learned. Full: new pairs are not learned, counted (`TABLE_FULL`);
/// the agent deletes expired pairs.
pub const MAX_DNS_LEARNED: u32 = 65_536;
/// Name keys kept per (workload, address): an address answered for more watched names (the CDN
/// case) keeps the live ones with the latest expiry; the rest are counted (`KEYS_DROPPED`).
pub const KEYS_PER_ADDR: usize = 4;

/// `DNS_CONFIG[0]`.
#[repr(C)]
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct DnsConfig {
    /// An answer's TTL is raised to at least this (`--dns-min-ttl`): a name answered with TTL 0
    /// can still be connected to right after the answer.
    pub min_ttl_secs: u32,
    /// ... and lowered to at most this.
    pub max_ttl_secs: u32,
}

/// `DNS_QUERIES` key: what an answer must match to be learned.
#[repr(C)]
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Hash)]
pub struct QueryKey {
    pub workload_id: u32,
    /// The workload's (client) port.
    pub local_port: u16,
    pub resolver_port: u16,
    /// IPv4-mapped.
    pub resolver: [u8; 16],
    pub id: u16,
    /// 17 (UDP) or 6 (TCP).
    pub proto: u8,
    pub _pad: u8,
    pub _pad2: u32,
}

/// `DNS_QUERIES` value.
#[repr(C)]
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct QueryValue {
    /// `sni_policy::name_key` of the question name: the answer must ask the same.
    pub qname_key: u64,
    pub sent_ns: u64,
}

/// `DNS_WATCH` key.
#[repr(C)]
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Hash)]
pub struct WatchKey {
    pub workload_id: u32,
    pub slot: u8,
    pub _pad: [u8; 3],
    pub name: u64,
}

/// `DNS_LEARNED` key.
#[repr(C)]
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Hash)]
pub struct LearnedKey {
    pub workload_id: u32,
    pub _pad: u32,
    /// IPv4-mapped.
    pub addr: [u8; 16],
}

/// `DNS_LEARNED` value: slot `i` is live while `keys[i] != 0` and `expires_ns[i]` (boot-time
/// monotonic clock, `bpf_ktime_get_ns`) is in the future.
#[repr(C)]
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct LearnedNames {
    pub keys: [u64; KEYS_PER_ADDR],
    pub expires_ns: [u64; KEYS_PER_ADDR],
}

impl LearnedNames {
    /// Records `key` until `expires_ns` in place of the same key, a free or dead slot, or the
    /// slot that expires first (if that expires before `expires_ns`). False when the key was
    /// not kept (every slot holds another live key expiring later).
    #[inline(always)]
    pub fn learn(&mut self, key: u64, expires_ns: u64, now_ns: u64) -> bool {
        let mut pick = KEYS_PER_ADDR;
        let mut earliest = u64::MAX;
        for i in 0..KEYS_PER_ADDR {
            if self.keys[i] == key {
                pick = i;
                break;
            }
            let e = if self.keys[i] == 0 || self.expires_ns[i] <= now_ns {
                0
            } else {
                self.expires_ns[i]
            };
            if e < earliest {
                earliest = e;
                pick = i;
            }
        }
        if pick >= KEYS_PER_ADDR {
            return false;
        }
        if self.keys[pick] != key && earliest >= expires_ns {
            return false;
        }
        if self.keys[pick] == key && self.expires_ns[pick] > expires_ns {
            return true;
        }
        self.keys[pick] = key;
        self.expires_ns[pick] = expires_ns;
        true
    }

    /// Whether any slot is live at `now_ns`.
    pub fn live(&self, now_ns: u64) -> bool {
        (0..KEYS_PER_ADDR).any(|i| self.keys[i] != 0 && self.expires_ns[i] > now_ns)
    }
}

/// `DNS_STATS` indexes (per CPU).
pub mod stats {
    /// Answers parsed whose query was outstanding.
    pub const ANSWERS: u32 = 0;
    /// (workload, address, name) associations written.
    pub const LEARNED: u32 = 1;
    /// Answers from a watched port that match no outstanding query of the workload (spoofed,
    /// late, or forgotten): not learned.
    pub const UNMATCHED: u32 = 2;
    /// Messages that are not a well-formed DNS answer: nothing learned.
    pub const MALFORMED: u32 = 3;
    /// `DNS_LEARNED` full: a new (workload, address) pair not learned.
    pub const TABLE_FULL: u32 = 4;
    /// A name key not kept for an address (more than KEYS_PER_ADDR live names).
    pub const KEYS_DROPPED: u32 = 5;
    /// Addresses past the parser's per-answer limit, or records past the bytes it reads.
    pub const TRUNCATED: u32 = 6;
    /// Queries recorded.
    pub const QUERIES: u32 = 7;
    pub const COUNT: u32 = 8;
}

#[cfg(feature = "user")]
mod pod {
    use super::*;
    // SAFETY: repr(C), Copy, explicit padding, no pointers.
    unsafe impl aya::Pod for DnsConfig {}
    unsafe impl aya::Pod for QueryKey {}
    unsafe impl aya::Pod for QueryValue {}
    unsafe impl aya::Pod for WatchKey {}
    unsafe impl aya::Pod for LearnedKey {}
    unsafe impl aya::Pod for LearnedNames {}
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn learn_keeps_live_keys_and_replaces_the_earliest() {
        let mut n = LearnedNames::default();
        assert!(n.learn(11, 100, 0));
        assert!(n.learn(13, 200, 0));
        assert!(n.learn(15, 300, 0));
        assert!(n.learn(17, 400, 0));
        // Full: a key expiring after the earliest replaces it...
        assert!(n.learn(19, 150, 0));
        assert!(!n.keys.contains(&11));
        // ...one expiring before every slot is not kept.
        assert!(!n.learn(21, 120, 0));
        // The same key is refreshed, never shortened.
        assert!(n.learn(13, 500, 0));
        assert!(n.learn(13, 50, 0));
        let i = n.keys.iter().position(|k| *k == 13).unwrap();
        assert_eq!(n.expires_ns[i], 500);
        // Dead slots are reused first.
        assert!(n.learn(23, 110, 160));
        assert!(!n.keys.contains(&19), "{n:?}");
        assert!(n.live(450));
        assert!(!n.live(600));
    }
}
