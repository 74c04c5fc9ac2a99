//! In-kernel DNS learning on the real kernel, as root, against real DNS servers (dnsmasq) and
//! real clients: a governed workload resolves a name and connects at once; the kernel must have
//! learned the answer's addresses before the application read it (docs/dns.md).

mod support;

use std::{
    net::SocketAddr,
    process::{Command, Stdio},
};

use support::*;

const DNS_TOOL: &str = concat!(env!("CARGO_MANIFEST_DIR"), "/../tests/support/dns_tool.py");

/// What `dns_tool.py resolve-connect` reports.
#[derive(Debug, serde::Deserialize)]
struct Run {
    answers: u64,
    allowed: u64,
    denied: u64,
    failed: u64,
    /// The first denied connects, shown in failure messages (through Debug).
    #[allow(dead_code)]
    examples: Vec<String>,
}

/// Resolves `names` through `server` and connects to every answered address on `port`, from
/// inside cgroup `rel`, `count` rounds.
fn resolve_connect(
    rel: &str,
    server: SocketAddr,
    names: &[&str],
    port: u16,
    count: u32,
    flags: &[&str],
) -> Run {
    let mut cmd = Command::new(PYTHON);
    cmd.arg(DNS_TOOL)
        .arg("resolve-connect")
        .arg(server.to_string())
        .args(names)
        .args([
            "--count",
            &count.to_string(),
            "--connect-port",
            &port.to_string(),
        ])
        .args(flags)
        .stdout(Stdio::piped());
    let out = in_cgroup(&mut cmd, rel)
        .wait_with_output()
        .expect("dns_tool runs");
    let text = String::from_utf8_lossy(&out.stdout);
    serde_json::from_str(text.trim()).unwrap_or_else(|e| panic!("dns_tool said {text:?}: {e}"))
}

/// The client workload with an ALLOW rule for its resolver, then `rules` (name, action, hosts).
fn policy(client: &str, dns: &Dnsmasq, rules: &[(&str, &str, &str)]) -> String {
    let mut text = workload("n", "client", "client", client);
    text.push_str(&egress(
        "n",
        "resolver",
        Some("client"),
        "ALLOW",
        &format!(
            "  - to:\n    - hosts: [\"{}\"]\n      ports: [{}]\n",
            dns.addr.ip(),
            dns.addr.port()
        ),
    ));
    for (name, action, hosts) in rules {
        text.push_str(&egress(
            "n",
            name,
            Some("client"),
            action,
            &format!("  - to:\n    - hosts: [{hosts}]\n"),
        ));
    }
    text
}

fn learning_agent(test: &str, config: &std::path::Path, dns: &Dnsmasq, min_ttl: &str) -> Agent {
    Agent::start(
        test,
        config,
        &[
            "--dns-port",
            &dns.addr.port().to_string(),
            "--dns-min-ttl",
            min_ttl,
        ],
    )
}

/// One test's node: a governed client workload under `rules` (after its resolver rule) and an
/// agent learning from `dns`; everything is removed on drop.
struct Case {
    client: String,
    agent: Agent,
    _scratch: Scratch,
    _cg: CgroupTree,
}

fn case(test: &str, dns: &Dnsmasq, rules: &[(&str, &str, &str)], min_ttl: &str) -> Case {
    let cg = CgroupTree::new(test);
    let client = cg.child("client");
    let scratch = Scratch::new(test);
    let config = scratch.write("policy.yaml", &policy(&client, dns, rules));
    let agent = learning_agent(test, &config, dns, min_ttl);
    Case {
        client,
        agent,
        _scratch: scratch,
        _cg: cg,
    }
}

#[test]
fn wildcard_answers_are_learned_before_the_application_connects() {
    let dns = Dnsmasq::start(&[("example.test", "127.0.0.21")], 1);
    let (target, _l) = listener("127.0.0.21");
    let c = case(
        "dns-wild",
        &dns,
        &[("wild", "ALLOW", "\"*.example.test\"")],
        "1",
    );
    let (client, agent) = (c.client.as_str(), &c.agent);
    assert_eq!(
        probe(client, "tcp", target),
        "EPERM",
        "nothing learned yet: the address matches no rule"
    );
    let run = resolve_connect(
        client,
        dns.addr,
        &["a{i}.b.c.example.test"],
        target.port(),
        200,
        &[],
    );
    assert_eq!(run.answers, 200, "{run:?}");
    assert_eq!((run.denied, run.failed), (0, 0), "wrongly denied: {run:?}");
    assert!(run.allowed >= 200, "{run:?}");
    let policy = agent.json("/policy");
    let learned = policy["dns_learned"].as_array().expect("dns_learned");
    assert!(
        learned
            .iter()
            .any(|l| l["address"] == "127.0.0.21" && l["host"] == "*.example.test"),
        "{policy}"
    );
    assert!(
        agent
            .metric("meshward_dns_learning_total", &[("event", "learned")])
            .unwrap_or(0)
            >= 200
    );
}

#[test]
fn ten_thousand_resolve_then_connect_with_a_short_ttl_are_never_wrongly_denied() {
    let dns = Dnsmasq::start(&[("example.test", "127.0.0.22")], 1);
    let (target, _l) = listener("127.0.0.22");
    let c = case(
        "dns-10k",
        &dns,
        &[("wild", "ALLOW", "\"*.example.test\"")],
        "1",
    );
    let (client, agent) = (c.client.as_str(), &c.agent);
    let run = resolve_connect(
        client,
        dns.addr,
        &["n{i}.example.test"],
        target.port(),
        10_000,
        &[],
    );
    assert_eq!(run.answers, 10_000, "{run:?}");
    assert_eq!(run.denied, 0, "wrongly denied: {run:?}");
    assert_eq!(run.allowed, 10_000, "{run:?}");
    let m = |e: &str| {
        agent
            .metric("meshward_dns_learning_total", &[("event", e)])
            .unwrap_or(0)
    };
    assert!(
        m("answer") >= 10_000 && m("query") >= 10_000,
        "answers {} queries {}",
        m("answer"),
        m("query")
    );
    assert_eq!(m("malformed"), 0);
}

#[test]
fn cname_chains_carry_the_rules_of_every_name_on_them() {
    let dns = Dnsmasq::start_with(
        &[
            "--host-record=target.example.test,127.0.0.31".into(),
            "--cname=alias.other.test,target.example.test".into(),
            "--host-record=bad.denied.test,127.0.0.32".into(),
            "--cname=www.example.test,bad.denied.test".into(),
        ],
        60,
    );
    let (allowed, _a) = listener("127.0.0.31");
    let (denied, _d) = listener("127.0.0.32");
    let c = case(
        "dns-cname",
        &dns,
        &[
            ("wild", "ALLOW", "\"*.example.test\""),
            ("no-denied", "DENY", "\"*.denied.test\""),
        ],
        "5",
    );
    let client = c.client.as_str();
    // alias.other.test (no rule) → target.example.test (allowed): allowed.
    let run = resolve_connect(
        client,
        dns.addr,
        &["alias.other.test"],
        allowed.port(),
        1,
        &[],
    );
    assert_eq!((run.answers, run.allowed, run.denied), (1, 1, 0), "{run:?}");
    // www.example.test (allowed) → bad.denied.test (denied): DENY wins.
    let run = resolve_connect(
        client,
        dns.addr,
        &["www.example.test"],
        denied.port(),
        1,
        &[],
    );
    assert_eq!((run.answers, run.allowed, run.denied), (1, 0, 1), "{run:?}");
}

#[test]
fn aaaa_answers_and_ipv6_connects() {
    let dns = Dnsmasq::start_with(&["--host-record=v6.example.test,::1".into()], 60);
    let (target, _l) = listener("::1");
    let c = case(
        "dns-v6",
        &dns,
        &[("wild", "ALLOW", "\"*.example.test\"")],
        "5",
    );
    let client = c.client.as_str();
    assert_eq!(probe(client, "tcp", target), "EPERM", "not learned yet");
    let run = resolve_connect(
        client,
        dns.addr,
        &["v6.example.test"],
        target.port(),
        20,
        &["--aaaa"],
    );
    assert_eq!(
        (run.answers, run.allowed, run.denied),
        (20, 20, 0),
        "{run:?}"
    );
}

#[test]
fn answers_over_tcp_are_learned() {
    let dns = Dnsmasq::start(&[("example.test", "127.0.0.23")], 60);
    let (target, _l) = listener("127.0.0.23");
    let c = case(
        "dns-tcp",
        &dns,
        &[("wild", "ALLOW", "\"*.example.test\"")],
        "5",
    );
    let client = c.client.as_str();
    assert_eq!(probe(client, "tcp", target), "EPERM", "not learned yet");
    let run = resolve_connect(
        client,
        dns.addr,
        &["t{i}.example.test"],
        target.port(),
        50,
        &["--tcp"],
    );
    assert_eq!(
        (run.answers, run.allowed, run.denied),
        (50, 50, 0),
        "{run:?}"
    );
}

#[test]
fn learned_addresses_expire_with_their_ttl() {
    let dns = Dnsmasq::start(&[("example.test", "127.0.0.24")], 1);
    let (target, _l) = listener("127.0.0.24");
    let c = case(
        "dns-ttl",
        &dns,
        &[("wild", "ALLOW", "\"*.example.test\"")],
        "1",
    );
    let (client, agent) = (c.client.as_str(), &c.agent);
    let run = resolve_connect(client, dns.addr, &["e.example.test"], target.port(), 1, &[]);
    assert_eq!((run.allowed, run.denied), (1, 0), "{run:?}");
    assert_eq!(probe(client, "tcp", target), "ok", "still live");
    std::thread::sleep(std::time::Duration::from_millis(2500));
    assert_eq!(
        probe(client, "tcp", target),
        "EPERM",
        "expired: a new connect needs a new answer"
    );
    let learned = agent.json("/policy")["dns_learned"].clone();
    assert!(
        !learned
            .as_array()
            .is_some_and(|l| l.iter().any(|e| e["address"] == "127.0.0.24")),
        "expired entries are not shown: {learned}"
    );
    let run = resolve_connect(client, dns.addr, &["e.example.test"], target.port(), 1, &[]);
    assert_eq!((run.allowed, run.denied), (1, 0), "learned again: {run:?}");
}

#[test]
fn an_address_shared_with_a_denied_name_is_denied_while_that_answer_lives() {
    let dns = Dnsmasq::start(
        &[
            ("example.test", "127.0.0.25"),
            ("denied.test", "127.0.0.25"),
        ],
        60,
    );
    let (target, _l) = listener("127.0.0.25");
    let c = case(
        "dns-shared",
        &dns,
        &[
            ("wild", "ALLOW", "\"*.example.test\""),
            ("no-denied", "DENY", "\"*.denied.test\""),
        ],
        "5",
    );
    let client = c.client.as_str();
    let run = resolve_connect(
        client,
        dns.addr,
        &["cdn.example.test"],
        target.port(),
        1,
        &[],
    );
    assert_eq!((run.allowed, run.denied), (1, 0), "{run:?}");
    let run = resolve_connect(client, dns.addr, &["x.denied.test"], target.port(), 1, &[]);
    assert_eq!((run.allowed, run.denied), (0, 1), "{run:?}");
    assert_eq!(
        probe(client, "tcp", target),
        "EPERM",
        "DENY first, as in Istio"
    );
}

#[test]
fn answers_nobody_asked_for_are_not_learned() {
    let port = free_port();
    let mut server = Command::new(PYTHON)
        .args([
            DNS_TOOL,
            "spoof-server",
            &port.to_string(),
            "127.0.0.26",
            "evil.example.test",
            "127.0.0.27",
        ])
        .stdout(Stdio::piped())
        .spawn()
        .expect("spoof server");
    {
        use std::io::BufRead;
        let mut line = String::new();
        std::io::BufReader::new(server.stdout.as_mut().expect("stdout"))
            .read_line(&mut line)
            .expect("ready line");
        assert_eq!(line.trim(), "ready");
    }
    let dns = Dnsmasq::start(&[], 60); // only for the resolver rule's address
    let cg = CgroupTree::new("dns-spoof");
    let client = cg.child("client");
    let other = cg.child("other");
    let scratch = Scratch::new("dns-spoof");
    let (real, _r) = listener("127.0.0.26");
    let (evil, _e) = listener("127.0.0.27");
    let mut text = policy(&client, &dns, &[("wild", "ALLOW", "\"*.example.test\"")]);
    text = text.replace(
        &format!("ports: [{}]", dns.addr.port()),
        &format!("ports: [{port}]"),
    );
    text.push_str(&workload("n", "other", "client", &other));
    let config = scratch.write("policy.yaml", &text);
    let agent = Agent::start(
        "dns-spoof",
        &config,
        &["--dns-port", &port.to_string(), "--dns-min-ttl", "5"],
    );
    let server_addr: SocketAddr = format!("127.0.0.1:{port}").parse().expect("addr");
    let run = resolve_connect(
        &client,
        server_addr,
        &["ok.example.test"],
        real.port(),
        3,
        &[],
    );
    assert_eq!((run.answers, run.allowed, run.denied), (3, 3, 0), "{run:?}");
    assert_eq!(
        probe(&client, "tcp", evil),
        "EPERM",
        "the unsolicited answers taught nothing"
    );
    assert!(
        agent
            .metric("meshward_dns_learning_total", &[("event", "unmatched")])
            .unwrap_or(0)
            >= 6,
        "two unsolicited answers per query are counted"
    );
    // What one workload learned does not serve another.
    assert_eq!(probe(&other, "tcp", real), "EPERM");
    // /explain decides with what the kernel learned for the workload.
    let explained = agent.json(&format!("/explain?from=n/client&to={real}"));
    assert_eq!(explained["verdict"], "allow", "{explained}");
    assert!(
        explained["rule"].as_str().unwrap_or("").contains("n/wild"),
        "{explained}"
    );
    let explained = agent.json(&format!("/explain?from=n/client&to={evil}"));
    assert_eq!(explained["verdict"], "deny", "{explained}");
    let _ = server.kill();
    let _ = server.wait();
}

/// The DNS learning programs look at every packet of the cgroups they are on: they go only on
/// workloads with DNS-name rules, follow the policy when a reload adds or removes such rules,
/// and a workload without them learns nothing.
#[test]
fn learning_programs_go_only_on_workloads_with_name_rules() {
    let dns = Dnsmasq::start(&[("svc.names.test", "127.0.0.28")], 60);
    let cg = CgroupTree::new("dns-attach");
    let client = cg.child("client");
    let plain = cg.child("plain");
    let scratch = Scratch::new("dns-attach");
    let without_names = policy(&client, &dns, &[]) + &workload("n", "plain", "plain", &plain);
    let config = scratch.write("policy.yaml", &without_names);
    let agent = learning_agent("dns-attach", &config, &dns, "5");
    let dns_links = || {
        let mut names: Vec<String> = std::fs::read_dir(agent.pin_path.join("links"))
            .expect("links pin directory")
            .filter_map(|e| e.ok()?.file_name().into_string().ok())
            .filter(|n| n.contains("mw_dns_"))
            .collect();
        names.sort();
        names
    };
    assert_eq!(
        dns_links(),
        Vec::<String>::new(),
        "no name rule, no DNS program"
    );

    let with_names = policy(&client, &dns, &[("names", "ALLOW", "\"*.names.test\"")])
        + &workload("n", "plain", "plain", &plain);
    write_atomic(&config, &with_names);
    let client_id = std::fs::metadata(cgroup2_root().join(&client))
        .map(|m| std::os::unix::fs::MetadataExt::ino(&m))
        .expect("client cgroup");
    let expected = vec![
        format!("cgroup-{client_id}-mw_dns_egress"),
        format!("cgroup-{client_id}-mw_dns_ingress"),
    ];
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(30);
    while dns_links() != expected {
        assert!(
            std::time::Instant::now() < deadline,
            "links: {:?}",
            dns_links()
        );
        std::thread::sleep(std::time::Duration::from_millis(100));
    }
    let (svc, _l) = listener("127.0.0.28");
    let run = resolve_connect(&client, dns.addr, &["svc.names.test"], svc.port(), 1, &[]);
    assert_eq!((run.answers, run.allowed), (1, 1), "{run:?}");

    write_atomic(&config, &without_names);
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(30);
    while !dns_links().is_empty() {
        assert!(
            std::time::Instant::now() < deadline,
            "links: {:?}",
            dns_links()
        );
        std::thread::sleep(std::time::Duration::from_millis(100));
    }
}
