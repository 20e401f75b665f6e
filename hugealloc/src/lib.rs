//! The global allocator of VNET's front-end binaries (`vnetc`, `vnet-lsp`, the language
//! benchmarks): glibc's, with a large heap on transparent huge pages.
//!
//! Why: checking a file of 100,000 rules touches some 150 MB in a scattered way. With 4 KiB
//! pages the TLB covers a few MB of it, and the time grew 1.4x faster than the file from 10k to
//! 100k rules; on huge pages it grows about 1.2x faster, and 100k rules check 20–25% sooner
//! (BENCHMARKS.md, "Huge pages"). Debian sets transparent huge pages to `madvise`: a process
//! must ask for them. glibc asks when started with `GLIBC_TUNABLES=glibc.malloc.hugetlb=1`,
//! which only the environment can set; this asks from inside.
//!
//! How: after an allocation, a block of at least [`HUGE`] (glibc maps those apart) and any
//! growth of the heap's top (`sbrk(0)`) are advised `MADV_HUGEPAGE`, and the heap is set to
//! grow [`TOP_PAD`] at a time, so that it grows in huge-page-sized pieces. A program whose heap
//! stays small is not touched: advice starts once the heap has grown by [`HUGE`]. Advice is
//! only advice: where the kernel has no huge pages it is refused, and ignored here.

use std::alloc::{GlobalAlloc, Layout, System};
use std::sync::atomic::{AtomicUsize, Ordering};

/// A huge page on x86-64 and arm64 (4 KiB base pages).
pub const HUGE: usize = 2 << 20;

/// How much glibc's heap grows beyond a request when it must grow.
pub const TOP_PAD: i32 = 32 << 20;

/// The system allocator, with huge pages advised for large blocks and a large heap.
pub struct HugePages;

/// The heap's top up to which advice was given (0: not yet looked at).
static ADVISED: AtomicUsize = AtomicUsize::new(0);

unsafe impl GlobalAlloc for HugePages {
    unsafe fn alloc(&self, layout: Layout) -> *mut u8 {
        // SAFETY: the caller's contract for `alloc`, passed on.
        let p = unsafe { System.alloc(layout) };
        advise(p, layout.size());
        p
    }

    unsafe fn alloc_zeroed(&self, layout: Layout) -> *mut u8 {
        // SAFETY: as for `alloc`.
        let p = unsafe { System.alloc_zeroed(layout) };
        advise(p, layout.size());
        p
    }

    unsafe fn dealloc(&self, p: *mut u8, layout: Layout) {
        // SAFETY: `p` came from `System` through this allocator, with this layout.
        unsafe { System.dealloc(p, layout) }
    }

    unsafe fn realloc(&self, p: *mut u8, layout: Layout, size: usize) -> *mut u8 {
        // SAFETY: as for `dealloc`; `size` is the caller's, checked by its contract.
        let q = unsafe { System.realloc(p, layout, size) };
        advise(q, size);
        q
    }
}

/// Advises huge pages for a new block of `size` bytes at `p`, if it is large, and for the
/// heap's growth since the last advice.
fn advise(p: *mut u8, size: usize) {
    if p.is_null() {
        return;
    }
    if size >= HUGE {
        advise_range(p as usize, p as usize + size);
    }
    // SAFETY: `sbrk(0)` only reads the current break.
    let top = unsafe { libc::sbrk(0) } as usize;
    let done = ADVISED.load(Ordering::Relaxed);
    if done == 0 || top < done {
        // The first look, or the heap shrank (glibc trims its top): advise from here on.
        ADVISED.store(top, Ordering::Relaxed);
    } else if top >= done + HUGE {
        if ADVISED.swap(top, Ordering::Relaxed) == done {
            grow_in_large_steps();
        }
        advise_range(done, top);
    }
}

/// Sets glibc's heap to grow [`TOP_PAD`] at a time (once; the heap has just grown large).
fn grow_in_large_steps() {
    static SET: std::sync::Once = std::sync::Once::new();
    // SAFETY: `mallopt` takes glibc's own lock; no allocation of ours is in progress here.
    SET.call_once(|| unsafe {
        libc::mallopt(libc::M_TOP_PAD, TOP_PAD);
    });
}

/// `madvise(MADV_HUGEPAGE)` on the whole pages of `start..end`; a refusal is ignored.
fn advise_range(start: usize, end: usize) {
    let page = 4096;
    let (start, end) = (start.div_ceil(page) * page, end / page * page);
    if end > start {
        // SAFETY: advice changes no memory; a range that is not mapped is refused (ENOMEM).
        unsafe {
            libc::madvise(start as *mut libc::c_void, end - start, libc::MADV_HUGEPAGE);
        }
    }
}

/// The `VmFlags` line of `/proc/self/smaps` for the mapping that holds `addr` (the kernel's
/// word on what was advised: `hg` for huge pages).
pub fn vma_flags(smaps: &str, addr: usize) -> Option<String> {
    let mut inside = false;
    for line in smaps.lines() {
        let range = line
            .split_whitespace()
            .next()
            .and_then(|r| r.split_once('-'));
        if let Some((a, b)) = range {
            if let (Ok(a), Ok(b)) = (usize::from_str_radix(a, 16), usize::from_str_radix(b, 16)) {
                inside = a <= addr && addr < b;
                continue;
            }
        }
        if inside {
            if let Some(flags) = line.strip_prefix("VmFlags:") {
                return Some(flags.to_string());
            }
        }
    }
    None
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A large block is advised: the kernel lists its mapping as huge-page-enabled
    /// (`VmFlags: ... hg`), and what is in it stays. (The heap's growth is tested in
    /// `tests/heap.rs`, on the main thread, whose heap it is.)
    #[test]
    fn a_large_block_is_advised_huge_pages() {
        let layout = Layout::from_size_align(8 * HUGE, 16).expect("layout");
        // SAFETY: a fresh block of a valid layout, freed below with the same layout.
        let big = unsafe { HugePages.alloc(layout) };
        assert!(!big.is_null());
        // SAFETY: the block is 8 * HUGE bytes long.
        unsafe { big.add(HUGE).write(7) };
        let smaps = std::fs::read_to_string("/proc/self/smaps").expect("smaps");
        let at = big as usize + HUGE;
        let flags = vma_flags(&smaps, at).expect("the block is mapped");
        // SAFETY: written above.
        assert_eq!(unsafe { big.add(HUGE).read() }, 7);
        unsafe { HugePages.dealloc(big, layout) };
        let thp = std::fs::read_to_string("/sys/kernel/mm/transparent_hugepage/enabled");
        if thp.is_ok_and(|t| !t.contains("[never]")) {
            assert!(flags.split_whitespace().any(|f| f == "hg"), "{flags}");
        }
    }
}
