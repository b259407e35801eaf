//! The bit-level layer of the envelope: LEB128 varints, zigzag, and LSB-first bit packing of
//! fixed-width words.

pub(super) fn bit_width(v: u64) -> u32 {
    u64::BITS - v.leading_zeros()
}

pub(super) fn packed_len(count: usize, width: u32) -> usize {
    (count * width as usize).div_ceil(8)
}

/// LSB-first bit packer. A `u64` accumulator flushed 32 bits at a time: cheaper than a `u128`
/// shifted per value, and the same bytes.
pub(super) struct BitWriter<'a> {
    out: &'a mut Vec<u8>,
    acc: u64,
    /// Bits held in `acc`, always below 32 between calls.
    bits: u32,
}

impl<'a> BitWriter<'a> {
    pub(super) fn new(out: &'a mut Vec<u8>) -> Self {
        BitWriter {
            out,
            acc: 0,
            bits: 0,
        }
    }

    #[inline(always)]
    pub(super) fn put(&mut self, v: u64, width: u32) {
        debug_assert!(width == 64 || v >> width == 0);
        if width > 32 {
            return self.put_wide(v, width);
        }
        self.put_small(v, width);
    }

    #[cold]
    pub(super) fn put_wide(&mut self, v: u64, width: u32) {
        self.put_small(v & 0xFFFF_FFFF, 32);
        self.put_small(v >> 32, width - 32);
    }

    #[inline(always)]
    pub(super) fn put_small(&mut self, v: u64, width: u32) {
        self.acc |= v << self.bits;
        self.bits += width;
        if self.bits >= 32 {
            self.out.extend_from_slice(&(self.acc as u32).to_le_bytes());
            self.acc >>= 32;
            self.bits -= 32;
        }
    }

    pub(super) fn finish(self) {
        let n = self.bits.div_ceil(8) as usize;
        self.out.extend_from_slice(&self.acc.to_le_bytes()[..n]);
    }
}

/// Widths [`pack`] writes without [`BitWriter`]: a value shifted by up to 7 bits must fit
/// the 64-bit accumulator.
const MAX_NARROW_WIDTH: u32 = 56;

/// Appends `count` values of `width` bits, LSB first: the bytes [`BitWriter`] writes. For
/// the usual narrow widths the accumulator's eight bytes are stored after every value,
/// whole bytes move on, and there is no branch on how full it is (the `BitWriter`'s flush
/// was a branch per value that the packed bits made hard to predict).
pub(super) fn pack(out: &mut Vec<u8>, count: usize, width: u32, values: impl Iterator<Item = u64>) {
    if width > MAX_NARROW_WIDTH {
        let mut w = BitWriter::new(out);
        values.for_each(|v| w.put(v, width));
        return w.finish();
    }
    let start = out.len();
    let len = packed_len(count, width);
    // Eight bytes of slack for the store after the last value, cut off again below.
    out.resize(start + len + 8, 0);
    let buf = &mut out[start..];
    let (mut acc, mut bits, mut at) = (0u64, 0u32, 0usize);
    for v in values {
        debug_assert!(v >> width == 0);
        acc |= v << bits;
        bits += width;
        if let Some(word) = buf.get_mut(at..at + 8) {
            word.copy_from_slice(&acc.to_le_bytes());
        }
        // `bits` ≤ 7 + 56, so fewer than 8 whole bytes move on and the shift stays in range.
        let whole = bits / 8;
        at += whole as usize;
        acc >>= whole * 8;
        bits -= whole * 8;
    }
    out.truncate(start + len);
}

pub(super) fn zigzag(v: i64) -> u64 {
    ((v << 1) ^ (v >> 63)) as u64
}

pub(super) fn unzigzag(v: u64) -> i64 {
    ((v >> 1) as i64) ^ -((v & 1) as i64)
}

pub(super) fn put_varint(out: &mut Vec<u8>, mut v: u64) {
    while v >= 0x80 {
        out.push(v as u8 | 0x80);
        v >>= 7;
    }
    out.push(v as u8);
}

pub(super) fn varint_len(v: u64) -> usize {
    (bit_width(v).max(1) as usize).div_ceil(7)
}

/// Reads fixed-width words from a slice whose length was checked to hold them all; the
/// mirror of [`BitWriter`], refilling 32 bits at a time.
pub(super) struct BitReader<'a> {
    pub(super) buf: &'a [u8],
    pub(super) pos: usize,
    pub(super) acc: u64,
    /// Bits held in `acc`, always below 32 between calls.
    pub(super) bits: u32,
}

impl BitReader<'_> {
    #[inline(always)]
    pub(super) fn get(&mut self, width: u32) -> u64 {
        if width > 32 {
            return self.get_wide(width);
        }
        self.get_small(width)
    }

    #[cold]
    pub(super) fn get_wide(&mut self, width: u32) -> u64 {
        let lo = self.get_small(32);
        lo | (self.get_small(width - 32) << 32)
    }

    #[inline(always)]
    pub(super) fn get_small(&mut self, width: u32) -> u64 {
        if self.bits < width {
            let mut word = [0u8; 4];
            let rest = self.buf.get(self.pos..).unwrap_or_default();
            let n = rest.len().min(4);
            word[..n].copy_from_slice(&rest[..n]);
            self.acc |= u64::from(u32::from_le_bytes(word)) << self.bits;
            self.pos += 4;
            self.bits += 32;
        }
        let v = self.acc & ((1u64 << width) - 1);
        self.acc >>= width;
        self.bits -= width;
        v
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    proptest! {
        /// Every width, narrow or not, after any prefix already in the buffer.
        #[test]
        fn pack_writes_the_bit_writers_bytes(
            width in 0u32..=64,
            raw in prop::collection::vec(any::<u64>(), 0..70),
            prefix in prop::collection::vec(any::<u8>(), 0..3),
        ) {
            let mask = if width == 64 { u64::MAX } else { (1u64 << width) - 1 };
            let values: Vec<u64> = raw.iter().map(|v| v & mask).collect();
            let mut want = prefix.clone();
            let mut w = BitWriter::new(&mut want);
            values.iter().for_each(|&v| w.put(v, width));
            w.finish();
            let mut got = prefix;
            pack(&mut got, values.len(), width, values.iter().copied());
            prop_assert_eq!(got, want);
        }
    }
}
