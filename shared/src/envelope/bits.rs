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
