//! Glue between the stream programs and the TLS parser (`dataplane_common::tls`, the same code
//! user space tests and fuzzes): per-connection state of both directions, and the decision of
//! when a handshake is complete enough to record.

use dataplane_common::{
    posture::{ConnKey, SNI_LEN, mtls, stats},
    tls::{self, ByteSource, Direction, Events, ServerHello, dir_flags, versions},
};

use core::ffi::c_void;

use aya_ebpf::helpers::generated::bpf_loop;

use crate::{
    posture_conn::{ConnTls, Handshake, give_up, plaintext, record},
    posture_maps::{CONNS, SCRATCH},
};

/// Parser state of one connection: both directions plus what the hellos said.
#[repr(C)]
#[derive(Clone, Copy)]
pub struct ParseState {
    pub egress: Direction,
    pub ingress: Direction,
    pub sni: [u8; SNI_LEN],
    pub sni_len: u16,
    pub version: u16,
    pub cipher: u16,
    /// 1 when the ClientHello went out (egress), 2 when it came in (ingress), 0 not yet.
    pub client_way: u8,
    pub _pad: u8,
}

/// Which way the bytes go, seen from the governed socket.
#[derive(Clone, Copy, PartialEq, Eq)]
pub enum Way {
    Egress = 1,
    Ingress = 2,
}

/// Per-CPU scratch for the parser's outputs (too large for the BPF stack).
#[repr(C)]
#[derive(Clone, Copy)]
pub struct Scratch {
    pub server_hello: ServerHello,
}

/// `feed` calls per chunk: the parser stops after each complete hello and after `MAX_SPANS`
/// spans; a TLS 1.2 server flight in one segment needs two or three.
const FEEDS_PER_CHUNK: u32 = 6;

/// State of one chunk's feed loop, shared with the bpf_loop callback through the stack.
#[repr(C)]
struct ChunkLoop<S> {
    key: ConnKey,
    src: S,
    way: u32,
    start: u32,
    len: u32,
    events: u32,
}

/// Feeds one chunk [0, len) of a tracked connection's bytes. Each `feed` call runs in a
/// bpf_loop callback: the verifier checks the parser once instead of once per call.
#[inline(always)]
pub fn feed<S: ByteSource>(key: &ConnKey, way: Way, src: S, len: u32) {
    let mut lp = ChunkLoop {
        key: *key,
        src,
        way: way as u32,
        start: 0,
        len,
        events: 0,
    };
    // SAFETY: callback and context live for the duration of the call.
    unsafe {
        bpf_loop(
            FEEDS_PER_CHUNK,
            feed_once::<S> as *mut c_void,
            (&mut lp as *mut ChunkLoop<S>).cast(),
            0,
        );
    }
    let Some(conn) = CONNS.get_ptr_mut(key) else {
        return;
    };
    // SAFETY: map value pointer, used within this program run.
    let conn = unsafe { &mut *conn };
    let ev = Events(lp.events);
    if ev.contains(Events::NOT_TLS) {
        if conn.parse.client_way == 0 {
            plaintext(key, conn);
        } else {
            give_up(key, stats::MALFORMED);
        }
        return;
    }
    if ev.contains(Events::MALFORMED) {
        give_up(key, stats::MALFORMED);
        return;
    }
    finish_if_complete(key, conn);
}

/// One `feed` call and the handling of the hello it completed; 1 stops the loop.
extern "C" fn feed_once<S: ByteSource>(_index: u64, ctx: *mut c_void) -> i64 {
    // SAFETY: bpf_loop passes back the ChunkLoop given to it.
    let lp = unsafe { &mut *(ctx as *mut ChunkLoop<S>) };
    let Some(conn) = CONNS.get_ptr_mut(&lp.key) else {
        return 1;
    };
    // SAFETY: map value pointer, used within this callback.
    let st = unsafe { &mut (*conn).parse };
    let egress = lp.way == Way::Egress as u32;
    let dir = if egress {
        &mut st.egress
    } else {
        &mut st.ingress
    };
    let ev = tls::feed(dir, &lp.src, lp.start, lp.len);
    let state = dir.state;
    let resume = dir.resume;
    if ev.intersects(Events::NOT_TLS) {
        lp.events |= Events::NOT_TLS.0;
        return 1;
    }
    if ev.intersects(Events::MALFORMED | Events::SOURCE_ERROR) && state > tls::state::DONE {
        lp.events |= Events::MALFORMED.0;
        return 1;
    }
    let way = if egress { Way::Egress } else { Way::Ingress };
    if ev.contains(Events::CLIENT_HELLO) {
        on_client_hello(st, way);
    }
    if ev.contains(Events::SERVER_HELLO) {
        if let Some(scratch) = SCRATCH.get_ptr_mut(0) {
            // SAFETY: per-CPU scratch, ours for this program run.
            on_server_hello(st, way, unsafe { &mut (*scratch).server_hello });
        }
    }
    if !ev.contains(Events::MORE) {
        return 1;
    }
    lp.start = resume;
    0
}

/// The SNI, with the parser's small verifier-friendly walk (the full ClientHello parse is for
/// user space: it exceeds the verifier's budget).
#[inline(always)]
fn on_client_hello(st: &mut ParseState, way: Way) {
    let dir = match way {
        Way::Egress => &st.egress,
        Way::Ingress => &st.ingress,
    };
    let n = tls::client_hello_sni(dir, &mut st.sni);
    st.sni_len = n.min(SNI_LEN) as u16;
    st.client_way = way as u8;
}

#[inline(always)]
fn on_server_hello(st: &mut ParseState, way: Way, sh: &mut ServerHello) {
    let dir = match way {
        Way::Egress => &st.egress,
        Way::Ingress => &st.ingress,
    };
    if !tls::parse_server_hello(dir, sh) {
        return;
    }
    if sh.hello_retry != 0 {
        let client = match way {
            Way::Egress => &mut st.ingress,
            Way::Ingress => &mut st.egress,
        };
        tls::note_hello_retry(client);
    } else {
        st.version = sh.version;
        st.cipher = sh.cipher;
    }
}

/// Records the handshake once its outcome is known: at the ServerHello for TLS 1.3 (mTLS is
/// encrypted: unknown), or when the client's direction is done for TLS ≤ 1.2 (its Certificate,
/// if any, came before its ChangeCipherSpec).
#[inline(never)]
fn finish_if_complete(key: &ConnKey, conn: &mut ConnTls) {
    let st = &conn.parse;
    if st.version == 0 || st.client_way == 0 {
        return;
    }
    let (client, server) = if st.client_way == Way::Egress as u8 {
        (&st.egress, &st.ingress)
    } else {
        (&st.ingress, &st.egress)
    };
    let m = if st.version >= versions::TLS13 {
        mtls::UNKNOWN
    } else if client.state < tls::state::DONE {
        return;
    } else if client.flags & dir_flags::CERTIFICATE != 0
        && server.flags & dir_flags::CERT_REQUEST != 0
    {
        mtls::YES
    } else {
        mtls::NO
    };
    let h = Handshake {
        version: st.version,
        cipher: st.cipher,
        mtls: m,
        sni: &st.sni,
        sni_len: st.sni_len as usize,
    };
    record(key, conn, &h);
}
