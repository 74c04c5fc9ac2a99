//! Attachments, pinned as links under `<pin>/links/` so they keep enforcing when the agent dies:
//! the cgroup programs on each governed cgroup (`cgroup-<id>-<program>`) and the sk_lookup
//! program on each governed network namespace (`netns-<inode>-<program>`).
//! A restarted agent swaps its own program instances into the existing links atomically
//! (BPF_LINK_UPDATE): there is no moment at which a governed target has no program.

use std::{
    collections::{BTreeMap, BTreeSet},
    os::unix::fs::MetadataExt,
    path::{Path, PathBuf},
};

use anyhow::{Context, Result};
use aya::programs::{
    CgroupAttachMode, CgroupSkb, CgroupSkbAttachType, CgroupSockAddr, SkLookup, SockOps,
    cgroup_sock_addr::CgroupSockAddrLink,
    links::{FdLink, PinnedLink},
};
use dataplane_common::program_names;

use super::loader::{Kernel, SOCK_ADDR_PROGRAMS};

/// What a set of links is attached to.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord)]
pub enum Target {
    /// cgroup id (inode of the cgroup directory).
    Cgroup(u64),
    /// The DNS learning programs on a cgroup (id): only where the workload has DNS-name rules.
    CgroupDns(u64),
    /// Network namespace inode.
    Netns(u64),
}

/// One pinned link we hold an fd for.
struct HeldLink {
    path: PathBuf,
    _link: FdLink,
}

#[derive(Default)]
pub struct Attachments {
    held: BTreeMap<Target, Vec<HeldLink>>,
}

impl Attachments {
    /// Attaches the cgroup programs to the cgroup at `path` (id `cgroup_id`), once.
    pub fn ensure_cgroup(
        &mut self,
        kernel: &mut Kernel,
        cgroup_id: u64,
        path: &Path,
    ) -> Result<Target> {
        let target = Target::Cgroup(cgroup_id);
        if self.held.contains_key(&target) {
            return Ok(target);
        }
        let mut links = Vec::new();
        for name in SOCK_ADDR_PROGRAMS {
            let pin = kernel
                .pins
                .links()
                .join(format!("cgroup-{cgroup_id}-{name}"));
            let prog: &mut CgroupSockAddr = kernel
                .ebpf
                .program_mut(name)
                .with_context(|| format!("program {name}"))?
                .try_into()?;
            let link = match adopt_cgroup(prog, &pin) {
                Some(link) => link,
                None => {
                    let dir = std::fs::File::open(path)
                        .with_context(|| format!("open {}", path.display()))?;
                    // Links are always multi-attach on cgroups; the kernel rejects explicit flags.
                    let id = prog
                        .attach(&dir, CgroupAttachMode::Single)
                        .with_context(|| format!("attach {name} to {}", path.display()))?;
                    pin_new(
                        prog.take_link(id)?
                            .try_into()
                            .context("cgroup link is not an fd link")?,
                        &pin,
                    )?
                }
            };
            links.push(HeldLink {
                path: pin,
                _link: link,
            });
        }
        if kernel.needs_sockops() {
            links.push(attach_sockops(kernel, cgroup_id, path)?);
        }
        if kernel.tls_posture {
            links.push(attach_skb(
                kernel,
                cgroup_id,
                path,
                dataplane_common::posture::program_names::INGRESS,
                CgroupSkbAttachType::Ingress,
            )?);
            links.push(attach_skb(
                kernel,
                cgroup_id,
                path,
                dataplane_common::posture::program_names::EGRESS,
                CgroupSkbAttachType::Egress,
            )?);
        }
        tracing::info!(cgroup = %path.display(), cgroup_id, "governing cgroup");
        self.held.insert(target, links);
        Ok(target)
    }

    /// Attaches the DNS learning programs to a governed cgroup whose workload has DNS-name rules,
    /// once. They look at every packet of the cgroup: a workload with nothing to learn does not
    /// pay for them. None when DNS learning is off.
    pub fn ensure_dns(
        &mut self,
        kernel: &mut Kernel,
        cgroup_id: u64,
        path: &Path,
    ) -> Result<Option<Target>> {
        if !kernel.dns_learning {
            return Ok(None);
        }
        let target = Target::CgroupDns(cgroup_id);
        if let std::collections::btree_map::Entry::Vacant(slot) = self.held.entry(target) {
            let mut links = Vec::new();
            for (name, direction) in super::loader::DNS_PROGRAMS {
                links.push(attach_skb(kernel, cgroup_id, path, name, direction)?);
            }
            slot.insert(links);
        }
        Ok(Some(target))
    }

    /// Attaches sk_lookup to the network namespace at `path` (e.g. /var/run/netns/NAME), once.
    pub fn ensure_netns(&mut self, kernel: &mut Kernel, path: &Path) -> Result<Target> {
        let netns =
            std::fs::File::open(path).with_context(|| format!("open netns {}", path.display()))?;
        let inode = netns
            .metadata()
            .with_context(|| format!("stat {}", path.display()))?
            .ino();
        let target = Target::Netns(inode);
        if self.held.contains_key(&target) {
            return Ok(target);
        }
        let name = program_names::SK_LOOKUP;
        let pin = kernel.pins.links().join(format!("netns-{inode}-{name}"));
        let prog: &mut SkLookup = kernel
            .ebpf
            .program_mut(name)
            .with_context(|| format!("program {name}"))?
            .try_into()?;
        let link = match adopt_sk_lookup(&pin) {
            Some(link) => link,
            None => {
                let id = prog
                    .attach(&netns)
                    .with_context(|| format!("attach {name} to {}", path.display()))?;
                pin_new(prog.take_link(id)?.into(), &pin)?
            }
        };
        tracing::info!(netns = %path.display(), inode, "governing inbound connections in netns");
        self.held.insert(
            target,
            vec![HeldLink {
                path: pin,
                _link: link,
            }],
        );
        Ok(target)
    }

    /// Detaches every target not in `keep` (after the generation without them is live).
    pub fn retain(&mut self, keep: &BTreeSet<Target>) {
        let gone: Vec<Target> = self
            .held
            .keys()
            .filter(|t| !keep.contains(t))
            .copied()
            .collect();
        for target in gone {
            for l in self.held.remove(&target).into_iter().flatten() {
                // Removing the pin and dropping our fd releases the link: detached.
                if let Err(e) = std::fs::remove_file(&l.path) {
                    tracing::warn!(path = %l.path.display(), error = %e, "unpin link");
                }
            }
            tracing::info!(?target, "no longer governing");
        }
    }

    /// Removes pinned links that this agent does not hold: left by an earlier agent for targets
    /// that are no longer governed.
    pub fn remove_stale_pins(&self, kernel: &Kernel) {
        let held: BTreeSet<&Path> = self
            .held
            .values()
            .flatten()
            .map(|l| l.path.as_path())
            .collect();
        let Ok(dir) = std::fs::read_dir(kernel.pins.links()) else {
            return;
        };
        for pin in dir.filter_map(|e| e.ok().map(|e| e.path())) {
            if !held.contains(pin.as_path()) {
                tracing::info!(pin = %pin.display(), "removing a link for a target no longer governed");
                let _ = std::fs::remove_file(pin);
            }
        }
    }
}

/// sock_ops on a governed cgroup (TLS posture and the fast path: socket owners, sockhash).
fn attach_sockops(kernel: &mut Kernel, cgroup_id: u64, path: &Path) -> Result<HeldLink> {
    let name = dataplane_common::posture::program_names::SOCKOPS;
    attach_once(kernel, cgroup_id, path, name, |ebpf, dir| {
        let prog: &mut SockOps = ebpf.program_mut(name).context(name)?.try_into()?;
        let id = prog.attach(dir, CgroupAttachMode::Single)?;
        Ok(prog.take_link(id)?.try_into()?)
    })
}

/// A cgroup_skb program on a governed cgroup: TLS posture ingress (what governed sockets
/// receive), DNS learning (queries sent, answers received).
fn attach_skb(
    kernel: &mut Kernel,
    cgroup_id: u64,
    path: &Path,
    name: &str,
    direction: CgroupSkbAttachType,
) -> Result<HeldLink> {
    attach_once(kernel, cgroup_id, path, name, |ebpf, dir| {
        let prog: &mut CgroupSkb = ebpf
            .program_mut(name)
            .context(name.to_string())?
            .try_into()?;
        let id = prog.attach(dir, direction, CgroupAttachMode::Single)?;
        Ok(prog.take_link(id)?.try_into()?)
    })
}

/// Attaches program `name` to the cgroup with `attach`, pinned; aya offers no link update for
/// these program types, so an earlier agent's pinned link is kept (its program uses the same
/// pinned maps).
fn attach_once(
    kernel: &mut Kernel,
    cgroup_id: u64,
    path: &Path,
    name: &str,
    attach: impl FnOnce(&mut aya::Ebpf, &std::fs::File) -> Result<FdLink>,
) -> Result<HeldLink> {
    let pin = kernel
        .pins
        .links()
        .join(format!("cgroup-{cgroup_id}-{name}"));
    if let Some(link) = pinned(&pin) {
        return Ok(HeldLink {
            path: pin,
            _link: link,
        });
    }
    let dir = std::fs::File::open(path).with_context(|| format!("open {}", path.display()))?;
    let link = attach(&mut kernel.ebpf, &dir)
        .with_context(|| format!("attach {name} to {}", path.display()))?;
    Ok(HeldLink {
        _link: pin_new(link, &pin)?,
        path: pin,
    })
}

fn pin_new(link: FdLink, pin: &Path) -> Result<FdLink> {
    let _ = std::fs::remove_file(pin);
    let pinned = link
        .pin(pin)
        .with_context(|| format!("pin {}", pin.display()))?;
    Ok(pinned.into())
}

fn pinned(pin: &Path) -> Option<FdLink> {
    PinnedLink::from_pin(pin).ok().map(Into::into)
}

/// The cgroup behind a stale pin may be gone: then start over with a fresh link.
fn adoption_failed(pin: &Path, error: &dyn std::fmt::Display) -> Option<FdLink> {
    tracing::warn!(pin = %pin.display(), %error, "cannot adopt pinned link");
    let _ = std::fs::remove_file(pin);
    None
}

fn adopt_cgroup(prog: &mut CgroupSockAddr, pin: &Path) -> Option<FdLink> {
    let link = CgroupSockAddrLink::try_from(pinned(pin)?).ok()?;
    match prog.attach_to_link(link) {
        Ok(id) => FdLink::try_from(prog.take_link(id).ok()?).ok(),
        Err(e) => adoption_failed(pin, &e),
    }
}

/// aya offers no link update for sk_lookup: keep the earlier agent's link (its program uses the
/// same pinned maps, so it enforces the generations this agent writes).
fn adopt_sk_lookup(pin: &Path) -> Option<FdLink> {
    pinned(pin)
}
