//! meshward's conformance suite: declarative cases (`conformance/cases/`, embedded in the
//! binary) run against the real dataplane by `meshward conformance run`. The case format and
//! the semantics the cases encode are in docs/conformance.md.

mod agent;
pub mod case;
mod check;
mod delivery;
pub mod load;
mod probe;
mod render;
mod report;
mod run;
mod services;
mod spawn;
mod tls;
mod topology;

use std::{path::PathBuf, process::ExitCode};

use anyhow::{Context, Result};
use clap::{Args, Subcommand, ValueEnum};

use case::Case;
use load::LoadError;

mod embedded {
    include!(concat!(env!("OUT_DIR"), "/embedded_cases.rs"));
}

#[derive(Subcommand)]
pub enum Command {
    /// Print every case (name and tags), one a line.
    List(Selection),
    /// Build each case's topology, run real clients and servers, compare with the case.
    Run(RunArgs),
    /// (internal) The client end of one connectivity check.
    #[command(hide = true)]
    Probe(probe::ProbeArgs),
    /// (internal) Echo servers for a case.
    #[command(hide = true)]
    Serve(probe::ServeArgs),
}

#[derive(Args, Clone)]
pub struct Selection {
    /// Only cases with this tag, or whose name starts with it (repeatable: any of them).
    #[arg(long)]
    pub filter: Vec<String>,
    /// Read case files from this directory instead of the ones built into the binary.
    #[arg(long)]
    pub cases: Option<PathBuf>,
}

#[derive(Args)]
pub struct RunArgs {
    #[command(flatten)]
    pub selection: Selection,
    /// Also write the results as JUnit XML.
    #[arg(long)]
    pub junit: Option<PathBuf>,
    /// How policies reach the agent.
    #[arg(long, value_enum, default_value_t = Via::Files)]
    pub via: Via,
}

#[derive(Clone, Copy, PartialEq, Eq, ValueEnum)]
pub enum Via {
    Files,
    Xds,
}

pub fn dispatch(command: Command) -> Result<ExitCode> {
    match command {
        Command::List(sel) => list(&sel),
        Command::Run(args) => run(&args),
        Command::Probe(args) => probe::probe(&args).map(|()| ExitCode::SUCCESS),
        Command::Serve(args) => probe::serve(&args).map(|()| ExitCode::SUCCESS),
    }
}

/// Every case file, as (name to report, text).
fn case_files(sel: &Selection) -> Result<Vec<(String, String)>> {
    let Some(dir) = &sel.cases else {
        return Ok(embedded::EMBEDDED
            .iter()
            .map(|(n, t)| (n.to_string(), t.to_string()))
            .collect());
    };
    let mut files = Vec::new();
    collect(dir, &mut files)?;
    files.sort();
    files
        .into_iter()
        .map(|p| {
            let text =
                std::fs::read_to_string(&p).with_context(|| format!("read {}", p.display()))?;
            Ok((p.display().to_string(), text))
        })
        .collect()
}

fn collect(dir: &std::path::Path, out: &mut Vec<PathBuf>) -> Result<()> {
    for e in std::fs::read_dir(dir).with_context(|| format!("read {}", dir.display()))? {
        let p = e?.path();
        if p.is_dir() {
            collect(&p, out)?;
        } else if p.extension().is_some_and(|x| x == "yaml" || x == "yml") {
            out.push(p);
        }
    }
    Ok(())
}

/// The selected cases, and the files that could not be read (reported, not fatal).
fn select(sel: &Selection) -> Result<(Vec<Case>, Vec<LoadError>)> {
    let mut cases: Vec<Case> = Vec::new();
    let mut errors = Vec::new();
    for (file, text) in case_files(sel)? {
        for loaded in load::load_cases(&file, &text) {
            match loaded {
                Ok(case) => cases.push(case),
                Err(e) => errors.push(e),
            }
        }
    }
    let mut seen = std::collections::BTreeMap::new();
    for c in &cases {
        if let Some(first) = seen.insert(c.name.clone(), c.origin.clone()) {
            errors.push(LoadError {
                origin: c.origin.clone(),
                message: format!("case name {:?} is also used at {first}", c.name),
            });
        }
    }
    cases.retain(|c| c.matches(&sel.filter));
    Ok((cases, errors))
}

fn list(sel: &Selection) -> Result<ExitCode> {
    let (cases, errors) = select(sel)?;
    for c in &cases {
        println!("{}  [{}]", c.name, c.tags.join(","));
    }
    for e in &errors {
        eprintln!("error: {e}");
    }
    Ok(if errors.is_empty() {
        ExitCode::SUCCESS
    } else {
        ExitCode::FAILURE
    })
}

fn run(args: &RunArgs) -> Result<ExitCode> {
    // SAFETY: no arguments.
    anyhow::ensure!(
        unsafe { libc::geteuid() } == 0,
        "the conformance suite needs root: it loads eBPF programs and makes cgroups and network namespaces"
    );
    let (cases, errors) = select(&args.selection)?;
    let mut results: Vec<report::CaseResult> = errors
        .iter()
        .map(|e| report::CaseResult {
            name: format!("(case file) {}", e.origin),
            origin: e.origin.clone(),
            tags: vec!["malformed".into()],
            checks: 1,
            failures: vec![e.to_string()],
            skipped: None,
            took: Default::default(),
        })
        .collect();
    for r in &results {
        report::print_row(r);
    }
    let scratch = std::env::temp_dir().join(format!("meshward-conformance-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&scratch);
    std::fs::create_dir_all(&scratch)?;
    let delivery: Box<dyn delivery::Delivery> = match args.via {
        Via::Files => Box::new(delivery::Files),
        Via::Xds => xds_delivery::Xds::start()?,
    };
    let mut runner = run::Runner::new(&scratch, delivery)?;
    for (i, case) in cases.iter().enumerate() {
        let r = runner.run_case(i, case);
        report::print_row(&r);
        results.push(r);
    }
    let log = runner.agent_log();
    runner.finish();
    let via = match args.via {
        Via::Files => "files",
        Via::Xds => "xds",
    };
    if let Some(path) = &args.junit {
        report::write_junit(path, &format!("meshward-conformance-{via}"), &results)
            .with_context(|| format!("write {}", path.display()))?;
    }
    let failed = results.iter().any(report::CaseResult::failed);
    if failed {
        println!("agent log: {}", log.display());
    } else {
        let _ = std::fs::remove_dir_all(&scratch);
    }
    if let Some(line) = report::skipped_line(&results) {
        println!("{line}");
    }
    println!("{}", report::summary(&results));
    Ok(if failed {
        ExitCode::FAILURE
    } else {
        ExitCode::SUCCESS
    })
}

mod xds_delivery;
