//! Design C, bitmap intersection (Lakshman & Stiliadis 1998): one bitmap of rules per value of
//! each dimension (wildcard rules set their bit in every value's bitmap), ANDed word by word; rules
//! are numbered in priority order, so the first set bit is the answer. Each dimension is a single
//! lookup, but the AND walks n/64 words: linear in the number of rules, and the address dimension
//! needs one n-bit bitmap per distinct source prefix (memory ∝ n²).

use aya_ebpf::maps::lpm_trie::Key;
use dataplane_common::{RuleMatch, identities};

use crate::{
    abi::{BV_MAX_WORDS, BvDimKey, StudyQuery, bv_dims},
    maps::{BV_ADDRS, BV_COUNT, BV_DIMS, BV_RESULTS, BV_WORDS},
};

#[inline(always)]
pub fn lookup(q: &StudyQuery) -> RuleMatch {
    let Some(w) = dim(bv_dims::WORKLOAD, q.workload_id, None) else {
        return RuleMatch::default();
    };
    let Some(s) = dim(bv_dims::IDENTITY, q.identity, Some(identities::ANY)) else {
        return RuleMatch::default();
    };
    let Some(p) = dim(bv_dims::PORT, u32::from(q.port), Some(0)) else {
        return RuleMatch::default();
    };
    let Some(a) = BV_ADDRS.get(&Key::new(128, q.addr)).copied() else {
        return RuleMatch::default();
    };
    let count = match BV_COUNT.get(0) {
        Some(c) => *c,
        None => return RuleMatch::default(),
    };
    let mut k = 0;
    while k < BV_MAX_WORDS && k < count {
        let word = word(w + k) & word(s + k) & word(p + k) & word(a + k);
        if word != 0 {
            let rule = k * 64 + first_bit(word);
            return BV_RESULTS.get(rule).copied().unwrap_or_default();
        }
        k += 1;
    }
    RuleMatch::default()
}

/// The bitmap offset of `value`, or of the wildcard value when `value` has no rules of its own.
#[inline(always)]
fn dim(dim: u32, value: u32, wildcard: Option<u32>) -> Option<u32> {
    // SAFETY: values are copied out at once.
    unsafe {
        if let Some(o) = BV_DIMS.get(&BvDimKey { dim, value }) {
            return Some(*o);
        }
        let value = wildcard?;
        BV_DIMS.get(&BvDimKey { dim, value }).copied()
    }
}

#[inline(always)]
fn word(index: u32) -> u64 {
    BV_WORDS.get(index).copied().unwrap_or(0)
}

/// Index of the lowest set bit of a non-zero word (binary search: no ctz instruction in BPF).
#[inline(always)]
fn first_bit(mut w: u64) -> u32 {
    let mut n = 0;
    let mut width = 32;
    while width > 0 {
        let low = w & ((1u64 << width) - 1);
        if low == 0 {
            n += width;
            w >>= width;
        }
        width /= 2;
    }
    n
}
