//! Tokens of the graph language. Lexes lazily so that errors are reported in source order.

use super::{GraphError, syntax};

#[derive(Debug, Clone, PartialEq)]
pub(super) enum Tok {
    Ident(String),
    /// A string literal; `chars[i]` is the source position (line, column) of the i-th
    /// character of the value, plus one entry for the closing quote.
    Str(String, Vec<(usize, usize)>),
    Int(i64),
    Float(f64),
    Shr,
    Amp,
    Pipe,
    Percent,
    LParen,
    RParen,
    LBracket,
    RBracket,
    Comma,
    Semi,
    Newline,
    Eof,
}

impl Tok {
    pub(super) fn describe(&self) -> String {
        match self {
            Tok::Ident(name) => format!("'{name}'"),
            Tok::Str(s, _) => format!("the string {}", serde_json::Value::String(s.clone())),
            Tok::Int(i) => format!("'{i}'"),
            Tok::Float(f) => format!("'{f}'"),
            Tok::Shr => "'>>'".into(),
            Tok::Amp => "'&'".into(),
            Tok::Pipe => "'|'".into(),
            Tok::Percent => "'%'".into(),
            Tok::LParen => "'('".into(),
            Tok::RParen => "')'".into(),
            Tok::LBracket => "'['".into(),
            Tok::RBracket => "']'".into(),
            Tok::Comma => "','".into(),
            Tok::Semi => "';'".into(),
            Tok::Newline => "a line break".into(),
            Tok::Eof => "the end of the input".into(),
        }
    }

    pub(super) fn is_operator(&self) -> bool {
        matches!(self, Tok::Shr | Tok::Amp | Tok::Pipe | Tok::Percent)
    }
}

#[derive(Debug, Clone)]
pub(super) struct Token {
    pub(super) tok: Tok,
    pub(super) line: usize,
    pub(super) column: usize,
    /// Byte offsets of the token in the source.
    pub(super) start: usize,
    pub(super) end: usize,
}

#[derive(Debug)]
pub(super) struct Lexer<'a> {
    chars: std::iter::Peekable<std::str::Chars<'a>>,
    line: usize,
    column: usize,
    offset: usize,
}

impl<'a> Lexer<'a> {
    pub(super) fn new(src: &'a str) -> Self {
        Lexer {
            chars: src.chars().peekable(),
            line: 1,
            column: 1,
            offset: 0,
        }
    }

    fn bump(&mut self) -> Option<char> {
        let c = self.chars.next()?;
        self.offset += c.len_utf8();
        if c == '\n' {
            self.line += 1;
            self.column = 1;
        } else {
            self.column += 1;
        }
        Some(c)
    }

    fn token(&self, tok: Tok, line: usize, column: usize, start: usize) -> Token {
        Token {
            tok,
            line,
            column,
            start,
            end: self.offset,
        }
    }

    pub(super) fn next_token(&mut self) -> Result<Token, GraphError> {
        loop {
            let (line, column, start) = (self.line, self.column, self.offset);
            let Some(&c) = self.chars.peek() else {
                return Ok(self.token(Tok::Eof, line, column, start));
            };
            let tok = match c {
                ' ' | '\t' | '\r' | '\x0c' => {
                    self.bump();
                    continue;
                }
                '#' => {
                    while self.chars.peek().is_some_and(|&c| c != '\n') {
                        self.bump();
                    }
                    continue;
                }
                '\n' => Tok::Newline,
                '>' => {
                    self.bump();
                    if self.chars.peek() != Some(&'>') {
                        return Err(syntax(
                            line,
                            column,
                            "unexpected '>' (the operator is '>>')",
                        ));
                    }
                    Tok::Shr
                }
                '&' => Tok::Amp,
                '|' => Tok::Pipe,
                '%' => Tok::Percent,
                '(' => Tok::LParen,
                ')' => Tok::RParen,
                '[' => Tok::LBracket,
                ']' => Tok::RBracket,
                ',' => Tok::Comma,
                ';' => Tok::Semi,
                '"' | '\'' => {
                    let tok = self.string(c, line, column)?;
                    return Ok(self.token(tok, line, column, start));
                }
                c if c == '_' || c.is_ascii_alphabetic() => {
                    let mut name = String::new();
                    while let Some(&c) = self.chars.peek() {
                        if c == '_' || c.is_ascii_alphanumeric() {
                            name.push(c);
                            self.bump();
                        } else {
                            break;
                        }
                    }
                    return Ok(self.token(Tok::Ident(name), line, column, start));
                }
                c if c.is_ascii_digit() || c == '-' => {
                    let tok = self.number(line, column)?;
                    return Ok(self.token(tok, line, column, start));
                }
                c => {
                    let hint = if c == '.' {
                        " (task names in the graph must be identifiers: letters, digits and '_')"
                    } else {
                        ""
                    };
                    return Err(syntax(
                        line,
                        column,
                        format!("unexpected character '{}'{hint}", c.escape_debug()),
                    ));
                }
            };
            self.bump();
            return Ok(self.token(tok, line, column, start));
        }
    }

    /// `-?[0-9]+(.[0-9]+)?`; a number glued to a name is a bad task name.
    fn number(&mut self, line: usize, column: usize) -> Result<Tok, GraphError> {
        let mut text = String::new();
        if self.chars.peek() == Some(&'-') {
            self.bump();
            if !self.chars.peek().is_some_and(char::is_ascii_digit) {
                return Err(syntax(
                    line,
                    column,
                    "unexpected character '-' (task names in the graph must be identifiers: letters, digits and '_')",
                ));
            }
            text.push('-');
        }
        let (digit_line, digit_column) = (self.line, self.column);
        let mut float = false;
        while let Some(&c) = self.chars.peek() {
            if c.is_ascii_digit() {
                text.push(c);
            } else if c == '.' && !float {
                float = true;
                text.push(c);
            } else {
                break;
            }
            self.bump();
        }
        if text.ends_with('.')
            || self
                .chars
                .peek()
                .is_some_and(|&c| c == '_' || c.is_alphabetic())
        {
            let first = text.trim_start_matches('-').chars().next().unwrap_or('0');
            return Err(syntax(
                digit_line,
                digit_column,
                format!("unexpected character '{first}' (task names cannot start with a digit)"),
            ));
        }
        if float {
            text.parse()
                .map(Tok::Float)
                .map_err(|_| syntax(line, column, format!("invalid number {text}")))
        } else {
            text.parse()
                .map(Tok::Int)
                .map_err(|_| syntax(line, column, format!("number {text} is out of range")))
        }
    }

    /// A one-line string in `quote`, with the escapes `\\ \' \" \n \t \r` (others are kept
    /// as written, as in Python).
    fn string(&mut self, quote: char, line: usize, column: usize) -> Result<Tok, GraphError> {
        self.bump();
        let mut value = String::new();
        let mut chars = Vec::new();
        loop {
            let at = (self.line, self.column);
            match self.chars.peek().copied() {
                None | Some('\n') => {
                    return Err(syntax(line, column, "unterminated string"));
                }
                Some(c) if c == quote => {
                    self.bump();
                    chars.push(at);
                    return Ok(Tok::Str(value, chars));
                }
                Some('\\') => {
                    self.bump();
                    let escaped = match self.chars.peek().copied() {
                        None | Some('\n') => {
                            return Err(syntax(line, column, "unterminated string"));
                        }
                        Some(e) => e,
                    };
                    self.bump();
                    let decoded = match escaped {
                        'n' => "\n".to_string(),
                        't' => "\t".to_string(),
                        'r' => "\r".to_string(),
                        '\\' | '\'' | '"' => escaped.to_string(),
                        other => format!("\\{other}"),
                    };
                    for c in decoded.chars() {
                        value.push(c);
                        chars.push(at);
                    }
                }
                Some(c) => {
                    self.bump();
                    value.push(c);
                    chars.push(at);
                }
            }
        }
    }
}
