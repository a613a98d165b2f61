//! Compose's value syntaxes: durations ("1m30s"), byte sizes ("1.5G"),
//! command strings split the way a shell would, and `$` interpolation.

const MIB: f64 = 1024.0 * 1024.0;

/// "30s", "1m30s", "500ms", "1h", "1.5s", "0" -> milliseconds (rounded up
/// so that a sub-millisecond value never becomes "not set").
pub fn duration_ms(text: &str) -> Result<u32, String> {
    let s = text.trim();
    if s == "0" {
        return Ok(0);
    }
    let bad = || format!("'{text}' is not a duration (write e.g. 30s, 1m30s, 500ms)");
    let mut rest = s;
    let mut total_ms = 0.0f64;
    if rest.is_empty() {
        return Err(bad());
    }
    while !rest.is_empty() {
        let number_len = rest
            .find(|c: char| !(c.is_ascii_digit() || c == '.'))
            .unwrap_or(rest.len());
        let (number, after) = rest.split_at(number_len);
        let value: f64 = number.parse().map_err(|_| bad())?;
        let unit_len = after
            .find(|c: char| c.is_ascii_digit() || c == '.')
            .unwrap_or(after.len());
        let (unit, next) = after.split_at(unit_len);
        let scale = match unit {
            "ns" => 1e-6,
            "us" | "µs" => 1e-3,
            "ms" => 1.0,
            "s" => 1e3,
            "m" => 60e3,
            "h" => 3600e3,
            _ => return Err(bad()),
        };
        total_ms += value * scale;
        rest = next;
    }
    let ms = total_ms.ceil();
    if ms > f64::from(u32::MAX) {
        return Err(format!("'{text}' is too long (at most about 49 days)"));
    }
    Ok(ms as u32)
}

/// Compose byte values: an integer (bytes) or "512m", "2g", "1.5G", "1gb",
/// "100k", "1024b" (binary units) -> MiB, rounded up.
pub fn size_mib(text: &str) -> Result<u64, String> {
    let s = text.trim().to_ascii_lowercase();
    let bad = || format!("'{text}' is not a size (write e.g. 512m, 2g, 1.5g)");
    let number_len = s
        .find(|c: char| !(c.is_ascii_digit() || c == '.'))
        .unwrap_or(s.len());
    let (number, unit) = s.split_at(number_len);
    let value: f64 = number.parse().map_err(|_| bad())?;
    let scale = match unit.trim() {
        "" | "b" => 1.0,
        "k" | "kb" | "kib" => 1024.0,
        "m" | "mb" | "mib" => MIB,
        "g" | "gb" | "gib" => MIB * 1024.0,
        "t" | "tb" | "tib" => MIB * 1024.0 * 1024.0,
        _ => return Err(bad()),
    };
    let mib = (value * scale / MIB).ceil();
    if !mib.is_finite() || mib > 1e15 {
        return Err(bad());
    }
    Ok(mib as u64)
}

/// How a command string becomes an argument list.
#[derive(Debug, PartialEq, Eq)]
pub enum Split {
    /// Plain words, quotes honoured: run as is.
    Words(Vec<String>),
    /// Pipes, redirections, `&&`, variables, globs...: needs a shell.
    NeedsShell,
    /// An unterminated quote or a trailing backslash.
    Unbalanced,
}

/// Splits `text` as a POSIX shell would split simple words, or says that
/// it needs a shell to mean what it says. Inside double quotes `$` stays
/// literal, as compose (which splits but never runs a shell) passes it.
pub fn split_command(text: &str) -> Split {
    let mut words = Vec::new();
    let mut word = String::new();
    let mut in_word = false;
    let mut chars = text.chars().peekable();
    while let Some(c) = chars.next() {
        match c {
            ' ' | '\t' => {
                if in_word {
                    words.push(std::mem::take(&mut word));
                    in_word = false;
                }
            }
            '\'' => {
                in_word = true;
                loop {
                    match chars.next() {
                        Some('\'') => break,
                        Some(ch) => word.push(ch),
                        None => return Split::Unbalanced,
                    }
                }
            }
            '"' => {
                in_word = true;
                loop {
                    match chars.next() {
                        Some('"') => break,
                        Some('\\') => match chars.next() {
                            Some(ch @ ('"' | '\\' | '$' | '`')) => word.push(ch),
                            Some('\n') => {}
                            Some(ch) => {
                                word.push('\\');
                                word.push(ch);
                            }
                            None => return Split::Unbalanced,
                        },
                        Some(ch) => word.push(ch),
                        None => return Split::Unbalanced,
                    }
                }
            }
            '\\' => match chars.next() {
                Some('\n') => {}
                Some(ch) => {
                    in_word = true;
                    word.push(ch);
                }
                None => return Split::Unbalanced,
            },
            '|' | '&' | ';' | '<' | '>' | '(' | ')' | '`' | '$' | '*' | '?' | '[' | '\n' => {
                return Split::NeedsShell
            }
            '#' | '~' if !in_word => return Split::NeedsShell,
            ch => {
                in_word = true;
                word.push(ch);
            }
        }
    }
    if in_word {
        words.push(word);
    }
    Split::Words(words)
}

/// Compose's `$$` escape becomes `$`; says whether `${VAR}` or `$VAR`
/// interpolation is left in the text (the mesh does not substitute it).
pub fn unescape_dollars(text: &str) -> (String, bool) {
    let mut out = String::with_capacity(text.len());
    let mut interpolates = false;
    let mut chars = text.chars().peekable();
    while let Some(c) = chars.next() {
        if c != '$' {
            out.push(c);
            continue;
        }
        match chars.peek() {
            Some('$') => {
                chars.next();
                out.push('$');
            }
            Some(n) if *n == '{' || *n == '_' || n.is_ascii_alphabetic() => {
                interpolates = true;
                out.push('$');
            }
            _ => out.push('$'),
        }
    }
    (out, interpolates)
}

/// A name the mesh accepts for groups, services and containers: 1-63 of
/// a-z, 0-9 and '-', not starting or ending with '-'.
pub fn mesh_name(text: &str) -> String {
    let mut out = String::new();
    for c in text.chars() {
        let c = c.to_ascii_lowercase();
        if c.is_ascii_lowercase() || c.is_ascii_digit() {
            out.push(c);
        } else if !out.ends_with('-') {
            out.push('-');
        }
    }
    let trimmed: String = out.trim_matches('-').chars().take(63).collect();
    trimmed.trim_end_matches('-').to_string()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn durations() {
        assert_eq!(duration_ms("30s"), Ok(30_000));
        assert_eq!(duration_ms("1m30s"), Ok(90_000));
        assert_eq!(duration_ms("500ms"), Ok(500));
        assert_eq!(duration_ms("1h"), Ok(3_600_000));
        assert_eq!(duration_ms("1.5s"), Ok(1_500));
        assert_eq!(duration_ms("1h2m3s4ms"), Ok(3_723_004));
        assert_eq!(duration_ms("100us"), Ok(1));
        assert_eq!(duration_ms("0"), Ok(0));
        assert!(duration_ms("30").unwrap_err().contains("not a duration"));
        assert!(duration_ms("").is_err());
        assert!(duration_ms("5d").is_err());
        assert!(duration_ms("s").is_err());
        assert!(duration_ms("2000h").unwrap_err().contains("too long"));
    }

    #[test]
    fn sizes() {
        assert_eq!(size_mib("2g"), Ok(2048));
        assert_eq!(size_mib("512M"), Ok(512));
        assert_eq!(size_mib("1.5G"), Ok(1536));
        assert_eq!(size_mib("1gb"), Ok(1024));
        assert_eq!(size_mib("1048576"), Ok(1));
        assert_eq!(size_mib("1000"), Ok(1));
        assert_eq!(size_mib("100k"), Ok(1));
        assert!(size_mib("lots").is_err());
        assert!(size_mib("2x").is_err());
    }

    #[test]
    fn command_strings() {
        let words = |v: &[&str]| Split::Words(v.iter().map(|s| s.to_string()).collect());
        assert_eq!(
            split_command("python3 agent.py --port 7120"),
            words(&["python3", "agent.py", "--port", "7120"])
        );
        assert_eq!(
            split_command(r#"python3 -c 'print("hi there")' "a b" c\ d"#),
            words(&["python3", "-c", "print(\"hi there\")", "a b", "c d"])
        );
        assert_eq!(split_command("a=b run"), words(&["a=b", "run"]));
        // Compose does not run a shell: a quoted `$` reaches the program as is.
        assert_eq!(
            split_command(r#"sh -c "echo $HOME""#),
            words(&["sh", "-c", "echo $HOME"])
        );
        for shell in [
            "a && b",
            "a | b",
            "a > log",
            "echo $HOME",
            "ls *.py",
            "a; b",
            "echo `date`",
            "~/bin/run",
        ] {
            assert_eq!(split_command(shell), Split::NeedsShell, "{shell}");
        }
        assert_eq!(split_command("echo 'oops"), Split::Unbalanced);
        assert_eq!(split_command("echo \"oops"), Split::Unbalanced);
    }

    #[test]
    fn dollars_and_names() {
        assert_eq!(unescape_dollars("a$$b"), ("a$b".into(), false));
        assert_eq!(unescape_dollars("${TAG}"), ("${TAG}".into(), true));
        assert_eq!(unescape_dollars("x$HOME"), ("x$HOME".into(), true));
        assert_eq!(unescape_dollars("cost $5"), ("cost $5".into(), false));
        assert_eq!(mesh_name("Core_Services.v2"), "core-services-v2");
        assert_eq!(mesh_name("--x--"), "x");
        assert_eq!(mesh_name("..."), "");
        assert_eq!(mesh_name(&"a".repeat(80)).len(), 63);
    }
}
