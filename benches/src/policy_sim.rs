//! Offline hit-ratio evaluation of the eviction policies: a [`Simulator`]
//! that drives the real policy objects of `pagemap::policy` over a trace of
//! page keys, an independent reference LRU ([`RefLru`]) to cross-check the
//! `Lru` policy, Belady's optimal ([`opt_hits`]), and the traces.
//!
//! The simulator plays the frame pool: a fixed set of frames with a policy
//! word and a key each, a referenced bit per frame set by hits and
//! test-and-cleared by the check, and, on a miss with no free frame, a
//! `select` of one victim which it then evicts (nothing is ever busy).

use std::collections::{BTreeMap, BTreeSet, HashMap};

use pagemap::policy::{self, Check, EvictionPolicy, PolicyFrames};
use pagemap::sync::{AtomicU64, Ordering};
use pagemap::FrameId;
use rand::rngs::StdRng;
use rand::{Rng, SeedableRng};

/// A fixed-size cache of page keys run by an eviction policy.
pub struct Simulator {
    policy: Box<dyn EvictionPolicy>,
    /// The policy's word of each frame (slot = frame id - 1).
    words: Vec<AtomicU64>,
    /// The key each frame caches.
    keys: Vec<u64>,
    /// The pool's referenced bit of each frame.
    referenced: Vec<bool>,
    /// Where each cached key is.
    map: HashMap<u64, FrameId, foldhash::fast::FixedState>,
    /// Free frames; the last freed is reused first (as a pool's free list).
    free: Vec<FrameId>,
    hits: u64,
    accesses: u64,
}

impl Simulator {
    /// A cache of `frames` frames run by the built-in policy `name`
    /// (`pagemap::policy::by_name`).
    ///
    /// # Panics
    ///
    /// If `name` is not a built-in policy, or `frames` is 0.
    pub fn new(name: &str, frames: usize) -> Self {
        assert!(frames > 0, "a cache needs a frame");
        let policy = policy::by_name(name, frames).unwrap_or_else(|| panic!("no policy {name}"));
        Self {
            policy,
            words: (0..frames).map(|_| AtomicU64::new(0)).collect(),
            keys: vec![0; frames],
            referenced: vec![false; frames],
            map: HashMap::with_capacity_and_hasher(frames, Default::default()),
            free: (1..=frames as u32)
                .rev()
                .map(|r| FrameId::new(r).unwrap())
                .collect(),
            hits: 0,
            accesses: 0,
        }
    }

    /// Accesses page `key`; true on a hit. A miss with no free frame evicts
    /// the policy's victim first.
    pub fn access(&mut self, key: u64) -> bool {
        self.accesses += 1;
        let Self {
            policy,
            words,
            keys,
            referenced,
            map,
            free,
            ..
        } = self;
        let key_of = |id: FrameId| keys[id.get() as usize - 1];
        let frames = PolicyFrames::new(words, &key_of);
        if let Some(&id) = map.get(&key) {
            self.hits += 1;
            if policy.tracks_every_access() {
                // Such a policy sees hits this way alone (the trait's doc):
                // the bit would report them a second time.
                policy.accessed(&frames, id);
            } else {
                referenced[id.get() as usize - 1] = true;
            }
            return true;
        }
        if free.is_empty() {
            let mut out = [FrameId::new(1).unwrap()];
            let n = policy.select(
                &frames,
                &mut |id| {
                    let bit = &mut referenced[id.get() as usize - 1];
                    if std::mem::take(bit) {
                        Check::Referenced
                    } else {
                        Check::Unreferenced
                    }
                },
                &mut out,
            );
            assert_eq!(n, 1, "{}: no victim in a full cache", policy.name());
            let victim = out[0];
            policy.remove(&frames, victim);
            let gone = map.remove(&key_of(victim));
            assert_eq!(gone, Some(victim), "victim not cached");
            free.push(victim);
        }
        let id = free.pop().expect("a frame was freed");
        keys[id.get() as usize - 1] = key;
        referenced[id.get() as usize - 1] = false;
        let key_of = |id: FrameId| keys[id.get() as usize - 1];
        policy.add(&PolicyFrames::new(words, &key_of), id);
        map.insert(key, id);
        false
    }

    /// Runs a whole trace; returns the hits.
    pub fn run(&mut self, trace: &[u64]) -> u64 {
        trace.iter().filter(|&&k| self.access(k)).count() as u64
    }

    /// Hits so far.
    pub fn hits(&self) -> u64 {
        self.hits
    }

    /// Accesses so far.
    pub fn accesses(&self) -> u64 {
        self.accesses
    }

    /// The policy's refault count (S3-FIFO's ghost hits).
    pub fn refaults(&self) -> u64 {
        self.policy.refaults()
    }

    /// Whether the words say frame `id` is untracked (tests).
    pub fn word(&self, id: FrameId) -> u64 {
        self.words[id.get() as usize - 1].load(Ordering::Relaxed)
    }
}

/// A plain LRU cache written independently of `pagemap::policy::Lru`:
/// last-use stamps in a map, ordered in a `BTreeMap`.
pub struct RefLru {
    capacity: usize,
    clock: u64,
    stamp: HashMap<u64, u64>,
    by_age: BTreeMap<u64, u64>,
}

impl RefLru {
    /// An empty cache of `capacity` pages.
    pub fn new(capacity: usize) -> Self {
        Self {
            capacity,
            clock: 0,
            stamp: HashMap::new(),
            by_age: BTreeMap::new(),
        }
    }

    /// Accesses `key`; true on a hit.
    pub fn access(&mut self, key: u64) -> bool {
        self.clock += 1;
        let hit = match self.stamp.insert(key, self.clock) {
            Some(old) => {
                self.by_age.remove(&old);
                true
            }
            None => {
                if self.stamp.len() > self.capacity {
                    let (_, oldest) = self.by_age.pop_first().expect("full");
                    self.stamp.remove(&oldest);
                }
                false
            }
        };
        self.by_age.insert(self.clock, key);
        hit
    }
}

/// Hits of Belady's optimal demand cache of `capacity` pages on `trace`:
/// on a miss with the cache full, evict the page whose next use is the
/// farthest (next uses precomputed backwards).
pub fn opt_hits(trace: &[u64], capacity: usize) -> u64 {
    const NEVER: usize = usize::MAX;
    let mut next = vec![NEVER; trace.len()];
    let mut seen: HashMap<u64, usize, foldhash::fast::FixedState> = HashMap::default();
    for (i, &k) in trace.iter().enumerate().rev() {
        next[i] = seen.insert(k, i).unwrap_or(NEVER);
    }
    // Cached pages by next use (distinct: one access per index, and pages
    // used never again tie-break on the key).
    let mut cached: BTreeSet<(usize, u64)> = BTreeSet::new();
    let mut next_of: HashMap<u64, usize, foldhash::fast::FixedState> = HashMap::default();
    let mut hits = 0;
    for (i, &k) in trace.iter().enumerate() {
        match next_of.get(&k) {
            Some(&n) => {
                debug_assert_eq!(n, i);
                hits += 1;
                cached.remove(&(n, k));
            }
            None => {
                if next_of.len() == capacity {
                    let (_, far) = cached.pop_last().expect("full");
                    next_of.remove(&far);
                }
            }
        }
        cached.insert((next[i], k));
        next_of.insert(k, next[i]);
    }
    hits
}

/// Samples ranks `0..n` with probability proportional to `1 / (rank +
/// 1)^alpha`, by binary search in the cumulative distribution.
pub struct Zipf {
    cdf: Vec<f64>,
}

impl Zipf {
    /// The distribution over `n` ranks with exponent `alpha`.
    pub fn new(n: usize, alpha: f64) -> Self {
        let mut cdf = Vec::with_capacity(n);
        let mut sum = 0.0;
        for r in 1..=n {
            sum += (r as f64).powf(-alpha);
            cdf.push(sum);
        }
        cdf.iter_mut().for_each(|c| *c /= sum);
        Self { cdf }
    }

    /// One rank.
    pub fn sample(&self, rng: &mut impl Rng) -> u64 {
        let u: f64 = rng.random();
        self.cdf.partition_point(|&c| c < u).min(self.cdf.len() - 1) as u64
    }
}

/// Pages of the simulated file (4 GiB of 4 KiB pages).
pub const FILE_PAGES: u64 = 1 << 20;

/// Every trace's seed: runs are reproducible.
pub const SEED: u64 = 0x5eed_cafe;

/// Ranks scattered over the file (a fixed odd multiplier modulo the file
/// size is a bijection), so that popular pages are not neighbours.
fn scatter(rank: u64) -> u64 {
    rank.wrapping_mul(0x9e37_79b9) & (FILE_PAGES - 1)
}

/// `len` accesses drawn from Zipf(`alpha`) over the file.
pub fn zipf_trace(len: usize, alpha: f64) -> Vec<u64> {
    let z = Zipf::new(FILE_PAGES as usize, alpha);
    let mut rng = StdRng::seed_from_u64(SEED);
    (0..len).map(|_| scatter(z.sample(&mut rng))).collect()
}

/// `len` accesses looping sequentially over the first `span` pages.
pub fn loop_trace(len: usize, span: u64) -> Vec<u64> {
    (0..len as u64).map(|i| i % span).collect()
}

/// `len` accesses to a hot set of `hot` pages (Zipf(`alpha`) inside),
/// interrupted every `period` accesses by a sequential scan of `scan`
/// pages of the rest of the file, each scan going on where the last one
/// stopped (as a backup or a `grep -r` would read cold data).
pub fn scan_trace(len: usize, hot: u64, alpha: f64, period: usize, scan: u64) -> Vec<u64> {
    let z = Zipf::new(hot as usize, alpha);
    let mut rng = StdRng::seed_from_u64(SEED ^ 1);
    let cold = FILE_PAGES - hot;
    let mut cursor = 0;
    let mut out = Vec::with_capacity(len);
    while out.len() < len {
        for _ in 0..period.min(len - out.len()) {
            out.push(z.sample(&mut rng));
        }
        for _ in 0..scan.min((len - out.len()) as u64) {
            out.push(hot + cursor);
            cursor = (cursor + 1) % cold;
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn lru_policy_matches_the_reference_lru_exactly() {
        let trace: Vec<u64> = zipf_trace(60_000, 0.8)
            .into_iter()
            .map(|k| k % 5_000)
            .chain(loop_trace(3_000, 700))
            .collect();
        for cap in [1, 2, 7, 100, 640, 1_000] {
            let mut sim = Simulator::new("lru", cap);
            let mut reference = RefLru::new(cap);
            for (i, &k) in trace.iter().enumerate() {
                assert_eq!(sim.access(k), reference.access(k), "access {i} (cap {cap})");
            }
        }
    }

    #[test]
    fn opt_beats_everyone_and_is_exact_on_a_small_case() {
        // Capacity 2 on 1 2 3 1 2: at 3's miss, 2 is used later than 1,
        // so OPT evicts 2; it hits 1 and misses 2.
        assert_eq!(opt_hits(&[1, 2, 3, 1, 2], 2), 1);
        assert_eq!(opt_hits(&[1, 2, 1, 2, 3, 1, 2], 2), 3);
        let trace: Vec<u64> = zipf_trace(40_000, 0.9)
            .into_iter()
            .map(|k| k % 4_000)
            .collect();
        for cap in [10, 200, 1_000] {
            let opt = opt_hits(&trace, cap);
            for name in policy::NAMES {
                let hits = Simulator::new(name, cap).run(&trace);
                assert!(hits <= opt, "{name} {hits} > OPT {opt} at {cap}");
            }
        }
    }

    #[test]
    fn simulator_keeps_the_policy_consistent() {
        for name in policy::NAMES {
            let mut sim = Simulator::new(name, 50);
            let trace = scan_trace(20_000, 40, 0.9, 500, 300);
            let hits = sim.run(&trace);
            assert_eq!(sim.accesses(), 20_000);
            assert!(hits > 0 && hits < 20_000, "{name}: {hits}");
            // Every frame is in use and tracked.
            for r in 1..=50 {
                assert_ne!(sim.word(FrameId::new(r).unwrap()), 0, "{name}: frame {r}");
            }
        }
        // S3-FIFO keeps the hot set through the scans; LRU loses it.
        let trace = scan_trace(50_000, 40, 0.9, 1_000, 300);
        let lru = Simulator::new("lru", 50).run(&trace);
        let s3 = Simulator::new("s3fifo", 50).run(&trace);
        assert!(s3 > lru, "s3fifo {s3} <= lru {lru}");
    }
}
