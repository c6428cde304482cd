//! `%include` expansion and the line index of a pgbouncer.ini.
//!
//! rust-ini knows neither `%include` nor line numbers of keys, and its grammar is
//! looser than PgBouncer's in ways that would silently change meaning (a `\` at the
//! end of a line joins the next one, an indented `;` line is read as a key, `:` also
//! separates key and value). So before rust-ini sees the text, this module:
//!
//! * reads the main file and, recursively, every `%include FILE`, in place — the
//!   included lines continue the current section, and a section opened inside an
//!   included file stays open after it, exactly as PgBouncer reads them;
//! * checks each line against PgBouncer's grammar (comment, `[section]`, `key = value`)
//!   and reports a broken line with its file and line number;
//! * writes one normalized line per physical line, so that line *n* of the text given
//!   to rust-ini can be traced back to `(file, line)`;
//! * records, per `(section, key)`, where each occurrence of the key came from.
//!
//! Relative include paths are resolved against the directory of the including file
//! (PgBouncer uses its working directory, which under systemd is `/`; resolving next
//! to the including file is what operators expect and is the same for absolute paths).

use std::collections::HashMap;
use std::path::{Path, PathBuf};

use super::error::{ConfigError, Origin};

/// How deep `%include` may nest (the main file is level 0), as in PgBouncer.
pub const MAX_INCLUDE_DEPTH: usize = 10;

/// A `[section]` header as found in the files.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct SectionHeader {
    /// The name between the brackets, trimmed (case kept).
    pub name: String,
    pub origin: Origin,
}

/// The configuration with all includes expanded.
#[derive(Clone, Debug, Default)]
pub struct Expanded {
    /// Normalized text for rust-ini: one line per entry of `origins`.
    pub text: String,
    /// `origins[i]` is where line `i + 1` of `text` came from.
    pub origins: Vec<Origin>,
    /// Every section header, in reading order.
    pub sections: Vec<SectionHeader>,
    /// `(lowercased section name, key)` → indexes into `origins`, in reading order.
    keys: HashMap<(String, String), Vec<usize>>,
}

impl Expanded {
    /// Reads `path` and everything it includes.
    pub fn load(path: &Path) -> Result<Expanded, ConfigError> {
        let text = std::fs::read_to_string(path).map_err(|e| ConfigError::io(path, &e))?;
        let mut reader = Reader::default();
        reader.file(path, &text, 0)?;
        Ok(reader.out)
    }

    /// Expands already-read text as if it were the file `path` (includes are still read
    /// from disk). Used by tests and by callers that hold the text already.
    pub fn from_text(path: &Path, text: &str) -> Result<Expanded, ConfigError> {
        let mut reader = Reader::default();
        reader.file(path, text, 0)?;
        Ok(reader.out)
    }

    /// Where line `line` (1-based) of `text` came from.
    pub fn origin_of_line(&self, line: usize) -> Option<&Origin> {
        line.checked_sub(1).and_then(|i| self.origins.get(i))
    }

    /// Where the `nth` (0-based) occurrence of `key` in `section` came from.
    /// `section` is compared case-insensitively; `key` exactly as written.
    pub fn locate_nth(&self, section: &str, key: &str, nth: usize) -> Option<&Origin> {
        let idx = self
            .keys
            .get(&(section.trim().to_ascii_lowercase(), key.to_string()))?
            .get(nth)?;
        self.origins.get(*idx)
    }

    /// Where the last (effective) occurrence of `key` in `section` came from.
    pub fn locate(&self, section: &str, key: &str) -> Option<&Origin> {
        let idx = self
            .keys
            .get(&(section.trim().to_ascii_lowercase(), key.to_string()))?
            .last()?;
        self.origins.get(*idx)
    }
}

#[derive(Default)]
struct Reader {
    out: Expanded,
    /// Canonical paths of the files being read, outermost first, for cycle detection.
    stack: Vec<PathBuf>,
    /// Lowercased name of the section the next key belongs to.
    section: Option<String>,
}

impl Reader {
    fn file(&mut self, path: &Path, text: &str, depth: usize) -> Result<(), ConfigError> {
        // A path that cannot be canonicalized was still read fine (e.g. it was given as
        // text); comparing it as written is the best that can be done.
        let canonical = std::fs::canonicalize(path).unwrap_or_else(|_| path.to_path_buf());
        self.stack.push(canonical);
        // Editors on some systems start files with a byte-order mark.
        let text = text.strip_prefix('\u{feff}').unwrap_or(text);
        for (idx, raw) in text.split('\n').enumerate() {
            let origin = Origin {
                file: path.to_path_buf(),
                line: idx + 1,
            };
            self.line(raw, origin, path, depth)?;
        }
        self.stack.pop();
        Ok(())
    }

    fn emit(&mut self, line: &str, origin: Origin) -> usize {
        self.out.text.push_str(line);
        self.out.text.push('\n');
        self.out.origins.push(origin);
        self.out.origins.len() - 1
    }

    fn line(
        &mut self,
        raw: &str,
        origin: Origin,
        path: &Path,
        depth: usize,
    ) -> Result<(), ConfigError> {
        // PgBouncer skips any leading white space, which also makes indented comments
        // and indented keys legal.
        let line = raw.trim();

        if let Some(rest) = line.strip_prefix("%include") {
            if rest.starts_with([' ', '\t']) {
                return self.include(rest.trim(), &origin, path, depth);
            }
        }
        if line.is_empty() || line.starts_with(';') || line.starts_with('#') {
            self.emit("", origin);
            return Ok(());
        }
        if let Some(rest) = line.strip_prefix('[') {
            return self.section_header(rest, origin);
        }
        self.key_line(line, origin)
    }

    fn include(
        &mut self,
        target: &str,
        origin: &Origin,
        path: &Path,
        depth: usize,
    ) -> Result<(), ConfigError> {
        if target.is_empty() {
            return Err(origin.error(ConfigError::new("%include without a file name")));
        }
        if depth + 1 > MAX_INCLUDE_DEPTH {
            return Err(origin.error(ConfigError::new(format!(
                "%include nesting deeper than {MAX_INCLUDE_DEPTH} levels"
            ))));
        }
        let mut file = PathBuf::from(target);
        if file.is_relative() {
            if let Some(dir) = path.parent() {
                file = dir.join(file);
            }
        }
        let text = std::fs::read_to_string(&file).map_err(|e| {
            origin.error(ConfigError::new(format!(
                "%include {}: could not read file: {e}",
                file.display()
            )))
        })?;
        let canonical = std::fs::canonicalize(&file).unwrap_or_else(|_| file.clone());
        if self.stack.contains(&canonical) {
            return Err(origin.error(ConfigError::new(format!(
                "%include {}: include cycle (the file is already being read)",
                file.display()
            ))));
        }
        self.file(&file, &text, depth + 1)
    }

    fn section_header(&mut self, rest: &str, origin: Origin) -> Result<(), ConfigError> {
        let Some(end) = rest.find(']') else {
            return Err(origin.error(ConfigError::new(
                "syntax error: section header without closing ']'",
            )));
        };
        let name = rest[..end].trim();
        if !rest[end + 1..].trim().is_empty() {
            return Err(origin.error(ConfigError::new(format!(
                "syntax error: unexpected text after section header [{name}]"
            ))));
        }
        // rust-ini reads a backslash as the start of an escape even with escapes off.
        if name.contains('\\') {
            return Err(origin.error(ConfigError::new(format!(
                "syntax error: '\\' in section name [{name}]"
            ))));
        }
        self.section = Some(name.to_ascii_lowercase());
        self.out.sections.push(SectionHeader {
            name: name.to_string(),
            origin: origin.clone(),
        });
        self.emit(&format!("[{name}]"), origin);
        Ok(())
    }

    fn key_line(&mut self, line: &str, origin: Origin) -> Result<(), ConfigError> {
        let (key, rest) =
            split_key(line).map_err(|reason| origin.error(ConfigError::new(reason)))?;
        let Some(value) = rest.strip_prefix('=') else {
            return Err(origin.error(
                ConfigError::new("syntax error: expected '=' after the key").with_key(key),
            ));
        };
        let Some(section) = self.section.clone() else {
            return Err(
                origin.error(ConfigError::new("key outside of any [section]").with_key(key))
            );
        };
        // Values are verbatim, but rust-ini would join a line that ends in a backslash
        // with the next one; a trailing blank stops that and rust-ini trims it again.
        let value = value.trim();
        let guard = if value.ends_with('\\') { " " } else { "" };
        let idx = self.emit(&format!("{key}={value}{guard}"), origin);
        self.out.keys.entry((section, key)).or_default().push(idx);
        Ok(())
    }
}

/// Splits `line` into the key (unquoted) and the rest starting at the `=` (or at
/// whatever stands where the `=` should be). Leading blanks of the rest are skipped.
///
/// PgBouncer's grammar: a bare key is made of ASCII letters, digits and `_.-*`;
/// any other name must be quoted, with `"..."` (a doubled `""` is a quote) or, as
/// older PgBouncer releases read it, `'...'`.
fn split_key(line: &str) -> Result<(String, &str), String> {
    let (key, rest) = match line.chars().next() {
        Some(q @ ('"' | '\'')) => quoted_key(&line[1..], q)?,
        _ => {
            let end = line
                .find(|c: char| !(c.is_ascii_alphanumeric() || "_.-*".contains(c)))
                .unwrap_or(line.len());
            if end == 0 {
                let bad = line.chars().next().unwrap_or(' ');
                return Err(format!(
                    "syntax error: unexpected '{bad}' where a key should start"
                ));
            }
            (line[..end].to_string(), &line[end..])
        }
    };
    if key.is_empty() {
        return Err("syntax error: empty quoted key".to_string());
    }
    // The text handed to rust-ini must give back the same key: it ends a key at '=' or
    // ':', reads '\' as an escape, and treats a leading ';', '#' or '[' as syntax.
    if key.contains(['=', ':', '\\', '\n'])
        || key.starts_with([';', '#', '[', ' ', '\t'])
        || key.ends_with([' ', '\t'])
    {
        return Err(format!(
            "name {key:?} is not supported (contains '=', ':' or '\\', or starts with ';', '#', '[' or a blank)"
        ));
    }
    Ok((key, rest.trim_start_matches([' ', '\t'])))
}

fn quoted_key(after_quote: &str, quote: char) -> Result<(String, &str), String> {
    let mut key = String::new();
    let mut chars = after_quote.char_indices().peekable();
    while let Some((i, c)) = chars.next() {
        if c == quote {
            // Only double quotes have the SQL-style doubling escape.
            if quote == '"' && matches!(chars.peek(), Some((_, '"'))) {
                chars.next();
                key.push('"');
                continue;
            }
            return Ok((key, &after_quote[i + c.len_utf8()..]));
        }
        key.push(c);
    }
    Err(format!(
        "syntax error: unterminated quoted key {quote}{after_quote}"
    ))
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::fs;

    fn write(dir: &Path, name: &str, text: &str) -> PathBuf {
        let p = dir.join(name);
        if let Some(parent) = p.parent() {
            fs::create_dir_all(parent).unwrap();
        }
        fs::write(&p, text).unwrap();
        p
    }

    #[test]
    fn maps_lines_back_to_files() {
        let dir = tempfile::tempdir().unwrap();
        write(dir.path(), "sub/dbs.ini", "[databases]\nfoo = host=a\n");
        let main = write(
            dir.path(),
            "main.ini",
            "; comment\n[pgbouncer]\nlisten_port = 1\n%include sub/dbs.ini\nbar = host=b\n",
        );
        let ex = Expanded::load(&main).unwrap();
        let foo = ex.locate("databases", "foo").unwrap();
        assert_eq!(foo.file, dir.path().join("sub/dbs.ini"));
        assert_eq!(foo.line, 2);
        // The section opened in the included file continues after it, as in PgBouncer.
        let bar = ex.locate("databases", "bar").unwrap();
        assert_eq!((bar.file.clone(), bar.line), (main.clone(), 5));
        let port = ex.locate("PgBouncer", "listen_port").unwrap();
        assert_eq!(port.line, 3);
        // Every emitted line has an origin.
        assert_eq!(ex.text.lines().count(), ex.origins.len());
        assert_eq!(ex.origin_of_line(1).unwrap().line, 1);
    }

    #[test]
    fn nested_includes_resolve_relative_to_the_including_file() {
        let dir = tempfile::tempdir().unwrap();
        write(dir.path(), "a/b/c.ini", "deep = 1\n");
        write(dir.path(), "a/b.ini", "%include b/c.ini\n");
        let main = write(dir.path(), "main.ini", "[pgbouncer]\n%include a/b.ini\n");
        let ex = Expanded::load(&main).unwrap();
        let deep = ex.locate("pgbouncer", "deep").unwrap();
        assert_eq!(deep.file, dir.path().join("a/b/c.ini"));
        assert_eq!(deep.line, 1);
    }

    #[test]
    fn missing_include_names_the_including_line() {
        let dir = tempfile::tempdir().unwrap();
        let main = write(dir.path(), "main.ini", "[pgbouncer]\n\n%include nope.ini\n");
        let err = Expanded::load(&main).unwrap_err();
        assert_eq!(err.file.as_deref(), Some(main.as_path()));
        assert_eq!(err.line, Some(3));
        let text = err.to_string();
        assert!(text.contains("nope.ini"), "{text}");
        assert!(text.contains("No such file or directory"), "{text}");
    }

    #[test]
    fn include_cycle_is_an_error() {
        let dir = tempfile::tempdir().unwrap();
        write(dir.path(), "a.ini", "%include b.ini\n");
        write(dir.path(), "b.ini", "%include a.ini\n");
        let main = write(dir.path(), "main.ini", "[pgbouncer]\n%include a.ini\n");
        let err = Expanded::load(&main).unwrap_err();
        assert!(err.reason.contains("cycle"), "{err}");
        assert_eq!(err.file, Some(dir.path().join("b.ini")));
        assert_eq!(err.line, Some(1));
    }

    #[test]
    fn include_depth_is_limited() {
        let dir = tempfile::tempdir().unwrap();
        // A chain of distinct files, one deeper than allowed.
        for i in 0..=MAX_INCLUDE_DEPTH {
            write(
                dir.path(),
                &format!("f{i}.ini"),
                &format!("%include f{}.ini\n", i + 1),
            );
        }
        write(
            dir.path(),
            &format!("f{}.ini", MAX_INCLUDE_DEPTH + 1),
            "x = 1\n",
        );
        let main = write(dir.path(), "main.ini", "[pgbouncer]\n%include f0.ini\n");
        let err = Expanded::load(&main).unwrap_err();
        assert!(err.reason.contains("nesting"), "{err}");

        // Exactly MAX_INCLUDE_DEPTH levels are fine.
        let dir = tempfile::tempdir().unwrap();
        for i in 0..MAX_INCLUDE_DEPTH - 1 {
            write(
                dir.path(),
                &format!("f{i}.ini"),
                &format!("%include f{}.ini\n", i + 1),
            );
        }
        write(
            dir.path(),
            &format!("f{}.ini", MAX_INCLUDE_DEPTH - 1),
            "x = 1\n",
        );
        let main = write(dir.path(), "main.ini", "[pgbouncer]\n%include f0.ini\n");
        assert!(Expanded::load(&main)
            .unwrap()
            .locate("pgbouncer", "x")
            .is_some());
    }

    #[test]
    fn comments_only_at_line_start_and_values_verbatim() {
        let p = Path::new("/t.ini");
        let ex = Expanded::from_text(
            p,
            "[databases]\n   ; indented comment\n# hash comment\nfoo = host=a;b password=x#y ;not a comment\nbar = ends with \\\n",
        )
        .unwrap();
        assert!(ex
            .text
            .contains("foo=host=a;b password=x#y ;not a comment\n"));
        // The trailing backslash is guarded against rust-ini's line continuation.
        assert!(ex.text.contains("bar=ends with \\ \n"));
    }

    #[test]
    fn quoted_keys() {
        let p = Path::new("/t.ini");
        let ex = Expanded::from_text(
            p,
            "[databases]\n\"my db\" = host=a\n'other db' = host=b\n\"q\"\"uote\" = host=c\n",
        )
        .unwrap();
        assert!(ex.locate("databases", "my db").is_some());
        assert!(ex.locate("databases", "other db").is_some());
        assert!(ex.locate("databases", "q\"uote").is_some());
    }

    #[test]
    fn syntax_errors_name_file_and_line() {
        let p = Path::new("/t.ini");
        for (text, line, needle) in [
            ("[pgbouncer]\nlisten_port 5\n", 2, "expected '='"),
            ("[pgbouncer\n", 1, "closing ']'"),
            ("listen_port = 5\n", 1, "outside of any [section]"),
            ("[pgbouncer]\n\n@x = 1\n", 3, "unexpected '@'"),
            ("[databases]\n\"open = x\n", 2, "unterminated"),
            ("[databases]\n\"a=b\" = host=x\n", 2, "not supported"),
            ("[pgbouncer] junk\n", 1, "after section header"),
            ("[pgbouncer]\n%include\n", 2, "unexpected '%'"),
        ] {
            let err = Expanded::from_text(p, text).unwrap_err();
            assert_eq!(err.line, Some(line), "{text:?}: {err}");
            assert_eq!(err.file.as_deref(), Some(p));
            assert!(err.to_string().contains(needle), "{text:?}: {err}");
        }
    }

    #[test]
    fn duplicate_keys_are_all_located() {
        let p = Path::new("/t.ini");
        let ex =
            Expanded::from_text(p, "[pgbouncer]\nverbose = 1\n[pgbouncer]\nverbose = 2\n").unwrap();
        assert_eq!(ex.locate_nth("pgbouncer", "verbose", 0).unwrap().line, 2);
        assert_eq!(ex.locate_nth("pgbouncer", "verbose", 1).unwrap().line, 4);
        assert_eq!(ex.locate("pgbouncer", "verbose").unwrap().line, 4);
        assert_eq!(ex.sections.len(), 2);
    }

    #[test]
    fn byte_order_mark_is_skipped() {
        let p = Path::new("/t.ini");
        let ex = Expanded::from_text(p, "\u{feff}[pgbouncer]\nlisten_port = 7\n").unwrap();
        assert_eq!(ex.sections[0].name, "pgbouncer");
    }

    #[test]
    fn crlf_line_endings() {
        let p = Path::new("/t.ini");
        let ex = Expanded::from_text(p, "[pgbouncer]\r\nlisten_port = 7\r\n").unwrap();
        assert!(ex.text.contains("listen_port=7\n"));
    }
}
