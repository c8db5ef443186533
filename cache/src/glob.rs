//! [`KeyPattern`]: which keys a listing returns (§2.15), and [`PatternError`].
//!
//! As in the reference, an empty pattern matches every key, a pattern with any of
//! `*`, `?` or `[` is a glob, and any other pattern is a literal prefix. A glob matches
//! the whole key:
//!
//! - `*` matches any run of characters, empty included, `/` included (unlike Go's
//!   `path.Match`, which the reference uses: cache keys are not paths);
//! - `?` matches one character;
//! - `[abc]` one of the characters listed, `[a-z]` one in the range, `[!a-z]` or
//!   `[^a-z]` one not in it; a `-` first or last in a class is literal;
//! - `\` makes the next character literal, inside a class too.
//!
//! A glob is checked when it is parsed, before any node is asked: an unclosed or empty
//! class, a reversed range or a trailing `\` is a [`PatternError`].
//!
//! Matching is the two-pointer wildcard match with backtracking to the last `*`: every
//! token but `*` consumes exactly one character, so it is exact and takes at most
//! `pattern tokens × key characters` steps.

use std::fmt;

use crate::store::KEY_LEN_MAX;

/// The longest pattern accepted, in bytes.
pub const PATTERN_LEN_MAX: usize = KEY_LEN_MAX;

/// What a glob or prefix pattern accepts, for error messages.
const ACCEPTED: &str = "accepted: a literal prefix, or a glob of `*`, `?`, `[abc]`, `[a-z]`, \
                        `[!a-z]` and `\\` escapes";

/// Why a key pattern is invalid.
#[cfg_attr(feature = "serde", derive(serde::Serialize, serde::Deserialize))]
#[derive(Clone, Debug, PartialEq, Eq, Hash)]
#[non_exhaustive]
pub enum PatternError {
    /// A `[` has no matching `]`.
    UnclosedClass {
        /// The pattern given.
        pattern: String,
        /// The byte offset of the `[`.
        position: usize,
    },
    /// A class lists no character (`[]`, `[!]`).
    EmptyClass {
        /// The pattern given.
        pattern: String,
        /// The byte offset of the `[`.
        position: usize,
    },
    /// A range's first character is after its last (`[z-a]`).
    ReversedRange {
        /// The pattern given.
        pattern: String,
        /// The byte offset of the range's first character.
        position: usize,
    },
    /// The pattern ends with an escaping `\`.
    TrailingEscape {
        /// The pattern given.
        pattern: String,
    },
    /// The pattern is longer than [`PATTERN_LEN_MAX`].
    TooLong {
        /// The pattern's length in bytes.
        pattern_len: usize,
        /// The longest pattern accepted.
        pattern_len_max: usize,
    },
}

impl fmt::Display for PatternError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            PatternError::UnclosedClass { pattern, position } => write!(
                f,
                "invalid key pattern `{pattern}`: the `[` at byte {position} is not closed \
                 by `]`; {ACCEPTED}"
            ),
            PatternError::EmptyClass { pattern, position } => write!(
                f,
                "invalid key pattern `{pattern}`: the class at byte {position} lists no \
                 character; {ACCEPTED}"
            ),
            PatternError::ReversedRange { pattern, position } => write!(
                f,
                "invalid key pattern `{pattern}`: the range at byte {position} ends before it \
                 starts; {ACCEPTED}"
            ),
            PatternError::TrailingEscape { pattern } => write!(
                f,
                "invalid key pattern `{pattern}`: it ends with an escaping `\\`; {ACCEPTED}"
            ),
            PatternError::TooLong { pattern_len, pattern_len_max } => write!(
                f,
                "invalid key pattern of {pattern_len} bytes: accepted up to {pattern_len_max} \
                 bytes"
            ),
        }
    }
}

impl std::error::Error for PatternError {}

/// Which keys a listing returns: all, those with a prefix, or those a glob matches.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum KeyPattern {
    /// Every key (the empty pattern).
    All,
    /// The keys that start with this text.
    Prefix(String),
    /// The keys a glob matches, whole.
    Glob(Glob),
}

/// A parsed glob (see the module documentation).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Glob {
    tokens: Vec<Token>,
}

#[derive(Clone, Debug, PartialEq, Eq)]
enum Token {
    /// This character.
    Literal(char),
    /// Any one character.
    One,
    /// Any run of characters.
    Star,
    /// One character in (or, negated, not in) the inclusive ranges.
    Class { negated: bool, ranges: Vec<(char, char)> },
}

impl KeyPattern {
    /// Parses a listing pattern: empty for all keys, a glob when it has any of `*`, `?`
    /// or `[`, else a literal prefix.
    ///
    /// # Errors
    ///
    /// A pattern longer than [`PATTERN_LEN_MAX`], or an invalid glob: an unclosed or
    /// empty class, a reversed range, a trailing `\`.
    pub fn parse(pattern: &str) -> Result<KeyPattern, PatternError> {
        if pattern.len() > PATTERN_LEN_MAX {
            return Err(PatternError::TooLong {
                pattern_len: pattern.len(),
                pattern_len_max: PATTERN_LEN_MAX,
            });
        }
        if pattern.is_empty() {
            return Ok(KeyPattern::All);
        }
        if pattern.contains(['*', '?', '[']) {
            return Ok(KeyPattern::Glob(Glob::parse(pattern)?));
        }
        Ok(KeyPattern::Prefix(pattern.to_string()))
    }

    /// Whether `key` matches.
    pub fn matches(&self, key: &str) -> bool {
        match self {
            KeyPattern::All => true,
            KeyPattern::Prefix(prefix) => key.starts_with(prefix.as_str()),
            KeyPattern::Glob(glob) => glob.matches(key),
        }
    }

    /// Whether no key after `key` (in byte order) can match: a prefix pattern's keys
    /// are contiguous, so a scan in key order can stop there.
    pub fn is_past(&self, key: &str) -> bool {
        match self {
            KeyPattern::Prefix(prefix) => {
                key > prefix.as_str() && !key.starts_with(prefix.as_str())
            }
            KeyPattern::All | KeyPattern::Glob(_) => false,
        }
    }
}

impl Glob {
    fn parse(pattern: &str) -> Result<Glob, PatternError> {
        let mut tokens = Vec::with_capacity(pattern.len());
        let mut chars = pattern.char_indices().peekable();
        while let Some((position, c)) = chars.next() {
            let token = match c {
                '*' => Token::Star,
                '?' => Token::One,
                '\\' => match chars.next() {
                    Some((_, escaped)) => Token::Literal(escaped),
                    None => {
                        return Err(PatternError::TrailingEscape { pattern: pattern.to_string() });
                    }
                },
                '[' => parse_class(pattern, position, &mut chars)?,
                c => Token::Literal(c),
            };
            // Consecutive stars match what one does.
            if !(token == Token::Star && tokens.last() == Some(&Token::Star)) {
                tokens.push(token);
            }
        }
        assert!(tokens.len() <= pattern.len());
        Ok(Glob { tokens })
    }

    /// Whether the glob matches all of `key`.
    pub fn matches(&self, key: &str) -> bool {
        let key: Vec<char> = key.chars().collect();
        let (mut t, mut k) = (0, 0);
        // Where to resume after the last star: its token index, and the key index it
        // has consumed up to.
        let mut resume: Option<(usize, usize)> = None;
        let steps_max = (self.tokens.len() + 2) * (key.len() + 2);
        for _ in 0..=steps_max {
            if k == key.len() && t == self.tokens.len() {
                return true;
            }
            if t < self.tokens.len() && self.tokens[t] == Token::Star {
                resume = Some((t, k));
                t += 1;
                continue;
            }
            if k < key.len() && t < self.tokens.len() && self.tokens[t].matches_one(key[k]) {
                t += 1;
                k += 1;
                continue;
            }
            // Mismatch: let the last star consume one more character.
            match resume {
                Some((star, consumed)) if consumed < key.len() => {
                    resume = Some((star, consumed + 1));
                    t = star + 1;
                    k = consumed + 1;
                }
                _ => return false,
            }
        }
        unreachable!("a glob match ends within tokens × characters steps");
    }
}

impl Token {
    fn matches_one(&self, c: char) -> bool {
        match self {
            Token::Literal(literal) => *literal == c,
            Token::One => true,
            Token::Star => unreachable!("a star is handled by the matcher"),
            Token::Class { negated, ranges } => {
                ranges.iter().any(|&(low, high)| low <= c && c <= high) != *negated
            }
        }
    }
}

/// Parses a class after its `[` (at byte `start`), up to and including its `]`.
fn parse_class(
    pattern: &str,
    start: usize,
    chars: &mut std::iter::Peekable<std::str::CharIndices<'_>>,
) -> Result<Token, PatternError> {
    let unclosed = || PatternError::UnclosedClass { pattern: pattern.to_string(), position: start };
    let negated = chars.next_if(|&(_, c)| c == '!' || c == '^').is_some();
    let mut ranges = Vec::new();
    loop {
        let (position, c) = chars.next().ok_or_else(unclosed)?;
        let low = match c {
            ']' => break,
            '\\' => chars.next().ok_or_else(unclosed)?.1,
            c => c,
        };
        // A `-` followed by `]` is a literal `-`, as is one that starts the class.
        let is_range = chars.peek().is_some_and(|&(_, c)| c == '-')
            && chars.clone().nth(1).is_some_and(|(_, c)| c != ']');
        if !is_range {
            ranges.push((low, low));
            continue;
        }
        chars.next(); // The `-`.
        let high = match chars.next().ok_or_else(unclosed)? {
            (_, '\\') => chars.next().ok_or_else(unclosed)?.1,
            (_, c) => c,
        };
        if high < low {
            return Err(PatternError::ReversedRange { pattern: pattern.to_string(), position });
        }
        ranges.push((low, high));
    }
    if ranges.is_empty() {
        return Err(PatternError::EmptyClass { pattern: pattern.to_string(), position: start });
    }
    Ok(Token::Class { negated, ranges })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn matches(pattern: &str, key: &str) -> bool {
        KeyPattern::parse(pattern).unwrap().matches(key)
    }

    #[test]
    fn modes_are_chosen_by_metacharacters() {
        assert_eq!(KeyPattern::parse("").unwrap(), KeyPattern::All);
        assert_eq!(KeyPattern::parse("user:").unwrap(), KeyPattern::Prefix("user:".into()));
        assert!(matches!(KeyPattern::parse("user:*").unwrap(), KeyPattern::Glob(_)));
        assert!(matches!(KeyPattern::parse("a?").unwrap(), KeyPattern::Glob(_)));
        assert!(matches!(KeyPattern::parse("[ab]").unwrap(), KeyPattern::Glob(_)));
        // A backslash alone does not make a glob: it is a literal prefix character.
        assert_eq!(KeyPattern::parse("a\\b").unwrap(), KeyPattern::Prefix("a\\b".into()));
    }

    #[test]
    fn prefix_glob_and_class_table() {
        // (pattern, key, matches): the reference's TestBuildKeyMatcher_Modes, extended.
        let table = [
            ("", "anything", true),
            ("first-", "first-1", true),
            ("first-", "second-1", false),
            ("first-", "first", false),
            ("first-?", "first-1", true),
            ("first-?", "first-10", false),
            ("first-*", "first-", true),
            ("first-*", "first-10/x", true),
            ("*", "", true),
            ("*", "a/b/c", true),
            ("*-1*", "first-15", true),
            ("*-1*", "first-25", false),
            ("a*b*c", "aXbYbZc", true),
            ("a*b*c", "aXbYbZ", false),
            ("**a", "bba", true),
            ("[abc]", "b", true),
            ("[abc]", "d", false),
            ("[abc]", "ab", false),
            ("[a-c]x", "bx", true),
            ("[a-c]x", "dx", false),
            ("[!a-c]", "d", true),
            ("[!a-c]", "a", false),
            ("[^a-c]", "a", false),
            ("[a-]", "-", true),
            ("[-a]", "-", true),
            ("[a\\]]", "]", true),
            ("\\*", "*", true),
            ("\\*", "x", false),
            ("\\[x", "[x", true),
            ("first-1[0-2]", "first-11", true),
            ("first-1[0-2]", "first-13", false),
            ("é?", "éà", true),
        ];
        for (pattern, key, expected) in table {
            assert_eq!(matches(pattern, key), expected, "pattern {pattern:?} key {key:?}");
        }
    }

    #[test]
    fn invalid_globs_name_the_pattern_and_what_is_accepted() {
        let error = KeyPattern::parse("[unclosed").unwrap_err();
        assert_eq!(error, PatternError::UnclosedClass { pattern: "[unclosed".into(), position: 0 });
        let message = error.to_string();
        assert!(message.starts_with("invalid key pattern `[unclosed`: the `[` at byte 0"));
        assert!(message.contains("accepted: a literal prefix, or a glob"), "{message}");
        assert!(!message.ends_with('.'));
        let cases = [
            ("ab[", PatternError::UnclosedClass { pattern: "ab[".into(), position: 2 }),
            ("[a\\", PatternError::UnclosedClass { pattern: "[a\\".into(), position: 0 }),
            ("[a-", PatternError::UnclosedClass { pattern: "[a-".into(), position: 0 }),
            ("x[]", PatternError::EmptyClass { pattern: "x[]".into(), position: 1 }),
            ("[!]", PatternError::EmptyClass { pattern: "[!]".into(), position: 0 }),
            ("*[z-a]", PatternError::ReversedRange { pattern: "*[z-a]".into(), position: 2 }),
            ("a*\\", PatternError::TrailingEscape { pattern: "a*\\".into() }),
        ];
        for (pattern, expected) in cases {
            assert_eq!(KeyPattern::parse(pattern), Err(expected), "{pattern}");
        }
        let long = "a".repeat(PATTERN_LEN_MAX + 1);
        assert!(matches!(KeyPattern::parse(&long), Err(PatternError::TooLong { .. })));
        assert!(KeyPattern::parse(&"a".repeat(PATTERN_LEN_MAX)).is_ok());
    }

    #[test]
    fn prefix_scan_stops_past_the_prefix() {
        let prefix = KeyPattern::parse("b").unwrap();
        assert!(!prefix.is_past("a"));
        assert!(!prefix.is_past("b"));
        assert!(!prefix.is_past("bzz"));
        assert!(prefix.is_past("c"));
        assert!(!KeyPattern::parse("b*").unwrap().is_past("c"));
        assert!(!KeyPattern::All.is_past("z"));
    }

    #[test]
    fn pathological_globs_stay_bounded() {
        let key = "a".repeat(KEY_LEN_MAX);
        let glob = format!("{}b", "a*".repeat(20));
        assert!(!matches(&glob, &key));
        assert!(matches(&"*a".repeat(20), &key));
    }
}
