//! Errors in pipeline files: each one names file:line:col, the node and a fix.

use std::fmt;
use std::ops::Range;
use std::path::{Path, PathBuf};
use std::sync::Arc;

/// A byte range in the pipeline file.
pub type Span = Range<usize>;

/// The text of a pipeline file, for turning byte offsets into line:col.
#[derive(Debug, Clone)]
pub struct SourceMap {
    /// The path as the user wrote it (for messages).
    pub display: String,
    pub path: PathBuf,
    text: Arc<str>,
    line_starts: Arc<[usize]>,
}

impl SourceMap {
    pub fn new(path: &Path, text: &str) -> SourceMap {
        let mut starts = vec![0];
        starts.extend(text.match_indices('\n').map(|(i, _)| i + 1));
        SourceMap {
            display: path.display().to_string(),
            path: path.to_path_buf(),
            text: Arc::from(text),
            line_starts: Arc::from(starts),
        }
    }

    pub fn text(&self) -> &str {
        &self.text
    }

    /// 1-based line and column (in characters) of a byte offset.
    pub fn line_col(&self, offset: usize) -> (usize, usize) {
        let offset = offset.min(self.text.len());
        let line = match self.line_starts.binary_search(&offset) {
            Ok(i) => i,
            Err(i) => i - 1,
        };
        let start = self.line_starts[line];
        let col = self.text.get(start..offset).map_or(offset - start, |s| s.chars().count());
        (line + 1, col + 1)
    }
}

/// One problem in a pipeline file.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Diagnostic {
    pub file: String,
    pub line: usize,
    pub col: usize,
    pub node: Option<String>,
    pub message: String,
    pub fix: Option<String>,
}

impl Diagnostic {
    pub fn at(source: &SourceMap, span: &Span, node: Option<&str>, message: impl Into<String>) -> Diagnostic {
        let (line, col) = source.line_col(span.start);
        Diagnostic {
            file: source.display.clone(),
            line,
            col,
            node: node.map(str::to_owned),
            message: message.into(),
            fix: None,
        }
    }

    pub fn with_fix(mut self, fix: impl Into<String>) -> Diagnostic {
        self.fix = Some(fix.into());
        self
    }
}

impl fmt::Display for Diagnostic {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}:{}:{}: error", self.file, self.line, self.col)?;
        if let Some(node) = &self.node {
            write!(f, " in node `{node}`")?;
        }
        write!(f, ": {}", self.message)?;
        if let Some(fix) = &self.fix {
            write!(f, "\n  fix: {fix}")?;
        }
        Ok(())
    }
}

/// All the problems found in one pipeline file, in file order.
#[derive(Debug, Clone, Default)]
pub struct Diagnostics(pub Vec<Diagnostic>);

impl Diagnostics {
    pub fn push(&mut self, d: Diagnostic) {
        self.0.push(d);
    }
    pub fn is_empty(&self) -> bool {
        self.0.is_empty()
    }
    pub fn len(&self) -> usize {
        self.0.len()
    }
    pub fn extend(&mut self, other: Diagnostics) {
        self.0.extend(other.0);
    }
    /// `Err(self)` when there is anything to report, sorted by position.
    pub fn into_result(mut self) -> Result<(), Diagnostics> {
        if self.0.is_empty() {
            Ok(())
        } else {
            self.0.sort_by_key(|d| (d.line, d.col));
            self.0.dedup();
            Err(self)
        }
    }
}

impl fmt::Display for Diagnostics {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        for (i, d) in self.0.iter().enumerate() {
            if i > 0 {
                writeln!(f)?;
            }
            write!(f, "{d}")?;
        }
        if self.0.len() > 1 {
            write!(f, "\n{} errors", self.0.len())?;
        }
        Ok(())
    }
}

impl std::error::Error for Diagnostics {}

/// The closest candidate to `word` by edit distance, for "did you mean".
pub fn closest<'a>(word: &str, candidates: impl IntoIterator<Item = &'a str>) -> Option<&'a str> {
    let limit = (word.chars().count() / 3).max(1);
    candidates
        .into_iter()
        .map(|c| (edit_distance(word, c), c))
        .filter(|(d, _)| *d <= limit)
        .min_by_key(|(d, _)| *d)
        .map(|(_, c)| c)
}

fn edit_distance(a: &str, b: &str) -> usize {
    let b: Vec<char> = b.chars().collect();
    let mut row: Vec<usize> = (0..=b.len()).collect();
    for (i, ca) in a.chars().enumerate() {
        let mut prev = row[0];
        row[0] = i + 1;
        for (j, cb) in b.iter().enumerate() {
            let cur = row[j + 1];
            row[j + 1] = if ca == *cb { prev } else { 1 + prev.min(cur).min(row[j]) };
            prev = cur;
        }
    }
    row[b.len()]
}

/// "did you mean `x`?" or a list of what exists.
pub fn suggest<'a>(word: &str, what: &str, candidates: impl IntoIterator<Item = &'a str> + Clone) -> String {
    if let Some(c) = closest(word, candidates.clone()) {
        return format!("did you mean `{c}`?");
    }
    let all: Vec<&str> = candidates.into_iter().collect();
    if all.is_empty() {
        format!("there are no {what}s here")
    } else {
        let shown: Vec<String> = all.iter().take(12).map(|c| format!("`{c}`")).collect();
        let more = if all.len() > 12 { format!(" and {} more", all.len() - 12) } else { String::new() };
        format!("use one of the {what}s: {}{more}", shown.join(", "))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn line_col_counts_from_one() {
        let s = SourceMap::new(Path::new("p.toml"), "ab\ncdé\nf");
        assert_eq!(s.line_col(0), (1, 1));
        assert_eq!(s.line_col(3), (2, 1));
        assert_eq!(s.line_col(7), (2, 4)); // after 'é' (2 bytes)
        assert_eq!(s.line_col(8), (3, 1));
        assert_eq!(s.line_col(999), (3, 2));
    }

    #[test]
    fn suggestions() {
        assert_eq!(closest("extrct", ["extract", "train"]), Some("extract"));
        assert_eq!(closest("zzz", ["extract", "train"]), None);
        assert!(suggest("zzzz", "node", ["a", "b"]).contains("`a`, `b`"));
    }
}
