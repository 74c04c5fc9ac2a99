//! Deny and audit events: a bounded ring buffer behind a per-CPU budget. What does not fit is
//! counted in STATS, never silently lost.

use aya_ebpf::helpers::{
    bpf_get_current_comm, bpf_get_current_pid_tgid, generated::bpf_ktime_get_ns,
};
use dataplane_common::{VerdictEvent, stats};

use crate::maps::{EVENT_BUDGET, EVENTS, bump_stat};

const WINDOW_NS: u64 = 1_000_000_000;

pub struct EventFields {
    pub cgroup_id: u64,
    pub workload_id: u32,
    pub rule_id: u32,
    pub verdict: u8,
    pub hook: u8,
    pub direction: u8,
    pub addr: [u8; 16],
    pub port: u16,
    pub peer_addr: [u8; 16],
    pub peer_port: u16,
    pub peer_identity: u32,
    /// True in process context (connect/sendmsg): pid and comm are the caller's.
    pub process: bool,
}

/// Sends the event a verdict calls for (deny, or audit of an allowed connection) and returns
/// whether the connection is allowed.
#[inline(always)]
pub fn report(v: &crate::verdict::Verdict, mut event: EventFields, events_per_sec: u32) -> bool {
    if !v.allow {
        event.rule_id = v.rule_id;
        event.verdict = dataplane_common::verdicts::DENY;
        emit(&event, events_per_sec);
        return false;
    }
    if v.audit_rule_id != 0 {
        event.rule_id = v.audit_rule_id;
        event.verdict = dataplane_common::verdicts::AUDIT;
        emit(&event, events_per_sec);
    }
    true
}

#[inline(always)]
pub fn emit(f: &EventFields, events_per_sec: u32) {
    // SAFETY: helper without arguments.
    let now = unsafe { bpf_ktime_get_ns() };
    if !take_budget(now, events_per_sec) {
        bump_stat(stats::EVENTS_RATE_LIMITED);
        return;
    }
    let Some(mut entry) = EVENTS.reserve::<VerdictEvent>(0) else {
        bump_stat(stats::EVENTS_RING_FULL);
        return;
    };
    let (pid, comm) = if f.process {
        (
            (bpf_get_current_pid_tgid() >> 32) as u32,
            bpf_get_current_comm().unwrap_or([0; 16]),
        )
    } else {
        (0, [0; 16])
    };
    entry.write(VerdictEvent {
        timestamp_ns: now,
        cgroup_id: f.cgroup_id,
        pid,
        rule_id: f.rule_id,
        workload_id: f.workload_id,
        port: f.port,
        verdict: f.verdict,
        hook: f.hook,
        addr: f.addr,
        peer_addr: f.peer_addr,
        peer_port: f.peer_port,
        direction: f.direction,
        _pad: [0; 5],
        peer_identity: f.peer_identity,
        comm,
    });
    entry.submit(0);
}

#[inline(always)]
fn take_budget(now: u64, events_per_sec: u32) -> bool {
    if events_per_sec == 0 {
        return true;
    }
    let limit = u64::from(events_per_sec);
    let Some(b) = EVENT_BUDGET.get_ptr_mut(0) else {
        return false;
    };
    // SAFETY: per-CPU slot.
    let b = unsafe { &mut *b };
    if now.wrapping_sub(b.window_start_ns) >= WINDOW_NS {
        b.window_start_ns = now;
        b.used = 0;
    }
    if b.used >= limit {
        return false;
    }
    b.used += 1;
    true
}
