//! The WAL's write path: records framed into a buffer, padded to the page boundary before a
//! sync when that saves a page, written at the segment's logical end, synced (then marked as
//! synced), and the active segment rotated once it is full.

use super::record::{self, RecordRef};
use super::segment;
use super::{BUF_KEEP, Error, Wal, segment_header};
use crate::disk::IoError;

impl Wal {
    /// Frames `rec` at the end of the write buffer, which goes to file offset `base`.
    pub(super) fn encode(&mut self, base: u64, rec: RecordRef<'_>) -> Result<(), Error> {
        record::encode(&mut self.buf, base, rec).map_err(|source| {
            self.buf.clear();
            Error::Encode {
                path: self.active().path.clone(),
                source,
            }
        })
    }

    /// Before a sync: ends the write buffer (going to file offset `base`) with a padding record
    /// up to the next page boundary if the next synced write, as big as this one or as the
    /// recent ones, would not fit in what is left of the page (see the module doc).
    pub(super) fn pad(&mut self, base: u64) -> Result<(), Error> {
        let len = self.buf.len() as u64;
        // A moving average over about the last eight synced writes.
        self.typical_write = (self.typical_write * 7 + len) / 8;
        let unit = self.writer.unit();
        let room = (unit - (base + len) % unit) % unit;
        if room >= len.max(self.typical_write) {
            return Ok(());
        }
        match record::padding_to(base + len, unit) {
            Some(pad) => self.encode(base, pad),
            None => Ok(()),
        }
    }

    /// Writes `buf` to the active segment in one `write_all`. A failure poisons the WAL: part
    /// of the batch may be in the file, and appending after it would put valid records behind
    /// a bad one.
    pub(super) fn write_buf(&mut self) -> Result<(), Error> {
        let res = self.writer.append(&self.buf);
        let written = self.buf.len() as u64;
        if self.buf.capacity() > BUF_KEEP {
            self.buf = Vec::new();
        }
        if let Err(source) = res {
            let path = self.active().path.clone();
            return Err(self.poison(IoError::new(path, source).into()));
        }
        let n = self.segments.len() - 1;
        self.segments[n].len += written;
        Ok(())
    }

    /// Syncs the active segment, then appends a sync mark saying that everything before it
    /// is on disk (see `replay.rs`). The mark itself is not synced: the next sync covers it.
    /// Until then it is in the page cache, where a restart without a power loss finds it, or,
    /// for direct writes, in memory until the next synced write or a clean close.
    pub(super) fn sync_active(&mut self) -> Result<(), Error> {
        self.flush_held()?;
        let path = self.active().path.clone();
        if let Err(e) = self.syncer.sync_file(self.writer.file(), &path) {
            return Err(self.poison(e));
        }
        let base = self.active().len;
        self.buf.clear();
        self.encode(base, RecordRef::Synced(base))?;
        self.write_buf()
    }

    /// Writes out what a direct writer holds back (see `segment.rs`); nothing otherwise. A
    /// failure poisons the WAL, as a failed write does.
    pub(super) fn flush_held(&mut self) -> Result<(), Error> {
        if let Err(source) = self.writer.flush() {
            let path = self.active().path.clone();
            return Err(self.poison(IoError::new(path, source).into()));
        }
        Ok(())
    }

    pub(super) fn maybe_rotate(&mut self) -> Result<(), Error> {
        if self.active().len < self.opts.segment_size {
            return Ok(());
        }
        self.rotate().map_err(|e| self.poison(e))
    }

    /// Starts a new segment: its header durable under a temporary name; then the old segment
    /// ended by a record naming it, cut back to its records and synced; then the new one
    /// renamed and the folder synced, and only then the switch. A segment that ends so and
    /// has no successor was cut off from the rest of the log (deleted or lost), unless the
    /// successor's temporary file is there, which `Wal::open` then names (a crash came
    /// between the two). Every segment but the last thus ends with such a record, which
    /// WALs written before it do not have.
    pub(super) fn rotate(&mut self) -> Result<(), Error> {
        let old = self.active().path.clone();
        let seq = self.active().seq + 1;
        let first_index = self.last_index + 1;
        let path = self.dir.join(segment::segment_name(seq, first_index));
        let mut records = vec![RecordRef::Metadata(&self.metadata)];
        if let Some(m) = &self.last_marker {
            // A plain marker even if it was a reset: here a reset would also drop the entries
            // written after it in the previous segment.
            records.push(RecordRef::Snapshot(m));
        }
        records.push(RecordRef::HardState(&self.hard_state));
        let header = segment_header(&path, &records)?;
        segment::prepare_segment(
            &*self.fs,
            &self.dir,
            seq,
            first_index,
            &header,
            &self.syncer,
        )?;
        // The old segment stops being the last one: from now on a torn record in it would be
        // read as corruption, so it must be entirely on disk first, and end with its last
        // record (only the last segment may have zeros after its records).
        let base = self.active().len;
        self.buf.clear();
        self.encode(base, RecordRef::Next { seq, first_index })?;
        self.write_buf()?;
        self.writer.trim().map_err(IoError::at(&old))?;
        self.syncer.sync_file(self.writer.file(), &old)?;
        let (seg, writer) = segment::install_segment(
            &*self.fs,
            &self.dir,
            seq,
            first_index,
            header.len() as u64,
            &self.opts,
            &self.syncer,
        )?;
        tracing::debug!(path = %seg.path.display(), "started a new WAL segment");
        self.segments.push(seg);
        self.writer = writer;
        self.older_newest = false;
        Ok(())
    }
}
