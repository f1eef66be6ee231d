//! LEB128 varints: seven bits per byte, low bits first, the top bit set on every byte but the
//! last. Small numbers (ids, sequence numbers, lengths) take one or two bytes, which matters in
//! headers written once per log entry.

/// Longest LEB128 encoding of a u64.
pub const MAX_LEN: usize = 10;

/// Appends `n` to `buf`.
pub fn put(buf: &mut Vec<u8>, mut n: u64) {
    while n >= 0x80 {
        buf.push((n as u8) | 0x80);
        n >>= 7;
    }
    buf.push(n as u8);
}

/// Bytes `n` takes.
pub fn len(n: u64) -> usize {
    (64 - (n | 1).leading_zeros() as usize).div_ceil(7)
}

/// Reads one varint from the front of `p` and advances it past it.
pub fn take(p: &mut &[u8]) -> Result<u64, &'static str> {
    let mut n = 0u64;
    for (i, &b) in p.iter().enumerate().take(MAX_LEN) {
        let bits = u64::from(b & 0x7f);
        if i == MAX_LEN - 1 && bits > 1 {
            return Err("varint overflows 64 bits");
        }
        n |= bits << (7 * i);
        if b & 0x80 == 0 {
            *p = &p[i + 1..];
            return Ok(n);
        }
    }
    Err("varint runs past its end")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn varints_round_trip_and_know_their_length() {
        for n in [
            0,
            1,
            127,
            128,
            300,
            16_383,
            16_384,
            u64::from(u32::MAX),
            u64::MAX,
        ] {
            let mut buf = Vec::new();
            put(&mut buf, n);
            assert_eq!(buf.len(), len(n), "{n}");
            buf.push(0xAA);
            let mut p = &buf[..];
            assert_eq!(take(&mut p), Ok(n));
            assert_eq!(p, &[0xAA]);
        }
    }

    #[test]
    fn truncated_or_overlong_varints_are_errors() {
        assert!(take(&mut &[0x80u8][..]).is_err());
        assert!(take(&mut &[][..]).is_err());
        assert!(take(&mut &[0xFFu8; 10][..]).is_err());
    }
}
