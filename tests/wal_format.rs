//! WALs written by older builds still replay, with the same contents as when they were
//! written, and take new records after them.
//!
//! The fixtures in `tests/fixtures/wal-v1/` were written by the WAL of commit 563d8ae, before
//! sync marks and reset markers existed (record types 1 to 6; see the README there): `clean/`
//! is a WAL of five segments holding every record type of that format (single-entry records,
//! runs, hard states, snapshot markers, padding, rotated headers, an overwritten suffix and
//! preallocated zeros), `clean.expected` is what that code read back from it, and `torn/` is
//! the same WAL plus one more write whose second half never reached the disk (`torn.cut` names
//! the file and the offset where that write began).
//!
//! Those in `tests/fixtures/wal-b738d10/` were written by the WAL of commit b738d10: its
//! segments end with the record naming the next one (type 9), but their headers do not
//! promise it (type 10 came after); `clean.expected` is again what that code read back.
//!
//! Opening either adds no segment; sealing it ([`Wal::seal_format`], which a start calls once
//! it has judged the WAL its own) adds one of this build's format, whose header holds that
//! promise, so that the builds that wrote them refuse the WAL from then on; the old segments
//! keep their records.

use std::fmt::Write as _;
use std::fs;
use std::path::{Path, PathBuf};

use raftexample::wal::{self, Entry, HardState, Record, Wal, WalContents, WalOptions};
use tempfile::TempDir;

const V1: &str = "wal-v1";
const B738D10: &str = "wal-b738d10";

/// File or folder `name` of the fixtures of `format`.
fn fixture(format: &str, name: &str) -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("tests/fixtures")
        .join(format)
        .join(name)
}

/// A copy of fixture folder `name`, to be opened (and repaired) without touching the original.
fn copy_of(format: &str, name: &str) -> TempDir {
    let tmp = TempDir::new().expect("a temp dir");
    for dent in fs::read_dir(fixture(format, name)).expect("the fixture folder") {
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

/// The names of the files in `dir`, sorted (segments: by sequence number).
fn names(dir: &Path) -> Vec<String> {
    let mut names: Vec<_> = fs::read_dir(dir)
        .expect("a WAL folder")
        .map(|dent| {
            let name = dent.expect("a folder entry").file_name();
            name.into_string().expect("file names of the WAL are ASCII")
        })
        .collect();
    names.sort();
    names
}

/// Checks what opening and sealing the WAL in `dir`, a copy of fixture folder `clean` of
/// `format`, did to it: the old records synced, a sync mark written after them (over
/// preallocated zeros, or past the file's end where there were none), then a record naming
/// one new segment, of this build's format: its header holds the `chained` record, which the
/// builds that wrote these fixtures refuse, so that they refuse the WAL from then on. Nothing
/// else: no other byte of the old segments, and no other file added or taken away.
fn opening_added_one_segment(format: &str, dir: &Path) {
    let fixture = fixture(format, "clean");
    let (old, now) = (names(&fixture), names(dir));
    let added: Vec<&String> = now.iter().filter(|n| !old.contains(n)).collect();
    assert_eq!(added.len(), 1, "the files after opening: {now:?}");
    assert!(old.iter().all(|n| now.contains(n)), "{now:?}");
    let new = dir.join(added[0]);
    let by_segment = kinds_by_segment(dir);
    assert_eq!(by_segment.len(), old.len() + 1, "{by_segment:?}");
    let (last, header) = &by_segment[old.len()];
    assert_eq!(last, &new, "the new segment is the newest");
    // Both fixtures hold a snapshot marker, which the header repeats with the hard state.
    let wanted = ["metadata", "snapshot", "hardstate", "chained", "synced"];
    assert_eq!(header, &wanted, "the new segment holds its header alone");

    let active = dir.join(old.last().expect("a fixture has segments"));
    let mut records = Vec::new();
    wal::scan(dir, |path, off, len, rec| {
        if path == active {
            records.push((off, len, rec.clone()))
        }
    })
    .expect("the WAL scans");
    let [.., (end, mark_len, mark), (next_at, next_len, next)] = &records[..] else {
        panic!("{}: {records:?}", active.display());
    };
    assert_eq!(mark, &Record::Synced(*end));
    assert_eq!(*next_at, end + mark_len);
    let Record::Next { seq, first_index } = next else {
        panic!("the old segment ends with {next:?}");
    };
    assert_eq!(new, dir.join(wal::segment_name(*seq, *first_index)));
    for name in &old {
        let path = dir.join(name);
        let now = fs::read(&path).expect("a segment");
        let old = fs::read(fixture.join(name)).expect("a fixture segment");
        if path == active {
            // Cut back to its records, as any segment that is not the newest.
            assert_eq!(now.len() as u64, next_at + next_len);
            let end = *end as usize;
            assert!(now[..end] == old[..end], "{} was modified", path.display());
            assert!(
                old[end..].iter().all(|&b| b == 0),
                "only zeros were written over"
            );
        } else {
            assert!(now == old, "{} was modified by opening it", path.display());
        }
    }
}

/// Opens and seals the WAL in `dir` again after [`opening_added_one_segment`], and checks that
/// it gives back the fixture's contents and starts no other segment.
fn reopen_as_it_is(format: &str, dir: &Path, opts: WalOptions) -> (Wal, WalContents) {
    let files = names(dir);
    let (mut wal, contents) = Wal::open(dir, opts).expect("the WAL opens again");
    assert_eq!(describe(&contents), expected(format));
    wal.seal_format().expect("sealed again");
    assert_eq!(names(dir), files, "a second start starts no segment");
    (wal, contents)
}

/// Opens the WAL in `dir`, a copy of fixture folder `name` of `format`, checks that opening
/// alone added no segment (a start may still refuse it, and the older build must then be
/// able to start there again), then seals it as a start that judged it its own does.
fn open_and_seal(format: &str, name: &str, dir: &Path, opts: WalOptions) -> WalContents {
    let (mut wal, contents) = Wal::open(dir, opts).expect("the old WAL opens");
    assert_eq!(
        names(dir),
        names(&fixture(format, name)),
        "open alone adds none"
    );
    wal.seal_format()
        .expect("the old WAL takes a segment of this format");
    contents
}

fn expected(format: &str) -> String {
    fs::read_to_string(fixture(format, "clean.expected")).expect("clean.expected")
}

/// The options the wal-v1 fixtures were written with.
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
    let dir = copy_of(V1, "clean");
    let contents = open_and_seal(V1, "clean", dir.path(), OPTS);
    assert_eq!(describe(&contents), expected(V1));
    // Over the preallocated zeros.
    opening_added_one_segment(V1, dir.path());
    let (wal, contents) = reopen_as_it_is(V1, dir.path(), OPTS);

    // New records (sync marks among them) after the old ones, in the segment the first open
    // started and in newer ones.
    append_and_reopen(wal, contents.last_index(), 4, OPTS);
}

/// Appends `batches` synced batches of ten entries of term 4 after entry `last` of an old
/// WAL, each with a hard state, and checks that the WAL opened again holds them.
fn append_and_reopen(mut wal: Wal, last: u64, batches: u64, opts: WalOptions) {
    let hs = HardState {
        term: 4,
        vote: 1,
        commit: last + batches * 10,
        ..Default::default()
    };
    for batch in 0..batches {
        wal.save(Some(&hs), &entries(last + 1 + batch * 10, 4, 10), true)
            .expect("appending to an old WAL");
    }
    let dir = wal.dir().to_path_buf();
    drop(wal);
    let (_wal, contents) = Wal::open(&dir, opts).expect("the mixed WAL opens");
    let got = contents.entries_after(last).expect("contiguous");
    assert_eq!(got, &entries(last + 1, 4, batches * 10)[..]);
    assert_eq!(contents.hard_state, hs);
    assert!(describe(&contents).starts_with("hardstate term=4"));
}

#[test]
fn an_old_wal_with_a_torn_tail_is_cut_where_the_torn_write_began() {
    let dir = copy_of(V1, "torn");
    let cut = fs::read_to_string(fixture(V1, "torn.cut")).expect("torn.cut");
    let (name, offset) = cut.trim().split_once(' ').expect("'<file> <offset>'");
    let offset: u64 = offset.parse().expect("an offset");
    let contents = open_and_seal(V1, "torn", dir.path(), OPTS);
    assert_eq!(describe(&contents), expected(V1));
    // Cut there, then marked as synced up to there, and ended by naming the segment of this
    // build's format that the seal started after it.
    let path = dir.path().join(name);
    let mut records = Vec::new();
    wal::scan(dir.path(), |p, off, _, rec| {
        if p == path {
            records.push((off, rec.clone()))
        }
    })
    .expect("the WAL scans");
    let [.., mark, (_, Record::Next { .. })] = &records[..] else {
        panic!(
            "{} does not end naming the next segment: {records:?}",
            path.display()
        );
    };
    assert_eq!(mark, &(offset, Record::Synced(offset)));
    assert_eq!(
        names(dir.path()).len(),
        names(&fixture(V1, "torn")).len() + 1
    );
}

/// The options the wal-b738d10 fixture was written with.
const B738D10_OPTS: WalOptions = WalOptions {
    segment_size: 1024,
    preallocate: 0,
    direct_io: false,
};

/// The kinds of the records of each segment of the WAL in `dir`, in order.
fn kinds_by_segment(dir: &Path) -> Vec<(PathBuf, Vec<&'static str>)> {
    let mut out: Vec<(PathBuf, Vec<&'static str>)> = Vec::new();
    wal::scan(dir, |path, _, _, rec| match out.last_mut() {
        Some((p, kinds)) if p == path => kinds.push(rec.kind()),
        _ => out.push((path.to_path_buf(), vec![rec.kind()])),
    })
    .expect("the WAL scans");
    out
}

/// A WAL of b738d10 (segments end naming the next one; no header promises it) replays as it
/// did, and takes new records and rotations, whose segments' headers then promise it.
#[test]
fn a_wal_of_b738d10_replays_as_it_did_and_rotates_into_this_format() {
    let dir = copy_of(B738D10, "clean");
    let old = kinds_by_segment(dir.path());
    assert!(old.len() >= 3, "{old:?}");
    for (i, (path, kinds)) in old.iter().enumerate() {
        assert!(!kinds.contains(&"chained"), "{}: {kinds:?}", path.display());
        let ends_naming_the_next = kinds.last() == Some(&"next");
        assert_eq!(
            ends_naming_the_next,
            i + 1 < old.len(),
            "{}",
            path.display()
        );
    }
    let contents = open_and_seal(B738D10, "clean", dir.path(), B738D10_OPTS);
    assert_eq!(describe(&contents), expected(B738D10));
    // Past the end of the last segment: b738d10 preallocated nothing here.
    opening_added_one_segment(B738D10, dir.path());
    let (wal, contents) = reopen_as_it_is(B738D10, dir.path(), B738D10_OPTS);
    // Enough for two rotations at 1 KiB.
    append_and_reopen(wal, contents.last_index(), 12, B738D10_OPTS);
    let now = kinds_by_segment(dir.path());
    // One segment started by the first seal, and more by the new records.
    assert!(
        now.len() > old.len() + 1,
        "the new records rotated: {now:?}"
    );
    for (path, kinds) in &now[old.len()..] {
        // In the header, which ends with its first sync mark.
        let header = &kinds[..kinds.iter().position(|&k| k == "synced").unwrap_or(0)];
        assert!(header.contains(&"chained"), "{}: {kinds:?}", path.display());
    }
}

/// Cut the record that ends a segment of the b738d10 WAL: in its first segment that is not
/// taken for a lost end, since a header of b738d10 promises nothing and no segment comes
/// before it (it opens, with every entry); in its second it is, since the first ends naming
/// the next.
#[test]
fn a_wal_of_b738d10_is_held_to_the_ends_its_segments_have() {
    for (which, refused) in [(0, false), (1, true)] {
        let dir = copy_of(B738D10, "clean");
        let segments = kinds_by_segment(dir.path());
        let path = segments[which].0.clone();
        let mut next = None;
        wal::scan(dir.path(), |p, off, _, rec| {
            if p == path && matches!(rec, Record::Next { .. }) {
                next = Some(off);
            }
        })
        .expect("the WAL scans");
        let at = next.expect("the segment ends naming the next");
        let file = fs::OpenOptions::new()
            .write(true)
            .open(&path)
            .expect("the segment");
        file.set_len(at).expect("cut");
        drop(file);
        let opened = Wal::open(dir.path(), B738D10_OPTS);
        match (refused, opened) {
            (false, Ok((_wal, contents))) => {
                assert_eq!(
                    describe(&contents),
                    expected(B738D10),
                    "cut in segment {which}"
                );
            }
            (
                true,
                Err(wal::Error::Corrupt {
                    path: p,
                    offset,
                    reason,
                }),
            ) => {
                assert_eq!((p, offset), (path.clone(), at), "{reason}");
                assert!(reason.contains("its end was lost"), "{reason}");
            }
            (_, Ok(_)) => panic!("cut in segment {which}: opened"),
            (_, Err(e)) => panic!("cut in segment {which}: {e}"),
        }
    }
}
