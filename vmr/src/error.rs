//! Errors of address-space operations and of faults.

use std::fmt;

/// Why an address-space operation (mmap, munmap, mprotect, madvise, fork)
/// was refused. A refused operation has changed nothing.
#[derive(Debug)]
#[non_exhaustive]
pub enum VmError {
    /// An address, length or file offset is not page-aligned.
    Misaligned {
        /// Which argument.
        what: &'static str,
        /// Its value.
        value: u64,
    },
    /// A length of zero.
    ZeroLength,
    /// `address + length` (or the file page range) overflows.
    Overflow,
    /// The range is outside user space.
    OutOfRange {
        /// Start of the range.
        addr: u64,
        /// Its length.
        len: u64,
    },
    /// A fixed mapping would overlap an existing one.
    Overlap {
        /// Start of the existing mapping.
        addr: u64,
    },
    /// Part of the range is not mapped (mprotect, madvise).
    NoMapping {
        /// First unmapped address.
        addr: u64,
    },
    /// No free range of virtual addresses is large enough.
    NoSpace,
    /// Exactly one of SHARED and PRIVATE must be given.
    InvalidFlags,
    /// The file's page map takes frames from another pool than this machine's.
    ForeignPool,
    /// Out of frames (fork's private copies, populate).
    OutOfMemory,
    /// Pre-faulting (populate, locked) failed.
    Populate(Box<crate::Fault>),
    /// Paging needs swap, and the machine has none ([`Machine::with_swap`](crate::Machine::with_swap)).
    NoSwap,
    /// Swap refused: full ([`pagemap::Error::SwapFull`]) or a page-out
    /// failed ([`pagemap::Error::SwapWrite`]: the page stays in memory).
    Swap(pagemap::Error),
    /// Part of the range is locked (mlock, MAP_LOCKED): MADV_DONTNEED and
    /// MADV_FREE are refused there (as Linux's EINVAL).
    Locked {
        /// First locked address.
        addr: u64,
    },
    /// MADV_FREE on memory that is not anonymous (as Linux's EINVAL).
    NotAnonymous {
        /// First such address.
        addr: u64,
    },
    /// A page of a [`page_in`](crate::AddressSpace::page_in) failed.
    PageIn(Box<crate::Fault>),
}

impl fmt::Display for VmError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            VmError::Misaligned { what, value } => {
                write!(f, "{what} {value:#x} is not page-aligned")
            }
            VmError::ZeroLength => write!(f, "zero length"),
            VmError::Overflow => write!(f, "range overflows"),
            VmError::OutOfRange { addr, len } => {
                write!(f, "range {addr:#x}+{len:#x} is outside user space")
            }
            VmError::Overlap { addr } => write!(f, "overlaps the mapping at {addr:#x}"),
            VmError::NoMapping { addr } => write!(f, "{addr:#x} is not mapped"),
            VmError::NoSpace => write!(f, "no free virtual address range is large enough"),
            VmError::InvalidFlags => write!(f, "exactly one of SHARED and PRIVATE is required"),
            VmError::ForeignPool => write!(f, "the file's frames come from another machine's pool"),
            VmError::OutOfMemory => write!(f, "out of page frames"),
            VmError::Populate(e) => write!(f, "populating the mapping failed: {e}"),
            VmError::NoSwap => write!(f, "the machine has no swap"),
            VmError::Swap(e) => write!(f, "swap: {e}"),
            VmError::Locked { addr } => write!(f, "{addr:#x} is locked in memory"),
            VmError::NotAnonymous { addr } => write!(f, "{addr:#x} is not anonymous memory"),
            VmError::PageIn(e) => write!(f, "paging in failed: {e}"),
        }
    }
}

impl std::error::Error for VmError {
    fn source(&self) -> Option<&(dyn std::error::Error + 'static)> {
        match self {
            VmError::Populate(e) | VmError::PageIn(e) => Some(&**e),
            VmError::Swap(e) => Some(e),
            _ => None,
        }
    }
}

/// The kind of memory access that faulted.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Access {
    /// A load.
    Read,
    /// A store.
    Write,
    /// An instruction fetch.
    Exec,
}

/// A fault the handler could not resolve (the simulated process would get
/// SIGSEGV or SIGBUS).
#[derive(Debug)]
#[non_exhaustive]
pub enum Fault {
    /// No mapping covers the address.
    NoMapping {
        /// Faulting address.
        va: u64,
    },
    /// The mapping does not allow this access.
    Protection {
        /// Faulting address.
        va: u64,
        /// What was attempted.
        access: Access,
    },
    /// Reading the page failed.
    Io {
        /// Faulting address.
        va: u64,
        /// What the page map said.
        source: pagemap::Error,
    },
    /// No frame for a private copy.
    OutOfMemory {
        /// Faulting address.
        va: u64,
    },
    /// The access kept faulting (the page was taken away again each time).
    Livelock {
        /// Faulting address.
        va: u64,
    },
    /// The page is beyond the end of the file (it was truncated): SIGBUS.
    BeyondEof {
        /// Faulting address.
        va: u64,
    },
}

impl fmt::Display for Fault {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Fault::NoMapping { va } => write!(f, "no mapping at {va:#x}"),
            Fault::Protection { va, access } => {
                write!(f, "{access:?} access to {va:#x} not allowed")
            }
            Fault::Io { va, source } => write!(f, "I/O error faulting {va:#x}: {source}"),
            Fault::OutOfMemory { va } => write!(f, "out of frames faulting {va:#x}"),
            Fault::Livelock { va } => write!(f, "access to {va:#x} keeps faulting"),
            Fault::BeyondEof { va } => write!(f, "{va:#x} is beyond the end of the file"),
        }
    }
}

impl std::error::Error for Fault {
    fn source(&self) -> Option<&(dyn std::error::Error + 'static)> {
        match self {
            Fault::Io { source, .. } => Some(source),
            _ => None,
        }
    }
}
