//! The tape writer's JSON output, by hand: a string escaper and an integer formatter
//! that append to a `Vec<u8>`. Output is byte-for-byte what `serde_json` writes for
//! the same value (the tests check it), at a fraction of the cost on event data.
//! `serde_json::ser::format_escaped_str` (a byte at a time) was the largest single cost
//! of recording.
//!
//! The escaper takes 16 bytes at a time (SSE2 on x86-64, a portable bit trick
//! elsewhere): it stores the whole block, and only where the block's mask shows a byte
//! that needs an escape does it write the escape and store the rest of the block again
//! one position on. MCP data is JSON, so `"` comes every dozen bytes or so: escapes,
//! not clean runs, are the common case, and none of them costs a `memcpy` call.

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

/// Bit `i` set: byte `i` of `block` needs an escape (below 0x20, `"` or `\`).
#[cfg(target_arch = "x86_64")]
#[inline(always)]
fn mask(block: &[u8; 16]) -> u32 {
    #[target_feature(enable = "sse2")]
    fn sse2(block: &[u8; 16]) -> u32 {
        use std::arch::x86_64::*;
        // SAFETY: `block` is 16 readable bytes; `loadu` has no alignment requirement.
        let v = unsafe { _mm_loadu_si128(block.as_ptr().cast()) };
        let quote = _mm_cmpeq_epi8(v, _mm_set1_epi8(b'"' as i8));
        let backslash = _mm_cmpeq_epi8(v, _mm_set1_epi8(b'\\' as i8));
        // min(v, 0x1f) == v exactly for the bytes below 0x20 (unsigned).
        let control = _mm_cmpeq_epi8(_mm_min_epu8(v, _mm_set1_epi8(0x1f)), v);
        _mm_movemask_epi8(_mm_or_si128(_mm_or_si128(quote, backslash), control)) as u32
    }
    // SAFETY: SSE2 is part of the x86-64 baseline, always present.
    unsafe { sse2(block) }
}

#[cfg(not(target_arch = "x86_64"))]
#[inline(always)]
fn mask(block: &[u8; 16]) -> u32 {
    mask_portable(block)
}

/// [`mask`] without SSE2: eight bytes at a time in a `u64`.
#[cfg_attr(all(target_arch = "x86_64", not(test)), allow(dead_code))]
#[inline(always)]
fn mask_portable(block: &[u8; 16]) -> u32 {
    const ONES: u64 = u64::from_ne_bytes([0x01; 8]);
    const LOW7: u64 = u64::from_ne_bytes([0x7f; 8]);
    const HIGHS: u64 = u64::from_ne_bytes([0x80; 8]);
    // Exact per byte (no carries between bytes): the high bit of each byte that is not
    // zero / not below 0x20.
    let nonzero = |x: u64| ((x & LOW7) + LOW7) | x;
    let word = |half: &[u8]| {
        let w = u64::from_le_bytes(half.try_into().expect("8 bytes"));
        let printable = ((w & LOW7) + ONES * (0x80 - 0x20)) | w;
        let special = !(printable
            & nonzero(w ^ (ONES * u64::from(b'"')))
            & nonzero(w ^ (ONES * u64::from(b'\\'))))
            & HIGHS;
        // The eight high bits, gathered into one byte.
        ((special >> 7).wrapping_mul(0x0102_0408_1020_4080) >> 56) as u32
    };
    word(&block[..8]) | (word(&block[8..]) << 8)
}

/// Escapes `src[..valid]` into `dst` from `o` on and returns where it ended, or
/// `Err((i, o))` at `src[i]`, a byte that needs a `\u00XX` escape. `src` must have 16
/// readable bytes from every multiple of 16 below `valid`, and `dst` room for twice
/// `valid` plus 16 bytes after `o`.
#[inline(always)]
fn escape_blocks(
    src: &[u8],
    valid: usize,
    dst: &mut [u8],
    mut o: usize,
) -> Result<usize, (usize, usize)> {
    let mut i = 0;
    while i < valid {
        let block: &[u8; 16] = src[i..i + 16].try_into().expect("16 bytes");
        dst[o..o + 16].copy_from_slice(block);
        let step = (valid - i).min(16);
        let mut found = mask(block) & (u32::MAX >> (32 - step));
        // Bytes of the block before `from` are in place.
        let mut from = 0;
        while found != 0 {
            let k = found.trailing_zeros() as usize;
            found &= found - 1;
            o += k - from;
            let escape = ESCAPE[usize::from(block[k])];
            if escape == b'u' {
                return Err((i + k, o));
            }
            dst[o] = b'\\';
            dst[o + 1] = escape;
            o += 2;
            from = k + 1;
            // The rest of the block, one escape further on.
            let rest: &[u8; 16] = src[i + from..i + from + 16].try_into().expect("16 bytes");
            dst[o..o + 16].copy_from_slice(rest);
        }
        o += step - from;
        i += step;
    }
    Ok(o)
}

/// Appends `bytes`, the UTF-8 of a `&str`, as a JSON string, quotes included. Escaping
/// works on bytes, so callers need not check them again (bytes that are not UTF-8 pass
/// through as they are).
pub fn string(out: &mut Vec<u8>, bytes: &[u8]) {
    if bytes.len() < 32 {
        // Ids, names, verdicts: a byte at a time is as fast at this size.
        out.reserve(bytes.len() + 2);
        out.push(b'"');
        escape_bytewise(out, bytes);
        out.push(b'"');
        return;
    }
    // The last 16..32 bytes are escaped from a zero-padded copy, made first: loading
    // blocks from it right after writing it would stall (store forwarding fails for a
    // load that spans several stores), and by the end of the other blocks it is in L1.
    let direct = (bytes.len() - 16) & !15;
    let rest = &bytes[direct..];
    let mut padded = [0u8; 48];
    padded[..16].copy_from_slice(&rest[..16]);
    padded[rest.len() - 16..rest.len()].copy_from_slice(&rest[rest.len() - 16..]);
    let base = out.len();
    // Room for every byte escaped as two, the quotes, and a block of slack.
    out.resize(base + 2 * bytes.len() + 34, 0);
    let dst = &mut out[base..];
    dst[0] = b'"';
    let ended = escape_blocks(bytes, direct, dst, 1)
        .and_then(|o| escape_blocks(&padded, rest.len(), dst, o).map_err(|(i, o)| (direct + i, o)));
    match ended {
        Ok(o) => {
            dst[o] = b'"';
            out.truncate(base + o + 1);
        }
        Err((i, o)) => {
            // A control character without a short escape: rare in JSON data (raw ones
            // are not allowed in its strings). The rest byte by byte.
            out.truncate(base + o);
            escape_bytewise(out, &bytes[i..]);
            out.push(b'"');
        }
    }
}

/// The plain escaper (no quotes): a byte at a time, after a look for the common case
/// (a name, an id, an event type: nothing to escape), which is one copy.
fn escape_bytewise(out: &mut Vec<u8>, bytes: &[u8]) {
    const HEX: &[u8; 16] = b"0123456789abcdef";
    if bytes.iter().all(|&byte| ESCAPE[usize::from(byte)] == 0) {
        out.extend_from_slice(bytes);
        return;
    }
    for &byte in bytes {
        match ESCAPE[usize::from(byte)] {
            0 => out.push(byte),
            b'u' => out.extend_from_slice(&[
                b'\\',
                b'u',
                b'0',
                b'0',
                HEX[usize::from(byte >> 4)],
                HEX[usize::from(byte & 0xf)],
            ]),
            short => out.extend_from_slice(&[b'\\', short]),
        }
    }
}

/// "00" to "99", for [`uint`].
static PAIRS: [u8; 200] = {
    let mut pairs = [0u8; 200];
    let mut i = 0;
    while i < 100 {
        pairs[2 * i] = b'0' + (i / 10) as u8;
        pairs[2 * i + 1] = b'0' + (i % 10) as u8;
        i += 1;
    }
    pairs
};

/// Appends `n` in decimal.
pub fn uint(out: &mut Vec<u8>, mut n: u64) {
    let len = n.checked_ilog10().unwrap_or(0) as usize + 1;
    out.reserve(len);
    // Straight into the vector's spare room, from the last digit back: no length
    // check per digit, and no `memcpy` call (a copy of a variable length is one).
    let digits = &mut out.spare_capacity_mut()[..len];
    let mut at = len;
    // Two digits per division.
    while n >= 100 {
        let pair = (n % 100) as usize * 2;
        n /= 100;
        at -= 2;
        digits[at].write(PAIRS[pair]);
        digits[at + 1].write(PAIRS[pair + 1]);
    }
    if n >= 10 {
        let pair = n as usize * 2;
        digits[0].write(PAIRS[pair]);
        digits[1].write(PAIRS[pair + 1]);
    } else {
        digits[0].write(b'0' + n as u8);
    }
    // SAFETY: `len` is the number of decimal digits of `n`, so the loop and the last
    // step above wrote every one of the `len` bytes after the old length (the last step
    // the one or two left at the front), and `reserve` made room for them.
    unsafe { out.set_len(out.len() + len) };
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
    fn every_length_and_position_of_an_escape() {
        for len in 0..70 {
            for at in 0..len {
                for special in ['"', '\\', '\n', '\u{1}', 'é', '\u{7f}'] {
                    let s: String = (0..len)
                        .map(|i| if i == at { special } else { 'a' })
                        .collect();
                    assert_eq!(escaped(&s), serde_json::to_string(&s).unwrap(), "{s:?}");
                }
            }
        }
    }

    #[test]
    fn integers() {
        for n in [
            0,
            7,
            9,
            10,
            11,
            99,
            100,
            101,
            999,
            1000,
            12345,
            123456,
            u64::MAX,
        ] {
            let mut out = Vec::new();
            uint(&mut out, n);
            assert_eq!(out, n.to_string().into_bytes());
        }
    }

    proptest! {
        #[test]
        fn uint_appends_any_number_as_display_writes_it(
            before in proptest::collection::vec(any::<u8>(), 0..40),
            n in any::<u64>(),
        ) {
            let mut out = before.clone();
            uint(&mut out, n);
            prop_assert_eq!(&out[..before.len()], &before[..]);
            let expected = n.to_string();
            prop_assert_eq!(&out[before.len()..], expected.as_bytes());
        }

        #[test]
        fn both_masks_flag_exactly_the_bytes_to_escape(block in any::<[u8; 16]>()) {
            let expected = (0..16)
                .filter(|&i| ESCAPE[usize::from(block[i])] != 0)
                .fold(0u32, |m, i| m | 1 << i);
            prop_assert_eq!(mask(&block), expected);
            prop_assert_eq!(mask_portable(&block), expected);
        }

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
