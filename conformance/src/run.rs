//! `meshward conformance run`: one agent for the whole run; for each case, its topology and
//! servers, its policies applied (from files or over xDS), every step checked, then the case's
//! policies removed before its topology goes.

use std::{
    path::{Path, PathBuf},
    time::Instant,
};

use anyhow::{Context, Result};

use crate::agent::{Agent, Applied};
use crate::case::{Action, Case, Policies};
use crate::check::{self, Env};
use crate::delivery::Delivery;
use crate::render::{self, Paths};
use crate::report::CaseResult;
use crate::services::Services;
use crate::tls::Pki;
use crate::topology::Topology;

pub struct Runner {
    exe: PathBuf,
    run_id: String,
    bin_dir: PathBuf,
    pki: Pki,
    delivery: Box<dyn Delivery>,
    agent: Agent,
}

impl Runner {
    pub fn new(scratch: &Path, delivery: Box<dyn Delivery>) -> Result<Self> {
        let exe = std::env::current_exe().context("the meshward binary's own path")?;
        let run_id = format!("{:x}", std::process::id());
        let bin_dir = scratch.join("bin");
        std::fs::create_dir_all(&bin_dir)?;
        let pki = Pki::create(&scratch.join("pki"))?;
        let agent = Agent::start(&exe, scratch, &run_id, delivery.agent_address())?;
        Ok(Self {
            exe,
            run_id,
            bin_dir,
            pki,
            delivery,
            agent,
        })
    }

    pub fn run_case(&mut self, index: usize, case: &Case) -> CaseResult {
        let start = Instant::now();
        let mut result = CaseResult {
            name: case.name.clone(),
            origin: case.origin.clone(),
            tags: case.tags.clone(),
            checks: 0,
            failures: Vec::new(),
            skipped: None,
            took: Default::default(),
        };
        if let Err(e) = self.run_steps(index, case, &mut result) {
            result.failures.push(format!("{}: {e:#}", case.origin));
        }
        result.took = start.elapsed();
        result
    }

    fn run_steps(&mut self, index: usize, case: &Case, result: &mut CaseResult) -> Result<()> {
        self.prepare_binaries(case)?;
        let topo = Topology::create(case, &self.run_id, index).context("set up the topology")?;
        let _services = Services::start(&self.exe, case, &topo).context("start the servers")?;
        let paths = Paths {
            cgroups: topo.cgroups.clone(),
            netns: topo.netns_path(),
            bin_dir: self.bin_dir.clone(),
        };
        let outcome = self.steps(case, &topo, &paths, result);
        // The case's policies go before its cgroups and namespace do.
        let cleared = self
            .delivery
            .clear(&mut self.agent)
            .context("remove the case's policies");
        outcome.and(cleared)
    }

    fn steps(
        &mut self,
        case: &Case,
        topo: &Topology,
        paths: &Paths,
        result: &mut CaseResult,
    ) -> Result<()> {
        for step in &case.steps {
            match &step.action {
                Action::Apply => self.apply(case, &case.policies, paths, false, result)?,
                Action::Reload { policies, rejected } => {
                    self.apply(case, policies, paths, *rejected, result)?
                }
                Action::Restart => {
                    self.agent.kill();
                    // With the agent gone, the pinned programs and tables must keep enforcing.
                    self.check_step(case, topo, step, result);
                    self.agent.restart().context("restart the agent")?;
                }
            }
            if result.skipped.is_some() {
                return Ok(());
            }
            self.check_step(case, topo, step, result);
        }
        Ok(())
    }

    fn apply(
        &mut self,
        case: &Case,
        policies: &Policies,
        paths: &Paths,
        rejected: bool,
        result: &mut CaseResult,
    ) -> Result<()> {
        result.checks += 1;
        match (
            self.delivery
                .apply(&mut self.agent, case, policies, paths, rejected)?,
            rejected,
        ) {
            (Applied::Ok, false) | (Applied::Rejected(_), true) => {}
            (Applied::Rejected(why), false) => {
                anyhow::bail!("the agent refused the case's policies: {why}")
            }
            (Applied::Ok, true) => result.failures.push(format!(
                "{}: the agent accepted policies it must refuse",
                case.origin
            )),
            (Applied::Unsupported(why), _) => result.skipped = Some(why),
        }
        Ok(())
    }

    fn check_step(
        &mut self,
        case: &Case,
        topo: &Topology,
        step: &crate::case::Step,
        result: &mut CaseResult,
    ) {
        let file = case
            .origin
            .rsplit_once(':')
            .map_or(case.origin.as_str(), |(f, _)| f);
        let env = Env {
            exe: &self.exe,
            bin_dir: &self.bin_dir,
            topology: topo,
            case,
        };
        for c in &step.connections {
            result.checks += 1;
            if let Err(e) = check::connection(&env, &self.agent, c) {
                result.failures.push(format!("{file}:{}: {e}", c.line));
            }
        }
        for t in &step.tls {
            result.checks += 1;
            if !self.agent.is_running() {
                continue;
            }
            if let Err(e) = crate::tls::check(&self.pki, topo, case, &self.agent, t) {
                result.failures.push(format!("{file}:{}: {e}", t.line));
            }
        }
    }

    /// Copies of this binary under the names the case's rules and rows use: each copy is a
    /// different executable file (another inode), as process-aware rules see binaries.
    fn prepare_binaries(&self, case: &Case) -> Result<()> {
        let mut names = case.binaries();
        names.extend(render::referenced_binaries(&case.policies.text));
        for step in &case.steps {
            if let Action::Reload { policies, .. } = &step.action {
                names.extend(render::referenced_binaries(&policies.text));
            }
        }
        for name in names {
            let path = self.bin_dir.join(&name);
            if !path.exists() {
                std::fs::copy(&self.exe, &path)
                    .with_context(|| format!("copy the probe to {}", path.display()))?;
            }
        }
        Ok(())
    }

    pub fn agent_log(&self) -> PathBuf {
        self.agent.log.clone()
    }

    pub fn finish(self) {
        let run_id = self.run_id.clone();
        drop(self);
        crate::topology::remove_run_cgroups(&run_id);
    }
}
