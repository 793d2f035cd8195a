//! `calculator`: evaluates arithmetic, and nothing else.
//!
//! A small recursive-descent parser over `f64`, written here rather than taken from an
//! expression crate: the general-purpose ones evaluate variables, assignments, strings or
//! user functions, and we want a grammar a model cannot turn into anything but arithmetic,
//! with error messages that point at the exact character. It never executes code, never
//! allocates in proportion to anything but the input, and bounds input length and nesting.

use agent_core::{ToolContext, ToolError, ToolMeta, ToolOutput, TypedTool, async_trait};
use schemars::JsonSchema;
use serde::Deserialize;

/// The longest expression accepted, in bytes.
pub const MAX_EXPRESSION_LEN: usize = 1000;
/// The deepest nesting of parentheses, functions and unary signs accepted.
const MAX_DEPTH: usize = 64;

/// Arguments of the calculator tool.
#[derive(Debug, Deserialize, JsonSchema)]
pub struct CalculatorArgs {
    /// The arithmetic expression, e.g. "12.5% of 3280 + sqrt(1764)" or "(2 + 3) * 4^2".
    pub expression: String,
}

/// The `calculator` tool: read-only, parallel-safe.
///
/// ```
/// use agent_tools::calculator::evaluate;
/// assert_eq!(evaluate("12.5% of 3,280 + sqrt(1764)").unwrap(), 452.0);
/// assert_eq!(evaluate("2^3^2").unwrap(), 512.0);
/// let err = evaluate("2 + * 3").unwrap_err();
/// assert_eq!(err.position, 5);
/// ```
#[derive(Clone, Copy, Debug, Default)]
pub struct Calculator;

impl Calculator {
    /// The calculator.
    pub fn new() -> Self {
        Calculator
    }
}

#[async_trait]
impl TypedTool for Calculator {
    type Args = CalculatorArgs;

    fn name(&self) -> &str {
        "calculator"
    }

    fn description(&self) -> &str {
        "Evaluates an arithmetic expression and returns the number. Use it for every \
         calculation instead of computing in your head. Supports + - * / ^ (power), \
         parentheses, percentages (`12.5% of 3280`, `20%` = 0.2; `%` between two numbers is \
         the remainder), sqrt, cbrt, abs, exp, ln, log (base 10), log2, sin, cos, tan, asin, \
         acos, atan (radians), floor, ceil, round, and the constants pi and e. Thousands \
         separators such as 3,280 are accepted, and so are operators in words (plus, minus, \
         times, divided by, to the power of, squared, cubed, square root of, cube root of)."
    }

    fn meta(&self) -> ToolMeta {
        ToolMeta::read_only()
    }

    fn examples(&self) -> Vec<agent_core::ToolExample> {
        use agent_core::ToolExample;
        use serde_json::json;
        // A small model copies far better than it translates: the arithmetic of a question
        // goes in as the question's own words (the parser reads them); only a word problem
        // needs its numbers put into one expression.
        // The last three are the ones shown beside other tools (see the local backend's
        // protocol), so they are the most general.
        vec![
            ToolExample::new(
                "What is the square root of 196, plus 6?",
                json!({"expression": "the square root of 196, plus 6"}),
            )
            .with_outcome("20", "The result is 20."),
            ToolExample::new(
                "What is the cube root of 343, times 5?",
                json!({"expression": "the cube root of 343, times 5"}),
            )
            .with_outcome("35", "The result is 35."),
            ToolExample::new(
                "What is 6 squared plus 4 cubed?",
                json!({"expression": "6 squared plus 4 cubed"}),
            )
            .with_outcome("100", "The result is 100."),
            ToolExample::new(
                "A ticket costs 9 euros. How much do 6 tickets cost with a 4 euro discount?",
                json!({"expression": "9 * 6 - 4"}),
            )
            .with_outcome("50", "They cost 50 euros."),
            ToolExample::new(
                "I had 120 euros and spent 45 euros and 30 euros. How much is left?",
                json!({"expression": "120 - 45 - 30"}),
            )
            .with_outcome("45", "45 euros are left."),
            ToolExample::new(
                "3 kg of rice cost 6 euros. How much do 10 kg cost?",
                json!({"expression": "6 / 3 * 10"}),
            )
            .with_outcome("20", "They cost 20 euros."),
            ToolExample::new(
                "A car drives at 60 km per hour for 2.5 hours. How far does it go?",
                json!({"expression": "60 * 2.5"}),
            )
            .with_outcome("150", "It goes 150 km."),
            ToolExample::new(
                "How much is 15% of 80, plus 7?",
                json!({"expression": "15% of 80, plus 7"}),
            )
            .with_outcome("19", "The result is 19."),
            ToolExample::new(
                "What is 3 to the power of 4, minus the square root of 81?",
                json!({"expression": "3 to the power of 4, minus the square root of 81"}),
            )
            .with_outcome("72", "The result is 72."),
        ]
    }

    async fn call(
        &self,
        args: CalculatorArgs,
        _ctx: &ToolContext,
    ) -> Result<ToolOutput, ToolError> {
        match evaluate(&args.expression) {
            Ok(value) => Ok(ToolOutput::Text(format_number(value))),
            Err(e) => Err(ToolError::invalid_arguments(e.to_string())),
        }
    }
}

/// Why an expression could not be evaluated, and where (1-based character position; 0 when
/// the problem is the expression as a whole).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct CalcError {
    /// 1-based character position of the problem.
    pub position: usize,
    /// What is wrong.
    pub message: String,
}

impl std::fmt::Display for CalcError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        if self.position == 0 {
            f.write_str(&self.message)
        } else {
            write!(f, "at character {}: {}", self.position, self.message)
        }
    }
}

impl std::error::Error for CalcError {}

/// Evaluates an expression.
pub fn evaluate(expression: &str) -> Result<f64, CalcError> {
    if expression.len() > MAX_EXPRESSION_LEN {
        return Err(CalcError {
            position: 0,
            message: format!("the expression is longer than {MAX_EXPRESSION_LEN} characters"),
        });
    }
    let tokens = operator_words(lex(expression)?);
    if tokens.is_empty() {
        return Err(CalcError {
            position: 0,
            message: "the expression is empty".into(),
        });
    }
    let mut parser = Parser {
        tokens: &tokens,
        pos: 0,
        depth: 0,
        end: expression.chars().count() + 1,
    };
    let value = parser.expr()?;
    if let Some(tok) = parser.peek() {
        return Err(CalcError {
            position: tok.pos,
            message: format!(
                "unexpected {} after a complete expression",
                tok.kind.describe()
            ),
        });
    }
    if !value.is_finite() {
        return Err(CalcError {
            position: 0,
            message: "the result is not a finite number (overflow)".into(),
        });
    }
    // Avoid printing "-0".
    Ok(if value == 0.0 { 0.0 } else { value })
}

/// Formats a result: integers without a decimal point, others with up to 12 significant
/// digits and no trailing zeros.
pub fn format_number(value: f64) -> String {
    if value.fract() == 0.0 && value.abs() < 1e15 {
        return format!("{value:.0}");
    }
    let magnitude = value.abs().log10().floor() as i32;
    if !(-6..15).contains(&magnitude) {
        return format!("{value:e}");
    }
    let decimals = (11 - magnitude).clamp(0, 17) as usize;
    let s = format!("{value:.decimals$}");
    let s = s.trim_end_matches('0').trim_end_matches('.');
    s.to_owned()
}

#[derive(Clone, Debug, PartialEq)]
enum Kind {
    Number(f64),
    Ident(String),
    Plus,
    Minus,
    Star,
    Slash,
    Caret,
    Percent,
    LParen,
    RParen,
}

impl Kind {
    fn describe(&self) -> String {
        match self {
            Kind::Number(n) => format!("number {}", format_number(*n)),
            Kind::Ident(s) => format!("`{s}`"),
            Kind::Plus => "`+`".into(),
            Kind::Minus => "`-`".into(),
            Kind::Star => "`*`".into(),
            Kind::Slash => "`/`".into(),
            Kind::Caret => "`^`".into(),
            Kind::Percent => "`%`".into(),
            Kind::LParen => "`(`".into(),
            Kind::RParen => "`)`".into(),
        }
    }
}

#[derive(Clone, Debug)]
struct Token {
    kind: Kind,
    /// 1-based character position.
    pos: usize,
}

fn lex(input: &str) -> Result<Vec<Token>, CalcError> {
    let chars: Vec<char> = input.chars().collect();
    let mut tokens = Vec::new();
    let mut i = 0;
    while i < chars.len() {
        let c = chars[i];
        let pos = i + 1;
        let simple = match c {
            '+' => Some(Kind::Plus),
            '-' | '−' => Some(Kind::Minus),
            '*' | '×' => Some(Kind::Star),
            '/' | '÷' => Some(Kind::Slash),
            '^' => Some(Kind::Caret),
            '%' => Some(Kind::Percent),
            '(' => Some(Kind::LParen),
            ')' => Some(Kind::RParen),
            _ => None,
        };
        if let Some(kind) = simple {
            // `**` is a common spelling of power.
            if kind == Kind::Star && chars.get(i + 1) == Some(&'*') {
                tokens.push(Token {
                    kind: Kind::Caret,
                    pos,
                });
                i += 2;
                continue;
            }
            tokens.push(Token { kind, pos });
            i += 1;
            continue;
        }
        // A comma that is not a thousands separator separates phrases, as in "1,000
        // divided by 8, plus 19": it is read like a space.
        let phrase_comma = c == ',' && chars.get(i + 1).is_none_or(|n| n.is_whitespace());
        if c.is_whitespace() || phrase_comma {
            i += 1;
            continue;
        }
        if c.is_ascii_digit() || c == '.' {
            let (value, next) = lex_number(&chars, i)?;
            tokens.push(Token {
                kind: Kind::Number(value),
                pos,
            });
            i = next;
            continue;
        }
        if c.is_alphabetic() || c == '√' || c == 'π' {
            if c == '√' {
                tokens.push(Token {
                    kind: Kind::Ident("sqrt".into()),
                    pos,
                });
                i += 1;
                continue;
            }
            let start = i;
            while i < chars.len()
                && (chars[i].is_alphanumeric() || chars[i] == '_' || chars[i] == 'π')
            {
                i += 1;
            }
            let word: String = chars[start..i].iter().collect::<String>().to_lowercase();
            tokens.push(Token {
                kind: Kind::Ident(word),
                pos,
            });
            continue;
        }
        return Err(CalcError {
            position: pos,
            message: format!(
                "`{c}` is not allowed; use numbers, + - * / ^ %, parentheses and functions like sqrt"
            ),
        });
    }
    Ok(tokens)
}

/// Operators written as words, as people (and small models) write them: `plus`, `minus`,
/// `times`, `multiplied by`, `divided by`, `to the power of`, `squared`, `cubed`,
/// `square root of`, `cube root of`.
fn operator_words(tokens: Vec<Token>) -> Vec<Token> {
    let word = |i: usize| match tokens.get(i).map(|t| &t.kind) {
        Some(Kind::Ident(w)) => w.as_str(),
        _ => "",
    };
    let mut out = Vec::with_capacity(tokens.len());
    let mut i = 0;
    while i < tokens.len() {
        let pos = tokens[i].pos;
        let (kinds, used): (Vec<Kind>, usize) = match word(i) {
            "the" => (Vec::new(), 1),
            "plus" => (vec![Kind::Plus], 1),
            "minus" => (vec![Kind::Minus], 1),
            "times" => (vec![Kind::Star], 1),
            "multiplied" | "divided" => {
                let op = if word(i) == "divided" {
                    Kind::Slash
                } else {
                    Kind::Star
                };
                (vec![op], if word(i + 1) == "by" { 2 } else { 1 })
            }
            "squared" => (vec![Kind::Caret, Kind::Number(2.0)], 1),
            "cubed" => (vec![Kind::Caret, Kind::Number(3.0)], 1),
            "raised" if word(i + 1) == "to" => (Vec::new(), 1),
            "to" if word(i + 1) == "the" && word(i + 2) == "power" => {
                (vec![Kind::Caret], if word(i + 3) == "of" { 4 } else { 3 })
            }
            w @ ("square" | "cube") if word(i + 1) == "root" => {
                let f = if w == "square" { "sqrt" } else { "cbrt" };
                (
                    vec![Kind::Ident(f.into())],
                    if word(i + 2) == "of" { 3 } else { 2 },
                )
            }
            _ => {
                out.push(tokens[i].clone());
                i += 1;
                continue;
            }
        };
        out.extend(kinds.into_iter().map(|kind| Token { kind, pos }));
        i += used;
    }
    out
}

/// Reads a number: digits with optional `,` or `_` thousands grouping (a comma must be
/// followed by exactly three digits), an optional fraction and exponent.
fn lex_number(chars: &[char], start: usize) -> Result<(f64, usize), CalcError> {
    let mut text = String::new();
    let mut i = start;
    let digit = |i: usize| chars.get(i).is_some_and(char::is_ascii_digit);
    while i < chars.len() {
        let c = chars[i];
        if c.is_ascii_digit() {
            text.push(c);
            i += 1;
        } else if (c == ',' || c == '_')
            && !text.contains('.')
            && !text.is_empty()
            && digit(i + 1)
            && digit(i + 2)
            && digit(i + 3)
            && !digit(i + 4)
        {
            i += 1;
        } else {
            break;
        }
    }
    if chars.get(i) == Some(&'.') {
        text.push('.');
        i += 1;
        while digit(i) {
            text.push(chars[i]);
            i += 1;
        }
    }
    if matches!(chars.get(i), Some('e' | 'E'))
        && (digit(i + 1) || (matches!(chars.get(i + 1), Some('+' | '-')) && digit(i + 2)))
    {
        text.push('e');
        i += 1;
        if let Some(sign @ ('+' | '-')) = chars.get(i) {
            text.push(*sign);
            i += 1;
        }
        while digit(i) {
            text.push(chars[i]);
            i += 1;
        }
    }
    text.parse::<f64>().map(|v| (v, i)).map_err(|_| CalcError {
        position: start + 1,
        message: format!("`{text}` is not a number"),
    })
}

struct Parser<'a> {
    tokens: &'a [Token],
    pos: usize,
    depth: usize,
    /// Position reported for "unexpected end".
    end: usize,
}

impl Parser<'_> {
    fn peek(&self) -> Option<&Token> {
        self.tokens.get(self.pos)
    }

    fn peek_kind(&self) -> Option<&Kind> {
        self.peek().map(|t| &t.kind)
    }

    fn next(&mut self) -> Option<&Token> {
        let t = self.tokens.get(self.pos);
        self.pos += 1;
        t
    }

    fn enter(&mut self, pos: usize) -> Result<(), CalcError> {
        self.depth += 1;
        if self.depth > MAX_DEPTH {
            return Err(CalcError {
                position: pos,
                message: format!("the expression is nested more than {MAX_DEPTH} levels deep"),
            });
        }
        Ok(())
    }

    fn expr(&mut self) -> Result<f64, CalcError> {
        let mut value = self.term()?;
        while let Some(kind @ (Kind::Plus | Kind::Minus)) = self.peek_kind().cloned() {
            self.pos += 1;
            let rhs = self.term()?;
            value = if kind == Kind::Plus {
                value + rhs
            } else {
                value - rhs
            };
        }
        Ok(value)
    }

    fn term(&mut self) -> Result<f64, CalcError> {
        let mut value = self.unary()?;
        while let Some(tok) = self.peek().cloned() {
            match tok.kind {
                Kind::Star => {
                    self.pos += 1;
                    value *= self.unary()?;
                }
                Kind::Slash => {
                    self.pos += 1;
                    let rhs = self.unary()?;
                    if rhs == 0.0 {
                        return Err(CalcError {
                            position: tok.pos,
                            message: "division by zero".into(),
                        });
                    }
                    value /= rhs;
                }
                Kind::Percent => {
                    // Remainder; a postfix percent was already taken by `postfix`.
                    self.pos += 1;
                    let rhs = self.unary()?;
                    if rhs == 0.0 {
                        return Err(CalcError {
                            position: tok.pos,
                            message: "remainder by zero".into(),
                        });
                    }
                    value %= rhs;
                }
                _ => break,
            }
        }
        Ok(value)
    }

    fn unary(&mut self) -> Result<f64, CalcError> {
        match self.peek().cloned() {
            Some(Token {
                kind: Kind::Minus,
                pos,
            }) => {
                self.pos += 1;
                self.enter(pos)?;
                let v = -self.unary()?;
                self.depth -= 1;
                Ok(v)
            }
            Some(Token {
                kind: Kind::Plus,
                pos,
            }) => {
                self.pos += 1;
                self.enter(pos)?;
                let v = self.unary()?;
                self.depth -= 1;
                Ok(v)
            }
            _ => self.power(),
        }
    }

    fn power(&mut self) -> Result<f64, CalcError> {
        let base = self.postfix()?;
        if let Some(Token {
            kind: Kind::Caret,
            pos,
        }) = self.peek().cloned()
        {
            self.pos += 1;
            self.enter(pos)?;
            // Right-associative, and binds tighter than a unary minus on its left:
            // -2^2 = -4, 2^-1 = 0.5.
            let exponent = self.unary()?;
            self.depth -= 1;
            let v = base.powf(exponent);
            if v.is_nan() {
                return Err(CalcError {
                    position: pos,
                    message: format!(
                        "{} ^ {} is not a real number",
                        format_number(base),
                        format_number(exponent)
                    ),
                });
            }
            return Ok(v);
        }
        Ok(base)
    }

    /// A primary, then an optional percent sign: `x%` is x/100, `x% of y` is x/100*y.
    fn postfix(&mut self) -> Result<f64, CalcError> {
        let value = self.primary()?;
        if self.peek_kind() != Some(&Kind::Percent) {
            return Ok(value);
        }
        match self.tokens.get(self.pos + 1).map(|t| &t.kind) {
            Some(Kind::Ident(w)) if w == "of" => {
                self.pos += 2;
                let of = self.unary()?;
                Ok(value / 100.0 * of)
            }
            // Followed by an operand: this `%` is the remainder operator.
            Some(Kind::Number(_) | Kind::LParen | Kind::Ident(_)) => Ok(value),
            _ => {
                self.pos += 1;
                Ok(value / 100.0)
            }
        }
    }

    fn primary(&mut self) -> Result<f64, CalcError> {
        let end = self.end;
        let Some(tok) = self.next().cloned() else {
            return Err(CalcError {
                position: end,
                message: "the expression ends where a number was expected".into(),
            });
        };
        match tok.kind {
            Kind::Number(n) => Ok(n),
            Kind::LParen => {
                self.enter(tok.pos)?;
                let v = self.expr()?;
                self.depth -= 1;
                self.expect_rparen(tok.pos)?;
                Ok(v)
            }
            Kind::Ident(name) => self.ident(&name, tok.pos),
            other => Err(CalcError {
                position: tok.pos,
                message: format!(
                    "unexpected {} where a number was expected",
                    other.describe()
                ),
            }),
        }
    }

    fn expect_rparen(&mut self, open: usize) -> Result<(), CalcError> {
        match self.next().cloned() {
            Some(Token {
                kind: Kind::RParen, ..
            }) => Ok(()),
            Some(t) => Err(CalcError {
                position: t.pos,
                message: format!(
                    "expected `)` to close the `(` at character {open}, found {}",
                    t.kind.describe()
                ),
            }),
            None => Err(CalcError {
                position: self.end,
                message: format!("the `(` at character {open} is never closed"),
            }),
        }
    }

    fn ident(&mut self, name: &str, pos: usize) -> Result<f64, CalcError> {
        match name {
            "pi" | "π" => return Ok(std::f64::consts::PI),
            "e" => return Ok(std::f64::consts::E),
            "tau" => return Ok(std::f64::consts::TAU),
            _ => {}
        }
        let f: fn(f64) -> f64 = match name {
            "sqrt" => f64::sqrt,
            "cbrt" => f64::cbrt,
            "abs" => f64::abs,
            "exp" => f64::exp,
            "ln" => f64::ln,
            "log" | "log10" => f64::log10,
            "log2" => f64::log2,
            "sin" => f64::sin,
            "cos" => f64::cos,
            "tan" => f64::tan,
            "asin" => f64::asin,
            "acos" => f64::acos,
            "atan" => f64::atan,
            "sinh" => f64::sinh,
            "cosh" => f64::cosh,
            "tanh" => f64::tanh,
            "floor" => f64::floor,
            "ceil" => f64::ceil,
            "round" => f64::round,
            _ => {
                return Err(CalcError {
                    position: pos,
                    message: format!(
                        "unknown name `{name}`; known functions: sqrt, cbrt, abs, exp, ln, log, \
                         log2, sin, cos, tan, asin, acos, atan, sinh, cosh, tanh, floor, ceil, \
                         round; constants: pi, e, tau"
                    ),
                });
            }
        };
        // `sqrt 16` and `sqrt(16)` both work; the argument binds like a unary operand.
        self.enter(pos)?;
        let arg = if self.peek_kind() == Some(&Kind::LParen) {
            let open = self.next().map_or(pos, |t| t.pos);
            let v = self.expr()?;
            self.expect_rparen(open)?;
            v
        } else {
            self.power()?
        };
        self.depth -= 1;
        let v = f(arg);
        if v.is_nan() {
            return Err(CalcError {
                position: pos,
                message: format!("{name}({}) is not a real number", format_number(arg)),
            });
        }
        Ok(v)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn eval(s: &str) -> f64 {
        evaluate(s).unwrap_or_else(|e| panic!("{s}: {e}"))
    }

    #[test]
    fn operators_written_as_words() {
        assert_eq!(eval("7 to the power of 3"), 343.0);
        assert_eq!(eval("2 raised to the power of 10 minus 24"), 1000.0);
        assert_eq!(eval("9 squared - 17"), 64.0);
        assert_eq!(eval("5 cubed plus 2 cubed"), 133.0);
        assert_eq!(eval("cube root of 512"), 8.0);
        assert_eq!(eval("square root of 2,025 times 2"), 90.0);
        assert_eq!(eval("1000 divided by 8 plus 19"), 144.0);
        assert_eq!(eval("3 multiplied by 4"), 12.0);
        // Copied from a question, commas and all.
        assert_eq!(eval("1,000 divided by 8, plus 19"), 144.0);
        assert_eq!(eval("the square root of 169, times 4"), 52.0);
        assert_eq!(eval("40% of 75, plus the square root of 81"), 39.0);
        // Words that are not operators are still refused, with their position.
        assert_eq!(evaluate("3 apples").unwrap_err().position, 3);
    }

    #[test]
    fn precedence_and_associativity() {
        assert_eq!(eval("2 + 3 * 4"), 14.0);
        assert_eq!(eval("(2 + 3) * 4"), 20.0);
        assert_eq!(eval("2 ^ 3 ^ 2"), 512.0);
        assert_eq!(eval("-2 ^ 2"), -4.0);
        assert_eq!(eval("2 ^ -1"), 0.5);
        assert_eq!(eval("10 - 4 - 3"), 3.0);
        assert_eq!(eval("100 / 10 / 5"), 2.0);
        assert_eq!(eval("2 ** 10"), 1024.0);
        assert_eq!(eval("--3"), 3.0);
    }

    #[test]
    fn percentages_and_remainder() {
        assert_eq!(eval("12.5% of 3280"), 410.0);
        assert_eq!(eval("12.5% of 3,280 + sqrt(1,764)"), 452.0);
        assert_eq!(eval("20%"), 0.2);
        assert_eq!(eval("50% * 8"), 4.0);
        assert_eq!(eval("10 % 3"), 1.0);
        assert_eq!(eval("10 % (4)"), 2.0);
    }

    #[test]
    fn functions_and_constants() {
        assert_eq!(eval("sqrt(1764)"), 42.0);
        assert_eq!(eval("sqrt 16 + 1"), 5.0);
        assert_eq!(eval("√9"), 3.0);
        assert!((eval("sin(pi / 2)") - 1.0).abs() < 1e-12);
        assert!((eval("ln(e)") - 1.0).abs() < 1e-12);
        assert_eq!(eval("log(1000)"), 3.0);
        assert_eq!(eval("log2(8)"), 3.0);
        assert_eq!(
            eval("round(2.5) + floor(-1.5) + ceil(0.1) + abs(-3)"),
            3.0 - 2.0 + 1.0 + 3.0
        );
        assert_eq!(eval("1.5e3 + 2E-1"), 1500.2);
    }

    #[test]
    fn thousands_separators_need_three_digit_groups() {
        assert_eq!(eval("1,000,000 / 1_000"), 1000.0);
        let e = evaluate("1,00").unwrap_err();
        assert_eq!(e.position, 2);
    }

    #[test]
    fn errors_point_at_the_character() {
        let e = evaluate("2 + * 3").unwrap_err();
        assert_eq!(e.position, 5);
        assert!(e.message.contains("`*`"));
        let e = evaluate("(1 + 2").unwrap_err();
        assert!(e.message.contains("never closed"), "{e}");
        let e = evaluate("1 / (2 - 2)").unwrap_err();
        assert_eq!((e.position, e.message.as_str()), (3, "division by zero"));
        let e = evaluate("sqrt(-1)").unwrap_err();
        assert!(e.message.contains("not a real number"));
        let e = evaluate("foo(2)").unwrap_err();
        assert_eq!(e.position, 1);
        assert!(e.message.contains("unknown name `foo`"));
        let e = evaluate("2 3").unwrap_err();
        assert_eq!(e.position, 3);
    }

    #[test]
    fn code_and_strange_input_are_refused() {
        for s in [
            "",
            "   ",
            "__import__('os')",
            "system(\"rm -rf /\")",
            "x = 3",
            "1; 2",
            "`ls`",
            "$(whoami)",
            "10 ** 400",
            "1e308 * 10",
        ] {
            assert!(evaluate(s).is_err(), "{s:?} should be refused");
        }
    }

    #[test]
    fn deep_nesting_and_long_input_are_refused_without_overflowing_the_stack() {
        let deep = format!("{}1{}", "(".repeat(10_000), ")".repeat(10_000));
        assert!(evaluate(&deep).is_err());
        let minus = format!("{}1", "-".repeat(900));
        assert!(evaluate(&minus).is_err());
        assert!(evaluate(&"1+".repeat(600)).is_err());
    }

    #[test]
    fn numbers_are_formatted_for_reading() {
        assert_eq!(format_number(452.0), "452");
        assert_eq!(format_number(0.1 + 0.2), "0.3");
        assert_eq!(format_number(1.0 / 3.0), "0.333333333333");
        assert_eq!(format_number(-2.5), "-2.5");
        assert_eq!(format_number(1e20), "1e20");
    }
}
