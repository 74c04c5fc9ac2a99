//! State shared between the reconciler (the only writer) and the admin endpoint and event pump
//! (readers): an immutable snapshot swapped whole, the kernel counters, and the recent events.

use std::{
    collections::{BTreeMap, VecDeque},
    sync::{
        Arc, Mutex, MutexGuard,
        atomic::{AtomicU64, Ordering},
    },
    time::SystemTime,
};

use arc_swap::ArcSwap;
use dataplane::kernel::{
    counters::Counters, dns_learning::DnsMaps, fast_path::FastPathStats, posture::PostureMaps,
};
use serde::Serialize;

use super::dns::NameStatus;

pub struct Shared {
    snapshot: ArcSwap<Snapshot>,
    counters: Mutex<Counters>,
    posture: Mutex<PostureMaps>,
    fast_path: Mutex<FastPathStats>,
    dns: Mutex<DnsMaps>,
    events: Mutex<EventLog>,
    pub reloads_ok: AtomicU64,
    pub reloads_failed: AtomicU64,
    /// Established connections reset because a new policy denies them: egress, inbound.
    pub connections_closed: [AtomicU64; 2],
    /// The xDS client's status, with --xds-address.
    xds: Option<xds::StatusHandle>,
}

/// What the agent enforces now, as the admin endpoint reports it.
#[derive(Default, Serialize)]
pub struct Snapshot {
    pub generation: u64,
    /// Where the policy comes from: the local files, and the control plane if any.
    pub source: String,
    pub sources: Sources,
    /// With a control plane: whether the first policy from it has been applied.
    pub xds_sync: Option<XdsSync>,
    #[serde(skip)]
    pub compiled: Option<Arc<control::CompiledPolicy>>,
    pub workloads: Vec<WorkloadStatus>,
    pub dns_names: Vec<NameStatus>,
    pub last_reload: Option<ReloadStatus>,
    /// The last reload that succeeded, if the last one failed.
    pub last_good_reload: Option<ReloadStatus>,
}

#[derive(Clone, Debug, Default, Serialize)]
pub struct Sources {
    /// The --config path, the bundled example, or "<no local files>".
    pub files: String,
    /// The control plane's address (--xds-address).
    pub xds: Option<String>,
}

/// The initial synchronisation with the control plane (docs/xds.md, "Start").
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum XdsSync {
    /// Waiting for the first answer of every type; the previous (adopted) policy, if any, is in
    /// force.
    Waiting,
    /// Every type answered; every accepted response is applied as it comes.
    Complete,
    /// The wait timed out; what was known was applied, every accepted response is applied.
    TimedOut,
}

#[derive(Clone, Debug, Serialize)]
pub struct WorkloadStatus {
    pub namespace: String,
    pub name: String,
    pub principal: String,
    pub cgroup: Option<String>,
    pub cgroup_id: Option<u64>,
    /// True when the cgroup exists and the programs are attached to it.
    pub governed: bool,
    /// Network namespace of the workload (annotation `meshward.io/netns`): inbound connections
    /// to its address are decided there.
    pub netns: Option<String>,
    /// True when sk_lookup is attached to that netns.
    pub netns_attached: bool,
    /// Attached, and the workload has an address to be reached at.
    pub inbound_governed: bool,
    pub note: Option<String>,
}

#[derive(Clone, Debug, Serialize)]
pub struct ReloadStatus {
    pub ok: bool,
    pub trigger: String,
    pub at: String,
    pub generation: u64,
    pub errors: Vec<String>,
    pub warnings: Vec<String>,
}

impl Snapshot {
    pub fn workload_by_cgroup(&self, cgroup_id: u64) -> Option<&WorkloadStatus> {
        self.workloads
            .iter()
            .find(|w| w.cgroup_id == Some(cgroup_id))
    }

    /// (namespace, name) of a workload id of the live generation.
    pub fn workload_by_id(&self, id: u32) -> Option<(String, String)> {
        let w = self.compiled.as_ref()?.workload(id)?;
        Some((w.namespace.clone(), w.name.clone()))
    }

    pub fn rule_name(&self, id: u32) -> String {
        match &self.compiled {
            Some(c) => c.rule_name(id),
            None => format!("rule #{id}"),
        }
    }
}

/// One deny/audit event as the admin endpoint serves it.
#[derive(Clone, Debug, Serialize)]
pub struct EventRecord {
    pub seq: u64,
    pub time: String,
    pub verdict: &'static str,
    /// "egress" (the workload connects out) or "inbound" (a client connects to the workload).
    pub direction: &'static str,
    pub hook: &'static str,
    pub namespace: Option<String>,
    pub workload: Option<String>,
    pub cgroup_id: u64,
    pub pid: u32,
    pub comm: String,
    pub destination: String,
    /// Inbound: the client's address and, when known, its workload (namespace/name).
    pub source: Option<String>,
    pub source_workload: Option<String>,
    pub rule_id: u32,
    pub rule: String,
}

/// The most recent events, bounded; older ones are dropped (they were logged).
pub struct EventLog {
    records: VecDeque<EventRecord>,
    next_seq: u64,
    pub by_verdict: BTreeMap<&'static str, u64>,
}

pub const EVENT_LOG_CAPACITY: usize = 4096;

impl EventLog {
    pub fn push(&mut self, mut record: EventRecord) {
        self.next_seq += 1;
        record.seq = self.next_seq;
        *self.by_verdict.entry(record.verdict).or_default() += 1;
        if self.records.len() == EVENT_LOG_CAPACITY {
            self.records.pop_front();
        }
        self.records.push_back(record);
    }

    /// Events with seq > `since`, and the seq to ask from next time.
    pub fn since(&self, since: u64) -> (Vec<EventRecord>, u64) {
        let events = self
            .records
            .iter()
            .filter(|r| r.seq > since)
            .cloned()
            .collect();
        (events, self.next_seq)
    }
}

impl Shared {
    pub fn new(
        counters: Counters,
        posture: PostureMaps,
        fast_path: FastPathStats,
        dns: DnsMaps,
        xds: Option<xds::StatusHandle>,
    ) -> Self {
        Self {
            snapshot: ArcSwap::from_pointee(Snapshot::default()),
            counters: Mutex::new(counters),
            posture: Mutex::new(posture),
            fast_path: Mutex::new(fast_path),
            dns: Mutex::new(dns),
            events: Mutex::new(EventLog {
                records: VecDeque::new(),
                next_seq: 0,
                by_verdict: BTreeMap::new(),
            }),
            reloads_ok: AtomicU64::new(0),
            reloads_failed: AtomicU64::new(0),
            connections_closed: [AtomicU64::new(0), AtomicU64::new(0)],
            xds,
        }
    }

    /// The xDS client's status now, with --xds-address.
    pub fn xds_status(&self) -> Option<xds::Status> {
        self.xds.as_ref().map(|h| h.get())
    }

    pub fn snapshot(&self) -> Arc<Snapshot> {
        self.snapshot.load_full()
    }

    pub fn publish(&self, snapshot: Snapshot) {
        self.snapshot.store(Arc::new(snapshot));
    }

    pub fn counters(&self) -> MutexGuard<'_, Counters> {
        self.counters.lock().unwrap_or_else(|p| p.into_inner())
    }

    pub fn posture(&self) -> MutexGuard<'_, PostureMaps> {
        self.posture.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// The fast path's counters.
    pub fn fast_path(&self) -> MutexGuard<'_, FastPathStats> {
        self.fast_path.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// What the kernel learned from DNS answers.
    pub fn dns(&self) -> MutexGuard<'_, DnsMaps> {
        self.dns.lock().unwrap_or_else(|p| p.into_inner())
    }

    pub fn events(&self) -> MutexGuard<'_, EventLog> {
        self.events.lock().unwrap_or_else(|p| p.into_inner())
    }

    pub fn count_closed(&self, direction: super::revoke::Direction) {
        self.connections_closed[direction as usize].fetch_add(1, Ordering::Relaxed);
    }

    pub fn count_reload(&self, ok: bool) {
        let c = if ok {
            &self.reloads_ok
        } else {
            &self.reloads_failed
        };
        c.fetch_add(1, Ordering::Relaxed);
    }
}

pub fn now_rfc3339() -> String {
    humantime::format_rfc3339_millis(SystemTime::now()).to_string()
}
