//! The sliding replay window of WireGuard (RFC 6479's design): a ring of 64-bit words, 2048
//! bits in all, of which the newest 1984 counters are always tracked. Checking does not change
//! the window; a counter is marked only after its record authenticated, so a forged record
//! cannot move the window.

use crate::record::Reject;

const WORD_BITS: u64 = 64;
const WORDS: usize = 2048 / WORD_BITS as usize;
/// How far behind the newest accepted counter a record may still arrive.
pub const WINDOW: u64 = (WORDS as u64 - 1) * WORD_BITS;
/// Counters from here on are never accepted (WireGuard's REJECT_AFTER_MESSAGES): a sender
/// must rekey before reaching it.
pub const COUNTER_LIMIT: u64 = u64::MAX - (1 << 13);

/// Which counters of one epoch have arrived.
#[derive(Clone, Debug, Default)]
pub struct ReplayWindow {
    newest: u64,
    bits: [u64; WORDS],
}

impl ReplayWindow {
    pub fn new() -> ReplayWindow {
        ReplayWindow::default()
    }

    /// Whether a record with this counter may be delivered, without marking it.
    pub fn check(&self, counter: u64) -> Result<(), Reject> {
        if counter >= COUNTER_LIMIT {
            return Err(Reject::TooOld);
        }
        if counter > self.newest {
            return Ok(());
        }
        if self.newest - counter > WINDOW {
            return Err(Reject::TooOld);
        }
        let (word, bit) = position(counter);
        if self.bits[word] & bit != 0 {
            return Err(Reject::Replay);
        }
        Ok(())
    }

    /// Marks an authenticated counter that `check` accepted.
    pub fn mark(&mut self, counter: u64) {
        if counter > self.newest {
            let from = self.newest / WORD_BITS;
            let steps = (counter / WORD_BITS - from).min(WORDS as u64);
            // Words the window slides over are recycled for newer counters.
            for i in 1..=steps {
                self.bits[((from + i) % WORDS as u64) as usize] = 0;
            }
            self.newest = counter;
        }
        let (word, bit) = position(counter);
        self.bits[word] |= bit;
    }

    /// `check`, then `mark` when accepted.
    pub fn check_and_mark(&mut self, counter: u64) -> Result<(), Reject> {
        self.check(counter)?;
        self.mark(counter);
        Ok(())
    }
}

fn position(counter: u64) -> (usize, u64) {
    (
        ((counter / WORD_BITS) % WORDS as u64) as usize,
        1 << (counter % WORD_BITS),
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn in_order_then_duplicates_then_too_old() {
        let mut w = ReplayWindow::new();
        for c in 0..5000 {
            assert_eq!(w.check_and_mark(c), Ok(()), "counter {c}");
        }
        assert_eq!(w.check(4999), Err(Reject::Replay));
        assert_eq!(w.check(4999 - WINDOW), Err(Reject::Replay));
        assert_eq!(w.check(4998 - WINDOW), Err(Reject::TooOld));
        assert_eq!(w.check(COUNTER_LIMIT), Err(Reject::TooOld));
    }

    #[test]
    fn a_jump_far_ahead_clears_the_ring() {
        let mut w = ReplayWindow::new();
        w.check_and_mark(3).unwrap();
        w.check_and_mark(3 + 64 * 32).unwrap();
        // 3 + 64 is still inside the window, in a ring word the jump recycled: never seen.
        assert_eq!(w.check_and_mark(3 + 64), Ok(()));
        assert_eq!(w.check(3), Err(Reject::TooOld));
    }
}
