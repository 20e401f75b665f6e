//! Byte spans into a source text, and the index that turns them into lines and columns.

use serde::Serialize;

/// The largest text the library reads: offsets are kept in 32 bits, since every node of the
/// syntax tree holds spans and a 100,000-rule file holds a million of them.
/// [`parse`](crate::parse()) refuses a longer text with a diagnostic.
pub const MAX_TEXT_LEN: usize = u32::MAX as usize;

/// A half-open byte range `[start, end)` into the source text.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize)]
pub struct Span {
    start: u32,
    end: u32,
}

impl Span {
    /// Offsets past [`MAX_TEXT_LEN`] saturate; the parser never makes them, as it refuses
    /// longer texts.
    pub const fn new(start: usize, end: usize) -> Span {
        Span {
            start: saturate(start),
            end: saturate(end),
        }
    }

    pub const fn start(self) -> usize {
        self.start as usize
    }

    pub const fn end(self) -> usize {
        self.end as usize
    }

    pub const fn range(self) -> std::ops::Range<usize> {
        self.start()..self.end()
    }

    /// The smallest span covering both.
    pub fn cover(self, other: Span) -> Span {
        Span {
            start: self.start.min(other.start),
            end: self.end.max(other.end),
        }
    }

    pub fn len(self) -> usize {
        self.end() - self.start()
    }

    pub fn is_empty(self) -> bool {
        self.start == self.end
    }

    pub fn contains(self, offset: usize) -> bool {
        self.start() <= offset && offset < self.end()
    }
}

const fn saturate(offset: usize) -> u32 {
    if offset > MAX_TEXT_LEN {
        u32::MAX
    } else {
        offset as u32
    }
}

/// A 1-based line and column; the column counts characters (SPEC 3) or UTF-16 units (LSP).
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Serialize)]
pub struct LineCol {
    pub line: usize,
    pub column: usize,
}

/// Maps byte offsets to line/column positions and back. Built once per text in O(n).
#[derive(Clone, Debug)]
pub struct LineIndex {
    /// Byte offset where each line starts.
    line_starts: Vec<usize>,
    /// Whether the text is pure ASCII, in which case columns are byte differences.
    ascii: bool,
}

impl LineIndex {
    pub fn new(text: &str) -> LineIndex {
        let mut line_starts = vec![0];
        line_starts.extend(memchr_newlines(text.as_bytes()));
        LineIndex {
            line_starts,
            ascii: text.is_ascii(),
        }
    }

    pub fn line_count(&self) -> usize {
        self.line_starts.len()
    }

    /// The 0-based line holding `offset`.
    pub fn line_of(&self, offset: usize) -> usize {
        match self.line_starts.binary_search(&offset) {
            Ok(line) => line,
            Err(next) => next - 1,
        }
    }

    pub fn line_start(&self, line: usize) -> usize {
        self.line_starts[line.min(self.line_starts.len() - 1)]
    }

    /// 1-based line and 1-based column counted in characters.
    pub fn line_col(&self, text: &str, offset: usize) -> LineCol {
        let offset = clamp_to_char_boundary(text, offset);
        let line = self.line_of(offset);
        let start = self.line_starts[line];
        let column = if self.ascii {
            offset - start
        } else {
            text[start..offset].chars().count()
        };
        LineCol {
            line: line + 1,
            column: column + 1,
        }
    }

    /// 0-based line and 0-based column counted in UTF-16 code units (the LSP default).
    pub fn utf16_position(&self, text: &str, offset: usize) -> (u32, u32) {
        let offset = clamp_to_char_boundary(text, offset);
        let line = self.line_of(offset);
        let start = self.line_starts[line];
        let column = if self.ascii {
            offset - start
        } else {
            text[start..offset].encode_utf16().count()
        };
        (line as u32, column as u32)
    }

    /// The byte offset of a 0-based line and UTF-16 column; `None` when the line is past the end.
    /// A column past the end of the line is clamped to the line's end, as LSP asks.
    pub fn offset_of_utf16(&self, text: &str, line: u32, column: u32) -> Option<usize> {
        let line = line as usize;
        if line >= self.line_starts.len() {
            return None;
        }
        let start = self.line_starts[line];
        let end = self
            .line_starts
            .get(line + 1)
            .map_or(text.len(), |next| next - 1);
        let mut units = 0u32;
        for (i, ch) in text[start..end].char_indices() {
            if units >= column {
                return Some(start + i);
            }
            units += ch.len_utf16() as u32;
        }
        Some(end)
    }
}

fn memchr_newlines(bytes: &[u8]) -> impl Iterator<Item = usize> + '_ {
    bytes
        .iter()
        .enumerate()
        .filter(|(_, b)| **b == b'\n')
        .map(|(i, _)| i + 1)
}

fn clamp_to_char_boundary(text: &str, mut offset: usize) -> usize {
    offset = offset.min(text.len());
    while !text.is_char_boundary(offset) {
        offset -= 1;
    }
    offset
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn columns_count_characters_and_utf16_units() {
        let text = "ab\n# é😀x\nz";
        let index = LineIndex::new(text);
        let x = text.find('x').unwrap();
        assert_eq!(index.line_col(text, x), LineCol { line: 2, column: 5 });
        assert_eq!(index.utf16_position(text, x), (1, 5));
        assert_eq!(index.offset_of_utf16(text, 1, 5), Some(x));
        assert_eq!(
            index.line_col(text, text.len()),
            LineCol { line: 3, column: 2 }
        );
        assert_eq!(index.offset_of_utf16(text, 9, 0), None);
    }
}
