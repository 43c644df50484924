//! The crate's error type: every failure is typed and changes nothing.

use core::fmt;

/// What went wrong. Every operation that fails with one of these has left the
/// page map as it was (a failed write keeps its page dirty and cached).
///
/// `Clone` and `Eq`: reports keep errors (a [`Flusher`](crate::Flusher)'s
/// last one, the write error an [`fsync`](crate::PageMap::fsync) reports
/// later), and every field is plain data.
#[derive(Clone, Debug, PartialEq, Eq)]
#[non_exhaustive]
pub enum Error {
    /// The frame pool has no free frame and reclaim found nothing it could
    /// evict: every frame is held outside the page maps or is a page that
    /// cannot leave now (held, locked, loading, under writeback, pinned, or
    /// failing its write-back). Nothing was changed.
    PoolExhausted {
        /// Frames in the pool.
        capacity: usize,
        /// Frames owned outside any page map ([`PrivateFrame`](crate::PrivateFrame)s:
        /// copy-on-write copies, anonymous pages), when the error was made.
        private: u32,
        /// Frames caching pages, none of which reclaim could evict (held,
        /// pinned, locked, loading, or failing their write-back).
        unevictable: u32,
    },
    /// [`Reclaimer::start`](crate::Reclaimer::start) was given watermarks
    /// that are not `0 < low < high <= capacity` (a pool of one frame has
    /// none). Nothing was started.
    InvalidWatermarks {
        /// The low watermark asked for, in frames.
        low: usize,
        /// The high watermark asked for, in frames.
        high: usize,
    },
    /// Every location of the swap store is in use (by swap entries, or by
    /// frames whose copy there is not clean or that are moving): a
    /// swap-out that needs a location cannot have one. Nothing changed.
    SwapFull {
        /// Locations of the store.
        locations: u32,
    },
    /// A page-in from swap failed: the data stays in swap (the swap entry
    /// is unchanged) and a retry reads it again.
    SwapRead {
        /// The swap location.
        location: u32,
        /// The store's error.
        source: StoreError,
    },
    /// A page-out to swap failed: the page stays in memory, dirty; no data
    /// is lost.
    SwapWrite {
        /// The swap location.
        location: u32,
        /// The store's error.
        source: StoreError,
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
        /// What the store said (for waiters of that read: the same code).
        source: StoreError,
    },
    /// The backing store failed to write the page; the page stays DIRTY and cached.
    Write {
        /// Page index.
        index: u64,
        /// What the store said.
        source: StoreError,
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
    /// The page ends beyond the largest length the store can address
    /// ([`StoreControl::max_size`](crate::StoreControl::max_size): a file
    /// system's largest file, say): refused at load, lookup and readahead,
    /// so no data is cached that no write-back could store.
    BeyondMaxSize {
        /// Page index.
        index: u64,
        /// The store's largest length in bytes.
        max_size: u64,
    },
    /// The backing store failed to make written data durable
    /// ([`StoreControl::sync`](crate::StoreControl::sync), called by
    /// [`PageMap::fsync`](crate::PageMap::fsync), [`PageMap::close`](crate::PageMap::close)
    /// and a [`Flusher`](crate::Flusher) set to sync): writes it had
    /// acknowledged may not survive a crash.
    Sync {
        /// What the store said.
        source: StoreError,
    },
    /// A write (or dirty mark) through a reference to a page that a
    /// truncate cut from the cache while it was held: the page belongs to no
    /// file offset any more, so nothing written to it could reach the file.
    /// Nothing was changed.
    Detached {
        /// The page index the reference was taken at.
        index: u64,
    },
    /// The backing store failed to report its size when a page map was
    /// created over it ([`PageMap::try_new`](crate::PageMap::try_new)).
    Size {
        /// What the store said.
        source: StoreError,
    },
    /// A write through a page reference reaches bytes at or past the
    /// file's size ([`PageRef::write`](crate::PageRef::write)); nothing was
    /// written. Byte units.
    BeyondSize {
        /// The file offset of the first byte at or past the size.
        offset: u64,
        /// The file's size in bytes.
        size: u64,
    },
    /// A byte range of [`PageMap::write_at`](crate::PageMap::write_at)
    /// that ends past the largest file size (2^64 - 2 bytes: a size of
    /// `u64::MAX` means "no end"); nothing was written. Byte units.
    FileTooLarge {
        /// The first byte asked for.
        offset: u64,
        /// The length asked for.
        len: u64,
    },
    /// The backing store failed to change its size
    /// ([`PageMap::set_size`](crate::PageMap::set_size)); the page map's
    /// size changed anyway. Also a size past the store's
    /// [`max_size`](crate::StoreControl::max_size) (`EFBIG`), refused
    /// before anything changed.
    SetSize {
        /// The size asked for, in bytes.
        size: u64,
        /// What the store said.
        source: StoreError,
    },
    /// The backing store failed to truncate (the cache is truncated anyway).
    Truncate {
        /// The first page that should be gone.
        end: u64,
        /// What the store said.
        source: StoreError,
    },
    /// The backing store failed to punch a hole
    /// ([`PageMap::punch_hole`](crate::PageMap::punch_hole)): the cache's
    /// half is done (the range reads as zeroes while its pages stay cached),
    /// but the store may still hold old bytes there, which a later load
    /// would read (as Linux's `fallocate` failing with `EIO`: the range's
    /// contents are then unspecified). `EOPNOTSUPP`: the store cannot punch.
    Punch {
        /// The first byte of the hole.
        offset: u64,
        /// Its length in bytes (clipped to the file's size).
        len: u64,
        /// What the store said.
        source: StoreError,
    },
}

impl fmt::Display for Error {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Error::PoolExhausted {
                capacity,
                private,
                unevictable,
            } => {
                write!(
                    f,
                    "frame pool exhausted ({capacity} frames, none free, none reclaimable: \
                     {private} private, {unevictable} cached pages held, pinned, locked or failing)"
                )
            }
            Error::InvalidWatermarks { low, high } => write!(
                f,
                "reclaimer watermarks low {low}, high {high} frames: need 0 < low < high <= the pool's frames"
            ),
            Error::RefcountOverflow { index } => {
                write!(f, "page {index}: slot refcount would overflow")
            }
            Error::SwapFull { locations } => {
                write!(f, "swap full: all {locations} locations are in use")
            }
            Error::SwapRead { location, source } => {
                write!(f, "swap location {location}: page-in failed: {source}")
            }
            Error::SwapWrite { location, source } => {
                write!(f, "swap location {location}: page-out failed: {source}")
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
            Error::BeyondMaxSize { index, max_size } => write!(
                f,
                "page {index} ends beyond the {max_size} bytes the store can address"
            ),
            Error::Sync { source } => write!(f, "syncing the store failed: {source}"),
            Error::Detached { index } => write!(
                f,
                "page {index} was cut from the cache by a truncate while held: write refused"
            ),
            Error::Size { source } => write!(f, "the store's size is unknown: {source}"),
            Error::BeyondSize { offset, size } => write!(
                f,
                "byte {offset} is at or past the end of the file ({size} bytes)"
            ),
            Error::FileTooLarge { offset, len } => write!(
                f,
                "bytes {offset}+{len} end past the largest file size (2^64 - 2 bytes)"
            ),
            Error::SetSize { size, source } => {
                write!(
                    f,
                    "setting the store's size to {size} bytes failed: {source}"
                )
            }
            Error::Truncate { end, source } => {
                write!(f, "truncating the store at page {end} failed: {source}")
            }
            Error::Punch {
                offset,
                len,
                source,
            } => write!(
                f,
                "punching a hole of {len} bytes at byte {offset} in the store failed: {source}"
            ),
        }
    }
}

impl core::error::Error for Error {
    fn source(&self) -> Option<&(dyn core::error::Error + 'static)> {
        match self {
            Error::Read { source, .. }
            | Error::Write { source, .. }
            | Error::SwapRead { source, .. }
            | Error::SwapWrite { source, .. }
            | Error::Sync { source }
            | Error::Size { source }
            | Error::SetSize { source, .. }
            | Error::Truncate { source, .. }
            | Error::Punch { source, .. } => Some(source),
            _ => None,
        }
    }
}

#[cfg(feature = "std")]
impl From<Error> for std::io::Error {
    /// A store's failure becomes its errno, so that
    /// [`raw_os_error`](std::io::Error::raw_os_error) is what the store
    /// said (the page index is dropped: an OS error carries a code only);
    /// any other error keeps its message under the nearest kind.
    fn from(e: Error) -> Self {
        use std::io::ErrorKind as K;
        let kind = match &e {
            Error::Read { source, .. }
            | Error::Write { source, .. }
            | Error::SwapRead { source, .. }
            | Error::SwapWrite { source, .. }
            | Error::Truncate { source, .. }
            | Error::Sync { source }
            | Error::Size { source }
            | Error::SetSize { source, .. } => return (*source).into(),
            Error::PoolExhausted { .. } | Error::SwapFull { .. } => K::OutOfMemory,
            Error::WouldBlock { .. } => K::WouldBlock,
            Error::OutOfBounds { .. }
            | Error::InvalidCapacity { .. }
            | Error::InvalidWatermarks { .. } => K::InvalidInput,
            Error::Busy => K::ResourceBusy,
            Error::BeyondEof { .. } => K::UnexpectedEof,
            Error::BeyondMaxSize { .. } => K::FileTooLarge,
            _ => K::Other,
        };
        std::io::Error::new(kind, e)
    }
}

/// An I/O error from a backing store, without `std::io`: the driver's error
/// code, an errno value (Linux's numbering: `EIO` = 5, ...), as a block
/// layer's completion carries a status and nothing else. With the `std`
/// feature it converts from and to [`std::io::Error`] (the OS error code is
/// kept; an error without one gets the errno of its kind).
///
/// Four bytes, so [`Error`] stays three words and the lock-free lookup, which
/// returns `Result<Option<PageRef>, Error>`, pays nothing for it (a version
/// that also carried a `&'static str` note cost the find+put path 9% more
/// instructions).
///
/// ```
/// use pagemap::StoreError;
/// let e = StoreError::new(StoreError::ENOSPC);
/// assert_eq!(e.code(), 28);
/// assert_eq!(e.to_string(), "store I/O error: errno 28 (ENOSPC)");
/// ```
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub struct StoreError {
    code: i32,
}

impl StoreError {
    /// Operation not permitted.
    pub const EPERM: i32 = 1;
    /// Interrupted call.
    pub const EINTR: i32 = 4;
    /// I/O error: what a code outside `1..=255` becomes.
    pub const EIO: i32 = 5;
    /// Out of memory.
    pub const ENOMEM: i32 = 12;
    /// Permission denied.
    pub const EACCES: i32 = 13;
    /// Invalid argument (e.g. a page beyond 2^64 bytes).
    pub const EINVAL: i32 = 22;
    /// File too large.
    pub const EFBIG: i32 = 27;
    /// No space left on the device.
    pub const ENOSPC: i32 = 28;
    /// Operation not supported.
    pub const EOPNOTSUPP: i32 = 95;
    /// Timed out.
    pub const ETIMEDOUT: i32 = 110;
    /// Cancelled: a completion-based request dropped without completing.
    pub const ECANCELED: i32 = 125;

    /// An error with driver code `code` (an errno value; one outside
    /// `1..=255` is kept as [`EIO`](Self::EIO), since a frame records the
    /// code of a failed read in 8 bits for the read's waiters).
    pub const fn new(code: i32) -> Self {
        let code = if code >= 1 && code <= 255 {
            code
        } else {
            Self::EIO
        };
        Self { code }
    }

    /// The errno value.
    pub const fn code(&self) -> i32 {
        self.code
    }

    /// The errno's name, for the codes this type names (`None` for others).
    pub const fn name(&self) -> Option<&'static str> {
        Some(match self.code {
            Self::EPERM => "EPERM",
            Self::EINTR => "EINTR",
            Self::EIO => "EIO",
            Self::ENOMEM => "ENOMEM",
            Self::EACCES => "EACCES",
            Self::EINVAL => "EINVAL",
            Self::EFBIG => "EFBIG",
            Self::ENOSPC => "ENOSPC",
            Self::EOPNOTSUPP => "EOPNOTSUPP",
            Self::ETIMEDOUT => "ETIMEDOUT",
            Self::ECANCELED => "ECANCELED",
            _ => return None,
        })
    }

    /// The [`std::io::ErrorKind`] of the code.
    #[cfg(feature = "std")]
    pub fn kind(&self) -> std::io::ErrorKind {
        std::io::Error::from_raw_os_error(self.code).kind()
    }
}

impl fmt::Display for StoreError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self.name() {
            Some(name) => write!(f, "store I/O error: errno {} ({name})", self.code),
            None => write!(f, "store I/O error: errno {}", self.code),
        }
    }
}

impl core::error::Error for StoreError {}

#[cfg(feature = "std")]
impl From<std::io::Error> for StoreError {
    /// Keeps the OS error code; an error without one gets its kind's errno.
    fn from(e: std::io::Error) -> Self {
        use std::io::ErrorKind as K;
        let code = e.raw_os_error().unwrap_or(match e.kind() {
            K::PermissionDenied => Self::EACCES,
            K::Interrupted => Self::EINTR,
            K::InvalidInput | K::InvalidData => Self::EINVAL,
            K::OutOfMemory => Self::ENOMEM,
            K::TimedOut => Self::ETIMEDOUT,
            K::Unsupported => Self::EOPNOTSUPP,
            K::StorageFull => Self::ENOSPC,
            K::FileTooLarge => Self::EFBIG,
            _ => Self::EIO,
        });
        Self::new(code)
    }
}

#[cfg(feature = "std")]
impl From<StoreError> for std::io::Error {
    fn from(e: StoreError) -> Self {
        std::io::Error::from_raw_os_error(e.code)
    }
}

#[cfg(all(test, not(pagemap_loom)))]
mod tests {
    use super::*;

    #[test]
    fn codes_are_kept_or_become_eio() {
        assert_eq!(StoreError::new(28).code(), 28);
        assert_eq!(StoreError::new(0).code(), StoreError::EIO);
        assert_eq!(StoreError::new(-3).code(), StoreError::EIO);
        assert_eq!(StoreError::new(4096).code(), StoreError::EIO);
    }

    #[cfg(feature = "std")]
    #[test]
    fn io_errors_convert_both_ways() {
        let e = StoreError::from(std::io::Error::from_raw_os_error(28));
        assert_eq!(e.code(), StoreError::ENOSPC);
        assert_eq!(e.kind(), std::io::ErrorKind::StorageFull);
        let e = StoreError::from(std::io::Error::from(std::io::ErrorKind::PermissionDenied));
        assert_eq!(e.kind(), std::io::ErrorKind::PermissionDenied);
        assert_eq!(
            std::io::Error::from(e).raw_os_error(),
            Some(StoreError::EACCES)
        );
    }

    #[test]
    fn errors_display_and_chain() {
        let e = Error::Write {
            index: 3,
            source: StoreError::new(StoreError::EIO),
        };
        assert!(e.to_string().contains("page 3"));
        assert!(e.to_string().contains("errno 5 (EIO)"));
        assert!(core::error::Error::source(&e).is_some());
    }
}
