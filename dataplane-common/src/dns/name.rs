//! Names: a steppable decoder of (possibly compressed) wire names into dotted text, and the
//! policy keys of that text.

use super::{MAX_NAME_STEPS, MAX_TEXT, MSG_LEN, NAME_LEN, NAME_MASK, byte};
use crate::sni_policy::{KeyWalk, MAX_SUFFIXES, name_key};

/// Why a name does not decode.
#[repr(u8)]
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum NameError {
    /// A byte at or after the end of the message (`len`) was needed.
    End = 1,
    /// A byte at or after [`MSG_LEN`] was needed while the message goes on (`len > MSG_LEN`):
    /// the name lies past what the kernel buffer holds.
    Cut = 2,
    /// A label-length byte `0b01xx_xxxx` (extended label type, RFC 6891; this is also how a
    /// label length of 64..=127 would read).
    ExtendedLabel = 3,
    /// A label-length byte `0b10xx_xxxx` (reserved label type; lengths 128..=191).
    ReservedLabel = 4,
    /// A `.` inside a label: it would forge a label boundary in the dotted text.
    DotInLabel = 5,
    /// More than [`MAX_TEXT`] bytes of dotted text (255 wire bytes).
    TooLong = 6,
    /// A compression pointer that does not point strictly before the start of the label
    /// sequence being read (a loop, or a forward pointer).
    Pointer = 7,
    /// A compression pointer at or past the end of the message.
    PointerPastEnd = 8,
    /// [`MAX_NAME_STEPS`] steps without reaching the end of the name.
    Steps = 9,
}

impl NameError {
    /// The error whose `as u8` is `code` (`Steps` for any other value): for state that keeps
    /// the error as a number (the kernel's per-CPU scratch).
    #[inline(always)]
    pub const fn from_code(code: u8) -> NameError {
        match code {
            1 => NameError::End,
            2 => NameError::Cut,
            3 => NameError::ExtendedLabel,
            4 => NameError::ReservedLabel,
            5 => NameError::DotInLabel,
            6 => NameError::TooLong,
            7 => NameError::Pointer,
            8 => NameError::PointerPastEnd,
            _ => NameError::Steps,
        }
    }
}

/// What one [`NameReader::step`] did.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum NameStep {
    /// Call `step` again.
    More,
    /// The name is complete: [`NameReader::end`] and [`NameReader::out_len`] are valid.
    Done,
    /// The name is not valid; every later `step` says the same.
    Bad(NameError),
}

const READING: u8 = 0;
const DONE: u8 = 1;
const BAD: u8 = 2;

/// Decodes one name, one wire element per [`step`](Self::step): a label-length byte, a label
/// byte, or a 2-byte compression pointer. The text goes to a caller's `[u8; NAME_LEN]` as
/// lowercase dotted ASCII without a trailing dot (the root name is the empty text). At most
/// [`MAX_NAME_STEPS`] steps: the kernel runs `step` from a `bpf_loop` callback of that bound.
#[repr(C)]
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct NameReader {
    /// Next message byte to read.
    pos: u32,
    /// Start of the label sequence being read (the name's start, then each pointer's target):
    /// a pointer must point strictly before it.
    seq_start: u32,
    /// Message position right after the name as it appears at its start.
    end: u32,
    out_len: u32,
    /// Bytes left in the label being copied (0 = a length byte or pointer comes next).
    label_left: u32,
    steps: u32,
    jumped: u8,
    status: u8,
    reason: u8,
    _pad: u8,
}

impl NameReader {
    /// A reader of the name that starts at message position `pos`.
    #[inline(always)]
    pub const fn new(pos: usize) -> NameReader {
        let p = if pos > u32::MAX as usize {
            u32::MAX
        } else {
            pos as u32
        };
        NameReader {
            pos: p,
            seq_start: p,
            end: 0,
            out_len: 0,
            label_left: 0,
            steps: 0,
            jumped: 0,
            status: READING,
            reason: 0,
            _pad: 0,
        }
    }

    /// Message position right after the name as it appears at its start (after its first
    /// pointer, if it has one). Valid after [`NameStep::Done`].
    #[inline(always)]
    pub const fn end(&self) -> usize {
        self.end as usize
    }

    /// Bytes of text written so far (all of it after [`NameStep::Done`]).
    #[inline(always)]
    pub const fn out_len(&self) -> usize {
        self.out_len as usize
    }

    /// Steps taken (never more than [`MAX_NAME_STEPS`]).
    #[inline(always)]
    pub const fn steps(&self) -> usize {
        self.steps as usize
    }

    /// Whether the last step ended the name (`Done` or `Bad`).
    #[inline(always)]
    pub const fn finished(&self) -> bool {
        self.status != READING
    }

    #[inline(always)]
    fn fail(&mut self, e: NameError) -> NameStep {
        self.status = BAD;
        self.reason = e as u8;
        NameStep::Bad(e)
    }

    /// One step over message `msg` of length `len` (only its first [`MSG_LEN`] bytes are in
    /// `msg`), writing text to `out`. After `Done` or `Bad` it returns the same again.
    #[inline(always)]
    pub fn step(&mut self, msg: &[u8; MSG_LEN], len: usize, out: &mut [u8; NAME_LEN]) -> NameStep {
        if self.status == DONE {
            return NameStep::Done;
        }
        if self.status == BAD {
            return NameStep::Bad(NameError::from_code(self.reason));
        }
        if self.steps >= MAX_NAME_STEPS as u32 {
            return self.fail(NameError::Steps);
        }
        self.steps += 1;
        let r = self.advance(msg, len, out);
        if r == NameStep::More && self.steps >= MAX_NAME_STEPS as u32 {
            return self.fail(NameError::Steps);
        }
        r
    }

    #[inline(always)]
    fn advance(&mut self, msg: &[u8; MSG_LEN], len: usize, out: &mut [u8; NAME_LEN]) -> NameStep {
        let p = self.pos as usize;
        if p >= len {
            return self.fail(NameError::End);
        }
        if p >= MSG_LEN {
            return self.fail(NameError::Cut);
        }
        let b = byte(msg, p);
        if self.label_left > 0 {
            if b == b'.' {
                return self.fail(NameError::DotInLabel);
            }
            out[self.out_len as usize & NAME_MASK] = b.to_ascii_lowercase();
            self.out_len += 1;
            self.label_left -= 1;
            self.pos += 1;
            return NameStep::More;
        }
        match b >> 6 {
            0 => {
                if b == 0 {
                    if self.jumped == 0 {
                        self.end = self.pos + 1;
                    }
                    self.status = DONE;
                    return NameStep::Done;
                }
                let dot = if self.out_len > 0 { 1 } else { 0 };
                if self.out_len + dot + u32::from(b) > MAX_TEXT as u32 {
                    return self.fail(NameError::TooLong);
                }
                if dot == 1 {
                    out[self.out_len as usize & NAME_MASK] = b'.';
                    self.out_len += 1;
                }
                self.label_left = u32::from(b);
                self.pos += 1;
                NameStep::More
            }
            1 => self.fail(NameError::ExtendedLabel),
            2 => self.fail(NameError::ReservedLabel),
            _ => {
                if p + 1 >= len {
                    return self.fail(NameError::End);
                }
                if p + 1 >= MSG_LEN {
                    return self.fail(NameError::Cut);
                }
                let target = (u32::from(b & 0x3f) << 8) | u32::from(byte(msg, p + 1));
                if target as usize >= len {
                    return self.fail(NameError::PointerPastEnd);
                }
                if target >= self.seq_start {
                    return self.fail(NameError::Pointer);
                }
                if self.jumped == 0 {
                    self.end = self.pos + 2;
                    self.jumped = 1;
                }
                self.pos = target;
                self.seq_start = target;
                NameStep::More
            }
        }
    }
}

/// Runs `reader` to the end of its name (at most [`MAX_NAME_STEPS`] steps): `(end, text_len)`.
pub fn run_name(
    reader: &mut NameReader,
    msg: &[u8; MSG_LEN],
    len: usize,
    out: &mut [u8; NAME_LEN],
) -> Result<(usize, usize), NameError> {
    let mut i = 0;
    while i < MAX_NAME_STEPS {
        match reader.step(msg, len, out) {
            NameStep::More => {}
            NameStep::Done => return Ok((reader.end(), reader.out_len())),
            NameStep::Bad(e) => return Err(e),
        }
        i += 1;
    }
    // `step` ends every name within MAX_NAME_STEPS steps; kept for the loop's shape.
    Err(NameError::Steps)
}

/// Decodes the name at `pos`: `(end, text_len)` or why not.
pub fn decode_name(
    msg: &[u8; MSG_LEN],
    len: usize,
    pos: usize,
    out: &mut [u8; NAME_LEN],
) -> Result<(usize, usize), NameError> {
    let mut reader = NameReader::new(pos);
    run_name(&mut reader, msg, len, out)
}

/// Decodes the name at `pos` into `out`: `(end, text_len)`, `None` if it is not valid.
pub fn read_name(
    msg: &[u8; MSG_LEN],
    len: usize,
    pos: usize,
    out: &mut [u8; NAME_LEN],
) -> Option<(usize, usize)> {
    decode_name(msg, len, pos, out).ok()
}

/// Bytes of `text` that are keyed: `text_len` (at most `NAME_LEN`) without a trailing dot.
#[inline(always)]
pub fn key_span(text: &[u8; NAME_LEN], text_len: usize) -> usize {
    let n = if text_len > NAME_LEN {
        NAME_LEN
    } else {
        text_len
    };
    if n > 0 && text[(n - 1) & NAME_MASK] == b'.' {
        n - 1
    } else {
        n
    }
}

#[inline(always)]
fn walk(text: &[u8; NAME_LEN], n: usize) -> KeyWalk {
    let mut w = KeyWalk::new();
    let mut i = 0;
    while i < NAME_LEN {
        if i >= n {
            break;
        }
        w.step(text[(n - 1 - i) & NAME_MASK]);
        i += 1;
    }
    w
}

/// Zeroes a name buffer. Volatile writes: a plain `*buf = [0; NAME_LEN]` may become a
/// `memset` call, which the BPF target links as a subprogram without BTF (the verifier then
/// rejects the program).
#[inline(always)]
pub fn clear_name(buf: &mut [u8; NAME_LEN]) {
    let mut i = 0;
    while i < NAME_LEN {
        // SAFETY: a byte of `buf`.
        unsafe { core::ptr::write_volatile(&mut buf[i & NAME_MASK], 0) };
        i += 1;
    }
}

/// Copies a name buffer (volatile, see [`clear_name`]).
#[inline(always)]
pub fn copy_name(to: &mut [u8; NAME_LEN], from: &[u8; NAME_LEN]) {
    let mut i = 0;
    while i < NAME_LEN {
        // SAFETY: a byte of `to`.
        unsafe { core::ptr::write_volatile(&mut to[i & NAME_MASK], from[i & NAME_MASK]) };
        i += 1;
    }
}

/// Step `i` of the backward key walk over the first `span` bytes of `text` (see
/// [`key_span`]): feeds byte `span - 1 - i`. False once every byte is fed (nothing done). The
/// kernel runs it from a `bpf_loop` callback; [`walk`] is the same loop in one piece.
#[inline(always)]
pub fn key_step(w: &mut KeyWalk, text: &[u8; NAME_LEN], span: usize, i: usize) -> bool {
    if i >= span || span > NAME_LEN {
        return false;
    }
    w.step(text[(span - 1 - i) & NAME_MASK]);
    true
}

/// The full key of a walked name: [`full_key`] when `span` > 0 bytes were fed to `w`.
#[inline(always)]
pub fn walked_full_key(w: &KeyWalk, span: usize) -> u64 {
    if span == 0 {
        return name_key(b"");
    }
    let mut keys = [0u64; MAX_SUFFIXES + 1];
    w.keys(&mut keys);
    keys[0]
}

/// The policy keys of a name's text, as [`crate::sni_policy::lookup_keys`] gives them for a
/// server name: the whole name, then its `.suffix`es longest first (at most
/// [`MAX_SUFFIXES`]); ASCII case and a trailing dot do not matter. Returns how many (0 for the
/// root name).
pub fn name_keys(
    text: &[u8; NAME_LEN],
    text_len: usize,
    out: &mut [u64; MAX_SUFFIXES + 1],
) -> usize {
    let n = key_span(text, text_len);
    if n == 0 {
        return 0;
    }
    walk(text, n).keys(out)
}

/// Key of the whole name (= `sni_policy::name_key` of the text, trailing dot dropped); names
/// in a CNAME chain are compared by it.
pub fn full_key(text: &[u8; NAME_LEN], text_len: usize) -> u64 {
    let n = key_span(text, text_len);
    if n == 0 {
        return name_key(b"");
    }
    let mut keys = [0u64; MAX_SUFFIXES + 1];
    walk(text, n).keys(&mut keys);
    keys[0]
}

/// Position after the question name, type and class: `(qtype, qclass, next)`.
#[inline(always)]
pub fn question_fixed(msg: &[u8; MSG_LEN], len: usize, pos: usize) -> Option<(u16, u16, usize)> {
    let held = super::held(len);
    if pos > held || held - pos < 4 {
        return None;
    }
    Some((super::be16(msg, pos), super::be16(msg, pos + 2), pos + 4))
}

/// Skips the question at `pos` (name, type, class): the position after it.
pub fn skip_question(msg: &[u8; MSG_LEN], len: usize, pos: usize) -> Option<usize> {
    let mut scratch = [0u8; NAME_LEN];
    let (end, _) = read_name(msg, len, pos, &mut scratch)?;
    question_fixed(msg, len, end).map(|(_, _, next)| next)
}
