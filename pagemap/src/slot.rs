//! The leaf slot word: `{ refcount | flags | frame id }` in one `AtomicU64`.
//!
//! ```text
//!  63          40 39    36   35     34      33     32    31              0
//! +--------------+--------+--------+-------+------+-------+----------------+
//! |   refcount   |mapping |ACCESSED|LOADING|YANKED|REMOVAL|    frame id    |
//! +--------------+--------+--------+-------+------+-------+----------------+
//! ```
//!
//! * `refcount` counts *holders of the slot* (lookups, loaders, writers), not
//!   page krefs. A mapped PTE is not a holder (a weak reference, as in Akaros).
//!   Its range has three parts: users may take up to [`MAX_REFS`]; the
//!   library's own short holds (an unmapper holding a page whose dirty bit it
//!   took, writeback, a remover's write-back, a fault) may go on
//!   up to [`MAX_HELD`], so no path that must finish ever waits for a user's
//!   put (Linux's `try_get_page` keeps the same kind of headroom); the top
//!   bit is a guard for transient additions.
//! * `mapping` counts the holders that are faults between their end-of-file
//!   check and their page table entry install ([`get_for_map`]; each is also
//!   counted in `refcount`). Truncate waits for it to drain on every page it
//!   cuts (see [`crate::PageMap::map_page`]).
//! * `REMOVAL` is set by a remover on an unreferenced page; any new holder
//!   clears it, which aborts that page's removal.
//! * `YANKED` marks a page that a remover has won (final CAS done) and is
//!   about to clear from the tree under the writer lock. Lookups treat it as
//!   absent; nothing else may change it. A truncate also yanks a page that
//!   is still held ([`detach`]): it moves the count into the frame first
//!   (DETACHED), and holders who find their frame gone from the word (or
//!   yanked) count there instead ([`Slot::put_of`]).
//! * `LOADING` mirrors "not up to date": set by the loader at insert, cleared
//!   once the read succeeded. It lets [`find`](crate::PageMap::find) decide
//!   without touching the frame (one cache miss fewer on the hot path).
//! * `ACCESSED` is the page's referenced bit (Linux's `PG_referenced`, the
//!   CLOCK bit): a user's hit ([`Slot::get_fast`]) sets it if it is clear
//!   (no second write when it is already set: the hit's own add already owns
//!   the line), and reclaim tests and clears it
//!   ([`Slot::test_and_clear_accessed`]) when the eviction policy considers
//!   the page. An insert leaves it clear, so a page read once and never hit
//!   looks unreferenced. A hint: every access to it is Relaxed.
//! * `EMPTY` is the all-zero word (frame id 0 is never allocated).
//!
//! A word is a [`SlotWord`], decoded only by its accessors (page indices
//! stay plain `u64`s, so the two cannot be mixed up). Every transition is a
//! pure function `old -> Result<new, _>` on it, applied by a CAS loop in
//! [`Slot`]; the functions are unit-tested on their own.

use core::fmt;

use crate::frame::FrameId;
use crate::sync::{AtomicU64, Ordering};

/// Bits of the frame id.
pub const FRAME_BITS: u32 = 32;
/// Bits of the holder count: the top bit a guard (see [`MAX_HELD`]), the
/// next a reserve for the library's own holds (see [`MAX_REFS`]). Under loom
/// the field is 5 bits so that the overflow model runs with a handful of
/// holders.
#[cfg(not(pagemap_loom))]
pub const REF_BITS: u32 = 24;
/// Bits of the holder count (loom: tiny, see above).
#[cfg(pagemap_loom)]
pub const REF_BITS: u32 = 5;

const FLAG_SHIFT: u32 = FRAME_BITS;
const REF_SHIFT: u32 = 64 - REF_BITS;

/// Mask of the frame id field.
pub const FRAME_MASK: u64 = (1 << FRAME_BITS) - 1;
/// Set while a remover has marked this unreferenced page.
pub const REMOVAL: u64 = 1 << FLAG_SHIFT;
/// Set once a remover owns the page (lookups see it as absent).
pub const YANKED: u64 = 1 << (FLAG_SHIFT + 1);
/// Set while the page's contents are not (yet) up to date.
pub const LOADING: u64 = 1 << (FLAG_SHIFT + 2);
/// All flag bits of the removal and load protocols.
pub const FLAGS_MASK: u64 = REMOVAL | YANKED | LOADING;
/// The referenced bit: a user hit the page since reclaim last looked.
pub const ACCESSED: u64 = 1 << (FLAG_SHIFT + 3);
/// Bits of the mapping count (see the module docs).
pub const MAPPING_BITS: u32 = 4;
const MAPPING_SHIFT: u32 = FLAG_SHIFT + 4;
/// One fault between its end check and its install.
pub const MAPPING_ONE: u64 = 1 << MAPPING_SHIFT;
/// Mask of the mapping count field.
pub const MAPPING_MASK: u64 = ((1 << MAPPING_BITS) - 1) << MAPPING_SHIFT;
/// The most faults one page can have between check and install at once; a
/// further one waits for one of them ([`Refused::Busy`]).
pub const MAX_MAPPING: u64 = (1 << MAPPING_BITS) - 1;
/// One holder.
pub const REF_ONE: u64 = 1 << REF_SHIFT;
/// Mask of the holder count field.
pub const REF_MASK: u64 = !0 << REF_SHIFT;
/// The most holders a page can have through the user-facing gets
/// ([`PageMap::find`](crate::PageMap::find), [`load`](crate::PageMap::load),
/// [`PageRef::try_clone`](crate::PageRef::try_clone); a fault's
/// [`map_page`](crate::PageMap::map_page) draws on the reserve instead);
/// one more is refused with
/// [`Error::RefcountOverflow`](crate::Error::RefcountOverflow) (4,194,303;
/// 7 under loom).
pub const MAX_REFS: u64 = (1 << (REF_BITS - 2)) - 1;
/// The most holders a page can have counting the library's own short holds
/// (an unmapper holding a page whose dirty bit it took, writeback, a
/// remover's write-back, a fault's `map_page`), which may use the reserve between
/// [`MAX_REFS`] and this (4,194,304 more): a user at its limit can never stop
/// an unmapper, a writeback or a truncate (Linux's `try_get_page` keeps the
/// same kind of headroom). The reserve is spent only by holds that end within
/// one operation, bounded by the threads in such operations, so exhausting it
/// is a bug (the reserved gets' callers assert). The count field's top bit,
/// above this, is a guard: a lookup adds before it checks, and the guard
/// leaves room for those transient additions without the count ever wrapping
/// to zero, which would let a remover free a held page.
pub const MAX_HELD: u64 = (1 << (REF_BITS - 1)) - 1;

/// Which limit a get checks (see [`MAX_REFS`] and [`MAX_HELD`]).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Limit {
    /// A user's hold: refused at [`MAX_REFS`].
    User,
    /// The library's own short hold: may use the reserve up to [`MAX_HELD`].
    Reserved,
}

impl Limit {
    /// The most holders this kind of get allows.
    #[inline]
    pub const fn max(self) -> u64 {
        match self {
            Limit::User => MAX_REFS,
            Limit::Reserved => MAX_HELD,
        }
    }
}

// The fields must fit side by side in 64 bits without overlap.
const _: () = assert!(
    MAPPING_SHIFT + MAPPING_BITS <= REF_SHIFT,
    "flags overlap the refcount"
);
const _: () = assert!(MAPPING_MASK & (FLAGS_MASK | REF_MASK | FRAME_MASK) == 0);
const _: () = assert!(ACCESSED & (MAPPING_MASK | FLAGS_MASK | REF_MASK | FRAME_MASK) == 0);
const _: () = assert!(FRAME_MASK & FLAGS_MASK == 0 && FLAGS_MASK & REF_MASK == 0);
const _: () = assert!(REF_BITS >= 3 && REF_BITS <= 31);
// A frame id is a `u32` (`FramePool::MAX_CAPACITY` relies on it).
const _: () = assert!(FRAME_MASK == u32::MAX as u64);
const _: () = assert!(MAX_REFS < MAX_HELD && MAX_HELD < (1 << REF_BITS) - 1);

/// Why a transition was refused.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Refused {
    /// No page in the slot (empty or yanked).
    Absent,
    /// The holder count is at the get's limit ([`MAX_REFS`] or [`MAX_HELD`]).
    Overflow,
    /// The page has holders, is loading or is not marked, as the transition requires.
    Busy,
    /// Only from [`Slot::get_fast`]: refused, and undoing its count found
    /// the page detached meanwhile, so the count was `frame`'s orphan
    /// count: the caller must put it there ([`crate::PageMap`] frees the
    /// frame if it was the last). Lookups treat it as absent.
    Detached(FrameId),
}

/// One slot word: `{ refcount | mapping | flags | frame id }` (see the
/// module docs). Its fields are read only through the accessors below, the
/// one decoder of the layout; `Debug` prints them decoded.
#[repr(transparent)]
#[derive(Clone, Copy, PartialEq, Eq)]
pub(crate) struct SlotWord(u64);

impl SlotWord {
    /// The empty slot.
    pub(crate) const EMPTY: SlotWord = SlotWord(0);

    /// The frame id field (0 when empty).
    #[inline]
    const fn frame_id(self) -> u32 {
        (self.0 & FRAME_MASK) as u32
    }

    /// The frame of the page in the slot (`None` when empty; a yanked
    /// word still names its frame).
    #[inline]
    pub(crate) fn frame(self) -> Option<FrameId> {
        FrameId::new(self.frame_id())
    }

    /// The frame of a word that holds a page.
    ///
    /// # Panics
    /// If the word is empty.
    #[inline]
    #[track_caller]
    pub(crate) fn present_frame(self) -> FrameId {
        self.frame().expect("present slot has a frame")
    }

    /// Holder count.
    #[inline]
    pub(crate) const fn refs(self) -> u64 {
        self.0 >> REF_SHIFT
    }

    /// Mapping count: faults between their end check and their install
    /// (each also a holder).
    #[inline]
    pub(crate) const fn mapping(self) -> u64 {
        (self.0 & MAPPING_MASK) >> MAPPING_SHIFT
    }

    /// `REMOVAL`: a remover marked the page and nobody took it since.
    #[inline]
    pub(crate) const fn is_removal(self) -> bool {
        self.0 & REMOVAL != 0
    }

    /// `YANKED`: a remover won the page (lookups see it as absent).
    #[inline]
    pub(crate) const fn is_yanked(self) -> bool {
        self.0 & YANKED != 0
    }

    /// `LOADING`: the page's contents are not (yet) up to date.
    #[inline]
    pub(crate) const fn is_loading(self) -> bool {
        self.0 & LOADING != 0
    }

    /// `ACCESSED`: a user hit the page since reclaim last cleared it.
    #[inline]
    pub(crate) const fn is_accessed(self) -> bool {
        self.0 & ACCESSED != 0
    }

    /// Whether the word holds a page that lookups may take.
    #[inline]
    pub(crate) const fn is_present(self) -> bool {
        self.frame_id() != 0 && !self.is_yanked()
    }
}

/// The fields, decoded: `SlotWord { refs: 2, mapping: 1, removal, frame: Some(f17) }`
/// (flags only when set).
impl fmt::Debug for SlotWord {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "SlotWord {{ refs: {}, mapping: {}",
            self.refs(),
            self.mapping()
        )?;
        for (set, name) in [
            (self.is_removal(), "removal"),
            (self.is_yanked(), "yanked"),
            (self.is_loading(), "loading"),
            (self.is_accessed(), "accessed"),
        ] {
            if set {
                write!(f, ", {name}")?;
            }
        }
        write!(f, ", frame: {:?} }}", self.frame())
    }
}

/// The word a fresh insert publishes: one holder (the inserter), `LOADING`.
#[inline]
pub fn inserted(frame_id: u32, loading: bool) -> SlotWord {
    assert!(frame_id != 0, "frame id 0 is the empty slot");
    SlotWord(REF_ONE | if loading { LOADING } else { 0 } | frame_id as u64)
}

/// find: one more holder; clears `REMOVAL` so that a removal in progress
/// aborts. Refused at [`MAX_REFS`].
#[inline]
pub fn get(word: SlotWord) -> Result<SlotWord, Refused> {
    get_within(word, Limit::User)
}

/// [`get`] for the library's own short holds: may use the reserve up to
/// [`MAX_HELD`].
#[inline]
pub fn get_reserved(word: SlotWord) -> Result<SlotWord, Refused> {
    get_within(word, Limit::Reserved)
}

#[inline]
fn get_within(word: SlotWord, limit: Limit) -> Result<SlotWord, Refused> {
    if !word.is_present() {
        return Err(Refused::Absent);
    }
    if word.refs() >= limit.max() {
        return Err(Refused::Overflow);
    }
    Ok(SlotWord((word.0 & !REMOVAL) + REF_ONE))
}

/// put: one holder fewer. Underflow is a bug in the caller.
// The definition its atomic form (`Slot`) is tested against.
#[cfg_attr(any(not(test), pagemap_loom), allow(dead_code))]
#[inline]
pub fn put(word: SlotWord) -> SlotWord {
    assert!(word.refs() > 0, "slot put with no holder: {word:?}");
    SlotWord(word.0 - REF_ONE)
}

/// A fault's get ([`crate::PageMap::map_page`]): one more holder (from the
/// reserve: a fault's hold lasts one callback) and one more mapping, for an
/// up-to-date page only; clears `REMOVAL` as [`get`] does. Refused with
/// [`Refused::Busy`] at [`MAX_MAPPING`] (the caller waits for one of those
/// callbacks to return).
#[inline]
pub fn get_for_map(word: SlotWord) -> Result<SlotWord, Refused> {
    if !word.is_present() || word.is_loading() {
        return Err(Refused::Absent);
    }
    if word.refs() >= MAX_HELD {
        return Err(Refused::Overflow);
    }
    if word.mapping() >= MAX_MAPPING {
        return Err(Refused::Busy);
    }
    Ok(SlotWord((word.0 & !REMOVAL) + REF_ONE + MAPPING_ONE))
}

/// The put of a [`get_for_map`]: one holder and one mapping fewer.
// The definition its atomic form (`Slot`) is tested against.
#[cfg_attr(any(not(test), pagemap_loom), allow(dead_code))]
#[inline]
pub fn put_mapping(word: SlotWord) -> SlotWord {
    assert!(
        word.refs() > 0 && word.mapping() > 0,
        "mapping put with no mapping holder: {word:?}"
    );
    SlotWord(word.0 - REF_ONE - MAPPING_ONE)
}

/// mark for removal: `{0, frame}` -> `{0, REMOVAL, frame}`.
#[inline]
pub fn mark_removal(word: SlotWord) -> Result<SlotWord, Refused> {
    if !word.is_present() {
        return Err(Refused::Absent);
    }
    if word.refs() != 0 {
        return Err(Refused::Busy);
    }
    Ok(SlotWord(word.0 | REMOVAL))
}

/// eviction's mark: as [`mark_removal`], and refused ([`Refused::Busy`])
/// for a page still loading or hit since reclaim cleared its `ACCESSED`
/// bit (it was chosen as unreferenced; a hit since makes it referenced).
#[inline]
pub fn mark_evict(word: SlotWord) -> Result<SlotWord, Refused> {
    if word.is_present() && (word.is_loading() || word.is_accessed()) {
        return Err(Refused::Busy);
    }
    mark_removal(word)
}

/// truncate, detaching a held page: `{n, flags, frame}` -> `YANKED | frame`
/// (the `n` holders move to the frame's orphan count, which the caller set
/// to `n` first). Refused ([`Refused::Busy`]) while a fault is in its
/// window (its hold is put with [`Slot::put_mapping`], which must find it
/// in the slot): the caller waits for those, which see the new end and
/// leave. Transient counts of refused [`Slot::get_fast`]s on the present
/// word are in `n` too; their undo is a [`Slot::put_of`], so they leave
/// the orphan count as holders do.
#[inline]
pub fn detach(word: SlotWord) -> Result<SlotWord, Refused> {
    if !word.is_present() {
        return Err(Refused::Absent);
    }
    if word.mapping() != 0 {
        return Err(Refused::Busy);
    }
    Ok(SlotWord(YANKED | (word.0 & FRAME_MASK)))
}

/// Whether the word still holds the page of `frame` for its holders (not
/// yanked): a holder of `frame` who finds anything else was detached.
#[inline]
pub(crate) fn holds(word: SlotWord, frame: FrameId) -> bool {
    word.frame() == Some(frame) && !word.is_yanked()
}

/// The remover's own hold on a page it marked (to write it back): one more
/// holder, REMOVAL kept. Any other holder clears REMOVAL as usual, so after
/// its put the remover can tell whether anyone else came (yank needs zero
/// holders, so the page cannot go while held).
#[inline]
pub fn get_marked(word: SlotWord) -> Result<SlotWord, Refused> {
    if !word.is_present() {
        return Err(Refused::Absent);
    }
    if !word.is_removal() {
        return Err(Refused::Busy);
    }
    if word.refs() >= MAX_HELD {
        return Err(Refused::Overflow);
    }
    Ok(SlotWord(word.0 + REF_ONE))
}

/// Take back a removal mark the remover itself set (no-op if a holder cleared it).
#[inline]
pub fn unmark_removal(word: SlotWord) -> SlotWord {
    SlotWord(word.0 & !REMOVAL)
}

/// final removal: `{0, REMOVAL, frame}` -> `YANKED | frame`.
///
/// Refused if anyone took the page since it was marked (they cleared
/// `REMOVAL`), even if they already let go again.
#[inline]
pub fn yank(word: SlotWord) -> Result<SlotWord, Refused> {
    if !word.is_present() {
        return Err(Refused::Absent);
    }
    if word.refs() != 0 || !word.is_removal() {
        return Err(Refused::Busy);
    }
    Ok(SlotWord(YANKED | (word.0 & FRAME_MASK)))
}

/// The loader's read finished: the page is up to date.
// The definition its atomic form (`Slot`) is tested against.
#[cfg_attr(any(not(test), pagemap_loom), allow(dead_code))]
#[inline]
pub fn loaded(word: SlotWord) -> SlotWord {
    debug_assert!(word.is_present() && word.refs() > 0);
    SlotWord(word.0 & !LOADING)
}

/// A put with no holder: a bug in the caller, and unsound to go on (a
/// remover could free a held page). Out of line: the put stays short.
#[cold]
#[inline(never)]
#[track_caller]
fn no_holder(word: SlotWord) -> ! {
    panic!("slot put with no holder: {word:?}")
}

/// The slot word as it sits in a leaf. All transitions go through here.
#[repr(transparent)]
#[derive(Debug, Default)]
pub struct Slot(AtomicU64);

impl Slot {
    /// An empty slot.
    #[cfg_attr(any(not(test), pagemap_loom), allow(dead_code))]
    pub fn new() -> Self {
        Self(AtomicU64::new(SlotWord::EMPTY.0))
    }

    /// The raw word (the radix tree keeps child pointers in interior slots).
    #[inline]
    pub(crate) fn raw(&self) -> &AtomicU64 {
        &self.0
    }

    /// Current word. Acquire: pairs with the Release that published it, so a
    /// reader who sees a frame id also sees that frame's metadata.
    #[inline]
    pub fn load(&self) -> SlotWord {
        SlotWord(self.0.load(Ordering::Acquire))
    }

    /// Applies `f` by CAS until it succeeds or refuses; returns `(old, new)`.
    ///
    /// AcqRel on success: the Acquire pairs with the insert's Release (frame
    /// metadata visible) and with a remover's CAS; the Release orders this
    /// holder's change before later transitions by others.
    #[inline]
    pub fn update(
        &self,
        mut f: impl FnMut(SlotWord) -> Result<SlotWord, Refused>,
    ) -> Result<(SlotWord, SlotWord), Refused> {
        let mut old = SlotWord(self.0.load(Ordering::Acquire));
        loop {
            let new = f(old)?;
            match self
                .0
                .compare_exchange_weak(old.0, new.0, Ordering::AcqRel, Ordering::Acquire)
            {
                Ok(_) => return Ok((old, new)),
                Err(seen) => old = SlotWord(seen),
            }
        }
    }

    /// Reclaim's look at the referenced bit of the page in `frame`: clears
    /// `ACCESSED` and says whether it was set; `None` if the slot no
    /// longer holds `frame` (or holds it yanked). Relaxed: the bit is a
    /// hint; the eviction that may follow decides with its own CAS
    /// ([`mark_evict`]).
    pub fn test_and_clear_accessed(&self, frame: FrameId) -> Option<(SlotWord, bool)> {
        let mut old = SlotWord(self.0.load(Ordering::Relaxed));
        loop {
            if old.frame() != Some(frame) || !old.is_present() {
                return None;
            }
            if !old.is_accessed() {
                return Some((old, false));
            }
            match self.0.compare_exchange_weak(
                old.0,
                old.0 & !ACCESSED,
                Ordering::Relaxed,
                Ordering::Relaxed,
            ) {
                Ok(_) => return Some((old, true)),
                Err(seen) => old = SlotWord(seen),
            }
        }
    }

    /// find's `get` as one `fetch_add` instead of a CAS loop: under contention
    /// a CAS re-reads and retries, a `fetch_add` moves the line once.
    ///
    /// It adds first and checks after. When the old word does not allow the
    /// get (absent, yanked, loading unless `allow_loading`, or at
    /// `limit`'s maximum) it subtracts again and returns the refusal; meanwhile
    /// the extra count only makes removers back off (they need a count of
    /// zero), and publishing into an empty slot or clearing a yanked one
    /// waits for such transient counts to drain. When it allows it, the
    /// result equals [`get`]'s: REMOVAL is cleared after the add, while our
    /// count already stops a yank. Returns the word as of our add.
    ///
    /// Acquire: pairs with the insert's Release publish (frame metadata) and
    /// the loader's Release [`set_loaded`](Self::set_loaded) (contents).
    #[inline]
    pub fn get_fast(&self, allow_loading: bool, limit: Limit) -> Result<SlotWord, Refused> {
        let old = SlotWord(self.0.fetch_add(REF_ONE, Ordering::Acquire));
        let refused = if !old.is_present() || (!allow_loading && old.is_loading()) {
            Some(Refused::Absent)
        } else if old.refs() >= limit.max() {
            Some(Refused::Overflow)
        } else {
            None
        };
        if let Some(why) = refused {
            match old.frame() {
                // A present word (loading, or at the limit): a truncate may
                // have detached the page since, moving our count into the
                // frame, so the undo is a holder's put.
                Some(frame) if old.is_present() => {
                    if self.sub_of(frame, false).is_err() {
                        return Err(Refused::Detached(frame));
                    }
                }
                // Empty or yanked: publish and clear wait for this to
                // drain. Relaxed: nothing was published through this count.
                _ => {
                    self.0.fetch_sub(REF_ONE, Ordering::Relaxed);
                }
            }
            return Err(why);
        }
        debug_assert!(old.refs() + 1 < 1 << REF_BITS);
        let hit = limit == Limit::User && !old.is_accessed();
        if old.is_removal() {
            // A new user aborts a removal in progress (and a user's get is
            // a hit, as below; the word returned is as of our add, as there).
            let now = self.0.fetch_and(!REMOVAL, Ordering::AcqRel) & !REMOVAL;
            if hit {
                self.mark_accessed(old.present_frame());
            }
            return Ok(SlotWord(now));
        }
        if hit {
            self.mark_accessed(old.present_frame());
        }
        Ok(SlotWord(old.0 + REF_ONE))
    }

    /// A user's hit marks the page in `frame` referenced, once: a page
    /// already marked costs no second write. Only while the slot still holds
    /// `frame`, present: our count keeps a remover away, but a truncate may
    /// detach the page meanwhile and clear the slot, and a bit set on the
    /// empty word would leave it neither empty nor present, refused by every
    /// insert and lookup (the soak test hung on such a slot once, when this
    /// was a `fetch_or`). The frame cannot come back to this slot while we
    /// hold it, so its id tells. Relaxed: a hint for reclaim, which publishes
    /// nothing through it.
    #[inline]
    fn mark_accessed(&self, frame: FrameId) {
        let mut w = SlotWord(self.0.load(Ordering::Relaxed));
        while w.frame() == Some(frame) && w.is_present() && !w.is_accessed() {
            match self.0.compare_exchange_weak(
                w.0,
                w.0 | ACCESSED,
                Ordering::Relaxed,
                Ordering::Relaxed,
            ) {
                Ok(_) => return,
                Err(seen) => w = SlotWord(seen),
            }
        }
    }

    /// A holder's put of the page in `frame`: one CAS while the slot holds
    /// it; `Err(())` if a truncate detached it (the slot no longer holds
    /// `frame`, or holds it yanked), and then nothing was changed here: the
    /// caller puts the frame's orphan count instead. The frame cannot come
    /// back into this slot meanwhile (it is not freed while we hold it), so
    /// the frame id tells the two apart.
    ///
    /// Acquire on the loads: pairs with the detach CAS (and the Release
    /// clear or publish after it), so a put that sees the page gone also
    /// sees the orphan count set before the detach. Release on the CAS:
    /// everything the holder did to the page happens-before a remover that
    /// later sees the count at zero.
    #[inline(always)]
    pub fn put_of(&self, frame: FrameId) -> Result<SlotWord, ()> {
        self.sub_of(frame, true)
    }

    /// [`put_of`](Self::put_of); `checked: false` for the undo of a refused
    /// [`get_fast`](Self::get_fast), whose add may have carried out of the
    /// guard bit (the word wraps back as a `fetch_sub` would).
    #[inline(always)]
    fn sub_of(&self, frame: FrameId, checked: bool) -> Result<SlotWord, ()> {
        // `holds` as one masked compare (the hot path: every put).
        let want = u64::from(frame.get());
        let mut old = SlotWord(self.0.load(Ordering::Acquire));
        loop {
            if old.0 & (FRAME_MASK | YANKED) != want {
                return Err(());
            }
            // refs > 0, as one compare (the count is the top field).
            if checked && old.0 < REF_ONE {
                no_holder(old);
            }
            let new = SlotWord(old.0.wrapping_sub(REF_ONE));
            match self
                .0
                .compare_exchange_weak(old.0, new.0, Ordering::Release, Ordering::Acquire)
            {
                Ok(_) => return Ok(new),
                Err(seen) => old = SlotWord(seen),
            }
        }
    }

    /// A holder's [`get`] of the page in `frame` (`try_clone`): `Err(None)`
    /// if the page was detached (the caller counts on the frame instead);
    /// `Err(Some(Overflow))` at the user limit. AcqRel, as [`update`](Self::update).
    #[inline]
    pub fn get_of(&self, frame: FrameId) -> Result<SlotWord, Option<Refused>> {
        let mut old = SlotWord(self.0.load(Ordering::Acquire));
        loop {
            if !holds(old, frame) {
                return Err(None);
            }
            let new = get(old).map_err(Some)?;
            match self
                .0
                .compare_exchange_weak(old.0, new.0, Ordering::AcqRel, Ordering::Acquire)
            {
                Ok(_) => return Ok(new),
                Err(seen) => old = SlotWord(seen),
            }
        }
    }

    /// put as one `fetch_sub` (the refcount is the top field, so no carry
    /// reaches the other fields), for a hold that no truncate can detach:
    /// the remover's own ([`get_marked`]: truncate is a remover, and one
    /// remover runs at a time). Release: everything the holder did to the
    /// page happens-before a remover that later sees the count at zero.
    #[inline]
    pub fn put(&self) -> SlotWord {
        let old = SlotWord(self.0.fetch_sub(REF_ONE, Ordering::Release));
        // Underflow wrapped the field: unsound to go on (a remover could free a held page).
        assert!(old.refs() > 0, "slot put with no holder: {old:?}");
        SlotWord(old.0 - REF_ONE)
    }

    /// [`get_for_map`] by CAS, waiting (spinning) while the page has
    /// [`MAX_MAPPING`] faults in their window. SeqCst: the first half of a
    /// store-buffering pair with truncate (this RMW, then the fault's load of
    /// the end of file; truncate stores the end, then loads this word): one
    /// of the two sees the other (see [`crate::PageMap::map_page`]).
    // Tested against its definition; the page map uses `get_for_map_of`.
    #[cfg_attr(any(not(test), pagemap_loom), allow(dead_code))]
    #[inline]
    pub fn get_for_map(&self) -> Result<SlotWord, Refused> {
        self.get_for_map_of(None)
    }

    /// [`get_for_map`](Self::get_for_map), refused ([`Refused::Absent`])
    /// unless the slot holds `frame` (if given): a refault takes the page an
    /// entry still names, never a page that replaced it, and so never
    /// clears another page's `REMOVAL`. Same orderings.
    #[inline]
    pub fn get_for_map_of(&self, frame: Option<u32>) -> Result<SlotWord, Refused> {
        // A refault told "refused" clears its entry next, which must not
        // come before the reap that preceded the yank it saw: Acquire on
        // its reads pairs with the yank's release (`Slot::update`'s AcqRel
        // CAS), and so orders the reap's entry update before the fault's.
        // A plain fault acts on no refusal: Relaxed.
        let read = if frame.is_some() {
            Ordering::Acquire
        } else {
            Ordering::Relaxed
        };
        let mut old = SlotWord(self.0.load(read));
        loop {
            if frame.is_some_and(|f| old.frame_id() != f) {
                return Err(Refused::Absent);
            }
            let new = match get_for_map(old) {
                Ok(new) => new,
                Err(Refused::Busy) => {
                    crate::sync::spin_hint();
                    old = SlotWord(self.0.load(read));
                    continue;
                }
                Err(why) => return Err(why),
            };
            match crate::sync::sb::compare_exchange_weak(
                &self.0,
                old.0,
                new.0,
                Ordering::SeqCst,
                read,
            ) {
                Ok(_) => return Ok(new),
                Err(seen) => old = SlotWord(seen),
            }
        }
    }

    /// [`put_mapping`] as one `fetch_sub` (both fields are non-zero, so no
    /// borrow crosses a field). Release: the page table entry installed
    /// before it is visible to a truncate that sees the mapping count drop
    /// (its Acquire load in [`load_seqcst`](Self::load_seqcst)), and so to
    /// the zap that follows.
    #[inline]
    pub fn put_mapping(&self) {
        let old = SlotWord(self.0.fetch_sub(REF_ONE + MAPPING_ONE, Ordering::Release));
        assert!(
            old.refs() > 0 && old.mapping() > 0,
            "mapping put with no mapping holder: {old:?}"
        );
    }

    /// The word, read as the second half of truncate's store-buffering pair
    /// (see [`get_for_map`](Self::get_for_map)). SeqCst (so also Acquire).
    #[inline]
    pub fn load_seqcst(&self) -> SlotWord {
        SlotWord(crate::sync::sb::load(&self.0, Ordering::SeqCst))
    }

    /// Clears `LOADING` once the page is up to date. Release: pairs with the
    /// Acquire of a later `get`, which then sees the page contents.
    #[inline]
    pub fn set_loaded(&self) {
        self.0.fetch_and(!LOADING, Ordering::Release);
    }

    /// Whether the word is empty but for transient counts of refused
    /// [`get_fast`](Self::get_fast)s (which will drain).
    #[inline]
    pub fn is_vacant(word: SlotWord) -> bool {
        word.0 & !REF_MASK == SlotWord::EMPTY.0
    }

    /// Publishes a word into an empty slot (writer lock held), waiting for
    /// transient counts to drain so none is overwritten. Release: the
    /// frame's metadata, written before, is visible to whoever sees the word.
    #[inline]
    pub fn publish(&self, word: SlotWord) {
        while let Err(seen) = self.0.compare_exchange_weak(
            SlotWord::EMPTY.0,
            word.0,
            Ordering::Release,
            Ordering::Relaxed,
        ) {
            let seen = SlotWord(seen);
            assert!(
                Self::is_vacant(seen),
                "publishing into an occupied slot: {seen:?}"
            );
            crate::sync::spin_hint();
        }
    }

    /// Empties a yanked slot (writer lock held; the remover owns the word),
    /// waiting for transient counts to drain so none is lost. Returns the
    /// frame it named.
    #[inline]
    pub fn clear_yanked(&self) -> Option<FrameId> {
        let old = SlotWord(self.0.load(Ordering::Relaxed));
        assert!(
            old.is_yanked(),
            "clearing a slot that was not yanked: {old:?}"
        );
        let yanked = old.0 & !REF_MASK;
        while let Err(seen) = self.0.compare_exchange_weak(
            yanked,
            SlotWord::EMPTY.0,
            Ordering::AcqRel,
            Ordering::Relaxed,
        ) {
            assert_eq!(seen & !REF_MASK, yanked, "a yanked slot changed");
            crate::sync::spin_hint();
        }
        SlotWord(yanked).frame()
    }
}

#[cfg(all(test, not(pagemap_loom)))]
mod tests {
    use super::*;

    #[test]
    fn empty_is_zero_and_absent() {
        assert_eq!(SlotWord::EMPTY.0, 0);
        assert!(!SlotWord::EMPTY.is_present());
        assert_eq!(SlotWord::EMPTY.frame(), None);
        assert_eq!(get(SlotWord::EMPTY), Err(Refused::Absent));
        assert_eq!(mark_removal(SlotWord::EMPTY), Err(Refused::Absent));
    }

    #[test]
    fn yanked_is_explicit_and_absent() {
        let w = inserted(7, false);
        let w = put(w);
        let w = mark_removal(w).unwrap();
        let y = yank(w).unwrap();
        assert_eq!(y, SlotWord(YANKED | 7));
        assert_eq!(y.frame(), FrameId::new(7));
        assert!(y.is_yanked() && !y.is_present());
        assert_eq!(get(y), Err(Refused::Absent));
    }

    #[test]
    fn get_clears_removal_and_yank_then_fails() {
        let w = mark_removal(put(inserted(3, false))).unwrap();
        let held = get(w).unwrap();
        assert!(!held.is_removal());
        assert_eq!(held.refs(), 1);
        let released = put(held);
        // Refcount is back to zero but REMOVAL is gone: the removal aborts.
        assert_eq!(yank(released), Err(Refused::Busy));
    }

    #[test]
    fn the_removers_hold_keeps_the_mark_and_others_still_clear_it() {
        let marked = mark_removal(put(inserted(3, false))).unwrap();
        let ours = get_marked(marked).unwrap();
        assert_eq!((ours.refs(), ours.is_removal()), (1, true));
        assert_eq!(yank(ours), Err(Refused::Busy), "not while held");
        // Nobody else came: after our put the page is still marked.
        assert!(yank(put(ours)).is_ok());
        // A lookup that comes and goes while we hold it clears the mark.
        let theirs = put(get(ours).unwrap());
        assert_eq!(yank(put(theirs)), Err(Refused::Busy));
        assert_eq!(get_marked(put(inserted(3, false))), Err(Refused::Busy));
    }

    #[test]
    fn mark_refused_while_held() {
        let w = inserted(3, false);
        assert_eq!(mark_removal(w), Err(Refused::Busy));
    }

    #[test]
    fn overflow_is_refused_not_wrapped() {
        let full = SlotWord((MAX_REFS << (64 - REF_BITS)) | 9);
        assert_eq!(full.refs(), MAX_REFS);
        assert_eq!(get(full), Err(Refused::Overflow));
        assert_eq!(full.frame(), FrameId::new(9));
        assert_eq!(put(full).refs(), MAX_REFS - 1);
        // The library's own holds go on into the reserve, up to MAX_HELD.
        let more = get_reserved(full).unwrap();
        assert_eq!(more.refs(), MAX_REFS + 1);
        assert_eq!(get(more), Err(Refused::Overflow), "users stay out");
        let top = SlotWord((MAX_HELD << (64 - REF_BITS)) | 9);
        assert_eq!(get_reserved(top), Err(Refused::Overflow));
        assert_eq!(
            get_marked(SlotWord(top.0 | REMOVAL)),
            Err(Refused::Overflow)
        );
        assert!(get_marked(SlotWord(full.0 | REMOVAL)).is_ok());
    }

    #[test]
    #[should_panic(expected = "no holder")]
    fn underflow_asserts() {
        put(SlotWord(5));
    }

    #[test]
    fn loading_survives_refcount_changes() {
        let w = inserted(11, true);
        let w = get(w).unwrap();
        assert!(w.is_loading());
        assert!(!loaded(w).is_loading());
        assert_eq!(loaded(w).frame(), FrameId::new(11));
    }

    #[test]
    fn a_hit_marks_only_its_own_present_page() {
        let f = FrameId::new(5).unwrap();
        // The page was detached and its slot cleared (or refilled) between
        // the hit's add and its mark: the mark must not land.
        let s = Slot::new();
        s.mark_accessed(f);
        assert!(
            Slot::is_vacant(s.load()),
            "a bit on an empty slot: {:?}",
            s.load()
        );
        s.publish(inserted(6, false));
        s.mark_accessed(f);
        assert!(!s.load().is_accessed(), "another page marked");
        let s = Slot::new();
        s.publish(inserted(5, false));
        s.mark_accessed(f);
        assert!(s.load().is_accessed());
    }

    #[test]
    fn get_fast_matches_pure_get_and_leaves_no_trace_when_refused() {
        let s = Slot::new();
        assert_eq!(s.get_fast(true, Limit::User), Err(Refused::Absent));
        assert_eq!(s.load(), SlotWord::EMPTY, "refused get undone");
        s.publish(inserted(5, true));
        assert_eq!(
            s.get_fast(false, Limit::User),
            Err(Refused::Absent),
            "loading refused for find"
        );
        assert_eq!(s.get_fast(true, Limit::User), get(inserted(5, true)));
        s.set_loaded();
        s.put();
        s.put();
        s.update(mark_removal).unwrap();
        let w = s.load();
        assert_eq!(s.get_fast(false, Limit::User), get(w), "clears REMOVAL");
        assert!(!s.load().is_removal());
        let full = SlotWord((MAX_REFS << (64 - REF_BITS)) | 5);
        let s = Slot(AtomicU64::new(full.0));
        assert_eq!(s.get_fast(false, Limit::User), Err(Refused::Overflow));
        assert_eq!(s.load(), full);
        assert_eq!(s.get_fast(false, Limit::Reserved), get_reserved(full));
        let top = SlotWord((MAX_HELD << (64 - REF_BITS)) | 5);
        let s = Slot(AtomicU64::new(top.0));
        assert_eq!(s.get_fast(true, Limit::Reserved), Err(Refused::Overflow));
        assert_eq!(s.load(), top);
    }

    #[test]
    fn a_faults_get_counts_a_holder_and_a_mapping() {
        let w = put(inserted(4, false));
        let m = get_for_map(mark_removal(w).unwrap()).unwrap();
        assert_eq!((m.refs(), m.mapping(), m.is_removal()), (1, 1, false));
        assert_eq!(mark_removal(m), Err(Refused::Busy), "held");
        assert_eq!(put_mapping(m), w);
        assert_eq!(
            get_for_map(inserted(4, true)),
            Err(Refused::Absent),
            "loading"
        );
        let mut full = w;
        for _ in 0..MAX_MAPPING {
            full = get_for_map(full).unwrap();
        }
        assert_eq!(get_for_map(full), Err(Refused::Busy));
        assert_eq!(
            get(full).unwrap().refs(),
            MAX_MAPPING + 1,
            "others still get"
        );
        let s = Slot(AtomicU64::new(w.0));
        assert_eq!(s.get_for_map(), Ok(m));
        s.put_mapping();
        assert_eq!(s.load(), w);
    }

    #[test]
    #[should_panic(expected = "no mapping holder")]
    fn a_mapping_put_without_a_mapping_asserts() {
        put_mapping(inserted(4, false));
    }

    #[test]
    fn atomic_put_matches_pure_put() {
        let s = Slot::new();
        s.publish(inserted(5, false));
        s.update(get).unwrap();
        assert_eq!(s.put(), inserted(5, false));
        assert_eq!(s.put(), SlotWord(5));
    }

    #[test]
    fn detach_takes_a_held_word_but_waits_for_faults() {
        let held = get(inserted(9, false)).unwrap();
        let d = detach(SlotWord(held.0 | REMOVAL)).unwrap();
        assert_eq!(d, SlotWord(YANKED | 9), "count and flags leave the word");
        assert!(!d.is_present() && !holds(d, FrameId::new(9).unwrap()));
        assert!(holds(held, FrameId::new(9).unwrap()));
        assert!(!holds(held, FrameId::new(8).unwrap()));
        assert_eq!(detach(get_for_map(held).unwrap()), Err(Refused::Busy));
        assert_eq!(detach(SlotWord::EMPTY), Err(Refused::Absent));
        assert_eq!(detach(d), Err(Refused::Absent));
        // The atomic put finds the page gone and changes nothing.
        let s = Slot(AtomicU64::new(d.0));
        assert_eq!(s.put_of(FrameId::new(9).unwrap()), Err(()));
        assert_eq!(s.load(), d);
        let s = Slot(AtomicU64::new(held.0));
        assert_eq!(s.put_of(FrameId::new(9).unwrap()), Ok(put(held)));
        assert_eq!(s.get_of(FrameId::new(9).unwrap()), Ok(held));
        assert_eq!(s.get_of(FrameId::new(3).unwrap()), Err(None));
    }

    #[test]
    fn debug_decodes_the_fields() {
        let w = get_for_map(get(put(inserted(17, false))).unwrap()).unwrap();
        let w = SlotWord(w.0 | REMOVAL);
        assert_eq!(
            format!("{w:?}"),
            "SlotWord { refs: 2, mapping: 1, removal, frame: Some(f17) }"
        );
        assert_eq!(
            format!("{:?}", SlotWord::EMPTY),
            "SlotWord { refs: 0, mapping: 0, frame: None }"
        );
        let y = yank(mark_removal(put(inserted(3, true))).unwrap()).unwrap();
        assert_eq!(
            format!("{y:?}"),
            "SlotWord { refs: 0, mapping: 0, yanked, frame: Some(f3) }"
        );
    }
}

/// The exhaustive check of the slot word, built in both configurations:
/// at the normal width it takes the counts at every boundary, at the loom
/// width every count (`scripts/loom.sh` runs it there).
#[cfg(test)]
mod transitions {
    use super::*;

    /// Every transition, pure and atomic (`Slot`'s `get_fast`, `put`,
    /// `put_mapping`, `get_for_map`, `set_loaded`), against a definition
    /// written on decoded fields (not on bits), over every combination of
    /// flags, every mapping count, frames 0, 1 and the largest, and
    /// refcounts at every boundary: 0-4, around `MAX_REFS`, around
    /// `MAX_HELD` and into the guard bit. Under `pagemap_loom` (the 5-bit count of
    /// the loom build, every count enumerated) the pure transitions only:
    /// `scripts/loom.sh` runs it there, since `Slot`'s atomics are loom's.
    #[test]
    fn every_transition_matches_its_definition() {
        #[derive(Clone, Copy, Debug, PartialEq)]
        struct W {
            refs: u64,
            mapping: u64,
            removal: bool,
            yanked: bool,
            loading: bool,
            frame: u64,
        }
        fn enc(w: W) -> SlotWord {
            SlotWord(
                (w.refs << REF_SHIFT)
                    | (w.mapping << MAPPING_SHIFT)
                    | if w.removal { REMOVAL } else { 0 }
                    | if w.yanked { YANKED } else { 0 }
                    | if w.loading { LOADING } else { 0 }
                    | w.frame,
            )
        }
        let top = (1u64 << REF_BITS) - 1;
        let counts: Vec<u64> = if REF_BITS <= 8 {
            (0..=top).collect()
        } else {
            let mut v: Vec<u64> = (0..=4).collect();
            v.extend(MAX_REFS - 2..=MAX_REFS + 2);
            v.extend(MAX_HELD - 2..=MAX_HELD + 2);
            v.push(top);
            v
        };
        let mut checked = 0u64;
        for &r in &counts {
            for mapping in 0..=MAX_MAPPING {
                for flags in 0..8u32 {
                    for frame in [0u64, 1, FRAME_MASK] {
                        let w = W {
                            refs: r,
                            mapping,
                            removal: flags & 1 != 0,
                            yanked: flags & 2 != 0,
                            loading: flags & 4 != 0,
                            frame,
                        };
                        let word = enc(w);
                        assert_eq!(
                            (word.refs(), word.mapping(), word.frame()),
                            (w.refs, w.mapping, FrameId::new(w.frame as u32)),
                            "decoders"
                        );
                        assert_eq!(
                            (word.is_removal(), word.is_yanked(), word.is_loading()),
                            (w.removal, w.yanked, w.loading),
                            "flag decoders"
                        );
                        let present = w.frame != 0 && !w.yanked;
                        assert_eq!(word.is_present(), present);
                        let held_get = |limit: u64, keep_removal: bool| {
                            if !present {
                                Err(Refused::Absent)
                            } else if w.refs >= limit {
                                Err(Refused::Overflow)
                            } else {
                                Ok(enc(W {
                                    refs: w.refs + 1,
                                    removal: keep_removal && w.removal,
                                    ..w
                                }))
                            }
                        };
                        assert_eq!(get(word), held_get(MAX_REFS, false), "get {w:?}");
                        assert_eq!(get_reserved(word), held_get(MAX_HELD, false));
                        let want_map = if !present || w.loading {
                            Err(Refused::Absent)
                        } else if w.refs >= MAX_HELD {
                            Err(Refused::Overflow)
                        } else if w.mapping >= MAX_MAPPING {
                            Err(Refused::Busy)
                        } else {
                            Ok(enc(W {
                                refs: w.refs + 1,
                                mapping: w.mapping + 1,
                                removal: false,
                                ..w
                            }))
                        };
                        assert_eq!(get_for_map(word), want_map, "get_for_map {w:?}");
                        let want_marked = if !present {
                            Err(Refused::Absent)
                        } else if !w.removal {
                            Err(Refused::Busy)
                        } else {
                            held_get(MAX_HELD, true)
                        };
                        assert_eq!(get_marked(word), want_marked, "get_marked {w:?}");
                        let want_mark = if !present {
                            Err(Refused::Absent)
                        } else if w.refs != 0 {
                            Err(Refused::Busy)
                        } else {
                            Ok(enc(W { removal: true, ..w }))
                        };
                        assert_eq!(mark_removal(word), want_mark, "mark {w:?}");
                        let want_yank = if !present {
                            Err(Refused::Absent)
                        } else if w.refs != 0 || !w.removal {
                            Err(Refused::Busy)
                        } else {
                            Ok(enc(W {
                                refs: 0,
                                mapping: 0,
                                removal: false,
                                yanked: true,
                                loading: false,
                                frame: w.frame,
                            }))
                        };
                        assert_eq!(yank(word), want_yank, "yank {w:?}");
                        assert_eq!(
                            unmark_removal(word),
                            enc(W {
                                removal: false,
                                ..w
                            })
                        );
                        if w.refs > 0 {
                            assert_eq!(
                                put(word),
                                enc(W {
                                    refs: w.refs - 1,
                                    ..w
                                })
                            );
                        }
                        if w.refs > 0 && w.mapping > 0 {
                            assert_eq!(
                                put_mapping(word),
                                enc(W {
                                    refs: w.refs - 1,
                                    mapping: w.mapping - 1,
                                    ..w
                                })
                            );
                        }
                        assert_eq!(
                            Slot::is_vacant(word),
                            enc(W { refs: 0, ..w }) == SlotWord::EMPTY
                        );
                        // Not under miri: `Slot` has no unsafe code, and
                        // these would make the miri run minutes long.
                        #[cfg(not(any(pagemap_loom, miri)))]
                        {
                            // The atomic forms against the same definitions:
                            // result and the word left in the slot.
                            for allow_loading in [false, true] {
                                for (limit, max) in
                                    [(Limit::User, MAX_REFS), (Limit::Reserved, MAX_HELD)]
                                {
                                    let s = Slot(AtomicU64::new(word.0));
                                    let want = if present && w.loading && !allow_loading {
                                        Err(Refused::Absent)
                                    } else {
                                        held_get(max, false)
                                    };
                                    assert_eq!(
                                        s.get_fast(allow_loading, limit),
                                        want,
                                        "get_fast({allow_loading}, {limit:?}) {w:?}"
                                    );
                                    // A user's hit leaves the referenced bit set too.
                                    let hit = if limit == Limit::User { ACCESSED } else { 0 };
                                    assert_eq!(
                                        s.load(),
                                        want.map_or(word, |w| SlotWord(w.0 | hit)),
                                        "get_fast left {w:?}"
                                    );
                                }
                            }
                            if w.refs > 0 {
                                let s = Slot(AtomicU64::new(word.0));
                                assert_eq!(s.put(), put(word), "Slot::put {w:?}");
                                assert_eq!(s.load(), put(word));
                            }
                            if w.refs > 0 && w.mapping > 0 {
                                let s = Slot(AtomicU64::new(word.0));
                                s.put_mapping();
                                assert_eq!(s.load(), put_mapping(word), "Slot::put_mapping {w:?}");
                            }
                            // (Busy makes the atomic form wait: not called then.)
                            if want_map != Err(Refused::Busy) {
                                let s = Slot(AtomicU64::new(word.0));
                                assert_eq!(s.get_for_map(), want_map, "Slot::get_for_map {w:?}");
                                assert_eq!(s.load(), want_map.unwrap_or(word));
                            }
                            if present && w.refs > 0 {
                                let s = Slot(AtomicU64::new(word.0));
                                s.set_loaded();
                                assert_eq!(
                                    s.load(),
                                    enc(W {
                                        loading: false,
                                        ..w
                                    })
                                );
                                assert_eq!(
                                    loaded(word),
                                    enc(W {
                                        loading: false,
                                        ..w
                                    })
                                );
                            }
                        }
                        checked += 1;
                    }
                }
            }
        }
        assert!(checked >= 5 * 16 * 8 * 3);
        if REF_BITS <= 8 {
            // Every word but for the frame field: every count, mapping, flag.
            assert_eq!(checked, (1 << REF_BITS) * (MAX_MAPPING + 1) * 8 * 3);
        }
    }
}
