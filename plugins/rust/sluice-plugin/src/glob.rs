//! Name patterns with `*`, the way operators write lists of tools (`"search*"`).

/// True when `name` matches `pattern`, in which `*` stands for any run of characters
/// (none included) and every other character for itself: `"search*"` matches
/// `search` and `search_web`, `"*_admin"` matches `drop_admin`, `"*"` matches every
/// name, `"echo"` only `echo`. Case-sensitive, as MCP tool names are.
///
/// A greedy match that backtracks only to the last `*`, with no recursion: at most
/// the pattern's length times the name's steps (the pattern is the operator's and
/// short), so a hostile name costs about as much as reading it a few times.
pub fn glob_match(pattern: &str, name: &str) -> bool {
    let (pattern, name) = (pattern.as_bytes(), name.as_bytes());
    let (mut p, mut n) = (0, 0);
    // Where the last `*` was, and where in `name` its run now ends.
    let mut star: Option<(usize, usize)> = None;
    while n < name.len() {
        if p < pattern.len() && pattern[p] == b'*' {
            star = Some((p, n));
            p += 1;
        } else if p < pattern.len() && pattern[p] == name[n] {
            p += 1;
            n += 1;
        } else if let Some((star_p, star_n)) = star {
            // Let the last `*` take one more character and try again from there.
            p = star_p + 1;
            n = star_n + 1;
            star = Some((star_p, star_n + 1));
        } else {
            return false;
        }
    }
    pattern[p..].iter().all(|&c| c == b'*')
}

#[cfg(test)]
mod tests {
    use super::glob_match;

    #[test]
    fn stars_match_any_run_and_the_rest_matches_itself() {
        assert!(glob_match("search*", "search"));
        assert!(glob_match("search*", "search_web"));
        assert!(!glob_match("search*", "research"));
        assert!(glob_match("*_admin", "drop_admin"));
        assert!(!glob_match("*_admin", "drop_admin_not"));
        assert!(glob_match("a*b*c", "aXbYbZc"));
        assert!(!glob_match("a*b*c", "aXbYbZ"));
        assert!(glob_match("*", ""));
        assert!(glob_match("echo", "echo"));
        assert!(!glob_match("echo", "Echo"));
        assert!(!glob_match("", "x"));
        assert!(glob_match("", ""));
    }
}
