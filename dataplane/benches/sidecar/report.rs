//! Samples per (setup, scenario), medians, paired ratios to (a), and the Markdown tables.
use std::collections::BTreeMap;

use crate::{load::Load, setups::Setup, topology::ROLES};

/// One client run: operations (transactions, connections or bytes), its duration, and the CPU
/// time all processes of the setup used meanwhile.
pub struct Sample {
    pub ops: u64,
    pub secs: f64,
    /// Per cgroup, in the order of `topology::ROLES`.
    pub cpu_usec: [u64; 5],
}

impl Sample {
    /// Transactions/s or connections/s; MB/s (10^6 bytes) for bulk.
    pub fn rate(&self, load: Load) -> f64 {
        self.units(load) / self.secs
    }

    /// CPU µs per transaction or connection; per MB for bulk.
    pub fn cpu_us_per_op(&self, load: Load) -> f64 {
        self.cpu_usec.iter().sum::<u64>() as f64 / self.units(load)
    }

    /// The CPU µs per operation of each role that used any, e.g. "client 20.1, server 15.3".
    pub fn cpu_breakdown(&self, load: Load) -> String {
        ROLES
            .iter()
            .zip(self.cpu_usec)
            .filter(|(_, usec)| *usec > 0)
            .map(|(role, usec)| format!("{role} {:.1}", usec as f64 / self.units(load)))
            .collect::<Vec<_>>()
            .join(", ")
    }

    fn units(&self, load: Load) -> f64 {
        if load == Load::Bulk {
            self.ops as f64 / 1e6
        } else {
            self.ops as f64
        }
    }
}

#[derive(Default)]
pub struct Results {
    /// Samples in round order.
    samples: BTreeMap<(Setup, Load), Vec<Sample>>,
}

impl Results {
    pub fn add(&mut self, setup: Setup, load: Load, sample: Sample) {
        self.samples.entry((setup, load)).or_default().push(sample);
    }

    /// A throughput table and a CPU-per-operation table: medians over the rounds, and in
    /// parentheses the median of the per-round ratios to (a) (the machine drifts between
    /// rounds; each round measures every setup back to back).
    pub fn markdown(&self, scenarios: &[(&str, Load)], setups: &[Setup]) -> String {
        let mut out = String::new();
        out += &self.table(
            scenarios,
            setups,
            "throughput (median)",
            rate_unit,
            |s, l| s.rate(l),
        );
        out += "\n";
        out += &self.table(
            scenarios,
            setups,
            "CPU per operation, all processes (median)",
            cpu_unit,
            |s, l| s.cpu_us_per_op(l),
        );
        out
    }

    fn table(
        &self,
        scenarios: &[(&str, Load)],
        setups: &[Setup],
        title: &str,
        unit: fn(Load) -> &'static str,
        value: impl Fn(&Sample, Load) -> f64,
    ) -> String {
        let mut out = format!("| {title} | unit |");
        for s in setups {
            out += &format!(" {} |", s.label());
        }
        out += &format!("\n|---|---|{}\n", "---|".repeat(setups.len()));
        for &(name, load) in scenarios {
            out += &format!("| {name} | {} |", unit(load));
            let base = self.values(Setup::Plain, load, &value);
            for &setup in setups {
                let v = self.values(setup, load, &value);
                let ratios: Vec<f64> = v.iter().zip(&base).map(|(x, b)| x / b).collect();
                out += &format!(" {} ({:.2}×) |", format_value(median(&v)), median(&ratios));
            }
            out += "\n";
        }
        out
    }

    fn values(&self, setup: Setup, load: Load, value: impl Fn(&Sample, Load) -> f64) -> Vec<f64> {
        self.samples
            .get(&(setup, load))
            .map(|v| v.iter().map(|s| value(s, load)).collect())
            .unwrap_or_default()
    }
}

fn rate_unit(load: Load) -> &'static str {
    match load {
        Load::RequestResponse { .. } => "transactions/s",
        Load::ConnectRequestClose => "connections/s",
        Load::Bulk => "MB/s",
    }
}

fn cpu_unit(load: Load) -> &'static str {
    match load {
        Load::RequestResponse { .. } => "µs/transaction",
        Load::ConnectRequestClose => "µs/connection",
        Load::Bulk => "µs/MB",
    }
}

fn format_value(v: f64) -> String {
    if v >= 100.0 {
        format!("{v:.0}")
    } else {
        format!("{v:.2}")
    }
}

fn median(v: &[f64]) -> f64 {
    if v.is_empty() {
        return f64::NAN;
    }
    let mut v = v.to_vec();
    v.sort_by(|a, b| a.total_cmp(b));
    v[v.len() / 2]
}
