//! Per-connection TLS posture state and what happens when a handshake has been read: one
//! aggregate row in POSTURE (count, first and last seen) and the SNI interned in SNI_NAMES.

use aya_ebpf::helpers::generated::bpf_ktime_get_boot_ns;
use dataplane_common::posture::{
    ConnKey, Owner, PostureKey, PostureValue, SNI_LEN, SniName, mtls, sni_hash, stats,
};

use crate::posture_maps::{CONNS, POSTURE, SNI_NAMES, bump};

/// Kernel-private state of one connection whose handshake is being read.
#[repr(C)]
#[derive(Clone, Copy)]
pub struct ConnTls {
    pub owner: Owner,
    pub role: u8,
    /// 1 once an SNI verdict cut the connection: everything it sends afterwards is dropped.
    pub cut: u8,
    pub _pad: [u8; 6],
    pub parse: crate::posture_parse::ParseState,
}

/// What one finished handshake contributes.
pub struct Handshake<'a> {
    pub version: u16,
    pub cipher: u16,
    pub mtls: u8,
    /// In map memory (the parser state): inserted into SNI_NAMES without a stack copy.
    pub sni: &'a SniName,
}

/// Adds the handshake to its aggregate row and stops reading the connection: its state goes,
/// the socket stays in the sockhash (removing a live socket corrupts it on this kernel) and the
/// programs become no-ops for it.
#[inline(never)]
pub fn record(key: &ConnKey, conn: &ConnTls, h: &Handshake) {
    record_row(key, conn, h);
    bump(stats::HANDSHAKES);
    let _ = CONNS.remove(key);
}

#[inline(always)]
fn record_row(key: &ConnKey, conn: &ConnTls, h: &Handshake) {
    // SAFETY: helper without arguments.
    let now = unsafe { bpf_ktime_get_boot_ns() };
    let len = (h.sni.len as usize).min(SNI_LEN);
    let sni = sni_hash(&h.sni.bytes, len);
    if sni != 0
        && unsafe { SNI_NAMES.get(&sni) }.is_none()
        && SNI_NAMES.insert(&sni, h.sni, 0).is_err()
    {
        bump(stats::SNI_NAMES_FULL);
    }
    let (server_port, peer) = if conn.role == dataplane_common::posture::roles::CLIENT {
        (key.remote_port, key.remote)
    } else {
        (key.local_port, key.remote)
    };
    let pk = PostureKey {
        workload_id: conn.owner.workload_id,
        version: h.version,
        cipher: h.cipher,
        peer,
        server_port,
        role: conn.role,
        mtls: h.mtls,
        sni_hash: sni,
        exe_dev: conn.owner.exe_dev,
        exe_ino: conn.owner.exe_ino,
        offered_version: conn.parse.offer.max_version,
        offered_weak: conn.parse.offer.weak,
        alpn: conn.parse.offer.alpn,
    };
    match POSTURE.get_ptr_mut(&pk) {
        Some(v) => {
            // SAFETY: value pointer from the map; concurrent updates race only on counts.
            let v = unsafe { &mut *v };
            v.count += 1;
            v.last_seen_ns = now;
        }
        None => {
            let v = PostureValue {
                count: 1,
                first_seen_ns: now,
                last_seen_ns: now,
            };
            if POSTURE.insert(&pk, &v, 0).is_err() {
                bump(stats::POSTURE_FULL);
            }
        }
    }
}

/// Records a connection that is not TLS (version 0: plaintext, for "who still speaks
/// plaintext" and istio_tcp_connections_opened_total), then stops reading it.
#[inline(never)]
pub fn plaintext(key: &ConnKey, conn: &ConnTls) {
    bump(stats::NOT_TLS);
    let h = Handshake {
        version: 0,
        cipher: 0,
        mtls: mtls::NO,
        sni: &conn.parse.sni,
    };
    record_row(key, conn, &h);
    let _ = CONNS.remove(key);
}

/// Stops reading a connection whose handshake could not be parsed: counted, then no-op.
#[inline(never)]
pub fn give_up(key: &ConnKey, why: u32) {
    bump(why);
    let _ = CONNS.remove(key);
}
