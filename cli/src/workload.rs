//! The operation stream: for a seed and a thread, the same sequence of
//! reads and writes whichever engine runs it.

use rand::rngs::SmallRng;
use rand::{Rng, SeedableRng};
use rand_distr::{Distribution, Zipf};

/// Which pages the operations go to.
#[derive(Clone, Copy, Debug, PartialEq, clap::ValueEnum, serde::Serialize)]
#[serde(rename_all = "lowercase")]
pub enum Dist {
    /// Every page equally likely.
    Uniform,
    /// Zipf over the pages (the most popular scattered over the file),
    /// skew `--theta`.
    Zipf,
    /// Each thread walks the file from its own start, page after page.
    Seq,
    /// A hot set (`--hot`, the file's first pages) read and written
    /// uniformly, and every `--scan-every` operations a read scan of
    /// `--scan-len` pages through the file.
    Hotscan,
}

/// The shape of the workload, the same for every thread.
#[derive(Clone, Debug)]
pub struct Shape {
    /// Pages in the file.
    pub pages: u64,
    /// Threads (writes are partitioned among them: page % threads).
    pub threads: usize,
    /// Fraction of operations that are reads, 0 to 1.
    pub read_ratio: f64,
    /// Page distribution.
    pub dist: Dist,
    /// Zipf skew.
    pub theta: f64,
    /// Hot-set size in pages (hotscan).
    pub hot_pages: u64,
    /// Operations between scans (hotscan).
    pub scan_every: u64,
    /// Pages per scan (hotscan).
    pub scan_len: u64,
    /// The run's seed.
    pub seed: u64,
}

/// One operation: a read or a write of page `page`.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Op {
    /// A write (else a read).
    pub write: bool,
    /// The page it starts at.
    pub page: u64,
}

/// One thread's generator of operations.
pub struct OpGen {
    shape: Shape,
    thread: u64,
    rng: SmallRng,
    zipf: Option<Zipf<f64>>,
    /// Zipf ranks are spread over the file by this stride (coprime with
    /// the page count, so a bijection).
    stride: u64,
    /// Next page of a sequential walk or scan.
    cursor: u64,
    /// Operations since the last scan ended (hotscan).
    since_scan: u64,
    /// Pages left of the scan in progress.
    scan_left: u64,
}

fn gcd(a: u64, b: u64) -> u64 {
    if b == 0 {
        a
    } else {
        gcd(b, a % b)
    }
}

impl OpGen {
    /// Thread `thread`'s generator (`thread < shape.threads`).
    ///
    /// # Errors
    /// A Zipf skew the distribution refuses.
    pub fn new(shape: &Shape, thread: usize) -> Result<Self, String> {
        let seed = shape
            .seed
            .wrapping_mul(0x9e37_79b9_7f4a_7c15)
            .wrapping_add(thread as u64 + 1);
        let zipf = match shape.dist {
            Dist::Zipf => Some(
                Zipf::new(shape.pages as f64, shape.theta)
                    .map_err(|e| format!("Zipf with theta {}: {e}", shape.theta))?,
            ),
            _ => None,
        };
        let mut stride = 0x9e37_79b9_7f4a_7c15 % shape.pages.max(1);
        while shape.pages > 1 && gcd(stride, shape.pages) != 1 {
            stride += 1;
        }
        let cursor = match shape.dist {
            Dist::Seq => thread as u64 * shape.pages / shape.threads as u64,
            _ => 0,
        };
        Ok(Self {
            shape: shape.clone(),
            thread: thread as u64,
            rng: SmallRng::seed_from_u64(seed),
            zipf,
            stride: stride.max(1),
            cursor,
            since_scan: 0,
            scan_left: 0,
        })
    }

    /// The next operation.
    pub fn next_op(&mut self) -> Op {
        let pages = self.shape.pages;
        if self.shape.dist == Dist::Hotscan {
            if self.scan_left > 0 {
                self.scan_left -= 1;
                let page = self.cursor % pages;
                self.cursor = self.cursor.wrapping_add(1);
                return Op { write: false, page };
            }
            self.since_scan += 1;
            if self.since_scan >= self.shape.scan_every {
                self.since_scan = 0;
                self.scan_left = self.shape.scan_len;
            }
        }
        let write = self.rng.random::<f64>() >= self.shape.read_ratio;
        let page = match self.shape.dist {
            Dist::Uniform => self.rng.random_range(0..pages),
            Dist::Zipf => {
                let zipf = self.zipf.as_ref().expect("made for Zipf");
                let rank = (zipf.sample(&mut self.rng) as u64).clamp(1, pages) - 1;
                ((u128::from(rank) * u128::from(self.stride)) % u128::from(pages)) as u64
            }
            Dist::Seq => {
                let p = self.cursor % pages;
                self.cursor = self.cursor.wrapping_add(1);
                p
            }
            Dist::Hotscan => self.rng.random_range(0..self.shape.hot_pages.max(1)),
        };
        let page = if write { self.own(page) } else { page };
        Op { write, page }
    }

    /// The page of this thread's partition nearest `page`: a page is
    /// written by thread `page % threads` only.
    fn own(&self, page: u64) -> u64 {
        let t = self.shape.threads as u64;
        let p = page - page % t + self.thread;
        if p < self.shape.pages {
            p
        } else {
            self.thread
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn shape(dist: Dist) -> Shape {
        Shape {
            pages: 1000,
            threads: 3,
            read_ratio: 0.5,
            dist,
            theta: 0.99,
            hot_pages: 50,
            scan_every: 100,
            scan_len: 20,
            seed: 9,
        }
    }

    #[test]
    fn same_seed_same_ops_and_writes_stay_in_the_partition() {
        for dist in [Dist::Uniform, Dist::Zipf, Dist::Seq, Dist::Hotscan] {
            let s = shape(dist);
            let mut a = OpGen::new(&s, 1).unwrap();
            let mut b = OpGen::new(&s, 1).unwrap();
            for _ in 0..5000 {
                let op = a.next_op();
                assert_eq!(op, b.next_op());
                assert!(op.page < s.pages);
                if op.write {
                    assert_eq!(op.page % 3, 1, "{dist:?}");
                }
            }
        }
    }

    #[test]
    fn hotscan_scans() {
        let mut g = OpGen::new(&shape(Dist::Hotscan), 0).unwrap();
        let cold = (0..10_000).filter(|_| g.next_op().page >= 50).count();
        assert!(cold > 0, "scans reach past the hot set");
    }
}
