//! Which daemons probe each other when. SPEC 5.2: never more than one probe per daemon at a
//! time, since two probes through one daemon would share its CPU and links and each measure
//! less than the path can do. The circle method of round-robin tournaments splits all pairs
//! into rounds of disjoint pairs: n − 1 rounds for even n, n for odd n (one daemon rests).

/// Rounds of disjoint unordered pairs `(i, j)`, `i < j`, covering every pair of `n` daemons
/// exactly once. A pair probes both directions, one after the other, within its round.
pub fn rounds(n: usize) -> Vec<Vec<(usize, usize)>> {
    if n < 2 {
        return Vec::new();
    }
    // With an odd count, a phantom daemon `n` makes it even; its partner rests that round.
    let m = if n.is_multiple_of(2) { n } else { n + 1 };
    let mut ring: Vec<usize> = (1..m).collect();
    let mut out = Vec::with_capacity(m - 1);
    for _ in 0..m - 1 {
        let mut round = Vec::with_capacity(m / 2);
        let mut pair = |a: usize, b: usize| {
            if a < n && b < n {
                round.push((a.min(b), a.max(b)));
            }
        };
        pair(0, ring[0]);
        for k in 1..m / 2 {
            pair(ring[k], ring[m - 1 - k]);
        }
        out.push(round);
        ring.rotate_right(1);
    }
    out
}

/// Rounds restricted to the given pairs (for `--pairs links`): greedily packed so that no
/// daemon is in two pairs of a round.
pub fn rounds_of(pairs: &[(usize, usize)]) -> Vec<Vec<(usize, usize)>> {
    let mut left: Vec<(usize, usize)> = pairs.to_vec();
    let mut out = Vec::new();
    while !left.is_empty() {
        let mut busy = std::collections::HashSet::new();
        let mut round = Vec::new();
        left.retain(|&(a, b)| {
            if busy.contains(&a) || busy.contains(&b) {
                return true;
            }
            busy.insert(a);
            busy.insert(b);
            round.push((a, b));
            false
        });
        out.push(round);
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::collections::HashSet;

    fn check(n: usize, rounds: &[Vec<(usize, usize)>]) {
        let mut seen = HashSet::new();
        for round in rounds {
            let mut busy = HashSet::new();
            for &(a, b) in round {
                assert!(a < b && b < n);
                assert!(
                    busy.insert(a) && busy.insert(b),
                    "daemon in two probes: {round:?}"
                );
                assert!(seen.insert((a, b)), "pair twice: {a} {b}");
            }
        }
        assert_eq!(seen.len(), n * (n - 1) / 2, "every pair once");
    }

    #[test]
    fn every_pair_once_and_no_daemon_twice_a_round() {
        for n in 2..=17 {
            let r = rounds(n);
            check(n, &r);
            assert_eq!(r.len(), if n.is_multiple_of(2) { n - 1 } else { n });
        }
        assert!(rounds(1).is_empty() && rounds(0).is_empty());
    }

    #[test]
    fn chosen_pairs_are_packed_without_overlap() {
        let star: Vec<(usize, usize)> = (1..6).map(|i| (0, i)).collect();
        let r = rounds_of(&star);
        assert_eq!(r.len(), 5, "a star's centre is in every probe");
        let ring: Vec<(usize, usize)> = (0..6).map(|i| (i, (i + 1) % 6)).collect();
        assert!(rounds_of(&ring).len() <= 3);
    }
}
