//! Glob matching with Redis's `stringmatchlen` rules, for `KEYS` and `SCAN ... MATCH`.
//!
//! Pattern syntax, on bytes (no UTF-8 awareness, like Redis):
//!
//! * `*` matches any run of bytes, including none; consecutive stars collapse.
//! * `?` matches exactly one byte.
//! * `[abc]` matches one byte from the set; `[^abc]` one byte not in it; `[a-z]` a range
//!   (reversed ranges such as `[z-a]` are accepted and mean the same); `\` inside
//!   brackets escapes the next byte. An unterminated `[` runs to the end of the pattern.
//! * `\x` matches `x` literally; a trailing lone `\` matches a `\`.
//!
//! The matcher is the same backtracking algorithm as Redis: a star tries every suffix of
//! the subject. Two guards bound the cost: once a star has tried every suffix and failed,
//! no outer star can succeed by consuming more, so the whole match stops
//! (`skip_longer`); and recursion deeper than [`MAX_NESTING`] stars answers "no match"
//! (Redis does the same to protect the stack from patterns such as `*a*a*a*...`).

/// Recursion depth (number of nested `*` frames) after which matching gives up.
pub const MAX_NESTING: usize = 1000;

/// Whether `subject` matches the glob `pattern` (case-sensitive).
pub fn glob_match(pattern: &[u8], subject: &[u8]) -> bool {
    let mut skip_longer = false;
    match_impl(pattern, subject, &mut skip_longer, 0)
}

fn match_impl(mut p: &[u8], mut s: &[u8], skip_longer: &mut bool, nesting: usize) -> bool {
    if nesting > MAX_NESTING {
        return false;
    }
    while !p.is_empty() && !s.is_empty() {
        match p[0] {
            b'*' => {
                while p.len() > 1 && p[1] == b'*' {
                    p = &p[1..];
                }
                if p.len() == 1 {
                    return true;
                }
                while !s.is_empty() {
                    if match_impl(&p[1..], s, skip_longer, nesting + 1) {
                        return true;
                    }
                    if *skip_longer {
                        return false;
                    }
                    s = &s[1..];
                }
                *skip_longer = true;
                return false;
            }
            b'?' => s = &s[1..],
            b'[' => {
                p = &p[1..];
                let negate = p.first() == Some(&b'^');
                if negate {
                    p = &p[1..];
                }
                let c = s[0];
                let mut matched = false;
                loop {
                    match p {
                        [] => break,
                        [b'\\', esc, ..] => {
                            p = &p[1..];
                            if *esc == c {
                                matched = true;
                            }
                        }
                        [b']', ..] => break,
                        [lo, b'-', hi, ..] => {
                            let (lo, hi) = if lo <= hi { (*lo, *hi) } else { (*hi, *lo) };
                            if (lo..=hi).contains(&c) {
                                matched = true;
                            }
                            p = &p[2..];
                        }
                        [x, ..] => {
                            if *x == c {
                                matched = true;
                            }
                        }
                    }
                    p = &p[1..];
                }
                if matched == negate {
                    return false;
                }
                s = &s[1..];
                // `p` now points at `]` (or is empty): step over it below.
                if p.is_empty() {
                    // Unterminated class: the pattern is exhausted.
                    return s.is_empty();
                }
            }
            b'\\' if p.len() >= 2 => {
                p = &p[1..];
                if p[0] != s[0] {
                    return false;
                }
                s = &s[1..];
            }
            x => {
                if x != s[0] {
                    return false;
                }
                s = &s[1..];
            }
        }
        p = &p[1..];
        if s.is_empty() {
            while p.first() == Some(&b'*') {
                p = &p[1..];
            }
            break;
        }
    }
    p.is_empty() && s.is_empty()
}

#[cfg(test)]
mod tests {
    use super::glob_match;

    fn m(p: &str, s: &str) -> bool {
        glob_match(p.as_bytes(), s.as_bytes())
    }

    #[test]
    fn stars_and_question_marks() {
        assert!(
            !m("*", ""),
            "as in Redis, the empty subject matches only the empty pattern"
        );
        assert!(m("*", "anything"));
        assert!(m("h?llo", "hello"));
        assert!(!m("h?llo", "hllo"));
        assert!(m("h*llo", "hllo"));
        assert!(m("h*llo", "heeeello"));
        assert!(m("a**b", "axxb"));
        assert!(m("user:*:name", "user:42:name"));
        assert!(!m("user:*:name", "user:42:mail"));
        assert!(m("*a", "bba"));
        assert!(!m("*a", "bbb"));
        assert!(m("a*", "a"));
        assert!(!m("", "a"));
        assert!(m("", ""));
        assert!(!m("?", ""));
    }

    #[test]
    fn classes_ranges_and_negation() {
        assert!(m("h[ae]llo", "hello"));
        assert!(m("h[ae]llo", "hallo"));
        assert!(!m("h[ae]llo", "hillo"));
        assert!(m("h[^e]llo", "hallo"));
        assert!(!m("h[^e]llo", "hello"));
        assert!(m("h[a-b]llo", "hbllo"));
        assert!(!m("h[a-b]llo", "hcllo"));
        assert!(m("h[z-a]llo", "hmllo"), "reversed range");
        assert!(m("[\\]]", "]"), "escaped bracket inside class");
        assert!(m("x[abc", "xa"), "unterminated class runs to the end");
        assert!(!m("x[abc", "xd"));
    }

    #[test]
    fn escapes() {
        assert!(m("h\\*llo", "h*llo"));
        assert!(!m("h\\*llo", "hello"));
        assert!(m("\\?", "?"));
        assert!(!m("\\?", "a"));
        assert!(m("a\\", "a\\"), "trailing backslash is literal");
    }

    #[test]
    fn pathological_patterns_terminate() {
        let p = "*a".repeat(50) + "b";
        let s = "a".repeat(200);
        assert!(!m(&p, &s));
    }
}
