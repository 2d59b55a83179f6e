//! The tape writer's JSON output, by hand: a string escaper and an integer formatter
//! that append to a `Vec<u8>`. Output is byte-for-byte what `serde_json` writes for
//! the same value (the tests check it), at a fraction of the cost on event data: the
//! escaper looks at eight bytes at a time and copies the runs between escapes whole.
//! `serde_json::ser::format_escaped_str` was the largest single cost of recording.

/// `0`: the byte is written as it is; otherwise the character after the `\`
/// (`u`: `\u00XX`).
static ESCAPE: [u8; 256] = {
    let mut table = [0u8; 256];
    let mut i = 0;
    while i < 0x20 {
        table[i] = b'u';
        i += 1;
    }
    table[0x08] = b'b';
    table[0x09] = b't';
    table[0x0a] = b'n';
    table[0x0c] = b'f';
    table[0x0d] = b'r';
    table[b'"' as usize] = b'"';
    table[b'\\' as usize] = b'\\';
    table
};

const ONES: u64 = u64::from_ne_bytes([0x01; 8]);
const HIGHS: u64 = u64::from_ne_bytes([0x80; 8]);

/// A word with the high bit set in (at least) the lowest byte of `word` that needs an
/// escape (below 0x20, `"` or `\`); zero when none does. Bits above the lowest flagged
/// byte may be false positives (borrows), so only the lowest one is meaningful.
#[inline(always)]
fn specials(word: u64) -> u64 {
    let zero_in = |x: u64| x.wrapping_sub(ONES) & !x & HIGHS;
    let below_space = word.wrapping_sub(ONES * 0x20) & !word & HIGHS;
    below_space
        | zero_in(word ^ (ONES * u64::from(b'"')))
        | zero_in(word ^ (ONES * u64::from(b'\\')))
}

/// The index of the first byte of `bytes[from..]` that needs an escape, or `bytes.len()`.
#[inline(always)]
fn next_special(bytes: &[u8], mut from: usize) -> usize {
    while from + 8 <= bytes.len() {
        let word = u64::from_le_bytes(bytes[from..from + 8].try_into().expect("8 bytes"));
        let found = specials(word);
        if found != 0 {
            return from + (found.trailing_zeros() / 8) as usize;
        }
        from += 8;
    }
    while from < bytes.len() && ESCAPE[bytes[from] as usize] == 0 {
        from += 1;
    }
    from
}

/// Appends `bytes`, the UTF-8 of a `&str`, as a JSON string, quotes included. Escaping
/// works on bytes, so callers need not check them again (bytes that are not UTF-8 pass
/// through as they are).
pub fn string(out: &mut Vec<u8>, bytes: &[u8]) {
    out.reserve(bytes.len() + bytes.len() / 8 + 2);
    out.push(b'"');
    let mut start = 0;
    loop {
        let at = next_special(bytes, start);
        out.extend_from_slice(&bytes[start..at]);
        let Some(&byte) = bytes.get(at) else { break };
        match ESCAPE[byte as usize] {
            b'u' => {
                const HEX: &[u8; 16] = b"0123456789abcdef";
                out.extend_from_slice(&[
                    b'\\',
                    b'u',
                    b'0',
                    b'0',
                    HEX[usize::from(byte >> 4)],
                    HEX[usize::from(byte & 0xf)],
                ]);
            }
            short => out.extend_from_slice(&[b'\\', short]),
        }
        start = at + 1;
    }
    out.push(b'"');
}

/// Appends `n` in decimal.
pub fn uint(out: &mut Vec<u8>, mut n: u64) {
    let mut digits = [0u8; 20];
    let mut at = digits.len();
    loop {
        at -= 1;
        digits[at] = b'0' + (n % 10) as u8;
        n /= 10;
        if n == 0 {
            break;
        }
    }
    out.extend_from_slice(&digits[at..]);
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    fn escaped(s: &str) -> String {
        let mut out = Vec::new();
        string(&mut out, s.as_bytes());
        String::from_utf8(out).unwrap()
    }

    #[test]
    fn escapes_as_serde_json_does() {
        for s in [
            "",
            "a",
            "\"",
            "\\",
            "{\"jsonrpc\":\"2.0\",\"method\":\"notifications/message\"}",
            "line\nbreak\r\ttab\u{8}\u{c}\u{0}\u{1f}\u{7f}",
            "é ü 漢字 🎉 \"quoted\" tail",
            "12345678\"12345678\\1234567\n",
        ] {
            assert_eq!(escaped(s), serde_json::to_string(s).unwrap(), "{s:?}");
        }
    }

    #[test]
    fn integers() {
        for n in [0, 7, 10, 99, 100, 12345, u64::MAX] {
            let mut out = Vec::new();
            uint(&mut out, n);
            assert_eq!(out, n.to_string().into_bytes());
        }
    }

    proptest! {
        #[test]
        fn any_string_escapes_as_serde_json_does(s in any::<String>()) {
            prop_assert_eq!(escaped(&s), serde_json::to_string(&s).unwrap());
        }

        #[test]
        fn json_like_strings_escape_as_serde_json_does(s in "[ -~\\x00-\\x1f\"\\\\é]{0,80}") {
            prop_assert_eq!(escaped(&s), serde_json::to_string(&s).unwrap());
        }
    }
}
