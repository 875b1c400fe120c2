//! An append-only, copy-on-write store of byte strings: the keys of a window.
//!
//! Bytes go into chunks of [`CHUNK`] bytes held by `Arc`; a string never straddles two chunks
//! (one that does not fit in the rest of the current chunk starts a new one, and one longer than
//! a chunk gets a chunk of its own), so every stored string is one contiguous slice. Appending
//! only ever changes the last chunk, so a [`ByteArena::snapshot`] shares every chunk and a later
//! append copies at most the last one.

use std::sync::Arc;

use super::paged::PagedVec;

/// Bytes per chunk.
pub(crate) const CHUNK: usize = 64 * 1024;

/// Byte strings `0, 1, 2, …` in chunks.
#[derive(Debug, Default)]
pub(crate) struct ByteArena {
    chunks: Vec<Arc<Vec<u8>>>,
    /// Per string: chunk index << 32 | offset in the chunk.
    places: PagedVec<u64>,
    lens: PagedVec<u32>,
}

impl ByteArena {
    /// Number of strings.
    pub(crate) fn len(&self) -> usize {
        self.lens.len()
    }

    /// Appends `b`, returning its index.
    pub(crate) fn push(&mut self, b: &[u8]) -> u32 {
        let fits = self
            .chunks
            .last()
            .is_some_and(|c| c.len() + b.len() <= CHUNK);
        if !fits {
            self.chunks
                .push(Arc::new(Vec::with_capacity(CHUNK.max(b.len()))));
        }
        let chunk = self.chunks.len() - 1;
        let last = Arc::make_mut(self.chunks.last_mut().expect("a chunk was just ensured"));
        let offset = last.len();
        last.extend_from_slice(b);
        self.places.push((chunk as u64) << 32 | offset as u64);
        self.lens.push(b.len() as u32);
        (self.lens.len() - 1) as u32
    }

    /// String `i`.
    #[inline]
    pub(crate) fn get(&self, i: u32) -> &[u8] {
        let place = self.places.get(i as usize);
        let (chunk, offset) = ((place >> 32) as usize, (place & 0xFFFF_FFFF) as usize);
        &self.chunks[chunk][offset..offset + self.lens.get(i as usize) as usize]
    }

    /// A frozen copy sharing every chunk. O(chunks + strings / page size).
    pub(crate) fn snapshot(&self) -> Self {
        Self {
            chunks: self.chunks.clone(),
            places: self.places.snapshot(),
            lens: self.lens.snapshot(),
        }
    }

    /// Every string, in order.
    pub(crate) fn iter(&self) -> impl Iterator<Item = &[u8]> + '_ {
        (0..self.len() as u32).map(|i| self.get(i))
    }

    /// Total bytes of all strings.
    pub(crate) fn byte_len(&self) -> usize {
        self.lens.iter().map(|l| l as usize).sum()
    }

    /// Approximate bytes held.
    pub(crate) fn size(&self) -> usize {
        self.chunks.iter().map(|c| c.capacity()).sum::<usize>()
            + self.places.size()
            + self.lens.size()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn strings_round_trip_across_chunks_and_snapshots() {
        let mut a = ByteArena::default();
        let strings: Vec<Vec<u8>> = (0..5_000usize)
            .map(|i| {
                vec![(i % 251) as u8; (i * 37) % 300 + if i % 997 == 0 { CHUNK + 10 } else { 0 }]
            })
            .collect();
        for (i, s) in strings.iter().enumerate() {
            assert_eq!(a.push(s), i as u32);
        }
        let snap = a.snapshot();
        a.push(b"after the snapshot");
        assert_eq!(snap.len(), strings.len());
        for (i, s) in strings.iter().enumerate() {
            assert_eq!(snap.get(i as u32), &s[..]);
            assert_eq!(a.get(i as u32), &s[..]);
        }
        assert_eq!(a.get(strings.len() as u32), b"after the snapshot");
        assert_eq!(snap.iter().count(), strings.len());
        assert_eq!(snap.byte_len(), strings.iter().map(Vec::len).sum::<usize>());
    }
}
