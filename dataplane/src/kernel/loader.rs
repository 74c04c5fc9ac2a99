//! Loads the eBPF object with its maps pinned by name (reusing the pins an earlier agent left),
//! verifies the programs, and splits the maps among their owners.

use std::path::Path;

use anyhow::{Context, Result};
use aya::maps::{Array, MapData, ProgramArray, SockHash};
use aya::programs::{CgroupSkb, SkMsg, SockOps};
use aya::{
    Ebpf, EbpfLoader,
    maps::Map,
    programs::{CgroupSockAddr, SkLookup},
};
use dataplane_common::fast_path::{
    SockOffsets, Switches, map_names as fast_path_maps, program_names as fast_path_programs,
};
use dataplane_common::posture::{
    ConnKey, MAX_SOCKS, map_names as posture_maps, program_names as posture_programs, stages,
};
use dataplane_common::{KernelOffsets, dns_learning, map_names, program_names, sni_policy};

use super::{
    bpffs::PinDir,
    btf,
    counters::Counters,
    dns_learning::DnsMaps,
    events::EventReader,
    fast_path::FastPathStats,
    posture::PostureMaps,
    tables::{TableMaps, Tables},
};

pub const SOCK_ADDR_PROGRAMS: [&str; 4] = [
    program_names::CONNECT4,
    program_names::CONNECT6,
    program_names::SENDMSG4,
    program_names::SENDMSG6,
];

/// The loaded object: programs (for attaching) and the pin directory.
pub struct Kernel {
    pub ebpf: Ebpf,
    pub pins: PinDir,
    /// True if maps were adopted from a previous agent rather than created fresh.
    pub adopted: bool,
    /// The TLS posture programs are loaded (sock_ops is attached with the cgroup programs).
    pub tls_posture: bool,
    /// The DNS learning programs are loaded (attached with the cgroup programs).
    pub dns_learning: bool,
    /// Same-node fast path: sock_ops and the sk_msg stages are loaded (sock_ops is attached
    /// with the cgroup programs).
    pub fast_path: bool,
}

impl Kernel {
    /// sock_ops goes on every governed cgroup: posture and the fast path both need it.
    pub fn needs_sockops(&self) -> bool {
        self.tls_posture || self.fast_path
    }
}

/// Optional program families.
#[derive(Clone, Copy, Debug)]
pub struct Features {
    pub tls_posture: bool,
    pub dns_learning: bool,
    pub fast_path: bool,
    /// Entries of the sockhash (and of the fast path's peer table) when they are created;
    /// maps adopted from a previous agent keep their size.
    pub sockhash_capacity: u32,
}

impl Default for Features {
    fn default() -> Self {
        Self {
            tls_posture: false,
            dns_learning: false,
            fast_path: false,
            sockhash_capacity: MAX_SOCKS,
        }
    }
}

/// cgroup_skb programs of in-kernel DNS learning, attached to every governed cgroup.
pub const DNS_PROGRAMS: [(&str, aya::programs::CgroupSkbAttachType); 2] = [
    (
        dns_learning::program_names::DNS_EGRESS,
        aya::programs::CgroupSkbAttachType::Egress,
    ),
    (
        dns_learning::program_names::DNS_INGRESS,
        aya::programs::CgroupSkbAttachType::Ingress,
    ),
];

/// Everything the agent needs to drive the kernel side.
pub struct Loaded {
    pub kernel: Kernel,
    pub posture: PostureMaps,
    pub fast_path: FastPathStats,
    pub dns: DnsMaps,
    pub tables: Tables,
    pub counters: Counters,
    pub events: EventReader,
}

/// Loads everything; `tls_posture` also loads the TLS posture programs (sock_ops, sk_msg,
/// cgroup_skb ingress) and attaches the sk_msg programs to the sockhash.
pub fn load(pin_root: &Path, features: Features) -> Result<Loaded> {
    let Features {
        tls_posture,
        dns_learning,
        fast_path,
        sockhash_capacity,
    } = features;
    let pins = PinDir::prepare(pin_root)?;
    let adopted = pins.has_pinned_maps();
    let sockhash_capacity = adopted_capacity(&pins, sockhash_capacity);
    let mut ebpf = EbpfLoader::new()
        .default_map_pin_directory(pins.maps())
        .map_max_entries(posture_maps::SOCKS, sockhash_capacity)
        .map_max_entries(fast_path_maps::PEERS, sockhash_capacity)
        .load(crate::EBPF_OBJECT)
        .context("load the meshward eBPF object")?;
    for name in SOCK_ADDR_PROGRAMS {
        let prog: &mut CgroupSockAddr = ebpf
            .program_mut(name)
            .with_context(|| format!("program {name} missing from the object"))?
            .try_into()?;
        prog.load()
            .with_context(|| format!("verifier rejected {name}"))?;
    }
    let sk_lookup: &mut SkLookup = ebpf
        .program_mut(program_names::SK_LOOKUP)
        .context("program mw_sk_lookup missing from the object")?
        .try_into()?;
    sk_lookup.load().context("verifier rejected mw_sk_lookup")?;
    // Every program is loaded before maps are taken out of the object: a map whose handle is
    // dropped (KERNEL_OFFSETS, once written) could no longer be referenced by a later load.
    if tls_posture || fast_path {
        load_stream_programs(&mut ebpf, tls_posture)?;
    }
    if dns_learning {
        for (name, _) in DNS_PROGRAMS {
            let prog: &mut CgroupSkb = ebpf
                .program_mut(name)
                .with_context(|| format!("program {name} missing from the object"))?
                .try_into()?;
            prog.load()
                .with_context(|| format!("verifier rejected {name}"))?;
        }
    }
    let tables = Tables::new(TableMaps {
        config: take(&mut ebpf, map_names::CONFIG)?,
        workloads: take(&mut ebpf, map_names::WORKLOADS)?,
        egress: take(&mut ebpf, map_names::EGRESS_RULES)?,
        egress_exact: take(&mut ebpf, map_names::EGRESS_EXACT)?,
        identities: take(&mut ebpf, map_names::IDENTITIES)?,
        inbound: take(&mut ebpf, map_names::INBOUND_RULES)?,
        inbound_exact: take(&mut ebpf, map_names::INBOUND_EXACT)?,
        binaries: take(&mut ebpf, map_names::BINARIES)?,
        subjects: take(&mut ebpf, map_names::SUBJECTS)?,
        sni_rules: take(&mut ebpf, sni_policy::map_names::SNI_RULES)?,
        sni_required: take(&mut ebpf, sni_policy::map_names::SNI_REQUIRED)?,
        dns_watch: take(&mut ebpf, dns_learning::map_names::DNS_WATCH)?,
    })?;
    let dns = DnsMaps::new(
        take(&mut ebpf, dns_learning::map_names::DNS_PORTS)?,
        take(&mut ebpf, dns_learning::map_names::DNS_CONFIG)?,
        take(&mut ebpf, dns_learning::map_names::DNS_LEARNED)?,
        take(&mut ebpf, dns_learning::map_names::DNS_STATS)?,
    )?;
    let offsets = btf::offsets(Path::new(btf::VMLINUX_BTF));
    write_kernel_offsets(take(&mut ebpf, map_names::KERNEL_OFFSETS)?, offsets.exe);
    // Written at every start, after the programs that read them are loaded: a restarted agent's
    // flags apply to the pinned programs and to the sockets already in the sockhash.
    write_switches(
        take(&mut ebpf, fast_path_maps::SWITCHES)?,
        Switches {
            tls_posture: u32::from(tls_posture),
            fast_path: u32::from(fast_path),
        },
    )?;
    if fast_path {
        write_sock_offsets(take(&mut ebpf, fast_path_maps::SOCK_OFFSETS)?, offsets.sock);
    }
    let fast_path_stats = FastPathStats::new(take(&mut ebpf, fast_path_maps::STATS)?)?;
    let counters = Counters::new(
        take(&mut ebpf, map_names::RULE_COUNTERS)?,
        take(&mut ebpf, map_names::RULE_NAMES)?,
        take(&mut ebpf, map_names::STATS)?,
    )?;
    let events = EventReader::new(take(&mut ebpf, map_names::EVENTS)?)?;
    let posture = PostureMaps::new(
        take(&mut ebpf, posture_maps::POSTURE)?,
        take(&mut ebpf, posture_maps::SNI_NAMES)?,
        take(&mut ebpf, posture_maps::STATS)?,
    )?;
    Ok(Loaded {
        posture,
        fast_path: fast_path_stats,
        dns,
        kernel: Kernel {
            ebpf,
            pins,
            adopted,
            tls_posture,
            dns_learning,
            fast_path,
        },
        tables,
        counters,
        events,
    })
}

/// The sockhash a previous agent pinned keeps its size (sockets live in it; the loader refuses
/// a pinned map whose size differs from the object's): a different `requested` is reported.
fn adopted_capacity(pins: &PinDir, requested: u32) -> u32 {
    let Ok(info) = aya::maps::MapInfo::from_pin(pins.maps().join(posture_maps::SOCKS)) else {
        return requested;
    };
    let pinned = info.max_entries();
    if pinned != requested {
        tracing::warn!(
            pinned,
            requested,
            "the adopted sockhash keeps its capacity; uninstall to change it"
        );
    }
    pinned
}

fn take(ebpf: &mut Ebpf, name: &str) -> Result<Map> {
    ebpf.take_map(name)
        .with_context(|| format!("map {name} missing from the object"))
}

/// Owner of KERNEL_OFFSETS: the field offsets the programs need to read a task's executable.
/// Without BTF, process-aware rules cannot be enforced; everything else still is.
fn write_kernel_offsets(map: Map, offsets: Result<KernelOffsets>) {
    let offsets = match offsets {
        Ok(o) => o,
        Err(e) => {
            tracing::warn!(error = %format!("{e:#}"), "no kernel BTF: EgressPolicy spec.binaries cannot be enforced");
            return;
        }
    };
    let written = Array::<MapData, KernelOffsets>::try_from(map)
        .map_err(anyhow::Error::from)
        .and_then(|mut a| a.set(0, &offsets, 0).map_err(anyhow::Error::from));
    if let Err(e) = written {
        tracing::warn!(error = %format!("{e:#}"), "cannot write KERNEL_OFFSETS: spec.binaries not enforced");
    }
}

/// Owner of SWITCHES: which optional data paths the running agent turned on.
fn write_switches(map: Map, switches: Switches) -> Result<()> {
    Array::<MapData, Switches>::try_from(map)?
        .set(0, &switches, 0)
        .context("write MW_SWITCHES")
}

/// Owner of SOCK_OFFSETS. Without BTF the fast path never redirects (counted); nothing breaks.
fn write_sock_offsets(map: Map, offsets: Result<SockOffsets>) {
    let written = offsets.and_then(|offsets| {
        Array::<MapData, SockOffsets>::try_from(map)?
            .set(0, &offsets, 0)
            .map_err(anyhow::Error::from)
    });
    if let Err(e) = written {
        tracing::warn!(error = %format!("{e:#}"), "no socket offsets: the fast path will not redirect");
    }
}

/// Loads sock_ops (attached per governed cgroup, like the others) and attaches the stream
/// programs to the sockhash: an attachment held by the pinned map, so it outlives the agent.
/// The sk_msg stages serve TLS posture (SNI verdicts) and the fast path alike: a socket has one
/// sk_msg program: the posture entry stage with TLS posture, else the fast-path stage itself
/// (one program run per send instead of two and a tail call).
fn load_stream_programs(ebpf: &mut Ebpf, tls_posture: bool) -> Result<()> {
    let sockops: &mut SockOps = ebpf
        .program_mut(posture_programs::SOCKOPS)
        .context("program mw_sockops missing from the object")?
        .try_into()?;
    sockops.load().context("verifier rejected mw_sockops")?;
    // The stages each stream program chains to by tail calls (`posture::stages`; one program
    // array per program type).
    let mut msg_stages: ProgramArray<MapData> = ebpf
        .take_map(posture_maps::MSG_STAGES)
        .context("map MW_TLS_MSG_STAGES missing from the object")?
        .try_into()?;
    for (index, name) in [
        (stages::FEED, posture_programs::MSG),
        (stages::HELLO, posture_programs::MSG_HELLO),
        (stages::SNI, sni_policy::program_names::MSG_SNI),
        (stages::OFFER, posture_programs::MSG_OFFER),
        (stages::FAST, fast_path_programs::MSG_FAST),
    ] {
        let prog: &mut SkMsg = ebpf
            .program_mut(name)
            .with_context(|| format!("program {name}"))?
            .try_into()?;
        prog.load()
            .with_context(|| format!("verifier rejected {name}"))?;
        msg_stages
            .set(index, prog.fd()?, 0)
            .with_context(|| format!("stage {name}"))?;
    }
    // cgroup_skb, attached per governed cgroup with sock_ops: what every governed socket
    // receives, and what one outside the sockhash sends.
    let ingress_stages = load_skb_stages(
        ebpf,
        posture_maps::INGRESS_STAGES,
        [
            (stages::FEED, posture_programs::INGRESS),
            (stages::HELLO, posture_programs::INGRESS_HELLO),
            (stages::OFFER, posture_programs::INGRESS_OFFER),
        ]
        .as_slice(),
    )?;
    let egress_stages = load_skb_stages(
        ebpf,
        posture_maps::EGRESS_STAGES,
        [
            (stages::FEED, posture_programs::EGRESS),
            (stages::HELLO, posture_programs::EGRESS_HELLO),
            (stages::SNI, posture_programs::EGRESS_SNI),
            (stages::OFFER, posture_programs::EGRESS_OFFER),
        ]
        .as_slice(),
    )?;
    // The stage maps are pinned: they keep these programs after this agent exits, for the
    // stream programs live sockets hold, until a restarted agent sets its own.
    drop((msg_stages, ingress_stages, egress_stages));
    let socks: SockHash<MapData, ConnKey> = ebpf
        .take_map(posture_maps::SOCKS)
        .context("map MW_TLS_SOCKS missing from the object")?
        .try_into()?;
    let fd = socks.fd().try_clone().context("dup sockhash fd")?;
    let entry = if tls_posture {
        posture_programs::MSG
    } else {
        fast_path_programs::MSG_FAST
    };
    let msg: &mut SkMsg = ebpf.program_mut(entry).context(entry)?.try_into()?;
    let id = msg
        .attach(&fd)
        .with_context(|| format!("attach {entry} to the sockhash"))?;
    // The map holds the attachment; forget our handle so dropping it does not detach.
    std::mem::forget(msg.take_link(id)?);
    Ok(())
}

/// Loads the cgroup_skb stage programs `stages` (index, name) and puts them into the program
/// array `map`.
fn load_skb_stages(
    ebpf: &mut Ebpf,
    map: &str,
    stages: &[(u32, &str)],
) -> Result<ProgramArray<MapData>> {
    let mut array: ProgramArray<MapData> = ebpf
        .take_map(map)
        .with_context(|| format!("map {map} missing from the object"))?
        .try_into()?;
    for &(index, name) in stages {
        let prog: &mut CgroupSkb = ebpf
            .program_mut(name)
            .with_context(|| format!("program {name}"))?
            .try_into()?;
        prog.load()
            .with_context(|| format!("verifier rejected {name}"))?;
        array
            .set(index, prog.fd()?, 0)
            .with_context(|| format!("stage {name}"))?;
    }
    Ok(array)
}
