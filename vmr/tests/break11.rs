//! break11: mapping scenarios of issue 11, varied (vmr).

#[allow(dead_code)]
mod common;

use std::sync::Arc;

use common::{Rig, PAGE};
use pagemap::{MemStore, StoreControl};
use vmr::{Fault, MapFlags, Prot};

fn file_of(bytes: u64) -> Rig {
    Rig::with_store(16, 2, Arc::new(MemStore::with_size(bytes)))
}

/// A CPU writes past the size in the last page; the file is then extended
/// by a write_at far past it (the old tail becomes a hole, never written by
/// write_at itself): the tail must read zero, through the mapping and on
/// disk.
#[test]
fn tail_zeroed_when_write_at_extends_past_a_hole() {
    let w = file_of(100);
    let (s, va) = w.mapped(3, Prot::RW, MapFlags::SHARED);
    w.write_byte(0, &s, va + 1000, 0xaa); // past the end
    assert_eq!(w.file.write_at(2 * PAGE + 5, b"z").unwrap(), 1);
    assert_eq!(
        w.read_byte(1, &s, va + 1000).unwrap(),
        0,
        "through the mapping"
    );
    assert!(s.msync(va, 3 * PAGE).unwrap().errors.is_empty());
    w.file.fsync().unwrap();
    assert_eq!(w.store.page(0).unwrap()[1000], 0, "on disk");
    assert_eq!(w.store.size().unwrap(), Some(2 * PAGE + 6));
}

/// Shrink into a mapped page, a CPU writes past the new size, then the
/// file is extended by set_size: zero there.
#[test]
fn write_past_new_size_after_shrink_then_extend_reads_zero() {
    let w = file_of(2 * PAGE);
    let (s, va) = w.mapped(2, Prot::RW, MapFlags::SHARED);
    w.write_byte(0, &s, va + 10, 1);
    w.file.set_size(100).unwrap();
    w.write_byte(0, &s, va + 2000, 0xbb); // past the new size
    assert!(matches!(
        w.read_byte(0, &s, va + PAGE),
        Err(Fault::BeyondEof { .. })
    ));
    w.file.set_size(2 * PAGE).unwrap();
    assert_eq!(w.read_byte(1, &s, va + 2000).unwrap(), 0);
    assert_eq!(w.read_byte(1, &s, va + 10).unwrap(), 1);
    // Page 1 is back, zeroes (it was cut).
    assert_eq!(w.read_byte(1, &s, va + PAGE + 3).unwrap(), 0);
    assert!(s.msync(va, 2 * PAGE).unwrap().errors.is_empty());
    let p0 = w.store.page(0).unwrap();
    assert_eq!((p0[10], p0[2000]), (1, 0));
}

/// A private (COW) copy of a page in a punched hole is kept; the shared
/// view reads zeroes; a truncate then discards the private copy (SIGBUS).
#[test]
fn punch_keeps_private_copy_truncate_drops_it() {
    let w = file_of(4 * PAGE);
    let (sh, vsh) = w.mapped(4, Prot::RW, MapFlags::SHARED);
    w.write_byte(0, &sh, vsh + PAGE + 1, 7);
    let (pr, vpr) = w.mapped(4, Prot::RW, MapFlags::PRIVATE);
    w.write_byte(1, &pr, vpr + PAGE + 2, 9); // COW copy of page 1
    w.file.punch_hole(PAGE, PAGE).unwrap();
    assert_eq!(
        w.read_byte(0, &sh, vsh + PAGE + 1).unwrap(),
        0,
        "shared sees the hole"
    );
    assert_eq!(
        w.read_byte(1, &pr, vpr + PAGE + 2).unwrap(),
        9,
        "private copy kept"
    );
    assert_eq!(
        w.read_byte(1, &pr, vpr + PAGE + 1).unwrap(),
        7,
        "its old bytes too"
    );
    w.file.set_size(PAGE).unwrap();
    assert!(matches!(
        w.read_byte(1, &pr, vpr + PAGE + 2),
        Err(Fault::BeyondEof { .. })
    ));
    assert_eq!(w.store.size().unwrap(), Some(PAGE));
}

/// Punch of the mapped partial last page's tail while a CPU wrote past the
/// size there: the size is kept, bytes below it in the hole are zero.
#[test]
fn punch_the_mapped_last_page() {
    let w = file_of(PAGE + 500);
    let (s, va) = w.mapped(2, Prot::RW, MapFlags::SHARED);
    w.write_byte(0, &s, va + PAGE + 10, 1);
    w.write_byte(0, &s, va + PAGE + 400, 2);
    w.write_byte(0, &s, va + PAGE + 3000, 3); // past the size
    w.file.punch_hole(PAGE + 300, 10_000).unwrap();
    assert_eq!(w.file.size(), PAGE + 500);
    assert_eq!(w.read_byte(1, &s, va + PAGE + 10).unwrap(), 1);
    assert_eq!(w.read_byte(1, &s, va + PAGE + 400).unwrap(), 0);
    assert!(s.msync(va, 2 * PAGE).unwrap().errors.is_empty());
    let p1 = w.store.page(1).unwrap();
    assert_eq!((p1[10], p1[400], p1[3000]), (1, 0, 0));
    assert_eq!(w.store.size().unwrap(), Some(PAGE + 500));
}
