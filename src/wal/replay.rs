//! Reading the WAL back: scan the segments in order, rebuild raft's state, and find a torn
//! tail to repair.
//!
//! Replay is read-only. It returns what it found plus, at most, one [`TornTail`] (a place in
//! the last segment where a crash cut an append short); `Wal::open` truncates it only after
//! the whole replay succeeded. Any other damage is [`Error::Corrupt`] with the file and offset,
//! and then nothing on disk has been touched.
//!
//! The torn-tail rule: the first bad record of the *last* segment is a torn tail only if it
//! could be a crash artifact (short, zero, or failing its checksum) and no valid record exists
//! anywhere after it in that file. A crash only damages the final, unsynced write; an intact
//! record after the damage proves it is something else, and cutting there would throw away
//! acknowledged data. Earlier segments were synced before the next one was created, so a bad
//! record there is always corruption.
//!
//! Zeros from some record boundary to the end of the last segment are not damage at all: the
//! active segment's file is extended ahead of its records, and that is where the log ends.
//! Nothing needs cutting there; the writer carries on from that offset.

use std::fs;
use std::path::{Path, PathBuf};

use super::record::{self, Record};
use super::segment::{Segment, list_segments};
use super::{Entry, Error, HardState, Metadata, SnapshotMetadata};

/// A torn record at the end of the last segment, to be cut away.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct TornTail {
    /// The last segment.
    pub path: PathBuf,
    /// Offset of the torn record: the file's new length.
    pub offset: u64,
    /// The file's length before repair.
    pub file_len: u64,
    /// What was wrong with the record.
    pub reason: String,
}

/// Everything a replay found.
#[derive(Debug)]
pub struct Replayed {
    /// The metadata record of the first segment.
    pub metadata: Metadata,
    /// The last hard state (default if none).
    pub hard_state: HardState,
    /// Snapshot markers, oldest first, without the repeats that segment headers add.
    pub markers: Vec<SnapshotMetadata>,
    /// Entries, strictly increasing by index, overwrites resolved. There may be gaps where a
    /// snapshot from the leader replaced the log.
    pub entries: Vec<Entry>,
    /// The segments, in order, with their lengths as read.
    pub segments: Vec<Segment>,
    /// A torn tail of the last segment, if any (the segment's `len` still includes it).
    pub torn: Option<TornTail>,
}

fn read_segment(seg: &Segment) -> Result<Vec<u8>, Error> {
    fs::read(&seg.path).map_err(|source| Error::Io {
        path: seg.path.clone(),
        source,
    })
}

fn corrupt(path: &Path, offset: usize, reason: impl Into<String>) -> Error {
    Error::Corrupt {
        path: path.to_path_buf(),
        offset: offset as u64,
        reason: reason.into(),
    }
}

/// State rebuilt record by record.
#[derive(Default)]
struct State {
    metadata: Option<Metadata>,
    hard_state: HardState,
    markers: Vec<SnapshotMetadata>,
    entries: Vec<Entry>,
}

impl State {
    fn push_entry(&mut self, e: Entry) {
        // Raft rewrote the log from e.index on (an uncommitted suffix of an older term):
        // everything held from that index on is obsolete.
        while self.entries.last().is_some_and(|l| l.index >= e.index) {
            self.entries.pop();
        }
        self.entries.push(e);
    }

    fn apply(&mut self, rec: Record, path: &Path, off: usize) -> Result<(), Error> {
        // Every segment starts with the metadata record and has it nowhere else.
        match (&rec, off) {
            (Record::Metadata(_), 0) => {}
            (Record::Metadata(_), _) => {
                return Err(corrupt(
                    path,
                    off,
                    "metadata record after the segment start",
                ));
            }
            (_, 0) => {
                return Err(corrupt(
                    path,
                    off,
                    format!("segment starts with a {} record, not metadata", rec.kind()),
                ));
            }
            _ => {}
        }
        match rec {
            Record::Metadata(m) => match &self.metadata {
                None => self.metadata = Some(m),
                Some(first) if *first == m => {}
                Some(first) => {
                    return Err(corrupt(
                        path,
                        off,
                        format!("metadata {m:?} differs from the first segment's {first:?}"),
                    ));
                }
            },
            Record::Entry(e) => self.push_entry(e),
            Record::Entries(es) => {
                for e in es {
                    self.push_entry(e);
                }
            }
            Record::HardState(hs) => self.hard_state = hs,
            Record::Padding(_) => {}
            Record::Snapshot(m) => {
                // A new segment's header repeats the newest marker; keep one copy.
                if self.markers.last() != Some(&m) {
                    self.markers.push(m);
                }
            }
        }
        Ok(())
    }
}

/// Whether everything from `off` to the end of `data` is zero: the unwritten, preallocated
/// end of the active segment.
fn is_zero_tail(data: &[u8], off: usize) -> bool {
    data.get(off..)
        .is_some_and(|rest| rest.iter().all(|&b| b == 0))
}

/// Replays the WAL in `dir` without modifying anything. See the module doc for the rules.
pub fn replay(dir: &Path) -> Result<Replayed, Error> {
    let mut segments = list_segments(dir)?;
    if segments.is_empty() {
        return Err(Error::NotFound {
            dir: dir.to_path_buf(),
        });
    }
    let mut state = State::default();
    let mut torn = None;
    let last = segments.len() - 1;
    for (i, seg) in segments.iter_mut().enumerate() {
        let data = read_segment(seg)?;
        seg.len = data.len() as u64;
        if data.is_empty() {
            return Err(corrupt(&seg.path, 0, "empty segment: no metadata record"));
        }
        let mut off = 0;
        while off < data.len() {
            match record::decode(&data, off) {
                Ok((rec, len)) => {
                    state.apply(rec, &seg.path, off)?;
                    off += len;
                }
                // The active segment's file runs ahead of its records (preallocation): zeros
                // from here to the end of the file are where the next record will go.
                Err(_) if i == last && off > 0 && is_zero_tail(&data, off) => {
                    seg.len = off as u64;
                    break;
                }
                // The header of the last segment was synced before the segment got its name,
                // so even there a bad record at offset 0 is not a torn append.
                Err(e) if i == last && off > 0 && e.may_be_torn() => {
                    if let Some(next) = record::find_valid_frame_after(&data, off) {
                        return Err(corrupt(
                            &seg.path,
                            off,
                            format!(
                                "{e}; a valid record follows at offset {next}, so this is \
                                 damage, not a torn write"
                            ),
                        ));
                    }
                    torn = Some(TornTail {
                        path: seg.path.clone(),
                        offset: off as u64,
                        file_len: data.len() as u64,
                        reason: e.to_string(),
                    });
                    break;
                }
                Err(e) => {
                    let where_ = if i == last {
                        ""
                    } else {
                        " (not the last segment, so not a torn write)"
                    };
                    return Err(corrupt(&seg.path, off, format!("{e}{where_}")));
                }
            }
        }
    }
    let Some(metadata) = state.metadata else {
        // Unreachable: a non-empty first segment either starts with metadata or failed above.
        return Err(corrupt(&segments[0].path, 0, "no metadata record"));
    };
    Ok(Replayed {
        metadata,
        hard_state: state.hard_state,
        markers: state.markers,
        entries: state.entries,
        segments,
        torn,
    })
}

/// Visits every record of every segment in order, read-only; see [`super::scan`].
pub fn scan(dir: &Path, mut visit: impl FnMut(&Path, u64, u64, &Record)) -> Result<(), Error> {
    let segments = list_segments(dir)?;
    if segments.is_empty() {
        return Err(Error::NotFound {
            dir: dir.to_path_buf(),
        });
    }
    let last = segments.len() - 1;
    for (i, seg) in segments.iter().enumerate() {
        let data = read_segment(seg)?;
        let mut off = 0;
        while off < data.len() {
            if i == last && off > 0 && is_zero_tail(&data, off) {
                break;
            }
            let (rec, len) =
                record::decode(&data, off).map_err(|e| corrupt(&seg.path, off, e.to_string()))?;
            visit(&seg.path, off as u64, len as u64, &rec);
            off += len;
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::super::tests::{ent, ents, hs, meta, opts};
    use super::super::{Wal, WalOptions, record::RecordRef};
    use super::*;
    use tempfile::TempDir;

    /// The (offset, kind) of every record of `path`.
    fn records_of(dir: &Path, path: &Path) -> Vec<(u64, &'static str)> {
        let mut out = Vec::new();
        super::super::scan(dir, |p, off, _, r| {
            if p == path {
                out.push((off, r.kind()))
            }
        })
        .unwrap();
        out
    }

    fn copy_dir(from: &Path, to: &Path) {
        for d in fs::read_dir(from).unwrap() {
            let d = d.unwrap();
            fs::copy(d.path(), to.join(d.file_name())).unwrap();
        }
    }

    fn snapshot_files(dir: &Path) -> Vec<(PathBuf, Vec<u8>)> {
        let mut v: Vec<_> = fs::read_dir(dir)
            .unwrap()
            .map(|d| {
                let p = d.unwrap().path();
                let b = fs::read(&p).unwrap();
                (p, b)
            })
            .collect();
        v.sort();
        v
    }

    /// A WAL of two segments whose last record is a 100-byte entry (index 9).
    fn build_pristine(dir: &Path) -> PathBuf {
        let mut wal = Wal::create(dir, &meta(), opts(200)).unwrap();
        wal.save(Some(&hs(1, 1, 4)), &ents(1..=4, 1), true).unwrap();
        wal.save(Some(&hs(1, 1, 8)), &ents(5..=8, 1), true).unwrap();
        let mut last = ent(9, 1);
        last.data = vec![0x5A; 100].into();
        wal.save(None, &[last], true).unwrap();
        let segs = wal.segment_paths();
        assert!(segs.len() >= 2, "{segs:?}");
        segs[segs.len() - 1].clone()
    }

    #[test]
    fn torn_tail_at_every_length_of_the_last_record_is_cut_and_the_wal_goes_on() {
        let pristine = TempDir::new().unwrap();
        let last_seg = build_pristine(pristine.path());
        let recs = records_of(pristine.path(), &last_seg);
        let (start, kind) = *recs.last().unwrap();
        assert_eq!(kind, "entries");
        let end = fs::metadata(&last_seg).unwrap().len();
        assert!(end - start > 100);
        let name = last_seg.file_name().unwrap();

        for cut in start..end {
            let tmp = TempDir::new().unwrap();
            copy_dir(pristine.path(), tmp.path());
            let seg = tmp.path().join(name);
            fs::OpenOptions::new()
                .write(true)
                .open(&seg)
                .unwrap()
                .set_len(cut)
                .unwrap();

            let (mut wal, c) =
                Wal::open(tmp.path(), opts(200)).unwrap_or_else(|e| panic!("cut at {cut}: {e}"));
            assert_eq!(fs::metadata(&seg).unwrap().len(), start, "cut at {cut}");
            assert_eq!(
                c.entries_after(0).unwrap(),
                &ents(1..=8, 1)[..],
                "cut at {cut}"
            );
            assert_eq!(c.hard_state, hs(1, 1, 8));

            // The WAL accepts new saves, and they survive another reopen.
            wal.save(Some(&hs(2, 1, 9)), &ents(9..=10, 2), true)
                .unwrap();
            drop(wal);
            let (_wal, c) = Wal::open(tmp.path(), opts(200)).unwrap();
            let mut want = ents(1..=8, 1);
            want.extend(ents(9..=10, 2));
            assert_eq!(c.entries_after(0).unwrap(), &want[..], "cut at {cut}");
            assert_eq!(c.hard_state, hs(2, 1, 9));
        }
    }

    #[test]
    fn garbage_or_zeros_in_place_of_the_last_record_are_a_torn_tail() {
        let pristine = TempDir::new().unwrap();
        let last_seg = build_pristine(pristine.path());
        let (start, _) = *records_of(pristine.path(), &last_seg).last().unwrap();
        let name = last_seg.file_name().unwrap();
        let good = fs::read(&last_seg).unwrap();
        let damages: Vec<(&str, Vec<u8>)> = vec![
            // Whole length written, but a sector of the payload never made it.
            ("zeroed payload", {
                let mut b = good.clone();
                b[start as usize + 20..].fill(0);
                b
            }),
            // The file grew but none of the record's data reached the disk.
            ("zeroed record", {
                let mut b = good.clone();
                b[start as usize..].fill(0);
                b
            }),
            ("zeros past the end", {
                let mut b = good.clone();
                b.extend_from_slice(&[0; 4096]);
                b
            }),
            ("flipped byte in the last record", {
                let mut b = good.clone();
                b[start as usize + 30] ^= 0x10;
                b
            }),
        ];
        for (what, bytes) in damages {
            let tmp = TempDir::new().unwrap();
            copy_dir(pristine.path(), tmp.path());
            let seg = tmp.path().join(name);
            fs::write(&seg, &bytes).unwrap();
            let (mut wal, c) = Wal::open(tmp.path(), WalOptions::default())
                .unwrap_or_else(|e| panic!("{what}: {e}"));
            // Zeros from a record boundary on are where the log ends (a preallocated file
            // looks like that): nothing to cut. Anything else is cut at the torn record.
            let want_len = match what {
                "zeroed record" | "zeros past the end" => bytes.len() as u64,
                _ => start,
            };
            assert_eq!(fs::metadata(&seg).unwrap().len(), want_len, "{what}");
            let last = if what == "zeros past the end" { 9 } else { 8 };
            assert_eq!(c.last_index(), last, "{what}");
            // The next write goes where the log ended, and reads back.
            wal.save(None, &ents(last + 1..=last + 1, 2), true).unwrap();
            drop(wal);
            let (_wal, c) = Wal::open(tmp.path(), WalOptions::default()).unwrap();
            assert_eq!(c.last_index(), last + 1, "{what}");
            assert_eq!(c.entries().last().unwrap().term, 2, "{what}");
        }
    }

    /// WALs written before entries were framed as runs hold one record per entry: they are
    /// still read, and new runs follow them.
    #[test]
    fn single_entry_records_of_older_wals_are_still_read() {
        let tmp = TempDir::new().unwrap();
        let wal = Wal::create(tmp.path(), &meta(), opts(1 << 20)).unwrap();
        let seg = wal.segment_paths()[0].clone();
        drop(wal);
        let mut bytes = fs::read(&seg).unwrap();
        for e in ents(1..=3, 1) {
            let base = bytes.len() as u64;
            let mut rec = Vec::new();
            record::encode(&mut rec, base, RecordRef::Entry(&e)).unwrap();
            bytes.extend_from_slice(&rec);
        }
        fs::write(&seg, &bytes).unwrap();
        let (mut wal, c) = Wal::open(tmp.path(), opts(1 << 20)).unwrap();
        assert_eq!(c.entries_after(0).unwrap(), &ents(1..=3, 1)[..]);
        wal.save(None, &ents(4..=5, 1), true).unwrap();
        drop(wal);
        let (_wal, c) = Wal::open(tmp.path(), opts(1 << 20)).unwrap();
        assert_eq!(c.entries_after(0).unwrap(), &ents(1..=5, 1)[..]);
        assert_eq!(
            records_of(tmp.path(), &seg)
                .iter()
                .map(|r| r.1)
                .collect::<Vec<_>>(),
            ["metadata", "entry", "entry", "entry", "entries"]
        );
    }

    #[test]
    fn a_record_embedded_in_an_entry_does_not_hide_a_torn_tail() {
        let tmp = TempDir::new().unwrap();
        let mut wal = Wal::create(tmp.path(), &meta(), opts(1 << 20)).unwrap();
        wal.save(None, &ents(1..=2, 1), true).unwrap();
        // The application stored bytes that are themselves a valid WAL record (at offset 0).
        let mut inner = Vec::new();
        record::encode(&mut inner, 0, RecordRef::HardState(&hs(7, 7, 7))).unwrap();
        let mut e = ent(3, 1);
        e.data = inner.into();
        wal.save(None, &[e], true).unwrap();
        let seg = wal.segment_paths()[0].clone();
        drop(wal);
        let (start, _) = *records_of(tmp.path(), &seg).last().unwrap();
        let len = fs::metadata(&seg).unwrap().len();
        fs::OpenOptions::new()
            .write(true)
            .open(&seg)
            .unwrap()
            .set_len(len - 1)
            .unwrap();
        let (_wal, c) = Wal::open(tmp.path(), WalOptions::default()).unwrap();
        assert_eq!(fs::metadata(&seg).unwrap().len(), start);
        assert_eq!(c.last_index(), 2);
    }

    #[test]
    fn a_flipped_byte_mid_segment_is_corruption_and_nothing_is_modified() {
        let tmp = TempDir::new().unwrap();
        let last_seg = build_pristine(tmp.path());
        let recs = records_of(tmp.path(), &last_seg);
        // Damage a record that is followed by others: not a torn append.
        let (off, _) = recs[recs.len() - 2];
        let mut bytes = fs::read(&last_seg).unwrap();
        bytes[off as usize + 12] ^= 0x01;
        fs::write(&last_seg, &bytes).unwrap();
        let before = snapshot_files(tmp.path());

        match Wal::open(tmp.path(), WalOptions::default()).unwrap_err() {
            Error::Corrupt {
                path,
                offset,
                reason,
            } => {
                assert_eq!(path, last_seg);
                assert_eq!(offset, off);
                assert!(reason.contains("valid record follows"), "{reason}");
            }
            other => panic!("expected Corrupt, got {other:?}"),
        }
        assert_eq!(snapshot_files(tmp.path()), before);
    }

    #[test]
    fn a_flipped_byte_in_a_non_last_segment_is_corruption_even_at_its_end() {
        let pristine = TempDir::new().unwrap();
        build_pristine(pristine.path());
        let first = Wal::open(pristine.path(), WalOptions::default())
            .unwrap()
            .0
            .segment_paths()[0]
            .clone();
        let recs = records_of(pristine.path(), &first);
        let name = first.file_name().unwrap();
        // A record in the middle, and the very last record of the segment.
        for (off, _) in [recs[1], recs[recs.len() - 1]] {
            let tmp = TempDir::new().unwrap();
            copy_dir(pristine.path(), tmp.path());
            let seg = tmp.path().join(name);
            let mut bytes = fs::read(&seg).unwrap();
            bytes[off as usize + 10] ^= 0x80;
            fs::write(&seg, &bytes).unwrap();
            let before = snapshot_files(tmp.path());
            match Wal::open(tmp.path(), WalOptions::default()).unwrap_err() {
                Error::Corrupt { path, offset, .. } => {
                    assert_eq!((path, offset), (seg.clone(), off))
                }
                other => panic!("expected Corrupt, got {other:?}"),
            }
            assert_eq!(snapshot_files(tmp.path()), before);
        }
        // A cut-short non-last segment is corruption too.
        let tmp = TempDir::new().unwrap();
        copy_dir(pristine.path(), tmp.path());
        let seg = tmp.path().join(name);
        let len = fs::metadata(&seg).unwrap().len();
        fs::OpenOptions::new()
            .write(true)
            .open(&seg)
            .unwrap()
            .set_len(len - 3)
            .unwrap();
        assert!(matches!(
            Wal::open(tmp.path(), WalOptions::default()),
            Err(Error::Corrupt { .. })
        ));
        assert_eq!(fs::metadata(&seg).unwrap().len(), len - 3);
    }

    #[test]
    fn valid_checksum_with_bad_content_at_the_tail_is_not_torn() {
        let tmp = TempDir::new().unwrap();
        let mut wal = Wal::create(tmp.path(), &meta(), opts(1 << 20)).unwrap();
        wal.save(None, &ents(1..=2, 1), true).unwrap();
        let seg = wal.segment_paths()[0].clone();
        drop(wal);
        // Append a second metadata record: well framed, but not allowed mid-segment.
        let len = fs::metadata(&seg).unwrap().len();
        let mut extra = Vec::new();
        record::encode(&mut extra, len, RecordRef::Metadata(&meta())).unwrap();
        let mut bytes = fs::read(&seg).unwrap();
        bytes.extend_from_slice(&extra);
        fs::write(&seg, &bytes).unwrap();
        match Wal::open(tmp.path(), WalOptions::default()).unwrap_err() {
            Error::Corrupt { offset, .. } => assert_eq!(offset, len),
            other => panic!("expected Corrupt, got {other:?}"),
        }
        assert_eq!(fs::read(&seg).unwrap(), bytes);
    }

    #[test]
    fn damaged_header_or_foreign_segments_are_corruption() {
        // The last segment's header is damaged: never a torn append (it was synced before
        // the segment got its name).
        let tmp = TempDir::new().unwrap();
        let last = build_pristine(tmp.path());
        let mut bytes = fs::read(&last).unwrap();
        bytes[3] ^= 0x01;
        fs::write(&last, &bytes).unwrap();
        match Wal::open(tmp.path(), WalOptions::default()).unwrap_err() {
            Error::Corrupt { path, offset, .. } => assert_eq!((path, offset), (last, 0)),
            other => panic!("expected Corrupt, got {other:?}"),
        }

        // A segment whose metadata differs (copied from another node's WAL).
        let a = TempDir::new().unwrap();
        let b = TempDir::new().unwrap();
        let mut wal = Wal::create(a.path(), &meta(), opts(64)).unwrap();
        wal.save(None, &ents(1..=3, 1), true).unwrap();
        let a_segs = wal.segment_paths();
        drop(wal);
        let mut other = meta();
        other.node_id = 2;
        let mut wal = Wal::create(b.path(), &other, opts(64)).unwrap();
        wal.save(None, &ents(1..=3, 1), true).unwrap();
        let b_segs = wal.segment_paths();
        drop(wal);
        fs::copy(&b_segs[1], &a_segs[1]).unwrap();
        match Wal::open(a.path(), WalOptions::default()).unwrap_err() {
            Error::Corrupt { path, reason, .. } => {
                assert_eq!(path, a_segs[1]);
                assert!(reason.contains("differs"), "{reason}");
            }
            other => panic!("expected Corrupt, got {other:?}"),
        }
    }

    #[test]
    fn a_missing_middle_segment_is_corruption() {
        let tmp = TempDir::new().unwrap();
        let mut wal = Wal::create(tmp.path(), &meta(), opts(64)).unwrap();
        for i in 1..=4 {
            wal.save(None, &[ent(i, 1)], true).unwrap();
        }
        let segs = wal.segment_paths();
        drop(wal);
        fs::remove_file(&segs[2]).unwrap();
        match Wal::open(tmp.path(), WalOptions::default()).unwrap_err() {
            Error::Corrupt { path, .. } => assert_eq!(path, segs[3]),
            other => panic!("expected Corrupt, got {other:?}"),
        }
    }

    #[test]
    fn replay_alone_modifies_nothing_and_reports_the_torn_tail() {
        let tmp = TempDir::new().unwrap();
        let last = build_pristine(tmp.path());
        let len = fs::metadata(&last).unwrap().len();
        fs::OpenOptions::new()
            .write(true)
            .open(&last)
            .unwrap()
            .set_len(len - 5)
            .unwrap();
        let r = replay(tmp.path()).unwrap();
        let torn = r.torn.unwrap();
        assert_eq!(torn.path, last);
        assert_eq!(torn.file_len, len - 5);
        assert_eq!(fs::metadata(&last).unwrap().len(), len - 5);
        assert_eq!(r.markers, Vec::<SnapshotMetadata>::new());
    }
}
