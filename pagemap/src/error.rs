//! The crate's error type: every failure is typed and changes nothing.

use std::{fmt, io};

/// What went wrong. Every operation that fails with one of these has left the
/// page map as it was (a failed write keeps its page dirty and cached).
#[derive(Debug)]
#[non_exhaustive]
pub enum Error {
    /// The frame pool has no free frame (free some with
    /// [`PageMap::free_unused`](crate::PageMap::free_unused)).
    PoolExhausted {
        /// Frames in the pool.
        capacity: usize,
    },
    /// The page already has the most holders its slot word can count.
    RefcountOverflow {
        /// Page index.
        index: u64,
    },
    /// The page is absent or not up to date, and the caller asked not to block.
    WouldBlock {
        /// Page index.
        index: u64,
    },
    /// The backing store failed to read the page (returned to the loader and
    /// to every waiter; the page is left unlocked and not up to date).
    Read {
        /// Page index.
        index: u64,
        /// What the store said (for waiters: the same kind, re-created).
        source: io::Error,
    },
    /// The backing store failed to write the page; the page stays DIRTY and cached.
    Write {
        /// Page index.
        index: u64,
        /// What the store said.
        source: io::Error,
    },
    /// A byte range outside the 4 KiB page.
    OutOfBounds {
        /// First byte asked for.
        offset: usize,
        /// Length asked for.
        len: usize,
    },
    /// A frame pool capacity of zero or beyond the frame-id space.
    InvalidCapacity {
        /// What was asked for.
        requested: usize,
        /// The largest allowed.
        max: usize,
    },
    /// Another remover is working on this page map.
    Busy,
    /// The page lies at or beyond the end of the file (after a truncate):
    /// a fault there is the simulated SIGBUS.
    BeyondEof {
        /// Page index.
        index: u64,
        /// The first page beyond the end.
        end: u64,
    },
    /// The backing store failed to truncate (the cache is truncated anyway).
    Truncate {
        /// The first page that should be gone.
        end: u64,
        /// What the store said.
        source: io::Error,
    },
}

impl fmt::Display for Error {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Error::PoolExhausted { capacity } => {
                write!(f, "frame pool exhausted ({capacity} frames, none free)")
            }
            Error::RefcountOverflow { index } => {
                write!(f, "page {index}: slot refcount would overflow")
            }
            Error::WouldBlock { index } => write!(f, "page {index}: not cached, would block"),
            Error::Read { index, source } => write!(f, "page {index}: read failed: {source}"),
            Error::Write { index, source } => write!(f, "page {index}: write failed: {source}"),
            Error::OutOfBounds { offset, len } => write!(
                f,
                "byte range {offset}+{len} is outside the {} byte page",
                crate::PAGE_SIZE
            ),
            Error::InvalidCapacity { requested, max } => {
                write!(f, "frame pool capacity {requested} not in 1..={max}")
            }
            Error::Busy => write!(f, "another remover is running on this page map"),
            Error::BeyondEof { index, end } => {
                write!(f, "page {index} is beyond the end of the file (page {end})")
            }
            Error::Truncate { end, source } => {
                write!(f, "truncating the store at page {end} failed: {source}")
            }
        }
    }
}

impl std::error::Error for Error {
    fn source(&self) -> Option<&(dyn std::error::Error + 'static)> {
        match self {
            Error::Read { source, .. }
            | Error::Write { source, .. }
            | Error::Truncate { source, .. } => Some(source),
            _ => None,
        }
    }
}

/// Packs an [`io::ErrorKind`] into 8 bits (kept in a frame's flags so that
/// waiters of a failed load get the loader's kind of error).
pub(crate) fn kind_to_code(kind: io::ErrorKind) -> u32 {
    KINDS
        .iter()
        .position(|k| *k == kind)
        .map_or(0, |i| i as u32 + 1)
}

/// Inverse of [`kind_to_code`]; unknown codes are `Other`.
pub(crate) fn code_to_kind(code: u32) -> io::ErrorKind {
    match code {
        1..=255 => KINDS
            .get(code as usize - 1)
            .copied()
            .unwrap_or(io::ErrorKind::Other),
        _ => io::ErrorKind::Other,
    }
}

const KINDS: [io::ErrorKind; 14] = [
    io::ErrorKind::NotFound,
    io::ErrorKind::PermissionDenied,
    io::ErrorKind::Interrupted,
    io::ErrorKind::UnexpectedEof,
    io::ErrorKind::InvalidInput,
    io::ErrorKind::InvalidData,
    io::ErrorKind::TimedOut,
    io::ErrorKind::WriteZero,
    io::ErrorKind::Unsupported,
    io::ErrorKind::OutOfMemory,
    io::ErrorKind::Other,
    io::ErrorKind::WouldBlock,
    io::ErrorKind::BrokenPipe,
    io::ErrorKind::AlreadyExists,
];

#[cfg(all(test, not(pagemap_loom)))]
mod tests {
    use super::*;

    #[test]
    fn kinds_round_trip() {
        for k in KINDS {
            assert_eq!(code_to_kind(kind_to_code(k)), k);
        }
        assert!(kind_to_code(io::ErrorKind::Other) < 256);
    }

    #[test]
    fn errors_display_and_chain() {
        let e = Error::Write {
            index: 3,
            source: io::Error::other("disk on fire"),
        };
        assert!(e.to_string().contains("page 3"));
        assert!(std::error::Error::source(&e).is_some());
    }
}
