//! The compute phase: a fixed amount of dependent arithmetic the optimiser cannot remove.

use std::hint::black_box;

/// Runs `units` steps of a 64-bit linear congruential generator and returns the state.
pub fn spin(units: u64) -> u64 {
    let mut x = black_box(0x2545_F491_4F6C_DD1D_u64);
    for _ in 0..units {
        x = x
            .wrapping_mul(6_364_136_223_846_793_005)
            .wrapping_add(1_442_695_040_888_963_407);
    }
    black_box(x)
}
