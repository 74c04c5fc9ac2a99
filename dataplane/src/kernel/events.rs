//! Reader of the EVENTS ring buffer (deny and audit verdicts).

use std::net::{IpAddr, Ipv6Addr};

use anyhow::{Context, Result};
use aya::maps::{Map, MapData, RingBuf};
use dataplane_common::{VerdictEvent, hooks, verdicts};
use tokio::io::unix::AsyncFd;

pub struct EventReader {
    ring: AsyncFd<RingBuf<MapData>>,
}

impl EventReader {
    pub fn new(map: Map) -> Result<Self> {
        let ring: RingBuf<MapData> = map.try_into()?;
        // SAFETY: the ring owns its fd and outlives the registration (both live in `Self`).
        let ring = unsafe { AsyncFd::register_with_interest(ring, tokio::io::Interest::READABLE) }
            .map_err(|e| e.into_parts().1)
            .context("register EVENTS ring with tokio")?;
        Ok(Self { ring })
    }

    /// Waits for events and returns all that are ready.
    pub async fn next_batch(&mut self) -> Result<Vec<VerdictEvent>> {
        loop {
            let mut guard = self.ring.readable_mut().await?;
            let ring = guard.get_inner_mut();
            let mut batch = Vec::new();
            while let Some(item) = ring.next() {
                if item.len() >= size_of::<VerdictEvent>() {
                    // SAFETY: the kernel wrote a VerdictEvent; read unaligned from the ring.
                    batch.push(unsafe { std::ptr::read_unaligned(item.as_ptr().cast()) });
                }
            }
            guard.clear_ready();
            if !batch.is_empty() {
                return Ok(batch);
            }
        }
    }
}

/// An address as the kernel records it (IPv4-mapped addresses shown as IPv4).
pub fn to_ip(addr: [u8; 16]) -> IpAddr {
    let v6 = Ipv6Addr::from(addr);
    v6.to_ipv4_mapped()
        .map(IpAddr::V4)
        .unwrap_or(IpAddr::V6(v6))
}

pub fn hook_name(hook: u8) -> &'static str {
    match hook {
        hooks::CONNECT4 => "connect4",
        hooks::CONNECT6 => "connect6",
        hooks::SENDMSG4 => "sendmsg4",
        hooks::SENDMSG6 => "sendmsg6",
        hooks::SK_LOOKUP => "sk_lookup",
        hooks::TLS_SNI => "tls_sni",
        _ => "unknown",
    }
}

pub fn verdict_name(verdict: u8) -> &'static str {
    match verdict {
        verdicts::ALLOW => "allow",
        verdicts::DENY => "deny",
        verdicts::AUDIT => "audit",
        _ => "unknown",
    }
}

pub fn comm(e: &VerdictEvent) -> String {
    let end = e.comm.iter().position(|&b| b == 0).unwrap_or(e.comm.len());
    String::from_utf8_lossy(&e.comm[..end]).into_owned()
}
