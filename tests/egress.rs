//! Egress enforcement at connect time, on the real kernel, as root.
//! Each test: its own cgroups, agent, pin directory and config; real sockets from a real process.

mod support;

use std::{net::SocketAddr, time::Duration};

use support::*;

fn sa(s: &str) -> SocketAddr {
    s.parse().expect("socket address")
}

#[test]
fn allow_deny_audit_and_port_wildcard() {
    let cg = CgroupTree::new("allow-deny");
    let client = cg.child("client");
    let (open, _l) = listener("127.0.0.1");
    let (open_any_port, _l2) = listener("127.0.0.2");
    let closed = free_port();
    let scratch = Scratch::new("allow-deny");
    let config = scratch.write(
        "policy.yaml",
        &[
            workload("shop", "client", "client", &client),
            egress(
                "shop",
                "client-allow",
                Some("client"),
                "ALLOW",
                &format!(
                    "  - to:\n    - hosts: [\"127.0.0.1\"]\n      ports: [{}]\n  - to:\n    - hosts: [\"127.0.0.2\"]\n      ports: [\"*\"]\n",
                    open.port()
                ),
            ),
            egress("shop", "no-three", None, "DENY", "  - to:\n    - hosts: [\"127.0.0.3\"]\n"),
            egress(
                "shop",
                "watch-one",
                Some("client"),
                "AUDIT",
                &format!("  - to:\n    - hosts: [\"127.0.0.1\"]\n      ports: [{}]\n", open.port()),
            ),
        ]
        .concat(),
    );
    let agent = Agent::start("allow-deny", &config, &[]);

    assert_eq!(
        probe(&client, "tcp", open),
        "ok",
        "allowed by client-allow#0"
    );
    assert_eq!(
        probe(&client, "tcp", open_any_port),
        "ok",
        "allowed by the port wildcard rule"
    );
    assert_eq!(
        probe(&client, "tcp", SocketAddr::new(open_any_port.ip(), closed)),
        "ECONNREFUSED",
        "any port of 127.0.0.2 is allowed: the kernel refuses only because nothing listens"
    );
    assert_eq!(
        probe(&client, "tcp", SocketAddr::new(open.ip(), closed)),
        "EPERM",
        "no ALLOW rule"
    );
    assert_eq!(
        probe(&client, "tcp", sa("127.0.0.3:80")),
        "EPERM",
        "DENY policy"
    );

    let allow = |policy: &str, rule: &str, verdict: &str| {
        agent.metric(
            "meshward_rule_verdicts_total",
            &[("policy", policy), ("rule", rule), ("verdict", verdict)],
        )
    };
    assert_eq!(allow("client-allow", "0", "allow"), Some(1));
    assert_eq!(allow("client-allow", "1", "allow"), Some(2));
    assert_eq!(allow("no-three", "0", "deny"), Some(1));
    assert_eq!(
        allow("watch-one", "0", "audit"),
        Some(1),
        "AUDIT counts but does not decide"
    );
    assert_eq!(allow("(default)", "default-deny", "deny"), Some(1));

    let events = agent.json("/events");
    let events = events["events"].as_array().expect("events list");
    let rules: Vec<(&str, &str)> = events
        .iter()
        .map(|e| {
            (
                e["verdict"].as_str().unwrap_or(""),
                e["rule"].as_str().unwrap_or(""),
            )
        })
        .collect();
    assert!(rules.contains(&("audit", "shop/watch-one#0")), "{rules:?}");
    assert!(rules.contains(&("deny", "shop/no-three#0")), "{rules:?}");
    assert!(
        events
            .iter()
            .all(|e| e["workload"] == "client" && e["comm"] == "python3")
    );
    let denied_three = events
        .iter()
        .find(|e| e["rule"] == "shop/no-three#0")
        .expect("deny event");
    assert_eq!(denied_three["destination"], "127.0.0.3:80");
    assert_eq!(denied_three["hook"], "connect4");
}

#[test]
fn cidr_ipv6_and_udp() {
    let cg = CgroupTree::new("cidr-v6-udp");
    let client = cg.child("client");
    let udp_port = free_port();
    let (v6, _l) = listener("::1");
    let scratch = Scratch::new("cidr-v6-udp");
    let config = scratch.write(
        "policy.yaml",
        &[
            workload("net", "client", "client", &client),
            egress(
                "net",
                "ranges",
                Some("client"),
                "ALLOW",
                &format!(
                    "  - to:\n    - hosts: [\"127.10.0.0/16\"]\n  - to:\n    - hosts: [\"::1\"]\n      ports: [{}]\n  - to:\n    - hosts: [\"127.0.0.1\"]\n      ports: [{udp_port}]\n",
                    v6.port()
                ),
            ),
            egress("net", "hole", Some("client"), "DENY", "  - to:\n    - hosts: [\"127.10.9.9/32\"]\n"),
        ]
        .concat(),
    );
    let _agent = Agent::start("cidr-v6-udp", &config, &[]);

    assert_eq!(
        probe(&client, "tcp", sa("127.10.5.5:9")),
        "ECONNREFUSED",
        "inside the /16"
    );
    assert_eq!(
        probe(&client, "tcp", sa("127.11.0.1:9")),
        "EPERM",
        "outside the /16"
    );
    assert_eq!(
        probe(&client, "tcp", sa("127.10.9.9:9")),
        "EPERM",
        "DENY /32 inside the allowed /16"
    );
    assert_eq!(probe(&client, "tcp", v6), "ok", "IPv6 allowed on its port");
    assert_eq!(
        probe(&client, "tcp", sa(&format!("[::1]:{}", free_port()))),
        "EPERM",
        "IPv6 other port"
    );
    assert_eq!(
        probe(&client, "udp", sa(&format!("127.0.0.1:{udp_port}"))),
        "ok",
        "UDP allowed"
    );
    assert_eq!(
        probe(&client, "udp", sa(&format!("127.0.0.1:{}", udp_port ^ 1))),
        "EPERM",
        "UDP denied"
    );
    assert_eq!(
        probe(&client, "udp", sa("[::1]:53")),
        "EPERM",
        "UDP over IPv6 denied"
    );
}

#[test]
fn ungoverned_processes_and_workloads_without_allow_policy() {
    let cg = CgroupTree::new("ungoverned");
    let locked = cg.child("locked");
    let free = cg.child("free");
    let sibling = cg.child("not-in-config");
    let nested = cg.child("locked/worker");
    let scratch = Scratch::new("ungoverned");
    let config = scratch.write(
        "policy.yaml",
        &[
            workload("a", "locked", "locked", &locked),
            workload("a", "free", "free", &free),
            // An ALLOW policy with no rules allows nothing (Istio's allow-nothing).
            "apiVersion: meshward.io/v1alpha1\nkind: EgressPolicy\nmetadata:\n  name: allow-nothing\n  namespace: a\nspec:\n  selector:\n    matchLabels:\n      app: locked\n  action: ALLOW\n---\n".to_string(),
            egress("a", "deny-seven", None, "DENY", "  - to:\n    - hosts: [\"127.0.0.7\"]\n"),
        ]
        .concat(),
    );
    let agent = Agent::start("ungoverned", &config, &[]);

    assert_eq!(
        probe(&locked, "tcp", sa("127.0.0.1:9")),
        "EPERM",
        "allow-nothing"
    );
    assert_eq!(
        probe(&nested, "tcp", sa("127.0.0.1:9")),
        "EPERM",
        "child cgroup of a workload"
    );
    assert_eq!(
        probe(&free, "tcp", sa("127.0.0.1:9")),
        "ECONNREFUSED",
        "no ALLOW policy selects it"
    );
    assert_eq!(
        probe(&free, "tcp", sa("127.0.0.7:9")),
        "EPERM",
        "namespace-wide DENY"
    );
    assert_eq!(
        probe(&sibling, "tcp", sa("127.0.0.7:9")),
        "ECONNREFUSED",
        "cgroup not governed"
    );
    assert_eq!(
        probe_outside("tcp", sa("127.0.0.7:9")),
        "ECONNREFUSED",
        "the test's own cgroup"
    );
    assert_eq!(
        agent.metric(
            "meshward_rule_verdicts_total",
            &[("rule", "default-allow"), ("verdict", "allow")]
        ),
        Some(1)
    );
}

#[test]
fn dns_name_hosts_resolve_against_a_real_dns_server() {
    let dns = Dnsmasq::start(&[("svc.mesh.test", "127.0.0.21")], 1);
    let cg = CgroupTree::new("dns");
    let client = cg.child("client");
    let scratch = Scratch::new("dns");
    let config = scratch.write(
        "policy.yaml",
        &[
            workload("d", "client", "client", &client),
            egress(
                "d",
                "by-name",
                Some("client"),
                "ALLOW",
                "  - to:\n    - hosts: [\"SVC.mesh.test.\"]\n",
            ),
        ]
        .concat(),
    );
    let agent = Agent::start(
        "dns",
        &config,
        &["--dns-server", &dns.addr.to_string(), "--dns-min-ttl", "1"],
    );

    assert_eq!(
        probe(&client, "tcp", sa("127.0.0.21:9")),
        "ECONNREFUSED",
        "resolved address allowed"
    );
    assert_eq!(
        probe(&client, "tcp", sa("127.0.0.22:9")),
        "EPERM",
        "other address denied"
    );
    let policy = agent.json("/policy");
    let names = policy["dns_names"].as_array().expect("dns_names");
    assert_eq!(names.len(), 1, "{policy}");
    assert_eq!(names[0]["name"], "svc.mesh.test");
    assert_eq!(names[0]["ips"][0], "127.0.0.21");
}

#[test]
fn invalid_reload_keeps_the_previous_policy() {
    let cg = CgroupTree::new("bad-reload");
    let client = cg.child("client");
    let scratch = Scratch::new("bad-reload");
    let good = [
        workload("r", "client", "client", &client),
        egress(
            "r",
            "only-nine",
            Some("client"),
            "ALLOW",
            "  - to:\n    - ports: [9]\n",
        ),
    ]
    .concat();
    let config = scratch.write("policy.yaml", &good);
    let mut agent = Agent::start("bad-reload", &config, &[]);
    assert_eq!(probe(&client, "tcp", sa("127.0.0.1:10")), "EPERM");

    // Line 22 of the new file holds the bad port; the change also tries to open port 10.
    let bad = good.replace("ports: [9]", "ports: [9, 10]")
        + &egress(
            "r",
            "broken",
            None,
            "ALLOW",
            "  - to:\n    - ports: [70000]\n",
        );
    write_atomic(&config, &bad);
    let line = bad
        .lines()
        .position(|l| l.contains("70000"))
        .expect("bad line")
        + 1;
    let h = agent.wait_until("reload rejected", |h| h["status"] == "degraded");
    let errors = h["last_reload"]["errors"].to_string();
    assert!(
        errors.contains(&format!("policy.yaml:{line}")),
        "error names file:line: {errors}"
    );
    assert_eq!(h["generation"], 1, "generation unchanged");
    assert_eq!(
        probe(&client, "tcp", sa("127.0.0.1:10")),
        "EPERM",
        "old policy still enforced"
    );
    assert_eq!(probe(&client, "tcp", sa("127.0.0.1:9")), "ECONNREFUSED");
    assert_eq!(
        agent.metric("meshward_config_reloads_total", &[("result", "failure")]),
        Some(1)
    );
    assert_eq!(
        agent.metric("meshward_config_last_reload_success", &[]),
        Some(0)
    );

    // Fixed: the change goes live.
    write_atomic(&config, good.replace("ports: [9]", "ports: [9, 10]"));
    agent.wait_until("fixed config applied", |h| {
        h["status"] == "ok" && h["generation"] == 2
    });
    assert_eq!(probe(&client, "tcp", sa("127.0.0.1:10")), "ECONNREFUSED");
}

/// A client workload in namespace `ns` allowed to reach only `port`.
fn client_allowed_only_port(ns: &str, client: &str, port: u16) -> String {
    [
        workload(ns, "client", "client", client),
        egress(
            ns,
            "p",
            Some("client"),
            "ALLOW",
            &format!("  - to:\n    - ports: [{port}]\n"),
        ),
    ]
    .concat()
}

/// A config file rewritten in place (truncated, then written 150 ms later, as a script or an
/// editor may) is not read while half written: the empty file in between would lift every
/// policy. The agent checks the file every 50 ms; each rewrite becomes one generation.
#[test]
fn a_half_written_file_is_not_applied() {
    use std::io::Write;
    let cg = CgroupTree::new("halfwrite");
    let client = cg.child("client");
    let scratch = Scratch::new("halfwrite");
    let policy = |port: u16| client_allowed_only_port("hw", &client, port);
    let config = scratch.write("policy.yaml", &policy(9));
    let mut agent = Agent::start("halfwrite", &config, &["--watch-interval-ms", "50"]);
    let rounds = 3;
    for round in 1..=rounds {
        let mut file = std::fs::File::create(&config).expect("truncate");
        std::thread::sleep(Duration::from_millis(120));
        assert_eq!(
            probe(&client, "tcp", sa("127.0.0.1:10")),
            "EPERM",
            "round {round}: the truncated file lifted the policy"
        );
        std::thread::sleep(Duration::from_millis(30));
        file.write_all(policy(20 + round).as_bytes())
            .expect("write");
        drop(file);
        agent.wait_until("rewritten file applied", |h| {
            h["generation"] == 1 + round && h["last_reload"]["trigger"] == "file change"
        });
    }
    std::thread::sleep(Duration::from_millis(500));
    assert_eq!(
        agent.json("/healthz")["generation"],
        1 + rounds,
        "one generation per rewrite"
    );
    assert!(!agent.log().contains("workloads=0"), "{}", agent.log());
    assert_eq!(probe(&client, "tcp", sa("127.0.0.1:23")), "ECONNREFUSED");
}

#[test]
fn sighup_reloads() {
    let cg = CgroupTree::new("sighup");
    let client = cg.child("client");
    let scratch = Scratch::new("sighup");
    let policy = |port: u16| client_allowed_only_port("h", &client, port);
    let config = scratch.write("policy.yaml", &policy(9));
    // Polling effectively off: only the signal can trigger the reload.
    let mut agent = Agent::start("sighup", &config, &["--watch-interval-ms", "3600000"]);
    write_atomic(&config, policy(11));
    agent.sighup();
    agent.wait_until("SIGHUP reload", |h| {
        h["generation"] == 2 && h["last_reload"]["trigger"] == "SIGHUP"
    });
    assert_eq!(probe(&client, "tcp", sa("127.0.0.1:11")), "ECONNREFUSED");
    assert_eq!(probe(&client, "tcp", sa("127.0.0.1:9")), "EPERM");
}

#[test]
fn kill9_leaves_enforcement_and_a_restart_adopts_it_with_counters() {
    let cg = CgroupTree::new("restart");
    let client = cg.child("client");
    let scratch = Scratch::new("restart");
    let config = scratch.write(
        "policy.yaml",
        &[
            workload("k", "client", "client", &client),
            egress(
                "k",
                "deny-eight",
                None,
                "DENY",
                "  - to:\n    - hosts: [\"127.0.0.8\"]\n",
            ),
        ]
        .concat(),
    );
    let mut agent = Agent::start("restart", &config, &[]);
    let denied = |agent: &Agent| {
        agent.metric(
            "meshward_rule_verdicts_total",
            &[("policy", "deny-eight"), ("verdict", "deny")],
        )
    };
    assert_eq!(probe(&client, "tcp", sa("127.0.0.8:9")), "EPERM");
    assert_eq!(denied(&agent), Some(1));

    agent.kill9();
    for _ in 0..3 {
        assert_eq!(
            probe(&client, "tcp", sa("127.0.0.8:9")),
            "EPERM",
            "pinned programs enforce without the agent"
        );
    }
    assert_eq!(probe(&client, "tcp", sa("127.0.0.9:9")), "ECONNREFUSED");

    agent.restart();
    let h = agent.json("/healthz");
    assert_eq!(
        h["generation"], 2,
        "the restarted agent wrote the next generation: {h}"
    );
    assert!(
        agent.log().contains("adopted=true"),
        "maps adopted from the pins"
    );
    assert_eq!(
        denied(&agent),
        Some(4),
        "counters continue across the restart"
    );
    assert_eq!(probe(&client, "tcp", sa("127.0.0.8:9")), "EPERM");
    assert_eq!(denied(&agent), Some(5));
}

#[test]
fn check_reports_file_and_line() {
    let scratch = Scratch::new("check");
    let good = scratch.write(
        "good.yaml",
        &egress(
            "c",
            "fine",
            None,
            "ALLOW",
            "  - to:\n    - hosts: [\"10.0.0.0/8\"]\n      ports: [443]\n",
        ),
    );
    let out = std::process::Command::new(MESHWARD)
        .args(["check", "--config"])
        .arg(&good)
        .output()
        .expect("run check");
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );

    let bad = scratch.write(
        "bad.yaml",
        &egress(
            "c",
            "cidr",
            None,
            "ALLOW",
            "  - to:\n    - hosts: [\"10.0.0.0/33\"]\n",
        ),
    );
    let out = std::process::Command::new(MESHWARD)
        .args(["check", "--config"])
        .arg(&bad)
        .output()
        .expect("run check");
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(!out.status.success());
    assert!(stderr.contains("bad.yaml:10"), "{stderr}");
}

#[test]
fn dns_answers_are_refreshed_when_their_ttl_expires() {
    let dns = Dnsmasq::start(&[("moving.mesh.test", "127.0.0.31")], 1);
    let port = dns.addr.port();
    let cg = CgroupTree::new("dns-ttl");
    let client = cg.child("client");
    let scratch = Scratch::new("dns-ttl");
    let config = scratch.write(
        "policy.yaml",
        &[
            workload("t", "client", "client", &client),
            egress(
                "t",
                "by-name",
                Some("client"),
                "ALLOW",
                "  - to:\n    - hosts: [\"moving.mesh.test\"]\n",
            ),
        ]
        .concat(),
    );
    let mut agent = Agent::start(
        "dns-ttl",
        &config,
        &["--dns-server", &dns.addr.to_string(), "--dns-min-ttl", "1"],
    );
    assert_eq!(probe(&client, "tcp", sa("127.0.0.31:9")), "ECONNREFUSED");
    assert_eq!(probe(&client, "tcp", sa("127.0.0.32:9")), "EPERM");

    // The name moves: same server address, new answer. After the 1 s TTL the agent re-resolves
    // and applies a new generation.
    drop(dns);
    let _dns = Dnsmasq::start_on(port, &[("moving.mesh.test", "127.0.0.32")], 1);
    agent.wait_until("re-resolved generation", |h| {
        h["last_reload"]["trigger"] == "DNS answer changed" && h["status"] == "ok"
    });
    assert_eq!(
        probe(&client, "tcp", sa("127.0.0.32:9")),
        "ECONNREFUSED",
        "new answer allowed"
    );
    assert_eq!(
        probe(&client, "tcp", sa("127.0.0.31:9")),
        "EPERM",
        "old answer expired"
    );
}

#[test]
fn events_beyond_the_budget_are_counted_as_lost() {
    let cg = CgroupTree::new("event-budget");
    let client = cg.child("client");
    let scratch = Scratch::new("event-budget");
    let config = scratch.write(
        "policy.yaml",
        &[
            workload("e", "client", "client", &client),
            egress("e", "deny-all", None, "DENY", "  - {}\n"),
        ]
        .concat(),
    );
    let agent = Agent::start("event-budget", &config, &["--events-per-sec", "1"]);
    // Ten denials in about half a second against a budget of 1 event/s per CPU: at most a few
    // events get through (2 CPUs, at most 2 windows); the rest are counted as rate-limited.
    for _ in 0..10 {
        assert_eq!(probe(&client, "tcp", sa("127.0.0.1:9")), "EPERM");
    }
    let denied = agent.metric(
        "meshward_rule_verdicts_total",
        &[("policy", "deny-all"), ("verdict", "deny")],
    );
    assert_eq!(denied, Some(10), "every denial is counted, sent or not");
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(5);
    loop {
        let lost = agent
            .metric("meshward_events_lost_total", &[("reason", "rate_limited")])
            .expect("lost-events metric");
        let delivered = agent.json("/events")["events"]
            .as_array()
            .map(Vec::len)
            .unwrap_or(0) as u64;
        if lost + delivered == 10 {
            assert!(
                lost >= 5,
                "budget exceeded: lost {lost}, delivered {delivered}"
            );
            assert!(delivered >= 1, "the first event of a window is delivered");
            break;
        }
        assert!(
            std::time::Instant::now() < deadline,
            "lost {lost} + delivered {delivered} != 10"
        );
        std::thread::sleep(std::time::Duration::from_millis(100));
    }
}

/// A WorkloadEntry whose cgroup does not exist yet (the pod's containers start after the agent
/// read the policy) is governed as soon as the cgroup appears, and again when it is removed and
/// created anew (a new cgroup id), without any change to the policy.
#[test]
fn a_workload_cgroup_that_appears_later_is_governed() {
    let cg = CgroupTree::new("late-cgroup");
    let client = cg.child("client");
    std::fs::remove_dir(cg.path(&client)).expect("remove the client cgroup");
    let scratch = Scratch::new("late-cgroup");
    let config = scratch.write(
        "policy.yaml",
        &[
            workload("l", "client", "client", &client),
            egress(
                "l",
                "deny-eight",
                None,
                "DENY",
                "  - to:\n    - hosts: [\"127.0.0.8\"]\n",
            ),
        ]
        .concat(),
    );
    let mut agent = Agent::start("late-cgroup", &config, &[]);
    let mut generation = agent.json("/healthz")["generation"].as_u64().unwrap();
    for attempt in ["appeared", "created anew"] {
        if attempt == "created anew" {
            std::fs::remove_dir(cg.path(&client)).expect("remove the client cgroup");
        }
        cg.child("client");
        let health = agent.wait_until(attempt, |h| {
            h["generation"].as_u64() > Some(generation)
                && h["last_reload"]["trigger"] == "cgroup appeared or vanished"
                && h["status"] == "ok"
        });
        generation = health["generation"].as_u64().unwrap();
        assert_eq!(
            probe(&client, "tcp", sa("127.0.0.8:9")),
            "EPERM",
            "{attempt}"
        );
    }
}
