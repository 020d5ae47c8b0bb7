//! keepalived.conf's syntax: statements of words, one per line, and blocks (`name args {`
//! … `}`); `#` and `!` start comments; double quotes keep a word's spaces. Braces may stand on a
//! line of their own or close a one-line block (`track_script { chk }`).

/// One statement or block, with the line it starts on.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Item {
    /// Its words (the block's name and arguments).
    pub words: Vec<String>,
    /// The line it starts on (1-based).
    pub line: usize,
    /// For a block, what it holds; `None` for a plain statement.
    pub children: Option<Vec<Item>>,
}

impl Item {
    /// The first word.
    #[must_use]
    pub fn name(&self) -> &str {
        self.words.first().map_or("", String::as_str)
    }

    /// The words after the first.
    #[must_use]
    pub fn args(&self) -> &[String] {
        self.words.get(1..).unwrap_or_default()
    }

    /// The block's items (none for a statement).
    #[must_use]
    pub fn items(&self) -> &[Item] {
        self.children.as_deref().unwrap_or_default()
    }
}

/// A syntax error: an unbalanced brace or quote.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
#[error("line {line}: {what}")]
pub struct SyntaxError {
    /// Where.
    pub line: usize,
    /// What.
    pub what: &'static str,
}

#[derive(Debug, PartialEq, Eq)]
enum Token {
    Word(String),
    Open,
    Close,
}

fn tokenize(text: &str) -> Result<Vec<(Token, usize)>, SyntaxError> {
    let mut tokens = Vec::new();
    for (index, line) in text.lines().enumerate() {
        let line_no = index + 1;
        let mut chars = line.chars().peekable();
        while let Some(&c) = chars.peek() {
            match c {
                '#' | '!' => break,
                '{' | '}' => {
                    chars.next();
                    tokens.push((if c == '{' { Token::Open } else { Token::Close }, line_no));
                }
                '"' => {
                    chars.next();
                    let word: String = chars.by_ref().take_while(|&c| c != '"').collect();
                    if !line.matches('"').count().is_multiple_of(2) {
                        return Err(SyntaxError { line: line_no, what: "a quote is not closed" });
                    }
                    tokens.push((Token::Word(word), line_no));
                }
                c if c.is_whitespace() => {
                    chars.next();
                }
                _ => {
                    let mut word = String::new();
                    while let Some(&c) = chars.peek() {
                        if c.is_whitespace() || matches!(c, '{' | '}' | '"') {
                            break;
                        }
                        word.push(c);
                        chars.next();
                    }
                    tokens.push((Token::Word(word), line_no));
                }
            }
        }
    }
    Ok(tokens)
}

/// Parses a whole file into its top-level items.
pub fn parse(text: &str) -> Result<Vec<Item>, SyntaxError> {
    let tokens = tokenize(text)?;
    let mut position = 0;
    let items = parse_items(&tokens, &mut position, 0)?;
    match tokens.get(position) {
        Some((_, line)) => Err(SyntaxError { line: *line, what: "a closing brace without an opening one" }),
        None => Ok(items),
    }
}

fn parse_items(
    tokens: &[(Token, usize)],
    position: &mut usize,
    depth: usize,
) -> Result<Vec<Item>, SyntaxError> {
    let mut items = Vec::new();
    while let Some((token, line)) = tokens.get(*position) {
        match token {
            Token::Close if depth > 0 => {
                *position += 1;
                return Ok(items);
            }
            Token::Close => return Ok(items),
            Token::Open => {
                // A brace with no name before it: a block of its own (rare, but keepalived
                // takes it); keep its items.
                *position += 1;
                let children = parse_items(tokens, position, depth + 1)?;
                items.push(Item { words: Vec::new(), line: *line, children: Some(children) });
            }
            Token::Word(_) => {
                let mut words = Vec::new();
                while let Some((Token::Word(word), word_line)) = tokens.get(*position) {
                    if *word_line != *line {
                        break;
                    }
                    words.push(word.clone());
                    *position += 1;
                }
                let children = if matches!(tokens.get(*position), Some((Token::Open, _))) {
                    *position += 1;
                    Some(parse_items(tokens, position, depth + 1)?)
                } else {
                    None
                };
                items.push(Item { words, line: *line, children });
            }
        }
    }
    if depth > 0 {
        let line = tokens.last().map_or(1, |(_, line)| *line);
        return Err(SyntaxError { line, what: "a block is not closed" });
    }
    Ok(items)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn blocks_statements_comments_and_quotes() {
        let text = "# a comment\nvrrp_script chk {\n  script \"killall -0 haproxy\"  ! why\n  interval 2\n}\n\
                    vrrp_instance VI_1 {\n  track_script { chk }\n  virtual_ipaddress {\n    192.0.2.1/24 dev eth0\n  }\n}\n";
        let items = parse(text).unwrap();
        assert_eq!(items.len(), 2);
        assert_eq!(
            (items[0].name(), items[0].args(), items[0].line),
            ("vrrp_script", &["chk".to_string()][..], 2)
        );
        assert_eq!(items[0].items()[0].words, ["script", "killall -0 haproxy"]);
        let instance = &items[1];
        assert_eq!(instance.items()[0].items()[0].words, ["chk"], "a one-line block");
        assert_eq!(instance.items()[1].items()[0].words, ["192.0.2.1/24", "dev", "eth0"]);
        assert_eq!(instance.items()[1].items()[0].line, 9);
    }

    #[test]
    fn unbalanced_input_is_one_error_with_its_line() {
        assert_eq!(parse("a {\n b\n").unwrap_err().what, "a block is not closed");
        assert_eq!(
            parse("a\n}\n").unwrap_err(),
            SyntaxError { line: 2, what: "a closing brace without an opening one" }
        );
        assert_eq!(parse("script \"x\n").unwrap_err().line, 1);
    }
}
