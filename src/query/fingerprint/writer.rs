//! The normalizer's single pass: tokens in, canonical text out, with lists collapsed as they close.

use super::comment::{self, TagKeys};
use super::ident::{can_unquote, push_scrubbed};
use super::keywords::{Keyword, Shape, is_reserved, keyword};
use super::lexer::{Context, Lexer, Token};
use crate::query::model::{Dialect, MAX_NORMALIZED_LEN, StatementKind};

/// What the last emitted token was, which decides spacing and how the next ambiguous character reads.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Class {
    Start,
    Keyword(Shape),
    Ident,
    Value,
    Open,
    Close,
    Comma,
    Dot,
    Tight,
    Op,
    Semi,
}

/// Where a token was written, to rewrite `DATE '…'` after the fact.
#[derive(Debug, Clone, Copy)]
struct Mark {
    /// Output length before the token (and its leading space).
    at: usize,
    /// Where its text starts.
    start: usize,
    before: Class,
    before_kw: Option<&'static str>,
}

/// A comma-separated list whose equal elements collapse into the first one.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum ListKind {
    /// `IN (…)`: elements must hold a literal or parameter (`IN (a, b)` lists columns and stays).
    In,
    /// `ARRAY[…]`: same rule as `IN`.
    Array,
    /// `VALUES (…), (…)`: rows.
    Values,
}

#[derive(Debug, Clone, Copy)]
struct List {
    kind: ListKind,
    /// Bracket depth its separating commas are at.
    level: usize,
    elem_start: usize,
    elem_params: u32,
    first: Option<First>,
    /// An element differed from the first: later ones are kept too, so the text stays a faithful prefix.
    dead: bool,
}

#[derive(Debug, Clone, Copy)]
struct First {
    start: usize,
    end: usize,
    params_after: u32,
}

/// The pass's state.
#[derive(Debug)]
pub(super) struct Writer<'a> {
    lexer: Lexer<'a>,
    dialect: Dialect,
    out: String,
    prev: Class,
    prev_kw: Option<&'static str>,
    prev_prev_kw: Option<&'static str>,
    operand: bool,
    groups: Vec<u8>,
    lists: Vec<List>,
    params: u32,
    kind: Option<StatementKind>,
    statement_first: Option<&'static str>,
    statement_started: bool,
    name_next: bool,
    pending_semi: bool,
    last_string: bool,
    history: [Option<Mark>; 4],
    tags: Vec<(String, String)>,
    keys: TagKeys<'a>,
    bound: bool,
}

/// What one pass produced.
#[derive(Debug)]
pub(super) struct Output {
    pub(super) text: String,
    pub(super) kind: StatementKind,
    pub(super) tags: Vec<(String, String)>,
    /// The pass stopped before the end of its input (the text was going to be cut anyway).
    pub(super) stopped: bool,
    /// The input has a bind parameter (`$1`, `?`, `:name`, …): values the text does not show.
    pub(super) bound: bool,
}

impl<'a> Writer<'a> {
    pub(super) fn new(input: &'a str, dialect: Dialect, keys: TagKeys<'a>) -> Self {
        Self {
            lexer: Lexer::new(input, dialect),
            dialect,
            out: String::with_capacity(input.len().min(1024) + 16),
            prev: Class::Start,
            prev_kw: None,
            prev_prev_kw: None,
            operand: true,
            groups: Vec::new(),
            lists: Vec::new(),
            params: 0,
            kind: None,
            statement_first: None,
            statement_started: false,
            name_next: false,
            pending_semi: false,
            last_string: false,
            history: [None; 4],
            tags: Vec::new(),
            keys,
            bound: false,
        }
    }

    pub(super) fn run(mut self) -> Output {
        let mut stopped = false;
        while let Some(token) = self.lexer.next(self.context()) {
            self.step(token);
            if self.out.len() > 2 * MAX_NORMALIZED_LEN && self.settled() {
                stopped = true;
                break;
            }
        }
        self.close_lists(0);
        Output {
            text: self.out,
            kind: self.kind.unwrap_or(StatementKind::Other),
            tags: self.tags,
            stopped,
            bound: self.bound,
        }
    }

    /// Whether the text up to the cap can no longer change: no list is open (closing one may cut back to its
    /// first element) and no recent token lies before the cap (a typed literal rewrites the last few). Reading
    /// on would only add text the cap removes, so deep or huge statements stop here.
    fn settled(&self) -> bool {
        self.lists.is_empty()
            && self
                .history
                .iter()
                .flatten()
                .all(|mark| mark.at > MAX_NORMALIZED_LEN)
    }

    fn context(&self) -> Context {
        Context {
            operand: self.operand,
            in_bracket: self.groups.last() == Some(&b'['),
            bracket_ident: self.operand && self.prev_kw != Some("ARRAY"),
        }
    }

    fn step(&mut self, token: Token<'a>) {
        match token {
            Token::Comment(body) => return comment::collect(body, &mut self.tags, self.keys),
            Token::Semi => return self.end_statement(),
            _ => {}
        }
        self.flush_semi();
        self.end_values_if_left(token);
        let kw = match token {
            Token::Word(word) => keyword(word),
            _ => None,
        };
        // A savepoint or cursor name is the very next name: keywords may come between, nothing else.
        let keeps_name_next = kw.is_some();
        match token {
            Token::Word(word) => self.word(word, kw),
            Token::Quoted { open, close, body } => self.quoted(open, close, body),
            Token::Str => self.literal(true),
            Token::Odbc(kind) => self.odbc(kind),
            Token::Number => self.literal(false),
            Token::Param => {
                self.bound = true;
                self.literal(false)
            }
            Token::Open(b) => self.open(b),
            Token::Close(b) => self.close(b),
            Token::Comma => self.comma(),
            Token::Dot => self.emit(Class::Dot, ".", true),
            Token::Colon(":") if self.groups.last() == Some(&b'[') => {
                self.emit(Class::Tight, ":", true)
            }
            Token::Colon(op @ "::") => self.emit(Class::Tight, op, false),
            Token::Colon(op) | Token::Op(op) => self.operator(op),
            // Braces (ODBC escapes, `{fn …}`) hug what they hold, as the writer prints an escape.
            Token::Other(b'{') => self.emit(Class::Open, "{", true),
            Token::Other(b'}') => self.emit(Class::Close, "}", false),
            Token::Other(b) => self.operator(char_str(b)),
            Token::Comment(_) | Token::Semi => {}
        }
        self.name_next &= keeps_name_next;
    }

    // ---- tokens -------------------------------------------------------------------------------------

    fn word(&mut self, word: &str, kw: Option<Keyword>) {
        let Some(kw) = kw else {
            return self.identifier(word);
        };
        self.note_statement_start(Some(kw.0));
        self.emit_keyword(kw);
        self.after_keyword(kw.0);
    }

    fn after_keyword(&mut self, kw: &'static str) {
        let first = self.statement_first;
        match kw {
            "VALUES" => self.lists.push(List {
                kind: ListKind::Values,
                level: self.groups.len(),
                elem_start: self.out.len(),
                elem_params: self.params,
                first: None,
                dead: false,
            }),
            "SAVEPOINT" | "RELEASE" => self.name_next = true,
            "DECLARE" | "CLOSE" if first == Some(kw) => self.name_next = true,
            "TO" if first == Some("ROLLBACK") => self.name_next = true,
            "FROM" | "IN" if matches!(first, Some("FETCH" | "MOVE")) => self.name_next = true,
            _ => {}
        }
    }

    fn identifier(&mut self, word: &str) {
        self.note_statement_start(None);
        if self.take_name() {
            return;
        }
        let function =
            self.lexer.next_is_open_paren() && !matches!(self.prev_kw, Some("INTO" | "TABLE"));
        let at = self.begin(Class::Ident, "");
        let start = self.out.len();
        if function {
            self.out.push_str(word);
        } else {
            push_scrubbed(&mut self.out, word);
            // `as00` must not become the keyword `AS`.
            let changed = self.out.len() - start != word.len();
            if changed && self.out.get(start..).is_some_and(is_reserved) {
                self.out.truncate(start);
                self.out.push_str(word);
            }
        }
        if let Some(text) = self.out.get_mut(start..) {
            text.make_ascii_lowercase();
        }
        self.finish(at, start, Class::Ident, None, false);
    }

    fn quoted(&mut self, open: u8, close: u8, body: &str) {
        self.note_statement_start(None);
        if self.take_name() {
            return;
        }
        let mut name = String::with_capacity(body.len());
        push_scrubbed(&mut name, body);
        // T-SQL names are case-insensitive, quoted or not: `[Id]` is `id`.
        if self.dialect == Dialect::TSql && is_plain_name(&name) {
            name.make_ascii_lowercase();
        }
        let at = self.begin(Class::Ident, "");
        let start = self.out.len();
        if can_unquote(&name) {
            self.out.push_str(&name);
        } else {
            self.out.push(char::from(open));
            self.out.push_str(&name);
            self.out.push(char::from(close));
        }
        self.finish(at, start, Class::Ident, None, false);
    }

    /// A literal or parameter: one placeholder. A string right after a type name is a typed literal
    /// (`DATE '…'`), rewritten as a cast so the text still parses; adjacent strings continue each other.
    fn literal(&mut self, string: bool) {
        self.note_statement_start(None);
        if self.take_name() {
            return;
        }
        if string && self.prev == Class::Value && self.last_string {
            return;
        }
        if string && self.prev == Class::Ident {
            return self.typed_literal();
        }
        self.placeholder();
        self.last_string = string;
    }

    /// An ODBC escape keeps its type keyword around the placeholder: `{ts '…'}` → `{ts ?}`, printed as the
    /// braces, name and parameter of that text would be (so normalizing it again changes nothing).
    fn odbc(&mut self, kind: &str) {
        self.note_statement_start(None);
        if self.take_name() {
            return;
        }
        self.emit(Class::Open, "{", true);
        let at = self.begin(Class::Ident, "");
        let start = self.out.len();
        for c in kind.chars() {
            self.out.push(c.to_ascii_lowercase());
        }
        self.finish(at, start, Class::Ident, None, false);
        self.placeholder();
        self.last_string = false;
        self.emit(Class::Close, "}", false);
    }

    fn open(&mut self, b: u8) {
        let prev_kw = self.prev_kw;
        self.emit(Class::Open, char_str(b), true);
        self.groups.push(b);
        let kind = match (b, prev_kw) {
            (b'(', Some("IN")) => Some(ListKind::In),
            (b'[', Some("ARRAY")) => Some(ListKind::Array),
            _ => None,
        };
        if let Some(kind) = kind {
            self.lists.push(List {
                kind,
                level: self.groups.len(),
                elem_start: self.out.len(),
                elem_params: self.params,
                first: None,
                dead: false,
            });
        }
    }

    fn close(&mut self, b: u8) {
        if !self.groups.is_empty() {
            self.close_lists(self.groups.len());
            self.groups.pop();
        }
        self.emit(Class::Close, char_str(b), false);
    }

    fn comma(&mut self) {
        let level = self.groups.len();
        let in_list = self.lists.last().is_some_and(|list| list.level == level);
        if in_list {
            self.finish_element();
        }
        self.emit(Class::Comma, ",", true);
        if in_list && let Some(list) = self.lists.last_mut() {
            list.elem_start = self.out.len();
            list.elem_params = self.params;
        }
    }

    fn operator(&mut self, op: &str) {
        let wildcard = op == "*" && self.operand;
        if wildcard {
            self.emit(Class::Value, op, false);
        } else {
            self.emit(Class::Op, op, true);
        }
    }

    fn end_statement(&mut self) {
        self.close_lists(0);
        self.groups.clear();
        self.name_next = false;
        self.statement_first = None;
        self.statement_started = false;
        if !matches!(self.prev, Class::Start | Class::Semi) {
            self.pending_semi = true;
        }
        self.operand = true;
    }

    fn flush_semi(&mut self) {
        if std::mem::take(&mut self.pending_semi) {
            self.out.push(';');
            self.prev = Class::Semi;
            self.prev_kw = None;
            self.prev_prev_kw = None;
        }
    }

    // ---- statement-level rules ----------------------------------------------------------------------

    /// The first word of a statement decides the statement kind (of the first statement) and which names
    /// are cursors.
    fn note_statement_start(&mut self, kw: Option<&'static str>) {
        if self.statement_started {
            return;
        }
        self.statement_started = true;
        self.statement_first = kw;
        if self.kind.is_none() {
            self.kind = Some(kind_of(kw));
        }
    }

    /// Savepoint and cursor names become `?`: generated names (`sp_3`, `s1399_x1`) would make every
    /// transaction its own fingerprint.
    fn take_name(&mut self) -> bool {
        if !std::mem::take(&mut self.name_next) {
            return false;
        }
        self.emit(Class::Value, "?", false);
        true
    }

    // ---- literals -----------------------------------------------------------------------------------

    /// The placeholder: `$n` (numbered in order) for PostgreSQL, whose parser rejects `?`; `?` elsewhere.
    fn placeholder(&mut self) {
        // T-SQL's parser takes `TOP (n)` and `TOP 10`, not `TOP ?`: the placeholder keeps it parseable.
        if self.dialect == Dialect::TSql && self.prev_kw == Some("TOP") {
            self.emit(Class::Open, "(", true);
            self.placeholder_only();
            return self.emit(Class::Close, ")", false);
        }
        self.placeholder_only();
    }

    fn placeholder_only(&mut self) {
        self.params = self.params.saturating_add(1);
        let at = self.begin(Class::Value, "");
        let start = self.out.len();
        if self.dialect == Dialect::PostgreSql {
            self.out.push('$');
            push_number(&mut self.out, self.params);
        } else {
            self.out.push('?');
        }
        self.finish(at, start, Class::Value, None, false);
    }

    /// `DATE '…'` → `CAST($1 AS date)`; `TIMESTAMP WITH TIME ZONE '…'` likewise; MySQL's `_utf8mb4 '…'`
    /// introducer goes.
    fn typed_literal(&mut self) {
        let zone_phrase = matches!(self.text_of(0), "timestamp" | "time")
            && matches!(self.text_of(1), "WITH" | "WITHOUT")
            && self.text_of(2) == "time"
            && self.text_of(3) == "zone";
        let first = if zone_phrase { 0 } else { 3 };
        let Some(Some(phrase)) = self.history.get(first).copied() else {
            return self.placeholder();
        };
        let type_name = self.out.get(phrase.start..).unwrap_or("").to_owned();
        self.out.truncate(phrase.at);
        self.prev = phrase.before;
        self.prev_kw = phrase.before_kw;
        self.history = [None; 4];
        if type_name.starts_with('_') {
            self.placeholder();
            self.last_string = true;
            return;
        }
        self.emit_keyword(("CAST", Shape::Call));
        self.emit(Class::Open, "(", true);
        self.placeholder();
        self.emit_keyword(("AS", Shape::Lead));
        self.emit(Class::Ident, &type_name, false);
        self.emit(Class::Close, ")", false);
        self.last_string = false;
    }

    /// The text of history entry `i` (0 = oldest of four).
    fn text_of(&self, i: usize) -> &str {
        let Some(Some(mark)) = self.history.get(i) else {
            return "";
        };
        let end = match self.history.get(i + 1) {
            Some(Some(next)) => next.at,
            _ => self.out.len(),
        };
        self.out.get(mark.start..end).unwrap_or("")
    }

    // ---- lists --------------------------------------------------------------------------------------

    /// A `VALUES` list ends at the first token at its level that is not a row, a comma or `ROW`.
    fn end_values_if_left(&mut self, token: Token<'_>) {
        let level = self.groups.len();
        let Some(list) = self.lists.last() else {
            return;
        };
        if list.kind != ListKind::Values || list.level != level {
            return;
        }
        let continues = match token {
            Token::Open(b'(') | Token::Comma => true,
            Token::Word(word) => word.eq_ignore_ascii_case("row"),
            _ => false,
        };
        if !continues {
            self.finish_element();
            self.lists.pop();
        }
    }

    /// Closes every list at bracket depth `level` or deeper, innermost first.
    fn close_lists(&mut self, level: usize) {
        while self.lists.last().is_some_and(|list| list.level >= level) {
            self.finish_element();
            self.lists.pop();
        }
    }

    /// The element just written ends: it becomes the first, or, equal to the first up to placeholder
    /// numbers, is removed.
    fn finish_element(&mut self) {
        let Some(list) = self.lists.last().copied() else {
            return;
        };
        if list.dead {
            return;
        }
        let raw = self.out.get(list.elem_start..).unwrap_or("");
        let trimmed = raw.trim_start();
        if trimmed.is_empty() {
            return;
        }
        let start = self.out.len() - trimmed.len();
        let update = match list.first {
            None if list.kind != ListKind::Values && self.params == list.elem_params => {
                Update::Dead
            }
            None => Update::First(First {
                start,
                end: self.out.len(),
                params_after: self.params,
            }),
            Some(first) => {
                let first_text = self.out.get(first.start..first.end).unwrap_or("");
                if same_but_numbers(first_text, trimmed) {
                    Update::Drop(first)
                } else {
                    Update::Dead
                }
            }
        };
        let Some(list) = self.lists.last_mut() else {
            return;
        };
        match update {
            Update::Dead => list.dead = true,
            Update::First(first) => list.first = Some(first),
            Update::Drop(first) => {
                self.out.truncate(first.end);
                self.params = first.params_after;
                self.history = [None; 4];
            }
        }
    }

    // ---- output -------------------------------------------------------------------------------------

    fn emit_keyword(&mut self, (name, shape): Keyword) {
        let at = self.begin(Class::Keyword(shape), name);
        let start = self.out.len();
        self.out.push_str(name);
        self.finish(
            at,
            start,
            Class::Keyword(shape),
            Some(name),
            shape != Shape::Value,
        );
    }

    fn emit(&mut self, class: Class, text: &str, operand_next: bool) {
        let at = self.begin(class, text);
        let start = self.out.len();
        self.out.push_str(text);
        self.finish(at, start, class, None, operand_next);
    }

    /// Writes the separating space the canonical form wants before a token of `next` class.
    fn begin(&mut self, next: Class, text: &str) -> usize {
        let at = self.out.len();
        // A `:` written tight (an array slice) glued to a following `=` or `:` would read back as one
        // `:=` / `::` token: keep them apart so that normalizing again changes nothing.
        let glues = self.out.ends_with(':') && (text.starts_with('=') || text.starts_with(':'));
        if glues || needs_space(self.prev, next, text) {
            self.out.push(' ');
        }
        at
    }

    fn finish(
        &mut self,
        at: usize,
        start: usize,
        class: Class,
        kw: Option<&'static str>,
        operand_next: bool,
    ) {
        let mark = Mark {
            at,
            start,
            before: self.prev,
            before_kw: self.prev_kw,
        };
        self.history.rotate_left(1);
        if let Some(slot) = self.history.last_mut() {
            *slot = Some(mark);
        }
        self.prev = class;
        self.prev_prev_kw = self.prev_kw;
        self.prev_kw = kw;
        self.operand = match class {
            Class::Ident | Class::Value | Class::Close => false,
            _ => operand_next,
        };
        if class != Class::Value {
            self.last_string = false;
        }
    }
}

/// A name that would need no quotes but for its case.
fn is_plain_name(name: &str) -> bool {
    name.bytes()
        .next()
        .is_some_and(|b| b.is_ascii_alphabetic() || b == b'_')
        && name.bytes().all(|b| b.is_ascii_alphanumeric() || b == b'_')
}

enum Update {
    Dead,
    First(First),
    Drop(First),
}

/// The canonical spacing: one space between tokens, none inside brackets, before `,` `)` `]`, around `.` and
/// `::`, nor between a function name and its `(` or a value and its `[`.
fn needs_space(prev: Class, next: Class, text: &str) -> bool {
    if matches!(prev, Class::Start | Class::Open | Class::Dot | Class::Tight) {
        return false;
    }
    match (next, text) {
        (Class::Close | Class::Comma | Class::Dot | Class::Tight, _) => false,
        (Class::Open, "(") => !matches!(prev, Class::Ident | Class::Keyword(Shape::Call)),
        (Class::Open, _) => !matches!(
            prev,
            Class::Ident | Class::Value | Class::Close | Class::Keyword(Shape::Call)
        ),
        _ => true,
    }
}

/// Kind from a statement's first keyword.
fn kind_of(kw: Option<&str>) -> StatementKind {
    match kw {
        Some("SELECT" | "VALUES" | "TABLE") => StatementKind::Select,
        Some("INSERT" | "REPLACE") => StatementKind::Insert,
        Some("UPDATE") => StatementKind::Update,
        Some("DELETE") => StatementKind::Delete,
        Some("WITH") => StatementKind::With,
        Some(
            "BEGIN" | "START" | "COMMIT" | "END" | "ROLLBACK" | "SAVEPOINT" | "RELEASE" | "ABORT",
        ) => StatementKind::Transaction,
        Some("SET" | "SHOW" | "RESET") => StatementKind::Session,
        _ => StatementKind::Other,
    }
}

/// Equal, treating any two `$n` placeholders as the same.
fn same_but_numbers(a: &str, b: &str) -> bool {
    let (a, b) = (a.as_bytes(), b.as_bytes());
    let (mut i, mut j) = (0, 0);
    while i < a.len() && j < b.len() {
        let (x, y) = (a.get(i).copied(), b.get(j).copied());
        if x == Some(b'$') && y == Some(b'$') {
            i += 1;
            j += 1;
            while a.get(i).is_some_and(u8::is_ascii_digit) {
                i += 1;
            }
            while b.get(j).is_some_and(u8::is_ascii_digit) {
                j += 1;
            }
        } else if x == y {
            i += 1;
            j += 1;
        } else {
            return false;
        }
    }
    i == a.len() && j == b.len()
}

/// Appends the decimal digits of `n` (without the formatting machinery: this runs once per placeholder).
fn push_number(out: &mut String, n: u32) {
    let mut digits = [0u8; 10];
    let mut len = 0;
    let mut rest = n;
    loop {
        if let Some(slot) = digits.get_mut(len) {
            *slot = b'0' + (rest % 10) as u8;
        }
        len += 1;
        rest /= 10;
        if rest == 0 || len == digits.len() {
            break;
        }
    }
    for digit in digits.iter().take(len).rev() {
        out.push(char::from(*digit));
    }
}

/// The one-byte text of a printable ASCII byte (the lexer passes nothing else here).
fn char_str(b: u8) -> &'static str {
    const PRINTABLE: &str = " !\"#$%&'()*+,-./0123456789:;<=>?@ABCDEFGHIJKLMNOPQRSTUVWXYZ[\\]^_`abcdefghijklmnopqrstuvwxyz{|}~";
    let i = usize::from(b.wrapping_sub(b' '));
    PRINTABLE.get(i..i + 1).unwrap_or("?")
}
