//! Process-aware egress rules (EgressPolicy spec.binaries) on the real kernel, as root.
//! A binary is its executable file (device, inode): the same file under another name (a
//! symlink) is the same binary; a renamed copy is a different binary.

mod support;

use std::{net::SocketAddr, os::unix::fs::PermissionsExt, path::PathBuf};

use support::*;

const PYTHON_FILE: &str = "/usr/bin/python3.11";

fn sa(s: &str) -> SocketAddr {
    s.parse().expect("socket address")
}

fn copy_python(scratch: &Scratch, name: &str) -> PathBuf {
    let to = scratch.dir.join(name);
    std::fs::copy(PYTHON_FILE, &to).expect("copy the python executable");
    std::fs::set_permissions(&to, std::fs::Permissions::from_mode(0o755)).expect("chmod");
    to
}

#[test]
fn binaries_rules_follow_the_executable_file_not_its_name() {
    let cg = CgroupTree::new("binaries");
    let client = cg.child("client");
    let scratch = Scratch::new("binaries");
    let renamed = copy_python(&scratch, "renamed-python");
    let allowed = copy_python(&scratch, "allowed-python");
    let symlink = scratch.dir.join("python-symlink");
    std::os::unix::fs::symlink(PYTHON_FILE, &symlink).expect("symlink");
    let config = scratch.write(
        "policy.yaml",
        &[
            workload("p", "client", "client", &client),
            format!(
                "apiVersion: meshward.io/v1alpha1\nkind: EgressPolicy\nmetadata:\n  name: no-python-to-five\n  namespace: p\nspec:\n  binaries: [\"{PYTHON_FILE}\"]\n  action: DENY\n  rules:\n  - to:\n    - hosts: [\"127.0.0.5\"]\n---\n"
            ),
            format!(
                "apiVersion: meshward.io/v1alpha1\nkind: EgressPolicy\nmetadata:\n  name: allowed-only-nine\n  namespace: p\nspec:\n  binaries: [\"{}/allowed*\"]\n  action: ALLOW\n  rules:\n  - to:\n    - ports: [9]\n---\n",
                scratch.dir.display()
            ),
        ]
        .concat(),
    );
    let agent = Agent::start("binaries", &config, &[]);
    let python = PathBuf::from(PYTHON_FILE);

    // The DENY names python3.11's file: it applies under any name that reaches that file.
    assert_eq!(
        probe_with(&python, &client, "tcp", sa("127.0.0.5:9")),
        "EPERM"
    );
    assert_eq!(
        probe_with(&symlink, &client, "tcp", sa("127.0.0.5:9")),
        "EPERM",
        "a symlink is the same file"
    );
    assert_eq!(
        probe_with(&renamed, &client, "tcp", sa("127.0.0.5:9")),
        "ECONNREFUSED",
        "a renamed copy is another binary: the DENY does not apply"
    );
    // The ALLOW is scoped to allowed-python: only it is restricted to port 9.
    assert_eq!(
        probe_with(&allowed, &client, "tcp", sa("127.0.0.6:9")),
        "ECONNREFUSED"
    );
    assert_eq!(
        probe_with(&allowed, &client, "tcp", sa("127.0.0.6:10")),
        "EPERM",
        "allowed-python: only port 9"
    );
    assert_eq!(
        probe_with(&python, &client, "tcp", sa("127.0.0.6:10")),
        "ECONNREFUSED",
        "no ALLOW policy selects python3.11's processes"
    );
    assert_eq!(
        agent.metric(
            "meshward_rule_verdicts_total",
            &[("policy", "no-python-to-five"), ("verdict", "deny")]
        ),
        Some(2)
    );
    let events = agent.json("/events");
    let comms: Vec<&str> = events["events"]
        .as_array()
        .into_iter()
        .flatten()
        .filter(|e| e["verdict"] == "deny")
        .filter_map(|e| e["comm"].as_str())
        .collect();
    assert!(comms.contains(&"allowed-python"), "{comms:?}");
}

/// A package upgrade replaces an executable file (a new inode at the same path): the agent
/// resolves `spec.binaries` again and the rule applies to the new file.
#[test]
fn a_replaced_executable_file_is_resolved_again() {
    let cg = CgroupTree::new("binary-upgrade");
    let client = cg.child("client");
    let scratch = Scratch::new("binary-upgrade");
    let tool = copy_python(&scratch, "tool");
    let config = scratch.write(
        "policy.yaml",
        &[
            workload("u", "client", "client", &client),
            format!(
                "apiVersion: meshward.io/v1alpha1\nkind: EgressPolicy\nmetadata:\n  name: no-tool-to-five\n  namespace: u\nspec:\n  binaries: [\"{}\"]\n  action: DENY\n  rules:\n  - to:\n    - hosts: [\"127.0.0.5\"]\n---\n",
                tool.display()
            ),
        ]
        .concat(),
    );
    let mut agent = Agent::start("binary-upgrade", &config, &[]);
    assert_eq!(
        probe_with(&tool, &client, "tcp", sa("127.0.0.5:9")),
        "EPERM"
    );

    let upgraded = copy_python(&scratch, "tool.new");
    std::fs::rename(&upgraded, &tool).expect("rename the new file into place");
    agent.wait_until("the new file resolved", |h| {
        h["last_reload"]["trigger"] == "executable files changed" && h["status"] == "ok"
    });
    assert_eq!(
        probe_with(&tool, &client, "tcp", sa("127.0.0.5:9")),
        "EPERM",
        "the rule follows the path to the new file"
    );
}
