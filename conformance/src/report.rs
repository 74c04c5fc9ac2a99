//! Results: one table row per case as it finishes, the closing `N passed, M failed` line, and
//! a JUnit XML file for CI systems.

use std::{path::Path, time::Duration};

pub struct CaseResult {
    pub name: String,
    pub origin: String,
    pub tags: Vec<String>,
    pub checks: usize,
    pub failures: Vec<String>,
    /// Why the case could not run in this mode (never counted as passed).
    pub skipped: Option<String>,
    pub took: Duration,
}

impl CaseResult {
    pub fn passed(&self) -> bool {
        self.failures.is_empty() && self.skipped.is_none()
    }

    pub fn failed(&self) -> bool {
        !self.failures.is_empty()
    }
}

pub fn print_row(r: &CaseResult) {
    let status = match (r.failed(), &r.skipped) {
        (true, _) => "FAIL",
        (false, Some(_)) => "SKIP",
        (false, None) => "PASS",
    };
    println!(
        "{status}  {:<58} {:>4} checks {:>6.2}s  [{}]",
        r.name,
        r.checks,
        r.took.as_secs_f64(),
        r.tags.join(",")
    );
    for f in &r.failures {
        println!("      {f}");
    }
    if let Some(why) = &r.skipped {
        println!("      skipped: {why}");
    }
}

/// The closing line. Skipped cases are neither: they are listed on the line before.
pub fn summary(results: &[CaseResult]) -> String {
    let passed = results.iter().filter(|r| r.passed()).count();
    let failed = results.iter().filter(|r| r.failed()).count();
    format!("{passed} passed, {failed} failed")
}

pub fn skipped_line(results: &[CaseResult]) -> Option<String> {
    let n = results
        .iter()
        .filter(|r| !r.failed() && r.skipped.is_some())
        .count();
    (n > 0).then(|| format!("{n} skipped (this delivery has no form for their policies)"))
}

pub fn write_junit(path: &Path, suite: &str, results: &[CaseResult]) -> std::io::Result<()> {
    let failures = results.iter().filter(|r| r.failed()).count();
    let total: f64 = results.iter().map(|r| r.took.as_secs_f64()).sum();
    let mut xml = format!(
        "<?xml version=\"1.0\" encoding=\"UTF-8\"?>\n<testsuites>\n<testsuite name=\"{}\" tests=\"{}\" failures=\"{failures}\" errors=\"0\" time=\"{total:.3}\">\n",
        esc(suite),
        results.len()
    );
    for r in results {
        xml.push_str(&format!(
            "  <testcase classname=\"{}\" name=\"{}\" file=\"{}\" time=\"{:.3}\">",
            esc(r.tags.first().map(String::as_str).unwrap_or("conformance")),
            esc(&r.name),
            esc(&r.origin),
            r.took.as_secs_f64()
        ));
        if let (false, Some(why)) = (r.failed(), &r.skipped) {
            xml.push_str(&format!("<skipped message=\"{}\"/>", esc(why)));
        }
        if r.failed() {
            xml.push_str(&format!(
                "<failure message=\"{}\">{}</failure>",
                esc(&r.failures[0]),
                esc(&r.failures.join("\n"))
            ));
        }
        xml.push_str("</testcase>\n");
    }
    xml.push_str("</testsuite>\n</testsuites>\n");
    std::fs::write(path, xml)
}

fn esc(s: &str) -> String {
    s.replace('&', "&amp;")
        .replace('<', "&lt;")
        .replace('>', "&gt;")
        .replace('"', "&quot;")
}
