//! The bytes Patterns sends, made so that the receiver can check them. Pure.
//!
//! A direct message's bytes follow from (origin, destination, superstep), and a rank's
//! contribution to a reduction from (rank, superstep), so every receiver checks what it got
//! without any extra traffic; the reduction (a byte-wise wrapping sum) has a closed form.

/// The first byte of the message `origin` sends to `dest` in `step`; byte i adds i.
fn seed(origin: u32, dest: u32, step: u64) -> u8 {
    let h = (origin as u64).wrapping_mul(0x9E37_79B9_7F4A_7C15)
        ^ (dest as u64).wrapping_mul(0xC2B2_AE3D_27D4_EB4F)
        ^ step.wrapping_mul(0x1656_67B1_9E37_79F9);
    (h >> 56) as u8
}

/// The message `origin` makes for `dest` in superstep `step`.
pub fn direct(origin: u32, dest: u32, step: u64, len: usize) -> Vec<u8> {
    let s = seed(origin, dest, step);
    (0..len).map(|i| s.wrapping_add(i as u8)).collect()
}

/// Whether `bytes` is the message `origin` made for `dest` in `step`.
pub fn is_direct(bytes: &[u8], origin: u32, dest: u32, step: u64, len: usize) -> bool {
    let s = seed(origin, dest, step);
    bytes.len() == len
        && bytes
            .iter()
            .enumerate()
            .all(|(i, &b)| b == s.wrapping_add(i as u8))
}

/// Rank `rank`'s contribution to the reduction of superstep `step`: byte i is
/// 7·rank + step + i (mod 256).
pub fn contribution(rank: usize, step: u64, len: usize) -> Vec<u8> {
    let base = (rank as u64).wrapping_mul(7).wrapping_add(step) as u8;
    (0..len).map(|i| base.wrapping_add(i as u8)).collect()
}

/// Adds `other` into `acc` byte by byte (mod 256).
pub fn add_into(acc: &mut [u8], other: &[u8]) {
    for (a, b) in acc.iter_mut().zip(other) {
        *a = a.wrapping_add(*b);
    }
}

/// Whether `bytes` is the sum of all `ranks` contributions of superstep `step`:
/// byte i is 7·n(n-1)/2 + n·(step + i) (mod 256).
pub fn is_total(bytes: &[u8], ranks: usize, step: u64, len: usize) -> bool {
    let n = ranks as u64;
    let base = 7u64.wrapping_mul(n * n.saturating_sub(1) / 2);
    let per = n.wrapping_mul(step);
    bytes.len() == len
        && bytes.iter().enumerate().all(|(i, &b)| {
            b == base
                .wrapping_add(per)
                .wrapping_add(n.wrapping_mul(i as u64)) as u8
        })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn direct_messages_check_and_differ() {
        let m = direct(3, 5, 9, 100);
        assert!(is_direct(&m, 3, 5, 9, 100));
        assert!(!is_direct(&m[..99], 3, 5, 9, 100));
        let mut bad = m.clone();
        bad[50] ^= 1;
        assert!(!is_direct(&bad, 3, 5, 9, 100));
        let others = [(5, 3, 9), (3, 5, 10), (4, 5, 9)];
        assert!(others.iter().any(|&(o, d, s)| !is_direct(&m, o, d, s, 100)));
    }

    #[test]
    fn the_sum_of_all_contributions_is_the_closed_form() {
        for n in [1, 2, 7, 64] {
            for step in [0, 1, 300] {
                let mut acc = vec![0u8; 33];
                for r in 0..n {
                    add_into(&mut acc, &contribution(r, step, 33));
                }
                assert!(is_total(&acc, n, step, 33), "n={n} step={step}");
                if n > 1 {
                    assert!(!is_total(&acc, n - 1, step, 33));
                }
            }
        }
    }
}
