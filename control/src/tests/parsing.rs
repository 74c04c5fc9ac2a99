use std::collections::BTreeMap;
use std::path::PathBuf;

use super::load;
use crate::{Action, AuthorizationAction, BinaryMatch, HostMatch, PortMatch, Prefix, load_config};

const ALL_KINDS: &str = r#"
apiVersion: networking.istio.io/v1
kind: WorkloadEntry
metadata:
  name: web
  namespace: shop
  annotations:
    meshward.io/cgroup: /meshward/web
    other: ignored
spec:
  address: 10.0.0.5
  labels:
    app: web
    version: "2"
  serviceAccount: web-sa
  ports:
    http: 8080
  network: net1
  locality: region/zone
  weight: 3
---
apiVersion: meshward.io/v1alpha1
kind: EgressPolicy
metadata:
  name: web-out
  namespace: shop
spec:
  selector:
    matchLabels:
      app: web
  binaries: ["/usr/bin/curl", "/opt/app/*"]
  action: DENY
  rules:
  - to:
    - hosts: ["10.0.0.0/8", "2001:db8::1", "Example.COM.", "*.evil.org", "*"]
      ports: [443, "8443", "*"]
    - hosts: ["192.168.1.1"]
  - {}
---
apiVersion: security.istio.io/v1beta1
kind: AuthorizationPolicy
metadata:
  name: authz
  namespace: shop
spec:
  selector:
    matchLabels: {app: web}
  action: CUSTOM
  provider:
    name: ext-authz
  rules:
  - from:
    - source:
        principals: ["cluster.local/ns/a/sa/b"]
        notPrincipals: ["x"]
        requestPrincipals: ["iss/sub"]
        notRequestPrincipals: ["iss/bad"]
        namespaces: ["a"]
        notNamespaces: ["b"]
        ipBlocks: ["10.0.0.0/8"]
        notIpBlocks: ["10.1.0.0/16"]
        remoteIpBlocks: ["1.2.3.4"]
        notRemoteIpBlocks: ["fe80::/10"]
    to:
    - operation:
        ports: ["8080", 9090]
        notPorts: ["22"]
        hosts: ["a.example.com"]
        notHosts: ["b.example.com"]
        methods: ["GET"]
        notMethods: ["DELETE"]
        paths: ["/api/*"]
        notPaths: ["/admin"]
    when:
    - key: request.headers[x-token]
      values: ["t1"]
      notValues: ["t2"]
"#;

#[test]
fn parses_every_field_of_every_kind() {
    let c = load(ALL_KINDS);
    assert!(c.warnings.is_empty(), "{}", c.warnings);

    let w = &c.workloads[0];
    assert_eq!((w.namespace.as_str(), w.name.as_str()), ("shop", "web"));
    assert_eq!(w.cgroup, Some(PathBuf::from("meshward/web")));
    assert_eq!(w.cgroup_line, 8);
    assert_eq!(w.address, Some("10.0.0.5".parse().unwrap()));
    assert_eq!(w.service_account, "web-sa");
    assert_eq!(
        w.labels,
        BTreeMap::from([("app".into(), "web".into()), ("version".into(), "2".into())])
    );
    assert_eq!(w.location.to_string(), "t.yaml:5");

    let p = &c.egress_policies[0];
    assert_eq!(p.action, Action::Deny);
    assert_eq!(
        p.match_labels,
        BTreeMap::from([("app".into(), "web".into())])
    );
    assert_eq!(
        p.binaries[0].value,
        BinaryMatch::Exact("/usr/bin/curl".into())
    );
    assert_eq!(p.binaries[1].value, BinaryMatch::Prefix("/opt/app/".into()));
    assert_eq!(p.rules.len(), 2);
    assert_eq!(p.rules[0].line, 34);
    assert!(p.rules[1].to.is_empty());
    let hosts: Vec<&HostMatch> = p.rules[0].to[0].hosts.iter().map(|h| &h.matches).collect();
    assert_eq!(
        hosts[0],
        &HostMatch::Prefix(crate::net::parse_cidr("10.0.0.0/8").unwrap().0)
    );
    assert_eq!(
        hosts[1],
        &HostMatch::Prefix(Prefix::host("2001:db8::1".parse().unwrap()))
    );
    assert_eq!(hosts[2], &HostMatch::Exact("example.com".into()));
    assert_eq!(hosts[3], &HostMatch::Suffix("evil.org".into()));
    assert_eq!(hosts[4], &HostMatch::Any);
    let ports: Vec<PortMatch> = p.rules[0].to[0].ports.iter().map(|p| p.value).collect();
    assert_eq!(
        ports,
        vec![PortMatch::Port(443), PortMatch::Port(8443), PortMatch::Any]
    );
    assert!(p.rules[0].to[1].ports.is_empty());

    let a = &c.authorization_policies[0];
    assert_eq!(a.action, AuthorizationAction::Custom);
    assert_eq!(a.provider.as_deref(), Some("ext-authz"));
    let src = &a.rules[0].from[0];
    assert_eq!(src.principals[0].value, "cluster.local/ns/a/sa/b");
    assert_eq!(src.not_principals[0].value, "x");
    assert_eq!(src.request_principals[0].value, "iss/sub");
    assert_eq!(src.not_request_principals[0].value, "iss/bad");
    assert_eq!(src.namespaces[0].value, "a");
    assert_eq!(src.not_namespaces[0].value, "b");
    assert_eq!(src.ip_blocks[0].value.to_string(), "10.0.0.0/8");
    assert_eq!(src.not_ip_blocks[0].value.to_string(), "10.1.0.0/16");
    assert_eq!(src.remote_ip_blocks[0].value.to_string(), "1.2.3.4/32");
    assert_eq!(src.not_remote_ip_blocks[0].value.to_string(), "fe80::/10");
    let op = &a.rules[0].to[0];
    assert_eq!(
        op.ports.iter().map(|p| p.value).collect::<Vec<_>>(),
        vec![8080, 9090]
    );
    assert_eq!(op.not_ports[0].value, 22);
    assert_eq!(op.hosts[0].value, "a.example.com");
    assert_eq!(op.not_hosts[0].value, "b.example.com");
    assert_eq!(op.methods[0].value, "GET");
    assert_eq!(op.not_methods[0].value, "DELETE");
    assert_eq!(op.paths[0].value, "/api/*");
    assert_eq!(op.not_paths[0].value, "/admin");
    let cond = &a.rules[0].when[0];
    assert_eq!(cond.key, "request.headers[x-token]");
    assert_eq!(cond.values[0].value, "t1");
    assert_eq!(cond.not_values[0].value, "t2");
}

#[test]
fn defaults() {
    let c = load(
        "apiVersion: networking.istio.io/v1alpha3\nkind: WorkloadEntry\nmetadata: {name: w}\n\
         ---\napiVersion: meshward.io/v1alpha1\nkind: EgressPolicy\nmetadata: {name: p}\nspec:\n  rules:\n  - to:\n    - ports: [80]\n\
         ---\napiVersion: security.istio.io/v1\nkind: AuthorizationPolicy\nmetadata: {name: a, namespace: x}\nspec: {}\n",
    );
    let w = &c.workloads[0];
    assert_eq!(w.namespace, "default");
    assert_eq!(w.service_account, "default");
    assert_eq!(w.cgroup, None);
    assert_eq!(w.address, None);
    let p = &c.egress_policies[0];
    assert_eq!(p.namespace, "default");
    assert_eq!(p.action, Action::Allow);
    assert!(p.match_labels.is_empty());
    assert!(p.rules[0].to[0].hosts.is_empty());
    let a = &c.authorization_policies[0];
    assert_eq!(a.action, AuthorizationAction::Allow);
    assert!(a.rules.is_empty());
}

#[test]
fn normalising_warnings() {
    let c = load(
        "apiVersion: meshward.io/v1alpha1\nkind: EgressPolicy\nmetadata: {name: p}\nspec:\n  rules:\n  - to:\n    - hosts: [10.1.2.3/8]\n      ports: []\n",
    );
    let w = super::lines(&c.warnings);
    assert_eq!(
        w,
        vec![
            "t.yaml:7: warning: spec.rules[0].to[0].hosts[0]: `10.1.2.3/8` has host bits set; using 10.0.0.0/8",
            "t.yaml:8: warning: spec.rules[0].to[0].ports: an empty list matches any port; omit the field to say so",
        ]
    );
}

#[test]
fn multi_document_files_and_directories() {
    let dir = tempfile::tempdir().unwrap();
    let wl = |name: &str| {
        format!(
            "apiVersion: networking.istio.io/v1\nkind: WorkloadEntry\nmetadata:\n  name: {name}\n"
        )
    };
    std::fs::write(
        dir.path().join("b.yaml"),
        format!(
            "# leading comment\n---\n{}---\n---\n# nothing\n---\n{}",
            wl("b1"),
            wl("b2")
        ),
    )
    .unwrap();
    std::fs::write(dir.path().join("a.yml"), wl("a1")).unwrap();
    std::fs::write(dir.path().join("c.json"), "not yaml at all: [").unwrap();
    std::fs::write(dir.path().join("empty.yaml"), "# only a comment\n").unwrap();
    std::fs::create_dir(dir.path().join("sub.yaml")).unwrap();
    std::fs::write(dir.path().join("sub.yaml").join("x.yaml"), wl("nested")).unwrap();

    let c = load_config(dir.path()).unwrap();
    let names: Vec<&str> = c.workloads.iter().map(|w| w.name.as_str()).collect();
    assert_eq!(names, vec!["a1", "b1", "b2"]);

    // A single file works too.
    let c = load_config(&dir.path().join("b.yaml")).unwrap();
    assert_eq!(c.workloads.len(), 2);

    // Errors name the file they are in.
    std::fs::write(
        dir.path().join("d.yaml"),
        "apiVersion: x\nkind: Foo\nmetadata: {name: z}\n",
    )
    .unwrap();
    let err = load_config(dir.path()).unwrap_err();
    let file = dir.path().join("d.yaml");
    assert_eq!(
        super::lines(&err),
        vec![format!(
            "{}:2: error: unknown kind `Foo` (expected one of: WorkloadEntry, EgressPolicy, AuthorizationPolicy)",
            file.display()
        )]
    );
}

#[test]
fn missing_path_is_an_error() {
    let err = load_config(std::path::Path::new("/nonexistent/meshward.yaml")).unwrap_err();
    assert!(err.is_error());
    assert!(
        err.to_string()
            .starts_with("/nonexistent/meshward.yaml: error: cannot read")
    );
}
