//! Incremental TLS handshake parser, run in the kernel (sk_msg / sk_skb stream_verdict over a
//! sockhash) and, byte-for-byte the same code, in user space (tests, fuzzing).
//!
//! # Model
//! Each connection has two [`Direction`]s (bytes the socket sends, bytes it receives), each a
//! map value. The kernel calls [`feed`] with every chunk it sees (an sk_msg or an skb), in order,
//! through its own [`ByteSource`]. `feed` frames TLS records (5-byte headers) and handshake
//! messages (4-byte headers) across any split of records and chunks, buffers the ClientHello and
//! ServerHello bodies (up to [`HELLO_CAP`] bytes) and skips every other message by counting,
//! remembering only its type (and, for Certificate, whether its list is empty). It returns
//! [`Events`]; after [`Events::CLIENT_HELLO`] / [`Events::SERVER_HELLO`] the caller runs
//! [`parse_client_hello`] / [`parse_server_hello`] on the buffered message **before the next
//! `feed` on that direction** (the next hello reuses the buffer).
//!
//! One `feed` call stops early, with [`Events::MORE`], right after a complete hello and after
//! [`MAX_SPANS`] spans; the caller handles the events and calls again from
//! [`Direction::resume`] (user space: [`feed_all`]). A TLS 1.2 server flight in one segment
//! (ServerHello, Certificate, ServerKeyExchange, CertificateRequest, ServerHelloDone) thus takes
//! two or three calls.
//!
//! A direction ends ([`state::DONE`]) at its first ChangeCipherSpec or application-data record,
//! or right after a TLS 1.3 ServerHello (everything after it is encrypted); it is
//! [`state::NOT_TLS`] when its first bytes are not a TLS handshake (or alert) record header, and
//! [`state::MALFORMED`] when its framing is broken. In those states `feed` returns at once.
//!
//! Reading the results per direction: in the direction that sent the ClientHello,
//! [`Events::CERTIFICATE`] / [`Events::CERTIFICATE_EMPTY`] is the client's certificate (mTLS
//! with / without a certificate, TLS ≤ 1.2); in the direction that sent the ServerHello,
//! [`Events::CERT_REQUEST`] means the server asked for one. Under TLS 1.3 these messages are
//! encrypted: mTLS is unknown.
//!
//! HelloRetryRequest: the server's direction flags it ([`Events::HELLO_RETRY`]) and keeps going
//! (the compatibility ChangeCipherSpec that may follow does not end it) until the real
//! ServerHello. The caller then calls [`note_hello_retry`] on the client's direction (after its
//! first ClientHello, which is how the bytes arrive), so that the client's compatibility
//! ChangeCipherSpec does not end it before the second ClientHello.
//!
//! Values are never guessed: a truncated or partly examined hello says so in its flags
//! ([`hello_flags::TRUNCATED`], [`hello_flags::EXTENSIONS_PARTIAL`], ...) and leaves unknown
//! fields at 0; a malformed one makes `parse_*` return false.
//!
//! # eBPF constraints
//! `no_std`, no allocation, no panicking paths: every buffer index is masked or checked with
//! `get`, every loop has a constant bound ([`MAX_SPANS`] spans per `feed`, [`MAX_EXTENSIONS`],
//! [`MAX_CIPHER_SCAN`], ...). Big values ([`Direction`], [`ClientHello`], [`ServerHello`]) must
//! live in map values (per-CPU scratch for the hellos), never on the stack: the parser launders
//! offsets through their `scratch` words (see `launder`) so that the verifier does not track
//! every offset precisely. `feed` reads the source in pieces of at most [`LOAD_MAX`] bytes (at
//! most 5 for headers) and never with an empty destination; the hello buffer has `LOAD_MAX`
//! bytes of slack so that `masked offset + length` stays inside it for the verifier. Cipher
//! classification reads two 256-byte static tables (`.rodata`).
//!
//! Verifier status (kernel 6.18, socket_filter test programs over `bpf_skb_load_bytes`, one
//! program per entry point): `feed` with `MAX_SPANS = 8` and [`parse_server_hello`] load;
//! [`parse_client_hello`] with the current bounds exceeds the 1M-instruction budget (it loads
//! with every bound at 4). What blew the budget and how it was fixed: compilers turning
//! comparisons into chains of branches (the 32-byte HelloRetryRequest random), precise offsets
//! and event bits kept in registers across loop iterations. Next step for the client side:
//! run its loops under `bpf_loop` or split them over tail calls.
//!
//! # Sizes (asserted in tests)
//! - [`Direction`]: 4680 bytes (`DIRECTION_SIZE`).
//! - [`ClientHello`]: 276 bytes, [`ServerHello`]: 76 bytes.

mod ciphers;
mod hello;
#[cfg(not(target_arch = "bpf"))]
mod names;
mod offer;
mod sni;
mod weak_table;

pub use ciphers::*;
pub use hello::*;
pub use offer::{
    ALPN_LEN, OFFER_MAX_EXTENSIONS, OFFER_MAX_SUITES, OFFER_MAX_VERSIONS, Offer, OfferWalk,
    client_hello_offer, offer_extension, offer_finish, offer_start, offer_suite, offer_version,
};
pub use sni::{SNI_MAX_EXTENSIONS, client_hello_sni};

/// Bytes of a ClientHello / ServerHello body kept for parsing. Longer messages are truncated
/// ([`Events::TRUNCATED`]). A power of two: buffer offsets are masked with `HELLO_CAP - 1`.
pub const HELLO_CAP: usize = 4096;
pub(crate) const HELLO_MASK: usize = HELLO_CAP - 1;
/// Largest piece `feed` copies from the source at once (a power of two).
pub const LOAD_MAX: usize = 512;
/// The hello buffer: `HELLO_CAP` bytes plus `LOAD_MAX` bytes of slack, never holding data, so
/// that a masked offset plus a bounded length is provably inside the buffer.
pub const HELLO_BUF: usize = HELLO_CAP + LOAD_MAX;
/// Spans (header pieces or body pieces) handled per `feed` call: the verifier accepts 8 (see
/// the module docs). A chunk needing more returns [`Events::MORE`]: call `feed` again from
/// [`Direction::resume`] (the kernel: with a second call, a tail call or `bpf_loop`).
pub const MAX_SPANS: u32 = 8;
/// Largest record body accepted (TLSCiphertext: 2^14 + 2048).
pub const MAX_RECORD_LEN: u32 = (1 << 14) + 2048;
/// Size of [`Direction`] in bytes.
pub const DIRECTION_SIZE: usize = 4680;

const _: () = assert!(HELLO_CAP.is_power_of_two() && LOAD_MAX.is_power_of_two());
const _: () = assert!(core::mem::size_of::<Direction>() == DIRECTION_SIZE);

#[cfg(feature = "user")]
mod pod {
    // SAFETY: repr(C), Copy, explicit padding, no pointers.
    unsafe impl aya::Pod for super::Direction {}
    unsafe impl aya::Pod for super::ClientHello {}
    unsafe impl aya::Pod for super::ServerHello {}
}

/// Record content types.
pub mod content {
    pub const CHANGE_CIPHER_SPEC: u8 = 20;
    pub const ALERT: u8 = 21;
    pub const HANDSHAKE: u8 = 22;
    pub const APPLICATION_DATA: u8 = 23;
    pub const HEARTBEAT: u8 = 24;
}

/// Handshake message types.
pub mod handshake {
    pub const HELLO_REQUEST: u8 = 0;
    pub const CLIENT_HELLO: u8 = 1;
    pub const SERVER_HELLO: u8 = 2;
    pub const NEW_SESSION_TICKET: u8 = 4;
    pub const CERTIFICATE: u8 = 11;
    pub const SERVER_KEY_EXCHANGE: u8 = 12;
    pub const CERTIFICATE_REQUEST: u8 = 13;
    pub const SERVER_HELLO_DONE: u8 = 14;
    pub const CERTIFICATE_VERIFY: u8 = 15;
    pub const CLIENT_KEY_EXCHANGE: u8 = 16;
    pub const FINISHED: u8 = 20;
    pub const CERTIFICATE_STATUS: u8 = 22;
}

/// [`Direction::state`] values. All-zero memory is a fresh direction.
pub mod state {
    /// Nothing seen yet.
    pub const FRESH: u8 = 0;
    /// Following a plaintext handshake.
    pub const ACTIVE: u8 = 1;
    /// ChangeCipherSpec, application data or a TLS 1.3 ServerHello seen: nothing more to read.
    pub const DONE: u8 = 2;
    /// The first bytes were not a TLS handshake record.
    pub const NOT_TLS: u8 = 3;
    /// Broken framing (or a source that failed, or too many spans in a chunk).
    pub const MALFORMED: u8 = 4;
}

/// [`Direction::flags`]: what this direction has shown so far (sticky).
pub mod dir_flags {
    /// A complete ClientHello was buffered (this is the client's direction).
    pub const CLIENT_HELLO: u32 = 1 << 0;
    /// A complete ServerHello (not a HelloRetryRequest) was buffered.
    pub const SERVER_HELLO: u32 = 1 << 1;
    /// A HelloRetryRequest was seen (server's direction) or announced by [`super::note_hello_retry`].
    pub const HELLO_RETRY: u32 = 1 << 2;
    /// A hello retry is under way: one compatibility ChangeCipherSpec does not end the direction.
    pub const HRR_PENDING: u32 = 1 << 3;
    /// The compatibility ChangeCipherSpec of a hello retry was skipped.
    pub const HRR_CCS: u32 = 1 << 4;
    pub const CERT_REQUEST: u32 = 1 << 5;
    /// A Certificate message with a non-empty list.
    pub const CERTIFICATE: u32 = 1 << 6;
    /// A Certificate message with an empty list.
    pub const CERTIFICATE_EMPTY: u32 = 1 << 7;
    pub const CHANGE_CIPHER_SPEC: u32 = 1 << 8;
    pub const APPLICATION_DATA: u32 = 1 << 9;
    /// The ServerHello negotiated TLS 1.3.
    pub const TLS13: u32 = 1 << 10;
    /// The buffer holds a complete hello (`hello_type` says which).
    pub const HELLO_COMPLETE: u32 = 1 << 11;
    /// The buffered hello was longer than `HELLO_CAP`.
    pub const HELLO_TRUNCATED: u32 = 1 << 12;
    pub const ALERT: u32 = 1 << 13;
}

/// What one [`feed`] call saw (bit flags).
#[repr(transparent)]
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct Events(pub u32);

impl Events {
    pub const NONE: Events = Events(0);
    /// A complete ClientHello is buffered: call [`parse_client_hello`].
    pub const CLIENT_HELLO: Events = Events(1 << 0);
    /// A complete ServerHello or HelloRetryRequest is buffered: call [`parse_server_hello`].
    pub const SERVER_HELLO: Events = Events(1 << 1);
    /// The ServerHello was a HelloRetryRequest (with `SERVER_HELLO`).
    pub const HELLO_RETRY: Events = Events(1 << 2);
    /// CertificateRequest (the server asks for a client certificate, TLS ≤ 1.2).
    pub const CERT_REQUEST: Events = Events(1 << 3);
    /// A Certificate message with a non-empty certificate list.
    pub const CERTIFICATE: Events = Events(1 << 4);
    /// A Certificate message with an empty list (a client declining to authenticate).
    pub const CERTIFICATE_EMPTY: Events = Events(1 << 5);
    /// The direction is done: ChangeCipherSpec, application data or a TLS 1.3 ServerHello.
    pub const DONE: Events = Events(1 << 6);
    /// The first bytes are not a TLS handshake record: the direction is ignored from now on.
    pub const NOT_TLS: Events = Events(1 << 7);
    /// Something did not parse. With [`state::MALFORMED`] the direction stopped; otherwise one
    /// message was ignored (a second hello in one call, a short Certificate, a ServerHello
    /// whose version could not be read).
    pub const MALFORMED: Events = Events(1 << 8);
    /// The buffered hello was longer than [`HELLO_CAP`] (with `CLIENT_HELLO`/`SERVER_HELLO`).
    pub const TRUNCATED: Events = Events(1 << 9);
    /// An alert record.
    pub const ALERT: Events = Events(1 << 10);
    /// The call stopped before `end` (after a complete hello, or when the span budget
    /// [`MAX_SPANS`] ran out): handle this call's events, then call `feed` again with
    /// `start = dir.resume`.
    pub const MORE: Events = Events(1 << 11);
    /// The [`ByteSource`] refused a load inside `[start, end)`: the direction stopped.
    pub const SOURCE_ERROR: Events = Events(1 << 12);

    #[inline(always)]
    pub const fn contains(self, other: Events) -> bool {
        self.0 & other.0 == other.0
    }
    #[inline(always)]
    pub const fn intersects(self, other: Events) -> bool {
        self.0 & other.0 != 0
    }
    #[inline(always)]
    pub const fn is_empty(self) -> bool {
        self.0 == 0
    }
}

impl core::ops::BitOr for Events {
    type Output = Events;
    #[inline(always)]
    fn bitor(self, rhs: Events) -> Events {
        Events(self.0 | rhs.0)
    }
}

impl core::ops::BitOrAssign for Events {
    #[inline(always)]
    fn bitor_assign(&mut self, rhs: Events) {
        self.0 |= rhs.0;
    }
}

/// Where the parser reads bytes from: the kernel implements it over sk_msg / sk_skb
/// (`bpf_skb_load_bytes`, `bpf_msg_pull_data` + bounded copies, ...), tests over slices.
pub trait ByteSource {
    /// Copies `src[offset..offset + dst.len()]` into `dst`; `false` if out of range.
    /// `feed` never calls it with an empty `dst`, and `dst.len() <= LOAD_MAX`.
    fn load(&self, offset: u32, dst: &mut [u8]) -> bool;
}

#[cfg(not(target_arch = "bpf"))]
impl ByteSource for [u8] {
    #[inline]
    fn load(&self, offset: u32, dst: &mut [u8]) -> bool {
        let start = offset as usize;
        let Some(end) = start.checked_add(dst.len()) else {
            return false;
        };
        match self.get(start..end) {
            Some(s) => {
                dst.copy_from_slice(s);
                true
            }
            None => false,
        }
    }
}

const KEEP_NONE: u8 = 0;
const KEEP_HELLO: u8 = 1;
const KEEP_CERT: u8 = 2;

/// Parser state of one direction of one connection. Lives in a BPF map value: `repr(C)`,
/// `Copy`, no pointers, explicit padding, [`DIRECTION_SIZE`] bytes. All-zero is a fresh
/// direction (see [`Direction::reset`] to reuse one).
#[repr(C)]
#[derive(Clone, Copy)]
pub struct Direction {
    /// [`state`] value.
    pub state: u8,
    /// Bytes of the current record header collected (0..=5; 5 = inside the record body).
    pub rec_hdr_len: u8,
    /// Bytes of the current handshake message header collected (0..=4; 4 = inside its body).
    pub hs_hdr_len: u8,
    /// What happens to the current message body: nothing, hello buffer, Certificate prefix.
    pub keep: u8,
    /// Content type of the current record (valid once its header is complete).
    pub rec_type: u8,
    /// Type of the current handshake message (valid once its header is complete).
    pub hs_type: u8,
    /// Bytes of the Certificate prefix collected (0..=3).
    pub cert_prefix_len: u8,
    /// Type of the message in `hello` (1 ClientHello, 2 ServerHello, 0 none).
    pub hello_type: u8,
    /// Record header bytes collected so far, big-endian, one byte shifted in at a time.
    pub rec_hdr: u64,
    /// Handshake header bytes collected so far (type, 24-bit length), likewise.
    pub hs_hdr: u32,
    /// First 3 bytes of the current Certificate body (the certificate_list length).
    pub cert_prefix: u32,
    /// Body bytes left in the current record.
    pub rec_left: u32,
    /// Body bytes left in the current handshake message.
    pub hs_left: u32,
    /// Declared body length of the buffered hello.
    pub hello_msg_len: u32,
    /// Bytes of it buffered (≤ `HELLO_CAP`).
    pub hello_len: u32,
    /// [`dir_flags`].
    pub flags: u32,
    /// Bit t set when a handshake message of type t (< 32) was seen.
    pub hs_seen: u32,
    /// Records seen.
    pub records: u32,
    /// Version and suite the ServerHello chose (server's direction; what ended a TLS 1.3
    /// direction). Report from [`parse_server_hello`], which checks the whole message.
    pub server_version: u16,
    pub server_cipher: u16,
    /// Scratch word for [`launder`] (no meaning between calls).
    pub scratch: u32,
    /// Events of the `feed` call under way, kept in the map value rather than on the stack so
    /// that the verifier does not split its analysis on every combination of bits.
    pub events: u32,
    /// Where the next `feed` call must start after [`Events::MORE`].
    pub resume: u32,
    pub _pad: u32,
    /// Hello body; the last `LOAD_MAX` bytes are slack and never hold data.
    pub hello: [u8; HELLO_BUF],
}

impl Direction {
    /// A fresh direction (all zero).
    pub const ZERO: Direction = Direction {
        state: 0,
        rec_hdr_len: 0,
        hs_hdr_len: 0,
        keep: 0,
        rec_type: 0,
        hs_type: 0,
        cert_prefix_len: 0,
        hello_type: 0,
        rec_hdr: 0,
        hs_hdr: 0,
        cert_prefix: 0,
        rec_left: 0,
        hs_left: 0,
        hello_msg_len: 0,
        hello_len: 0,
        flags: 0,
        hs_seen: 0,
        records: 0,
        server_version: 0,
        server_cipher: 0,
        scratch: 0,
        events: 0,
        resume: 0,
        _pad: 0,
        hello: [0; HELLO_BUF],
    };

    /// Makes a used direction fresh again without touching the buffer (cheap, bounded).
    #[inline(always)]
    pub fn reset(&mut self) {
        self.state = state::FRESH;
        self.rec_hdr_len = 0;
        self.hs_hdr_len = 0;
        self.keep = KEEP_NONE;
        self.rec_type = 0;
        self.hs_type = 0;
        self.cert_prefix_len = 0;
        self.hello_type = 0;
        self.rec_hdr = 0;
        self.hs_hdr = 0;
        self.cert_prefix = 0;
        self.rec_left = 0;
        self.hs_left = 0;
        self.hello_msg_len = 0;
        self.hello_len = 0;
        self.flags = 0;
        self.hs_seen = 0;
        self.records = 0;
        self.server_version = 0;
        self.server_cipher = 0;
    }

    /// Whether `feed` has nothing more to do here.
    #[inline(always)]
    pub fn finished(&self) -> bool {
        self.state >= state::DONE
    }
}

/// Passes `v` through memory the verifier does not track (a map value): the result has the
/// same value but no known relation to how it was computed. Bounds are then re-established by
/// masks right where a value becomes an offset or a length. Without this, the verifier keeps
/// every offset and length precise, sees loop iterations as distinct states and runs out of
/// its instruction budget. `cell` must point into the caller's map value (or, in user space,
/// anywhere valid).
#[inline(always)]
pub(crate) fn launder(cell: *mut u32, v: u32) -> u32 {
    // SAFETY: `cell` points to a live, aligned u32 (a field of a `&mut` the caller holds).
    unsafe {
        core::ptr::write_volatile(cell, v);
        core::ptr::read_volatile(cell)
    }
}

/// Tells the client's direction that the server sent a HelloRetryRequest: its compatibility
/// ChangeCipherSpec will not end it, and its second ClientHello will be buffered.
#[inline(always)]
pub fn note_hello_retry(dir: &mut Direction) {
    if dir.state < state::DONE {
        dir.flags |= dir_flags::HELLO_RETRY | dir_flags::HRR_PENDING;
    }
}

#[inline(always)]
fn stop(dir: &mut Direction, st: u8, bits: Events) {
    dir.state = st;
    emit(dir, bits.0);
}

/// Adds event bits to the call's accumulator (volatile: see [`Direction::events`]).
#[inline(always)]
fn emit(dir: &mut Direction, bits: u32) {
    let p = &mut dir.events as *mut u32;
    // SAFETY: `p` is derived from a live `&mut`.
    unsafe { core::ptr::write_volatile(p, core::ptr::read_volatile(p) | bits) }
}

/// The event bits accumulated so far in this call.
#[inline(always)]
fn events_now(dir: &Direction) -> u32 {
    // SAFETY: reads a field of a live reference.
    unsafe { core::ptr::read_volatile(&dir.events) }
}

/// Loads `n` (1..=5) bytes at `pos` into `tmp`.
#[inline(always)]
fn load_small<S: ByteSource + ?Sized>(src: &S, pos: u32, tmp: &mut [u8; 8], n: u32) -> bool {
    // 1..=8 for the verifier; callers pass 1..=5.
    let n = (((n.wrapping_sub(1)) & 7) + 1) as usize;
    match tmp.get_mut(..n) {
        Some(dst) => src.load(pos, dst),
        None => false,
    }
}

/// Feeds bytes `[start, end)` of one chunk of this direction's stream, in stream order.
/// Returns what happened; see [`Events`]. Once the direction is finished, returns at once.
/// Stops after a complete hello and after [`MAX_SPANS`] spans: with [`Events::MORE`], handle
/// the events, then call again from `dir.resume`.
#[inline(always)]
pub fn feed<S: ByteSource + ?Sized>(dir: &mut Direction, src: &S, start: u32, end: u32) -> Events {
    if dir.state >= state::DONE {
        return Events::NONE;
    }
    // SAFETY: writes a field of a live `&mut`.
    unsafe { core::ptr::write_volatile(&mut dir.events, 0) };
    let mut pos = start;
    let mut i = 0;
    while i < MAX_SPANS {
        // A complete hello ends the call: the caller parses it before the buffer is reused.
        if pos >= end
            || dir.state >= state::DONE
            || events_now(dir) & (Events::CLIENT_HELLO.0 | Events::SERVER_HELLO.0) != 0
        {
            break;
        }
        pos = step(dir, src, pos, end);
        i += 1;
    }
    if pos < end && dir.state < state::DONE {
        dir.resume = pos;
        emit(dir, Events::MORE.0);
    }
    // A real ServerHello completed in this call: read its version. TLS 1.3 ends the direction
    // (what follows is encrypted). Done here, out of the span loop, to keep the loop small.
    let ev = events_now(dir);
    if ev & Events::SERVER_HELLO.0 != 0 && ev & Events::HELLO_RETRY.0 == 0 {
        if let Some((version, cipher)) = hello::server_hello_choice(dir) {
            dir.server_version = version;
            dir.server_cipher = cipher;
            if version == versions::TLS13 {
                dir.flags |= dir_flags::TLS13;
                if dir.state < state::DONE {
                    stop(dir, state::DONE, Events::DONE);
                }
            }
        } else {
            emit(dir, Events::MALFORMED.0);
        }
    }
    Events(events_now(dir))
}

/// User space: feeds a whole chunk, calling [`feed`] again while it returns [`Events::MORE`],
/// and calls `on_events` after each call (where the hellos must be parsed).
#[cfg(not(target_arch = "bpf"))]
pub fn feed_all<S: ByteSource + ?Sized>(
    dir: &mut Direction,
    src: &S,
    start: u32,
    end: u32,
    mut on_events: impl FnMut(&mut Direction, Events),
) -> Events {
    let mut all = Events::NONE;
    let mut pos = start;
    // Each call consumes at least one byte or finishes the direction.
    for _ in 0..=(end.saturating_sub(start)) {
        let ev = feed(dir, src, pos, end);
        all |= ev;
        on_events(dir, ev);
        if !ev.contains(Events::MORE) {
            break;
        }
        pos = dir.resume;
    }
    all
}

/// Handles one span starting at `pos < end`; returns the new position. Consumes at least one
/// byte unless it stops the direction.
#[inline(always)]
fn step<S: ByteSource + ?Sized>(dir: &mut Direction, src: &S, pos: u32, end: u32) -> u32 {
    let avail = end - pos;
    let cell = &mut dir.scratch as *mut u32;
    let mut tmp = [0u8; 8];

    // Record header: up to 5 bytes shifted into `rec_hdr`.
    if dir.rec_hdr_len < 5 {
        let have = dir.rec_hdr_len as u32;
        let n = launder(cell, min(5 - have, avail));
        if !load_small(src, pos, &mut tmp, n) {
            stop(
                dir,
                state::MALFORMED,
                Events::SOURCE_ERROR | Events::MALFORMED,
            );
            return pos;
        }
        let fresh = dir.state == state::FRESH;
        let mut acc = dir.rec_hdr;
        let mut bad = false;
        let mut k = 0u32;
        while k < 5 {
            if k < n {
                let b = tmp[(k & 7) as usize];
                let at = have + k;
                // The first record must start 0x16 0x03 (0x00..=0x04), or be an alert (a TLS
                // peer refusing before any handshake): checked as bytes arrive.
                if fresh
                    && ((at == 0 && b != content::HANDSHAKE && b != content::ALERT)
                        || (at == 1 && b != 3)
                        || (at == 2 && b > 4))
                {
                    bad = true;
                }
                acc = (acc << 8) | b as u64;
            }
            k += 1;
        }
        dir.rec_hdr = acc;
        dir.rec_hdr_len = (have + n) as u8;
        if bad {
            stop(dir, state::NOT_TLS, Events::NOT_TLS);
            return pos + n;
        }
        if have + n >= 5 {
            on_record_header(dir);
        }
        return pos + n;
    }

    let in_rec = min(avail, dir.rec_left);
    if in_rec == 0 {
        // Unreachable (empty records are closed at their header); stay safe.
        dir.rec_hdr_len = 0;
        dir.rec_hdr = 0;
        return pos;
    }
    if dir.rec_type != content::HANDSHAKE {
        // Alert or heartbeat body: skip.
        dir.rec_left -= in_rec;
        if dir.rec_left == 0 {
            end_record(dir);
        }
        return pos + in_rec;
    }

    // Handshake message header: 4 bytes shifted into `hs_hdr`.
    if dir.hs_hdr_len < 4 {
        let have = dir.hs_hdr_len as u32;
        let n = launder(cell, min(4 - have, in_rec));
        if !load_small(src, pos, &mut tmp, n) {
            stop(
                dir,
                state::MALFORMED,
                Events::SOURCE_ERROR | Events::MALFORMED,
            );
            return pos;
        }
        let mut acc = dir.hs_hdr;
        let mut k = 0u32;
        while k < 4 {
            if k < n {
                acc = (acc << 8) | tmp[(k & 7) as usize] as u32;
            }
            k += 1;
        }
        dir.hs_hdr = acc;
        dir.hs_hdr_len = (have + n) as u8;
        dir.rec_left -= n;
        if have + n >= 4 {
            on_handshake_header(dir);
        }
        if dir.rec_left == 0 && dir.state < state::DONE {
            end_record(dir);
        }
        return pos + n;
    }

    // Handshake message body.
    let mut n = min(in_rec, dir.hs_left);
    if n == 0 {
        // Unreachable (empty messages complete at their header); stay safe.
        dir.hs_hdr_len = 0;
        dir.hs_hdr = 0;
        return pos;
    }
    if dir.keep == KEEP_HELLO {
        let have = dir.hello_len;
        if (have as usize) < HELLO_CAP {
            n = min(min(n, LOAD_MAX as u32), HELLO_CAP as u32 - have);
            let off = (launder(cell, have) as usize) & HELLO_MASK;
            let len = ((launder(cell, n).wrapping_sub(1) as usize) & (LOAD_MAX - 1)) + 1;
            let ok = match dir.hello.get_mut(off..off + len) {
                Some(dst) => src.load(pos, dst),
                None => false,
            };
            if !ok {
                stop(
                    dir,
                    state::MALFORMED,
                    Events::SOURCE_ERROR | Events::MALFORMED,
                );
                return pos;
            }
            dir.hello_len = have + n;
        } else {
            dir.flags |= dir_flags::HELLO_TRUNCATED;
        }
    } else if dir.keep == KEEP_CERT && dir.cert_prefix_len < 3 {
        let have = dir.cert_prefix_len as u32;
        n = launder(cell, min(n, 3 - have));
        if !load_small(src, pos, &mut tmp, n) {
            stop(
                dir,
                state::MALFORMED,
                Events::SOURCE_ERROR | Events::MALFORMED,
            );
            return pos;
        }
        let mut acc = dir.cert_prefix;
        let mut k = 0u32;
        while k < 3 {
            if k < n {
                acc = (acc << 8) | tmp[(k & 7) as usize] as u32;
            }
            k += 1;
        }
        dir.cert_prefix = acc;
        dir.cert_prefix_len = (have + n) as u8;
    }
    dir.rec_left -= n;
    dir.hs_left -= n;
    if dir.hs_left == 0 {
        on_handshake_complete(dir);
    }
    if dir.rec_left == 0 {
        end_record(dir);
    }
    pos + n
}

#[inline(always)]
fn end_record(dir: &mut Direction) {
    dir.rec_hdr_len = 0;
    dir.rec_hdr = 0;
}

#[inline(always)]
fn min(a: u32, b: u32) -> u32 {
    if a < b { a } else { b }
}

#[inline(always)]
fn mid_message(dir: &Direction) -> bool {
    dir.hs_hdr_len != 0
}

#[inline(always)]
fn on_record_header(dir: &mut Direction) {
    let hdr = dir.rec_hdr;
    let typ = (hdr >> 32) as u8;
    let major = (hdr >> 24) as u8;
    let len = (hdr & 0xffff) as u32;
    dir.rec_type = typ;
    if dir.state == state::FRESH {
        dir.state = state::ACTIVE;
    }
    if major != 3 || len > MAX_RECORD_LEN {
        stop(dir, state::MALFORMED, Events::MALFORMED);
        return;
    }
    dir.records = dir.records.wrapping_add(1);
    dir.rec_left = len;
    match typ {
        content::HANDSHAKE => {}
        content::CHANGE_CIPHER_SPEC => {
            if mid_message(dir) {
                stop(dir, state::MALFORMED, Events::MALFORMED);
                return;
            }
            if dir.flags & (dir_flags::HRR_PENDING | dir_flags::HRR_CCS) == dir_flags::HRR_PENDING {
                // The TLS 1.3 compatibility ChangeCipherSpec around a HelloRetryRequest:
                // the real hello still follows in plaintext.
                dir.flags |= dir_flags::HRR_CCS;
            } else {
                dir.flags |= dir_flags::CHANGE_CIPHER_SPEC;
                stop(dir, state::DONE, Events::DONE);
                return;
            }
        }
        content::APPLICATION_DATA => {
            if mid_message(dir) {
                stop(dir, state::MALFORMED, Events::MALFORMED);
                return;
            }
            dir.flags |= dir_flags::APPLICATION_DATA;
            stop(dir, state::DONE, Events::DONE);
            return;
        }
        content::ALERT => {
            dir.flags |= dir_flags::ALERT;
            emit(dir, Events::ALERT.0);
        }
        content::HEARTBEAT => {}
        _ => {
            stop(dir, state::MALFORMED, Events::MALFORMED);
            return;
        }
    }
    if len == 0 {
        end_record(dir);
    }
}

#[inline(always)]
fn on_handshake_header(dir: &mut Direction) {
    let typ = (dir.hs_hdr >> 24) as u8;
    let len = dir.hs_hdr & 0x00ff_ffff;
    dir.hs_type = typ;
    let first = dir.hs_seen == 0;
    if typ < 32 {
        dir.hs_seen |= 1 << typ;
    }
    dir.hs_left = len;
    dir.keep = KEEP_NONE;
    if first && typ != handshake::CLIENT_HELLO && typ != handshake::SERVER_HELLO {
        stop(dir, state::MALFORMED, Events::MALFORMED);
        return;
    }
    match typ {
        handshake::CLIENT_HELLO | handshake::SERVER_HELLO => {
            let f = dir.flags;
            let expected = if typ == handshake::CLIENT_HELLO {
                // First ClientHello, or the second one after a HelloRetryRequest.
                f & (dir_flags::CLIENT_HELLO | dir_flags::SERVER_HELLO) == 0
                    || f & (dir_flags::HRR_PENDING | dir_flags::SERVER_HELLO)
                        == dir_flags::HRR_PENDING
            } else {
                f & (dir_flags::CLIENT_HELLO | dir_flags::SERVER_HELLO) == 0
            };
            let hello_this_call =
                events_now(dir) & (Events::CLIENT_HELLO.0 | Events::SERVER_HELLO.0) != 0;
            if !expected || hello_this_call {
                // Not where a hello belongs, or the buffer still holds this call's hello.
                emit(dir, Events::MALFORMED.0);
            } else {
                dir.keep = KEEP_HELLO;
                dir.hello_type = typ;
                dir.hello_len = 0;
                dir.hello_msg_len = len;
                dir.flags &= !(dir_flags::HELLO_COMPLETE | dir_flags::HELLO_TRUNCATED);
            }
        }
        handshake::CERTIFICATE => {
            dir.keep = KEEP_CERT;
            dir.cert_prefix_len = 0;
            dir.cert_prefix = 0;
        }
        handshake::CERTIFICATE_REQUEST => {
            dir.flags |= dir_flags::CERT_REQUEST;
            emit(dir, Events::CERT_REQUEST.0);
        }
        _ => {}
    }
    if len == 0 {
        on_handshake_complete(dir);
    }
}

/// The hello-retry magic: ServerHello.random = SHA-256("HelloRetryRequest").
pub const HRR_RANDOM: [u8; 32] = [
    0xcf, 0x21, 0xad, 0x74, 0xe5, 0x9a, 0x61, 0x11, 0xbe, 0x1d, 0x8c, 0x02, 0x1e, 0x65, 0xb8, 0x91,
    0xc2, 0xa2, 0x11, 0x16, 0x7a, 0xbb, 0x8c, 0x5e, 0x07, 0x9e, 0x09, 0xe2, 0xc8, 0xa8, 0x33, 0x9c,
];

/// Whether the buffered ServerHello carries the HelloRetryRequest random. The accumulator is
/// laundered at each byte: otherwise the compiler turns the comparison into 32 branches and the
/// verifier into 2^32 states.
#[inline(always)]
pub(crate) fn has_hrr_random(hello: &[u8; HELLO_BUF], hello_len: u32, cell: *mut u32) -> bool {
    if hello_len < 34 {
        return false;
    }
    let mut diff = 0u32;
    let mut k = 0usize;
    while k < 32 {
        diff = launder(
            cell,
            diff | (hello[(2 + k) & HELLO_MASK] ^ HRR_RANDOM[k & 31]) as u32,
        );
        k += 1;
    }
    diff == 0
}

#[inline(always)]
fn on_handshake_complete(dir: &mut Direction) {
    let typ = dir.hs_type;
    if dir.keep == KEEP_HELLO {
        dir.flags |= dir_flags::HELLO_COMPLETE;
        if dir.hello_msg_len as usize > HELLO_CAP {
            dir.flags |= dir_flags::HELLO_TRUNCATED;
            emit(dir, Events::TRUNCATED.0);
        }
        if typ == handshake::CLIENT_HELLO {
            dir.flags |= dir_flags::CLIENT_HELLO;
            dir.flags &= !dir_flags::HRR_PENDING;
            emit(dir, Events::CLIENT_HELLO.0);
        } else if has_hrr_random(&dir.hello, dir.hello_len, &mut dir.scratch as *mut u32) {
            dir.flags |= dir_flags::HELLO_RETRY | dir_flags::HRR_PENDING;
            emit(dir, Events::SERVER_HELLO.0 | Events::HELLO_RETRY.0);
        } else {
            dir.flags |= dir_flags::SERVER_HELLO;
            dir.flags &= !dir_flags::HRR_PENDING;
            emit(dir, Events::SERVER_HELLO.0);
        }
    } else if dir.keep == KEEP_CERT {
        if dir.cert_prefix_len >= 3 {
            let list = dir.cert_prefix & 0x00ff_ffff;
            if list == 0 {
                dir.flags |= dir_flags::CERTIFICATE_EMPTY;
                emit(dir, Events::CERTIFICATE_EMPTY.0);
            } else {
                dir.flags |= dir_flags::CERTIFICATE;
                emit(dir, Events::CERTIFICATE.0);
            }
        } else {
            emit(dir, Events::MALFORMED.0);
        }
    }
    dir.keep = KEEP_NONE;
    dir.hs_hdr_len = 0;
    dir.hs_hdr = 0;
    dir.hs_left = 0;
}
