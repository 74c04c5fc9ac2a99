//! Every error class, with its exact file:line.

use super::{load, rejected};

const EGRESS_HEAD: &str =
    "apiVersion: meshward.io/v1alpha1\nkind: EgressPolicy\nmetadata:\n  name: p\n";

#[test]
fn unknown_kind_and_api_version() {
    assert_eq!(
        rejected("apiVersion: meshward.io/v1\nkind: EgressPolicy\nmetadata: {name: p}\n"),
        vec![
            "t.yaml:2: error: apiVersion `meshward.io/v1` is not supported for kind EgressPolicy (expected one of: meshward.io/v1alpha1)"
        ]
    );
    assert_eq!(
        rejected("apiVersion: v1\n\nkind: ConfigMap\nmetadata: {name: p}\n"),
        vec![
            "t.yaml:3: error: unknown kind `ConfigMap` (expected one of: WorkloadEntry, EgressPolicy, AuthorizationPolicy)"
        ]
    );
}

#[test]
fn missing_required_fields() {
    assert_eq!(
        rejected("kind: EgressPolicy\nmetadata:\n  namespace: x\n"),
        vec![
            "t.yaml:1: error: document: missing required field `apiVersion`",
            "t.yaml:3: error: metadata: missing required field `name`",
        ]
    );
}

#[test]
fn unknown_fields_at_any_depth() {
    let text = format!(
        "{EGRESS_HEAD}  labelz: {{}}\nspec:\n  rules:\n  - to:\n    - hosts: [a.com]\n      portz: [80]\n  - too: []\n  selector:\n    matchExpressions: []\nextra: 1\n"
    );
    assert_eq!(
        rejected(&text),
        vec![
            "t.yaml:5: error: metadata: unknown field `labelz` (expected one of: name, namespace, annotations, labels, uid, resourceVersion, generation, creationTimestamp, managedFields)",
            "t.yaml:10: error: spec.rules[0].to[0]: unknown field `portz` (expected one of: hosts, ports)",
            "t.yaml:11: error: spec.rules[1]: unknown field `too` (expected one of: to)",
            "t.yaml:13: error: spec.selector: unknown field `matchExpressions` (expected one of: matchLabels)",
            "t.yaml:14: error: document: unknown field `extra` (expected one of: apiVersion, kind, metadata, spec, status)",
        ]
    );
    // Deep in an AuthorizationPolicy.
    let text = "apiVersion: security.istio.io/v1\nkind: AuthorizationPolicy\nmetadata: {name: a}\nspec:\n  rules:\n  - from:\n    - source:\n        principal: [x]\n";
    assert_eq!(
        rejected(text),
        vec![
            "t.yaml:8: error: spec.rules[0].from[0].source: unknown field `principal` (expected one of: principals, notPrincipals, requestPrincipals, notRequestPrincipals, namespaces, notNamespaces, ipBlocks, notIpBlocks, remoteIpBlocks, notRemoteIpBlocks)"
        ]
    );
}

#[test]
fn wrong_types() {
    let text = format!(
        "{EGRESS_HEAD}spec:\n  selector:\n    matchLabels: [a]\n  rules:\n    to: x\n  binaries: /usr/bin/x\n"
    );
    assert_eq!(
        rejected(&text),
        vec![
            "t.yaml:7: error: spec.selector.matchLabels: expected a mapping, found a list",
            "t.yaml:9: error: spec.rules: expected a list, found a mapping",
            "t.yaml:10: error: spec.binaries: expected a list, found a scalar",
        ]
    );
    assert_eq!(
        rejected("- a\n- b\n"),
        vec!["t.yaml:1: error: document: expected a mapping, found a list"]
    );
}

#[test]
fn bad_ports() {
    let text = format!(
        "{EGRESS_HEAD}spec:\n  rules:\n  - to:\n    - ports:\n      - 70000\n      - \"0\"\n      - http\n      - [80]\n      - 443\n"
    );
    assert_eq!(
        rejected(&text),
        vec![
            "t.yaml:9: error: spec.rules[0].to[0].ports[0]: port 70000 is out of range (1-65535)",
            "t.yaml:10: error: spec.rules[0].to[0].ports[1]: port 0 is out of range (1-65535)",
            "t.yaml:11: error: spec.rules[0].to[0].ports[2]: `http` is not a valid port (expected 1-65535)",
            "t.yaml:12: error: spec.rules[0].to[0].ports[3]: expected a string, found a list",
        ]
    );
    // AuthorizationPolicy ports: no `*`, same range.
    let text = "apiVersion: security.istio.io/v1\nkind: AuthorizationPolicy\nmetadata: {name: a}\nspec:\n  rules:\n  - to:\n    - operation:\n        ports: [\"*\"]\n        notPorts: [\"65536\"]\n";
    assert_eq!(
        rejected(text),
        vec![
            "t.yaml:8: error: spec.rules[0].to[0].operation.ports[0]: `*` is not allowed here; omit the field to match any port",
            "t.yaml:9: error: spec.rules[0].to[0].operation.notPorts[0]: port 65536 is out of range (1-65535)",
        ]
    );
}

#[test]
fn bad_hosts_cidrs_and_addresses() {
    let text = format!(
        "{EGRESS_HEAD}spec:\n  rules:\n  - to:\n    - hosts:\n      - 10.0.0.0/33\n      - 1.2.3.256\n      - bad_name.com\n      - foo.*.com\n      - \"fe80::1::2\"\n      - ok.example.com\n"
    );
    assert_eq!(
        rejected(&text),
        vec![
            "t.yaml:9: error: spec.rules[0].to[0].hosts[0]: `10.0.0.0/33` is not a valid CIDR: prefix length must be 0-32",
            "t.yaml:10: error: spec.rules[0].to[0].hosts[1]: `1.2.3.256` is not a valid IP address",
            "t.yaml:11: error: spec.rules[0].to[0].hosts[2]: `bad_name.com` is not a valid host name: only letters, digits, `-` and `.` are allowed",
            "t.yaml:12: error: spec.rules[0].to[0].hosts[3]: `foo.*.com`: a wildcard host must be `*` or start with `*.`",
            "t.yaml:13: error: spec.rules[0].to[0].hosts[4]: `fe80::1::2` is not a valid IP address",
        ]
    );
    let text = "apiVersion: security.istio.io/v1\nkind: AuthorizationPolicy\nmetadata: {name: a}\nspec:\n  rules:\n  - from:\n    - source:\n        ipBlocks: [10.0.0.0/8, 10.0.0.0/40]\n";
    assert_eq!(
        rejected(text),
        vec![
            "t.yaml:8: error: spec.rules[0].from[0].source.ipBlocks[1]: `10.0.0.0/40` is not a valid CIDR: prefix length must be 0-32"
        ]
    );
    let text = "apiVersion: networking.istio.io/v1\nkind: WorkloadEntry\nmetadata: {name: w}\nspec:\n  address: web.local\n";
    assert_eq!(
        rejected(text),
        vec![
            "t.yaml:5: error: spec.address: `web.local` is not an IP address (host names are not supported)"
        ]
    );
}

#[test]
fn bad_actions_names_and_binaries() {
    let text = format!(
        "{EGRESS_HEAD}  namespace: Bad_NS\nspec:\n  action: allow\n  binaries: [curl, /usr/*/x]\n"
    );
    assert_eq!(
        rejected(&text),
        vec![
            "t.yaml:5: error: metadata.namespace: `Bad_NS` is not a valid namespace (1-63 lowercase letters, digits and `-`)",
            "t.yaml:7: error: spec.action: unknown action `allow` (expected one of: ALLOW, DENY, AUDIT)",
            "t.yaml:8: error: spec.binaries[0]: `curl` must be an absolute path, optionally ending in `*` to match a prefix",
            "t.yaml:8: error: spec.binaries[1]: `/usr/*/x` must be an absolute path, optionally ending in `*` to match a prefix",
        ]
    );
    let text = "apiVersion: security.istio.io/v1\nkind: AuthorizationPolicy\nmetadata: {name: a}\nspec:\n  action: CUSTOM\n";
    assert_eq!(
        rejected(text),
        vec!["t.yaml:5: error: spec.action: CUSTOM requires spec.provider.name"]
    );
    let text = "apiVersion: security.istio.io/v1\nkind: AuthorizationPolicy\nmetadata: {name: a}\nspec:\n  rules:\n  - when:\n    - key: source.ip\n";
    assert_eq!(
        rejected(text),
        vec!["t.yaml:7: error: spec.rules[0].when[0]: a condition needs `values` or `notValues`"]
    );
}

#[test]
fn yaml_syntax_error() {
    assert_eq!(
        rejected("apiVersion: v1\nkind: [unclosed\nmetadata: {}\n"),
        vec!["t.yaml:3: error: YAML syntax error: illegal placement of ':' indicator"]
    );
    assert_eq!(
        rejected("a: b\n  c: d: e\n"),
        vec!["t.yaml:2: error: YAML syntax error: mapping values are not allowed in this context"]
    );
}

#[test]
fn duplicate_keys_in_a_mapping() {
    let text = format!("{EGRESS_HEAD}spec:\n  action: DENY\n  action: ALLOW\n");
    assert_eq!(
        rejected(&text),
        vec!["t.yaml:7: error: spec: duplicate field `action` (first at line 6)"]
    );
}

#[test]
fn duplicate_names() {
    let wl = "apiVersion: networking.istio.io/v1\nkind: WorkloadEntry\nmetadata:\n  name: w\n";
    let ep = "apiVersion: meshward.io/v1alpha1\nkind: EgressPolicy\nmetadata:\n  name: w\n";
    // Same name in another kind or namespace is fine; same kind+namespace+name is not.
    let text = format!("{wl}---\n{ep}---\n{wl}  namespace: other\n---\n{wl}  namespace: default\n");
    assert_eq!(
        rejected(&text),
        vec!["t.yaml:20: error: duplicate WorkloadEntry default/w (first defined at t.yaml:4)"]
    );
}

#[test]
fn duplicate_cgroups() {
    let text = "apiVersion: networking.istio.io/v1\nkind: WorkloadEntry\nmetadata:\n  name: a\n  annotations:\n    meshward.io/cgroup: /mw/a\n---\napiVersion: networking.istio.io/v1\nkind: WorkloadEntry\nmetadata:\n  name: b\n  namespace: other\n  annotations:\n    meshward.io/cgroup: mw/a/\n";
    assert_eq!(
        rejected(text),
        vec![
            "t.yaml:14: error: cgroup `mw/a` is already claimed by WorkloadEntry default/a (at t.yaml:6)"
        ]
    );
}

#[test]
fn all_errors_are_collected_and_warnings_kept() {
    let text = format!(
        "{EGRESS_HEAD}spec:\n  rules:\n  - to:\n    - ports: [99999]\n---\n{EGRESS_HEAD}  namespace: b\nspec:\n  rules:\n  - to:\n    - hosts: [\"10.0.0.1/8\", \"bad..name\"]\n"
    );
    assert_eq!(
        rejected(&text),
        vec![
            "t.yaml:8: error: spec.rules[0].to[0].ports[0]: port 99999 is out of range (1-65535)",
            "t.yaml:18: warning: spec.rules[0].to[0].hosts[0]: `10.0.0.1/8` has host bits set; using 10.0.0.0/8",
            "t.yaml:18: error: spec.rules[0].to[0].hosts[1]: `bad..name` is not a valid host name: each dot-separated label must have 1-63 characters",
        ]
    );
}

#[test]
fn empty_documents_are_skipped() {
    let c = load("---\n# nothing\n---\n...\n");
    assert!(c.workloads.is_empty() && c.egress_policies.is_empty());
}

#[test]
fn workload_entry_errors() {
    let text = "apiVersion: networking.istio.io/v1beta1\nkind: WorkloadEntry\nmetadata:\n  name: w\n  annotations:\n    meshward.io/cgroup: a/../b\nspec:\n  serviceAccount: Web_SA\n  labels: {app: [x]}\n  ports: {http: 80}\n  weight: 2\n  addresses: [1.2.3.4]\n";
    assert_eq!(
        rejected(text),
        vec![
            "t.yaml:6: error: annotation meshward.io/cgroup: `a/../b` must be a path under the cgroup2 mount without `..`",
            "t.yaml:8: error: spec.serviceAccount: `Web_SA` is not a valid name (lowercase letters, digits, `-` and `.`, starting and ending with a letter or digit)",
            "t.yaml:9: error: spec.labels.app: expected a string, found a list",
            "t.yaml:12: error: spec: unknown field `addresses` (expected one of: address, labels, serviceAccount, ports, network, locality, weight)",
        ]
    );
}
