//! The block cache reuses a freed large block for the next request of the same layout, zeroes it
//! when asked, and leaves small and differently sized requests to the system allocator.

use std::alloc::{GlobalAlloc, Layout};

use ffem_kernels::alloc::{BlockCache, MIN_BLOCK};

#[test]
fn large_blocks_are_reused_and_zeroed_on_request() {
    let a = BlockCache;
    let big = Layout::from_size_align(MIN_BLOCK * 3, 64).unwrap();
    unsafe {
        let p = a.alloc(big);
        assert!(!p.is_null());
        p.write_bytes(0xAB, big.size());
        a.dealloc(p, big);

        // Same layout: the same block comes back, zeroed through alloc_zeroed.
        let q = a.alloc_zeroed(big);
        assert_eq!(q, p);
        let bytes = std::slice::from_raw_parts(q, big.size());
        assert!(bytes.iter().all(|&b| b == 0));

        // While it is in use, another request of that size gets another block.
        let r = a.alloc(big);
        assert_ne!(r, q);
        a.dealloc(q, big);
        a.dealloc(r, big);

        // A different size never gets a cached block of another size.
        let other = Layout::from_size_align(MIN_BLOCK * 2, 64).unwrap();
        let s = a.alloc(other);
        assert!(s != q && s != r);
        a.dealloc(s, other);

        // Growing a block keeps its contents.
        let small = Layout::from_size_align(1024, 8).unwrap();
        let t = a.alloc(small);
        t.write_bytes(7, 1024);
        let u = a.realloc(t, small, MIN_BLOCK * 5);
        assert!(std::slice::from_raw_parts(u, 1024).iter().all(|&b| b == 7));
        a.dealloc(u, Layout::from_size_align(MIN_BLOCK * 5, 8).unwrap());
    }
}
