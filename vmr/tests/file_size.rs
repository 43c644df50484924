//! The file size in bytes through mappings (issue 11): accesses to pages
//! wholly past the end are SIGBUS from the map's creation, a mapping never
//! changes the file's length, and bytes a mapping wrote past the size in
//! the last page never become file data (discarded at writeback, zeroed on
//! an extension).

#[allow(dead_code)]
mod common;

use std::sync::Arc;

use common::{Rig, PAGE};
use pagemap::{MemStore, StoreControl};
use vmr::{Fault, MapFlags, Prot};

/// A rig over a file-like store of `bytes` bytes.
fn file_of(bytes: u64) -> Rig {
    Rig::with_store(16, 2, Arc::new(MemStore::with_size(bytes)))
}

#[test]
fn access_past_the_end_of_a_fresh_map_is_sigbus_and_msync_never_extends() {
    let w = file_of(100);
    assert_eq!((w.file.size(), w.file.end()), (100, 1));
    let (s, va) = w.mapped(2, Prot::RW, MapFlags::SHARED);
    // Page 1 is wholly past the end: both accesses are SIGBUS.
    assert!(matches!(
        w.read_byte(0, &s, va + PAGE),
        Err(Fault::BeyondEof { .. })
    ));
    assert!(matches!(
        w.machine.cpu(1).write(&s, va + PAGE, b"x"),
        Err(Fault::BeyondEof { .. })
    ));
    // Page 0 works, inside the size and past it (the rest of the page).
    w.write_byte(0, &s, va + 5, 0x55);
    w.write_byte(0, &s, va + 1000, 0xaa);
    assert_eq!(w.read_byte(1, &s, va + 1000).unwrap(), 0xaa);
    let r = s.msync(va, 2 * PAGE).unwrap();
    assert!(r.errors.is_empty(), "{r:?}");
    assert_eq!(r.written, 1);
    // The file keeps its length; the byte past it was not written.
    assert_eq!(w.store.size().unwrap(), Some(100));
    let stored = w.store.page(0).unwrap();
    assert_eq!(stored[5], 0x55);
    assert_eq!(
        stored[1000], 0,
        "a mapping's bytes past the size are discarded"
    );
    assert_eq!(w.file.size(), 100);
}

#[test]
fn the_tail_on_extension_reads_zero_through_the_mapping_and_on_disk() {
    let w = file_of(100);
    let (s, va) = w.mapped(3, Prot::RW, MapFlags::SHARED);
    w.write_byte(0, &s, va + 5, 0x55); // file data
    w.write_byte(0, &s, va + 1000, 0xaa); // past the end: not file data
    w.file.set_size(3 * PAGE).unwrap();
    assert_eq!((w.file.size(), w.file.end()), (3 * PAGE, 3));
    assert_eq!(
        w.read_byte(1, &s, va + 1000).unwrap(),
        0,
        "zeroed on extension"
    );
    assert_eq!(
        w.read_byte(1, &s, va + 5).unwrap(),
        0x55,
        "the dirty bit was kept"
    );
    // Writable again (through page_mkwrite), and the new pages are mapped.
    w.write_byte(1, &s, va + 2000, 0x77);
    w.write_byte(1, &s, va + 2 * PAGE, 0x66);
    let r = s.msync(va, 3 * PAGE).unwrap();
    assert!(r.errors.is_empty(), "{r:?}");
    let stored = w.store.page(0).unwrap();
    assert_eq!((stored[5], stored[1000], stored[2000]), (0x55, 0, 0x77));
    assert_eq!(w.store.page(2).unwrap()[0], 0x66);
    assert_eq!(w.store.size().unwrap(), Some(3 * PAGE));
}

#[test]
fn write_at_over_a_mapped_partial_page_zeroes_its_tail_first() {
    let w = file_of(100);
    let (s, va) = w.mapped(2, Prot::RW, MapFlags::SHARED);
    w.write_byte(0, &s, va + 3000, 0xaa); // past the end
                                          // An append that lands past byte 3000: the gap is a hole of zeroes.
    assert_eq!(w.file.write_at(4000, b"tail").unwrap(), 4);
    assert_eq!(w.file.size(), 4004);
    assert_eq!(w.read_byte(0, &s, va + 3000).unwrap(), 0);
    assert_eq!(w.read_byte(0, &s, va + 4000).unwrap(), b't');
    assert!(w.file.writeback(..).errors.is_empty());
    let stored = w.store.page(0).unwrap();
    assert_eq!((stored[3000], &stored[4000..4004]), (0, &b"tail"[..]));
    assert_eq!(w.store.size().unwrap(), Some(4004));
}

#[test]
fn shrinking_into_a_mapped_page_keeps_the_bytes_below_the_size() {
    let w = file_of(2 * PAGE);
    let (s, va) = w.mapped(2, Prot::RW, MapFlags::SHARED);
    w.write_byte(0, &s, va + 10, 1);
    w.write_byte(0, &s, va + PAGE + 10, 2);
    w.write_byte(0, &s, va + 3000, 3);
    w.file.set_size(2000).unwrap();
    assert!(matches!(
        w.read_byte(0, &s, va + PAGE),
        Err(Fault::BeyondEof { .. })
    ));
    assert_eq!(
        w.read_byte(0, &s, va + 3000).unwrap(),
        0,
        "the cut tail is zeroed"
    );
    assert!(s.msync(va, PAGE).unwrap().errors.is_empty());
    let stored = w.store.page(0).unwrap();
    assert_eq!((stored[10], stored[3000]), (1, 0));
    assert_eq!(w.store.size().unwrap(), Some(2000));
}
