//! Real-world captures from the ja4plus conformance set (FoxIO vectors, see
//! the ja4plus sdist's NOTICE): TCP streams are reassembled per direction and fed in
//! their captured segment sizes and in other splits; SNI, versions and suites are compared with
//! tls-parser on the same bytes. `JA4PLUS_VECTORS=/path/to/tests/foxio_vectors` adds every
//! capture of the full set (`pip download --no-deps --no-binary :all: ja4plus==1.4.0`).

mod common;

use std::{collections::BTreeMap, net::IpAddr, path::PathBuf};

use common::{Rng, Seen, disagreements, feed_chunks, fresh, reference};
use dataplane_common::tls::state;
use pcap_parser::{
    Block, Linktype, PcapBlock, PcapCapture, PcapNGCapture,
    data::{PacketData, get_packetdata},
    traits::PcapNGPacketBlock,
};

type FlowKey = (IpAddr, u16, IpAddr, u16);

#[derive(Default)]
struct Flow {
    syn: Option<u32>,
    segments: Vec<(u32, Vec<u8>)>,
    order: usize,
}

/// Packets of a capture as (linktype, bytes).
fn packets(file: &[u8]) -> Vec<(Linktype, Vec<u8>)> {
    let mut out = vec![];
    if let Ok(cap) = PcapCapture::from_file(file) {
        for b in &cap.blocks {
            out.push((cap.header.network, b.data[..b.caplen as usize].to_vec()));
        }
        return out;
    }
    let cap = PcapNGCapture::from_file(file).expect("pcap or pcapng");
    for section in &cap.sections {
        let mut linktypes = vec![];
        for b in &section.blocks {
            match b {
                Block::InterfaceDescription(idb) => linktypes.push(idb.linktype),
                Block::EnhancedPacket(epb) => {
                    let lt = linktypes
                        .get(epb.if_id as usize)
                        .copied()
                        .unwrap_or(Linktype::ETHERNET);
                    out.push((lt, epb.packet_data().to_vec()));
                }
                Block::SimplePacket(spb) => {
                    let lt = linktypes.first().copied().unwrap_or(Linktype::ETHERNET);
                    out.push((lt, spb.packet_data().to_vec()));
                }
                _ => {}
            }
        }
    }
    let _ = PcapBlock::LegacyHeader;
    out
}

/// IPv4/IPv6 → TCP (src, sport, dst, dport, seq, flags, payload).
fn tcp(l3: &[u8], ethertype: u16) -> Option<(FlowKey, u32, u8, Vec<u8>)> {
    let (src, dst, proto, rest) = match ethertype {
        0x0800 => {
            let ihl = ((l3.first()? & 0x0f) as usize) * 4;
            let total = u16::from_be_bytes([*l3.get(2)?, *l3.get(3)?]) as usize;
            let src: [u8; 4] = l3.get(12..16)?.try_into().ok()?;
            let dst: [u8; 4] = l3.get(16..20)?.try_into().ok()?;
            (
                IpAddr::from(src),
                IpAddr::from(dst),
                *l3.get(9)?,
                l3.get(ihl..total.min(l3.len()))?,
            )
        }
        0x86dd => {
            let plen = u16::from_be_bytes([*l3.get(4)?, *l3.get(5)?]) as usize;
            let src: [u8; 16] = l3.get(8..24)?.try_into().ok()?;
            let dst: [u8; 16] = l3.get(24..40)?.try_into().ok()?;
            (
                IpAddr::from(src),
                IpAddr::from(dst),
                *l3.get(6)?,
                l3.get(40..(40 + plen).min(l3.len()))?,
            )
        }
        _ => return None,
    };
    if proto != 6 {
        return None;
    }
    let sport = u16::from_be_bytes([*rest.first()?, *rest.get(1)?]);
    let dport = u16::from_be_bytes([*rest.get(2)?, *rest.get(3)?]);
    let seq = u32::from_be_bytes(rest.get(4..8)?.try_into().ok()?);
    let off = ((rest.get(12)? >> 4) as usize) * 4;
    let flags = *rest.get(13)?;
    Some((
        (src, sport, dst, dport),
        seq,
        flags,
        rest.get(off..)?.to_vec(),
    ))
}

fn l3_of(lt: Linktype, pkt: &[u8]) -> Option<(u16, Vec<u8>)> {
    match get_packetdata(pkt, lt, pkt.len())? {
        PacketData::L2(eth) => {
            let mut et = u16::from_be_bytes([*eth.get(12)?, *eth.get(13)?]);
            let mut at = 14;
            while et == 0x8100 || et == 0x88a8 {
                et = u16::from_be_bytes([*eth.get(at + 2)?, *eth.get(at + 3)?]);
                at += 4;
            }
            Some((et, eth.get(at..)?.to_vec()))
        }
        PacketData::L3(et, d) => Some((et, d.to_vec())),
        _ => None,
    }
}

/// Reassembled byte streams with their captured segment sizes, per direction.
struct Stream {
    key: FlowKey,
    data: Vec<u8>,
    segments: Vec<usize>,
}

fn streams(file: &[u8]) -> Vec<Stream> {
    let mut flows: BTreeMap<FlowKey, Flow> = BTreeMap::new();
    let mut n = 0;
    for (lt, pkt) in packets(file) {
        let Some((et, l3)) = l3_of(lt, &pkt) else {
            continue;
        };
        let Some((key, seq, flags, payload)) = tcp(&l3, et) else {
            continue;
        };
        let f = flows.entry(key).or_insert_with(|| {
            n += 1;
            Flow {
                order: n,
                ..Default::default()
            }
        });
        if flags & 0x02 != 0 {
            f.syn = Some(seq.wrapping_add(1));
        }
        if !payload.is_empty() {
            f.segments.push((seq, payload));
        }
    }
    let mut out = vec![];
    let mut flows: Vec<_> = flows.into_iter().collect();
    flows.sort_by_key(|(_, f)| f.order);
    for (key, f) in flows {
        if f.segments.is_empty() {
            continue;
        }
        let base = f.syn.unwrap_or_else(|| {
            // No SYN captured: the lowest sequence number (relative to the first segment).
            let first = f.segments[0].0;
            f.segments
                .iter()
                .map(|(s, _)| s.wrapping_sub(first) as i32)
                .min()
                .map_or(first, |m| first.wrapping_add(m as u32))
        });
        let mut segs: Vec<(u32, &Vec<u8>)> = f
            .segments
            .iter()
            .map(|(s, p)| (s.wrapping_sub(base), p))
            .collect();
        segs.sort_by_key(|(o, _)| *o);
        let mut data = vec![];
        let mut sizes = vec![];
        for (off, p) in segs {
            let off = off as usize;
            if off > data.len() {
                break; // gap: stop at what is contiguous
            }
            let new = &p[(data.len() - off).min(p.len())..];
            if !new.is_empty() {
                sizes.push(new.len());
                data.extend_from_slice(new);
            }
        }
        out.push(Stream {
            key,
            data,
            segments: sizes,
        });
    }
    out
}

/// The ja4plus 1.4.0 sdist's `tests/foxio_vectors`: `JA4PLUS_VECTORS`, else where
/// scripts/bootstrap.sh puts them (downloaded from PyPI; not committed: FoxIO license).
fn capture_files() -> Vec<PathBuf> {
    let dir = std::env::var("JA4PLUS_VECTORS")
        .map(PathBuf::from)
        .unwrap_or_else(|_| {
            PathBuf::from(std::env::var("HOME").unwrap_or_default())
                .join(".cache/meshward-tools/ja4plus-1.4.0/tests/foxio_vectors")
        });
    let entries = std::fs::read_dir(&dir).unwrap_or_else(|e| {
        panic!(
            "ja4plus captures not found at {} ({e}): run scripts/bootstrap.sh or set JA4PLUS_VECTORS",
            dir.display()
        )
    });
    let mut files = BTreeMap::new();
    for e in entries.flatten() {
        let p = e.path();
        let name = p
            .file_name()
            .unwrap_or_default()
            .to_string_lossy()
            .to_string();
        if name.ends_with(".pcap") || name.ends_with(".pcapng") {
            files.insert(name, p);
        }
    }
    files.into_values().collect()
}

#[test]
fn ja4_captures_agree_with_tls_parser() {
    let (mut streams_total, mut tls_streams, mut compared, mut agreed) = (0, 0, 0, 0);
    let mut not_tls = 0;
    let mut failures = vec![];
    for path in capture_files() {
        let file = std::fs::read(&path).unwrap();
        let name = path.file_name().unwrap().to_string_lossy().to_string();
        for s in streams(&file) {
            streams_total += 1;
            let mut d = fresh();
            let seen = feed_chunks(&mut d, &s.data, &mut s.segments.clone().into_iter());
            // Every other split reads the same.
            for sizes in [vec![1usize; s.data.len()], vec![7; s.data.len()], {
                let mut r = Rng(s.data.len() as u64 + 1);
                (0..s.data.len())
                    .map(|_| 1 + r.below(900) as usize)
                    .collect()
            }] {
                let mut d2 = fresh();
                let again = feed_chunks(&mut d2, &s.data, &mut sizes.into_iter());
                assert_eq!(again, seen, "{name} {:?}: split changes the reading", s.key);
            }
            let Some(theirs) = reference(&s.data) else {
                if seen.state == state::NOT_TLS {
                    not_tls += 1;
                }
                continue;
            };
            if !theirs.client_hello && !theirs.server_hello {
                continue;
            }
            tls_streams += 1;
            compared += 1;
            let d = disagreements(&seen, &theirs);
            if d.is_empty() {
                agreed += 1;
            } else {
                failures.push(format!("{name} {:?}: {d:?}", s.key));
            }
            check_sane(&seen);
        }
    }
    println!(
        "ja4 captures: {streams_total} TCP streams, {tls_streams} with a TLS hello read by \
         tls-parser, {agreed}/{compared} agree on SNI/versions/suites, {not_tls} recognised as not TLS"
    );
    for f in &failures {
        println!("  disagreement: {f}");
    }
    assert!(compared >= 20, "too few TLS streams: {compared}");
    assert!(failures.is_empty(), "{failures:#?}");
}

fn check_sane(seen: &Seen) {
    for (ok, ch) in &seen.client_hellos {
        if *ok {
            assert!(ch.cipher_count > 0);
        }
    }
}
