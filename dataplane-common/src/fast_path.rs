//! ABI of the same-node fast path: an authorized TCP connection between two local governed
//! sockets carries its bytes from one socket straight into the other's receive queue (sk_msg
//! redirect) instead of through the TCP/IP stack twice.
//!
//! A direction of a connection is redirected only while the stack holds none of its bytes (the
//! peer has read every byte this socket queued to TCP): bytes never overtake each other when a
//! direction moves between the stack and the redirect, in either order.

/// Map names (pinned under the pin directory like the others).
pub mod map_names {
    /// `[Switches]` at index 0. Owner: `dataplane::kernel::loader`, written at every start.
    pub const SWITCHES: &str = "MW_SWITCHES";
    /// `[SockOffsets]` at index 0, from the kernel's BTF. Owner: `dataplane::kernel::loader`.
    pub const SOCK_OFFSETS: &str = "MW_SOCK_OFFSETS";
    /// Per-CPU counters, indexes in [`super::stats`]. Written by the kernel only.
    pub const STATS: &str = "MW_FAST_STATS";
    /// Socket key → address of its `struct sock`, kernel-private; sized like the sockhash
    /// by `dataplane::kernel::loader`.
    pub const PEERS: &str = "MW_FAST_PEERS";
}

pub mod program_names {
    /// The sk_msg stage that decides redirect or stack for each message (tail-called from
    /// `mw_tls_msg` once nothing of the connection is left to parse).
    pub const MSG_FAST: &str = "mw_fast_msg";
}

/// Which optional data paths the agent turned on; read by sock_ops and the sk_msg stages
/// (a restarted agent rewrites it, so the pinned programs follow the new agent's flags).
#[repr(C)]
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct Switches {
    /// 1: sock_ops tracks handshakes for TLS posture.
    pub tls_posture: u32,
    /// 1: governed sockets join the sockhash and local peers are redirected.
    pub fast_path: u32,
}

/// Byte offsets of the socket fields the fast path reads (`tcp_sock.write_seq`,
/// `tcp_sock.copied_seq`, `sock.sk_rcvbuf`, `sock.sk_backlog.rmem_alloc`), from the running
/// kernel's BTF. `valid` = 0 until written: the fast path then never redirects.
#[repr(C)]
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct SockOffsets {
    pub write_seq: u32,
    pub copied_seq: u32,
    pub rcvbuf: u32,
    pub rmem_alloc: u32,
    pub valid: u32,
    pub _pad: u32,
}

/// Indexes of `FAST_STATS` (per-CPU u64). Every message a fast-path socket sends is counted
/// once: redirected, or sent by the stack with the reason.
pub mod stats {
    /// Messages redirected into the peer's receive queue.
    pub const REDIRECTED: u32 = 0;
    /// Bytes redirected.
    pub const REDIRECTED_BYTES: u32 = 1;
    /// Stack: the fast path is switched off (`--fast-path` not given to the running agent).
    pub const STACK_DISABLED: u32 = 2;
    /// Stack: no local governed socket is the other end (remote or ungoverned peer, or the
    /// peer already closed).
    pub const STACK_PEER_NOT_LOCAL: u32 = 3;
    /// Stack: the peer's receive buffer is full (a slow reader): TCP's flow control applies
    /// until it has read.
    pub const STACK_PEER_FULL: u32 = 4;
    /// Stack: bytes of this direction are still in the stack (sent but not yet read by the
    /// peer); redirecting now would let later bytes overtake them.
    pub const STACK_DRAINING: u32 = 5;
    /// Stack: the handshake is still being read for TLS posture.
    pub const STACK_POSTURE: u32 = 6;
    /// Stack: the kernel refused the redirect (the peer went away between lookup and redirect).
    pub const STACK_REDIRECT_FAILED: u32 = 7;
    /// Sockets that joined the sockhash for the fast path.
    pub const SOCKETS_JOINED: u32 = 8;
    /// Sockets that could not join: the sockhash is full (they use the stack; never an error).
    pub const SOCKHASH_FULL: u32 = 9;
    /// Stack: no socket field offsets (kernel without BTF).
    pub const STACK_NO_OFFSETS: u32 = 10;
    pub const COUNT: u32 = 11;

    /// Label of each index in `meshward_fast_path_total{event}`.
    pub const LABELS: [&str; COUNT as usize] = [
        "redirected",
        "redirected_bytes",
        "stack_disabled",
        "stack_peer_not_local",
        "stack_peer_full",
        "stack_draining",
        "stack_posture",
        "stack_redirect_failed",
        "sockets_joined",
        "sockhash_full",
        "stack_no_offsets",
    ];
}

#[cfg(feature = "user")]
mod pod {
    use super::*;
    // SAFETY: repr(C), Copy, explicit padding, no pointers.
    unsafe impl aya::Pod for Switches {}
    unsafe impl aya::Pod for SockOffsets {}
}

#[cfg(test)]
mod tests {
    use super::*;
    use core::mem::size_of;

    #[test]
    fn layouts_have_no_implicit_padding() {
        assert_eq!(size_of::<Switches>(), 8);
        assert_eq!(size_of::<SockOffsets>(), 24);
    }
}
