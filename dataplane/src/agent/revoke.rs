//! Established TCP connections that a policy change denies are reset.
//!
//! The kernel decides a connection once, at connect (egress) and at the server's SYN (inbound).
//! Without this step an established connection would outlive the authorization it was given.
//! After every new generation each live TCP connection of a governed workload is decided again,
//! as the kernel would decide it now (`control::evaluate*`, the twins of the kernel's lookups),
//! under the previous and under the new policy, and reset (sock_diag SOCK_DESTROY) if the
//! previous policy allowed it and the new one denies it — ztunnel closes such connections too.
//! A connection the previous policy would deny as well was admitted by something that cannot be
//! decided again (a DNS-learned name that expired since, say): it stays.

use std::{
    collections::{BTreeMap, HashMap},
    net::{IpAddr, SocketAddr},
    os::unix::fs::MetadataExt,
    path::{Path, PathBuf},
    sync::OnceLock,
};

use control::{CompiledPolicy, CompiledWorkload, Decision, FileId, Verdict};
use dataplane::kernel::{
    cgroup,
    sock_diag::{self, SockDiag, TCP_LISTEN, TcpSocket, states},
};
use serde::Serialize;

#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum Direction {
    Egress,
    Inbound,
}

/// A connection reset because the new policy denies it.
#[derive(Clone, Debug, Serialize)]
pub struct Closed {
    pub direction: Direction,
    /// `namespace/name` of the governed end.
    pub workload: String,
    pub local: SocketAddr,
    pub remote: SocketAddr,
    /// The new policy's deciding rule.
    pub rule: String,
}

/// The name keys DNS answers associated with an address for a workload (by its id in the new
/// policy, as the kernel holds them).
pub type Learned<'a> = &'a (dyn Fn(u32, IpAddr) -> Vec<u64> + Sync);

/// Resets every live connection `old` allowed and `new` denies; what was reset, and the
/// problems met (a namespace that vanished, sock_diag refused) — never fatal.
pub fn close_revoked(
    old: &CompiledPolicy,
    new: &CompiledPolicy,
    cgroup_root: &Path,
    learned: Learned<'_>,
) -> (Vec<Closed>, Vec<String>) {
    let scope = Scope::discover(new, cgroup_root);
    let policies = Policies { old, new, learned };
    let mut closed = Vec::new();
    let mut problems = Vec::new();
    for (netns, servers) in &scope.namespaces {
        let run = sock_diag::in_netns(netns, || policies.sweep(&scope, servers));
        match run {
            Ok(Ok((c, p))) => {
                closed.extend(c);
                problems.extend(p);
            }
            Ok(Err(e)) | Err(e) => problems.push(format!("{}: {e}", netns.display())),
        }
    }
    (closed, problems)
}

/// Where a governed workload's sockets can be: its cgroups (the one the WorkloadEntry names and
/// every cgroup under it), the processes in them, and their network namespaces.
struct Scope<'p> {
    /// cgroup id → workload (as named in the new policy).
    cgroups: HashMap<u64, &'p CompiledWorkload>,
    /// workload id (new policy) → its processes.
    pids: HashMap<u32, Vec<u32>>,
    /// One path per network namespace, with the workloads whose inbound connections are decided
    /// there (`meshward.io/netns`).
    namespaces: BTreeMap<PathBuf, Vec<&'p CompiledWorkload>>,
    /// Built on the first decision that needs a socket's owner (`owner_exe`).
    socket_owners: OnceLock<HashMap<u32, Vec<u32>>>,
}

impl<'p> Scope<'p> {
    fn discover(policy: &'p CompiledPolicy, cgroup_root: &Path) -> Self {
        let mut cgroups = HashMap::new();
        let mut pids: HashMap<u32, Vec<u32>> = HashMap::new();
        // Keyed by the namespace's identity: the same namespace reached by several paths once.
        let mut by_identity: BTreeMap<(u64, u64), (PathBuf, Vec<&'p CompiledWorkload>)> =
            BTreeMap::new();
        let mut add_netns = |path: PathBuf, server: Option<&'p CompiledWorkload>| {
            let Ok(meta) = std::fs::metadata(&path) else {
                return;
            };
            let entry = by_identity
                .entry((meta.dev(), meta.ino()))
                .or_insert_with(|| (path, Vec::new()));
            entry.1.extend(server);
        };
        for w in &policy.workloads {
            if let Some(netns) = &w.netns {
                add_netns(netns.clone(), Some(w));
            }
            let Some(rel) = &w.cgroup else { continue };
            for dir in cgroup_tree(&cgroup_root.join(rel)) {
                let Ok(id) = cgroup::cgroup_id(&dir) else {
                    continue;
                };
                cgroups.insert(id, w);
                let procs = std::fs::read_to_string(dir.join("cgroup.procs")).unwrap_or_default();
                for pid in procs.lines().filter_map(|l| l.trim().parse::<u32>().ok()) {
                    add_netns(PathBuf::from(format!("/proc/{pid}/ns/net")), None);
                    pids.entry(w.workload_id).or_default().push(pid);
                }
            }
        }
        Self {
            cgroups,
            pids,
            namespaces: by_identity.into_values().collect(),
            socket_owners: OnceLock::new(),
        }
    }

    /// The executable of the process holding socket `inode`, among the workload's processes.
    fn owner_exe(&self, workload_id: u32, inode: u32) -> Option<FileId> {
        let owners = self
            .socket_owners
            .get_or_init(|| self.index_socket_owners());
        let pid = owners
            .get(&inode)?
            .iter()
            .find(|pid| self.pids.get(&workload_id).is_some_and(|p| p.contains(pid)))?;
        super::binaries::file_id(Path::new(&format!("/proc/{pid}/exe")))
    }

    /// Socket inode → the governed processes holding it: every descriptor of every governed
    /// process read once per sweep, not once per socket.
    fn index_socket_owners(&self) -> HashMap<u32, Vec<u32>> {
        let mut owners: HashMap<u32, Vec<u32>> = HashMap::new();
        for &pid in self.pids.values().flatten() {
            let fds = std::fs::read_dir(format!("/proc/{pid}/fd"));
            for fd in fds.into_iter().flatten().flatten() {
                let Ok(link) = std::fs::read_link(fd.path()) else {
                    continue;
                };
                let inode = link
                    .to_str()
                    .and_then(|l| l.strip_prefix("socket:["))
                    .and_then(|l| l.strip_suffix(']'))
                    .and_then(|n| n.parse().ok());
                if let Some(inode) = inode {
                    owners.entry(inode).or_default().push(pid);
                }
            }
        }
        owners
    }
}

/// A cgroup directory and every cgroup under it.
fn cgroup_tree(top: &Path) -> Vec<PathBuf> {
    let mut all = vec![top.to_path_buf()];
    let mut i = 0;
    while i < all.len() {
        let children = std::fs::read_dir(&all[i])
            .into_iter()
            .flatten()
            .flatten()
            .filter(|e| e.file_type().is_ok_and(|t| t.is_dir()))
            .map(|e| e.path());
        all.extend(children.collect::<Vec<_>>());
        i += 1;
    }
    all
}

struct Policies<'a> {
    old: &'a CompiledPolicy,
    new: &'a CompiledPolicy,
    learned: Learned<'a>,
}

impl Policies<'_> {
    /// One network namespace (the calling thread is in it).
    fn sweep(
        &self,
        scope: &Scope<'_>,
        servers: &[&CompiledWorkload],
    ) -> std::io::Result<(Vec<Closed>, Vec<String>)> {
        let mut diag = SockDiag::open()?;
        let sockets =
            diag.tcp_sockets(states::ESTABLISHED | states::CLOSE_WAIT | states::LISTEN)?;
        let listeners: Vec<SocketAddr> = sockets
            .iter()
            .filter(|s| s.state == TCP_LISTEN)
            .map(|s| s.local)
            .collect();
        let mut closed = Vec::new();
        let mut problems = Vec::new();
        for s in sockets.iter().filter(|s| s.state != TCP_LISTEN) {
            let accepted = listeners.iter().any(|l| {
                l.port() == s.local.port() && (l.ip().is_unspecified() || l.ip() == s.local.ip())
            });
            let verdict = if accepted {
                servers
                    .iter()
                    .filter(|w| w.address == Some(s.local.ip()))
                    .find_map(|w| self.inbound_revoked(w, s))
            } else {
                scope
                    .cgroups
                    .get(&s.cgroup_id)
                    .and_then(|w| self.egress_revoked(scope, w, s))
            };
            let Some((direction, workload, rule)) = verdict else {
                continue;
            };
            match diag.destroy(s) {
                Ok(()) => closed.push(Closed {
                    direction,
                    workload,
                    local: s.local,
                    remote: s.remote,
                    rule,
                }),
                Err(e) => problems.push(format!("reset {} -> {}: {e}", s.local, s.remote)),
            }
        }
        Ok((closed, problems))
    }

    fn egress_revoked(
        &self,
        scope: &Scope<'_>,
        w: &CompiledWorkload,
        s: &TcpSocket,
    ) -> Option<(Direction, String, String)> {
        let keys = (self.learned)(w.workload_id, s.remote.ip());
        let by_binary = |p: &CompiledPolicy| {
            p.workload_by_name(&w.namespace, &w.name).is_some_and(|pw| {
                p.subjects
                    .iter()
                    .any(|sub| sub.workload_id == pw.workload_id)
            })
        };
        // A decision that depends on the executable needs the socket's owner; unknown, nothing
        // is decided.
        let exe = if by_binary(self.old) || by_binary(self.new) {
            Some(scope.owner_exe(w.workload_id, s.inode)?)
        } else {
            None
        };
        let decide = |p: &CompiledPolicy| -> Option<Decision> {
            let pw = p.workload_by_name(&w.namespace, &w.name)?;
            let subject = p.subject_of(pw.workload_id, exe);
            Some(control::evaluate_with_names(
                p,
                subject,
                s.remote.ip(),
                s.remote.port(),
                &keys,
            ))
        };
        revoked(decide(self.old), decide(self.new))
            .map(|id| (Direction::Egress, qualified(w), self.new.rule_name(id)))
    }

    fn inbound_revoked(
        &self,
        w: &CompiledWorkload,
        s: &TcpSocket,
    ) -> Option<(Direction, String, String)> {
        let decide = |p: &CompiledPolicy| -> Option<Decision> {
            let pw = p
                .workload_by_name(&w.namespace, &w.name)
                .filter(|pw| pw.netns.is_some() && pw.address == Some(s.local.ip()))?;
            let identity = control::identity_of(p, s.remote.ip());
            Some(control::evaluate_inbound(
                p,
                pw.workload_id,
                s.remote.ip(),
                identity,
                s.local.port(),
            ))
        };
        revoked(decide(self.old), decide(self.new))
            .map(|id| (Direction::Inbound, qualified(w), self.new.rule_name(id)))
    }
}

/// The new policy's deny rule if the connection was allowed (or not governed) before and is
/// denied now.
fn revoked(old: Option<Decision>, new: Option<Decision>) -> Option<u32> {
    let was_allowed = old.is_none_or(|d| d.verdict == Verdict::Allow);
    new.filter(|d| was_allowed && d.verdict == Verdict::Deny)
        .map(|d| d.rule_id)
}

fn qualified(w: &CompiledWorkload) -> String {
    format!("{}/{}", w.namespace, w.name)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn decision(verdict: Verdict, rule_id: u32) -> Option<Decision> {
        Some(Decision {
            verdict,
            rule_id,
            audit_rule_id: None,
        })
    }

    #[test]
    fn only_a_change_from_allowed_to_denied_revokes() {
        use Verdict::{Allow, Deny};
        assert_eq!(revoked(decision(Allow, 1), decision(Deny, 7)), Some(7));
        assert_eq!(revoked(None, decision(Deny, 7)), Some(7), "newly governed");
        assert_eq!(revoked(decision(Deny, 1), decision(Deny, 7)), None);
        assert_eq!(revoked(decision(Allow, 1), decision(Allow, 2)), None);
        assert_eq!(
            revoked(decision(Allow, 1), None),
            None,
            "no longer governed"
        );
    }
}
