//! A form part's `Content-Disposition` (RFC 7578 §4.2): its `name`, and
//! `filename` for a file.
//!
//! Read here rather than taken from `multer`, whose `Field::name` and
//! `Field::file_name` find `name=` and `filename=` by searching the
//! header's text (multer 3.1): inside a quoted value too, so
//! `filename="a;name=evil"; name="real"` named the field `evil"`, and a
//! made-up parameter holding `filename=evil.exe` gave that file name. A
//! proxy or firewall that reads the header by its grammar then checked
//! another name than the app saw. Here the header is parsed by its grammar
//! (RFC 6266 §4.1, RFC 9110 §5.6): parameters in order, quoted strings
//! whole; a header that does not follow it, or names `name` or `filename`
//! twice, is refused rather than guessed at. No maintained crate parses
//! this header's parameters (the `headers` crate only tells its type).
//!
//! Backslashes: RFC 9110's quoted string escapes with `\`, but browsers
//! follow the HTML standard's form encoding, which sends `"` as `%22`
//! and a backslash as it is (and so does curl since 7.81): a file named
//! `C:\x.txt` or `dir\` arrives as `filename="C:\x.txt"` or
//! `filename="dir\"`. So a backslash escapes only a `"` or a `\`, the
//! two characters that need it (Go's parser, too, keeps a backslash
//! before a letter), and a header that does not parse that way because
//! it ends in `\"` (a file name ending in a backslash, which browsers
//! send last) is read once more with every backslash as it is.

/// What a part's `Content-Disposition` names.
#[derive(Debug, Default, PartialEq, Eq)]
pub(super) struct Disposition {
    /// `name`; absent is `None` (the part is kept, under `""`).
    pub(super) name: Option<String>,
    /// `filename`. A `filename*` (RFC 8187's encoded form) is ignored:
    /// RFC 7578 §4.2 forbids it in forms (browsers send `filename` with
    /// UTF-8), and taking it would name a file differently from a proxy
    /// or firewall that follows that rule.
    pub(super) file_name: Option<String>,
}

/// Parses a `Content-Disposition` value; `Err` says what is wrong.
pub(super) fn parse(value: &[u8]) -> Result<Disposition, &'static str> {
    parse_with(value, true).or_else(|e| {
        // Only the one shape browsers make, a file name ending in a
        // backslash as the last parameter (`filename="dir\"`), is read
        // again. Anywhere else a `\"` would make this parser and one that
        // follows RFC 9110 (a proxy, a firewall) read different names
        // (`name="a\"; filename="evil.php"`): refused, as before.
        let end = value.trim_ascii_end();
        let end = end.strip_suffix(b";").unwrap_or(end).trim_ascii_end();
        if end.ends_with(b"\\\"") {
            parse_with(value, false).map_err(|_| e)
        } else {
            Err(e)
        }
    })
}

/// [`parse`], with `escapes`: whether a backslash may escape the next
/// `"` or `\` (see the module docs).
fn parse_with(value: &[u8], escapes: bool) -> Result<Disposition, &'static str> {
    let mut p = Parser {
        s: value,
        i: 0,
        escapes,
    };
    p.ows();
    if p.token().is_empty() {
        return Err("no disposition type");
    }
    let mut name_value: Option<Vec<u8>> = None;
    let mut file_name: Option<Vec<u8>> = None;
    loop {
        p.ows();
        if p.done() {
            break;
        }
        if !p.eat(b';') {
            return Err("expected ';' between parameters");
        }
        p.ows();
        if p.done() {
            // A trailing `;` (some clients send one).
            break;
        }
        let name = p.token();
        if name.is_empty() {
            return Err("a parameter without a name");
        }
        p.ows();
        if !p.eat(b'=') {
            return Err("a parameter without '='");
        }
        p.ows();
        let value = if p.peek() == Some(b'"') {
            p.quoted()?
        } else {
            let token = p.token();
            if token.is_empty() {
                return Err("a parameter without a value");
            }
            token.to_vec()
        };
        let slot = if name.eq_ignore_ascii_case(b"name") {
            &mut name_value
        } else if name.eq_ignore_ascii_case(b"filename") {
            &mut file_name
        } else {
            continue;
        };
        if slot.is_some() {
            return Err("a parameter given twice");
        }
        *slot = Some(value);
    }
    let text = |v: Vec<u8>| String::from_utf8(v).map_err(|_| "a parameter that is not UTF-8");
    Ok(Disposition {
        name: name_value.map(text).transpose()?,
        file_name: file_name.map(text).transpose()?,
    })
}

struct Parser<'a> {
    s: &'a [u8],
    i: usize,
    /// A backslash escapes a following `"` or `\`; else it is itself.
    escapes: bool,
}

impl<'a> Parser<'a> {
    fn done(&self) -> bool {
        self.i >= self.s.len()
    }

    fn peek(&self) -> Option<u8> {
        self.s.get(self.i).copied()
    }

    fn eat(&mut self, b: u8) -> bool {
        let hit = self.peek() == Some(b);
        self.i += usize::from(hit);
        hit
    }

    /// Optional whitespace.
    fn ows(&mut self) {
        while matches!(self.peek(), Some(b' ' | b'\t')) {
            self.i += 1;
        }
    }

    /// A token (RFC 9110 §5.6.2), possibly empty.
    fn token(&mut self) -> &'a [u8] {
        let start = self.i;
        while self.peek().is_some_and(crate::http::parse::is_token) {
            self.i += 1;
        }
        &self.s[start..self.i]
    }

    /// A quoted string (RFC 9110 §5.6.4), its escapes (of `"` and `\`
    /// only, if `escapes`) undone; the opening quote is next.
    fn quoted(&mut self) -> Result<Vec<u8>, &'static str> {
        self.i += 1;
        let mut out = Vec::new();
        loop {
            match self.peek() {
                None => return Err("an unterminated quoted string"),
                Some(b'"') => {
                    self.i += 1;
                    return Ok(out);
                }
                Some(b'\\')
                    if self.escapes && matches!(self.s.get(self.i + 1), Some(b'"' | b'\\')) =>
                {
                    out.push(self.s[self.i + 1]);
                    self.i += 2;
                }
                // qdtext: HTAB, SP and visible characters (and obs-text:
                // UTF-8 bytes), not other controls.
                Some(b) if b == b'\t' || b >= 0x20 && b != 0x7f => {
                    out.push(b);
                    self.i += 1;
                }
                Some(_) => return Err("a control character in a quoted string"),
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn named(value: &str) -> (Option<String>, Option<String>) {
        let d = parse(value.as_bytes()).unwrap_or_else(|e| panic!("{value}: {e}"));
        (d.name, d.file_name)
    }

    fn some(s: &str) -> Option<String> {
        Some(s.to_string())
    }

    #[test]
    fn browsers_and_curl() {
        assert_eq!(named(r#"form-data; name="title""#), (some("title"), None));
        assert_eq!(
            named(r#"form-data; name="doc"; filename="a b.txt""#),
            (some("doc"), some("a b.txt"))
        );
        assert_eq!(
            named(r#"form-data; name="x"; filename="""#),
            (some("x"), some(""))
        );
        assert_eq!(
            named("form-data;name=plain;filename=a.txt;"),
            (some("plain"), some("a.txt"))
        );
        assert_eq!(named(r#"FORM-DATA ; NAME = "n""#), (some("n"), None));
        assert_eq!(named(r#"form-data; name="café""#), (some("café"), None));
        assert_eq!(named("form-data"), (None, None));
    }

    #[test]
    fn quoted_values_are_opaque() {
        // What multer's text search got wrong: parameters inside quotes.
        assert_eq!(
            named(r#"form-data; filename="a;name=evil"; name="real""#),
            (some("real"), some("a;name=evil"))
        );
        assert_eq!(
            named(r#"form-data; name="upload"; note="x; filename=evil.exe "; filename="safe.txt""#),
            (some("upload"), some("safe.txt"))
        );
        assert_eq!(
            named(r#"form-data; name="a\"b\\c""#),
            (some(r#"a"b\c"#), None)
        );
    }

    /// Browsers and curl send a backslash as it is (the HTML standard's
    /// form encoding sends `"` as `%22` instead of escaping it).
    #[test]
    fn backslashes_as_browsers_send_them() {
        assert_eq!(
            named(r#"form-data; name="f"; filename="C:\Users\me\x.txt""#),
            (some("f"), some(r"C:\Users\me\x.txt"))
        );
        assert_eq!(
            named(r#"form-data; name="f"; filename="a\b.txt""#),
            (some("f"), some(r"a\b.txt"))
        );
        // A name ending in a backslash: its `"` ends the value.
        assert_eq!(
            named(r#"form-data; name="f"; filename="dir\""#),
            (some("f"), some(r"dir\"))
        );
        assert_eq!(
            named(r#"form-data; name="f"; filename="dir\";"#),
            (some("f"), some(r"dir\"))
        );
        // Elsewhere a `\"` reads differently to an RFC 9110 parser (a
        // proxy's, a firewall's): refused, not guessed at.
        for ambiguous in [
            r#"form-data; filename="dir\"; name="f""#,
            r#"form-data; name="a\"; filename="evil.php""#,
            r#"form-data; filename="x.txt\"; name="evil""#,
        ] {
            assert!(parse(ambiguous.as_bytes()).is_err(), "{ambiguous}");
        }
        assert_eq!(
            named(r#"form-data; name="f"; filename="%22quoted%22.txt""#),
            (some("f"), some("%22quoted%22.txt"))
        );
    }

    #[test]
    fn the_extended_file_name_is_ignored() {
        assert_eq!(
            named(r#"form-data; name="f"; filename="safe.txt"; filename*=UTF-8''evil.php"#),
            (some("f"), some("safe.txt"))
        );
        assert_eq!(
            named("form-data; name=f; filename*=UTF-8''a.txt"),
            (some("f"), None)
        );
    }

    #[test]
    fn malformed_headers_are_refused() {
        for bad in [
            "",
            "; name=a",
            r#"form-data; name="a"; name="b""#,
            r#"form-data; filename="a"; FILENAME="b""#,
            r#"form-data; name="unterminated"#,
            r#"form-data; name="a" junk"#,
            "form-data; name",
            "form-data; name=",
            "form-data; =x",
            "form-data; name=a b",
            "form-data name=a",
            "form-data; name=\"a\u{1}\"",
            "form-data; name=\"a\\\u{1}\"",
            r#"form-data; name="a"; filename=a"b"#,
        ] {
            assert!(parse(bad.as_bytes()).is_err(), "{bad:?} accepted");
        }
        assert!(parse(b"form-data; name=\"\xff\"").is_err());
    }
}
