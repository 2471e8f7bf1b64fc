//! A fuzzing harness for ffem's file parsers on stable Rust, shared by the fuzz tests of every
//! crate: seeded mutations of a valid fixture (bit flips, interesting bytes, huge length fields,
//! truncation, insertion, deletion, duplication), each fed to a parser that must end in `Ok` or
//! `Err`: no panic, no hang (each input is timed), no allocation out of proportion to the input.
//! A test binary installs [`Watch`] as its global allocator to measure the last; failing inputs
//! are saved to the temporary folder with their seed and index.

use std::alloc::{GlobalAlloc, Layout, System};
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::{Duration, Instant};

/// The system allocator, remembering the largest single allocation since the last reset.
pub struct Watch;
/// The largest single allocation since it was last reset to 0.
pub static LARGEST: AtomicUsize = AtomicUsize::new(0);

unsafe impl GlobalAlloc for Watch {
    unsafe fn alloc(&self, layout: Layout) -> *mut u8 {
        LARGEST.fetch_max(layout.size(), Ordering::Relaxed);
        // SAFETY: forwarded unchanged to the system allocator.
        unsafe { System.alloc(layout) }
    }
    unsafe fn dealloc(&self, ptr: *mut u8, layout: Layout) {
        // SAFETY: `ptr` came from `alloc` above with this layout.
        unsafe { System.dealloc(ptr, layout) }
    }
    unsafe fn realloc(&self, ptr: *mut u8, layout: Layout, new_size: usize) -> *mut u8 {
        LARGEST.fetch_max(new_size, Ordering::Relaxed);
        // SAFETY: forwarded unchanged to the system allocator.
        unsafe { System.realloc(ptr, layout, new_size) }
    }
}

/// The allocation watch is one counter for the process, and the test harness runs tests in
/// parallel threads: each fuzz test holds this lock ([`alone`]) for its whole run, so the largest allocation
/// measured for an input is that input's (a parser may allocate on helper threads, which a
/// per-thread counter would miss).
pub static ONE_AT_A_TIME: std::sync::Mutex<()> = std::sync::Mutex::new(());

/// Takes [`ONE_AT_A_TIME`]; a test that failed while holding it does not fail the others.
pub fn alone() -> std::sync::MutexGuard<'static, ()> {
    ONE_AT_A_TIME
        .lock()
        .unwrap_or_else(|poisoned| poisoned.into_inner())
}

/// A small, seeded generator (xorshift64*): the fuzz runs are reproducible from the seed.
pub struct Rng(pub u64);

impl Rng {
    /// The next 64 random bits.
    pub fn next_u64(&mut self) -> u64 {
        self.0 ^= self.0 >> 12;
        self.0 ^= self.0 << 25;
        self.0 ^= self.0 >> 27;
        self.0.wrapping_mul(0x2545_f491_4f6c_dd1d)
    }
    /// A number in 0..n (0 when n is 0).
    pub fn below(&mut self, n: usize) -> usize {
        (self.next_u64() % n.max(1) as u64) as usize
    }
}

/// One to four mutations of `input`.
pub fn mutate(input: &[u8], rng: &mut Rng) -> Vec<u8> {
    let mut b = input.to_vec();
    for _ in 0..1 + rng.below(4) {
        let at = rng.below(b.len().max(1));
        match rng.below(7) {
            0 if !b.is_empty() => b[at] ^= 1 << rng.below(8),
            1 if !b.is_empty() => b[at] = [0x00, 0xff, 0x7f, 0x80, 0x01][rng.below(5)],
            2 => {
                // A huge little-endian length where a length field may be.
                let v = [u64::MAX, u32::MAX as u64, 1 << 40, 1 << 31][rng.below(4)];
                for (i, byte) in v.to_le_bytes().iter().enumerate().take(8) {
                    if let Some(x) = b.get_mut(at + i) {
                        *x = *byte;
                    }
                }
            }
            3 => b.truncate(at),
            4 => {
                let junk: Vec<u8> = (0..1 + rng.below(16))
                    .map(|_| rng.next_u64() as u8)
                    .collect();
                b.splice(at..at, junk);
            }
            5 if !b.is_empty() => {
                let end = (at + 1 + rng.below(32)).min(b.len());
                b.drain(at..end);
            }
            _ if !b.is_empty() => {
                let end = (at + 1 + rng.below(64)).min(b.len());
                let piece = b[at..end].to_vec();
                let to = rng.below(b.len());
                b.splice(to..to, piece);
            }
            _ => {}
        }
    }
    b
}

/// Inputs per fuzz target: `default` (sized for CI), or `FFEM_FUZZ_ITERATIONS` for a longer run
/// (`bench/fuzz.sh`).
pub fn iterations(default: usize) -> usize {
    std::env::var("FFEM_FUZZ_ITERATIONS")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(default)
}

/// Feeds `n` mutations of `fixture` to `parse`; fails on a panic, a slow input or an allocation
/// larger than 64 MiB + 64 x the input. Returns (inputs tried, accepted, rejected).
pub fn fuzz(
    name: &str,
    fixture: &[u8],
    seed: u64,
    n: usize,
    parse: impl Fn(&[u8]) -> bool,
) -> (usize, usize, usize) {
    let mut rng = Rng(seed);
    let (mut ok, mut err) = (0, 0);
    for i in 0..n {
        let input = mutate(fixture, &mut rng);
        LARGEST.store(0, Ordering::Relaxed);
        let started = Instant::now();
        let outcome = std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| parse(&input)));
        let took = started.elapsed();
        let largest = LARGEST.load(Ordering::Relaxed);
        let keep = || {
            let path = std::env::temp_dir().join(format!("ffem-fuzz-{name}-{seed}-{i}.bin"));
            std::fs::write(&path, &input).unwrap();
            path.display().to_string()
        };
        match outcome {
            Ok(true) => ok += 1,
            Ok(false) => err += 1,
            Err(_) => panic!(
                "{name}: input {i} (seed {seed}) panicked; saved as {}",
                keep()
            ),
        }
        assert!(
            took < Duration::from_secs(2),
            "{name}: input {i} took {took:?}; saved as {}",
            keep()
        );
        assert!(
            largest <= (64 << 20) + 64 * input.len(),
            "{name}: input {i} of {} bytes allocated {largest} bytes at once; saved as {}",
            input.len(),
            keep()
        );
    }
    eprintln!("{name}: {n} inputs, {ok} accepted, {err} rejected, no panic");
    (n, ok, err)
}
