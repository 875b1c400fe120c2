//! Copy-on-write memory: the storage every piece of window state is made of, and its encoding.
//!
//! ```text
//!   PagedVec<T>   fixed-width values in Arc'd pages, behind an Arc'd page table   (paged)
//!   ByteArena     byte strings in Arc'd chunks, located by two PagedVecs          (arena)
//!   Out / Reader  little-endian writer into a sized buffer, checked reader         (encode)
//! ```
//!
//! A snapshot of either container shares its pages with the live one (a reference-count
//! increment), and the live one copies a page before writing to it: that is what keeps a
//! worker's pause at a checkpoint barrier independent of its state's size. Key interners
//! (`state`) and accumulators (`aggregate`) build on these; this module imports nothing else of
//! the crate. The bytes the containers encode to are part of the state payload format,
//! written down in `engine/CHECKPOINTS.md` ("State payload").

pub(crate) mod arena;
pub(crate) mod encode;
pub(crate) mod paged;

pub(crate) use arena::ByteArena;
pub(crate) use encode::{DecodeError, Fixed, Out, Reader};
pub(crate) use paged::PagedVec;
