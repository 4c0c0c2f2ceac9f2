//! The fast path for JSON values after `json`: checked, not built (the AST keeps their text).

use super::Fast;

impl Fast<'_> {
    /// The extent of a `json_value` as the grammar reads it (blanks and comments between tokens).
    pub(super) fn json_value(&mut self) -> Option<()> {
        match self.peek()? {
            b'{' => {
                self.punct(b'{')?;
                if !self.eat(b'}') {
                    loop {
                        self.json_string()?;
                        self.punct(b':')?;
                        self.json_value()?;
                        if !self.eat(b',') {
                            break;
                        }
                    }
                    self.punct(b'}')?;
                }
            }
            b'[' => {
                self.punct(b'[')?;
                if !self.eat(b']') {
                    loop {
                        self.json_value()?;
                        if !self.eat(b',') {
                            break;
                        }
                    }
                    self.punct(b']')?;
                }
            }
            b'"' => self.json_string()?,
            b'-' | b'0'..=b'9' => self.json_number()?,
            _ => match self.word()? {
                "true" | "false" | "null" => self.bump_word(),
                _ => return None,
            },
        }
        Some(())
    }

    fn json_string(&mut self) -> Option<()> {
        if self.peek()? != b'"' {
            return None;
        }
        let mut i = self.pos + 1;
        loop {
            match *self.b.get(i)? {
                b'"' => break,
                b'\n' => return None,
                b'\\' => i += 2,
                _ => i += 1,
            }
        }
        self.pos = i + 1;
        self.end = self.pos;
        Some(())
    }

    fn json_number(&mut self) -> Option<()> {
        let b = self.b;
        let digits = |i: usize| {
            b[i.min(b.len())..]
                .iter()
                .take_while(|c| c.is_ascii_digit())
                .count()
        };
        let mut i = self.pos;
        if b.get(i) == Some(&b'-') {
            i += 1;
        }
        let n = digits(i);
        if n == 0 {
            return None;
        }
        i += n;
        if b.get(i) == Some(&b'.') && digits(i + 1) > 0 {
            i += 1 + digits(i + 1);
        }
        if matches!(b.get(i), Some(b'e' | b'E')) {
            let sign = usize::from(matches!(b.get(i + 1), Some(b'+' | b'-')));
            let n = digits(i + 1 + sign);
            if n > 0 {
                i += 1 + sign + n;
            }
        }
        self.pos = i;
        self.end = i;
        Some(())
    }
}
