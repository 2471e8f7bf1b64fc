//! A global allocator that keeps freed large blocks for the next allocation of the same size.
//!
//! Why: a training or inference step allocates and frees the same activation-sized buffers (up to
//! tens of megabytes) every step. The system allocator hands blocks that large to `mmap` and back
//! to the kernel on every free, so each step faults every page of every activation in again (one
//! fault and one page clear per 4 KiB: about a tenth of a CPU training step). Blocks of at least
//! [`MIN_BLOCK`] bytes are kept here, up to [`MAX_CACHED`] bytes in [`SLOTS`] slots, and reused
//! for a request of exactly the same size and alignment; everything else goes to the system.
//!
//! Install it in a binary with `#[global_allocator] static A: ffem_kernels::alloc::BlockCache =
//! ffem_kernels::alloc::BlockCache;`.

use std::alloc::{GlobalAlloc, Layout, System};
use std::sync::atomic::{AtomicBool, Ordering};

/// Smallest block kept for reuse.
pub const MIN_BLOCK: usize = 1 << 20;
/// Most bytes kept at once.
pub const MAX_CACHED: usize = 2 << 30;
/// Most blocks kept at once.
pub const SLOTS: usize = 256;

/// The allocator (see the module documentation).
pub struct BlockCache;

struct Cache {
    /// (size, align, address); size 0 marks an empty slot.
    slots: [(usize, usize, usize); SLOTS],
    bytes: usize,
}

/// A spin lock rather than a mutex: the allocator must not allocate, and every critical section
/// is a scan of a small array.
struct Locked {
    busy: AtomicBool,
    cache: std::cell::UnsafeCell<Cache>,
}

// SAFETY: `cache` is only touched between a successful acquire of `busy` and its release.
unsafe impl Sync for Locked {}

static CACHE: Locked = Locked {
    busy: AtomicBool::new(false),
    cache: std::cell::UnsafeCell::new(Cache {
        slots: [(0, 0, 0); SLOTS],
        bytes: 0,
    }),
};

fn with_cache<R>(f: impl FnOnce(&mut Cache) -> R) -> R {
    while CACHE
        .busy
        .compare_exchange_weak(false, true, Ordering::Acquire, Ordering::Relaxed)
        .is_err()
    {
        std::hint::spin_loop();
    }
    // SAFETY: the lock is held until the store below.
    let r = f(unsafe { &mut *CACHE.cache.get() });
    CACHE.busy.store(false, Ordering::Release);
    r
}

fn take(layout: Layout) -> Option<*mut u8> {
    with_cache(|c| {
        let slot = c
            .slots
            .iter_mut()
            .find(|s| s.0 == layout.size() && s.1 == layout.align())?;
        let ptr = slot.2 as *mut u8;
        *slot = (0, 0, 0);
        c.bytes -= layout.size();
        Some(ptr)
    })
}

fn keep(ptr: *mut u8, layout: Layout) -> bool {
    with_cache(|c| {
        if c.bytes + layout.size() > MAX_CACHED {
            return false;
        }
        let Some(slot) = c.slots.iter_mut().find(|s| s.0 == 0) else {
            return false;
        };
        *slot = (layout.size(), layout.align(), ptr as usize);
        c.bytes += layout.size();
        true
    })
}

// SAFETY: every block handed out comes from `System` with the same layout it is requested with
// (a cached block is only reused for an identical size and alignment), and every block freed is
// either kept (and later handed out once) or returned to `System` with its layout.
unsafe impl GlobalAlloc for BlockCache {
    unsafe fn alloc(&self, layout: Layout) -> *mut u8 {
        if layout.size() >= MIN_BLOCK
            && let Some(ptr) = take(layout)
        {
            return ptr;
        }
        // SAFETY: forwarded with the caller's layout.
        unsafe { System.alloc(layout) }
    }

    unsafe fn alloc_zeroed(&self, layout: Layout) -> *mut u8 {
        if layout.size() >= MIN_BLOCK
            && let Some(ptr) = take(layout)
        {
            // SAFETY: the block is `layout.size()` bytes long and exclusively ours.
            unsafe { std::ptr::write_bytes(ptr, 0, layout.size()) };
            return ptr;
        }
        // SAFETY: forwarded with the caller's layout.
        unsafe { System.alloc_zeroed(layout) }
    }

    unsafe fn dealloc(&self, ptr: *mut u8, layout: Layout) {
        if layout.size() >= MIN_BLOCK && keep(ptr, layout) {
            return;
        }
        // SAFETY: `ptr` came from `System` with this layout.
        unsafe { System.dealloc(ptr, layout) }
    }

    unsafe fn realloc(&self, ptr: *mut u8, layout: Layout, new_size: usize) -> *mut u8 {
        if layout.size() < MIN_BLOCK && new_size < MIN_BLOCK {
            // SAFETY: both sizes stay below the cached range, so `ptr` is a `System` block.
            return unsafe { System.realloc(ptr, layout, new_size) };
        }
        // SAFETY: the caller guarantees a valid layout for `new_size` with this alignment.
        let new_layout = unsafe { Layout::from_size_align_unchecked(new_size, layout.align()) };
        // SAFETY: as `GlobalAlloc::realloc`'s default: a fresh block, the common prefix copied,
        // the old block released.
        unsafe {
            let new = self.alloc(new_layout);
            if !new.is_null() {
                std::ptr::copy_nonoverlapping(ptr, new, layout.size().min(new_size));
                self.dealloc(ptr, layout);
            }
            new
        }
    }
}
