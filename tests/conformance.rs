//! The conformance suite (conformance/cases/, docs/conformance.md) on the real kernel, as root:
//! every embedded case must pass, with policies from files and over xDS alike; and the runner
//! must fail loudly when a case does not hold or a case file is malformed.

mod support;

use std::process::Command;

use support::{MESHWARD, Scratch, require_root};

/// Runs `meshward conformance run ARGS`; (exit success, stdout).
fn conformance(args: &[&str]) -> (bool, String) {
    require_root();
    let out = Command::new(MESHWARD)
        .args(["conformance", "run"])
        .args(args)
        .env("MESHWARD_LOG", "warn")
        .output()
        .expect("run meshward conformance");
    let stdout = String::from_utf8_lossy(&out.stdout).to_string();
    eprintln!("{stdout}\n{}", String::from_utf8_lossy(&out.stderr));
    (out.status.success(), stdout)
}

/// (passed, failed) from the closing line.
fn summary(stdout: &str) -> (usize, usize) {
    let last = stdout.lines().last().unwrap_or("");
    let words: Vec<&str> = last.split_whitespace().collect();
    assert!(
        words.len() == 4 && words[1] == "passed," && words[3] == "failed",
        "closing line {last:?}"
    );
    (words[0].parse().unwrap(), words[2].parse().unwrap())
}

fn embedded_suite(via: &str) {
    let scratch = Scratch::new(&format!("conformance-{via}"));
    let junit = scratch.dir.join("junit.xml");
    let (ok, stdout) = conformance(&["--via", via, "--junit", junit.to_str().unwrap()]);
    let (passed, failed) = summary(&stdout);
    assert!(ok && failed == 0, "{failed} cases failed over {via}");
    assert!(passed >= 200, "only {passed} cases");
    let xml = std::fs::read_to_string(&junit).expect("JUnit file");
    assert_eq!(xml.matches("<testcase ").count(), passed);
    assert!(!xml.contains("<failure"));
}

#[test]
fn every_case_passes_with_policies_from_files() {
    embedded_suite("files");
}

#[test]
fn runner_reports_wrong_expectations_and_malformed_files_with_their_line() {
    let scratch = Scratch::new("conformance-runner");
    let case = |name: &str, row: &str| {
        format!(
            "name: {name}\nworkloads:\n  - {{name: client, namespace: shop}}\n  - {{name: server, namespace: shop}}\npolicies: |\n  apiVersion: security.istio.io/v1\n  kind: AuthorizationPolicy\n  metadata: {{name: deny-81, namespace: shop}}\n  spec:\n    action: DENY\n    rules:\n    - to: [{{operation: {{ports: [\"81\"]}}}}]\nexpect:\n  - client -> server:80 allow\n  - {row}\n"
        )
    };
    scratch.write(
        "a.yaml",
        &format!(
            "{}---\n{}",
            case("holds", "client -> server:81 deny rule deny-81"),
            case("wrong", "client -> server:81 allow")
        ),
    );
    scratch.write(
        "b.yaml",
        "name: broken\nworkloads:\n  - {name: client}\nexpect:\n  - client => server:80 allow\n",
    );
    let junit = scratch.dir.join("junit.xml");
    let (ok, stdout) = conformance(&[
        "--cases",
        scratch.dir.to_str().unwrap(),
        "--junit",
        junit.to_str().unwrap(),
    ]);
    assert!(!ok, "a failing case makes the run fail");
    assert_eq!(summary(&stdout), (1, 2));
    let a = scratch.dir.join("a.yaml").display().to_string();
    let b = scratch.dir.join("b.yaml").display().to_string();
    assert!(stdout.contains("PASS  holds"), "{stdout}");
    assert!(
        stdout.contains(&format!(
            "{a}:31: client -> server:81/tcp: expected Allow, got Deny (ECONNREFUSED)"
        )),
        "{stdout}"
    );
    assert!(stdout.contains(&format!("{b}:5: ")), "{stdout}");
    let xml = std::fs::read_to_string(&junit).expect("JUnit file");
    assert_eq!(xml.matches("<testcase ").count(), 3);
    assert_eq!(xml.matches("<failure ").count(), 2);
}

#[test]
fn every_case_passes_with_policies_over_xds() {
    embedded_suite("xds");
}
