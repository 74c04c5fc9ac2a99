//! What a conformance case says: a node topology, the policies a user writes, and what must
//! happen. The file format is documented in docs/conformance.md; `load.rs` reads it.

use std::net::IpAddr;

/// One case (one YAML document of a case file).
#[derive(Clone, Debug)]
pub struct Case {
    pub name: String,
    pub tags: Vec<String>,
    pub description: String,
    /// The file and line the case starts at (`conformance/cases/x.yaml:12`).
    pub origin: String,
    pub workloads: Vec<WorkloadSpec>,
    /// DNS names the case's resolver answers, each with the workload whose address it returns.
    pub dns: Vec<(String, String)>,
    /// The policy documents, exactly as written (after `{{ip:NAME}}` / `{{bin:NAME}}`
    /// substitution), and the case-file line they start at.
    pub policies: Policies,
    pub steps: Vec<Step>,
}

#[derive(Clone, Debug, Default)]
pub struct Policies {
    pub text: String,
    pub first_line: usize,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Placement {
    /// Processes in a cgroup of this node: governed by the agent.
    Local,
    /// A mesh workload on another node: known by its WorkloadEntry (identity), no cgroup here.
    Remote,
    /// Outside the mesh: no WorkloadEntry at all (an internet host, an unknown client).
    External,
}

#[derive(Clone, Debug)]
pub struct WorkloadSpec {
    pub name: String,
    pub namespace: String,
    pub service_account: String,
    pub labels: Vec<(String, String)>,
    pub placement: Placement,
    pub address: IpAddr,
}

/// A step: an optional action, then the expectations checked after it.
#[derive(Clone, Debug)]
pub struct Step {
    pub action: Action,
    pub line: usize,
    pub connections: Vec<Connection>,
    pub tls: Vec<TlsCheck>,
}

#[derive(Clone, Debug)]
pub enum Action {
    /// The case's policies are applied (the first step).
    Apply,
    /// New policies replace the case's; `rejected` says the agent (or the xDS client) must
    /// refuse them and keep enforcing the previous ones.
    Reload { policies: Policies, rejected: bool },
    /// The agent is killed (SIGKILL); the step's expectations are checked while it is down,
    /// then again after a new agent has started.
    Restart,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Protocol {
    Tcp,
    Udp,
}

impl Protocol {
    pub fn as_str(self) -> &'static str {
        match self {
            Protocol::Tcp => "tcp",
            Protocol::Udp => "udp",
        }
    }
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Verdict {
    Allow,
    Deny,
}

/// One row of a connectivity truth table.
#[derive(Clone, Debug)]
pub struct Connection {
    pub line: usize,
    pub from: String,
    /// A workload name.
    pub to: String,
    /// Resolve this name through the case's DNS server first (egress by DNS name).
    pub host: Option<String>,
    pub port: u16,
    pub protocol: Protocol,
    /// The client runs as this binary (a copy of the probe named so; process-aware rules).
    pub binary: Option<String>,
    pub verdict: Verdict,
    /// Text the deciding rule's name must contain.
    pub rule: Option<String>,
    /// Text the name of an AUDIT rule that must count this connection contains.
    pub audit: Option<String>,
}

/// A TLS handshake between two workloads and what the agent must report for it.
#[derive(Clone, Debug)]
pub struct TlsCheck {
    pub line: usize,
    pub from: String,
    pub to: String,
    pub port: u16,
    pub server: TlsSide,
    pub client: TlsSide,
    /// Fields of the client's posture record (`/posture`), compared as JSON values.
    pub expect: Vec<(String, serde_json::Value)>,
}

#[derive(Clone, Debug, Default)]
pub struct TlsSide {
    /// "1", "1.1", "1.2", "1.3".
    pub version: Option<String>,
    /// OpenSSL cipher list (TLS ≤ 1.2).
    pub ciphers: Option<String>,
    /// TLS 1.3 suites.
    pub suites: Option<String>,
    /// Server: ask for and require a client certificate. Client: present one.
    pub client_cert: bool,
    /// Client: the server name sent.
    pub sni: Option<String>,
    pub alpn: Option<String>,
}

impl Case {
    pub fn workload(&self, name: &str) -> Option<&WorkloadSpec> {
        self.workloads.iter().find(|w| w.name == name)
    }

    /// The binary names the case's connections run as.
    pub fn binaries(&self) -> Vec<String> {
        let mut names: Vec<String> = self
            .steps
            .iter()
            .flat_map(|s| s.connections.iter())
            .filter_map(|c| c.binary.clone())
            .collect();
        names.sort();
        names.dedup();
        names
    }

    pub fn matches(&self, filters: &[String]) -> bool {
        filters.is_empty()
            || filters
                .iter()
                .any(|f| self.tags.iter().any(|t| t == f) || self.name.starts_with(f.as_str()))
    }
}
