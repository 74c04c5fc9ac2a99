//! TLS posture as users see it: rows of the kernel's aggregates with workload names, the three
//! views of the seed talk (weak versions, weak ciphers, suspicious SNI), and the metrics.

use std::time::SystemTime;

use dataplane::kernel::posture::PostureRow;
use dataplane_common::posture::{mtls, roles};
use serde::Serialize;

use super::state::Snapshot;

/// One posture record (contract: namespace, workload, tls_version, cipher, sni, mtls, count,
/// first_seen, last_seen; more fields may follow).
#[derive(Clone, Debug, Serialize)]
pub struct PostureRecord {
    pub namespace: Option<String>,
    pub workload: Option<String>,
    pub role: &'static str,
    pub tls_version: String,
    pub cipher: String,
    pub sni: Option<String>,
    /// The governed process's executable path, when known (see `exe_names`).
    pub binary: Option<String>,
    /// true / false / "unknown" (TLS 1.3 hides the client certificate).
    pub mtls: serde_json::Value,
    pub peer: String,
    pub server_port: u16,
    pub count: u64,
    pub first_seen: String,
    pub last_seen: String,
    pub weak_version: bool,
    pub weak_cipher: Vec<&'static str>,
    /// What the client offered (null when unknown): its highest version, the weak classes among
    /// its suites, its first ALPN protocol.
    pub offered_max_version: Option<String>,
    pub offered_weak_ciphers: Vec<&'static str>,
    pub alpn: Option<String>,
}

pub fn records(rows: &[PostureRow], snapshot: &Snapshot) -> Vec<PostureRecord> {
    let mut out: Vec<PostureRecord> = rows
        .iter()
        .map(|r| {
            let w = snapshot.workload_by_id(r.workload_id);
            PostureRecord {
                namespace: w.as_ref().map(|w| w.0.clone()),
                workload: w.map(|w| w.1),
                role: if r.role == roles::CLIENT {
                    "client"
                } else {
                    "server"
                },
                tls_version: names::version(r.version),
                cipher: names::cipher(r.cipher),
                sni: r.sni.clone(),
                binary: r
                    .exe
                    .and_then(|(dev, ino)| super::exe_names::path_of(dev, ino)),
                mtls: match r.mtls {
                    mtls::YES => true.into(),
                    mtls::NO => false.into(),
                    _ => "unknown".into(),
                },
                peer: r.peer.to_string(),
                server_port: r.server_port,
                count: r.count,
                first_seen: rfc3339(r.first_seen),
                last_seen: rfc3339(r.last_seen),
                weak_version: names::weak_version(r.version),
                weak_cipher: names::weak_cipher_classes(r.cipher),
                offered_max_version: (r.offered_version != 0)
                    .then(|| names::version(r.offered_version)),
                offered_weak_ciphers: names::weak_class_list(u32::from(r.offered_weak)),
                alpn: r.alpn.clone(),
            }
        })
        .collect();
    out.sort_by(|a, b| {
        (&a.namespace, &a.workload, &a.sni, a.server_port).cmp(&(
            &b.namespace,
            &b.workload,
            &b.sni,
            b.server_port,
        ))
    });
    out
}

fn rfc3339(t: SystemTime) -> String {
    humantime::format_rfc3339_millis(t).to_string()
}

/// Names and weakness classes of TLS versions and cipher suites.
pub mod names {
    pub fn version(v: u16) -> String {
        match v {
            0 => "none".into(),
            0x0300 => "SSL 3.0".into(),
            0x0301 => "TLS 1.0".into(),
            0x0302 => "TLS 1.1".into(),
            0x0303 => "TLS 1.2".into(),
            0x0304 => "TLS 1.3".into(),
            other => format!("0x{other:04x}"),
        }
    }

    /// Below TLS 1.2 (plaintext, version 0, is not a weak *TLS* version).
    pub fn weak_version(v: u16) -> bool {
        v != 0 && v < 0x0303
    }

    pub fn cipher(c: u16) -> String {
        if c == 0 {
            return "none".into();
        }
        match dataplane_common::tls::cipher_name(c) {
            "unknown" => format!("0x{c:04x}"),
            name => name.to_string(),
        }
    }

    pub fn weak_cipher_classes(c: u16) -> Vec<&'static str> {
        weak_class_list(dataplane_common::tls::weak_classes(c))
    }

    pub fn weak_class_list(mask: u32) -> Vec<&'static str> {
        dataplane_common::tls::weak_class_names(mask).collect()
    }
}
