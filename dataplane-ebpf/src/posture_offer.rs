//! Offer stage: what a ClientHello offers (highest version, weak suites, first ALPN), read with
//! `dataplane_common::tls`'s offer steps. Each loop is a bpf_loop whose body is one step, so the
//! verifier checks each step once instead of once per suite or extension.

use core::ffi::c_void;

use aya_ebpf::helpers::generated::bpf_loop;
use dataplane_common::{
    posture::ConnKey,
    tls::{self, Direction, OFFER_MAX_EXTENSIONS, OFFER_MAX_SUITES, OFFER_MAX_VERSIONS, OfferWalk},
};

use crate::{posture_conn::ConnTls, posture_maps::CONNS};

/// The walk, shared with the bpf_loop callbacks through the stack.
#[repr(C)]
struct OfferLoop {
    key: ConnKey,
    walk: OfferWalk,
}

/// Reads the offer of the ClientHello buffered in the egress (`EGRESS`) or ingress direction
/// into the connection's parse state. The direction is a constant of each instantiation: a
/// direction chosen at run time would leave the buffer's offset unknown to the verifier.
#[inline(never)]
pub fn read_offer<const EGRESS: bool>(key: &ConnKey, conn: &mut ConnTls) {
    let mut lp = OfferLoop {
        key: *key,
        walk: OfferWalk::default(),
    };
    if !tls::offer_start(direction::<EGRESS>(conn), &mut lp.walk) {
        return;
    }
    let ctx = (&mut lp as *mut OfferLoop).cast();
    // SAFETY: callbacks and context live for the duration of each call.
    unsafe {
        bpf_loop(OFFER_MAX_SUITES, suite::<EGRESS> as *mut c_void, ctx, 0);
        bpf_loop(
            OFFER_MAX_EXTENSIONS,
            extension::<EGRESS> as *mut c_void,
            ctx,
            0,
        );
        bpf_loop(OFFER_MAX_VERSIONS, version::<EGRESS> as *mut c_void, ctx, 0);
    }
    let st = &mut conn.parse;
    let dir = if EGRESS { &st.egress } else { &st.ingress };
    tls::offer_finish(dir, &lp.walk, &mut st.offer);
}

#[inline(always)]
fn direction<const EGRESS: bool>(conn: &ConnTls) -> &Direction {
    if EGRESS {
        &conn.parse.egress
    } else {
        &conn.parse.ingress
    }
}

/// Runs one step on the connection's direction; 1 stops the loop.
#[inline(always)]
fn step<const EGRESS: bool>(
    ctx: *mut c_void,
    f: impl FnOnce(&Direction, &mut OfferWalk) -> bool,
) -> i64 {
    // SAFETY: bpf_loop passes back the OfferLoop given to it.
    let lp = unsafe { &mut *(ctx as *mut OfferLoop) };
    let Some(conn) = CONNS.get_ptr(&lp.key) else {
        return 1;
    };
    // SAFETY: map value pointer, read within this callback.
    let dir = direction::<EGRESS>(unsafe { &*conn });
    if f(dir, &mut lp.walk) { 0 } else { 1 }
}

extern "C" fn suite<const EGRESS: bool>(index: u64, ctx: *mut c_void) -> i64 {
    step::<EGRESS>(ctx, |d, w| tls::offer_suite(d, w, index as u32))
}

extern "C" fn extension<const EGRESS: bool>(_index: u64, ctx: *mut c_void) -> i64 {
    step::<EGRESS>(ctx, tls::offer_extension)
}

extern "C" fn version<const EGRESS: bool>(index: u64, ctx: *mut c_void) -> i64 {
    step::<EGRESS>(ctx, |d, w| tls::offer_version(d, w, index as u32))
}
