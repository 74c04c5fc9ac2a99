//! ABI of TLS posture: which sockets are watched, and the per-workload aggregates the kernel
//! keeps ("pull, not push": user space reads snapshots of `POSTURE`).

/// Map names (pinned under the pin directory like the others).
pub mod map_names {
    /// Sockhash of governed TCP sockets, keyed by [`super::ConnKey`]; the sk_msg programs are
    /// attached to it.
    pub const SOCKS: &str = "MW_TLS_SOCKS";
    /// Kernel-private per-connection parser state.
    pub const CONNS: &str = "MW_TLS_CONNS";
    /// Socket cookie → workload, recorded at connect (the client side's owner).
    pub const SOCK_OWNERS: &str = "MW_SOCK_OWNERS";
    /// (netns cookie, local port) → workload, recorded at bind (the server side's owner).
    pub const LISTENERS: &str = "MW_LISTENERS";
    pub const POSTURE: &str = "MW_POSTURE";
    pub const SNI_NAMES: &str = "MW_SNI_NAMES";
    pub const STATS: &str = "MW_TLS_STATS";
    /// Kernel-private program arrays of the stream programs' stages (not pinned).
    pub const MSG_STAGES: &str = "MW_TLS_MSG_STAGES";
    pub const INGRESS_STAGES: &str = "MW_TLS_INGRESS_STAGES";
    pub const EGRESS_STAGES: &str = "MW_TLS_EGRESS_STAGES";
}

pub mod program_names {
    pub const SOCKOPS: &str = "mw_sockops";
    pub const MSG: &str = "mw_tls_msg";
    /// cgroup_skb ingress on governed cgroups: what a governed socket receives.
    pub const INGRESS: &str = "mw_tls_ingress";
    pub const MSG_HELLO: &str = "mw_tls_msg_hello";
    pub const INGRESS_HELLO: &str = "mw_tls_ingress_hello";
    pub const MSG_OFFER: &str = "mw_tls_msg_offer";
    pub const INGRESS_OFFER: &str = "mw_tls_ingress_offer";
    /// cgroup_skb egress on governed cgroups: what a governed socket outside the sockhash sends.
    pub const EGRESS: &str = "mw_tls_egress";
    pub const EGRESS_HELLO: &str = "mw_tls_egress_hello";
    pub const EGRESS_SNI: &str = "mw_tls_egress_sni";
    pub const EGRESS_OFFER: &str = "mw_tls_egress_offer";
    pub const POST_BIND4: &str = "mw_post_bind4";
    pub const POST_BIND6: &str = "mw_post_bind6";
}

/// Indexes of the stream programs' stages in `MSG_STAGES` and `INGRESS_STAGES` (filled by the
/// loader, tail-called by the programs).
pub mod stages {
    pub const FEED: u32 = 0;
    pub const HELLO: u32 = 1;
    /// MSG_STAGES only: the SNI verdict on a governed client's ClientHello.
    pub const SNI: u32 = 2;
    /// What a ClientHello offers (both arrays; index 2 of INGRESS_STAGES stays empty).
    pub const OFFER: u32 = 3;
    /// MSG_STAGES only: the fast path's redirect-or-stack decision (`fast_path`), once nothing
    /// of the connection is left to parse.
    pub const FAST: u32 = 4;
    /// Slots of each stage array.
    pub const SLOTS: u32 = 5;
}

/// Connections whose handshake is being read at once (each holds ~9.5 KiB of parser state;
/// LRU: the oldest unfinished one gives way).
pub const MAX_TRACKED_CONNS: u32 = 1024;
pub const MAX_SOCKS: u32 = 65_536;
pub const MAX_OWNERS: u32 = 65_536;
pub const MAX_POSTURE_ENTRIES: u32 = 16_384;
pub const MAX_SNI_NAMES: u32 = 16_384;
pub const SNI_LEN: usize = 128;

/// A TCP connection as seen from one local socket (addresses IPv4-mapped; ports host order).
#[repr(C)]
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Hash)]
pub struct ConnKey {
    pub local: [u8; 16],
    pub remote: [u8; 16],
    pub local_port: u16,
    pub remote_port: u16,
    pub _pad: u32,
}

impl ConnKey {
    /// The same connection as its other end sees it (its key in the sockhash when it is local).
    #[inline(always)]
    pub fn peer(&self) -> Self {
        Self {
            local: self.remote,
            remote: self.local,
            local_port: self.remote_port,
            remote_port: self.local_port,
            _pad: 0,
        }
    }
}

/// `SOCK_OWNERS` and `LISTENERS` value: who opened the socket, learned in process context.
#[repr(C)]
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Hash)]
pub struct Owner {
    pub workload_id: u32,
    /// The workload × binary subject whose egress rules apply (= `workload_id` when the
    /// workload has no binary-scoped policy).
    pub subject_id: u32,
    /// The process's executable (device, inode as the kernel numbers them); 0 = unknown.
    pub exe_dev: u64,
    pub exe_ino: u64,
    /// The subject's [`crate::workload_flags`] at connect/listen: with `HAS_NAME_RULES` its
    /// sockets go into the sockhash, whose sk_msg programs enforce SNI verdicts; the others are
    /// read by cgroup_skb on both sides and never take the psock path.
    pub flags: u32,
    pub _pad: u32,
}

/// `LISTENERS` key.
#[repr(C)]
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Hash)]
pub struct ListenerKey {
    pub netns_cookie: u64,
    pub port: u16,
    pub _pad: [u8; 6],
}

/// Which end of the connection the governed workload is.
pub mod roles {
    pub const CLIENT: u8 = 1;
    pub const SERVER: u8 = 2;
}

/// mTLS as far as the wire shows it.
pub mod mtls {
    pub const NO: u8 = 0;
    pub const YES: u8 = 1;
    /// TLS 1.3 encrypts the client's certificate: never guessed.
    pub const UNKNOWN: u8 = 2;
}

/// `POSTURE` key: one aggregate row.
#[repr(C)]
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Hash)]
pub struct PostureKey {
    pub workload_id: u32,
    pub version: u16,
    pub cipher: u16,
    /// The peer's address (IPv4-mapped).
    pub peer: [u8; 16],
    /// The server's port.
    pub server_port: u16,
    pub role: u8,
    pub mtls: u8,
    /// Highest version the client offered (0 = unknown).
    pub offered_version: u16,
    /// Weak-class bits (`tls::weak`) of the suites the client offered.
    pub offered_weak: u16,
    /// FNV-1a of the SNI (0 = no SNI); the name is in `SNI_NAMES`.
    pub sni_hash: u64,
    /// The governed process's executable (see [`Owner`]); 0 = unknown.
    pub exe_dev: u64,
    pub exe_ino: u64,
    /// The client's first ALPN protocol (NUL-padded; truncated to 16 bytes).
    pub alpn: [u8; 16],
}

/// `POSTURE` value.
#[repr(C)]
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct PostureValue {
    pub count: u64,
    /// `bpf_ktime_get_boot_ns` (CLOCK_BOOTTIME) of the first and last handshake.
    pub first_seen_ns: u64,
    pub last_seen_ns: u64,
}

/// `SNI_NAMES` value.
#[repr(C)]
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct SniName {
    pub len: u32,
    pub bytes: [u8; SNI_LEN],
}

/// Indexes of `TLS_STATS` (per-CPU u64).
pub mod stats {
    pub const CONNS_TRACKED: u32 = 0;
    pub const HANDSHAKES: u32 = 1;
    pub const NOT_TLS: u32 = 2;
    pub const MALFORMED: u32 = 3;
    /// A connection could not be tracked: `CONNS` full.
    pub const CONNS_FULL: u32 = 4;
    /// An aggregate could not be recorded: `POSTURE` full.
    pub const POSTURE_FULL: u32 = 5;
    pub const SNI_NAMES_FULL: u32 = 6;
    pub const SOCKHASH_FULL: u32 = 7;
    /// TLS connections cut at their ClientHello by an SNI verdict.
    pub const SNI_CUT: u32 = 8;
    /// Connections that closed before their handshake was read to the end (a client that
    /// rejected the server's certificate, a capture cut short, ...).
    pub const INCOMPLETE: u32 = 9;
    /// A handshake segment arrived before bytes it follows (reordered or lost on the way): the
    /// connection is not read further.
    pub const OUT_OF_ORDER: u32 = 10;
    pub const COUNT: u32 = 11;
}

/// How a received TCP segment relates to the next byte the parser expects (sequence numbers
/// wrap): TCP delivers bytes in order, but the ingress hook sees segments before TCP does.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum SegmentFit {
    /// Nothing new (a retransmission, or no payload).
    Old,
    /// New bytes from this offset of the payload on.
    From(u32),
    /// Bytes are missing before it (reordered or lost): the stream cannot be read on.
    Gap,
}

#[inline(always)]
pub fn segment_fit(expected: u32, seq: u32, len: u32) -> SegmentFit {
    if len == 0 {
        return SegmentFit::Old;
    }
    let ahead = seq.wrapping_sub(expected) as i32;
    if ahead > 0 {
        return SegmentFit::Gap;
    }
    let behind = ahead.unsigned_abs();
    if behind >= len {
        SegmentFit::Old
    } else {
        SegmentFit::From(behind)
    }
}

/// FNV-1a over the first `len` bytes (bounded for the verifier).
#[inline(always)]
pub fn sni_hash(bytes: &[u8; SNI_LEN], len: usize) -> u64 {
    let mut h: u64 = 0xcbf2_9ce4_8422_2325;
    let mut i = 0;
    while i < SNI_LEN {
        if i >= len {
            break;
        }
        h ^= u64::from(bytes[i]);
        h = h.wrapping_mul(0x0100_0000_01b3);
        i += 1;
    }
    if len == 0 { 0 } else { h | 1 }
}

#[cfg(feature = "user")]
mod pod {
    use super::*;
    // SAFETY: repr(C), Copy, explicit padding, no pointers.
    unsafe impl aya::Pod for ConnKey {}
    unsafe impl aya::Pod for ListenerKey {}
    unsafe impl aya::Pod for Owner {}
    unsafe impl aya::Pod for PostureKey {}
    unsafe impl aya::Pod for PostureValue {}
    unsafe impl aya::Pod for SniName {}
}

#[cfg(test)]
mod tests {
    use super::*;
    use core::mem::size_of;

    #[test]
    fn layouts() {
        assert_eq!(size_of::<ConnKey>(), 40);
        assert_eq!(size_of::<ListenerKey>(), 16);
        assert_eq!(size_of::<PostureKey>(), 72);
        assert_eq!(size_of::<Owner>(), 32);
        assert_eq!(size_of::<PostureValue>(), 24);
    }

    #[test]
    fn segments_are_placed_against_the_expected_sequence_number() {
        assert_eq!(segment_fit(1000, 1000, 10), SegmentFit::From(0));
        assert_eq!(segment_fit(1000, 995, 10), SegmentFit::From(5));
        assert_eq!(segment_fit(1000, 990, 10), SegmentFit::Old);
        assert_eq!(segment_fit(1000, 1001, 10), SegmentFit::Gap);
        assert_eq!(segment_fit(1000, 1000, 0), SegmentFit::Old);
        // Across the wrap of the sequence space.
        assert_eq!(
            segment_fit(u32::MAX - 1, u32::MAX - 3, 10),
            SegmentFit::From(2)
        );
        assert_eq!(segment_fit(5, u32::MAX - 3, 20), SegmentFit::From(9));
        assert_eq!(segment_fit(u32::MAX, 3, 1), SegmentFit::Gap);
    }

    #[test]
    fn sni_hashes_differ_and_empty_is_zero() {
        let mut a = [0u8; SNI_LEN];
        a[..7].copy_from_slice(b"ebpf.io");
        let mut b = a;
        b[0] = b'f';
        assert_ne!(sni_hash(&a, 7), sni_hash(&b, 7));
        assert_eq!(sni_hash(&a, 0), 0);
    }
}
