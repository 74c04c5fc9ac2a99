//! TCP conversations of the ja4plus captures (FoxIO vectors, downloaded by scripts/bootstrap.sh):
//! each direction reassembled from its segments, both directions interleaved in capture order,
//! and the hello values tls-parser reads from them. The stream reassembly follows
//! dataplane-common/tests/tls_ja4.rs (which reads the same captures in user space).
#![allow(dead_code)]

use std::{collections::BTreeMap, net::IpAddr, path::PathBuf};

use dataplane_common::tls::HRR_RANDOM;

use pcap_parser::{
    Block, Linktype, PcapCapture, PcapNGCapture,
    data::{PacketData, get_packetdata},
    traits::PcapNGPacketBlock,
};

/// (source, source port, destination, destination port).
pub type FlowKey = (IpAddr, u16, IpAddr, u16);

/// The capture files (`.pcap`, `.pcapng`), sorted by name: `JA4PLUS_VECTORS`, else where
/// scripts/bootstrap.sh puts them. Panics (the test fails, never skips) when they are absent.
pub fn capture_files() -> Vec<PathBuf> {
    let dir = std::env::var("JA4PLUS_VECTORS")
        .map(PathBuf::from)
        .unwrap_or_else(|_| {
            PathBuf::from(std::env::var("HOME").unwrap_or_default())
                .join(".cache/meshward-tools/ja4plus-1.4.0/tests/foxio_vectors")
        });
    let entries = std::fs::read_dir(&dir).unwrap_or_else(|e| {
        panic!(
            "ja4plus captures not found at {} ({e}): run scripts/bootstrap.sh (or set JA4PLUS_VECTORS)",
            dir.display()
        )
    });
    let mut files: Vec<PathBuf> = entries
        .flatten()
        .map(|e| e.path())
        .filter(|p| {
            let n = p.to_string_lossy();
            n.ends_with(".pcap") || n.ends_with(".pcapng")
        })
        .collect();
    files.sort();
    assert!(!files.is_empty(), "no captures in {}", dir.display());
    files
}

/// Packets of a pcap or pcapng file as (link type, bytes).
fn packets(file: &[u8]) -> Vec<(Linktype, Vec<u8>)> {
    if let Ok(cap) = PcapCapture::from_file(file) {
        return cap
            .blocks
            .iter()
            .map(|b| (cap.header.network, b.data[..b.caplen as usize].to_vec()))
            .collect();
    }
    let cap = PcapNGCapture::from_file(file).expect("pcap or pcapng");
    let mut out = vec![];
    for section in &cap.sections {
        let mut linktypes = vec![];
        for b in &section.blocks {
            match b {
                Block::InterfaceDescription(idb) => linktypes.push(idb.linktype),
                Block::EnhancedPacket(epb) => {
                    let lt = linktypes.get(epb.if_id as usize).copied();
                    out.push((lt.unwrap_or(Linktype::ETHERNET), epb.packet_data().to_vec()));
                }
                Block::SimplePacket(spb) => {
                    let lt = linktypes.first().copied();
                    out.push((lt.unwrap_or(Linktype::ETHERNET), spb.packet_data().to_vec()));
                }
                _ => {}
            }
        }
    }
    out
}

/// A TCP segment: flow, sequence number, flags, payload.
fn tcp_segment(lt: Linktype, pkt: &[u8]) -> Option<(FlowKey, u32, u8, Vec<u8>)> {
    let (ethertype, l3) = match get_packetdata(pkt, lt, pkt.len())? {
        PacketData::L2(eth) => {
            let mut et = u16::from_be_bytes([*eth.get(12)?, *eth.get(13)?]);
            let mut at = 14;
            while et == 0x8100 || et == 0x88a8 {
                et = u16::from_be_bytes([*eth.get(at + 2)?, *eth.get(at + 3)?]);
                at += 4;
            }
            (et, eth.get(at..)?)
        }
        PacketData::L3(et, d) => (et, d),
        _ => return None,
    };
    let (src, dst, proto, l4): (IpAddr, IpAddr, u8, &[u8]) = match ethertype {
        0x0800 => {
            let ihl = ((l3.first()? & 0x0f) as usize) * 4;
            let total = u16::from_be_bytes([*l3.get(2)?, *l3.get(3)?]) as usize;
            let src: [u8; 4] = l3.get(12..16)?.try_into().ok()?;
            let dst: [u8; 4] = l3.get(16..20)?.try_into().ok()?;
            let l4 = l3.get(ihl..total.min(l3.len()))?;
            (src.into(), dst.into(), *l3.get(9)?, l4)
        }
        0x86dd => {
            let plen = u16::from_be_bytes([*l3.get(4)?, *l3.get(5)?]) as usize;
            let src: [u8; 16] = l3.get(8..24)?.try_into().ok()?;
            let dst: [u8; 16] = l3.get(24..40)?.try_into().ok()?;
            let l4 = l3.get(40..(40 + plen).min(l3.len()))?;
            (src.into(), dst.into(), *l3.get(6)?, l4)
        }
        _ => return None,
    };
    if proto != 6 {
        return None;
    }
    let port = |at: usize| Some(u16::from_be_bytes([*l4.get(at)?, *l4.get(at + 1)?]));
    let seq = u32::from_be_bytes(l4.get(4..8)?.try_into().ok()?);
    let off = ((l4.get(12)? >> 4) as usize) * 4;
    let key = (src, port(0)?, dst, port(2)?);
    Some((key, seq, *l4.get(13)?, l4.get(off..)?.to_vec()))
}

#[derive(Default)]
struct Flow {
    syn: Option<u32>,
    /// (sequence number, packet index, payload)
    segments: Vec<(u32, usize, Vec<u8>)>,
}

/// One direction reassembled up to its first gap: its bytes, and where each new piece came
/// from in the capture (packet index, length), in stream order.
#[derive(Default)]
struct Reassembled {
    data: Vec<u8>,
    pieces: Vec<(usize, usize)>,
}

fn reassemble(f: &Flow) -> Reassembled {
    let base = f.syn.unwrap_or_else(|| {
        // No SYN captured: the lowest sequence number (relative to the first segment).
        let first = f.segments[0].0;
        let lowest = f
            .segments
            .iter()
            .map(|(s, ..)| s.wrapping_sub(first) as i32);
        first.wrapping_add(lowest.min().unwrap_or(0) as u32)
    });
    let mut segs: Vec<_> = f
        .segments
        .iter()
        .map(|(s, i, p)| (s.wrapping_sub(base) as usize, *i, p))
        .collect();
    segs.sort_by_key(|(off, i, _)| (*off, *i));
    let mut r = Reassembled::default();
    let mut last_index = 0;
    for (off, index, p) in segs {
        if off > r.data.len() {
            break; // gap: stop at what is contiguous
        }
        let new = &p[(r.data.len() - off).min(p.len())..];
        if !new.is_empty() {
            // Bytes of one direction stay in stream order even when captured out of order.
            last_index = last_index.max(index);
            r.pieces.push((last_index, new.len()));
            r.data.extend_from_slice(new);
        }
    }
    r
}

/// Both directions of one TCP connection, as the capture shows them.
pub struct Conversation {
    /// The flow of the direction that spoke first (the client when it opens with a hello).
    pub key: FlowKey,
    pub c2s: Vec<u8>,
    pub s2c: Vec<u8>,
    /// The bytes in capture order, in turns: (from the client, bytes). The client's first
    /// bytes always come first; consecutive pieces of one side are merged.
    pub turns: Vec<(bool, Vec<u8>)>,
}

/// The TCP conversations of a capture file that carry payload, in order of first appearance;
/// the "client" is the side whose payload the capture shows first.
pub fn conversations(file: &[u8]) -> Vec<Conversation> {
    let mut flows: BTreeMap<FlowKey, Flow> = BTreeMap::new();
    let mut first_payload: Vec<FlowKey> = vec![];
    for (index, (lt, pkt)) in packets(file).into_iter().enumerate() {
        let Some((key, seq, flags, payload)) = tcp_segment(lt, &pkt) else {
            continue;
        };
        let f = flows.entry(key).or_default();
        if flags & 0x02 != 0 {
            f.syn = Some(seq.wrapping_add(1));
        }
        if !payload.is_empty() {
            f.segments.push((seq, index, payload));
            let reverse = (key.2, key.3, key.0, key.1);
            if !first_payload.contains(&key) && !first_payload.contains(&reverse) {
                first_payload.push(key);
            }
        }
    }
    let mut out = vec![];
    for key in first_payload {
        let reverse = (key.2, key.3, key.0, key.1);
        let c = reassemble(&flows[&key]);
        let s = flows
            .get(&reverse)
            .filter(|f| !f.segments.is_empty())
            .map(reassemble)
            .unwrap_or_default();
        // Interleave the pieces of both sides by packet index.
        let mut pieces: Vec<(usize, bool, usize)> = c
            .pieces
            .iter()
            .map(|&(i, n)| (i, true, n))
            .chain(s.pieces.iter().map(|&(i, n)| (i, false, n)))
            .collect();
        pieces.sort_by_key(|&(i, from_client, _)| (i, !from_client));
        if let Some(first) = pieces.iter().position(|p| p.1) {
            let p = pieces.remove(first);
            pieces.insert(0, p);
        }
        let (mut at_c, mut at_s) = (0, 0);
        let mut turns: Vec<(bool, Vec<u8>)> = vec![];
        for (_, from_client, n) in pieces {
            let bytes = if from_client {
                at_c += n;
                &c.data[at_c - n..at_c]
            } else {
                at_s += n;
                &s.data[at_s - n..at_s]
            };
            match turns.last_mut() {
                Some((side, b)) if *side == from_client => b.extend_from_slice(bytes),
                _ => turns.push((from_client, bytes.to_vec())),
            }
        }
        out.push(Conversation {
            key,
            c2s: c.data,
            s2c: s.data,
            turns,
        });
    }
    out
}

/// What tls-parser reads from the plaintext handshake of one direction.
#[derive(Debug, Default)]
pub struct Hellos {
    /// The stream opens with a handshake record whose first message is a complete ClientHello.
    pub opens_with_client_hello: bool,
    /// The last ClientHello: its server_name (first entry) and body length.
    pub sni: Option<String>,
    pub client_hello_len: usize,
    /// The real ServerHello (not a HelloRetryRequest): negotiated version
    /// (supported_versions, else the legacy version) and cipher suite.
    pub server_hello: Option<(u16, u16)>,
    pub hello_retry: bool,
    /// The handshake records end at a ChangeCipherSpec (not application data, an alert or the
    /// end of the capture).
    pub change_cipher_spec: bool,
}

/// Reads the plaintext handshake messages of a stream (handshake records until a
/// ChangeCipherSpec — one is let through after a HelloRetryRequest — or application data).
pub fn hellos(stream: &[u8]) -> Hellos {
    use tls_parser::{
        TlsExtension, TlsMessage, TlsMessageHandshake as H, parse_tls_client_hello_extensions,
        parse_tls_message_handshake, parse_tls_raw_record, parse_tls_server_hello_extensions,
    };
    let mut out = Hellos::default();
    let (mut rest, mut hs, mut ccs_allowed) = (stream, Vec::new(), false);
    while let Ok((r, rec)) = parse_tls_raw_record(rest) {
        match rec.hdr.record_type.0 {
            22 => hs.extend_from_slice(rec.data),
            20 if ccs_allowed => ccs_allowed = false,
            20 => {
                out.change_cipher_spec = true;
                break;
            }
            23 => break,
            _ => {}
        }
        if !out.hello_retry && hs.len() >= 38 && hs[0] == 2 && hs[6..38] == HRR_RANDOM {
            (out.hello_retry, ccs_allowed) = (true, true);
        }
        rest = r;
    }
    let mut msgs = hs.as_slice();
    let mut first = stream.first() == Some(&22);
    while let Ok((r, TlsMessage::Handshake(h))) = parse_tls_message_handshake(msgs) {
        let len = msgs.len() - r.len() - 4;
        msgs = r;
        match h {
            H::ClientHello(c) => {
                out.opens_with_client_hello |= first;
                out.client_hello_len = len;
                out.sni = None;
                let exts = c
                    .ext
                    .and_then(|e| parse_tls_client_hello_extensions(e).ok());
                for e in exts.map(|(_, e)| e).unwrap_or_default() {
                    if let TlsExtension::SNI(names) = e {
                        out.sni = names
                            .first()
                            .map(|(_, n)| String::from_utf8_lossy(n).into_owned());
                    }
                }
            }
            H::ServerHello(s) if s.random == HRR_RANDOM => out.hello_retry = true,
            H::ServerHello(s) => {
                let mut version = s.version.0;
                let exts = s
                    .ext
                    .and_then(|e| parse_tls_server_hello_extensions(e).ok());
                for e in exts.map(|(_, e)| e).unwrap_or_default() {
                    if let TlsExtension::SupportedVersions(v) = e
                        && let Some(v) = v.first()
                    {
                        version = v.0;
                    }
                }
                out.server_hello = Some((version, s.cipher.0));
            }
            _ => {}
        }
        first = false;
    }
    out
}
