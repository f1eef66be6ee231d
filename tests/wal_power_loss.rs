//! The WAL under power loss, on the in-memory disk (`raftexample::disk::MemFs`).
//!
//! Each run is a random workload drawn from a seed: appends (some overwriting an uncommitted
//! suffix under a new term, synced or not), hard states, snapshot markers with the release of
//! old segments, snapshots installed from a leader (reset markers), small segments that rotate,
//! clean restarts, and faults: the power fails between two calls or inside one (after a random
//! number of the disk operations it makes, opening included), a sync fails (`EIO`), the disk is
//! full (`ENOSPC`); in half the runs a failed sync also marks what it did not write clean, as Linux
//! does, so that no later sync writes it. At a power loss every page written since the last
//! completed sync of its file is kept, dropped or torn, independently (see `disk/mem.rs`).
//!
//! After every restart the WAL must open, and give back the state after some prefix of the
//! records it was asked to write that includes every record a completed sync (a synced call
//! that returned `Ok`) covered. At the end, one byte of one record is flipped at rest: the WAL
//! must refuse to start, naming the file and the record's offset, exactly when a sync is known
//! to have covered that record (any segment but the last, the last segment's header, or a
//! record that a later sync mark covers), and otherwise start with the segment cut there.
//!
//! `wal_survives_power_loss` is a proptest over seeds (part of the suite);
//! `wal_survives_power_loss_for_many_seeds` runs `WAL_POWER_LOSS_SEEDS` seeds (default 100)
//! from `WAL_POWER_LOSS_SEED_BASE` (default 0), for a long run:
//!
//! ```sh
//! WAL_POWER_LOSS_SEEDS=20000 cargo nextest run --release --test wal_power_loss many_seeds
//! ```

use std::fmt::Write as _;
use std::path::{Path, PathBuf};
use std::sync::Arc;

use proptest::prelude::*;
use raft::eraftpb::ConfState;
use raftexample::disk::{FileSystem, MemFs, SharedFs};
use raftexample::wal::{
    self, Entry, Error, HardState, Metadata, Record, SnapshotMetadata, Wal, WalContents, WalOptions,
};
use rand::rngs::StdRng;
use rand::{RngExt, SeedableRng};

/// One record the WAL was asked to write, in order.
#[derive(Clone, Debug)]
enum Rec {
    Entries(Vec<Entry>),
    HardState(HardState),
    Marker(SnapshotMetadata),
    Reset(SnapshotMetadata),
}

/// What replay must give back after some prefix of the records: the hard state, the newest
/// marker and the entries after it.
#[derive(Debug, PartialEq)]
struct View {
    hard_state: HardState,
    marker: Option<SnapshotMetadata>,
    entries: Vec<Entry>,
}

/// raft's log as records are applied, worked out independently of the WAL's replay.
#[derive(Default)]
struct Log {
    hard_state: HardState,
    marker: Option<SnapshotMetadata>,
    entries: Vec<Entry>,
}

impl Log {
    fn apply(&mut self, rec: &Rec) {
        match rec {
            Rec::Entries(es) => {
                if let Some(first) = es.first() {
                    self.entries.retain(|e| e.index < first.index);
                    self.entries.extend(es.iter().cloned());
                }
            }
            Rec::HardState(hs) => self.hard_state = hs.clone(),
            Rec::Marker(m) => self.marker = Some(m.clone()),
            Rec::Reset(m) => {
                self.entries.clear();
                self.marker = Some(m.clone());
            }
        }
    }

    fn after_floor(&self) -> &[Entry] {
        let floor = self.marker.as_ref().map_or(0, |m| m.index);
        let start = self.entries.partition_point(|e| e.index <= floor);
        &self.entries[start..]
    }

    fn matches(&self, view: &View) -> bool {
        self.hard_state == view.hard_state
            && self.marker == view.marker
            && self.after_floor() == view.entries
    }

    fn view(&self) -> View {
        View {
            hard_state: self.hard_state.clone(),
            marker: self.marker.clone(),
            entries: self.after_floor().to_vec(),
        }
    }
}

/// raft's log after `recs`.
fn fold<'a>(recs: impl IntoIterator<Item = &'a Rec>) -> View {
    let mut log = Log::default();
    for rec in recs {
        log.apply(rec);
    }
    log.view()
}

fn view_of(c: &WalContents) -> Result<View, String> {
    let marker = c.snapshot_markers.last().cloned();
    let floor = marker.as_ref().map_or(0, |m| m.index);
    let entries = c.entries_after(floor).map_err(|e| e.to_string())?;
    Ok(View {
        hard_state: c.hard_state.clone(),
        marker,
        entries: entries.to_vec(),
    })
}

fn snapshot_meta(term: u64, index: u64) -> SnapshotMetadata {
    let mut m = SnapshotMetadata {
        term,
        index,
        ..Default::default()
    };
    m.set_conf_state(ConfState::from((vec![1, 2, 3], vec![])));
    m
}

/// One run: the workload, the disk, and what the WAL was asked to keep.
struct Run {
    seed: u64,
    rng: StdRng,
    fs: MemFs,
    shared: SharedFs,
    dir: PathBuf,
    opts: WalOptions,
    wal: Option<Wal>,
    /// Every record the WAL was asked to write since it was created, minus those a crash
    /// undid.
    recs: Vec<Rec>,
    /// How many of `recs` a completed sync covered.
    synced: usize,
    /// raft's view: the last index, the newest snapshot's index, the current term.
    last: u64,
    floor: u64,
    term: u64,
    /// What happened, for a failure message.
    log: Vec<String>,
}

impl Run {
    fn new(seed: u64) -> Run {
        let mut rng = StdRng::seed_from_u64(seed);
        let fs = MemFs::new(seed ^ 0x5eed_0fd1_5c00);
        // Half the runs fail syncs as Linux does: what a failed sync did not write is marked
        // clean and never written by a later one.
        let forgets = rng.random_bool(0.5);
        fs.set_failed_sync_forgets(forgets);
        let shared: SharedFs = Arc::new(fs.clone());
        let opts = WalOptions {
            segment_size: [300, 1000, 4096, 1 << 20][rng.random_range(0..4)],
            preallocate: [0, 4096, 8192][rng.random_range(0..3)],
            direct_io: rng.random_bool(0.5),
        };
        let dir = PathBuf::from("/data/raftexample-1");
        let meta = Metadata {
            node_id: 1,
            cluster_id: 0x1000,
            peer_url: "http://127.0.0.1:12379".into(),
            initial_cluster: vec!["http://127.0.0.1:12379".into()],
            joined_at: None,
        };
        let wal = Wal::create_on(shared.clone(), &dir, &meta, opts).expect("create");
        Run {
            seed,
            rng,
            fs,
            shared,
            dir,
            opts,
            wal: Some(wal),
            recs: Vec::new(),
            synced: 0,
            last: 0,
            floor: 0,
            term: 1,
            log: vec![format!(
                "seed {seed}, {opts:?}, a failed sync forgets its pages: {forgets}"
            )],
        }
    }

    fn fail(&self, what: String) -> String {
        let tail = self.log.len().saturating_sub(400);
        let mut msg = format!("seed {}: {what}\nlast steps:\n", self.seed);
        for line in &self.log[tail..] {
            let _ = writeln!(msg, "  {line}");
        }
        msg
    }

    fn wal(&mut self) -> &mut Wal {
        self.wal.as_mut().expect("the WAL is open between steps")
    }

    /// Arms at most one fault for the next call; returns whether one was armed.
    fn arm_fault(&mut self) -> bool {
        match self.rng.random_range(0..100) {
            0..15 => {
                let ops = self.rng.random_range(0..8);
                self.log
                    .push(format!("power loss after {ops} disk operations"));
                self.fs.power_loss_after(ops);
            }
            15..18 => {
                self.log.push("next sync fails".into());
                self.fs.fail_syncs(1);
            }
            // A later step of a call that syncs more than once (a rotation syncs the new
            // segment, the folder, the old segment and the folder again).
            21..24 => {
                let ok = self.rng.random_range(1..5);
                self.log.push(format!("sync {} from now fails", ok + 1));
                self.fs.fail_sync_after(ok);
            }
            18..21 => {
                let room = self.rng.random_range(0..3) * 4096;
                self.log.push(format!("disk full in {room} bytes"));
                self.fs.set_capacity(Some(self.fs.used_bytes() + room));
            }
            _ => return false,
        }
        true
    }

    fn disarm(&mut self) {
        self.fs.power_on();
        self.fs.fail_syncs(0);
        self.fs.set_capacity(None);
    }

    fn step(&mut self) -> Result<(), String> {
        let action = self.rng.random_range(0..100);
        if action >= 92 {
            // Between two calls.
            let power = action >= 96;
            self.log.push(format!("restart (power loss: {power})"));
            self.wal = None;
            if power {
                self.fs.power_loss();
            }
            return self.reopen();
        }
        let armed = self.arm_fault();
        let (recs, sync, result) = match action {
            0..75 => self.append(),
            75..85 => self.own_snapshot(),
            _ => self.install_snapshot(),
        };
        self.recs.extend(recs);
        match result {
            Ok(()) => {
                if sync {
                    self.synced = self.recs.len();
                }
                self.disarm();
                Ok(())
            }
            Err(e) if armed => {
                self.log.push(format!("failed: {e}"));
                // The node stops; the machine may lose power too before it restarts.
                self.wal = None;
                let was_off = self.fs.is_off();
                self.disarm();
                if !was_off && self.rng.random_bool(0.5) {
                    self.log.push("power loss".into());
                    self.fs.power_loss();
                }
                self.reopen()
            }
            Err(e) => Err(self.fail(format!("a call failed with no fault armed: {e}"))),
        }
    }

    /// Appends like raft: from at most the last index + 1, overwriting a suffix only under a
    /// new term, with or without a hard state and a sync.
    fn append(&mut self) -> (Vec<Rec>, bool, Result<(), Error>) {
        let n = self.rng.random_range(0..6u64);
        let back = self.rng.random_range(0..4u64);
        let start = (self.last + 1).saturating_sub(back).max(self.floor + 1);
        if (n > 0 && start <= self.last) || self.rng.random_bool(0.1) {
            self.term += 1;
        }
        let size = [0, 10, 100, 700][self.rng.random_range(0..4)];
        let entries: Vec<Entry> = (start..start + n)
            .map(|index| Entry {
                index,
                term: self.term,
                data: (0..size)
                    .map(|i| (index ^ self.term ^ i as u64) as u8)
                    .collect::<Vec<u8>>()
                    .into(),
                ..Default::default()
            })
            .collect();
        if n > 0 {
            self.last = start + n - 1;
        }
        let hs = self.rng.random_bool(0.7).then(|| HardState {
            term: self.term,
            vote: self.term % 3 + 1,
            commit: self.last / 2,
            ..Default::default()
        });
        let sync = self.rng.random_bool(0.6);
        self.log.push(format!(
            "save {start}..{} term {} hard state {} sync {sync}",
            start + n,
            self.term,
            hs.is_some()
        ));
        let result = self.wal().save(hs.as_ref(), &entries, sync);
        let mut recs = Vec::new();
        if !entries.is_empty() {
            recs.push(Rec::Entries(entries));
        }
        recs.extend(hs.map(Rec::HardState));
        (recs, sync, result)
    }

    /// The node's own snapshot: a marker at an index it holds, then old segments released.
    fn own_snapshot(&mut self) -> (Vec<Rec>, bool, Result<(), Error>) {
        let back = self.rng.random_range(0..4);
        let index = self.last.saturating_sub(back);
        if index <= self.floor {
            return (Vec::new(), false, Ok(()));
        }
        let View { entries, .. } = fold(&self.recs);
        let term = entries
            .iter()
            .find(|e| e.index == index)
            .map_or(self.term, |e| e.term);
        let meta = snapshot_meta(term, index);
        let slack = self.rng.random_range(0..4);
        let release = index.saturating_sub(slack);
        self.log
            .push(format!("snapshot at {index}, release to {release}"));
        let mut result = self.wal().save_snapshot_marker(&meta);
        let recs = vec![Rec::Marker(meta)];
        if result.is_ok() {
            self.floor = index;
            result = self.wal().release_to(release);
        }
        (recs, true, result)
    }

    /// A snapshot from the leader: behind the last index (a conflicting suffix raft drops
    /// with the rest of its log) or ahead of it.
    fn install_snapshot(&mut self) -> (Vec<Rec>, bool, Result<(), Error>) {
        let behind = self.rng.random_range(0..4);
        let index = if self.rng.random_bool(0.5) && self.last.saturating_sub(behind) > self.floor {
            self.last - behind
        } else {
            self.last + self.rng.random_range(1..5)
        };
        self.term += 1;
        let meta = snapshot_meta(self.term, index);
        self.log
            .push(format!("install snapshot at {index} term {}", self.term));
        let mut result = self.wal().save_snapshot_reset(&meta);
        if result.is_ok() {
            self.floor = index;
            self.last = index;
            result = self.wal().release_to(index);
        }
        (vec![Rec::Reset(meta)], true, result)
    }

    /// Opens the WAL (the power may fail while it repairs), and checks what it gives back.
    fn reopen(&mut self) -> Result<(), String> {
        let contents = loop {
            if self.rng.random_bool(0.1) {
                let ops = self.rng.random_range(0..4);
                self.log
                    .push(format!("power loss after {ops} disk operations of open"));
                self.fs.power_loss_after(ops);
            }
            match Wal::open_on(self.shared.clone(), &self.dir, self.opts) {
                Ok((wal, contents)) => {
                    self.fs.power_on();
                    self.wal = Some(wal);
                    break contents;
                }
                Err(e) if self.fs.is_off() => {
                    self.log.push(format!("open failed: {e}"));
                    self.fs.power_on();
                }
                Err(e) => return Err(self.fail(format!("the WAL refused to start: {e}"))),
            }
        };
        let got = view_of(&contents).map_err(|e| self.fail(e))?;
        // The longest prefix, at least what a completed sync covered, that explains it.
        let mut log = Log::default();
        for rec in &self.recs[..self.synced] {
            log.apply(rec);
        }
        let mut found = log.matches(&got).then_some(self.synced);
        for (k, rec) in self.recs.iter().enumerate().skip(self.synced) {
            log.apply(rec);
            if log.matches(&got) {
                found = Some(k + 1);
            }
        }
        let Some(k) = found else {
            return Err(self.fail(format!(
                "after the restart the WAL holds {got:?},\nwhich is the state after no prefix \
                 of the {} records written that keeps the {} synced ones",
                self.recs.len(),
                self.synced
            )));
        };
        self.log.push(format!(
            "reopened: kept {k} of {} records ({} synced)",
            self.recs.len(),
            self.synced
        ));
        self.recs.truncate(k);
        // `open` synced what it replayed.
        self.synced = k;
        let view = fold(&self.recs);
        self.floor = view.marker.as_ref().map_or(0, |m| m.index);
        self.last = contents.last_index();
        self.term = self.term.max(view.hard_state.term);
        Ok(())
    }

    /// Flips one byte of one record at rest, and checks that the WAL refuses to start exactly
    /// when a sync is known to have covered that record.
    fn damage_at_rest(&mut self) -> Result<(), String> {
        self.wal = None;
        let mut records: Vec<(PathBuf, u64, u64, Record)> = Vec::new();
        wal::scan_on(&self.fs, &self.dir, |path, off, len, rec| {
            records.push((path.to_path_buf(), off, len, rec.clone()))
        })
        .map_err(|e| self.fail(format!("scan: {e}")))?;
        let last_segment = records.last().expect("a WAL has records").0.clone();
        let pick = self.rng.random_range(0..records.len());
        let (path, off, len, _) = records[pick].clone();
        let covered = path != last_segment
            || off == 0
            || records[pick + 1..].iter().any(|(p, _, _, r)| {
                *p == path && matches!(r, Record::Synced(synced) if *synced > off)
            });
        let at = off + self.rng.random_range(0..len);
        let mask = 1 << self.rng.random_range(0..8);
        self.log.push(format!(
            "flip a bit of {} at {at}, in the record at {off} (covered by a sync: {covered})",
            path.display()
        ));
        self.fs.flip_byte(&path, at, mask).expect("flip");
        let before = self.fs.read(&path).expect("read");
        match Wal::open_on(self.shared.clone(), &self.dir, self.opts) {
            Err(Error::Corrupt {
                path: p, offset, ..
            }) if covered => {
                if (p.as_path(), offset) != (path.as_path(), off) {
                    return Err(
                        self.fail(format!("refused, but naming {} at {offset}", p.display()))
                    );
                }
                if self.fs.read(&path).expect("read") != before {
                    return Err(self.fail("a refused open modified the file".into()));
                }
            }
            Ok((wal, contents)) if !covered => {
                drop(wal);
                // Cut at the damaged record, after which `open` may have put a sync mark.
                let mut after = Vec::new();
                wal::scan_on(&self.fs, &self.dir, |p, o, _, r| {
                    if p == path && o >= off {
                        after.push((o, r.clone()));
                    }
                })
                .map_err(|e| self.fail(format!("scan after the cut: {e}")))?;
                if !(after.is_empty() || after == [(off, Record::Synced(off))]) {
                    return Err(self.fail(format!("not cut at the damaged record: {after:?}")));
                }
                // What is left is exactly the records before the damaged one.
                let kept = records[..pick].iter().filter_map(|(_, _, _, r)| match r {
                    Record::Entry(e) => Some(Rec::Entries(vec![e.clone()])),
                    Record::Entries(es) => Some(Rec::Entries(es.clone())),
                    Record::HardState(hs) => Some(Rec::HardState(hs.clone())),
                    Record::Snapshot(m) => Some(Rec::Marker(m.clone())),
                    Record::SnapshotReset(m) => Some(Rec::Reset(m.clone())),
                    _ => None,
                });
                let want = fold(&kept.collect::<Vec<_>>());
                let got = view_of(&contents).map_err(|e| self.fail(e))?;
                if got != want {
                    return Err(self.fail(format!("after the cut: {got:?}, want {want:?}")));
                }
            }
            Ok(_) => {
                return Err(
                    self.fail("started although a sync had covered the damaged record".into())
                );
            }
            Err(e) => return Err(self.fail(format!("refused an unsynced tail: {e}"))),
        }
        Ok(())
    }
}

fn run(seed: u64, steps: usize) -> Result<(), String> {
    let mut run = Run::new(seed);
    for _ in 0..steps {
        run.step()?;
    }
    // A last restart after a power loss, then damage at rest.
    run.wal = None;
    run.fs.power_loss();
    run.reopen()?;
    run.damage_at_rest()
}

proptest! {
    // The seed is the whole input: a failure prints it, and no file is needed to replay it.
    #![proptest_config(ProptestConfig {
        cases: 64,
        failure_persistence: None,
        ..ProptestConfig::default()
    })]
    #[test]
    fn wal_survives_power_loss(seed in any::<u64>()) {
        run(seed, 150).map_err(TestCaseError::fail)?;
    }
}

#[test]
fn wal_survives_power_loss_for_many_seeds() {
    let var = |name: &str, default: u64| {
        std::env::var(name)
            .ok()
            .map(|v| {
                v.parse()
                    .unwrap_or_else(|_| panic!("{name}={v}: not a number"))
            })
            .unwrap_or(default)
    };
    let seeds = var("WAL_POWER_LOSS_SEEDS", 100);
    let base = var("WAL_POWER_LOSS_SEED_BASE", 0);
    for seed in base..base + seeds {
        if let Err(e) = run(seed, 150) {
            panic!("{e}\nreplay it with WAL_POWER_LOSS_SEEDS=1 WAL_POWER_LOSS_SEED_BASE={seed}");
        }
    }
}

/// The scenario of issue 12, item 4, on the disk model: many seeds of one synced write and
/// one unsynced write two pages long, then a power loss. Across them the second page
/// survives its first, the WAL starts every time with the synced write, and sometimes with
/// the whole second write too.
#[test]
fn an_unsynced_write_torn_by_a_power_loss_never_stops_the_wal() {
    let mut outcomes = std::collections::BTreeSet::new();
    for seed in 0..300 {
        let fs = MemFs::new(seed);
        let shared: SharedFs = Arc::new(fs.clone());
        let dir = Path::new("/d");
        let meta = Metadata {
            node_id: 1,
            cluster_id: 1,
            peer_url: "http://127.0.0.1:1".into(),
            initial_cluster: vec![],
            joined_at: None,
        };
        let opts = WalOptions {
            preallocate: 64 * 1024,
            ..WalOptions::default()
        };
        let mut wal = Wal::create_on(shared.clone(), dir, &meta, opts).unwrap();
        let ents = |range: std::ops::RangeInclusive<u64>, size: usize| -> Vec<Entry> {
            range
                .map(|index| Entry {
                    index,
                    term: 1,
                    data: vec![index as u8; size].into(),
                    ..Default::default()
                })
                .collect()
        };
        wal.save(None, &ents(1..=2, 10), true).unwrap();
        let hs = HardState {
            term: 1,
            commit: 30,
            ..Default::default()
        };
        wal.save(Some(&hs), &ents(3..=30, 250), false).unwrap();
        drop(wal);
        fs.power_loss();
        let (_wal, c) = Wal::open_on(shared, dir, opts)
            .unwrap_or_else(|e| panic!("seed {seed}: the WAL refused to start: {e}"));
        let last = c.last_index();
        assert!(last == 2 || last == 30, "seed {seed}: {last}");
        outcomes.insert(last);
    }
    assert_eq!(outcomes.len(), 2, "{outcomes:?}");
}

/// File or folder `name` of `tests/fixtures`.
fn fixture(name: &str) -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("tests/fixtures")
        .join(name)
}

/// The files of fixture folder `name` of `tests/fixtures` (a WAL an older build wrote), sorted
/// by name: segments by sequence number.
fn fixture_files(name: &str) -> Vec<(String, Vec<u8>)> {
    let mut files: Vec<(String, Vec<u8>)> = std::fs::read_dir(fixture(name))
        .expect("the fixture folder")
        .map(|dent| {
            let dent = dent.expect("a fixture file");
            let name = dent.file_name().into_string();
            let name = name.expect("the names of WAL files are ASCII");
            (name, std::fs::read(dent.path()).expect("a fixture file"))
        })
        .collect();
    files.sort();
    files
}

/// `files` written to folder `dir` of a new in-memory disk drawn from `seed`, synced.
fn disk_with(seed: u64, dir: &Path, files: &[(String, Vec<u8>)]) -> MemFs {
    let fs = MemFs::new(seed);
    fs.create_dir_all(dir).expect("a folder on a new disk");
    for (name, bytes) in files {
        let mut file = fs.create(&dir.join(name)).expect("a file on a new disk");
        file.write_all_at(bytes, 0).expect("room on a new disk");
        file.sync_data().expect("no fault is armed");
    }
    fs.sync_dir(dir).expect("no fault is armed");
    fs
}

/// The segments of the WAL in `dir`, each with the kinds of its records; `what` names the case
/// in a failure.
fn segments_of(fs: &MemFs, dir: &Path, what: &str) -> Vec<(PathBuf, Vec<&'static str>)> {
    let mut out: Vec<(PathBuf, Vec<&'static str>)> = Vec::new();
    wal::scan_on(fs, dir, |path, _, _, rec| match out.last_mut() {
        Some((p, kinds)) if p == path => kinds.push(rec.kind()),
        _ => out.push((path.to_path_buf(), vec![rec.kind()])),
    })
    .unwrap_or_else(|e| panic!("{what}: the WAL does not scan: {e}"));
    out
}

/// What a start gives raft from a WAL: the hard state, the snapshot markers and the entries.
type Contents = (HardState, Vec<SnapshotMetadata>, Vec<Entry>);

/// What a start that returned `c` gives raft.
fn contents(c: &WalContents) -> Contents {
    let entries = c.entries().to_vec();
    (c.hard_state.clone(), c.snapshot_markers.clone(), entries)
}

/// What a start of this build gives raft from the WAL of `files`: for the fixtures, what the
/// older build read back from them (`clean.expected`, which `tests/wal_format.rs` checks).
fn contents_of(files: &[(String, Vec<u8>)]) -> Contents {
    let dir = Path::new("/data/raftexample-1");
    let shared: SharedFs = Arc::new(disk_with(0, dir, files));
    let (_wal, c) = Wal::open_on(shared, dir, WalOptions::default()).expect("the fixture opens");
    contents(&c)
}

/// What a start does to the WAL in `dir` once it has judged it its own: opens it, and seals
/// it against older builds (see `Wal::seal_format`).
fn open_and_seal(fs: SharedFs, dir: &Path, opts: WalOptions) -> Result<(Wal, WalContents), Error> {
    let (mut wal, c) = Wal::open_on(fs, dir, opts)?;
    wal.seal_format()?;
    Ok((wal, c))
}

/// Checks that the WAL in `dir` has `n` segments, of which the newest alone is of this build's
/// format (its header holds the `chained` record); `what` names the case in a failure.
fn sealed(fs: &MemFs, dir: &Path, n: usize, what: &str) {
    let now = segments_of(fs, dir, what);
    assert_eq!(now.len(), n, "{what}: {now:?}");
    let of_this_format: Vec<bool> = now.iter().map(|(_, k)| k.contains(&"chained")).collect();
    // `n` counts at least the segment the start added.
    let mut newest_alone = vec![false; n - 1];
    newest_alone.push(true);
    assert_eq!(of_this_format, newest_alone, "{what}: {now:?}");
}

/// The first start of this build on a WAL whose newest segment an older build wrote (`left`:
/// the files that build left) starts a segment of this format (see `Wal::seal_format`). The
/// power fails at each disk operation of that start in turn, whichever pages it then keeps
/// (several seeds), with writes through the page cache and direct ones: the next start always
/// gives back `written`, what the older build wrote, and leaves `added` segments more, the
/// newest alone of this format, which a power loss after it returned does not take back; the
/// one after it starts no other. `check` looks at the WAL in the folder after each of those
/// starts, and after an uninterrupted one, naming the case in a failure.
fn first_start_under_power_loss(
    left: &[(String, Vec<u8>)],
    written: &Contents,
    added: usize,
    check: impl Fn(&MemFs, &Path, &str),
) {
    let dir = Path::new("/data/raftexample-1");
    let old = left
        .iter()
        .filter(|(name, _)| name.ends_with(".wal"))
        .count();
    for (preallocate, direct_io) in [(0, false), (4096, true)] {
        // The b738d10 fixture's; a start rotates once (the seal), whatever the size.
        let opts = WalOptions {
            segment_size: 1024,
            preallocate,
            direct_io,
        };
        let fs = disk_with(0, dir, left);
        let ops_before = fs.ops();
        let shared: SharedFs = Arc::new(fs.clone());
        let (wal, c) = open_and_seal(shared, dir, opts).expect("the old WAL opens");
        drop(wal);
        let ops = fs.ops() - ops_before;
        let what = format!("{opts:?}, without faults");
        assert!(
            contents(&c) == *written,
            "{what}: not what the older build wrote"
        );
        // Durable once the start returned, before the node serves.
        fs.power_loss();
        sealed(&fs, dir, old + added, &what);
        check(&fs, dir, &what);
        for after in 0..ops {
            for seed in 0..4 {
                let fs = disk_with(seed, dir, left);
                let shared: SharedFs = Arc::new(fs.clone());
                let what = format!("{opts:?}, power loss after {after} operations, seed {seed}");
                fs.power_loss_after(after);
                match open_and_seal(shared.clone(), dir, opts) {
                    Err(_) if fs.is_off() => fs.power_on(),
                    other => panic!("{what}: the start did not fail with the power: {other:?}"),
                }
                let (wal, c) = open_and_seal(shared.clone(), dir, opts)
                    .unwrap_or_else(|e| panic!("{what}: the WAL refused to start: {e}"));
                drop(wal);
                fs.power_loss();
                assert!(
                    contents(&c) == *written,
                    "{what}: not what the older build wrote"
                );
                sealed(&fs, dir, old + added, &what);
                check(&fs, dir, &what);
                let (_wal, c) = open_and_seal(shared, dir, opts)
                    .unwrap_or_else(|e| panic!("{what}: the WAL refused a second start: {e}"));
                assert!(contents(&c) == *written, "{what}: the second start");
                sealed(&fs, dir, old + added, &what);
            }
        }
    }
}

/// The WAL of `tests/fixtures/wal-b738d10/clean`, written by a build before the `chained`
/// record: its first start of this build, under power loss, adds one segment.
#[test]
fn a_power_loss_while_a_wal_of_an_older_build_gets_a_segment_of_this_format_loses_nothing() {
    let clean = fixture_files("wal-b738d10/clean");
    first_start_under_power_loss(&clean, &contents_of(&clean), 1, |_, _, _| {});
}

/// The WAL of `tests/fixtures/wal-v1/torn`, written by 563d8ae (before sync marks), whose
/// newest segment ends in a write that never reached the disk whole. Its first start of this
/// build cuts it where that write began (`torn.cut`), syncs the cut and marks it, then adds one
/// segment. Under power loss, what 563d8ae wrote before that write is given back, and the
/// segment is cut there: a sync mark at that offset, then the record naming the next segment.
#[test]
fn a_power_loss_while_an_older_builds_torn_tail_is_cut_and_sealed_loses_nothing() {
    let cut = std::fs::read_to_string(fixture("wal-v1/torn.cut")).expect("torn.cut");
    let (name, offset) = cut.trim().split_once(' ').expect("'<file> <offset>'");
    let offset: u64 = offset.parse().expect("an offset");
    let written = contents_of(&fixture_files("wal-v1/clean"));
    let torn = fixture_files("wal-v1/torn");
    first_start_under_power_loss(&torn, &written, 1, |fs, dir, what| {
        let path = dir.join(name);
        let mut records = Vec::new();
        wal::scan_on(fs, dir, |p, off, _, rec| {
            if p == path {
                records.push((off, rec.clone()))
            }
        })
        .unwrap_or_else(|e| panic!("{what}: the WAL does not scan: {e}"));
        let [.., mark, (_, Record::Next { .. })] = &records[..] else {
            panic!("{what}: {name} does not end naming the next segment: {records:?}");
        };
        assert_eq!(mark, &(offset, Record::Synced(offset)), "{what}");
    });
}

/// The WAL of `wal-b738d10/clean` as b738d10 left it in its last rotation: before the new
/// segment got its name, and after. That rotation (`rotate` in `src/wal/writer.rs` at b738d10)
/// wrote the new segment's header to `<name>.tmp` and synced it and the folder, then ended the
/// old segment with the record naming it and synced that, and only then renamed it. The header
/// is the fixture's newest segment up to the sync mark that ends it: that build wrote the rest
/// (a hard state) after the rename.
fn b738d10_in_its_last_rotation() -> [Vec<(String, Vec<u8>)>; 2] {
    let mut files = fixture_files("wal-b738d10/clean");
    let (name, bytes) = files.pop().expect("the fixture has segments");
    let newest = fixture("wal-b738d10/clean").join(&name);
    let mut header_end = None;
    wal::scan(&fixture("wal-b738d10/clean"), |path, off, len, rec| {
        if path == newest && header_end.is_none() && matches!(rec, Record::Synced(_)) {
            header_end = Some((off + len) as usize);
        }
    })
    .expect("the fixture scans");
    let header = bytes[..header_end.expect("a segment's header ends with a sync mark")].to_vec();
    let mut renamed = files.clone();
    files.push((format!("{name}.tmp"), header.clone()));
    renamed.push((name, header));
    [files, renamed]
}

/// b738d10's own rotation cut short by a power loss before the new segment got its name (see
/// `b738d10_in_its_last_rotation`). The first start of this build finishes it, adding the
/// segment it names (of b738d10's format), then seals the WAL: two segments more, the newest
/// alone of this format. Under power loss, everything b738d10 wrote before the rename is
/// given back, and the start after the next adds no segment.
#[test]
fn a_power_loss_while_an_older_builds_rotation_is_finished_and_sealed_loses_nothing() {
    let [unfinished, finished] = b738d10_in_its_last_rotation();
    let written = contents_of(&finished);
    // Every entry and marker of the fixture: only its last hard state came after the rename.
    let clean = contents_of(&fixture_files("wal-b738d10/clean"));
    assert!(
        written.1 == clean.1 && written.2 == clean.2,
        "the rotation's files lack a marker or an entry of the fixture"
    );
    assert_ne!(written.0, clean.0, "the fixture's last hard state");
    first_start_under_power_loss(&unfinished, &written, 2, |_, _, _| {});
}
