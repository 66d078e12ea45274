//! The one pass over a body that comes before any parser: how deep it nests, and
//! whether it carries an id whose number text the parsers would lose.
//!
//! One pass, no allocation, no JSON validation: malformed JSON is left for the parser to
//! report. Strings are skipped (an escaped quote does not end one), so brackets and keys
//! inside strings count for nothing.

/// What [`scan`] found.
#[derive(Debug, Default, Clone, Copy, PartialEq, Eq)]
pub(super) struct Scan {
    /// Arrays and objects nest deeper than the limit (outside strings). The scan stops
    /// there, so `number_id` is then not known.
    pub too_deep: bool,
    /// Some `"id"` key holds a number whose value, read as a `u64`, `i64` or `f64`,
    /// would not give back its text (see [`exact_integer`]). A key with an escape in it
    /// counts as `"id"`, since it may unescape to it.
    pub number_id: bool,
    /// Arrays and objects still open where the body ends (0 when it closes them all).
    pub open_at_end: usize,
    /// The body ends inside a string.
    pub in_string_at_end: bool,
}

impl Scan {
    /// What is still open where the body ends, in words: a body cut short (a request
    /// truncated in transit) is reported at its end, not where a parser gave up.
    pub fn unclosed(&self) -> Option<String> {
        match (self.in_string_at_end, self.open_at_end) {
            (true, _) => Some("inside a string".into()),
            (false, 0) => None,
            (false, 1) => Some("with 1 object or array still open".into()),
            (false, n) => Some(format!("with {n} objects or arrays still open")),
        }
    }
}

/// Where the scan stands after a string closed: the `"id"` key -> `:` -> the value.
#[derive(Clone, Copy, PartialEq, Eq)]
enum AfterKey {
    None,
    IdKey,
    IdColon,
}

/// Scans `body` once; see [`Scan`].
pub(super) fn scan(body: &[u8], depth_limit: usize) -> Scan {
    let mut out = Scan::default();
    let (mut depth, mut in_string, mut escaped, mut had_escape) = (0usize, false, false, false);
    let mut string_start = 0;
    let mut after = AfterKey::None;
    for (i, &b) in body.iter().enumerate() {
        if in_string {
            if escaped {
                escaped = false;
            } else if b == b'\\' {
                escaped = true;
                had_escape = true;
            } else if b == b'"' {
                in_string = false;
                let is_id = had_escape || &body[string_start..i] == b"id";
                after = if is_id { AfterKey::IdKey } else { AfterKey::None };
            }
            continue;
        }
        match b {
            b' ' | b'\t' | b'\n' | b'\r' => continue,
            b':' if after == AfterKey::IdKey => {
                after = AfterKey::IdColon;
                continue;
            }
            b'-' | b'0'..=b'9' if after == AfterKey::IdColon => {
                let len = body[i..]
                    .iter()
                    .take_while(|c| matches!(c, b'0'..=b'9' | b'-' | b'+' | b'.' | b'e' | b'E'))
                    .count();
                out.number_id |= !exact_integer(&body[i..i + len]);
            }
            b'"' => {
                (in_string, had_escape, string_start) = (true, false, i + 1);
            }
            b'[' | b'{' => {
                depth += 1;
                if depth > depth_limit {
                    out.too_deep = true;
                    return out;
                }
            }
            b']' | b'}' => depth = depth.saturating_sub(1),
            _ => {}
        }
        after = AfterKey::None;
    }
    (out.open_at_end, out.in_string_at_end) = (depth, in_string);
    out
}

/// True when `token` is a JSON integer that both parsers read as a `u64` or `i64` whose
/// decimal form is `token` again: an optional `-` and at most 18 digits (below 10^18,
/// so it fits either type), and not `-0`, which reads as `0`.
fn exact_integer(token: &[u8]) -> bool {
    let digits = token.strip_prefix(b"-").unwrap_or(token);
    !digits.is_empty() && digits.len() <= 18 && digits.iter().all(u8::is_ascii_digit) && token != b"-0"
}

#[cfg(test)]
mod tests {
    use super::*;

    fn check(body: &str, too_deep: bool, number_id: bool) {
        let got = scan(body.as_bytes(), 6);
        assert_eq!((got.too_deep, got.number_id), (too_deep, number_id), "{body}");
    }

    #[test]
    fn says_what_is_still_open_where_the_body_ends() {
        let open = |body: &str| scan(body.as_bytes(), 64).unclosed();
        assert_eq!(open(r#"{"id": "x""#), Some("with 1 object or array still open".into()));
        assert_eq!(open(r#"{"imp": [{"id": "1""#), Some("with 3 objects or arrays still open".into()));
        assert_eq!(open(r#"{"id": "x"#), Some("inside a string".into()));
        assert_eq!(open(r#"{"id": "{["}"#), None, "brackets in strings count for nothing");
        assert_eq!(open(r#"{"id": "x\"}"#), Some("inside a string".into()), "an escaped quote ends no string");
    }

    #[test]
    fn finds_ids_that_numbers_would_lose() {
        // Integers of up to 18 digits read back exactly: the fast parser keeps them.
        check(r#"{"id":123,"imp":[{"id":-7}]}"#, false, false);
        check(r#"{"id":"3.5","tagid":3.5}"#, false, false);
        check(r#"{"id":999999999999999999}"#, false, false);
        // Anything else under an "id" key, at any depth.
        check(r#"{"id":1.0}"#, false, true);
        check(r#"{"id" : 1e3}"#, false, true);
        check(r#"{"id":-0}"#, false, true);
        check(r#"{"id":1000000000000000000}"#, false, true);
        check(r#"{"imp":[{"pmp":{"deals":[{"id":3333333333333351169.333}]}}]}"#, false, true);
        check("{\"id\"\n:\t2.5}", false, true);
        // A key with an escape may unescape to "id".
        check(r#"{"i\u0064":2.5}"#, false, true);
        // Not a key: "id" as a value, or inside a string.
        check(r#"{"a":["id",2.5],"b":"\"id\":2.5"}"#, false, false);
    }

    #[test]
    fn counts_nesting_outside_strings() {
        check(r#"{"a":[[[[[1]]]]]}"#, false, false);
        check(r#"{"a":[[[[[[1]]]]]]}"#, true, false);
        check(r#"{"a":"[[[[[[[[\"[[[","id":2.5}"#, false, true);
        check(r#"{"a":[1],"b":[2],"c":[3],"d":{"e":[4]}}"#, false, false);
    }
}
