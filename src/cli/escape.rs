//! Escaping untrusted text (file names, hosts, tags, key-file fields) before it reaches a
//! terminal: control characters (C0, DEL, C1) and bytes that are not UTF-8 are shown as escapes,
//! so a name can never move the cursor, retitle the window or clear the screen.

/// `s` with every control character escaped (`\n`, `\t`, `\e`, `\x7f`, `\u{9b}`, …) and a
/// backslash doubled, so the escaped form is unambiguous.
pub fn text(s: &str) -> String {
    if !s.chars().any(needs_escape) {
        return s.to_string();
    }
    let mut out = String::with_capacity(s.len() + 8);
    for c in s.chars() {
        push_char(&mut out, c);
    }
    out
}

/// Raw bytes (a file name, a symlink target) as text: valid UTF-8 runs as in [`text`], every
/// other byte as `\xNN`.
pub fn bytes(b: &[u8]) -> String {
    let mut out = String::with_capacity(b.len());
    for chunk in b.utf8_chunks() {
        for c in chunk.valid().chars() {
            push_char(&mut out, c);
        }
        for x in chunk.invalid() {
            out.push_str(&format!("\\x{x:02x}"));
        }
    }
    out
}

fn needs_escape(c: char) -> bool {
    c.is_control() || c == '\\'
}

fn push_char(out: &mut String, c: char) {
    match c {
        '\\' => out.push_str("\\\\"),
        '\n' => out.push_str("\\n"),
        '\t' => out.push_str("\\t"),
        '\r' => out.push_str("\\r"),
        '\x1b' => out.push_str("\\e"),
        c if (c as u32) < 0x80 && c.is_control() => out.push_str(&format!("\\x{:02x}", c as u32)),
        c if c.is_control() => out.push_str(&format!("\\u{{{:x}}}", c as u32)),
        c => out.push(c),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn controls_are_escaped() {
        assert_eq!(text("plain name"), "plain name");
        assert_eq!(text("a\x1b]0;pwned\x07b"), "a\\e]0;pwned\\x07b");
        assert_eq!(text("x\u{9b}2J"), "x\\u{9b}2J");
        assert_eq!(text("back\\slash\n"), "back\\\\slash\\n");
        assert_eq!(bytes(b"caf\xe9 \x7f"), "caf\\xe9 \\x7f");
        assert_eq!(bytes("é".as_bytes()), "é");
    }
}
