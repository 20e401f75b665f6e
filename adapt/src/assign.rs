//! The linear assignment problem (Hungarian algorithm with potentials, O(n^2 m)): the least
//! total cost of giving each of `n` rows its own column out of `m >= n`. The Gilmore–Lawler
//! bound solves one per branch-and-bound node.

/// The least cost of an assignment of every row of the `n` x `m` row-major `cost` to a
/// distinct column, `m >= n`; infinite when some row has only infinite columns left.
pub fn least(cost: &[f64], n: usize, m: usize) -> f64 {
    debug_assert!(n <= m && cost.len() == n * m);
    // Potentials u (rows, 1-based) and v (columns, 1-based); column 0 is the free start.
    let mut u = vec![0.0; n + 1];
    let mut v = vec![0.0; m + 1];
    let mut owner = vec![0usize; m + 1];
    let mut way = vec![0usize; m + 1];
    for row in 1..=n {
        owner[0] = row;
        let mut j0 = 0;
        let mut minv = vec![f64::INFINITY; m + 1];
        let mut used = vec![false; m + 1];
        loop {
            used[j0] = true;
            let i0 = owner[j0];
            let (mut delta, mut j1) = (f64::INFINITY, 0);
            for j in 1..=m {
                if used[j] {
                    continue;
                }
                let reduced = cost[(i0 - 1) * m + j - 1] - u[i0] - v[j];
                if reduced < minv[j] {
                    minv[j] = reduced;
                    way[j] = j0;
                }
                if minv[j] < delta {
                    delta = minv[j];
                    j1 = j;
                }
            }
            if !delta.is_finite() {
                return f64::INFINITY;
            }
            for j in 0..=m {
                if used[j] {
                    u[owner[j]] += delta;
                    v[j] -= delta;
                } else {
                    minv[j] -= delta;
                }
            }
            j0 = j1;
            if owner[j0] == 0 {
                break;
            }
        }
        while j0 != 0 {
            let j1 = way[j0];
            owner[j0] = owner[j1];
            j0 = j1;
        }
    }
    (1..=m)
        .filter(|&j| owner[j] != 0)
        .map(|j| cost[(owner[j] - 1) * m + j - 1])
        .sum()
}

#[cfg(test)]
mod tests {
    use super::least;

    /// Every assignment of rows to distinct columns, the least total.
    fn brute(cost: &[f64], n: usize, m: usize, row: usize, used: &mut Vec<bool>) -> f64 {
        if row == n {
            return 0.0;
        }
        let mut best = f64::INFINITY;
        for j in 0..m {
            if !used[j] {
                used[j] = true;
                best = best.min(cost[row * m + j] + brute(cost, n, m, row + 1, used));
                used[j] = false;
            }
        }
        best
    }

    #[test]
    fn equals_enumeration_on_random_matrices() {
        let mut rng = fastrand::Rng::with_seed(12);
        for _ in 0..300 {
            let n = rng.usize(1..=6);
            let m = n + rng.usize(0..=2);
            let cost: Vec<f64> = (0..n * m)
                .map(|_| match rng.u8(0..10) {
                    0 => f64::INFINITY,
                    _ => rng.u32(0..50) as f64,
                })
                .collect();
            let want = brute(&cost, n, m, 0, &mut vec![false; m]);
            assert_eq!(least(&cost, n, m), want, "{n}x{m} {cost:?}");
        }
    }
}
