//! The main thread's heap, grown by many small blocks, is advised huge pages (the path
//! `vnetc check` takes); a small program's heap is not. Run without the test harness: its
//! tests run on other threads, whose blocks come from other heaps than the main one.

use vnet_hugealloc::{vma_flags, HugePages, HUGE};

#[global_allocator]
static ALLOC: HugePages = HugePages;

fn flags_at(addr: usize) -> String {
    let smaps = std::fs::read_to_string("/proc/self/smaps").expect("smaps");
    vma_flags(&smaps, addr).expect("the block is mapped")
}

fn main() {
    let thp = std::fs::read_to_string("/sys/kernel/mm/transparent_hugepage/enabled");
    if thp.as_deref().map_or(true, |t| t.contains("[never]")) {
        println!("skipping: no transparent huge pages here");
        return;
    }
    // A small heap is left alone.
    let small: Vec<Box<[u8; 64]>> = (0..100).map(|_| Box::new([1u8; 64])).collect();
    let flags = flags_at(&*small[50] as *const _ as usize);
    assert!(
        !flags.split_whitespace().any(|f| f == "hg"),
        "small heap: {flags}"
    );
    // Blocks of a large file's analysis: 16 times a huge page in 64-byte pieces.
    let many: Vec<Box<[u8; 64]>> = (0..16 * HUGE / 64)
        .map(|i| Box::new([i as u8; 64]))
        .collect();
    let late = &*many[many.len() - 100] as *const _ as usize;
    let flags = flags_at(late);
    assert!(
        flags.split_whitespace().any(|f| f == "hg"),
        "grown heap: {flags}"
    );
    assert!(many.iter().enumerate().all(|(i, b)| b[63] == i as u8));
    println!("test heap: ok (small heap not advised; grown heap advised: {flags})");
}
