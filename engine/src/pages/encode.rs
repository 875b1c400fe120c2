//! Encoding frozen window state into bytes, and decoding it back.
//!
//! Everything is little-endian and length-prefixed, so a reader never trusts a length it has not
//! checked against the bytes it has: a truncated or inconsistent payload is a [`DecodeError`],
//! never a panic. (Whole-file integrity is the checkpoint file's checksum; this layer only has to
//! refuse what does not parse.) The encodings of [`PagedVec`] and [`ByteArena`] are in
//! `engine/CHECKPOINTS.md`, "State payload".

use super::arena::ByteArena;
use super::paged::PagedVec;

/// A payload that does not decode: truncated, or a length or tag out of range.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct DecodeError(pub String);

impl std::fmt::Display for DecodeError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "corrupt state payload: {}", self.0)
    }
}

impl std::error::Error for DecodeError {}

/// A fixed-width value with a little-endian encoding.
pub(crate) trait Fixed: Copy + Default + Send + Sync + 'static {
    /// Encoded width in bytes.
    const SIZE: usize;
    /// Writes `self` into `out[..SIZE]`.
    fn put(self, out: &mut [u8]);
    /// Reads a value from `b[..SIZE]`.
    fn take(b: &[u8]) -> Self;
}

macro_rules! fixed {
    ($($t:ty),*) => {$(impl Fixed for $t {
        const SIZE: usize = std::mem::size_of::<$t>();
        #[inline]
        fn put(self, out: &mut [u8]) { out[..Self::SIZE].copy_from_slice(&self.to_le_bytes()); }
        #[inline]
        fn take(b: &[u8]) -> Self { <$t>::from_le_bytes(b[..Self::SIZE].try_into().expect("sized")) }
    })*};
}
fixed!(u8, u16, u32, u64, i8, i16, i32, i64, f32, f64);

impl Fixed for bool {
    const SIZE: usize = 1;
    fn put(self, out: &mut [u8]) {
        out[0] = u8::from(self);
    }
    fn take(b: &[u8]) -> Self {
        b[0] != 0
    }
}

/// A reader over an encoded payload.
pub struct Reader<'a> {
    bytes: &'a [u8],
}

impl<'a> Reader<'a> {
    /// A reader of `bytes`.
    pub fn new(bytes: &'a [u8]) -> Self {
        Self { bytes }
    }

    /// Takes the next `n` bytes.
    pub fn bytes(&mut self, n: usize, what: &str) -> Result<&'a [u8], DecodeError> {
        if self.bytes.len() < n {
            return Err(DecodeError(format!(
                "{what}: needs {n} bytes, {} left",
                self.bytes.len()
            )));
        }
        let (head, rest) = self.bytes.split_at(n);
        self.bytes = rest;
        Ok(head)
    }

    fn value<T: Fixed>(&mut self, what: &str) -> Result<T, DecodeError> {
        Ok(T::take(self.bytes(T::SIZE, what)?))
    }

    /// A `u64` length, checked to be plausible against the bytes left at `min_size` bytes per
    /// item.
    pub fn len(&mut self, min_size: usize, what: &str) -> Result<usize, DecodeError> {
        let n = self.value::<u64>(what)?;
        let fits = n
            .checked_mul(min_size.max(1) as u64)
            .is_some_and(|b| b <= self.bytes.len() as u64);
        if !fits && min_size > 0 {
            return Err(DecodeError(format!(
                "{what}: length {n} exceeds the payload"
            )));
        }
        usize::try_from(n).map_err(|_| DecodeError(format!("{what}: length {n}")))
    }

    /// Whether every byte was consumed.
    pub fn is_empty(&self) -> bool {
        self.bytes.is_empty()
    }
}

/// A writer into a buffer sized in advance (a memory-mapped file, say).
///
/// # Panics
/// Writing past the end of the buffer panics: an `encoded_len` that lied is a bug.
pub struct Out<'a> {
    buf: &'a mut [u8],
    pos: usize,
}

impl<'a> Out<'a> {
    /// A writer at the start of `buf`.
    pub fn new(buf: &'a mut [u8]) -> Self {
        Self { buf, pos: 0 }
    }

    /// Writes raw bytes.
    pub fn bytes(&mut self, b: &[u8]) {
        self.buf[self.pos..self.pos + b.len()].copy_from_slice(b);
        self.pos += b.len();
    }

    /// Writes a `u64` (lengths, counts).
    pub fn u64(&mut self, v: u64) {
        self.put(v);
    }

    pub(crate) fn put<T: Fixed>(&mut self, v: T) {
        v.put(&mut self.buf[self.pos..self.pos + T::SIZE]);
        self.pos += T::SIZE;
    }

    /// Bytes written so far.
    pub fn written(&self) -> usize {
        self.pos
    }
}

impl<T: Fixed> PagedVec<T> {
    /// Bytes [`PagedVec::encode`] writes.
    pub(crate) fn encoded_len(&self) -> usize {
        8 + self.len() * T::SIZE
    }

    /// Writes the encoding.
    pub(crate) fn encode(&self, out: &mut Out<'_>) {
        out.put(self.len() as u64);
        for page in self.pages() {
            for &v in page {
                out.put(v);
            }
        }
    }

    /// Decodes what [`PagedVec::encode`] wrote.
    pub(crate) fn decode(r: &mut Reader<'_>) -> Result<Self, DecodeError> {
        let n = r.len(T::SIZE, "paged vector")?;
        let bytes = r.bytes(n * T::SIZE, "paged vector values")?;
        Ok(bytes.chunks_exact(T::SIZE).map(T::take).collect())
    }
}

impl ByteArena {
    /// Bytes [`ByteArena::encode`] writes.
    pub(crate) fn encoded_len(&self) -> usize {
        8 + self.len() * 4 + self.byte_len()
    }

    /// Writes the encoding.
    pub(crate) fn encode(&self, out: &mut Out<'_>) {
        out.put(self.len() as u64);
        for s in self.iter() {
            out.put(s.len() as u32);
        }
        for s in self.iter() {
            out.bytes(s);
        }
    }

    /// Decodes what [`ByteArena::encode`] wrote.
    pub(crate) fn decode(r: &mut Reader<'_>) -> Result<Self, DecodeError> {
        let n = r.len(4, "byte arena")?;
        let lens = r.bytes(n * 4, "byte arena lengths")?;
        let mut arena = ByteArena::default();
        for l in lens.chunks_exact(4) {
            let l = u32::take(l) as usize;
            arena.push(r.bytes(l, "byte arena string")?);
        }
        Ok(arena)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn paged_and_arena_round_trip_and_refuse_truncation() {
        let v: PagedVec<i64> = (-5_000..5_000).collect();
        let mut a = ByteArena::default();
        for i in 0..1_000 {
            a.push(format!("client-{i}").as_bytes());
        }
        let mut out = vec![0u8; v.encoded_len() + a.encoded_len()];
        let mut w = Out::new(&mut out);
        v.encode(&mut w);
        a.encode(&mut w);
        assert_eq!(w.written(), out.len());
        let mut r = Reader::new(&out);
        assert_eq!(
            PagedVec::<i64>::decode(&mut r).unwrap().to_vec(),
            v.to_vec()
        );
        let back = ByteArena::decode(&mut r).unwrap();
        assert!(r.is_empty());
        assert!(back.iter().eq(a.iter()));
        for cut in [0, 1, 7, 8, 100, out.len() - 1] {
            let mut r = Reader::new(&out[..cut]);
            let res = PagedVec::<i64>::decode(&mut r).and_then(|_| ByteArena::decode(&mut r));
            assert!(res.is_err(), "truncated at {cut} was accepted");
        }
    }
}
