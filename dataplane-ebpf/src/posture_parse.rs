//! Glue between the stream programs and the TLS parser (`dataplane_common::tls`, the same code
//! user space tests and fuzzes). Each chunk is handled in stages chained by tail calls, so that
//! each program is verified on its own: a *feed* stage runs one `tls::feed` call; a *hello*
//! stage reads a hello the feed stage completed; when the parser stops early (`MORE`) the feed
//! stage runs again from the cursor kept in the map.

use dataplane_common::{
    posture::{ConnKey, SNI_LEN, SniName, mtls, roles, stats},
    tls::{self, ByteSource, Direction, Events, ServerHello, dir_flags, versions},
};

use crate::posture_conn::{ConnTls, Handshake, give_up, plaintext, record};

/// Parser state of one connection: both directions plus what the hellos said.
#[repr(C)]
#[derive(Clone, Copy)]
pub struct ParseState {
    pub egress: Direction,
    pub ingress: Direction,
    /// The ClientHello's server name (interned into SNI_NAMES straight from here).
    pub sni: SniName,
    pub version: u16,
    pub cipher: u16,
    /// 1 when the ClientHello went out (egress), 2 when it came in (ingress), 0 not yet.
    pub client_way: u8,
    /// 1 while a chunk is being continued through tail calls (`cursor` is where).
    pub continuing: u8,
    /// 1 if the server name was longer than `sni` holds.
    pub sni_overlong: u8,
    pub _pad: u8,
    /// What the ClientHello offered.
    pub offer: tls::Offer,
    /// Sequence number of the next byte the socket will receive (set at established).
    pub ingress_seq: u32,
    /// ... and of the next byte it will send (read by cgroup_skb egress).
    pub egress_seq: u32,
    /// 1: the socket is in the sockhash and sk_msg reads what it sends (cgroup_skb egress
    /// leaves it alone).
    pub egress_by_msg: u8,
    pub _pad2: [u8; 3],
    pub cursor: u32,
    /// Events of the last feed stage, for the hello stage.
    pub pending: u32,
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

/// What the stream program does after a stage.
pub enum Next {
    Done,
    Hello,
    Feed,
    /// A governed client's ClientHello: decide its server name (sk_msg only).
    Sni,
    /// A ClientHello: read what it offers.
    Offer,
}

fn dir_mut(st: &mut ParseState, way: Way) -> &mut Direction {
    match way {
        Way::Egress => &mut st.egress,
        Way::Ingress => &mut st.ingress,
    }
}

/// Feed stage: one `tls::feed` call over [first, len) of this chunk (from the cursor when it
/// continues). It only records what
/// happened (`pending`, `cursor`); everything else is the hello stage's, so that this program
/// calls nothing but the parser (the verifier's stack and instruction budgets).
#[inline(always)]
pub fn feed_stage<S: ByteSource>(
    conn: &mut ConnTls,
    way: Way,
    src: &S,
    first: u32,
    len: u32,
) -> Next {
    let st = &mut conn.parse;
    let start = if st.continuing != 0 { st.cursor } else { first };
    st.continuing = 0;
    let dir = dir_mut(st, way);
    let ev = tls::feed(dir, src, start, len);
    let (state, resume) = (dir.state, dir.resume);
    let mut pending = ev.0;
    if ev.intersects(Events::MALFORMED | Events::SOURCE_ERROR) && state > tls::state::DONE {
        pending |= Events::MALFORMED.0;
    }
    st.pending = pending;
    st.cursor = resume;
    if ev.contains(Events::MORE) && !ev.intersects(Events::CLIENT_HELLO | Events::SERVER_HELLO) {
        st.continuing = 1;
        return Next::Feed;
    }
    Next::Hello
}

/// SNI stage (after a governed client's ClientHello): cut, or go on with the chunk.
#[inline(always)]
pub fn sni_stage(key: &ConnKey, conn: &mut ConnTls) -> Option<Next> {
    if !crate::sni_verdict::allows(key, conn) {
        return None;
    }
    Some(Next::Offer)
}

/// Offer stage (after a ClientHello went `way`): reads what it offers, then goes on with the
/// chunk.
#[inline(always)]
pub fn offer_stage(key: &ConnKey, conn: &mut ConnTls, way: Way) -> Next {
    match way {
        Way::Egress => crate::posture_offer::read_offer::<true>(key, conn),
        Way::Ingress => crate::posture_offer::read_offer::<false>(key, conn),
    }
    if conn.parse.continuing != 0 {
        return Next::Feed;
    }
    Next::Done
}

/// Hello stage: reads the hello the feed stage completed, then continues the chunk or finishes.
#[inline(always)]
pub fn hello_stage(key: &ConnKey, conn: &mut ConnTls, way: Way, sh: &mut ServerHello) -> Next {
    let ev = Events(conn.parse.pending);
    conn.parse.pending = 0;
    if ev.contains(Events::NOT_TLS) {
        if conn.parse.client_way == 0 {
            plaintext(key, conn);
        } else {
            give_up(key, stats::MALFORMED);
        }
        return Next::Done;
    }
    if ev.contains(Events::MALFORMED) {
        give_up(key, stats::MALFORMED);
        return Next::Done;
    }
    let st = &mut conn.parse;
    if ev.contains(Events::CLIENT_HELLO) {
        let dir = match way {
            Way::Egress => &st.egress,
            Way::Ingress => &st.ingress,
        };
        let n = tls::client_hello_sni(dir, &mut st.sni.bytes);
        st.sni.len = n.min(SNI_LEN) as u32;
        st.sni_overlong = u8::from(n > SNI_LEN);
        st.client_way = way as u8;
        st.continuing = u8::from(ev.contains(Events::MORE));
        if way == Way::Egress && conn.role == roles::CLIENT {
            return Next::Sni;
        }
        return Next::Offer;
    }
    if ev.contains(Events::SERVER_HELLO) {
        let dir = match way {
            Way::Egress => &st.egress,
            Way::Ingress => &st.ingress,
        };
        if tls::parse_server_hello(dir, sh) {
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
    }
    if ev.contains(Events::MORE) {
        st.continuing = 1;
        return Next::Feed;
    }
    finish_if_complete(key, conn);
    Next::Done
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
    };
    record(key, conn, &h);
}
