//! The map: key to value, laid out for memory and for snapshots.
//!
//! - **One allocation per key.** Each key and its value live in one boxed slice holding exactly
//!   their snapshot encoding (`key_len varint | key | value_len varint | value`, written by the
//!   bincode crate, see [`super::codec`]): 16 bytes in the table and one heap block per key,
//!   against two blocks for a pair of boxed strings; at ten million keys of 100-byte values that is
//!   the difference between 1.4 and 1.8 times the raw data. A snapshot copies these bytes as they
//!   are, and loading one allocates once per key.
//! - **Shards.** The keys are spread over [`SHARDS`] hash sets by a hash of their own, so a
//!   snapshot can be written a shard at a time while entries go on being applied
//!   ([`super::capture`]): a shard is the unit of copy-before-write. foldhash rather than
//!   SipHash: hashing was a quarter of the time to load a million-key snapshot, and foldhash
//!   is seeded per map, so clients cannot aim collisions at it.

use std::borrow::Borrow;
use std::collections::HashSet;
use std::fmt;
use std::hash::{BuildHasher, Hash, Hasher};
use std::io::{self, Write};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::mpsc::Sender;
use std::sync::{Arc, Mutex};

/// Shards of a map: enough that one is small (at ten million keys, about 2,400 keys or
/// 280 KB, copied in well under a millisecond), few enough that an empty map costs little
/// (4,096 empty sets, about 200 KB).
pub const SHARDS: usize = 1 << 12;

/// The seed of [`Map`]'s shard picker (any constant will do; changing it costs a snapshot
/// load its locality once).
const PICKER_SEED: u64 = 0x5eed_0f5a_4d00;

/// A key and its value in one allocation, in their snapshot encoding. Equal and hashed by the
/// key alone, so that a set of pairs is a map from key to value.
pub(super) struct Pair(Box<[u8]>);

impl Pair {
    /// The pair of `key` and `value`.
    pub(super) fn new(key: &str, value: &[u8]) -> Pair {
        let mut bytes = pair_head(key.as_bytes(), value.len());
        bytes.extend_from_slice(value);
        Pair(bytes.into_boxed_slice())
    }

    /// A pair from its encoding, which the caller read and checked (lengths, a UTF-8 key).
    pub(super) fn from_encoding(bytes: Box<[u8]>) -> Pair {
        Pair(bytes)
    }

    fn split(&self) -> (&[u8], &[u8]) {
        let (key_len, rest) = split_varint(&self.0);
        let (key, rest) = rest.split_at(key_len);
        let (value_len, value) = split_varint(rest);
        debug_assert_eq!(value.len(), value_len);
        (key, value)
    }

    fn key_bytes(&self) -> &[u8] {
        self.split().0
    }

    /// The key.
    pub(super) fn key(&self) -> &str {
        std::str::from_utf8(self.split().0).expect("keys are checked UTF-8 when stored")
    }

    /// The value: any bytes.
    pub(super) fn value(&self) -> &[u8] {
        self.split().1
    }

    /// The pair's snapshot encoding.
    pub(super) fn encoding(&self) -> &[u8] {
        &self.0
    }
}

impl PartialEq for Pair {
    fn eq(&self, other: &Pair) -> bool {
        self.key_bytes() == other.key_bytes()
    }
}

impl Eq for Pair {}

impl Hash for Pair {
    fn hash<H: Hasher>(&self, state: &mut H) {
        // As `[u8]` hashes: lookups go by the key's bytes (see `Borrow`).
        self.key_bytes().hash(state);
    }
}

impl Borrow<[u8]> for Pair {
    fn borrow(&self) -> &[u8] {
        self.key_bytes()
    }
}

type Hasher_ = foldhash::fast::RandomState;
pub(super) type Shard = HashSet<Pair, Hasher_>;

/// The state: key to value (see the module doc for the layout).
pub struct Map {
    shards: Box<[Shard]>,
    /// Picks a key's shard. A fixed seed, the same in every map of every node: a snapshot is
    /// written shard after shard, so loading it fills one shard at a time (its table stays in
    /// the cache) instead of scattering the inserts over all 4,096 (a cache miss each). The
    /// shards' own hashers are random per map, so a client who aims keys at one shard makes
    /// it big, not slow.
    picker: foldhash::fast::FixedState,
    len: usize,
    /// Bytes of all pairs' encodings: the snapshot's length without reading the map.
    encoded: u64,
    /// The snapshot being written while entries are applied, if any.
    pub(super) capture: Option<Arc<Capture>>,
}

impl Default for Map {
    fn default() -> Map {
        Map::with_capacity(0)
    }
}

impl Map {
    /// An empty map with room for about `n` keys.
    pub fn with_capacity(n: usize) -> Map {
        let hasher = Hasher_::default();
        // Shards fill unevenly; an eighth more keeps most from growing once more. Below a
        // few keys per shard, they grow as keys come: sizing 4,096 tables for a handful of
        // keys would cost more than the keys.
        let per_shard = match n / SHARDS {
            0..4 => 0,
            n => n + n / 8,
        };
        Map {
            shards: (0..SHARDS)
                .map(|_| Shard::with_capacity_and_hasher(per_shard, hasher.clone()))
                .collect(),
            picker: foldhash::fast::FixedState::with_seed(PICKER_SEED),
            len: 0,
            encoded: 0,
            capture: None,
        }
    }

    fn shard_of(&self, key: &[u8]) -> usize {
        (self.picker.hash_one(key) >> (64 - SHARDS.trailing_zeros())) as usize
    }

    /// Sets `key` to `value`.
    pub fn insert(&mut self, key: &str, value: impl AsRef<[u8]>) {
        self.insert_pair(Pair::new(key, value.as_ref()));
    }

    /// Inserts `pair`, replacing the pair of its key.
    pub(super) fn insert_pair(&mut self, pair: Pair) {
        let shard = self.shard_of(pair.key_bytes());
        if let Some(capture) = &self.capture {
            // The shard as it was when the snapshot began, before this write changes it.
            capture.before_write(shard, &self.shards[shard]);
        }
        self.encoded += pair.0.len() as u64;
        match self.shards[shard].replace(pair) {
            Some(old) => self.encoded -= old.0.len() as u64,
            None => self.len += 1,
        }
    }

    /// The value of `key`.
    pub fn get(&self, key: &str) -> Option<&[u8]> {
        let key = key.as_bytes();
        self.shards[self.shard_of(key)].get(key).map(Pair::value)
    }

    /// Number of keys.
    pub fn len(&self) -> usize {
        self.len
    }

    /// Whether the map is empty.
    pub fn is_empty(&self) -> bool {
        self.len == 0
    }

    /// Every key and its value, in no particular order.
    pub fn iter(&self) -> impl Iterator<Item = (&str, &[u8])> {
        self.shards
            .iter()
            .flat_map(|s| s.iter())
            .map(|p| (p.key(), p.value()))
    }

    /// Bytes of all pairs' snapshot encodings.
    pub(super) fn encoded_len(&self) -> u64 {
        self.encoded
    }

    /// Number of shards.
    pub(super) fn shard_count(&self) -> usize {
        self.shards.len()
    }

    /// Appends the encodings of the pairs of shard `shard` to `out`.
    pub(super) fn encode_shard(&self, shard: usize, out: &mut Vec<u8>) {
        encode_shard(&self.shards[shard], out);
    }
}

/// Appends the encodings of the pairs of `shard` to `out`.
pub(super) fn encode_shard(shard: &Shard, out: &mut Vec<u8>) {
    for pair in shard {
        out.extend_from_slice(pair.encoding());
    }
}

impl<K: AsRef<str>, V: AsRef<[u8]>> FromIterator<(K, V)> for Map {
    fn from_iter<I: IntoIterator<Item = (K, V)>>(iter: I) -> Map {
        let iter = iter.into_iter();
        let mut map = Map::with_capacity(iter.size_hint().0);
        for (k, v) in iter {
            map.insert(k.as_ref(), v.as_ref());
        }
        map
    }
}

impl PartialEq for Map {
    fn eq(&self, other: &Map) -> bool {
        self.len == other.len && self.iter().all(|(k, v)| other.get(k) == Some(v))
    }
}

impl Eq for Map {}

impl fmt::Debug for Map {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        // Values as text where they are (most are), so a failed test's map reads.
        let shown = |v: &[u8]| match std::str::from_utf8(v) {
            Ok(text) => format!("{text:?}"),
            Err(_) => format!("b\"{}\"", v.escape_ascii()),
        };
        f.debug_map()
            .entries(
                self.iter()
                    .map(|(k, v)| (k, fmt::from_fn(move |f| f.write_str(&shown(v))))),
            )
            .finish()
    }
}

/// The varints of the pairs are bincode's (`config::standard()`), as older versions wrote the
/// whole map with bincode: a byte below 251 is the value; 251, 252, 253 announce a u16, u32
/// or u64 that follows, little-endian. The crate encodes and decodes them; these wrappers
/// only count bytes.
pub(super) const VARINTS: bincode::config::Configuration = bincode::config::standard();

/// Longest varint of a u64: a marker and eight bytes.
const VARINT_MAX: usize = 9;

/// The varint of `n`, encoded once: its bytes and how many of them count.
fn varint(n: u64) -> ([u8; VARINT_MAX], usize) {
    let mut buf = [0u8; VARINT_MAX];
    let len =
        bincode::encode_into_slice(n, &mut buf, VARINTS).expect("a u64's varint fits nine bytes");
    (buf, len)
}

/// Bytes the varint of `n` takes.
pub(super) fn varint_len(n: u64) -> u64 {
    varint(n).1 as u64
}

pub(super) fn write_varint(w: &mut dyn Write, n: u64) -> io::Result<()> {
    let (buf, len) = varint(n);
    w.write_all(&buf[..len])
}

/// A pair's encoding up to its value (`key_len varint | key | value_len varint`), in a
/// buffer with room for the `value_len` bytes that follow; each varint is encoded once.
pub(super) fn pair_head(key: &[u8], value_len: usize) -> Vec<u8> {
    let (key_varint, key_varint_len) = varint(key.len() as u64);
    let (value_varint, value_varint_len) = varint(value_len as u64);
    let mut bytes = Vec::with_capacity(key_varint_len + key.len() + value_varint_len + value_len);
    bytes.extend_from_slice(&key_varint[..key_varint_len]);
    bytes.extend_from_slice(key);
    bytes.extend_from_slice(&value_varint[..value_varint_len]);
    bytes
}

/// The varint at the start of `bytes` (written by [`write_varint`]) and the bytes after it.
/// Only for bytes this module wrote or checked.
pub(super) fn split_varint(bytes: &[u8]) -> (usize, &[u8]) {
    let (n, used): (u64, usize) = bincode::decode_from_slice(bytes, VARINTS)
        .expect("a pair's encoding starts with a varint this module wrote");
    let n = usize::try_from(n).expect("a length this process encoded fits its address space");
    (n, &bytes[used..])
}

/// The marks of a snapshot being written while applies go on ([`super::capture`]): which
/// shards are already on their way into the file, and where an apply sends its copy of a
/// shard it is about to change. It lives with the map because every change to the map
/// passes through it.
pub(crate) struct Capture {
    /// Per shard: already on its way into the file.
    taken: Box<[AtomicBool]>,
    /// Copies made by applies, for the snapshot's thread to write. A `Mutex` only so that the
    /// capture can be shared; sends never wait.
    copies: Mutex<Sender<Vec<u8>>>,
}

impl Capture {
    /// Marks for a map of `shards` shards, none taken yet; copies go to `copies`.
    pub(super) fn new(shards: usize, copies: Sender<Vec<u8>>) -> Capture {
        Capture {
            taken: (0..shards).map(|_| AtomicBool::new(false)).collect(),
            copies: Mutex::new(copies),
        }
    }

    /// Shards of the map being captured.
    pub(super) fn shards(&self) -> usize {
        self.taken.len()
    }

    /// Takes shard `index` for the snapshot's own thread; `false` if an apply took it first.
    pub(super) fn take(&self, index: usize) -> bool {
        !self.taken[index].swap(true, Ordering::AcqRel)
    }

    /// Before shard `index` changes: copies it for the snapshot unless it was taken already.
    pub(super) fn before_write(&self, index: usize, shard: &Shard) {
        if self.taken[index].swap(true, Ordering::AcqRel) {
            return;
        }
        let mut copy = Vec::new();
        encode_shard(shard, &mut copy);
        // A snapshot that failed has stopped listening; its error is reported elsewhere.
        let _ = self
            .copies
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .send(copy);
    }

    /// Takes every shard not taken yet: before the map is replaced by a restore.
    pub(super) fn take_all(&self, map: &Map) {
        for index in 0..map.shard_count() {
            let mut copy = Vec::new();
            if !self.taken[index].swap(true, Ordering::AcqRel) {
                map.encode_shard(index, &mut copy);
                let _ = self
                    .copies
                    .lock()
                    .unwrap_or_else(|p| p.into_inner())
                    .send(copy);
            }
        }
    }

    /// Marks every shard taken, so that applies stop copying for a snapshot that failed.
    pub(super) fn abandon(&self) {
        for taken in self.taken.iter() {
            taken.store(true, Ordering::Release);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Keys map to their latest value whatever their lengths (one-byte and wider varints),
    /// and the encoded length follows every replacement.
    #[test]
    fn a_map_of_pairs_behaves_as_a_map() {
        let mut map = Map::default();
        let long_key = "k".repeat(300);
        let long_value = "v".repeat(70_000);
        map.insert("/a", "1");
        map.insert(&long_key, "short");
        map.insert("/b", &long_value);
        map.insert("/a", "2");
        assert_eq!(map.len(), 3);
        assert_eq!(map.get("/a"), Some(&b"2"[..]));
        assert_eq!(map.get(&long_key), Some(&b"short"[..]));
        assert_eq!(map.get("/b").map(<[u8]>::len), Some(70_000));
        assert_eq!(map.get("/c"), None);
        let encoded: u64 = map
            .iter()
            .map(|(k, v)| Pair::new(k, v).encoding().len() as u64)
            .sum();
        assert_eq!(map.encoded_len(), encoded);
        let same: Map = [
            ("/a", "2"),
            (long_key.as_str(), "short"),
            ("/b", &long_value),
        ]
        .into_iter()
        .collect();
        assert_eq!(map, same);
        map.insert("/a", "3");
        assert_ne!(map, same);
    }
}
