//! The architecture invariants of ARCHITECTURE.md, checked on the source tree: each rule
//! below is one invariant, and `the_source_tree_keeps_every_invariant` fails with every
//! violation listed (file, rule, what was found). The rules are also run on small made-up
//! trees (`each_rule_catches_its_violation`), so a rule that silently stopped matching
//! anything would fail here too.
//!
//! Only non-test code counts: `#[cfg(test)]` items (inline `mod tests { … }` and files
//! declared `#[cfg(test)] mod x;`) are cut before looking, and comments and string literals
//! are blanked, so a doc line that names `tokio` is not a dependency on it.
//!
//! It reads files; it does not build or import the crate.

use std::collections::{BTreeMap, BTreeSet};
use std::path::{Path, PathBuf};

/// Rooms whose code is pure: no I/O, no clock, no async runtime.
const PURE: &[&str] = &["detect", "alert", "judge"];
/// What pure code may not name (a crate, a module or a type that means I/O or a clock).
const IMPURE: &[&str] = &[
    "tokio",
    "reqwest",
    "rusqlite",
    "lettre",
    "std::fs",
    "std::net",
    "Instant",
    "SystemTime::now",
    "async",
    "await",
];
/// Crates that only some rooms may use: (crate, rooms allowed).
const ONLY_IN: &[(&str, &[&str])] = &[
    ("rusqlite", &["store"]),
    ("lettre", &["notify", "config"]),
    ("axum", &["api", "lab"]),
    ("maud", &["api", "notify"]),
    (
        "reqwest",
        &["probe", "notify", "cli", "prometheus", "telemetry"],
    ),
    ("scraper", &["probe"]),
    ("chromiumoxide", &["probe"]),
];
/// Rooms only some rooms may import: (room, importers allowed).
const IMPORTED_ONLY_BY: &[(&str, &[&str])] = &[
    ("lab", &["cli"]),
    ("cli", &[]),
    ("daemon", &["cli"]),
    ("api", &["cli"]),
];
/// Files of the `api` room that may use the store (the silence routes write silences; every
/// other route only reads the snapshot).
const API_STORE_WRITERS: &[&str] = &["api/silences.rs"];
/// Non-test lines above which a file is too big to hold in one's head.
const MAX_LINES: usize = 700;

/// One source file: its path under `src/` and its non-test code, comments and strings
/// blanked.
struct Source {
    rel: String,
    code: String,
}

impl Source {
    /// The top-level room a file belongs to: `detect` for `detect/round/edges.rs`, `judge`
    /// for `judge.rs`.
    fn room(&self) -> &str {
        let first = self.rel.split('/').next().unwrap_or("");
        first.strip_suffix(".rs").unwrap_or(first)
    }
}

#[test]
fn the_source_tree_keeps_every_invariant() {
    let root = Path::new(env!("CARGO_MANIFEST_DIR")).join("src");
    let sources = read_tree(&root);
    assert!(
        sources.len() > 50 && sources.iter().any(|s| s.rel == "detect/mod.rs"),
        "the tree under {} was not read: {} files",
        root.display(),
        sources.len()
    );
    let violations = check(&sources);
    assert!(
        violations.is_empty(),
        "architecture invariants broken (ARCHITECTURE.md, \"Architecture invariants\"):\n{}",
        violations.join("\n")
    );
}

#[test]
fn each_rule_catches_its_violation() {
    let tree = |files: &[(&str, &str)]| -> Vec<Source> {
        files
            .iter()
            .map(|(rel, text)| Source {
                rel: (*rel).to_owned(),
                code: strip(text),
            })
            .collect()
    };
    let cases: &[(&[(&str, &str)], &str)] = &[
        (
            &[(
                "detect/a.rs",
                "fn f() { let t = std::time::Instant::now(); }",
            )],
            "pure",
        ),
        (&[("judge.rs", "async fn judge() {}")], "pure"),
        (&[("alert/state.rs", "use tokio::sync::Mutex;")], "pure"),
        (
            &[("api/mod.rs", "fn f(c: &rusqlite::Connection) {}")],
            "only in",
        ),
        (
            &[("probe/mod.rs", "use crate::lab::Lab;")],
            "may be imported only by",
        ),
        (
            &[
                ("model.rs", "use crate::config::X;"),
                ("config/mod.rs", "use crate::model::Y;"),
            ],
            "circle",
        ),
        (
            &[
                ("model.rs", "use crate::{config, clock};"),
                ("config/mod.rs", "fn f(_: crate::model::Y) {}"),
            ],
            "circle",
        ),
        (
            &[("api/mod.rs", "fn f() { crate::store::Store::open(); }")],
            "store",
        ),
        (
            &[("model.rs", &"fn f() {}\n".repeat(MAX_LINES + 1))],
            "lines",
        ),
    ];
    for (files, rule) in cases {
        let found = check(&tree(files));
        assert!(
            found.iter().any(|v| v.contains(rule)),
            "rule `{rule}` missed its violation in {:?}: {found:?}",
            files.iter().map(|f| f.0).collect::<Vec<_>>()
        );
    }
    // Tests, comments and strings do not count.
    let clean = tree(&[
        (
            "detect/a.rs",
            "//! uses no tokio\nfn f() -> &'static str { \"tokio::spawn\" }\n#[cfg(test)]\nmod tests {\n    use tokio::time::Instant;\n}\n",
        ),
        (
            "model.rs",
            "/* crate::config */ fn g(c: char) -> bool { c == '\"' }",
        ),
        ("config/mod.rs", "use crate::model::Y;"),
    ]);
    assert_eq!(check(&clean), Vec::<String>::new());
}

/// Every violation in `sources`, one line each.
fn check(sources: &[Source]) -> Vec<String> {
    let mut out = Vec::new();
    for s in sources {
        let room = s.room();
        if PURE.contains(&room) {
            for word in IMPURE {
                if mentions(&s.code, word) {
                    out.push(format!(
                        "src/{}: `{word}` in a pure room ({room}): no I/O, clock or async there",
                        s.rel
                    ));
                }
            }
        }
        for (krate, allowed) in ONLY_IN {
            if !allowed.contains(&room) && mentions(&s.code, &format!("{krate}::")) {
                out.push(format!(
                    "src/{}: `{krate}` is used only in {allowed:?}, not in {room}",
                    s.rel
                ));
            }
        }
        for target in imports(&s.code) {
            if target == room {
                continue;
            }
            if let Some((_, allowed)) = IMPORTED_ONLY_BY.iter().find(|(r, _)| *r == target)
                && !allowed.contains(&room)
            {
                out.push(format!(
                    "src/{}: `crate::{target}` may be imported only by {allowed:?}, not by {room}",
                    s.rel
                ));
            }
        }
        if room == "api"
            && !API_STORE_WRITERS.contains(&s.rel.as_str())
            && mentions(&s.code, "store::")
        {
            out.push(format!(
                "src/{}: the api reads the snapshot; only {API_STORE_WRITERS:?} use the store",
                s.rel
            ));
        }
        let lines = s.code.lines().count();
        if lines > MAX_LINES {
            out.push(format!(
                "src/{}: {lines} lines of non-test code (at most {MAX_LINES}): split it by concern",
                s.rel
            ));
        }
    }
    for circle in circles(sources) {
        out.push(format!(
            "import circle between top-level rooms: {}",
            circle.join(" <-> ")
        ));
    }
    out
}

/// The top-level rooms a file's code names through `crate::<room>` (also inside
/// `crate::{a, b::c}` groups).
fn imports(code: &str) -> BTreeSet<String> {
    let mut out = BTreeSet::new();
    let mut rest = code;
    while let Some(i) = rest.find("crate::") {
        let before = rest[..i].chars().next_back();
        rest = &rest[i + "crate::".len()..];
        if before.is_some_and(|c| c.is_alphanumeric() || c == '_') {
            continue; // `keycanary_crate::` or similar
        }
        if let Some(group) = rest.strip_prefix('{') {
            let end = matching(group, '{', '}');
            let mut depth = 0;
            let mut item_start = true;
            for (j, c) in group[..end].char_indices() {
                match c {
                    '{' => depth += 1,
                    '}' => depth -= 1,
                    ',' if depth == 0 => item_start = true,
                    c if item_start && (c.is_alphabetic() || c == '_') && depth == 0 => {
                        out.insert(ident(&group[j..]).to_owned());
                        item_start = false;
                    }
                    _ => {}
                }
            }
        } else {
            let name = ident(rest);
            if !name.is_empty() {
                out.insert(name.to_owned());
            }
        }
    }
    out
}

/// Every set of two or more rooms that reach each other through imports.
fn circles(sources: &[Source]) -> Vec<Vec<String>> {
    let mut edges: BTreeMap<String, BTreeSet<String>> = BTreeMap::new();
    for s in sources {
        let room = s.room().to_owned();
        if room == "main" || room == "lib" {
            continue;
        }
        for target in imports(&s.code) {
            if target != room {
                edges.entry(room.clone()).or_default().insert(target);
            }
        }
    }
    let reach = |from: &str| -> BTreeSet<String> {
        let mut seen = BTreeSet::new();
        let mut stack = vec![from.to_owned()];
        while let Some(r) = stack.pop() {
            for next in edges.get(&r).into_iter().flatten() {
                if seen.insert(next.clone()) {
                    stack.push(next.clone());
                }
            }
        }
        seen
    };
    let reached: BTreeMap<&String, BTreeSet<String>> =
        edges.keys().map(|r| (r, reach(r))).collect();
    let mut done = BTreeSet::new();
    let mut out = Vec::new();
    for (room, from_room) in &reached {
        if done.contains(*room) || !from_room.contains(*room) {
            continue;
        }
        let circle: Vec<String> = from_room
            .iter()
            .filter(|other| reached.get(other).is_some_and(|r| r.contains(*room)))
            .cloned()
            .collect();
        done.extend(circle.iter().cloned());
        out.push(circle);
    }
    out
}

/// Whether `code` names `word` as a whole identifier path (not as part of a longer one).
fn mentions(code: &str, word: &str) -> bool {
    let ident_char = |c: char| c.is_alphanumeric() || c == '_';
    code.match_indices(word).any(|(i, _)| {
        let before = code[..i].chars().next_back();
        let after = code[i + word.len()..].chars().next();
        !before.is_some_and(ident_char) && (word.ends_with("::") || !after.is_some_and(ident_char))
    })
}

fn ident(s: &str) -> &str {
    let end = s
        .find(|c: char| !(c.is_alphanumeric() || c == '_'))
        .unwrap_or(s.len());
    &s[..end]
}

/// The index of the bracket closing the one just before `s` (or `s.len()`).
fn matching(s: &str, open: char, close: char) -> usize {
    let mut depth = 1;
    for (i, c) in s.char_indices() {
        if c == open {
            depth += 1;
        } else if c == close {
            depth -= 1;
            if depth == 0 {
                return i;
            }
        }
    }
    s.len()
}

/// Every `.rs` file under `root` that is not test code, with its test items cut.
fn read_tree(root: &Path) -> Vec<Source> {
    let mut files = Vec::new();
    walk(root, &mut files);
    let texts: BTreeMap<String, String> = files
        .iter()
        .map(|p| {
            let rel = p
                .strip_prefix(root)
                .expect("under root")
                .to_string_lossy()
                .replace('\\', "/");
            (
                rel,
                std::fs::read_to_string(p).expect("a readable source file"),
            )
        })
        .collect();
    // Files declared `#[cfg(test)] mod x;` are test code, with everything under them.
    let mut test_files: BTreeSet<String> = BTreeSet::new();
    for (rel, text) in &texts {
        let dir = module_dir(rel);
        for name in test_module_declarations(text) {
            test_files.insert(format!("{dir}{name}.rs"));
            test_files.insert(format!("{dir}{name}/"));
        }
    }
    texts
        .into_iter()
        .filter(|(rel, _)| {
            !test_files
                .iter()
                .any(|t| rel == t || (t.ends_with('/') && rel.starts_with(t.as_str())))
        })
        .map(|(rel, text)| Source {
            code: strip(&text),
            rel,
        })
        .collect()
}

fn walk(dir: &Path, out: &mut Vec<PathBuf>) {
    for entry in std::fs::read_dir(dir).expect("a readable directory") {
        let path = entry.expect("a directory entry").path();
        if path.is_dir() {
            walk(&path, out);
        } else if path.extension().is_some_and(|e| e == "rs") {
            out.push(path);
        }
    }
}

/// Where the child modules of the file `rel` live: `a/` for `a.rs` and `a/mod.rs`, `` for
/// `lib.rs`.
fn module_dir(rel: &str) -> String {
    let (dir, file) = rel.rsplit_once('/').unwrap_or(("", rel));
    let prefix = if dir.is_empty() {
        String::new()
    } else {
        format!("{dir}/")
    };
    match file {
        "mod.rs" | "lib.rs" | "main.rs" => prefix,
        f => format!("{prefix}{}/", f.trim_end_matches(".rs")),
    }
}

/// Names of modules declared `#[cfg(test)] [pub(crate)] mod name;` in `text`.
fn test_module_declarations(text: &str) -> Vec<String> {
    let code = blank_comments_and_literals(text);
    let mut out = Vec::new();
    let mut lines = code.lines().map(str::trim).peekable();
    while let Some(line) = lines.next() {
        if line != "#[cfg(test)]" {
            continue;
        }
        let Some(next) = lines.peek() else { break };
        let decl = next
            .trim_start_matches("pub(crate) ")
            .trim_start_matches("pub ");
        if let Some(name) = decl.strip_prefix("mod ").and_then(|d| d.strip_suffix(';')) {
            out.push(name.trim().to_owned());
        }
    }
    out
}

/// `text` with comments and string/char literals blanked and `#[cfg(test)]` items (an
/// inline module or function, up to its closing brace) removed. Line count is kept for
/// what remains of non-test code.
fn strip(text: &str) -> String {
    let blanked = blank_comments_and_literals(text);
    let mut out = String::with_capacity(blanked.len());
    let mut rest = blanked.as_str();
    while let Some(i) = rest.find("#[cfg(test)]") {
        out.push_str(&rest[..i]);
        let after = &rest[i..];
        let brace = after.find('{');
        let semi = after.find(';');
        match (brace, semi) {
            (Some(b), Some(s)) if s < b => rest = &after[s + 1..],
            (Some(b), _) => {
                let end = b + 1 + matching(&after[b + 1..], '{', '}');
                rest = after.get(end + 1..).unwrap_or("");
            }
            _ => rest = "",
        }
    }
    out.push_str(rest);
    out
}

/// Replaces comments, string literals (plain and raw) and char literals with spaces,
/// keeping newlines.
fn blank_comments_and_literals(text: &str) -> String {
    let chars: Vec<char> = text.chars().collect();
    let mut out = String::with_capacity(text.len());
    let mut i = 0;
    let blank = |c: char| if c == '\n' { '\n' } else { ' ' };
    while i < chars.len() {
        let c = chars[i];
        let next = chars.get(i + 1).copied();
        if c == '/' && next == Some('/') {
            while i < chars.len() && chars[i] != '\n' {
                out.push(' ');
                i += 1;
            }
        } else if c == '/' && next == Some('*') {
            let mut depth = 0;
            while i < chars.len() {
                if chars[i] == '/' && chars.get(i + 1) == Some(&'*') {
                    depth += 1;
                    out.push_str("  ");
                    i += 2;
                } else if chars[i] == '*' && chars.get(i + 1) == Some(&'/') {
                    depth -= 1;
                    out.push_str("  ");
                    i += 2;
                    if depth == 0 {
                        break;
                    }
                } else {
                    out.push(blank(chars[i]));
                    i += 1;
                }
            }
        } else if c == 'r'
            && (next == Some('"') || next == Some('#'))
            && !chars[..i]
                .last()
                .is_some_and(|p| p.is_alphanumeric() || *p == '_')
        {
            // A raw string r"…" or r#"…"#.
            let mut j = i + 1;
            let mut hashes = 0;
            while chars.get(j) == Some(&'#') {
                hashes += 1;
                j += 1;
            }
            if chars.get(j) != Some(&'"') {
                out.push(c);
                i += 1;
                continue;
            }
            j += 1;
            loop {
                match chars.get(j) {
                    None => break,
                    Some('"') if (1..=hashes).all(|k| chars.get(j + k) == Some(&'#')) => {
                        j += 1 + hashes;
                        break;
                    }
                    _ => j += 1,
                }
            }
            out.extend(chars[i..j.min(chars.len())].iter().map(|c| blank(*c)));
            i = j;
        } else if c == '"' {
            let mut j = i + 1;
            while j < chars.len() && chars[j] != '"' {
                j += if chars[j] == '\\' { 2 } else { 1 };
            }
            let end = (j + 1).min(chars.len());
            out.extend(chars[i..end].iter().map(|c| blank(*c)));
            i = end;
        } else if c == '\'' {
            // A char literal ('x', '\n', '\u{..}') or a lifetime ('a): only the former is
            // blanked.
            let close = if next == Some('\\') {
                (i + 2..chars.len().min(i + 12)).find(|&k| chars[k] == '\'')
            } else if chars.get(i + 2) == Some(&'\'') {
                Some(i + 2)
            } else {
                None
            };
            match close {
                Some(k) => {
                    out.extend(std::iter::repeat_n(' ', k + 1 - i));
                    i = k + 1;
                }
                None => {
                    out.push(c);
                    i += 1;
                }
            }
        } else {
            out.push(c);
            i += 1;
        }
    }
    out
}
