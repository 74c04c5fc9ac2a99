//! Reads case files. A malformed file is reported with file:line and never stops the others;
//! every case is checked whole (topology, policies, expectations) before anything runs.

use std::net::{IpAddr, Ipv4Addr};

use control::yaml::{Node, Value, parse_documents};

use crate::case::*;
use crate::render;

/// A case file that could not be read, with file:line.
#[derive(Clone, Debug)]
pub struct LoadError {
    pub origin: String,
    pub message: String,
}

impl std::fmt::Display for LoadError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{}: {}", self.origin, self.message)
    }
}

type Result<T> = std::result::Result<T, (usize, String)>;

/// Every case of one file, or the file's first problem.
pub fn load_file(file: &str, text: &str) -> std::result::Result<Vec<Case>, LoadError> {
    load_cases(file, text).into_iter().collect()
}

/// Each case of one file on its own: a bad case does not hide the good ones next to it. A YAML
/// syntax error spoils the whole file.
pub fn load_cases(file: &str, text: &str) -> Vec<std::result::Result<Case, LoadError>> {
    let fail = |(line, message): (usize, String)| LoadError {
        origin: format!("{file}:{line}"),
        message,
    };
    match parse_documents(text) {
        Ok(docs) => docs.iter().map(|d| case(file, d).map_err(fail)).collect(),
        Err(e) => vec![Err(fail((e.line, e.message)))],
    }
}

fn case(file: &str, node: &Node) -> Result<Case> {
    let f = Fields::open(node, "case")?;
    f.only(&[
        "name",
        "tags",
        "description",
        "workloads",
        "dns",
        "policies",
        "expect",
        "tls",
        "steps",
    ])?;
    let name = scalar(f.require("name")?)?;
    if name.is_empty()
        || !name
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || "/-_.".contains(c))
    {
        return Err((
            node.line,
            format!("case name {name:?}: use letters, digits, / - _ ."),
        ));
    }
    let tags = match f.get("tags") {
        Some(n) => list(n)?.iter().map(scalar).collect::<Result<_>>()?,
        None => Vec::new(),
    };
    let description = f
        .get("description")
        .map(scalar)
        .transpose()?
        .unwrap_or_default();
    let workloads = list(f.require("workloads")?)?
        .iter()
        .enumerate()
        .map(|(i, n)| workload(i, n))
        .collect::<Result<Vec<_>>>()?;
    for (i, w) in workloads.iter().enumerate() {
        if workloads[..i].iter().any(|o| o.name == w.name) {
            return Err((
                node.line,
                format!("workload {:?} is declared twice", w.name),
            ));
        }
    }
    let dns = match f.get("dns") {
        Some(n) => map_entries(n)?
            .iter()
            .map(|(k, v)| Ok((scalar(k)?.to_ascii_lowercase(), scalar(v)?)))
            .collect::<Result<Vec<_>>>()?,
        None => Vec::new(),
    };
    let policies = f
        .get("policies")
        .map(policies)
        .transpose()?
        .unwrap_or_default();
    let first = Step {
        action: Action::Apply,
        line: node.line,
        connections: f
            .get("expect")
            .map(connections)
            .transpose()?
            .unwrap_or_default(),
        tls: f
            .get("tls")
            .map(tls_checks)
            .transpose()?
            .unwrap_or_default(),
    };
    let mut steps = vec![first];
    if let Some(n) = f.get("steps") {
        for s in list(n)? {
            steps.push(step(s)?);
        }
    }
    for step in &mut steps {
        for c in &mut step.connections {
            if let Some((name, target)) = dns.iter().find(|(n, _)| *n == c.to) {
                c.host = Some(name.clone());
                c.to = target.clone();
            }
        }
    }
    let case = Case {
        origin: format!("{file}:{}", node.line),
        name,
        tags,
        description,
        workloads,
        dns,
        policies,
        steps,
    };
    check(&case)?;
    Ok(case)
}

/// What only the whole case can tell: names that refer to workloads, and policies that the
/// agent would refuse (with the case-file line of the policy problem).
fn check(case: &Case) -> Result<()> {
    for (name, target) in &case.dns {
        if case.workload(target).is_none() {
            return Err((
                case.steps[0].line,
                format!("dns {name}: no workload {target:?}"),
            ));
        }
    }
    for step in &case.steps {
        for c in &step.connections {
            for who in [&c.from, &c.to] {
                if case.workload(who).is_none() {
                    return Err((c.line, format!("no workload {who:?} in this case")));
                }
            }
            if case
                .workload(&c.from)
                .is_some_and(|w| w.placement != Placement::Local)
                && c.binary.is_some()
            {
                return Err((c.line, "`as BINARY` needs a local client".into()));
            }
        }
        for t in &step.tls {
            for who in [&t.from, &t.to] {
                if case.workload(who).is_none() {
                    return Err((t.line, format!("no workload {who:?} in this case")));
                }
            }
            let clash = case
                .steps
                .iter()
                .flat_map(|s| s.connections.iter())
                .any(|c| c.to == t.to && c.port == t.port && c.protocol == Protocol::Tcp);
            if clash {
                return Err((
                    t.line,
                    format!(
                        "{}:{} has an echo server for connection rows; give the TLS server another port",
                        t.to, t.port
                    ),
                ));
            }
        }
        let (policies, must_load) = match &step.action {
            Action::Apply => (&case.policies, true),
            Action::Reload { policies, rejected } => (policies, !rejected),
            Action::Restart => continue,
        };
        let text = render::config_text(case, policies, &render::Paths::placeholder());
        // Parsed and compiled, as the agent does (compiling finds e.g. two workloads with one
        // address); binaries are resolved only on the node, at run time.
        let loaded = control::load_config_str("case.yaml", &text).and_then(|config| {
            control::compile(
                &config,
                &control::Settings::default(),
                &control::Resolutions::new(),
                &control::RuleIds::new(),
            )
        });
        match (loaded, must_load) {
            (Err(diags), true) => {
                let offset = render::policies_offset(case);
                let d = diags.errors().next().or(diags.iter().next());
                let (line, msg) = d
                    .map(|d| (d.location.line, d.message.clone()))
                    .unwrap_or((0, "invalid".into()));
                // The runner's own WorkloadEntries come first: a problem there is the case's.
                if line <= offset {
                    return Err((step.line, format!("workloads: {msg}")));
                }
                let line = line - offset + policies.first_line - 1;
                return Err((line, format!("policy: {msg}")));
            }
            (Ok(_), false) => {
                return Err((
                    step.line,
                    "`rejected: true`, but these policies are valid".into(),
                ));
            }
            _ => {}
        }
    }
    Ok(())
}

fn workload(index: usize, node: &Node) -> Result<WorkloadSpec> {
    let f = Fields::open(node, "workload")?;
    f.only(&[
        "name",
        "namespace",
        "serviceAccount",
        "labels",
        "placement",
        "address",
    ])?;
    let name = scalar(f.require("name")?)?;
    control::check_dns_label(&name)
        .map_err(|e| (node.line, format!("workload name {name:?}: {e}")))?;
    let labels = match f.get("labels") {
        Some(n) => map_entries(n)?
            .iter()
            .map(|(k, v)| Ok((scalar(k)?, scalar(v)?)))
            .collect::<Result<Vec<_>>>()?,
        None => vec![("app".to_string(), name.clone())],
    };
    let placement = match f.get("placement").map(scalar).transpose()?.as_deref() {
        None | Some("local") => Placement::Local,
        Some("remote") => Placement::Remote,
        Some("external") => Placement::External,
        Some(other) => {
            return Err((
                node.line,
                format!("placement {other:?}: local, remote or external"),
            ));
        }
    };
    let address = match f.get("address") {
        Some(n) => scalar(n)?
            .parse::<IpAddr>()
            .map_err(|e| (n.line, format!("address: {e}")))?,
        // 10.88.0.0/16: each case runs in its own network namespace, so cases may reuse it.
        None => IpAddr::V4(Ipv4Addr::new(
            10,
            88,
            (index / 250) as u8,
            (index % 250 + 1) as u8,
        )),
    };
    Ok(WorkloadSpec {
        namespace: f
            .get("namespace")
            .map(scalar)
            .transpose()?
            .unwrap_or("default".into()),
        service_account: f
            .get("serviceAccount")
            .map(scalar)
            .transpose()?
            .unwrap_or(name.clone()),
        name,
        labels,
        placement,
        address,
    })
}

fn policies(node: &Node) -> Result<Policies> {
    match &node.value {
        Value::Scalar { text, plain: false } => Ok(Policies {
            text: text.clone(),
            // yaml-rust2 marks a block scalar at its first content line.
            first_line: node.line,
        }),
        _ => Err((
            node.line,
            "policies: a block of YAML documents (`policies: |`)".into(),
        )),
    }
}

fn step(node: &Node) -> Result<Step> {
    let f = Fields::open(node, "step")?;
    f.only(&["reload", "rejected", "restart", "expect", "tls"])?;
    let action = match (f.get("reload"), f.get("restart")) {
        (Some(p), None) => Action::Reload {
            policies: policies(p)?,
            rejected: f.get("rejected").map(boolean).transpose()?.unwrap_or(false),
        },
        (None, Some(r)) if boolean(r)? => Action::Restart,
        _ => {
            return Err((
                node.line,
                "a step has `reload: |` or `restart: true`".into(),
            ));
        }
    };
    Ok(Step {
        action,
        line: node.line,
        connections: f
            .get("expect")
            .map(connections)
            .transpose()?
            .unwrap_or_default(),
        tls: f
            .get("tls")
            .map(tls_checks)
            .transpose()?
            .unwrap_or_default(),
    })
}

fn connections(node: &Node) -> Result<Vec<Connection>> {
    list(node)?.iter().map(connection).collect()
}

/// `FROM -> TO:PORT[/udp] allow|deny [rule TEXT] [audit TEXT] [as BINARY]`, or the same as a
/// mapping (`from`, `to`, `port`, `protocol`, `verdict`, `rule`, `audit`, `binary`).
fn connection(node: &Node) -> Result<Connection> {
    if let Value::Scalar { text, .. } = &node.value {
        return connection_line(node.line, text);
    }
    let f = Fields::open(node, "expectation")?;
    f.only(&[
        "from", "to", "port", "protocol", "verdict", "rule", "audit", "binary",
    ])?;
    let port = port(f.require("port")?)?;
    let protocol = match f.get("protocol").map(scalar).transpose()?.as_deref() {
        None | Some("tcp") | Some("TCP") => Protocol::Tcp,
        Some("udp") | Some("UDP") => Protocol::Udp,
        Some(p) => return Err((node.line, format!("protocol {p:?}: tcp or udp"))),
    };
    Ok(Connection {
        line: node.line,
        from: scalar(f.require("from")?)?,
        to: scalar(f.require("to")?)?,
        host: None,
        port,
        protocol,
        binary: f.get("binary").map(scalar).transpose()?,
        verdict: verdict(node.line, &scalar(f.require("verdict")?)?)?,
        rule: f.get("rule").map(scalar).transpose()?,
        audit: f.get("audit").map(scalar).transpose()?,
    })
}

fn connection_line(line: usize, text: &str) -> Result<Connection> {
    let bad = |why: &str| {
        (
            line,
            format!("{text:?}: {why} (FROM -> TO:PORT[/udp] allow|deny …)"),
        )
    };
    let mut words = text.split_whitespace();
    let from = words.next().ok_or_else(|| bad("empty"))?.to_string();
    if words.next() != Some("->") {
        return Err(bad("expected `->`"));
    }
    let target = words.next().ok_or_else(|| bad("no target"))?;
    let (target, protocol) = match target.rsplit_once('/') {
        Some((t, "udp")) => (t, Protocol::Udp),
        Some((t, "tcp")) => (t, Protocol::Tcp),
        Some(_) => return Err(bad("protocol is tcp or udp")),
        None => (target, Protocol::Tcp),
    };
    let (to, port) = target.rsplit_once(':').ok_or_else(|| bad("no :PORT"))?;
    let port = port
        .parse::<u16>()
        .ok()
        .filter(|p| *p > 0)
        .ok_or_else(|| bad("bad port"))?;
    let verdict = verdict(line, words.next().ok_or_else(|| bad("no verdict"))?)?;
    let mut c = Connection {
        line,
        from,
        to: to.to_string(),
        host: None,
        port,
        protocol,
        binary: None,
        verdict,
        rule: None,
        audit: None,
    };
    while let Some(key) = words.next() {
        let value = words
            .next()
            .ok_or_else(|| bad("a keyword without its value"))?
            .to_string();
        match key {
            "rule" => c.rule = Some(value),
            "audit" => c.audit = Some(value),
            "as" => c.binary = Some(value),
            _ => return Err(bad(&format!("unknown keyword {key:?} (rule, audit, as)"))),
        }
    }
    Ok(c)
}

fn verdict(line: usize, text: &str) -> Result<Verdict> {
    match text {
        "allow" | "ALLOW" => Ok(Verdict::Allow),
        "deny" | "DENY" => Ok(Verdict::Deny),
        _ => Err((line, format!("verdict {text:?}: allow or deny"))),
    }
}

fn tls_checks(node: &Node) -> Result<Vec<TlsCheck>> {
    list(node)?
        .iter()
        .map(|n| {
            let f = Fields::open(n, "tls check")?;
            f.only(&["from", "to", "port", "server", "client", "expect"])?;
            let expect = map_entries(f.require("expect")?)?
                .iter()
                .map(|(k, v)| Ok((scalar(k)?, json_value(v)?)))
                .collect::<Result<Vec<_>>>()?;
            Ok(TlsCheck {
                line: n.line,
                from: scalar(f.require("from")?)?,
                to: scalar(f.require("to")?)?,
                port: port(f.require("port")?)?,
                server: f
                    .get("server")
                    .map(tls_side)
                    .transpose()?
                    .unwrap_or_default(),
                client: f
                    .get("client")
                    .map(tls_side)
                    .transpose()?
                    .unwrap_or_default(),
                expect,
            })
        })
        .collect()
}

fn tls_side(node: &Node) -> Result<TlsSide> {
    let f = Fields::open(node, "tls settings")?;
    f.only(&["version", "ciphers", "suites", "client_cert", "sni", "alpn"])?;
    let version = f.get("version").map(scalar).transpose()?;
    if let Some(v) = &version
        && !["1", "1.0", "1.1", "1.2", "1.3"].contains(&v.as_str())
    {
        return Err((node.line, format!("version {v:?}: 1.0, 1.1, 1.2 or 1.3")));
    }
    Ok(TlsSide {
        version,
        ciphers: f.get("ciphers").map(scalar).transpose()?,
        suites: f.get("suites").map(scalar).transpose()?,
        client_cert: f
            .get("client_cert")
            .map(boolean)
            .transpose()?
            .unwrap_or(false),
        sni: f.get("sni").map(scalar).transpose()?,
        alpn: f.get("alpn").map(scalar).transpose()?,
    })
}

fn json_value(node: &Node) -> Result<serde_json::Value> {
    match &node.value {
        Value::Null => Ok(serde_json::Value::Null),
        Value::Scalar { text, plain: true } => Ok(match text.as_str() {
            "true" => true.into(),
            "false" => false.into(),
            t => t
                .parse::<u64>()
                .map(Into::into)
                .unwrap_or_else(|_| t.into()),
        }),
        Value::Scalar { text, .. } => Ok(text.clone().into()),
        Value::Seq(items) => items
            .iter()
            .map(json_value)
            .collect::<Result<Vec<_>>>()
            .map(Into::into),
        Value::Map(_) => Err((node.line, "expected values are scalars or lists".into())),
    }
}

fn port(node: &Node) -> Result<u16> {
    scalar(node)?
        .parse::<u16>()
        .ok()
        .filter(|p| *p > 0)
        .ok_or_else(|| (node.line, "port: 1-65535".into()))
}

fn boolean(node: &Node) -> Result<bool> {
    match scalar(node)?.as_str() {
        "true" => Ok(true),
        "false" => Ok(false),
        other => Err((node.line, format!("{other:?}: true or false"))),
    }
}

fn scalar(node: &Node) -> Result<String> {
    match &node.value {
        Value::Scalar { text, .. } => Ok(text.clone()),
        _ => Err((
            node.line,
            format!("expected a scalar, found {}", node.kind_name()),
        )),
    }
}

fn list(node: &Node) -> Result<&[Node]> {
    match &node.value {
        Value::Seq(items) => Ok(items),
        _ => Err((
            node.line,
            format!("expected a list, found {}", node.kind_name()),
        )),
    }
}

fn map_entries(node: &Node) -> Result<&[(Node, Node)]> {
    match &node.value {
        Value::Map(entries) => Ok(entries),
        _ => Err((
            node.line,
            format!("expected a mapping, found {}", node.kind_name()),
        )),
    }
}

/// A mapping's fields by key, refusing keys the format does not know.
struct Fields<'n> {
    node: &'n Node,
    what: &'static str,
    entries: &'n [(Node, Node)],
}

impl<'n> Fields<'n> {
    fn open(node: &'n Node, what: &'static str) -> Result<Self> {
        match &node.value {
            Value::Map(entries) => Ok(Self {
                node,
                what,
                entries,
            }),
            _ => Err((
                node.line,
                format!("{what}: expected a mapping, found {}", node.kind_name()),
            )),
        }
    }

    fn get(&self, key: &str) -> Option<&'n Node> {
        self.entries
            .iter()
            .find(|(k, _)| matches!(&k.value, Value::Scalar { text, .. } if text == key))
            .map(|(_, v)| v)
    }

    fn require(&self, key: &str) -> Result<&'n Node> {
        self.get(key).ok_or_else(|| {
            (
                self.node.line,
                format!("{}: `{key}` is required", self.what),
            )
        })
    }

    fn only(&self, known: &[&str]) -> Result<()> {
        for (k, _) in self.entries {
            let key = scalar(k)?;
            if !known.contains(&key.as_str()) {
                return Err((
                    k.line,
                    format!(
                        "{}: unknown field `{key}` (known: {})",
                        self.what,
                        known.join(", ")
                    ),
                ));
            }
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const GOOD: &str = "name: t/a\ntags: [x]\nworkloads:\n  - {name: client, namespace: shop}\n  - {name: api, placement: external, address: 203.0.113.9}\ndns:\n  api.example.com: api\npolicies: |\n  apiVersion: meshward.io/v1alpha1\n  kind: EgressPolicy\n  metadata: {name: e, namespace: shop}\n  spec:\n    action: DENY\n    rules:\n    - to: [{hosts: [\"{{ip:api}}/32\"], ports: [22]}]\nexpect:\n  - client -> api:22 deny rule e\n  - client -> api.example.com:443/udp allow as curl\n  - {from: client, to: api, port: 80, verdict: allow}\n";

    fn error_of(text: &str) -> String {
        load_file("c.yaml", text).unwrap_err().to_string()
    }

    #[test]
    fn a_case_reads_whole() {
        let cases = load_file("c.yaml", GOOD).unwrap();
        let c = &cases[0];
        assert_eq!(c.origin, "c.yaml:1");
        assert_eq!(c.workloads[0].address.to_string(), "10.88.0.1");
        assert_eq!(c.workloads[1].placement, Placement::External);
        assert_eq!(c.policies.first_line, 9);
        let rows = &c.steps[0].connections;
        assert_eq!(rows.len(), 3);
        assert_eq!(
            (rows[0].line, rows[0].port, rows[0].verdict),
            (17, 22, Verdict::Deny)
        );
        assert_eq!(rows[0].rule.as_deref(), Some("e"));
        assert_eq!(rows[1].host.as_deref(), Some("api.example.com"));
        assert_eq!(rows[1].to, "api");
        assert_eq!(rows[1].protocol, Protocol::Udp);
        assert_eq!(rows[1].binary.as_deref(), Some("curl"));
        assert_eq!(rows[2].port, 80);
        assert_eq!(c.binaries(), vec!["curl".to_string()]);
    }

    #[test]
    fn problems_are_reported_at_their_line() {
        let cases = [
            (
                GOOD.replace("namespace: shop}", "namespace: shop, color: red}"),
                "c.yaml:4",
                "unknown field `color`",
            ),
            (
                GOOD.replace("client -> api:22 deny", "client -> nobody:22 deny"),
                "c.yaml:17",
                "no workload \"nobody\"",
            ),
            (
                GOOD.replace("api:22 deny", "api:22 maybe"),
                "c.yaml:17",
                "verdict \"maybe\"",
            ),
            (
                GOOD.replace("api:22 deny", "api:0 deny"),
                "c.yaml:17",
                "bad port",
            ),
            (
                GOOD.replace("ports: [22]", "ports: [70000]"),
                "c.yaml:15",
                "out of range",
            ),
            (
                GOOD.replace("api.example.com: api", "api.example.com: ghost"),
                "c.yaml:1",
                "no workload \"ghost\"",
            ),
            (GOOD.replace("tags: [x]", "tags: [x"), "c.yaml:3", ""),
            (
                GOOD.replace("name: t/a", "name: \"t a\""),
                "c.yaml:1",
                "case name",
            ),
        ];
        for (text, origin, message) in cases {
            let e = error_of(&text);
            assert!(e.starts_with(&format!("{origin}: ")), "{e} (want {origin})");
            assert!(e.contains(message), "{e} (want {message})");
        }
    }

    #[test]
    fn a_rejected_reload_must_really_be_invalid() {
        let text = format!(
            "{GOOD}steps:\n  - reload: |\n      apiVersion: meshward.io/v1alpha1\n      kind: EgressPolicy\n      metadata: {{name: e, namespace: shop}}\n      spec: {{action: DENY, rules: [{{to: [{{ports: [23]}}]}}]}}\n    rejected: true\n"
        );
        assert!(error_of(&text).contains("`rejected: true`, but these policies are valid"));
        let invalid = text.replace("ports: [23]", "ports: [0]");
        let cases = load_file("c.yaml", &invalid).unwrap();
        assert!(matches!(
            cases[0].steps[1].action,
            Action::Reload { rejected: true, .. }
        ));
    }

    #[test]
    fn a_bad_case_does_not_hide_its_neighbours() {
        let text = format!(
            "{GOOD}---\n{}",
            GOOD.replace("t/a", "t/b")
                .replace("api:22 deny", "api:22 maybe")
        );
        let loaded = load_cases("c.yaml", &text);
        assert_eq!(loaded.len(), 2);
        assert!(loaded[0].is_ok());
        assert!(
            loaded[1]
                .as_ref()
                .unwrap_err()
                .to_string()
                .starts_with("c.yaml:37: ")
        );
    }

    #[test]
    fn a_tls_row_needs_a_port_of_its_own() {
        let text = format!(
            "{GOOD}tls:\n  - {{from: client, to: api, port: 80, expect: {{tls_version: TLS 1.3}}}}\n"
        );
        assert!(error_of(&text).contains("has an echo server for connection rows"));
    }

    #[test]
    fn compile_time_problems_are_found_before_the_run() {
        let text = GOOD.replace(
            "placement: external, address: 203.0.113.9",
            "placement: remote, address: 10.88.0.1",
        );
        assert!(error_of(&text).contains("10.88.0.1"), "{}", error_of(&text));
    }

    #[test]
    fn every_document_is_a_case() {
        let two = format!("{GOOD}---\n{}", GOOD.replace("t/a", "t/b"));
        let cases = load_file("c.yaml", &two).unwrap();
        assert_eq!(cases.len(), 2);
        assert_eq!(cases[1].origin, "c.yaml:21");
        assert_eq!(cases[1].steps[0].connections[0].line, 37);
    }
}
