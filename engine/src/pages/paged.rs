//! Copy-on-write paged vectors: the storage of all window state.
//!
//! ```text
//!   live:      [page 0]──┐ [page 1]──┐ [page 2*]      * written since the snapshot:
//!                        │           │                  copied first, then changed
//!   snapshot:  [page 0]──┘ [page 1]──┘ [page 2]       (the snapshot keeps the old page)
//! ```
//!
//! A [`PagedVec`] keeps its elements in pages of [`PAGE`] elements, each held by an `Arc`, in a
//! page table that is itself held by an `Arc`. [`PagedVec::snapshot`] clones the table's `Arc`:
//! one reference-count increment whatever the state size, which is what keeps a worker's pause
//! at a checkpoint barrier short. The next write copies the table (O(pages) pointer copies). Writers go through [`PagedVec::pages_mut`],
//! which makes every page unique first (`Arc::make_mut`: a page still held by a snapshot is
//! copied, once) and then hands out plain `&mut [T]` slices, so the per-row update is an index
//! into a slice with no reference counting in the loop.
//!
//! Cost model: the pause at a barrier is O(1) per vector. The copying is paid after the barrier
//! by the first batch that writes to the vector: `pages_mut` makes every page unique, so that is
//! O(state) per checkpoint (a memcpy of the state, ~15 MiB for 1M keys and `count()`), off the
//! barrier but on the worker thread. Copying only the pages a batch touches would help skewed
//! keys; uniformly spread keys touch them all anyway. Only the last page grows element by
//! element, so a window with few groups holds little memory.

use std::sync::Arc;

use super::encode::DecodeError;

/// Elements per page (a power of two).
pub(crate) const PAGE: usize = 4096;
const SHIFT: u32 = PAGE.trailing_zeros();
const MASK: usize = PAGE - 1;

/// A growable array in reference-counted pages with copy-on-write.
#[derive(Debug)]
pub(crate) struct PagedVec<T> {
    /// The page table is itself shared with snapshots: taking one is a single reference-count
    /// increment, and the first write after it copies the table (outside the barrier pause).
    pages: Arc<Vec<Arc<Vec<T>>>>,
    len: usize,
}

impl<T> Default for PagedVec<T> {
    fn default() -> Self {
        Self {
            pages: Arc::default(),
            len: 0,
        }
    }
}

impl<T: Copy + Default> PagedVec<T> {
    /// Number of elements.
    pub(crate) fn len(&self) -> usize {
        self.len
    }

    /// The element at `i`.
    #[inline]
    pub(crate) fn get(&self, i: usize) -> T {
        self.pages[i >> SHIFT][i & MASK]
    }

    /// Appends `v`.
    pub(crate) fn push(&mut self, v: T) {
        let pages = Arc::make_mut(&mut self.pages);
        if self.len & MASK == 0 {
            pages.push(Arc::new(Vec::with_capacity(16)));
        }
        let last = pages.last_mut().expect("a page was just ensured");
        Arc::make_mut(last).push(v);
        self.len += 1;
    }

    /// Grows to `n` elements, filling with `T::default()`; never shrinks.
    pub(crate) fn grow_to(&mut self, n: usize) {
        if self.len >= n {
            return;
        }
        let pages = Arc::make_mut(&mut self.pages);
        while self.len < n {
            if self.len & MASK == 0 {
                pages.push(Arc::new(Vec::with_capacity((n - self.len).min(PAGE))));
            }
            let last = Arc::make_mut(pages.last_mut().expect("a page was just ensured"));
            let add = (PAGE - last.len()).min(n - self.len);
            last.resize(last.len() + add, T::default());
            self.len += add;
        }
    }

    /// Every page made unique (copying those a snapshot still holds), as mutable slices.
    pub(crate) fn pages_mut(&mut self) -> PagesMut<'_, T> {
        PagesMut {
            pages: Arc::make_mut(&mut self.pages)
                .iter_mut()
                .map(|p| Arc::make_mut(p).as_mut_slice())
                .collect(),
        }
    }

    /// A frozen copy sharing every page: later writes to `self` copy the pages they touch and
    /// never show through. O(1): one reference-count increment.
    pub(crate) fn snapshot(&self) -> Self {
        Self {
            pages: Arc::clone(&self.pages),
            len: self.len,
        }
    }

    /// The pages, in order (all full but the last).
    pub(crate) fn pages(&self) -> impl Iterator<Item = &[T]> {
        self.pages.iter().map(|p| p.as_slice())
    }

    /// Every element, in order.
    pub(crate) fn iter(&self) -> impl Iterator<Item = T> + '_ {
        self.pages().flat_map(|p| p.iter().copied())
    }

    /// The elements as one vector.
    pub(crate) fn to_vec(&self) -> Vec<T> {
        let mut v = Vec::with_capacity(self.len);
        for p in self.pages() {
            v.extend_from_slice(p);
        }
        v
    }

    /// Appends the elements of `from` at `picks`, in that order (rescaling a restored job moves
    /// groups between workers this way). An index out of range is refused.
    pub(crate) fn append_picked(&mut self, from: &Self, picks: &[u32]) -> Result<(), DecodeError> {
        if let Some(&bad) = picks.iter().find(|&&i| i as usize >= from.len) {
            return Err(DecodeError(format!(
                "group {bad} out of range: the state has {} groups",
                from.len
            )));
        }
        for &i in picks {
            self.push(from.get(i as usize));
        }
        Ok(())
    }

    /// Approximate bytes held (pages shared with a snapshot counted in full).
    pub(crate) fn size(&self) -> usize {
        self.pages.iter().map(|p| p.capacity()).sum::<usize>() * std::mem::size_of::<T>()
    }
}

impl<T: Copy + Default> FromIterator<T> for PagedVec<T> {
    fn from_iter<I: IntoIterator<Item = T>>(iter: I) -> Self {
        let mut v = Self::default();
        for x in iter {
            v.push(x);
        }
        v
    }
}

/// Mutable access to every page of a [`PagedVec`] at once.
pub(crate) struct PagesMut<'a, T> {
    pages: Vec<&'a mut [T]>,
}

impl<T> PagesMut<'_, T> {
    /// The element at `i`.
    #[inline(always)]
    pub(crate) fn at(&mut self, i: usize) -> &mut T {
        &mut self.pages[i >> SHIFT][i & MASK]
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_snapshot_never_sees_later_writes() {
        let mut v: PagedVec<u64> = (0..10_000).collect();
        let snap = v.snapshot();
        {
            let mut m = v.pages_mut();
            *m.at(0) = 99;
            *m.at(5_000) = 98;
        }
        v.push(7);
        v.grow_to(20_000);
        assert_eq!(snap.len(), 10_000);
        assert_eq!(snap.to_vec(), (0..10_000).collect::<Vec<u64>>());
        assert_eq!(v.get(0), 99);
        assert_eq!(v.get(5_000), 98);
        assert_eq!(v.get(10_000), 7);
        assert_eq!(v.get(19_999), 0);
        // A second snapshot shares the now-unique pages again.
        let snap2 = v.snapshot();
        *v.pages_mut().at(1) = 5;
        assert_eq!(snap2.get(1), 1);
        assert_eq!(v.get(1), 5);
    }

    #[test]
    fn snapshot_shares_pages_instead_of_copying() {
        let v: PagedVec<u32> = (0..(PAGE as u32 * 3 + 5)).collect();
        let snap = v.snapshot();
        assert!(Arc::ptr_eq(&v.pages, &snap.pages));
        let mut w = v.snapshot();
        *w.pages_mut().at(0) = 42;
        // The write copied the table and the pages, never touching the snapshot's.
        assert!(!Arc::ptr_eq(&w.pages, &snap.pages));
        assert_eq!(snap.get(0), 0);
        assert_eq!(w.get(0), 42);
        assert_eq!(v.pages().count(), 4);
        assert_eq!(v.iter().count(), v.len());
    }

    #[test]
    fn grow_fills_with_default_across_pages() {
        let mut v: PagedVec<i64> = PagedVec::default();
        v.grow_to(3);
        v.grow_to(PAGE + 10);
        v.grow_to(5); // never shrinks
        assert_eq!(v.len(), PAGE + 10);
        assert!(v.iter().all(|x| x == 0));
        let mut m = v.pages_mut();
        *m.at(PAGE + 9) = -1;
        assert_eq!(v.get(PAGE + 9), -1);
    }
}
