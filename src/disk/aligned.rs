//! Memory for direct writes: `O_DIRECT` wants the buffer itself aligned (to the disk's sector),
//! which a `Vec<u8>` does not promise. [`AlignedBuf`] keeps its bytes at an aligned address
//! inside an ordinary, slightly larger `Vec`, so no `unsafe` is needed.

/// A growable byte buffer whose first byte sits at an address that is a multiple of its
/// alignment, and which hands out its bytes padded with zeros to a multiple of it.
#[derive(Debug)]
pub struct AlignedBuf {
    /// Backing memory; the bytes are `raw[start..start + len]`.
    raw: Vec<u8>,
    start: usize,
    len: usize,
    align: usize,
}

impl AlignedBuf {
    /// An empty buffer aligned to `align` (a power of two).
    pub fn new(align: usize) -> AlignedBuf {
        assert!(
            align.is_power_of_two(),
            "alignment {align} is not a power of two"
        );
        let mut buf = AlignedBuf {
            raw: Vec::new(),
            start: 0,
            len: 0,
            align,
        };
        buf.reserve(align);
        buf
    }

    /// An empty buffer aligned to `align` with room for `capacity` bytes, so that filling it
    /// up to that never moves it.
    pub fn with_capacity(align: usize, capacity: usize) -> AlignedBuf {
        let mut buf = AlignedBuf::new(align);
        buf.reserve(capacity);
        buf
    }

    /// The bytes held.
    pub fn bytes(&self) -> &[u8] {
        &self.raw[self.start..self.start + self.len]
    }

    /// How many bytes are held.
    pub fn len(&self) -> usize {
        self.len
    }

    /// Whether no byte is held.
    pub fn is_empty(&self) -> bool {
        self.len == 0
    }

    /// Appends `data`.
    pub fn extend(&mut self, data: &[u8]) {
        self.reserve(self.len + data.len());
        let at = self.start + self.len;
        self.raw[at..at + data.len()].copy_from_slice(data);
        self.len += data.len();
    }

    /// The bytes held, then zeros up to the next multiple of the alignment: what one direct
    /// write sends.
    pub fn padded(&mut self) -> &[u8] {
        let padded = self.len.next_multiple_of(self.align);
        self.reserve(padded);
        let end = self.start + padded;
        self.raw[self.start + self.len..end].fill(0);
        &self.raw[self.start..end]
    }

    /// Drops the first `n` bytes (at most all of them), moving the rest to the front.
    pub fn consume(&mut self, n: usize) {
        let n = n.min(self.len);
        let from = self.start + n;
        self.raw
            .copy_within(from..self.start + self.len, self.start);
        self.len -= n;
    }

    /// Gives memory back if more than `max` bytes are allocated (after one huge write), so
    /// that it is not pinned for the life of the buffer.
    pub fn shrink_to(&mut self, max: usize) {
        if self.raw.len() > max + self.align {
            let mut small = AlignedBuf::new(self.align);
            small.extend(self.bytes());
            *self = small;
        }
    }

    /// Makes room for `total` bytes (rounded up to the alignment) at an aligned address.
    fn reserve(&mut self, total: usize) {
        let need = total.next_multiple_of(self.align);
        if self.start + need <= self.raw.len() {
            return;
        }
        let size = need.max(self.raw.len() * 2) + self.align;
        let mut raw = vec![0u8; size];
        let start = raw.as_ptr().align_offset(self.align);
        raw[start..start + self.len].copy_from_slice(self.bytes());
        self.raw = raw;
        self.start = start;
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn bytes_stay_aligned_and_pad_with_zeros() {
        let mut b = AlignedBuf::new(512);
        assert!(b.is_empty());
        b.extend(b"abc");
        assert_eq!(b.bytes(), b"abc");
        assert_eq!(b.padded().as_ptr() as usize % 512, 0);
        assert_eq!(b.padded().len(), 512);
        assert!(b.padded()[3..].iter().all(|&x| x == 0));
        // Growing moves the bytes to new memory, aligned again.
        let big = vec![7u8; 5000];
        b.extend(&big);
        assert_eq!(b.len(), 5003);
        let p = b.padded();
        assert_eq!((p.len(), p.as_ptr() as usize % 512), (5120, 0));
        assert_eq!(&p[..3], b"abc");
        assert!(p[3..5003].iter().all(|&x| x == 7));
        assert!(p[5003..].iter().all(|&x| x == 0));
    }

    #[test]
    fn consume_keeps_the_rest_at_the_aligned_front() {
        let mut b = AlignedBuf::new(4096);
        b.extend(&[1u8; 4096]);
        b.extend(b"tail");
        b.consume(4096);
        assert_eq!(b.bytes(), b"tail");
        assert_eq!(b.padded().as_ptr() as usize % 4096, 0);
        // Stale bytes from before never show through the padding.
        assert!(b.padded()[4..].iter().all(|&x| x == 0));
        b.consume(100);
        assert!(b.is_empty());
    }

    #[test]
    fn shrink_to_gives_memory_back_and_keeps_the_bytes() {
        let mut b = AlignedBuf::new(512);
        b.extend(&vec![1u8; 1 << 20]);
        b.consume((1 << 20) - 3);
        b.shrink_to(4096);
        assert!(b.raw.len() <= 4096 + 512);
        assert_eq!(b.bytes(), [1, 1, 1]);
        assert_eq!(b.padded().as_ptr() as usize % 512, 0);
    }
}
