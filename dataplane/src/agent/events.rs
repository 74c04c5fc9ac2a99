//! Drains the kernel's deny/audit ring into the log and the admin endpoint's recent-events list.

use std::sync::Arc;

use std::net::SocketAddr;

use dataplane::kernel::events::{EventReader, comm, hook_name, to_ip, verdict_name};
use dataplane_common::{directions, verdicts};

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
            let inbound = e.direction == directions::INBOUND;
            // Inbound and TLS SNI events are decided outside the caller's cgroup lookup.
            let workload = if inbound || e.cgroup_id == 0 {
                snapshot.workload_by_id(e.workload_id)
            } else {
                snapshot
                    .workload_by_cgroup(e.cgroup_id)
                    .map(|w| (w.namespace.clone(), w.name.clone()))
            };
            let source_workload = inbound
                .then(|| snapshot.workload_by_id(e.peer_identity))
                .flatten()
                .map(|(ns, name)| format!("{ns}/{name}"));
            let record = EventRecord {
                seq: 0,
                time: now_rfc3339(),
                verdict: verdict_name(e.verdict),
                direction: if inbound { "inbound" } else { "egress" },
                hook: hook_name(e.hook),
                namespace: workload.as_ref().map(|w| w.0.clone()),
                workload: workload.map(|w| w.1),
                cgroup_id: e.cgroup_id,
                pid: e.pid,
                comm: comm(&e),
                destination: SocketAddr::new(to_ip(e.addr), e.port).to_string(),
                source: inbound
                    .then(|| SocketAddr::new(to_ip(e.peer_addr), e.peer_port).to_string()),
                source_workload,
                rule_id: e.rule_id,
                rule: snapshot.rule_name(e.rule_id),
            };
            if e.verdict == verdicts::DENY {
                tracing::info!(
                    workload = ?record.workload, direction = record.direction, pid = record.pid,
                    comm = %record.comm, source = ?record.source, destination = %record.destination,
                    rule = %record.rule, hook = record.hook, "denied"
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
