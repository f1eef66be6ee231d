//! One file and one folder of [`super::MemFs`]: what a reader sees now, what the platter
//! holds as of the last completed sync, and what a power loss leaves of the difference (the
//! model is described in `mem.rs`).

use std::collections::{BTreeMap, BTreeSet};
use std::ops::Range;

use rand::RngExt;
use rand::rngs::StdRng;

/// The granularity at which unsynced data survives a power loss (the page cache's).
pub(super) const PAGE: u64 = 4096;
/// The granularity of a torn page (a disk sector).
const SECTOR: u64 = 512;

/// The pages that bytes `start..end` touch.
fn pages(start: u64, end: u64) -> Range<u64> {
    if start >= end {
        return 0..0;
    }
    start / PAGE..end.div_ceil(PAGE)
}

/// A folder: file names and the files (inode numbers) they name.
#[derive(Default)]
pub(super) struct Dir {
    /// What a listing shows now.
    pub(super) live: BTreeMap<String, u64>,
    /// As of the folder's last sync.
    durable: BTreeMap<String, u64>,
    /// Changes since then, in order: `durable` + all of them = `live`.
    pending: Vec<DirOp>,
}

enum DirOp {
    Link(String, u64),
    Unlink(String),
    Rename(String, String),
}

impl DirOp {
    fn apply(&self, entries: &mut BTreeMap<String, u64>) {
        match self {
            DirOp::Link(name, ino) => {
                entries.insert(name.clone(), *ino);
            }
            DirOp::Unlink(name) => {
                entries.remove(name);
            }
            DirOp::Rename(from, to) => {
                if let Some(ino) = entries.remove(from) {
                    entries.insert(to.clone(), ino);
                }
            }
        }
    }
}

impl Dir {
    fn change(&mut self, op: DirOp) {
        op.apply(&mut self.live);
        self.pending.push(op);
    }

    /// Names a new file `name`.
    pub(super) fn link(&mut self, name: String, ino: u64) {
        self.change(DirOp::Link(name, ino));
    }

    /// Removes `name`; whether it was there.
    pub(super) fn unlink(&mut self, name: &str) -> bool {
        let found = self.live.contains_key(name);
        if found {
            self.change(DirOp::Unlink(name.to_string()));
        }
        found
    }

    /// Renames `from` to `to`, replacing `to`; whether `from` was there.
    pub(super) fn rename(&mut self, from: &str, to: &str) -> bool {
        let found = self.live.contains_key(from);
        if found {
            self.change(DirOp::Rename(from.to_string(), to.to_string()));
        }
        found
    }

    pub(super) fn sync(&mut self) {
        self.durable = self.live.clone();
        self.pending.clear();
    }

    /// The changes since the last sync survive as a prefix, in the order they were made.
    pub(super) fn lose_power(&mut self, rng: &mut StdRng) {
        let survive = rng.random_range(0..=self.pending.len());
        for op in &self.pending[..survive] {
            op.apply(&mut self.durable);
        }
        self.pending.clear();
        self.live = self.durable.clone();
    }

    /// Every file this folder names, now, on the platter, or in between.
    pub(super) fn files(&self) -> impl Iterator<Item = u64> + '_ {
        let linked = self.pending.iter().filter_map(|op| match op {
            DirOp::Link(_, ino) => Some(*ino),
            _ => None,
        });
        self.live
            .values()
            .chain(self.durable.values())
            .copied()
            .chain(linked)
    }
}

/// A file's bytes.
#[derive(Default)]
pub(super) struct Inode {
    /// What a reader sees now.
    data: Vec<u8>,
    /// On the platter: the bytes and length as of the last completed sync.
    durable: Vec<u8>,
    /// Pages whose bytes may differ between `data` and `durable`.
    dirty: BTreeSet<u64>,
    /// Pages that hold written data (a sparse extension allocates nothing).
    allocated: BTreeSet<u64>,
    /// Handles open on it in this boot.
    pub(super) open: usize,
}

impl Inode {
    pub(super) fn data(&self) -> &[u8] {
        &self.data
    }

    pub(super) fn allocated_bytes(&self) -> u64 {
        self.allocated.len() as u64 * PAGE
    }

    /// Bytes of pages a write of `len` bytes at `offset` would allocate.
    pub(super) fn bytes_to_allocate(&self, offset: u64, len: u64) -> u64 {
        let new = pages(offset, offset + len).filter(|p| !self.allocated.contains(p));
        new.count() as u64 * PAGE
    }

    pub(super) fn write(&mut self, buf: &[u8], offset: u64) {
        let end = offset + buf.len() as u64;
        if end as usize > self.data.len() {
            self.data.resize(end as usize, 0);
        }
        self.data[offset as usize..end as usize].copy_from_slice(buf);
        self.dirty.extend(pages(offset, end));
        self.allocated.extend(pages(offset, end));
    }

    pub(super) fn set_len(&mut self, len: u64) {
        let old = self.data.len() as u64;
        // Bytes that changed and that the platter holds otherwise: a cut, or an extension
        // over what an earlier cut left on the platter. Beyond the platter's end, the new
        // zeros and "nothing" read the same.
        let changed_end = old.max(len).min(self.durable.len() as u64);
        self.dirty.extend(pages(old.min(len), changed_end));
        self.data.resize(len as usize, 0);
        let pages_held = len.div_ceil(PAGE);
        self.allocated.retain(|&p| p < pages_held);
    }

    pub(super) fn sync(&mut self) {
        let len = self.data.len();
        self.durable.resize(len, 0);
        for &page in &self.dirty {
            let start = (page * PAGE) as usize;
            let end = (start + PAGE as usize).min(len);
            if start < end {
                self.durable[start..end].copy_from_slice(&self.data[start..end]);
            }
        }
        self.dirty.clear();
    }

    /// A failed writeback that marks the pages clean: readers still see `data`, but neither
    /// a later sync nor a power loss writes it to the platter.
    pub(super) fn forget_dirty(&mut self) {
        self.dirty.clear();
    }

    /// Damage at rest: on the platter and in the cache. Whether there is such a byte.
    pub(super) fn flip(&mut self, at: usize, mask: u8) -> bool {
        let Some(b) = self.data.get_mut(at) else {
            return false;
        };
        *b ^= mask;
        if let Some(b) = self.durable.get_mut(at) {
            *b ^= mask;
        }
        true
    }

    /// What the platter holds after a power loss: each dirty page kept, dropped or torn, the
    /// length the new one or the old one.
    pub(super) fn lose_power(&mut self, rng: &mut StdRng) {
        let len = if self.data.len() != self.durable.len() && rng.random_bool(0.5) {
            self.durable.len()
        } else {
            self.data.len()
        };
        let mut image = std::mem::take(&mut self.durable);
        image.resize(image.len().max(self.data.len()), 0);
        let data = &self.data;
        let keep = |image: &mut Vec<u8>, start: u64, end: u64| {
            let end = (end as usize).min(image.len());
            for (i, byte) in image.iter_mut().enumerate().take(end).skip(start as usize) {
                // Past the current end the page's new content is "nothing": zeros.
                *byte = data.get(i).copied().unwrap_or(0);
            }
        };
        for &page in &self.dirty {
            let start = page * PAGE;
            match rng.random_range(0..3u8) {
                0 => keep(&mut image, start, start + PAGE),
                1 => {}
                _ => {
                    for sector in (start..start + PAGE).step_by(SECTOR as usize) {
                        if rng.random_bool(0.5) {
                            keep(&mut image, sector, sector + SECTOR);
                        }
                    }
                }
            }
        }
        image.truncate(len);
        image.resize(len, 0);
        self.data = image.clone();
        self.durable = image;
        self.dirty.clear();
        let pages_held = (len as u64).div_ceil(PAGE);
        self.allocated.retain(|&p| p < pages_held);
        self.open = 0;
    }
}
