//! WALs written before sync marks and reset markers existed (record types 1 to 6 only) still
//! replay, with the same contents as when they were written, and take new records after them.
//!
//! The fixtures in `tests/fixtures/wal-v1/` were written by the WAL of commit 563d8ae (see the
//! README there): `clean/` is a WAL of five segments holding every record type of that format
//! (single-entry records, runs, hard states, snapshot markers, padding, rotated headers, an
//! overwritten suffix and preallocated zeros), `clean.expected` is what that code read back
//! from it, and `torn/` is the same WAL plus one more write whose second half never reached
//! the disk (`torn.cut` names the file and the offset where that write began).

use std::fmt::Write as _;
use std::fs;
use std::path::{Path, PathBuf};

use raftexample::wal::{self, Entry, HardState, Record, Wal, WalContents, WalOptions};
use tempfile::TempDir;

fn fixture(name: &str) -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("tests/fixtures/wal-v1")
        .join(name)
}

/// A copy of fixture folder `name`, to be opened (and repaired) without touching the original.
fn copy_of(name: &str) -> TempDir {
    let tmp = TempDir::new().expect("a temp dir");
    for dent in fs::read_dir(fixture(name)).expect("the fixture folder") {
        let dent = dent.expect("a fixture file");
        fs::copy(dent.path(), tmp.path().join(dent.file_name())).expect("copying a fixture");
    }
    tmp
}

/// What a WAL holds, in the format of `clean.expected` (written by the old code).
fn describe(c: &WalContents) -> String {
    let mut s = String::new();
    let h = &c.hard_state;
    let _ = writeln!(
        s,
        "hardstate term={} vote={} commit={}",
        h.term, h.vote, h.commit
    );
    for m in &c.snapshot_markers {
        let voters = &m.get_conf_state().voters;
        let _ = writeln!(
            s,
            "marker term={} index={} voters={voters:?}",
            m.term, m.index
        );
    }
    for e in c.entries() {
        let hex: String = e.data.iter().map(|b| format!("{b:02x}")).collect();
        let ty = e.get_entry_type() as i32;
        let _ = writeln!(
            s,
            "entry index={} term={} type={ty} data={hex}",
            e.index, e.term
        );
    }
    let _ = writeln!(s, "last_index={}", c.last_index());
    s
}

/// The last record of the WAL in `dir`: its file, offset, length and content.
fn last_record(dir: &Path) -> (PathBuf, u64, u64, Record) {
    let mut last = None;
    wal::scan(dir, |path, off, len, rec| {
        last = Some((path.to_path_buf(), off, len, rec.clone()))
    })
    .expect("the WAL scans");
    last.expect("a WAL has records")
}

fn expected() -> String {
    fs::read_to_string(fixture("clean.expected")).expect("clean.expected")
}

/// The options the fixtures were written with.
const OPTS: WalOptions = WalOptions {
    segment_size: 2048,
    preallocate: 4096,
    direct_io: false,
};

fn entries(first: u64, term: u64, n: u64) -> Vec<Entry> {
    (first..first + n)
        .map(|index| Entry {
            index,
            term,
            data: vec![index as u8; 10].into(),
            ..Default::default()
        })
        .collect()
}

#[test]
fn an_old_wal_replays_as_it_did_and_takes_new_records() {
    let dir = copy_of("clean");
    let (mut wal, contents) = Wal::open(dir.path(), OPTS).expect("the old WAL opens");
    assert_eq!(describe(&contents), expected());
    // Opening synced the old records and wrote a sync mark after them (over the preallocated
    // zeros), and changed nothing else.
    let (active, end, len, mark) = last_record(dir.path());
    assert_eq!(mark, Record::Synced(end));
    for dent in fs::read_dir(dir.path()).unwrap() {
        let path = dent.unwrap().path();
        let mut now = fs::read(&path).unwrap();
        if path == active {
            now[end as usize..(end + len) as usize].fill(0);
        }
        let old = fs::read(fixture("clean").join(path.file_name().unwrap())).unwrap();
        assert!(now == old, "{} was modified by opening it", path.display());
    }

    // New records (sync marks among them) after the old ones, in the old last segment and
    // in new segments.
    let last = contents.last_index();
    let hs = HardState {
        term: 4,
        vote: 1,
        commit: last + 40,
        ..Default::default()
    };
    for batch in 0..4 {
        wal.save(Some(&hs), &entries(last + 1 + batch * 10, 4, 10), true)
            .expect("appending to an old WAL");
    }
    drop(wal);
    let (_wal, contents) = Wal::open(dir.path(), OPTS).expect("the mixed WAL opens");
    let got = contents.entries_after(last).expect("contiguous");
    assert_eq!(got, &entries(last + 1, 4, 40)[..]);
    assert_eq!(contents.hard_state, hs);
    assert!(describe(&contents).starts_with("hardstate term=4"));
}

#[test]
fn an_old_wal_with_a_torn_tail_is_cut_where_the_torn_write_began() {
    let dir = copy_of("torn");
    let cut = fs::read_to_string(fixture("torn.cut")).expect("torn.cut");
    let (name, offset) = cut.trim().split_once(' ').expect("'<file> <offset>'");
    let offset: u64 = offset.parse().expect("an offset");
    let (_wal, contents) = Wal::open(dir.path(), OPTS).expect("the torn WAL opens");
    assert_eq!(describe(&contents), expected());
    // Cut there, then marked as synced up to there.
    let (path, end, _, mark) = last_record(dir.path());
    let want = (dir.path().join(name), offset, Record::Synced(offset));
    assert_eq!((path, end, mark), want);
}
