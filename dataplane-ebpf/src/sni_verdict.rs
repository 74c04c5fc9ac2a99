//! SNI verdict: a governed client's ClientHello is checked against its EgressPolicy name rules
//! (`dataplane_common::sni_policy`). A DENY rule naming the server name cuts the connection;
//! so does a name that no ALLOW rule names when the destination was admitted at connect only
//! because it is an address of an allowed DNS name. `control::evaluate_sni` is the user-space
//! twin.

use core::ffi::c_void;

use aya_ebpf::helpers::generated::bpf_loop;
use dataplane_common::{
    RuleMatch, directions, hooks, identities,
    posture::{ConnKey, SNI_LEN, stats},
    rule_ids,
    sni_policy::{KeyWalk, MAX_SUFFIXES, NameSpan, OVERLONG_NAME_KEY, SniRequiredKey, name_span},
    verdicts,
};

use crate::{
    events::{EventFields, emit},
    maps::{CONFIG, SNI_REQUIRED},
    name_rules,
    posture_conn::ConnTls,
    posture_maps::{CONNS, bump},
    verdict::count,
};

/// Decides the connection's ClientHello; false = cut (counted, reported, and `conn.cut` set so
/// that what it sends afterwards is dropped too).
#[inline(never)]
pub fn allows(key: &ConnKey, conn: &mut ConnTls) -> bool {
    let Some(cfg) = CONFIG.get(0) else {
        return true;
    };
    let (slot, events_per_sec) = (cfg.active_slot, cfg.events_per_sec);
    let subject = conn.owner.subject_id;
    let port = key.remote_port;
    let mut keys = [0u64; MAX_SUFFIXES + 1];
    let n = name_keys(key, conn, &mut keys);
    let mut m = RuleMatch::default();
    name_rules::fill(&mut m, &keys, n, subject, slot, port);
    let rule_id = if m.deny != 0 {
        m.deny
    } else if m.allow == 0 && admitted_by_name_only(subject, slot, port, key.remote) {
        rule_ids::SNI_DEFAULT_DENY
    } else {
        if m.audit != 0 {
            count(m.audit, true, true);
            emit(&event(key, conn, m.audit, verdicts::AUDIT), events_per_sec);
        }
        return true;
    };
    count(rule_id, false, false);
    emit(&event(key, conn, rule_id, verdicts::DENY), events_per_sec);
    bump(stats::SNI_CUT);
    conn.cut = 1;
    false
}

/// State of the backward walk over the server name, shared with the bpf_loop callback.
#[repr(C)]
struct WalkLoop {
    key: ConnKey,
    end: u64,
    walk: KeyWalk,
}

/// `sni_policy::lookup_keys` of the connection's server name: the same span and walk, one byte
/// per bpf_loop iteration (the verifier checks the step once, not once per byte).
#[inline(never)]
fn name_keys(key: &ConnKey, conn: &ConnTls, out: &mut [u64; MAX_SUFFIXES + 1]) -> usize {
    let sni = &conn.parse.sni;
    let len = if conn.parse.sni_overlong != 0 {
        SNI_LEN + 1
    } else {
        sni.len as usize
    };
    let end = match name_span(&sni.bytes, len) {
        NameSpan::Overlong => {
            out[0] = OVERLONG_NAME_KEY;
            return 1;
        }
        NameSpan::Bytes(0) => return 0,
        NameSpan::Bytes(end) => end,
    };
    let mut lp = WalkLoop {
        key: *key,
        end: end as u64,
        walk: KeyWalk::new(),
    };
    // SAFETY: callback and context live for the duration of the call.
    unsafe {
        bpf_loop(
            end as u32,
            walk_one as *mut c_void,
            (&mut lp as *mut WalkLoop).cast(),
            0,
        )
    };
    lp.walk.keys(out)
}

/// Feeds byte `end - 1 - index` of the server name to the walk; 1 stops the loop.
extern "C" fn walk_one(index: u64, ctx: *mut c_void) -> i64 {
    // SAFETY: bpf_loop passes back the WalkLoop given to it.
    let lp = unsafe { &mut *(ctx as *mut WalkLoop) };
    if index >= lp.end {
        return 1;
    }
    let Some(conn) = CONNS.get_ptr(&lp.key) else {
        return 1;
    };
    let i = (lp.end - 1 - index) as usize & (SNI_LEN - 1);
    // SAFETY: map value pointer, read within this callback.
    let byte = unsafe { (*conn).parse.sni.bytes[i] };
    lp.walk.step(byte);
    0
}

/// True if connections from `subject` to `addr`:`port` were allowed at connect only by DNS-name
/// ALLOW rules (an entry for the port decides before one for any port; 0 exempts).
#[inline(always)]
fn admitted_by_name_only(subject_id: u32, slot: u32, port: u16, addr: [u8; 16]) -> bool {
    for p in [port, 0] {
        let k = SniRequiredKey {
            subject_id,
            port: p,
            slot: slot as u8,
            _pad: 0,
            addr,
        };
        // SAFETY: the value is copied out at once.
        if let Some(&rule) = unsafe { SNI_REQUIRED.get(&k) } {
            return rule != 0;
        }
    }
    false
}

#[inline(always)]
fn event(key: &ConnKey, conn: &ConnTls, rule_id: u32, verdict: u8) -> EventFields {
    EventFields {
        cgroup_id: 0,
        workload_id: conn.owner.workload_id,
        rule_id,
        verdict,
        hook: hooks::TLS_SNI,
        direction: directions::EGRESS,
        addr: key.remote,
        port: key.remote_port,
        peer_addr: [0; 16],
        peer_port: 0,
        peer_identity: identities::UNKNOWN,
        process: true,
    }
}
