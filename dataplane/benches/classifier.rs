//! Classifier study (issue 3): wildcard inbound rules (workload, identity, port, source prefix)
//! looked up without a TCAM, four kernel designs with the same semantics, timed by
//! BPF_PROG_TEST_RUN through XDP wrappers (`dataplane-ebpf/src/study`). Run as root:
//!   cargo bench -p dataplane --bench classifier
//! Environment: MESHWARD_BENCH_ROUNDS (default 5), MESHWARD_BENCH_MS per measurement (100).
//! Method and results: docs/classifier.md.

#[path = "../../dataplane-ebpf/src/study/abi.rs"]
#[allow(dead_code)]
mod abi;

use std::{collections::BTreeMap, time::Duration};

use dataplane_common::InboundEntry;

use crate::{
    abi::StudyQuery,
    design::{Design, Study},
};

/// Queries per mix (the wrappers cycle through them).
const MIX_LEN: usize = 4_096;
/// Queries per mix checked against the user-space model before anything is timed.
const CHECKED_PER_MIX: usize = 512;

fn main() {
    require_root();
    pin_to_cpu(1);
    let rounds: usize = env_or("MESHWARD_BENCH_ROUNDS", 5);
    let budget = Duration::from_millis(env_or("MESHWARD_BENCH_MS", 100));

    let mut levels: Vec<Level> = [10, 1_000, 10_000, 100_000]
        .into_iter()
        .map(Level::typical)
        .collect();
    let mut attacks: Vec<Level> = [1, 4, 16, 32, 64, 128]
        .into_iter()
        .map(Level::adversarial)
        .collect();
    for level in levels.iter().chain(&attacks) {
        level.cross_check();
    }
    eprintln!("cross-check passed: every design agrees with the model on every sampled query");

    for round in 0..rounds {
        for level in levels.iter_mut().chain(attacks.iter_mut()) {
            level.measure(budget);
        }
        eprintln!("round {} of {rounds} done", round + 1);
    }
    report::scaling(&levels);
    report::memory_and_updates(&levels);
    report::adversarial(&attacks);
}

/// One rule set loaded into every design, its query mixes and the timings collected for it.
struct Level {
    name: String,
    entries: Vec<InboundEntry>,
    study: Study,
    model: model::Model,
    /// (name, first query index, count) of each mix.
    mixes: Vec<(&'static str, u32, u32)>,
    /// Mean lookups per verdict of each mix: (A's LPM probes, A''s hash + LPM probes, B's hash
    /// probes).
    probes: BTreeMap<&'static str, (f64, f64, f64)>,
    /// ns per run, per (program, mix), one per round.
    runs: BTreeMap<(Design, &'static str), Vec<f64>>,
}

impl Level {
    fn typical(n: usize) -> Self {
        let entries = rules::typical(n);
        let model = model::Model::new(&entries);
        let matching = rules::matching_queries(&entries, MIX_LEN);
        let missing = rules::missing_queries(MIX_LEN);
        for q in &matching {
            assert_ne!(
                model.classify(q),
                Default::default(),
                "matching query {q:?}"
            );
        }
        for q in &missing {
            assert_eq!(model.classify(q), Default::default(), "missing query {q:?}");
        }
        let hot = rules::hot_query(&entries);
        let queries: Vec<StudyQuery> = matching.into_iter().chain(missing).chain([hot]).collect();
        let study = Study::load(&entries, &queries);
        let m = MIX_LEN as u32;
        let mixes = vec![("hot", 2 * m, 1), ("match", 0, m), ("miss", m, m)];
        Level::new(format!("{n} rules"), entries, study, model, mixes)
    }

    fn adversarial(lengths: usize) -> Self {
        let entries = rules::adversarial(lengths);
        let model = model::Model::new(&entries);
        let queries = rules::adversarial_queries(MIX_LEN);
        for q in &queries {
            assert_eq!(
                model.classify(q),
                Default::default(),
                "adversarial query {q:?}"
            );
        }
        let study = Study::load(&entries, &queries);
        let mixes = vec![("miss", 0, MIX_LEN as u32)];
        Level::new(
            format!("{lengths} prefix lengths"),
            entries,
            study,
            model,
            mixes,
        )
    }

    fn new(
        name: String,
        entries: Vec<InboundEntry>,
        study: Study,
        model: model::Model,
        mixes: Vec<(&'static str, u32, u32)>,
    ) -> Self {
        let shapes = study.tss_shapes();
        let probes = mixes
            .iter()
            .map(|&(mix, first, count)| {
                let queries = &study.queries()[first as usize..(first + count) as usize];
                let (a, ax, b) = queries.iter().fold((0, 0, 0), |(a, ax, b), q| {
                    let (qa, qax, qb) = model.probes(q, &shapes);
                    (a + qa, ax + qax, b + qb)
                });
                let n = queries.len() as f64;
                (mix, (a as f64 / n, ax as f64 / n, b as f64 / n))
            })
            .collect();
        Level {
            name,
            entries,
            study,
            model,
            mixes,
            probes,
            runs: BTreeMap::new(),
        }
    }

    /// Every design returns the model's answer for a sample of each mix.
    fn cross_check(&self) {
        let queries = self.study.queries();
        for &(mix, first, count) in &self.mixes {
            let step = (count as usize / CHECKED_PER_MIX).max(1);
            for i in (first..first + count).step_by(step) {
                let want = self.model.classify(&queries[i as usize]);
                let got: Vec<_> = self
                    .study
                    .designs()
                    .into_iter()
                    .map(|d| (d, self.study.classify_one(d, i)))
                    .collect();
                assert!(
                    got.iter().all(|(_, m)| *m == want),
                    "{}: a design disagrees with the model ({want:?}) on {mix} query {i} {:?}: {got:?}",
                    self.name,
                    queries[i as usize]
                );
            }
        }
    }

    /// One round: the baselines, then each design on each mix.
    fn measure(&mut self, budget: Duration) {
        let (_, first, count) = self.mixes[0];
        for baseline in [Design::Baseline, Design::FetchOnly] {
            let ns = self.study.time(baseline, first, count, budget);
            self.runs.entry((baseline, "any")).or_default().push(ns);
        }
        for &(mix, first, count) in &self.mixes {
            for design in self.study.designs() {
                let ns = self.study.time(design, first, count, budget);
                self.runs.entry((design, mix)).or_default().push(ns);
            }
        }
    }

    fn median(&self, design: Design, mix: &'static str) -> Option<f64> {
        self.runs.get(&(design, mix)).map(|v| median(v))
    }
}

/// Rule sets and query mixes, generated deterministically so every run loads the same tables.
mod rules {
    use std::collections::BTreeMap;

    use dataplane_common::{
        FIRST_RULE_ID, InboundEntry, RuleMatch, identities, ipv4_mapped, rule_ids,
    };

    use crate::{abi::StudyQuery, model::mask};

    pub const WORKLOADS: u32 = 8;
    pub const PORTS: [u16; 5] = [80, 443, 8080, 9090, 5432];
    const IDENTITIES: u32 = 16;
    const FIRST_IDENTITY: u32 = 100;

    /// `n` rules like a compiled policy set: 8 server workloads, 16 peer identities and 5 ports,
    /// a quarter of the rules for any identity and a third for any port, distinct /32 sources with
    /// some /24 and /16, plus the compiler's `::/0` entry in every group of the odd workloads (the
    /// even ones are left without, so that a query can miss every group).
    pub fn typical(n: usize) -> Vec<InboundEntry> {
        let mut table = BTreeMap::new();
        for i in 0..n {
            let identity = if i % 4 == 3 {
                identities::ANY
            } else {
                FIRST_IDENTITY + (i as u32 / 4) % IDENTITIES
            };
            let port = if (i / 2) % 3 == 2 {
                0
            } else {
                PORTS[(i / 7) % PORTS.len()]
            };
            let v4_len = match i {
                _ if i % 64 == 9 => 16,
                _ if i % 16 == 5 => 24,
                _ => 32,
            };
            let id = FIRST_RULE_ID + i as u32;
            let rules = if i % 5 == 0 {
                RuleMatch {
                    deny: id,
                    ..Default::default()
                }
            } else {
                RuleMatch {
                    allow: id,
                    ..Default::default()
                }
            };
            let addr = ipv4_mapped([10, (i >> 16) as u8, (i >> 8) as u8, i as u8]);
            add(
                &mut table,
                1 + i as u32 % WORKLOADS,
                identity,
                port,
                addr,
                96 + v4_len,
                rules,
            );
        }
        let groups: Vec<(u32, u32, u16)> = table
            .keys()
            .filter(|(w, ..)| w % 2 == 1)
            .map(|&(w, s, p, ..)| (w, s, p))
            .collect();
        for (k, (w, s, p)) in groups.into_iter().enumerate() {
            let rules = RuleMatch {
                deny: rule_ids::DEFAULT_DENY,
                allow: 0,
                audit: k as u32,
            };
            add(&mut table, w, s, p, [0; 16], 0, rules);
        }
        into_entries(table)
    }

    /// The tuple-space explosion: for each of the 4 wildcard groups, rules at `lengths` distinct
    /// prefix lengths spread over 1..=128 (up to 8 rules each), all for workload 1, so there are
    /// 4 × `lengths` shapes and few rules.
    pub fn adversarial(lengths: usize) -> Vec<InboundEntry> {
        let mut table = BTreeMap::new();
        let step = 128 / lengths;
        let mut id = FIRST_RULE_ID;
        for group in 0..4 {
            let identity = if group < 2 { 200 } else { identities::ANY };
            let port = if group % 2 == 0 { 80 } else { 0 };
            for t in 0..lengths {
                let len = (128 - t * step) as u8;
                for k in 0..8u8 {
                    let mut addr = [0x20, 0x01, 0x0d, 0xb8, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, k];
                    addr[8] = k;
                    let rules = RuleMatch {
                        allow: id,
                        ..Default::default()
                    };
                    id += 1;
                    add(&mut table, 1, identity, port, addr, len, rules);
                }
            }
        }
        into_entries(table)
    }

    /// Queries that each hit a rule: built from the rules themselves, spread over the table.
    pub fn matching_queries(entries: &[InboundEntry], count: usize) -> Vec<StudyQuery> {
        (0..count)
            .map(|j| {
                let e = &entries[(j * 7_919) % entries.len()];
                let host = ipv4_mapped([10, 99, (j >> 8) as u8, j as u8]);
                let keep = mask([0xff; 16], e.prefix_len);
                let mut addr = [0u8; 16];
                for b in 0..16 {
                    addr[b] = (e.addr[b] & keep[b]) | (host[b] & !keep[b]);
                }
                StudyQuery {
                    workload_id: e.workload_id,
                    identity: if e.identity == identities::ANY {
                        FIRST_IDENTITY + j as u32 % IDENTITIES
                    } else {
                        e.identity
                    },
                    port: if e.port == 0 {
                        PORTS[j % PORTS.len()]
                    } else {
                        e.port
                    },
                    _pad: 0,
                    addr,
                }
            })
            .collect()
    }

    /// The single query of the cache-hot mix: the exact source of a /32 rule in the
    /// (identity, port) group, the common case of a known peer.
    pub fn hot_query(entries: &[InboundEntry]) -> StudyQuery {
        let e = entries
            .iter()
            .find(|e| e.prefix_len == 128 && e.identity != identities::ANY && e.port != 0)
            .expect("a /32 rule with identity and port");
        StudyQuery {
            workload_id: e.workload_id,
            identity: e.identity,
            port: e.port,
            _pad: 0,
            addr: e.addr,
        }
    }

    /// Queries that match nothing although their workload, identity and port have groups: even
    /// workloads (no `::/0`), sources in 192.168/16 (no rule covers them). Every group is probed.
    pub fn missing_queries(count: usize) -> Vec<StudyQuery> {
        (0..count)
            .map(|j| StudyQuery {
                workload_id: 2 + 2 * (j as u32 % (WORKLOADS / 2)),
                identity: FIRST_IDENTITY + j as u32 % IDENTITIES,
                port: PORTS[j % PORTS.len()],
                _pad: 0,
                addr: ipv4_mapped([192, 168, (j >> 8) as u8, j as u8]),
            })
            .collect()
    }

    /// Queries against the adversarial set that miss every shape (their first address bit differs
    /// from every rule's): the worst case, every shape probed.
    pub fn adversarial_queries(count: usize) -> Vec<StudyQuery> {
        (0..count)
            .map(|j| {
                let mut addr = [0xfe; 16];
                addr[15] = j as u8;
                StudyQuery {
                    workload_id: 1,
                    identity: 200,
                    port: 80,
                    _pad: 0,
                    addr,
                }
            })
            .collect()
    }

    type TableKey = (u32, u32, u16, u8, [u8; 16]);

    fn add(
        table: &mut BTreeMap<TableKey, RuleMatch>,
        workload_id: u32,
        identity: u32,
        port: u16,
        addr: [u8; 16],
        prefix_len: u8,
        rules: RuleMatch,
    ) {
        let addr = mask(addr, prefix_len);
        table.insert((workload_id, identity, port, prefix_len, addr), rules);
    }

    fn into_entries(table: BTreeMap<TableKey, RuleMatch>) -> Vec<InboundEntry> {
        table
            .into_iter()
            .map(
                |((workload_id, identity, port, prefix_len, addr), rules)| InboundEntry {
                    workload_id,
                    identity,
                    port,
                    addr,
                    prefix_len,
                    rules,
                },
            )
            .collect()
    }
}

/// The semantics every design must implement, written the obvious way: groups (identity, port),
/// (identity, any), (ANY, port), (ANY, any) in order; in the first group with a match, the longest
/// prefix wins.
mod model {
    use std::collections::{BTreeSet, HashMap};

    use dataplane_common::{FULL_PREFIX_LEN, InboundEntry, RuleMatch, identities};

    use crate::abi::StudyQuery;

    type Key = (u32, u32, u16, u8, [u8; 16]);

    pub struct Model {
        table: HashMap<Key, RuleMatch>,
        lengths: BTreeSet<u8>,
    }

    impl Model {
        pub fn new(entries: &[InboundEntry]) -> Self {
            Model {
                table: entries
                    .iter()
                    .map(|e| {
                        (
                            (e.workload_id, e.identity, e.port, e.prefix_len, e.addr),
                            e.rules,
                        )
                    })
                    .collect(),
                lengths: entries.iter().map(|e| e.prefix_len).collect(),
            }
        }

        pub fn classify(&self, q: &StudyQuery) -> RuleMatch {
            for (identity, port) in groups(q) {
                for &len in self.lengths.iter().rev() {
                    let key = (q.workload_id, identity, port, len, mask(q.addr, len));
                    if let Some(m) = self.table.get(&key) {
                        return *m;
                    }
                }
            }
            RuleMatch::default()
        }
    }

    impl Model {
        /// Lookups one verdict for `q` costs: (A's LPM probes: groups tried until one has a
        /// match; A''s probes: per group tried, one hash probe, plus one LPM walk unless it hit;
        /// B's hash probes: shapes, in priority order, tried until one hits).
        pub fn probes(&self, q: &StudyQuery, shapes: &[(usize, u8)]) -> (usize, usize, usize) {
            let groups = groups(q);
            let hits = |group: usize, len: u8| {
                let (identity, port) = groups[group];
                let key = (q.workload_id, identity, port, len, mask(q.addr, len));
                self.table.contains_key(&key)
            };
            let a = (0..4)
                .position(|g| self.lengths.iter().any(|&len| hits(g, len)))
                .map_or(4, |g| g + 1);
            let mut a_exact = 0;
            for g in 0..4 {
                a_exact += 1;
                if hits(g, FULL_PREFIX_LEN) {
                    break;
                }
                a_exact += 1;
                if self.lengths.iter().any(|&len| hits(g, len)) {
                    break;
                }
            }
            let b = shapes
                .iter()
                .position(|&(g, len)| hits(g, len))
                .map_or(shapes.len(), |i| i + 1);
            (a, a_exact, b)
        }
    }

    pub fn groups(q: &StudyQuery) -> [(u32, u16); 4] {
        [
            (q.identity, q.port),
            (q.identity, 0),
            (identities::ANY, q.port),
            (identities::ANY, 0),
        ]
    }

    /// The group index of an entry, in lookup order.
    pub fn group_of(e: &InboundEntry) -> usize {
        usize::from(e.identity == identities::ANY) * 2 + usize::from(e.port == 0)
    }

    /// `addr` with all bits after the first `len` cleared.
    pub fn mask(addr: [u8; 16], len: u8) -> [u8; 16] {
        let mut out = [0u8; 16];
        for (i, b) in addr.iter().enumerate() {
            let bits = (usize::from(len)).saturating_sub(i * 8).min(8);
            out[i] = if bits == 0 {
                0
            } else {
                b & (0xffu8 << (8 - bits))
            };
        }
        out
    }
}

/// The study object loaded once per rule set, with every design's maps filled.
mod design {
    use std::{
        collections::{BTreeMap, BTreeSet},
        os::fd::{AsFd, AsRawFd, RawFd},
        time::{Duration, Instant},
    };

    use aya::{
        Ebpf, EbpfLoader,
        maps::{Array, HashMap, IterableMap, LpmTrie, MapData, lpm_trie::Key},
        programs::Xdp,
    };
    use dataplane_common::{
        FULL_PREFIX_LEN, INBOUND_KEY_FIXED_BITS, InboundEntry, InboundKey, RuleMatch, identities,
    };

    use crate::{
        abi::{
            BV_MAX_WORDS, BvDimKey, MAX_SHAPES, StudyPacket, StudyQuery, TssKey, TssShape, bv_dims,
        },
        model::{group_of, mask},
        test_run,
    };

    static OBJECT: &[u8] =
        aya::include_bytes_aligned!(concat!(env!("OUT_DIR"), "/classifier-study.bpf.o"));

    /// Design C is only built while its bitmaps fit in this much memory.
    const BITMAP_BUDGET_BYTES: u64 = 256 << 20;

    #[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord)]
    pub enum Design {
        /// Returns at once: test_run's own per-run cost.
        Baseline,
        /// The wrapper without a lookup: packet read, query fetch, verdict write.
        FetchOnly,
        /// A: one LPM trie, complete groups, up to 4 walks (production until A').
        LpmGroups,
        /// A': the production lookup: per group an exact-match hash of the full-length entries,
        /// then the trie of the others on a miss.
        ExactLpm,
        /// B: tuple-space search, one probe per shape.
        TupleSpace,
        /// C: bitmap intersection.
        Bitmap,
    }

    impl Design {
        pub fn program(self) -> &'static str {
            match self {
                Design::Baseline => "cs_baseline",
                Design::FetchOnly => "cs_fetch_only",
                Design::LpmGroups => "cs_lpm_groups",
                Design::ExactLpm => "cs_exact_lpm",
                Design::TupleSpace => "cs_tuple_space",
                Design::Bitmap => "cs_bitmap",
            }
        }

        pub fn label(self) -> &'static str {
            match self {
                Design::Baseline => "baseline (returns at once)",
                Design::FetchOnly => "wrapper, no lookup",
                Design::LpmGroups => "A: LPM groups",
                Design::ExactLpm => "A': exact + LPM",
                Design::TupleSpace => "B: tuple space",
                Design::Bitmap => "C: bitmap AND",
            }
        }
    }

    /// User-space cost of writing a design's tables.
    #[derive(Clone, Copy, Debug, Default)]
    pub struct UpdateTimes {
        pub full: Duration,
        /// Median of one-rule additions whose shape already exists.
        pub one_rule: Duration,
        /// Median of one-rule additions that bring a new shape (B only).
        pub one_rule_new_shape: Option<Duration>,
    }

    pub struct Study {
        _ebpf: Ebpf,
        programs: BTreeMap<Design, RawFd>,
        queries: Vec<StudyQuery>,
        lpm: LpmTrie<MapData, InboundKey, RuleMatch>,
        exact: ExactLpm,
        tss: TupleSpace,
        pub shapes: usize,
        pub bitmap_note: Option<String>,
        pub memory: BTreeMap<Design, u64>,
        pub updates: BTreeMap<Design, UpdateTimes>,
    }

    /// Design A''s maps, split as `dataplane::kernel::tables` splits the production ones.
    struct ExactLpm {
        exact: HashMap<MapData, InboundKey, RuleMatch>,
        lpm: LpmTrie<MapData, InboundKey, RuleMatch>,
    }

    impl ExactLpm {
        fn insert(&mut self, e: &InboundEntry) {
            let key = lpm_key(e);
            if e.prefix_len == FULL_PREFIX_LEN {
                self.exact
                    .insert(&key.data(), &e.rules, 0)
                    .expect("write CS_EXACT_RULES");
            } else {
                self.lpm
                    .insert(&key, &e.rules, 0)
                    .expect("write CS_EXACT_LPM");
            }
        }

        fn remove(&mut self, e: &InboundEntry) {
            let key = lpm_key(e);
            if e.prefix_len == FULL_PREFIX_LEN {
                self.exact.remove(&key.data()).expect("remove (A')");
            } else {
                self.lpm.remove(&key).expect("remove (A')");
            }
        }
    }

    struct TupleSpace {
        rules: HashMap<MapData, TssKey, RuleMatch>,
        shapes: Array<MapData, TssShape>,
        count: Array<MapData, u32>,
        /// (group, prefix length) of each shape, in priority order; ids are positions at fill time.
        order: Vec<(usize, u8, u16)>,
    }

    impl Study {
        pub fn load(entries: &[InboundEntry], queries: &[StudyQuery]) -> Study {
            let bitmaps = Bitmaps::new(entries);
            let bitmap_bytes = bitmaps.words_total() * 8;
            let build_bitmap = entries.len() <= (BV_MAX_WORDS * 64) as usize
                && bitmap_bytes <= BITMAP_BUDGET_BYTES;
            let words_capacity = if build_bitmap {
                bitmaps.words_total() as u32
            } else {
                1
            };
            let mut ebpf = EbpfLoader::new()
                .map_max_entries("CS_BV_WORDS", words_capacity.max(1))
                .load(OBJECT)
                .expect("load the classifier-study object");
            let mut programs = BTreeMap::new();
            let mut designs = vec![
                Design::Baseline,
                Design::FetchOnly,
                Design::LpmGroups,
                Design::ExactLpm,
                Design::TupleSpace,
            ];
            if build_bitmap {
                designs.push(Design::Bitmap);
            }
            for design in designs {
                let prog: &mut Xdp = ebpf
                    .program_mut(design.program())
                    .expect("program in the object")
                    .try_into()
                    .expect("an XDP program");
                prog.load()
                    .unwrap_or_else(|e| panic!("verifier rejected {}: {e:?}", design.program()));
                let fd = prog.fd().expect("loaded").as_fd().as_raw_fd();
                programs.insert(design, fd);
            }

            let mut query_map: Array<MapData, StudyQuery> = take(&mut ebpf, "CS_QUERIES");
            for (i, q) in queries.iter().enumerate() {
                query_map.set(i as u32, q, 0).expect("write CS_QUERIES");
            }

            let mut lpm: LpmTrie<MapData, InboundKey, RuleMatch> = take(&mut ebpf, "CS_LPM_RULES");
            let started = Instant::now();
            for e in entries {
                lpm.insert(&lpm_key(e), &e.rules, 0)
                    .expect("write CS_LPM_RULES");
            }
            let lpm_full = started.elapsed();

            let mut exact = ExactLpm {
                exact: take(&mut ebpf, "CS_EXACT_RULES"),
                lpm: take(&mut ebpf, "CS_EXACT_LPM"),
            };
            let started = Instant::now();
            for e in entries {
                exact.insert(e);
            }
            let exact_full = started.elapsed();

            let mut tss = TupleSpace {
                rules: take(&mut ebpf, "CS_TSS_RULES"),
                shapes: take(&mut ebpf, "CS_TSS_SHAPES"),
                count: take(&mut ebpf, "CS_TSS_COUNT"),
                order: Vec::new(),
            };
            let started = Instant::now();
            tss.fill(entries);
            let tss_full = started.elapsed();

            let mut memory = BTreeMap::new();
            memory.insert(Design::LpmGroups, memlock(&lpm));
            memory.insert(
                Design::ExactLpm,
                memlock(&exact.exact) + memlock(&exact.lpm),
            );
            memory.insert(
                Design::TupleSpace,
                memlock(&tss.rules) + memlock(&tss.shapes) + memlock(&tss.count),
            );

            let mut updates = BTreeMap::new();
            let mut bitmap_note = None;
            if build_bitmap {
                let started = Instant::now();
                let maps = bitmaps.write(&mut ebpf);
                let full = started.elapsed();
                memory.insert(Design::Bitmap, maps);
                // Rule numbers are priorities: one new rule renumbers the rules after it, so a
                // change rewrites the bitmaps (no cheaper incremental form was built).
                updates.insert(
                    Design::Bitmap,
                    UpdateTimes {
                        full,
                        one_rule: full,
                        one_rule_new_shape: None,
                    },
                );
            } else {
                bitmap_note = Some(format!(
                    "not built: {} bitmaps × {} rules would need {:.1} GiB",
                    bitmaps.count(),
                    entries.len(),
                    bitmap_bytes as f64 / (1u64 << 30) as f64
                ));
            }
            let shapes = tss.order.len();
            let mut study = Study {
                _ebpf: ebpf,
                programs,
                queries: queries.to_vec(),
                lpm,
                exact,
                tss,
                shapes,
                bitmap_note,
                memory,
                updates,
            };
            let (lpm_one, exact_one, tss_one, tss_new) = study.time_one_rule_changes(entries);
            study.updates.insert(
                Design::LpmGroups,
                UpdateTimes {
                    full: lpm_full,
                    one_rule: lpm_one,
                    one_rule_new_shape: None,
                },
            );
            study.updates.insert(
                Design::ExactLpm,
                UpdateTimes {
                    full: exact_full,
                    one_rule: exact_one,
                    one_rule_new_shape: None,
                },
            );
            study.updates.insert(
                Design::TupleSpace,
                UpdateTimes {
                    full: tss_full,
                    one_rule: tss_one,
                    one_rule_new_shape: Some(tss_new),
                },
            );
            study
        }

        /// B's shapes in priority order: (group, prefix length).
        pub fn tss_shapes(&self) -> Vec<(usize, u8)> {
            self.tss.order.iter().map(|&(g, len, _)| (g, len)).collect()
        }

        pub fn queries(&self) -> &[StudyQuery] {
            &self.queries
        }

        /// The lookup designs loaded for this rule set.
        pub fn designs(&self) -> Vec<Design> {
            self.programs
                .keys()
                .copied()
                .filter(|d| *d >= Design::LpmGroups)
                .collect()
        }

        /// One run of `design` on query `index`: its verdict.
        pub fn classify_one(&self, design: Design, index: u32) -> RuleMatch {
            let packet = StudyPacket {
                first: index,
                count: 1,
                ..Default::default()
            };
            let (out, _) = test_run::run(self.programs[&design], &packet, 1);
            RuleMatch {
                deny: out.result[0],
                allow: out.result[1],
                audit: out.result[2],
            }
        }

        /// Mean ns per run of `design` cycling through queries `first..first + count`, with as
        /// many repeats as fit in `budget`.
        pub fn time(&self, design: Design, first: u32, count: u32, budget: Duration) -> f64 {
            let fd = self.programs[&design];
            let packet = StudyPacket {
                first,
                count,
                ..Default::default()
            };
            let (_, probe_ns) = test_run::run(fd, &packet, 1_000);
            let repeat = (budget.as_nanos() as f64 / f64::from(probe_ns.max(1)))
                .clamp(10_000.0, 1_000_000.0) as u32;
            let (_, ns) = test_run::run(fd, &packet, repeat);
            f64::from(ns)
        }

        /// Medians of one-rule additions (each removed again untimed): A; A' (a /32: its hash);
        /// B into an existing shape; B with a new shape (group (identity, port), /27: not in any
        /// generated set).
        fn time_one_rule_changes(
            &mut self,
            entries: &[InboundEntry],
        ) -> (Duration, Duration, Duration, Duration) {
            // A /32 in the (identity, port) group: the fresh /32s below add to it, never replace.
            let template = entries
                .iter()
                .find(|e| group_of(e) == 0 && e.prefix_len == 128)
                .copied()
                .expect("a /32 rule in the (identity, port) group");
            // A prefix length that group does not use yet (/27 in the typical sets).
            let new_len = std::iter::once(96 + 27)
                .chain((0..=128).rev())
                .find(|&len| {
                    self.tss
                        .position(&InboundEntry {
                            prefix_len: len,
                            ..template
                        })
                        .is_err()
                })
                .expect("a free prefix length");
            let fresh = |i: u32, prefix_len: u8| InboundEntry {
                addr: mask(
                    dataplane_common::ipv4_mapped([172, 16, (i >> 8) as u8, i as u8]),
                    prefix_len,
                ),
                prefix_len,
                ..template
            };
            let (mut a, mut ax, mut b, mut b_new) =
                (Vec::new(), Vec::new(), Vec::new(), Vec::new());
            for i in 0..200 {
                let e = fresh(i, template.prefix_len);
                let started = Instant::now();
                self.lpm
                    .insert(&lpm_key(&e), &e.rules, 0)
                    .expect("add one rule (A)");
                a.push(started.elapsed());
                self.lpm.remove(&lpm_key(&e)).expect("remove it");

                let started = Instant::now();
                self.exact.insert(&e);
                ax.push(started.elapsed());
                self.exact.remove(&e);

                let started = Instant::now();
                let new_shape = self.tss.add(&e);
                b.push(started.elapsed());
                assert!(!new_shape, "the template's shape exists");
                self.tss.remove(&e, new_shape);

                let e = fresh(i, new_len);
                let started = Instant::now();
                let new_shape = self.tss.add(&e);
                b_new.push(started.elapsed());
                assert!(new_shape, "/{new_len} is a new shape");
                self.tss.remove(&e, new_shape);
            }
            (
                median_duration(a),
                median_duration(ax),
                median_duration(b),
                median_duration(b_new),
            )
        }
    }

    impl TupleSpace {
        fn fill(&mut self, entries: &[InboundEntry]) {
            let shapes: BTreeSet<(usize, std::cmp::Reverse<u8>)> = entries
                .iter()
                .map(|e| (group_of(e), std::cmp::Reverse(e.prefix_len)))
                .collect();
            assert!(shapes.len() <= MAX_SHAPES as usize, "too many shapes");
            self.order = shapes
                .into_iter()
                .enumerate()
                .map(|(id, (group, len))| (group, len.0, id as u16))
                .collect();
            self.write_order(0);
            for e in entries {
                let key = self.key(e);
                self.rules
                    .insert(&key, &e.rules, 0)
                    .expect("write CS_TSS_RULES");
            }
        }

        /// Adds one rule; a new shape is inserted at its priority position and the positions
        /// after it are rewritten (entries are keyed by the stable id, so none moves). Returns
        /// whether the shape is new.
        fn add(&mut self, e: &InboundEntry) -> bool {
            let Err(at) = self.position(e) else {
                let key = self.key(e);
                self.rules
                    .insert(&key, &e.rules, 0)
                    .expect("add one rule (B)");
                return false;
            };
            let id = self.order.iter().map(|s| s.2).max().map_or(0, |m| m + 1);
            self.order.insert(at, (group_of(e), e.prefix_len, id));
            // The entry first, so the kernel never sees a shape without its entry.
            let key = self.key(e);
            self.rules
                .insert(&key, &e.rules, 0)
                .expect("add one rule (B)");
            self.write_order(at);
            true
        }

        /// Removes a rule added by `add`, and its shape if `add` created it.
        fn remove(&mut self, e: &InboundEntry, drop_shape: bool) {
            let key = self.key(e);
            self.rules.remove(&key).expect("remove one rule (B)");
            if drop_shape {
                let at = self.position(e).expect("shape present");
                self.order.remove(at);
                self.write_order(at);
            }
        }

        /// Where `e`'s shape is (Ok) or would go (Err) in priority order.
        fn position(&self, e: &InboundEntry) -> Result<usize, usize> {
            let want = (group_of(e), std::cmp::Reverse(e.prefix_len));
            self.order
                .binary_search_by(|&(g, len, _)| (g, std::cmp::Reverse(len)).cmp(&want))
        }

        /// Writes the priority order from position `from` on, then the count.
        fn write_order(&mut self, from: usize) {
            for (i, &(group, len, id)) in self.order.iter().enumerate().skip(from) {
                let m = mask([0xff; 16], len);
                let shape = TssShape {
                    mask: [
                        u64::from_ne_bytes(m[..8].try_into().expect("8 bytes")),
                        u64::from_ne_bytes(m[8..].try_into().expect("8 bytes")),
                    ],
                    id,
                    any_identity: u8::from(group >= 2),
                    any_port: u8::from(group % 2 == 1),
                    prefix_len: len,
                    _pad: [0; 3],
                };
                self.shapes
                    .set(i as u32, &shape, 0)
                    .expect("write CS_TSS_SHAPES");
            }
            self.count
                .set(0, &(self.order.len() as u32), 0)
                .expect("write CS_TSS_COUNT");
        }

        fn key(&self, e: &InboundEntry) -> TssKey {
            let at = self.position(e).expect("shape present");
            TssKey {
                workload_id: e.workload_id,
                identity: e.identity,
                port: e.port,
                shape: self.order[at].2,
                addr: e.addr,
            }
        }
    }

    /// A source prefix: (length, masked address).
    type Prefix = (u8, [u8; 16]);

    /// Design C's tables computed in user space: rules numbered in priority order, one bitmap per
    /// dimension value and per distinct source prefix.
    struct Bitmaps {
        rules: Vec<InboundEntry>,
        words: u32,
        dims: Vec<(BvDimKey, Vec<u32>)>,
        prefixes: Vec<(Prefix, Vec<u32>)>,
    }

    impl Bitmaps {
        fn new(entries: &[InboundEntry]) -> Self {
            let mut rules = entries.to_vec();
            rules.sort_by_key(|e| (group_of(e), std::cmp::Reverse(e.prefix_len)));
            let words = rules.len().div_ceil(64) as u32;
            let mut by_dim: BTreeMap<(u32, u32), Vec<u32>> = BTreeMap::new();
            for (r, e) in rules.iter().enumerate() {
                by_dim
                    .entry((bv_dims::WORKLOAD, e.workload_id))
                    .or_default()
                    .push(r as u32);
                by_dim.entry((bv_dims::IDENTITY, e.identity)).or_default();
                by_dim
                    .entry((bv_dims::PORT, u32::from(e.port)))
                    .or_default();
            }
            by_dim
                .entry((bv_dims::IDENTITY, identities::ANY))
                .or_default();
            by_dim.entry((bv_dims::PORT, 0)).or_default();
            // A value's bitmap holds its own rules and the wildcard rules of that dimension.
            for (&(dim, value), bits) in by_dim.iter_mut() {
                if dim == bv_dims::WORKLOAD {
                    continue;
                }
                for (r, e) in rules.iter().enumerate() {
                    let (v, wildcard) = if dim == bv_dims::IDENTITY {
                        (e.identity, identities::ANY)
                    } else {
                        (u32::from(e.port), 0)
                    };
                    if v == value || v == wildcard {
                        bits.push(r as u32);
                    }
                }
            }
            let mut by_prefix: BTreeMap<Prefix, Vec<u32>> = BTreeMap::new();
            for (r, e) in rules.iter().enumerate() {
                by_prefix
                    .entry((e.prefix_len, e.addr))
                    .or_default()
                    .push(r as u32);
            }
            let lengths: BTreeSet<u8> = by_prefix.keys().map(|k| k.0).collect();
            // A prefix's bitmap: the rules of every prefix that covers it (itself included).
            let prefixes = by_prefix
                .keys()
                .map(|&(len, addr)| {
                    let mut bits: Vec<u32> = lengths
                        .range(..=len)
                        .filter_map(|&l| by_prefix.get(&(l, mask(addr, l))))
                        .flatten()
                        .copied()
                        .collect();
                    bits.sort_unstable();
                    ((len, addr), bits)
                })
                .collect();
            Bitmaps {
                rules,
                words,
                dims: by_dim
                    .into_iter()
                    .map(|((dim, value), bits)| (BvDimKey { dim, value }, bits))
                    .collect(),
                prefixes,
            }
        }

        fn count(&self) -> usize {
            self.dims.len() + self.prefixes.len()
        }

        fn words_total(&self) -> u64 {
            self.count() as u64 * u64::from(self.words)
        }

        /// Writes every map of design C (only the non-zero words: the array starts zeroed) and
        /// returns their summed memlock.
        fn write(&self, ebpf: &mut Ebpf) -> u64 {
            let mut words: Array<MapData, u64> = take(ebpf, "CS_BV_WORDS");
            let mut dims: HashMap<MapData, BvDimKey, u32> = take(ebpf, "CS_BV_DIMS");
            let mut addrs: LpmTrie<MapData, [u8; 16], u32> = take(ebpf, "CS_BV_ADDRS");
            let mut results: Array<MapData, RuleMatch> = take(ebpf, "CS_BV_RESULTS");
            let mut count: Array<MapData, u32> = take(ebpf, "CS_BV_COUNT");
            let mut offset = 0u32;
            let mut write_bitmap = |bits: &[u32]| {
                let mut packed: BTreeMap<u32, u64> = BTreeMap::new();
                for &r in bits {
                    *packed.entry(r / 64).or_default() |= 1u64 << (r % 64);
                }
                for (w, v) in packed {
                    words.set(offset + w, &v, 0).expect("write CS_BV_WORDS");
                }
                offset += self.words;
                offset - self.words
            };
            for (key, bits) in &self.dims {
                let at = write_bitmap(bits);
                dims.insert(key, &at, 0).expect("write CS_BV_DIMS");
            }
            for ((len, addr), bits) in &self.prefixes {
                let at = write_bitmap(bits);
                addrs
                    .insert(&Key::new(u32::from(*len), *addr), &at, 0)
                    .expect("write CS_BV_ADDRS");
            }
            for (r, e) in self.rules.iter().enumerate() {
                results
                    .set(r as u32, &e.rules, 0)
                    .expect("write CS_BV_RESULTS");
            }
            count.set(0, &self.words, 0).expect("write CS_BV_COUNT");
            let words_mem = memlock(&words);
            words_mem + memlock(&dims) + memlock(&addrs) + memlock(&results) + memlock(&count)
        }
    }

    fn lpm_key(e: &InboundEntry) -> Key<InboundKey> {
        Key::new(
            INBOUND_KEY_FIXED_BITS + u32::from(e.prefix_len),
            InboundKey {
                workload_id: e.workload_id,
                identity: e.identity,
                port: e.port,
                slot: 0,
                _reserved: 0,
                addr: e.addr,
            },
        )
    }

    fn take<M: TryFrom<aya::maps::Map>>(ebpf: &mut Ebpf, name: &str) -> M
    where
        M::Error: std::fmt::Debug,
    {
        let map = ebpf
            .take_map(name)
            .unwrap_or_else(|| panic!("map {name} in the object"));
        M::try_from(map).unwrap_or_else(|e| panic!("map {name}: {e:?}"))
    }

    /// The kernel's accounting of a map's memory (`memlock` in /proc/self/fdinfo).
    fn memlock<K: aya::Pod, V, M: IterableMap<K, V>>(map: &M) -> u64 {
        let fd = map.map().fd().as_fd().as_raw_fd();
        let info = std::fs::read_to_string(format!("/proc/self/fdinfo/{fd}")).expect("fdinfo");
        info.lines()
            .find_map(|l| l.strip_prefix("memlock:"))
            .and_then(|v| v.trim().parse().ok())
            .expect("memlock in fdinfo")
    }

    fn median_duration(mut v: Vec<Duration>) -> Duration {
        v.sort();
        v[v.len() / 2]
    }
}

/// BPF_PROG_TEST_RUN through bpf(2): aya 0.16 does not expose it.
mod test_run {
    use std::os::fd::RawFd;

    use crate::abi::StudyPacket;

    const BPF_PROG_TEST_RUN: libc::c_long = 10;

    /// The `test` member of `union bpf_attr` (linux/bpf.h).
    #[repr(C)]
    #[derive(Default)]
    struct TestRunAttr {
        prog_fd: u32,
        retval: u32,
        data_size_in: u32,
        data_size_out: u32,
        data_in: u64,
        data_out: u64,
        repeat: u32,
        duration: u32,
        ctx_size_in: u32,
        ctx_size_out: u32,
        ctx_in: u64,
        ctx_out: u64,
        flags: u32,
        cpu: u32,
        batch_size: u32,
        _pad: u32,
    }

    /// Runs `fd` `repeat` times on `packet`; returns the packet after the last run and the
    /// kernel's mean ns per run (an integer).
    pub fn run(fd: RawFd, packet: &StudyPacket, repeat: u32) -> (StudyPacket, u32) {
        let mut out = StudyPacket::default();
        let mut attr = TestRunAttr {
            prog_fd: fd as u32,
            data_size_in: size_of::<StudyPacket>() as u32,
            data_size_out: size_of::<StudyPacket>() as u32,
            data_in: (packet as *const StudyPacket) as u64,
            data_out: (&raw mut out) as u64,
            repeat,
            ..Default::default()
        };
        // SAFETY: attr points at live buffers of the sizes it states, for the call's duration.
        let rc = unsafe {
            libc::syscall(
                libc::SYS_bpf,
                BPF_PROG_TEST_RUN,
                &raw mut attr,
                size_of::<TestRunAttr>() as u32,
            )
        };
        assert_eq!(
            rc,
            0,
            "BPF_PROG_TEST_RUN: {}",
            std::io::Error::last_os_error()
        );
        assert_eq!(
            attr.retval, 2,
            "the wrapper returned {} instead of XDP_PASS",
            attr.retval
        );
        (out, attr.duration)
    }
}

/// The tables printed for docs/classifier.md.
mod report {
    use crate::{Level, design::Design};

    const LOOKUPS: [Design; 4] = [
        Design::LpmGroups,
        Design::ExactLpm,
        Design::TupleSpace,
        Design::Bitmap,
    ];

    pub fn scaling(levels: &[Level]) {
        println!("\n### ns per verdict (BPF_PROG_TEST_RUN, median of rounds)\n");
        println!(
            "Each cell: raw ns per run of the XDP wrapper / net = raw − the wrapper without a \
             lookup. hot = one query repeated; match, miss = 4096 distinct queries cycled.\n"
        );
        println!(
            "| rules | entries | B shapes | empty prog | wrapper | design | hot | match | miss | \
             probes A, A' (match, miss) | probes B (match, miss) |"
        );
        println!("|---|---|---|---|---|---|---|---|---|---|---|");
        for level in levels {
            let base = level.median(Design::Baseline, "any").unwrap_or(f64::NAN);
            let fetch = level.median(Design::FetchOnly, "any").unwrap_or(f64::NAN);
            let probes = |mix| {
                level
                    .probes
                    .get(mix)
                    .copied()
                    .unwrap_or((f64::NAN, f64::NAN, f64::NAN))
            };
            let ((am, a2m, bm), (ax, a2x, bx)) = (probes("match"), probes("miss"));
            for (i, design) in LOOKUPS.into_iter().enumerate() {
                let head = if i == 0 {
                    format!(
                        "| {} | {} | {} | {base:.0} | {fetch:.0} |",
                        level.name,
                        level.entries.len(),
                        level.study.shapes
                    )
                } else {
                    "| | | | | |".to_string()
                };
                let cells: Vec<String> = ["hot", "match", "miss"]
                    .into_iter()
                    .map(|mix| match level.median(design, mix) {
                        Some(raw) => format!("{raw:.0} / {:.0}", raw - fetch),
                        None => "—".into(),
                    })
                    .collect();
                let note = if level.median(design, "match").is_none() {
                    level.study.bitmap_note.clone().unwrap_or_default()
                } else {
                    cells.join(" | ")
                };
                let probes = match design {
                    Design::LpmGroups => format!("{am:.2}, {ax:.2} | |"),
                    Design::ExactLpm => format!("{a2m:.2}, {a2x:.2} | |"),
                    Design::TupleSpace => format!("| {bm:.2}, {bx:.2} |"),
                    _ => "| |".into(),
                };
                println!("{head} {} | {note} | {probes}", design.label());
            }
        }
        let (first, last) = (&levels[0], &levels[levels.len() - 1]);
        println!(
            "\nGoal: verdict cost at {} ≤ 1.3× the cost at {} (ratio of medians).\n",
            last.name, first.name
        );
        println!("| design | mix | raw ratio | net ratio |");
        println!("|---|---|---|---|");
        for design in [Design::LpmGroups, Design::ExactLpm, Design::TupleSpace] {
            for mix in ["hot", "match", "miss"] {
                let at = |l: &Level, net: bool| {
                    let v = l.median(design, mix).unwrap_or(f64::NAN);
                    let fetch = l.median(Design::FetchOnly, "any").unwrap_or(f64::NAN);
                    if net { v - fetch } else { v }
                };
                println!(
                    "| {} | {mix} | {:.2} | {:.2} |",
                    design.label(),
                    at(last, false) / at(first, false),
                    at(last, true) / at(first, true)
                );
            }
        }
    }

    pub fn memory_and_updates(levels: &[Level]) {
        println!("\n### Map memory (kernel memlock) and user-space update times\n");
        println!(
            "| rules | entries | design | memory | full update | one rule | one rule, new shape |"
        );
        println!("|---|---|---|---|---|---|---|");
        for level in levels {
            for design in LOOKUPS {
                let Some(mem) = level.study.memory.get(&design) else {
                    continue;
                };
                let u = level.study.updates[&design];
                println!(
                    "| {} | {} | {} | {} | {:.1} ms | {:.1} µs | {} |",
                    level.name,
                    level.entries.len(),
                    design.label(),
                    bytes(*mem),
                    u.full.as_secs_f64() * 1e3,
                    u.one_rule.as_secs_f64() * 1e6,
                    u.one_rule_new_shape
                        .map(|d| format!("{:.1} µs", d.as_secs_f64() * 1e6))
                        .unwrap_or_else(|| "—".into())
                );
            }
        }
        let (first, last) = (&levels[0], &levels[levels.len() - 1]);
        let added = (last.entries.len() - first.entries.len()) as f64;
        for design in [Design::LpmGroups, Design::ExactLpm, Design::TupleSpace] {
            let grow = last.study.memory[&design] as f64 - first.study.memory[&design] as f64;
            println!(
                "\n{}: {:.0} bytes per added entry.",
                design.label(),
                grow / added
            );
        }
    }

    pub fn adversarial(levels: &[Level]) {
        println!("\n### Adversarial: many wildcard shapes, queries that miss every shape\n");
        println!(
            "| prefix lengths | shapes (B) | entries | A net ns | A' net ns | B net ns | C net ns | \
             B / A |"
        );
        println!("|---|---|---|---|---|---|---|---|");
        for level in levels {
            let fetch = level.median(Design::FetchOnly, "any").unwrap_or(f64::NAN);
            let net = |d| level.median(d, "miss").map(|v| v - fetch);
            let (a, b) = (net(Design::LpmGroups), net(Design::TupleSpace));
            let a2 = net(Design::ExactLpm);
            let c = net(Design::Bitmap).map_or("—".into(), |v| format!("{v:.1}"));
            println!(
                "| {} | {} | {} | {:.1} | {:.1} | {:.1} | {c} | {:.1} |",
                level.study.shapes / 4,
                level.study.shapes,
                level.entries.len(),
                a.unwrap_or(f64::NAN),
                a2.unwrap_or(f64::NAN),
                b.unwrap_or(f64::NAN),
                b.unwrap_or(f64::NAN) / a.unwrap_or(f64::NAN)
            );
        }
    }

    fn bytes(b: u64) -> String {
        match b {
            _ if b >= 1 << 20 => format!("{:.1} MiB", b as f64 / (1u64 << 20) as f64),
            _ => format!("{:.1} KiB", b as f64 / 1024.0),
        }
    }
}

fn require_root() {
    // SAFETY: no arguments.
    let euid = unsafe { libc::geteuid() };
    assert_eq!(
        euid, 0,
        "BPF_PROG_TEST_RUN needs root: run the bench as root"
    );
}

/// Keeps every test run on one CPU, so runs compare like with like.
fn pin_to_cpu(cpu: usize) {
    // SAFETY: a zeroed cpu_set_t is a valid empty set; sched_setaffinity reads it.
    unsafe {
        let mut set: libc::cpu_set_t = std::mem::zeroed();
        libc::CPU_SET(cpu, &mut set);
        libc::sched_setaffinity(0, size_of::<libc::cpu_set_t>(), &set);
    }
}

fn env_or<T: std::str::FromStr>(key: &str, default: T) -> T {
    std::env::var(key)
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(default)
}

fn median(v: &[f64]) -> f64 {
    let mut v = v.to_vec();
    v.sort_by(|a, b| a.total_cmp(b));
    v[v.len() / 2]
}

// SAFETY: repr(C) with explicit padding, no pointers (see abi.rs).
unsafe impl aya::Pod for abi::StudyQuery {}
unsafe impl aya::Pod for abi::TssShape {}
unsafe impl aya::Pod for abi::TssKey {}
unsafe impl aya::Pod for abi::BvDimKey {}
