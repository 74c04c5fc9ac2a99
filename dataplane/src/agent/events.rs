//! Drains the kernel's deny/audit ring into the log and the admin endpoint's recent-events list.

use std::sync::Arc;

use dataplane::kernel::events::{EventReader, comm, event_addr, hook_name, verdict_name};
use dataplane_common::verdicts;

use super::state::{EventRecord, Shared, now_rfc3339};

pub async fn pump(mut reader: EventReader, shared: Arc<Shared>) {
    loop {
        let batch = match reader.next_batch().await {
            Ok(b) => b,
            Err(e) => {
                tracing::error!(error = %e, "reading kernel events failed; events stop");
                return;
            }
        };
        let snapshot = shared.snapshot();
        let mut log = shared.events();
        for e in batch {
            let workload = snapshot.workload_by_cgroup(e.cgroup_id);
            let record = EventRecord {
                seq: 0,
                time: now_rfc3339(),
                verdict: verdict_name(e.verdict),
                hook: hook_name(e.hook),
                namespace: workload.map(|w| w.namespace.clone()),
                workload: workload.map(|w| w.name.clone()),
                cgroup_id: e.cgroup_id,
                pid: e.pid,
                comm: comm(&e),
                destination: std::net::SocketAddr::new(event_addr(&e), e.port).to_string(),
                rule_id: e.rule_id,
                rule: snapshot.rule_name(e.rule_id),
            };
            if e.verdict == verdicts::DENY {
                tracing::info!(
                    workload = ?record.workload, pid = record.pid, comm = %record.comm,
                    destination = %record.destination, rule = %record.rule, hook = record.hook,
                    "denied"
                );
            } else {
                tracing::info!(
                    workload = ?record.workload, pid = record.pid, comm = %record.comm,
                    destination = %record.destination, rule = %record.rule, hook = record.hook,
                    "audited"
                );
            }
            log.push(record);
        }
    }
}
