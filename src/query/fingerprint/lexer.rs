//! The byte scanner: one token at a time, no allocation, no recursion, never past the end of its input.
//!
//! Every token boundary falls on an ASCII byte (or a whole non-ASCII character), so slices of the input
//! taken at token boundaries are always valid UTF-8.

use crate::query::model::Dialect;

/// One lexical token. Literals carry no text: nothing after the scanner sees their contents.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) enum Token<'a> {
    /// An unquoted word: keyword or identifier.
    Word(&'a str),
    /// A quoted identifier; `body` is between the quotes, escapes kept as written.
    Quoted { open: u8, close: u8, body: &'a str },
    /// A string literal of any form (`'…'`, `E'…'`, `$$…$$`, MySQL `"…"`, …).
    Str,
    /// An ODBC escape (`{d '…'}`, `{t '…'}`, `{ts '…'}`): its type keyword as written.
    Odbc(&'a str),
    /// A numeric literal (`1`, `-1.5e3`, `0x1F`, `1_000`, …).
    Number,
    /// A bind parameter (`$1`, `?`, `?1`, `:name`, `@name`, `%s`, `%(name)s`).
    Param,
    /// `(` or `[`.
    Open(u8),
    /// `)` or `]`.
    Close(u8),
    /// `,`.
    Comma,
    /// `;`.
    Semi,
    /// `.`.
    Dot,
    /// `::` (a cast) or a lone `:` (array slices).
    Colon(&'a str),
    /// An operator: a run of operator characters.
    Op(&'a str),
    /// The body of a block comment (for sqlcommenter tags).
    Comment(&'a str),
    /// Any other ASCII punctuation.
    Other(u8),
}

/// What the writer knows about the position, which decides how ambiguous characters read.
#[derive(Debug, Clone, Copy, Default)]
pub(super) struct Context {
    /// An operand is expected: `-1` is a number, `?` a parameter, `:x` a parameter, `*` a wildcard.
    pub(super) operand: bool,
    /// Inside `[…]`: `:` is a slice bound, never a parameter.
    pub(super) in_bracket: bool,
    /// `[name]` may be an MSSQL/SQLite quoted identifier here (not after `ARRAY` or an operand).
    pub(super) bracket_ident: bool,
}

/// The scanner over a (bounded) input.
#[derive(Debug)]
pub(super) struct Lexer<'a> {
    text: &'a str,
    bytes: &'a [u8],
    pos: usize,
    dialect: Dialect,
}

impl<'a> Lexer<'a> {
    pub(super) fn new(text: &'a str, dialect: Dialect) -> Self {
        Self {
            text,
            bytes: text.as_bytes(),
            pos: 0,
            dialect,
        }
    }

    fn at(&self, i: usize) -> u8 {
        self.bytes.get(i).copied().unwrap_or(0)
    }

    fn slice(&self, start: usize, end: usize) -> &'a str {
        self.text.get(start..end).unwrap_or("")
    }

    /// Whether the next non-blank byte is `(`: tells a function name from a table name.
    pub(super) fn next_is_open_paren(&self) -> bool {
        self.bytes
            .get(self.pos..)
            .and_then(|rest| rest.iter().find(|b| !b.is_ascii_whitespace()))
            == Some(&b'(')
    }

    /// The next token, or `None` at the end of the input.
    pub(super) fn next(&mut self, cx: Context) -> Option<Token<'a>> {
        loop {
            self.skip_blank();
            let b = *self.bytes.get(self.pos)?;
            let start = self.pos;
            let next = self.at(self.pos + 1);
            let token = match b {
                b'-' if next == b'-' => {
                    self.skip_line();
                    continue;
                }
                b'#' if self.dialect == Dialect::MySql => {
                    self.skip_line();
                    continue;
                }
                b'#' if self.dialect == Dialect::TSql && (next == b'#' || is_ident_start(next)) => {
                    self.temp_table_name()
                }
                b'/' if next == b'*' => Token::Comment(self.block_comment()),
                b'\'' => self.string(self.pos + 1, self.dialect == Dialect::MySql),
                b'"' if self.dialect == Dialect::MySql => self.string(self.pos + 1, true),
                b'"' | b'`' => self.quoted(b),
                b'[' if self.dialect == Dialect::TSql => self.quoted(b'['),
                b'[' if cx.bracket_ident && self.bracket_ident_ahead() => self.quoted(b'['),
                b'0'..=b'9' => self.number(self.pos),
                b'.' if next.is_ascii_digit() && cx.operand => self.number(self.pos),
                b'-' | b'+' if cx.operand => match self.signed_number_ahead() {
                    Some(digits) => self.number(digits),
                    None => self.operator(),
                },
                b'$' => self.dollar(),
                b'?' if cx.operand || self.dialect != Dialect::PostgreSql => self.question(),
                b':' => self.colon(cx),
                b'@' if (cx.operand || self.dialect == Dialect::TSql) && is_name_start(next) => {
                    self.named_param(self.pos + 1)
                }
                b'%' if cx.operand => self.percent().unwrap_or_else(|| self.operator()),
                b'{' => self
                    .odbc_escape()
                    .unwrap_or_else(|| self.single(Token::Other(b'{'))),
                b'(' | b'[' => self.single(Token::Open(b)),
                b')' | b']' => self.single(Token::Close(b)),
                b',' => self.single(Token::Comma),
                b';' => self.single(Token::Semi),
                b'.' => self.single(Token::Dot),
                _ if self.is_operator_byte(b) => self.operator(),
                _ if b >= 0x80 && self.non_ascii_blank() => continue,
                _ if is_ident_start(b) => self.word(),
                _ => self.single(Token::Other(b)),
            };
            self.ensure_progress(start);
            return Some(token);
        }
    }

    /// Every token consumes at least one character, so the scan always ends.
    fn ensure_progress(&mut self, start: usize) {
        if self.pos <= start {
            let width = self
                .text
                .get(start..)
                .and_then(|rest| rest.chars().next())
                .map_or(1, char::len_utf8);
            self.pos = start + width;
        }
    }

    fn single(&mut self, token: Token<'a>) -> Token<'a> {
        self.pos += 1;
        token
    }

    /// Skips ASCII blanks and control characters (CR, tabs, NUL and the like all separate tokens).
    fn skip_blank(&mut self) {
        while let Some(&b) = self.bytes.get(self.pos) {
            if b <= b' ' || b == 0x7f {
                self.pos += 1;
            } else {
                break;
            }
        }
    }

    /// Skips a non-ASCII blank (NBSP, ideographic space, BOM) and says whether it did.
    fn non_ascii_blank(&mut self) -> bool {
        match self
            .text
            .get(self.pos..)
            .and_then(|rest| rest.chars().next())
        {
            Some(c) if c.is_whitespace() || c == '\u{feff}' => {
                self.pos += c.len_utf8();
                true
            }
            _ => false,
        }
    }

    fn skip_line(&mut self) {
        while let Some(&b) = self.bytes.get(self.pos) {
            self.pos += 1;
            if b == b'\n' {
                break;
            }
        }
    }

    /// A `/* … */` comment; PostgreSQL nests them. Unterminated: runs to the end.
    fn block_comment(&mut self) -> &'a str {
        let nests = matches!(self.dialect, Dialect::PostgreSql | Dialect::TSql);
        let start = self.pos + 2;
        let mut i = start;
        let mut depth = 1usize;
        while i < self.bytes.len() {
            match (self.at(i), self.at(i + 1)) {
                (b'*', b'/') => {
                    depth -= 1;
                    if depth == 0 {
                        self.pos = i + 2;
                        return self.slice(start, i);
                    }
                    i += 2;
                }
                (b'/', b'*') if nests => {
                    depth += 1;
                    i += 2;
                }
                _ => i += 1,
            }
        }
        self.pos = self.bytes.len();
        self.slice(start, self.bytes.len())
    }

    /// A quoted string starting at `body` (just after its opening quote); `backslash` says whether `\` escapes.
    fn string(&mut self, body: usize, backslash: bool) -> Token<'a> {
        let quote = self.at(body - 1);
        let mut i = body;
        while i < self.bytes.len() {
            let b = self.at(i);
            if b == b'\\' && backslash {
                i += 2;
            } else if b == quote {
                if self.at(i + 1) == quote {
                    i += 2;
                } else {
                    self.pos = i + 1;
                    return Token::Str;
                }
            } else {
                i += 1;
            }
        }
        self.pos = self.bytes.len();
        Token::Str
    }

    /// A quoted identifier; an unterminated one runs to the end and is closed on output.
    fn quoted(&mut self, open: u8) -> Token<'a> {
        let close = if open == b'[' { b']' } else { open };
        let start = self.pos + 1;
        let mut i = start;
        while i < self.bytes.len() {
            if self.at(i) == close {
                let doubled = close != b']' || self.dialect == Dialect::TSql;
                if doubled && self.at(i + 1) == close {
                    i += 2;
                    continue;
                }
                self.pos = i + 1;
                return Token::Quoted {
                    open,
                    close,
                    body: self.slice(start, i),
                };
            }
            i += 1;
        }
        self.pos = self.bytes.len();
        Token::Quoted {
            open,
            close,
            body: self.slice(start, self.bytes.len()),
        }
    }

    /// `[name]` holds only a plain name: then it is a quoted identifier, not an array subscript.
    /// Blanks and control characters after `[` are skipped as everywhere else, so `[ name]` reads the same on
    /// every pass (normalization must be idempotent).
    fn bracket_ident_ahead(&self) -> bool {
        let mut first = self.pos + 1;
        while let Some(&b) = self.bytes.get(first) {
            if b <= b' ' || b == 0x7f {
                first += 1;
            } else {
                break;
            }
        }
        if !matches!(self.dialect, Dialect::Generic | Dialect::Sqlite)
            || !is_ident_start(self.at(first))
        {
            return false;
        }
        let rest = self.bytes.get(self.pos + 1..).unwrap_or(&[]);
        for &b in rest.iter().take(128) {
            match b {
                b']' => return true,
                b'[' | b'\'' | b'"' | b',' | b'(' | b')' | b':' | b';' => return false,
                _ => {}
            }
        }
        false
    }

    /// A number from `start` (after an optional sign): digits, `_`, one `.`, an exponent, a radix prefix, and
    /// any letters glued to it (`0x1F`, `1e7`, MySQL's `123abc`) all belong to the literal.
    fn number(&mut self, start: usize) -> Token<'a> {
        let mut i = start;
        let mut seen_dot = false;
        while i < self.bytes.len() {
            let b = self.at(i);
            if b.is_ascii_alphanumeric() || b == b'_' {
                let exponent_sign = (b == b'e' || b == b'E')
                    && matches!(self.at(i + 1), b'+' | b'-')
                    && self.at(i + 2).is_ascii_digit()
                    && !self.slice(start, i).starts_with("0x")
                    && !self.slice(start, i).starts_with("0X");
                i += if exponent_sign { 2 } else { 1 };
            } else if b == b'.' && !seen_dot && self.at(i + 1) != b'.' {
                seen_dot = true;
                i += 1;
            } else {
                break;
            }
        }
        self.pos = i;
        Token::Number
    }

    /// `$1` parameters, `$name` (SQLite) parameters, `$$…$$` and `$tag$…$tag$` strings.
    fn dollar(&mut self) -> Token<'a> {
        let start = self.pos;
        let mut i = start + 1;
        if self.at(i).is_ascii_digit() {
            while self.at(i).is_ascii_digit() {
                i += 1;
            }
            self.pos = i;
            return Token::Param;
        }
        while self.at(i).is_ascii_alphanumeric() || self.at(i) == b'_' {
            i += 1;
        }
        let tag_is_name = i == start + 1 || is_ident_start(self.at(start + 1));
        if self.at(i) == b'$' && tag_is_name {
            let tag = self.slice(start, i + 1);
            let body = i + 1;
            self.pos = match self.text.get(body..).and_then(|rest| rest.find(tag)) {
                Some(found) => body + found + tag.len(),
                None => self.bytes.len(),
            };
            return Token::Str;
        }
        if i > start + 1 {
            self.pos = i;
            return Token::Param;
        }
        self.single(Token::Other(b'$'))
    }

    /// `?` and SQLite's `?NNN`.
    fn question(&mut self) -> Token<'a> {
        let mut i = self.pos + 1;
        while self.at(i).is_ascii_digit() {
            i += 1;
        }
        self.pos = i;
        Token::Param
    }

    /// `::` casts, `:=`, `:name` / `:1` parameters (only where an operand is expected), slice colons.
    fn colon(&mut self, cx: Context) -> Token<'a> {
        let start = self.pos;
        match self.at(start + 1) {
            b':' | b'=' => {
                self.pos = start + 2;
                Token::Colon(self.slice(start, start + 2))
            }
            next if cx.operand
                && !cx.in_bracket
                && (is_name_start(next) || next.is_ascii_digit()) =>
            {
                self.named_param(start + 1)
            }
            _ => {
                self.pos = start + 1;
                Token::Colon(":")
            }
        }
    }

    /// The name of a `:name` / `@name` parameter, from `start`.
    fn named_param(&mut self, start: usize) -> Token<'a> {
        let mut i = start;
        while is_ident_continue(self.at(i)) {
            i += 1;
        }
        self.pos = i;
        Token::Param
    }

    /// Python DB-API parameters: `%s`, `%b`, `%t`, `%(name)s`. `None` when the `%` is an operator.
    fn percent(&mut self) -> Option<Token<'a>> {
        let start = self.pos;
        match self.at(start + 1) {
            b's' | b'b' | b't' if !is_ident_continue(self.at(start + 2)) => {
                self.pos = start + 2;
                Some(Token::Param)
            }
            b'(' => {
                let mut i = start + 2;
                while is_ident_continue(self.at(i)) {
                    i += 1;
                }
                if self.at(i) == b')' && matches!(self.at(i + 1), b's' | b'b' | b't') {
                    self.pos = i + 2;
                    Some(Token::Param)
                } else {
                    None
                }
            }
            _ => None,
        }
    }

    /// ODBC escapes `{d '…'}`, `{t '…'}`, `{ts '…'}`: one value that keeps its type keyword. `None` (nothing
    /// consumed) otherwise. (The normalized form `{ts ?}` reads back as `{`, a name, a parameter and `}`, which
    /// the writer prints the same way.)
    fn odbc_escape(&mut self) -> Option<Token<'a>> {
        let saved = self.pos;
        self.pos += 1;
        self.skip_blank();
        let word_start = self.pos;
        while self.at(self.pos).is_ascii_alphabetic() {
            self.pos += 1;
        }
        let kind = self.slice(word_start, self.pos);
        let is_escape = ["d", "t", "ts"]
            .iter()
            .any(|w| kind.eq_ignore_ascii_case(w));
        self.skip_blank();
        if is_escape && self.at(self.pos) == b'\'' {
            let body = self.pos + 1;
            self.string(body, false);
            self.skip_blank();
            if self.at(self.pos) == b'}' {
                self.pos += 1;
                return Some(Token::Odbc(kind));
            }
        }
        self.pos = saved;
        None
    }

    /// Where the digits of a signed number start, when the sign at the current position is followed (after
    /// blanks) by a number: `-5`, `- 5` and `-\n5` are all one negative number where an operand is expected.
    fn signed_number_ahead(&self) -> Option<usize> {
        let mut i = self.pos + 1;
        while let Some(&b) = self.bytes.get(i) {
            if b <= b' ' || b == 0x7f {
                i += 1;
            } else {
                break;
            }
        }
        starts_number(self.at(i), self.at(i + 1)).then_some(i)
    }

    /// A T-SQL temporary table name: `#name` or `##name`, one word.
    fn temp_table_name(&mut self) -> Token<'a> {
        let start = self.pos;
        let mut i = start;
        while self.at(i) == b'#' {
            i += 1;
        }
        while is_ident_continue(self.at(i)) {
            i += 1;
        }
        self.pos = i;
        Token::Word(self.slice(start, i))
    }

    fn is_operator_byte(&self, b: u8) -> bool {
        match b {
            b'+' | b'-' | b'*' | b'/' | b'<' | b'>' | b'=' | b'~' | b'!' | b'@' | b'%' | b'^'
            | b'&' | b'|' => true,
            b'#' => !matches!(self.dialect, Dialect::MySql | Dialect::TSql),
            b'?' => self.dialect == Dialect::PostgreSql,
            _ => false,
        }
    }

    /// A run of operator characters, cut before a comment start, with PostgreSQL's rule that a multi-character
    /// operator cannot end in `+` or `-` unless it holds one of ``~!@#%^&|`?`` (so `=-1` is `=` then `-1`).
    fn operator(&mut self) -> Token<'a> {
        let start = self.pos;
        let mut end = start;
        while end < self.bytes.len() && self.is_operator_byte(self.at(end)) {
            if end > start
                && matches!(
                    (self.at(end), self.at(end + 1)),
                    (b'-', b'-') | (b'/', b'*')
                )
            {
                break;
            }
            end += 1;
        }
        let run = self.slice(start, end);
        let special = run.bytes().any(|b| b"~!@#%^&|`?".contains(&b));
        while end > start + 1 && !special && matches!(self.at(end - 1), b'+' | b'-') {
            end -= 1;
        }
        self.pos = end.max(start + 1);
        Token::Op(self.slice(start, self.pos))
    }

    /// A word; a word glued to a quote may be a prefixed string (`N'…'`, `E'…'`, `X'…'`, `B'…'`, `U&'…'`,
    /// MySQL's `_utf8mb4'…'`), which is one literal.
    fn word(&mut self) -> Token<'a> {
        let start = self.pos;
        let mut i = start;
        while let Some(&b) = self.bytes.get(i) {
            if b < 0x80 {
                if !is_ident_continue(b) {
                    break;
                }
                i += 1;
            } else {
                match self.text.get(i..).and_then(|rest| rest.chars().next()) {
                    Some(c) if !c.is_whitespace() && c != '\u{feff}' => i += c.len_utf8(),
                    _ => break,
                }
            }
        }
        let word = self.slice(start, i);
        self.pos = i;
        if let Some(token) = self.prefixed_string(word) {
            return token;
        }
        Token::Word(word)
    }

    fn prefixed_string(&mut self, word: &str) -> Option<Token<'a>> {
        let quote_at = self.pos;
        let (body, backslash) = match (self.at(quote_at), self.at(quote_at + 1)) {
            (b'\'', _) => (quote_at + 1, self.dialect == Dialect::MySql),
            (b'&', b'\'') if word.eq_ignore_ascii_case("u") => (quote_at + 2, false),
            _ => return None,
        };
        let escapes = ["e"].iter().any(|p| word.eq_ignore_ascii_case(p));
        let plain = ["n", "x", "b", "u"]
            .iter()
            .any(|p| word.eq_ignore_ascii_case(p));
        let introducer = word.starts_with('_') && self.dialect == Dialect::MySql;
        if !(escapes || plain || introducer)
            || (word.eq_ignore_ascii_case("u") && body == quote_at + 1)
        {
            return None;
        }
        Some(self.string(body, backslash || escapes))
    }
}

/// A sign at `next` starts a number: a digit, or `.` then a digit.
fn starts_number(next: u8, after: u8) -> bool {
    next.is_ascii_digit() || (next == b'.' && after.is_ascii_digit())
}

/// Parameter names are ASCII: a parameter name never swallows part of a word.
fn is_name_start(b: u8) -> bool {
    b.is_ascii_alphabetic() || b == b'_'
}

pub(super) fn is_ident_start(b: u8) -> bool {
    b.is_ascii_alphabetic() || b == b'_' || b >= 0x80
}

fn is_ident_continue(b: u8) -> bool {
    b.is_ascii_alphanumeric() || b == b'_' || b == b'$'
}

#[cfg(test)]
mod tests {
    use super::*;

    fn tokens(sql: &str, dialect: Dialect) -> Vec<Token<'_>> {
        let mut lexer = Lexer::new(sql, dialect);
        let mut out = Vec::new();
        let cx = Context {
            operand: true,
            ..Context::default()
        };
        while let Some(token) = lexer.next(cx) {
            out.push(token);
        }
        out
    }

    #[test]
    fn unterminated_forms_end_at_the_end() {
        for sql in [
            "'abc",
            "E'a\\",
            "$$ abc",
            "$fn$ abc $$",
            "/* abc",
            "\"abc",
            "`abc",
            "{ts '2024",
        ] {
            for dialect in [
                Dialect::Generic,
                Dialect::PostgreSql,
                Dialect::MySql,
                Dialect::Sqlite,
                Dialect::TSql,
            ] {
                assert!(tokens(sql, dialect).len() <= 3, "{sql:?} {dialect:?}");
            }
        }
    }

    #[test]
    fn dollar_quote_skips_nested_plain_dollars() {
        assert_eq!(
            tokens("$fn$ a $$ b $fn$ x", Dialect::PostgreSql),
            [Token::Str, Token::Word("x")]
        );
    }

    #[test]
    fn mysql_reads_double_quotes_and_backslashes_as_strings() {
        assert_eq!(
            tokens(r#""it\"s" 'a\'b'"#, Dialect::MySql),
            [Token::Str, Token::Str]
        );
        assert_eq!(
            tokens("\"Id\"", Dialect::PostgreSql),
            [Token::Quoted {
                open: b'"',
                close: b'"',
                body: "Id"
            }]
        );
    }

    #[test]
    fn operator_rule_splits_a_trailing_minus() {
        let mut lexer = Lexer::new("=-1", Dialect::PostgreSql);
        assert_eq!(lexer.next(Context::default()), Some(Token::Op("=")));
        assert_eq!(
            lexer.next(Context {
                operand: true,
                ..Context::default()
            }),
            Some(Token::Number)
        );
    }
}
