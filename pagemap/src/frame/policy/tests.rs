//! Unit tests of the policies on tiny frame sets, with scripted checks.

use alloc::vec::Vec;
use core::sync::atomic::AtomicU64 as KeyCell;
use std::collections::HashMap;

use super::*;
use crate::sync::Ordering;

/// Frames and their keys, as a pool would keep them.
struct Fixture {
    words: Vec<AtomicU64>,
    keys: Vec<KeyCell>,
}

fn f(raw: u32) -> FrameId {
    FrameId::new(raw).unwrap()
}

fn ids(raw: &[u32]) -> Vec<FrameId> {
    raw.iter().map(|&r| f(r)).collect()
}

impl Fixture {
    fn new(n: usize) -> Self {
        Self {
            words: (0..n).map(|_| AtomicU64::new(0)).collect(),
            keys: (0..n).map(|i| KeyCell::new(1000 + i as u64)).collect(),
        }
    }

    fn with<R>(&self, body: impl FnOnce(&PolicyFrames<'_>) -> R) -> R {
        let key = |id: FrameId| self.keys[id.get() as usize - 1].load(Ordering::Relaxed);
        body(&PolicyFrames::new(&self.words, &key))
    }

    fn set_key(&self, id: FrameId, key: u64) {
        self.keys[id.get() as usize - 1].store(key, Ordering::Relaxed);
    }

    fn add(&self, p: &dyn EvictionPolicy, raw: &[u32]) {
        self.with(|fr| raw.iter().for_each(|&r| p.add(fr, f(r))));
    }

    fn remove(&self, p: &dyn EvictionPolicy, raw: &[u32]) {
        self.with(|fr| raw.iter().for_each(|&r| p.remove(fr, f(r))));
    }

    /// `select` with room for `batch`, where the check answers from
    /// `answers` (default Unreferenced); Referenced answers are consumed
    /// (the check clears the bit). Returns the victims and the frames
    /// checked, in order.
    fn select(
        &self,
        p: &dyn EvictionPolicy,
        batch: usize,
        answers: &mut HashMap<u32, Check>,
    ) -> (Vec<FrameId>, Vec<FrameId>) {
        let mut checked = Vec::new();
        let mut out = alloc::vec![f(1); batch];
        let n = self.with(|fr| {
            p.select(
                fr,
                &mut |id| {
                    checked.push(id);
                    match answers.get(&id.get()).copied() {
                        Some(Check::Referenced) => {
                            answers.remove(&id.get());
                            Check::Referenced
                        }
                        Some(a) => a,
                        None => Check::Unreferenced,
                    }
                },
                &mut out,
            )
        });
        out.truncate(n);
        (out, checked)
    }
}

fn answers(list: &[(u32, Check)]) -> HashMap<u32, Check> {
    list.iter().copied().collect()
}

#[test]
fn by_name_knows_the_built_ins() {
    for name in NAMES {
        assert_eq!(by_name(name, 8).unwrap().name(), name);
    }
    assert!(by_name("arc", 8).is_none());
}

#[test]
#[should_panic(expected = "30-bit")]
fn list_policies_refuse_huge_pools() {
    let _ = Lru::new(MAX_FRAMES + 1);
}

// ---- CLOCK ----

#[test]
fn clock_sweeps_in_frame_order_and_moves_on() {
    let fx = Fixture::new(4);
    let p = Clock::new(4);
    fx.add(&p, &[1, 2, 3, 4]);
    let (v, _) = fx.select(&p, 2, &mut HashMap::new());
    assert_eq!(v, ids(&[1, 2]));
    // The hand moved past them: no victim twice in a row.
    let (v, _) = fx.select(&p, 2, &mut HashMap::new());
    assert_eq!(v, ids(&[3, 4]));
}

#[test]
fn clock_spares_referenced_and_busy_frames() {
    let fx = Fixture::new(4);
    let p = Clock::new(4);
    fx.add(&p, &[1, 2, 3, 4]);
    let mut a = answers(&[(1, Check::Referenced), (2, Check::Busy)]);
    let (v, checked) = fx.select(&p, 1, &mut a);
    assert_eq!(v, ids(&[3]));
    assert_eq!(checked, ids(&[1, 2, 3]));
    // Frame 1's bit is clear now: the second sweep takes it.
    let (v, _) = fx.select(&p, 2, &mut a);
    assert_eq!(v, ids(&[4, 1]));
}

#[test]
fn clock_skips_frames_not_added_and_removed() {
    let fx = Fixture::new(4);
    let p = Clock::new(4);
    fx.add(&p, &[1, 2, 3]);
    fx.remove(&p, &[2]);
    let (v, checked) = fx.select(&p, 4, &mut HashMap::new());
    assert_eq!(v, ids(&[1, 3]));
    assert_eq!(checked, ids(&[1, 3]), "frames 2 and 4 are not tracked");
}

#[test]
fn clock_terminates_when_everything_is_busy() {
    let fx = Fixture::new(5);
    let p = Clock::new(5);
    fx.add(&p, &[1, 2, 3, 4, 5]);
    let mut a: HashMap<u32, Check> = (1..=5).map(|r| (r, Check::Busy)).collect();
    let (v, checked) = fx.select(&p, 3, &mut a);
    assert!(v.is_empty());
    assert!(checked.len() <= 10, "bounded to two sweeps");
}

// ---- LRU ----

#[test]
fn lru_orders_by_last_access() {
    let fx = Fixture::new(4);
    let p = Lru::new(4);
    fx.add(&p, &[1, 2, 3, 4]);
    fx.with(|fr| p.accessed(fr, f(1)));
    fx.with(|fr| assert_eq!(p.order(fr), ids(&[1, 4, 3, 2])));
    let (v, _) = fx.select(&p, 1, &mut HashMap::new());
    assert_eq!(v, ids(&[2]));
    // The victim rotated: the next call takes the next one.
    let (v, _) = fx.select(&p, 1, &mut HashMap::new());
    assert_eq!(v, ids(&[3]));
    fx.with(|fr| assert_eq!(p.order(fr), ids(&[3, 2, 1, 4])));
}

#[test]
fn lru_rotates_referenced_and_busy_candidates() {
    let fx = Fixture::new(4);
    let p = Lru::new(4);
    fx.add(&p, &[1, 2, 3, 4]);
    let mut a = answers(&[(1, Check::Referenced), (2, Check::Busy)]);
    let (v, checked) = fx.select(&p, 1, &mut a);
    assert_eq!(v, ids(&[3]));
    assert_eq!(checked, ids(&[1, 2, 3]));
    fx.with(|fr| assert_eq!(p.order(fr), ids(&[3, 2, 1, 4])));
}

#[test]
fn lru_removes_from_the_middle() {
    let fx = Fixture::new(5);
    let p = Lru::new(5);
    fx.add(&p, &[1, 2, 3, 4, 5]);
    fx.remove(&p, &[3]);
    fx.with(|fr| assert_eq!(p.order(fr), ids(&[5, 4, 2, 1])));
    fx.remove(&p, &[5, 1]);
    fx.with(|fr| assert_eq!(p.order(fr), ids(&[4, 2])));
    assert_eq!(p.len(), 2);
    assert_eq!(
        fx.words[2].load(Ordering::Relaxed),
        0,
        "a removed word is zero"
    );
    // A hit racing with the removal is ignored.
    fx.with(|fr| p.accessed(fr, f(3)));
    let (v, _) = fx.select(&p, 4, &mut HashMap::new());
    assert_eq!(v, ids(&[2, 4]), "distinct victims, oldest first");
}

#[test]
fn lru_terminates_when_everything_is_busy() {
    let fx = Fixture::new(3);
    let p = Lru::new(3);
    fx.add(&p, &[1, 2, 3]);
    let mut a: HashMap<u32, Check> = (1..=3).map(|r| (r, Check::Busy)).collect();
    let (v, checked) = fx.select(&p, 2, &mut a);
    assert!(v.is_empty());
    assert_eq!(checked.len(), 6);
    let (v, _) = Fixture::new(3).select(&Lru::new(3), 2, &mut HashMap::new());
    assert!(v.is_empty(), "an empty policy has no victim");
}

// ---- S3-FIFO ----

#[test]
fn s3fifo_evicts_new_pages_from_the_small_queue_first() {
    let fx = Fixture::new(10);
    let p = S3Fifo::new(10);
    fx.add(&p, &[1, 2, 3, 4, 5]);
    assert_eq!(p.lens(), (5, 0));
    let (v, _) = fx.select(&p, 1, &mut HashMap::new());
    assert_eq!(v, ids(&[1]));
    // Rotated: not returned again at once.
    let (v, _) = fx.select(&p, 1, &mut HashMap::new());
    assert_eq!(v, ids(&[2]));
}

#[test]
fn s3fifo_promotes_referenced_pages_and_counts_in_main() {
    let fx = Fixture::new(10);
    let p = S3Fifo::new(10);
    fx.add(&p, &[1, 2, 3]);
    let mut a = answers(&[(1, Check::Referenced), (2, Check::Referenced)]);
    let (v, _) = fx.select(&p, 1, &mut a);
    assert_eq!(v, ids(&[3]));
    fx.with(|fr| assert_eq!(p.queues(fr), (ids(&[3]), ids(&[2, 1]))));
    // With the small queue empty, main, oldest first: each promoted page
    // holds a count of 1 from its reference, so survives one idle pass.
    fx.remove(&p, &[3]);
    let (v, checked) = fx.select(&p, 1, &mut HashMap::new());
    assert_eq!(checked, ids(&[1, 2, 1]));
    assert_eq!(v, ids(&[1]));
}

#[test]
fn s3fifo_ghost_hit_goes_to_main_and_counts_a_refault() {
    let fx = Fixture::new(4);
    let p = S3Fifo::new(4);
    fx.add(&p, &[1, 2]);
    let (v, _) = fx.select(&p, 1, &mut HashMap::new());
    assert_eq!(v, ids(&[1]));
    let key = fx.with(|fr| fr.key(f(1)));
    fx.remove(&p, &[1]);
    // A truncated (not selected) page leaves no ghost.
    let key2 = fx.with(|fr| fr.key(f(2)));
    fx.remove(&p, &[2]);
    fx.set_key(f(3), key);
    fx.set_key(f(4), key2);
    fx.add(&p, &[3, 4]);
    assert_eq!(p.refaults(), 1);
    fx.with(|fr| assert_eq!(p.queues(fr), (ids(&[4]), ids(&[3]))));
    // The ghost entry is consumed.
    fx.remove(&p, &[3]);
    fx.add(&p, &[3]);
    assert_eq!(p.refaults(), 1);
}

#[test]
fn s3fifo_removes_from_the_middle_of_either_queue() {
    let fx = Fixture::new(8);
    let p = S3Fifo::new(8);
    fx.add(&p, &[1, 2, 3, 4, 5, 6]);
    let mut a = answers(&[
        (1, Check::Referenced),
        (2, Check::Referenced),
        (3, Check::Referenced),
    ]);
    fx.select(&p, 1, &mut a);
    fx.with(|fr| assert_eq!(p.queues(fr), (ids(&[4, 6, 5]), ids(&[3, 2, 1]))));
    fx.remove(&p, &[2, 6]);
    fx.with(|fr| assert_eq!(p.queues(fr), (ids(&[4, 5]), ids(&[3, 1]))));
    assert_eq!(p.lens(), (2, 2));
}

#[test]
fn s3fifo_terminates_when_everything_is_busy() {
    let fx = Fixture::new(6);
    let p = S3Fifo::new(6);
    fx.add(&p, &[1, 2, 3, 4, 5, 6]);
    let mut a: HashMap<u32, Check> = (1..=6).map(|r| (r, Check::Busy)).collect();
    let (v, checked) = fx.select(&p, 2, &mut a);
    assert!(v.is_empty());
    assert!(checked.len() <= 5 * 6);
    // Still consistent and usable.
    let (v, _) = fx.select(&p, 2, &mut HashMap::new());
    assert_eq!(v.len(), 2);
}

#[test]
fn every_policy_returns_distinct_victims_and_not_twice_in_a_row() {
    for name in NAMES {
        let fx = Fixture::new(6);
        let p = by_name(name, 6).unwrap();
        fx.add(&*p, &[1, 2, 3, 4, 5, 6]);
        let (v1, _) = fx.select(&*p, 3, &mut HashMap::new());
        let mut d = v1.clone();
        d.sort();
        d.dedup();
        assert_eq!(d.len(), v1.len(), "{name}: distinct victims");
        // A huge batch: distinct even though the scan laps.
        let (v2, _) = fx.select(&*p, 6, &mut HashMap::new());
        let mut d2 = v2.clone();
        d2.sort();
        d2.dedup();
        assert_eq!(d2.len(), v2.len(), "{name}: distinct victims in a lap");
        let (v3, _) = fx.select(&*p, 1, &mut HashMap::new());
        assert_ne!(
            v3,
            v2[v2.len() - 1..].to_vec(),
            "{name}: same victim twice in a row"
        );
    }
}

#[test]
// Safe code only, and 36,000 operations: minutes under miri for nothing.
#[cfg_attr(miri, ignore = "safe code; too slow under miri")]
fn concurrent_reclaimers_keep_every_policy_consistent() {
    use std::sync::atomic::{AtomicBool, Ordering as O};
    const FRAMES: u32 = 64;
    const THREADS: u32 = 4;
    for name in NAMES {
        let fx = Fixture::new(FRAMES as usize);
        let p = by_name(name, FRAMES as usize).unwrap();
        let added: Vec<AtomicBool> = (0..FRAMES).map(|_| AtomicBool::new(false)).collect();
        std::thread::scope(|s| {
            for t in 0..THREADS {
                let (fx, p, added) = (&fx, &*p, &added);
                s.spawn(move || {
                    let mut x = 0x9e37_79b9u32.wrapping_mul(t + 1);
                    for _ in 0..3_000 {
                        x ^= x << 13;
                        x ^= x >> 17;
                        x ^= x << 5;
                        // Thread t adds and removes only its own frames.
                        let raw = (x % (FRAMES / THREADS)) * THREADS + t + 1;
                        let own = &added[raw as usize - 1];
                        if own.load(O::Relaxed) {
                            fx.remove(p, &[raw]);
                        } else {
                            fx.add(p, &[raw]);
                        }
                        own.store(!own.load(O::Relaxed), O::Relaxed);
                        if p.tracks_every_access() && x & 8 != 0 {
                            fx.with(|fr| p.accessed(fr, f(raw)));
                        }
                        let mut out = [f(1); 4];
                        let n = fx.with(|fr| {
                            p.select(
                                fr,
                                &mut |id| match id.get() % 3 {
                                    0 => Check::Referenced,
                                    1 => Check::Busy,
                                    _ => Check::Unreferenced,
                                },
                                &mut out,
                            )
                        });
                        let mut v = out[..n].to_vec();
                        v.sort();
                        v.dedup();
                        assert_eq!(v.len(), n, "{name}: a victim twice in one batch");
                    }
                });
            }
        });
        for raw in 1..=FRAMES {
            if added[raw as usize - 1].load(O::Relaxed) {
                fx.remove(&*p, &[raw]);
            }
        }
        for (i, w) in fx.words.iter().enumerate() {
            assert_eq!(w.load(Ordering::Relaxed), 0, "{name}: frame {} left", i + 1);
        }
        let (v, checked) = fx.select(&*p, 4, &mut HashMap::new());
        assert!(v.is_empty() && checked.is_empty(), "{name}: tracks nothing");
    }
}
