//! Attachments of the cgroup programs to governed cgroups, pinned as links under
//! `<pin>/links/<cgroup id>-<program>` so they keep enforcing when the agent dies.
//! A restarted agent swaps its own program instances into the existing links atomically
//! (BPF_LINK_UPDATE): there is no moment at which a governed cgroup has no program.

use std::{
    collections::{BTreeMap, BTreeSet},
    path::{Path, PathBuf},
};

use anyhow::{Context, Result};
use aya::programs::{
    CgroupAttachMode, CgroupSockAddr,
    cgroup_sock_addr::CgroupSockAddrLink,
    links::{FdLink, PinnedLink},
};

use super::loader::{Kernel, SOCK_ADDR_PROGRAMS};

/// One pinned link we hold an fd for.
struct HeldLink {
    path: PathBuf,
    _link: FdLink,
}

#[derive(Default)]
pub struct Attachments {
    /// cgroup id → its links (one per program).
    by_cgroup: BTreeMap<u64, Vec<HeldLink>>,
}

impl Attachments {
    pub fn governed(&self) -> impl Iterator<Item = u64> + '_ {
        self.by_cgroup.keys().copied()
    }

    /// Makes sure every program is attached to the cgroup at `path` (id `cgroup_id`).
    pub fn ensure(&mut self, kernel: &mut Kernel, cgroup_id: u64, path: &Path) -> Result<()> {
        if self.by_cgroup.contains_key(&cgroup_id) {
            return Ok(());
        }
        let mut held = Vec::new();
        for name in SOCK_ADDR_PROGRAMS {
            let pin = kernel.pins.links().join(format!("{cgroup_id}-{name}"));
            let prog: &mut CgroupSockAddr = kernel
                .ebpf
                .program_mut(name)
                .with_context(|| format!("program {name}"))?
                .try_into()?;
            let link = match adopt(prog, &pin) {
                Some(link) => link,
                None => attach_new(prog, path, &pin)?,
            };
            held.push(HeldLink {
                path: pin,
                _link: link,
            });
        }
        tracing::info!(cgroup = %path.display(), cgroup_id, "governing cgroup");
        self.by_cgroup.insert(cgroup_id, held);
        Ok(())
    }

    /// Detaches every cgroup not in `keep` (after the generation without them is live).
    pub fn retain(&mut self, keep: &BTreeSet<u64>) {
        let gone: Vec<u64> = self
            .by_cgroup
            .keys()
            .filter(|id| !keep.contains(id))
            .copied()
            .collect();
        for id in gone {
            if let Some(links) = self.by_cgroup.remove(&id) {
                for l in links {
                    // Removing the pin and dropping our fd releases the link: detached.
                    if let Err(e) = std::fs::remove_file(&l.path) {
                        tracing::warn!(path = %l.path.display(), error = %e, "unpin link");
                    }
                }
                tracing::info!(cgroup_id = id, "no longer governing cgroup");
            }
        }
    }
}

/// Pinned links left by an earlier agent for cgroups that this agent does not govern.
pub fn stale_link_pins(kernel: &Kernel, governed: &BTreeSet<u64>) -> Vec<PathBuf> {
    let Ok(dir) = std::fs::read_dir(kernel.pins.links()) else {
        return Vec::new();
    };
    dir.filter_map(|e| e.ok().map(|e| e.path()))
        .filter(|p| {
            let id = p
                .file_name()
                .and_then(|n| n.to_str())
                .and_then(|n| n.split('-').next())
                .and_then(|n| n.parse::<u64>().ok());
            id.is_none_or(|id| !governed.contains(&id))
        })
        .collect()
}

fn adopt(prog: &mut CgroupSockAddr, pin: &Path) -> Option<FdLink> {
    let pinned = PinnedLink::from_pin(pin).ok()?;
    let fd_link: FdLink = pinned.into();
    let link = CgroupSockAddrLink::try_from(fd_link).ok()?;
    match prog.attach_to_link(link) {
        Ok(id) => {
            let link = prog.take_link(id).ok()?;
            tracing::debug!(pin = %pin.display(), "adopted pinned link");
            FdLink::try_from(link).ok()
        }
        Err(e) => {
            // The cgroup behind a stale pin is gone: start over with a fresh link.
            tracing::warn!(pin = %pin.display(), error = %e, "cannot adopt pinned link");
            let _ = std::fs::remove_file(pin);
            None
        }
    }
}

fn attach_new(prog: &mut CgroupSockAddr, cgroup: &Path, pin: &Path) -> Result<FdLink> {
    let _ = std::fs::remove_file(pin);
    let dir = std::fs::File::open(cgroup).with_context(|| format!("open {}", cgroup.display()))?;
    let id = prog
        // Links are always multi-attach on cgroups; the kernel rejects explicit flags.
        .attach(&dir, CgroupAttachMode::Single)
        .with_context(|| format!("attach to {}", cgroup.display()))?;
    let link: FdLink = prog
        .take_link(id)?
        .try_into()
        .context("cgroup link is not an fd link")?;
    let pinned = link
        .pin(pin)
        .with_context(|| format!("pin {}", pin.display()))?;
    Ok(pinned.into())
}
