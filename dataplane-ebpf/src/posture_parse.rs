//! Glue between the stream programs and the TLS parser (`dataplane_common::tls`, the same code
//! user space tests and fuzzes): per-connection state of both directions, and the decision of
//! when a handshake is complete enough to record.

use dataplane_common::{
    posture::{ConnKey, SNI_LEN, mtls, stats},
    tls::{self, ByteSource, ClientHello, Direction, Events, ServerHello, dir_flags, versions},
};

use crate::{
    posture_conn::{ConnTls, Handshake, give_up, plaintext, record},
    posture_maps::SCRATCH,
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
    pub client_hello: ClientHello,
    pub server_hello: ServerHello,
}

/// Feeds one chunk [0, len) of a tracked connection's bytes. The steps are separate BPF
/// functions (not inlined) so that each has its own 512-byte stack frame.
#[inline(always)]
pub fn feed<S: ByteSource>(key: &ConnKey, conn: &mut ConnTls, way: Way, src: &S, len: u32) {
    let Some(scratch) = SCRATCH.get_ptr_mut(0) else {
        return;
    };
    // SAFETY: the per-CPU scratch is ours for the duration of the program.
    let scratch = unsafe { &mut *scratch };
    let ev = Events(step(&mut conn.parse, way, src, len));
    if ev.contains(Events::NOT_TLS) {
        if conn.parse.client_way == 0 {
            plaintext(key, conn);
        } else {
            give_up(key, stats::MALFORMED);
        }
        return;
    }
    let dir_state = match way {
        Way::Egress => conn.parse.egress.state,
        Way::Ingress => conn.parse.ingress.state,
    };
    if ev.intersects(Events::MALFORMED | Events::SOURCE_ERROR) && dir_state > tls::state::DONE {
        give_up(key, stats::MALFORMED);
        return;
    }
    if ev.contains(Events::CLIENT_HELLO) {
        on_client_hello(&mut conn.parse, way, &mut scratch.client_hello);
    }
    if ev.contains(Events::SERVER_HELLO) {
        on_server_hello(&mut conn.parse, way, &mut scratch.server_hello);
    }
    finish_if_complete(key, conn);
}

#[inline(never)]
fn step<S: ByteSource>(st: &mut ParseState, way: Way, src: &S, len: u32) -> u32 {
    let dir = match way {
        Way::Egress => &mut st.egress,
        Way::Ingress => &mut st.ingress,
    };
    tls::feed(dir, src, 0, len).0
}

#[inline(never)]
fn on_client_hello(st: &mut ParseState, way: Way, ch: &mut ClientHello) {
    let dir = match way {
        Way::Egress => &st.egress,
        Way::Ingress => &st.ingress,
    };
    if !tls::parse_client_hello(dir, ch) {
        return;
    }
    let n = (ch.sni_len as usize).min(SNI_LEN);
    let mut i = 0;
    while i < SNI_LEN {
        st.sni[i] = ch.sni[i];
        i += 1;
    }
    st.sni_len = n as u16;
    st.client_way = way as u8;
}

#[inline(never)]
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
#[inline(always)]
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
