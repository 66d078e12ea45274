//! The READMEs name only what exists. Every `README.md` of the repository (build
//! outputs, virtual environments, data and test fixtures aside) is read, and:
//!
//! * every relative Markdown link `[text](path)` or `[text](path#anchor)` points to a
//!   file or directory that exists, resolved from the README's folder, and an anchor
//!   into a Markdown file names one of its headings (GitHub's heading ids);
//! * every path in a code span or code block that starts with a top-level folder of the
//!   repository (`src/`, `models/`, `benches/`, `fuzz/`, `loadtest/`, `deploy/`,
//!   `tests/`, `.ci/`, `.cargo/`), or is `Makefile` or `Cargo.toml`, exists, relative to
//!   the repository root or to the README's folder. Paths with placeholders (`<name>`,
//!   `{a,b}`, `...`, `$VAR`, an upper-case `NAME` that does not exist) are skipped, `*`
//!   matches within one folder, and paths git ignores (`.gitignore`'s `/...` entries:
//!   build outputs, generated corpora) are not checked;
//! * every command in a code span or block names what exists: `make X` a target of the
//!   Makefile, `--bench X` a `benches/X.rs`, `--test X` a `tests/X.rs`, `ctrbid SUB` a
//!   subcommand that `ctrbid --help` lists, `ctrbid_train SUB` (as in `python -m
//!   ctrbid_train SUB`) a subcommand the trainer's argparse defines.
//!
//! Each problem is printed with the README's path and line; the test fails if there is
//! any. The checking functions are fed made-up READMEs below too, so the check can be
//! seen to bite.

use std::collections::BTreeSet;
use std::path::{Path, PathBuf};
use std::process::Command;

/// Folders (relative to the repository root) whose READMEs are not the project's own.
const SKIP_DIRS: &[&str] =
    &["target", ".venv", ".ort", "data", "fuzz/target", "fuzz/corpus", "node_modules", ".git", "tests/fixtures"];

/// A path in code that starts with one of these is a path into the repository.
const TOP_LEVEL: &[&str] =
    &["src/", "models/", "benches/", "fuzz/", "loadtest/", "deploy/", "tests/", ".ci/", ".cargo/"];
const ROOT_FILES: &[&str] = &["Makefile", "Cargo.toml"];

/// What references are checked against.
struct Known {
    root: PathBuf,
    /// Root-relative prefixes that git ignores (`/target` in `.gitignore` -> `target`).
    ignored: Vec<String>,
    make_targets: BTreeSet<String>,
    /// Subcommands of the `ctrbid` binary.
    subcommands: BTreeSet<String>,
    /// Subcommands of `python -m ctrbid_train`.
    train_commands: BTreeSet<String>,
}

#[derive(Debug)]
struct Problem {
    line: usize,
    message: String,
}

/// A piece of a README: prose, or code (a code span, or one line of a code block).
#[derive(Debug)]
struct Snippet {
    line: usize,
    code: bool,
    text: String,
}

// ---------------------------------------------------------------------------------------
// Reading Markdown

/// Splits `md` into prose and code, each piece with the line it starts on. A code span
/// may run over several lines of one paragraph; a blank line ends it.
fn snippets(md: &str) -> Vec<Snippet> {
    let mut r = Reader { out: Vec::new(), prose: Snippet { line: 1, code: false, text: String::new() }, span: None };
    let mut fence: Option<&str> = None;
    for (i, line) in md.lines().enumerate() {
        let n = i + 1;
        let trimmed = line.trim_start();
        if let Some(marker) = fence {
            if trimmed.starts_with(marker) {
                fence = None;
            } else {
                // Backticks in a code block are literal; in its comments they quote commands.
                r.out.push(Snippet { line: n, code: true, text: line.replace('`', " ") });
            }
        } else if trimmed.starts_with("```") || trimmed.starts_with("~~~") {
            r.end_paragraph(n + 1);
            fence = Some(&trimmed[..3]);
        } else if trimmed.is_empty() {
            r.end_paragraph(n + 1);
        } else {
            let chars: Vec<char> = line.chars().collect();
            let mut j = 0;
            while j < chars.len() {
                if chars[j] == '`' {
                    let run = chars[j..].iter().take_while(|&&c| c == '`').count();
                    r.backticks(n, run);
                    j += run;
                } else {
                    r.push(n, chars[j]);
                    j += 1;
                }
            }
            r.push(n, '\n');
        }
    }
    r.end_paragraph(0);
    r.out.retain(|s| !s.text.trim().is_empty());
    r.out
}

/// The state of [`snippets`] inside a paragraph.
struct Reader {
    out: Vec<Snippet>,
    prose: Snippet,
    /// An open code span: the length of the backtick run that opened it, its text so far.
    span: Option<(usize, Snippet)>,
}

impl Reader {
    fn push(&mut self, line: usize, c: char) {
        let s = match &mut self.span {
            Some((_, s)) => s,
            None => &mut self.prose,
        };
        if s.text.is_empty() {
            s.line = line;
        }
        s.text.push(c);
    }

    /// A run of `run` backticks: it opens a span, closes the open one if as long, or is text.
    fn backticks(&mut self, line: usize, run: usize) {
        match &mut self.span {
            Some((len, _)) if *len == run => {
                let (_, s) = self.span.take().unwrap();
                self.out.push(s);
            }
            Some((_, s)) => s.text.extend(std::iter::repeat_n('`', run)),
            None => {
                let prose = std::mem::replace(&mut self.prose, Snippet { line, code: false, text: String::new() });
                self.out.push(prose);
                self.span = Some((run, Snippet { line, code: true, text: String::new() }));
            }
        }
    }

    fn end_paragraph(&mut self, next_line: usize) {
        if let Some((_, s)) = self.span.take() {
            self.prose.text.push_str(&s.text); // an unclosed backtick is just a character
        }
        let prose = std::mem::replace(&mut self.prose, Snippet { line: next_line, code: false, text: String::new() });
        self.out.push(prose);
    }
}

/// The whitespace-separated words of a snippet, each with its line.
fn words(s: &Snippet) -> Vec<(usize, &str)> {
    let mut out = Vec::new();
    for (k, line) in s.text.split('\n').enumerate() {
        out.extend(line.split_whitespace().map(|w| (s.line + k, w)));
    }
    out
}

/// The targets of the Markdown links in a prose snippet, each with its line.
fn links(s: &Snippet) -> Vec<(usize, String)> {
    let mut out = Vec::new();
    let text = &s.text;
    let mut from = 0;
    while let Some(k) = text[from..].find("](") {
        let start = from + k + 2;
        let Some(len) = text[start..].find(')') else { break };
        let target = text[start..start + len].trim();
        let target = target.split_whitespace().next().unwrap_or("").trim_start_matches('<').trim_end_matches('>');
        let line = s.line + text[..start].matches('\n').count();
        out.push((line, target.to_string()));
        from = start + len;
    }
    out
}

/// GitHub's id for a heading: lower case, punctuation dropped, spaces to hyphens.
fn slug(heading: &str) -> String {
    heading
        .trim()
        .to_lowercase()
        .chars()
        .filter(|c| c.is_alphanumeric() || *c == ' ' || *c == '-' || *c == '_')
        .map(|c| if c == ' ' { '-' } else { c })
        .collect()
}

/// The heading ids of a Markdown text (repeated headings get `-1`, `-2`, ... as on GitHub).
fn anchors(md: &str) -> BTreeSet<String> {
    let mut seen = BTreeSet::new();
    let mut in_fence = false;
    for line in md.lines() {
        let t = line.trim_start();
        if t.starts_with("```") || t.starts_with("~~~") {
            in_fence = !in_fence;
            continue;
        }
        if in_fence || !t.starts_with('#') {
            continue;
        }
        let text = t.trim_start_matches('#');
        if !text.starts_with(' ') {
            continue;
        }
        let base = slug(text);
        let mut id = base.clone();
        let mut k = 0;
        while seen.contains(&id) {
            k += 1;
            id = format!("{base}-{k}");
        }
        seen.insert(id);
    }
    seen
}

// ---------------------------------------------------------------------------------------
// Checking

/// A word of code without the quotes, brackets and punctuation around it.
fn clean(word: &str) -> &str {
    word.trim_start_matches(['(', '[', '"', '\'']).trim_end_matches(['.', ',', ';', ':', ')', ']', '"', '\'', '\\'])
}

/// A word of code as a path: cleaned, and a `:line` suffix taken off; for `VAR=path`
/// and `@path`, the path.
fn clean_path(word: &str) -> &str {
    let word = word.rsplit('=').next().unwrap_or(word);
    let mut w = clean(word.trim_start_matches(['(', '@']));
    // src/x.rs:12 or src/x.rs:12:5
    while let Some((head, tail)) = w.rsplit_once(':') {
        if !tail.is_empty() && tail.chars().all(|c| c.is_ascii_digit()) {
            w = head;
        } else {
            break;
        }
    }
    w
}

fn is_repo_path(p: &str) -> bool {
    TOP_LEVEL.iter().any(|t| p.starts_with(t)) || ROOT_FILES.contains(&p)
}

/// An upper-case stand-in such as `NAME`, `DIR` or `N`.
fn placeholder(component: &str) -> bool {
    let stem = component.split('.').next().unwrap_or(component);
    !stem.is_empty()
        && stem.chars().any(|c| c.is_ascii_uppercase())
        && stem.chars().all(|c| c.is_ascii_uppercase() || c.is_ascii_digit() || c == '_' || c == '-')
}

/// Whether `pattern` (components, `*` matching any run of characters within one)
/// names something under `base`.
fn glob_exists(base: &Path, pattern: &[&str]) -> bool {
    let Some((first, rest)) = pattern.split_first() else { return base.exists() };
    if first.is_empty() {
        return glob_exists(base, rest); // a trailing or doubled slash
    }
    if !first.contains('*') {
        return glob_exists(&base.join(first), rest);
    }
    let Ok(entries) = std::fs::read_dir(base) else { return false };
    entries.flatten().any(|e| wildcard(first, &e.file_name().to_string_lossy()) && glob_exists(&e.path(), rest))
}

fn wildcard(pattern: &str, name: &str) -> bool {
    match pattern.split_once('*') {
        None => pattern == name,
        Some((head, tail)) => {
            name.starts_with(head)
                && (0..=name.len() - head.len())
                    .filter(|&k| name.is_char_boundary(head.len() + k))
                    .any(|k| wildcard(tail, &name[head.len() + k..]))
        }
    }
}

impl Known {
    fn ignored(&self, p: &str) -> bool {
        self.ignored.iter().any(|i| p == i || p.starts_with(&format!("{i}/")))
    }

    /// Whether repository path `p`, named in the README in folder `dir`, exists.
    fn path_ok(&self, dir: &Path, p: &str) -> bool {
        if ["<", "{", "...", "$"].iter().any(|s| p.contains(s)) || self.ignored(p) {
            return true;
        }
        let comps: Vec<&str> = p.split('/').collect();
        if glob_exists(&self.root, &comps) || glob_exists(&self.root.join(dir), &comps) {
            return true;
        }
        !p.contains('*') && comps.iter().any(|c| placeholder(c))
    }

    fn check_code(&self, dir: &Path, s: &Snippet, problems: &mut Vec<Problem>) {
        let words = words(s);
        let mut after_dashdash = false;
        for (k, &(line, word)) in words.iter().enumerate() {
            let mut report = |message: String| problems.push(Problem { line, message });
            let next = || words.get(k + 1).map(|&(_, w)| clean(w)).unwrap_or("");
            match word {
                "cargo" => after_dashdash = false,
                "--" => after_dashdash = true,
                _ => {}
            }

            let p = clean_path(word);
            if is_repo_path(p) && !self.path_ok(dir, p) {
                report(format!("`{p}` does not exist"));
            }

            if word == "make" {
                // make [VAR=value ...] target
                let target = words[k + 1..].iter().map(|&(_, w)| w).find(|w| !w.contains('='));
                if let Some(t) = target.filter(|t| !t.starts_with('-')) {
                    let t = clean(t);
                    if !t.is_empty() && !self.make_targets.contains(t) {
                        report(format!("`make {t}`: the Makefile has no target `{t}`"));
                    }
                }
            }

            for (flag, folder) in [("--bench", "benches"), ("--test", "tests")] {
                let name = if word == flag {
                    Some(next())
                } else {
                    word.strip_prefix(flag).and_then(|w| w.strip_prefix('=')).map(clean)
                };
                if let Some(name) = name.filter(|n| !n.is_empty() && !n.starts_with('-') && !after_dashdash) {
                    if !placeholder(name) && !self.root.join(folder).join(format!("{name}.rs")).is_file() {
                        report(format!("`{flag} {name}`: there is no {folder}/{name}.rs"));
                    }
                }
            }

            let command = |w: &str| {
                w.chars().next().is_some_and(|c| c.is_ascii_lowercase())
                    && w.chars().all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || c == '-')
            };
            if word == "ctrbid" || word.ends_with("/ctrbid") {
                let sub = next();
                if command(sub) && !self.subcommands.contains(sub) {
                    report(format!("`ctrbid {sub}`: `ctrbid --help` lists no such subcommand"));
                }
            }
            if word == "ctrbid_train" {
                let sub = next();
                if command(sub) && !self.train_commands.contains(sub) {
                    report(format!("`ctrbid_train {sub}`: models/ctrbid_train defines no such subcommand"));
                }
            }
        }
    }

    fn check_link(&self, dir: &Path, line: usize, target: &str, problems: &mut Vec<Problem>) {
        if target.is_empty() || target.starts_with('#') || target.contains("://") || target.starts_with("mailto:") {
            return;
        }
        let (path, anchor) = match target.split_once('#') {
            Some((p, a)) => (p, Some(a)),
            None => (target, None),
        };
        let path = path.split('?').next().unwrap_or(path);
        let file = match path.strip_prefix('/') {
            Some(from_root) => self.root.join(from_root),
            None => self.root.join(dir).join(path),
        };
        if !file.exists() {
            problems.push(Problem { line, message: format!("link `{target}`: {} does not exist", file.display()) });
            return;
        }
        if let Some(anchor) = anchor.filter(|a| !a.is_empty()) {
            if file.extension().is_some_and(|e| e == "md") {
                let text = std::fs::read_to_string(&file).unwrap_or_default();
                if !anchors(&text).contains(anchor) {
                    problems.push(Problem { line, message: format!("link `{target}`: no heading `#{anchor}` there") });
                }
            }
        }
    }

    /// Every problem of the README text `md`, which lives in folder `dir` (relative to
    /// the repository root).
    fn check(&self, dir: &Path, md: &str) -> Vec<Problem> {
        let mut problems = Vec::new();
        for s in snippets(md) {
            if s.code {
                self.check_code(dir, &s, &mut problems);
            } else {
                for (line, target) in links(&s) {
                    self.check_link(dir, line, &target, &mut problems);
                }
            }
        }
        problems.sort_by_key(|p| p.line);
        problems
    }
}

// ---------------------------------------------------------------------------------------
// What exists

fn repo() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR"))
}

/// The Makefile's targets: rule heads and `.PHONY` names (variables such as `$(BIN)` aside).
fn make_targets(makefile: &str) -> BTreeSet<String> {
    let mut out = BTreeSet::new();
    for line in makefile.lines() {
        if line.starts_with(['\t', ' ', '#']) {
            continue;
        }
        let Some((head, rest)) = line.split_once(':') else { continue };
        if rest.starts_with('=') || head.contains('=') {
            continue; // NAME := value
        }
        let names = if head.trim() == ".PHONY" { rest } else { head };
        out.extend(names.split_whitespace().filter(|n| !n.starts_with(['$', '.'])).map(String::from));
    }
    out
}

/// The subcommands `ctrbid --help` lists under "Commands:".
fn ctrbid_subcommands() -> BTreeSet<String> {
    let out = Command::new(env!("CARGO_BIN_EXE_ctrbid")).arg("--help").output().expect("ctrbid --help runs");
    let help = String::from_utf8_lossy(&out.stdout);
    let commands: BTreeSet<String> = help
        .lines()
        .skip_while(|l| !l.starts_with("Commands:"))
        .skip(1)
        .take_while(|l| !l.trim().is_empty())
        .filter_map(|l| l.split_whitespace().next().map(String::from))
        .collect();
    assert!(commands.contains("serve"), "ctrbid --help lists no `serve`:\n{help}");
    commands
}

/// The subcommands of `python -m ctrbid_train`: the names its argparse `add_parser` calls give.
fn train_commands(root: &Path) -> BTreeSet<String> {
    let mut out = BTreeSet::new();
    for entry in std::fs::read_dir(root.join("models/ctrbid_train")).expect("models/ctrbid_train") {
        let path = entry.unwrap().path();
        if path.extension().is_none_or(|e| e != "py") {
            continue;
        }
        let text = std::fs::read_to_string(&path).unwrap();
        for piece in text.split("add_parser(").skip(1) {
            let Some(quote) = piece.chars().next().filter(|c| *c == '"' || *c == '\'') else { continue };
            if let Some(name) = piece[1..].split(quote).next() {
                out.insert(name.to_string());
            }
        }
    }
    assert!(out.contains("train"), "no `add_parser(\"train\"` found in models/ctrbid_train");
    out
}

/// `.gitignore`'s root-anchored entries (`/target` -> `target`).
fn ignored(root: &Path) -> Vec<String> {
    let text = std::fs::read_to_string(root.join(".gitignore")).unwrap_or_default();
    text.lines().filter_map(|l| l.trim().strip_prefix('/')).map(|l| l.trim_end_matches('/').to_string()).collect()
}

/// Every README.md under `root`, relative to it, outside `skip`.
fn readmes(root: &Path, skip: &[String]) -> Vec<PathBuf> {
    let mut out = Vec::new();
    let mut todo = vec![PathBuf::new()];
    while let Some(dir) = todo.pop() {
        for entry in std::fs::read_dir(root.join(&dir)).unwrap() {
            let entry = entry.unwrap();
            let rel = dir.join(entry.file_name());
            let rel_str = rel.to_string_lossy().replace('\\', "/");
            if entry.file_type().unwrap().is_dir() {
                if !skip.contains(&rel_str) && entry.file_name() != "__pycache__" {
                    todo.push(rel);
                }
            } else if entry.file_name() == "README.md" {
                out.push(rel);
            }
        }
    }
    out.sort();
    out
}

#[test]
fn readmes_name_only_what_exists() {
    let root = repo();
    let ignored = ignored(&root);
    let known = Known {
        make_targets: make_targets(&std::fs::read_to_string(root.join("Makefile")).unwrap()),
        subcommands: ctrbid_subcommands(),
        train_commands: train_commands(&root),
        ignored: ignored.clone(),
        root: root.clone(),
    };
    let skip: Vec<String> = SKIP_DIRS.iter().map(|s| s.to_string()).chain(ignored).collect();
    let files = readmes(&root, &skip);
    assert!(files.iter().any(|f| f == Path::new("README.md")), "no README.md at the root");

    let mut failures = Vec::new();
    for file in &files {
        let text = std::fs::read_to_string(root.join(file)).unwrap();
        let dir = file.parent().unwrap_or(Path::new(""));
        for p in known.check(dir, &text) {
            failures.push(format!("{}:{}: {}", file.display(), p.line, p.message));
        }
    }
    eprintln!("checked {}", files.iter().map(|f| f.display().to_string()).collect::<Vec<_>>().join(", "));
    for f in &failures {
        eprintln!("{f}");
    }
    assert!(failures.is_empty(), "{} problem(s) in {} README(s), listed above", failures.len(), files.len());
}

// ---------------------------------------------------------------------------------------
// The check, on made-up READMEs

fn made_up_known() -> Known {
    Known {
        root: repo(),
        ignored: vec!["target".into(), "fuzz/corpus".into()],
        make_targets: ["run", "test", "build"].into_iter().map(String::from).collect(),
        subcommands: ["serve", "simulate"].into_iter().map(String::from).collect(),
        train_commands: ["zoo", "train"].into_iter().map(String::from).collect(),
    }
}

/// The problems of `md`, as README text in folder `dir`, as "line: message".
fn problems(dir: &str, md: &str) -> Vec<String> {
    made_up_known().check(Path::new(dir), md).into_iter().map(|p| format!("{}: {}", p.line, p.message)).collect()
}

#[test]
fn broken_references_are_reported_with_their_line() {
    let md = "# Title\n\
              \n\
              See [the config](deploy/ctrbid.toml) and [a guide](docs/guide.md).\n\
              The code is in `src/lib.rs` and `src/no_such_module.rs`.\n\
              \n\
              ```sh\n\
              make run\n\
              make deploy-everything   # no such target\n\
              cargo bench --bench nosuch\n\
              cargo test --release --test nosuch_e2e\n\
              target/release/ctrbid frobnicate --now\n\
              python -m ctrbid_train distill\n\
              ```\n\
              A [bad anchor](src/README.md#no-such-heading).\n";
    let got = problems("", md);
    let expect = [
        ("3: link `docs/guide.md`", "broken link"),
        ("4: `src/no_such_module.rs` does not exist", "missing path"),
        ("8: `make deploy-everything`", "unknown make target"),
        ("9: `--bench nosuch`", "unknown bench"),
        ("10: `--test nosuch_e2e`", "unknown test"),
        ("11: `ctrbid frobnicate`", "unknown subcommand"),
        ("12: `ctrbid_train distill`", "unknown trainer subcommand"),
        ("14: link `src/README.md#no-such-heading`: no heading", "unknown anchor"),
    ];
    for (prefix, what) in expect {
        assert!(got.iter().any(|g| g.starts_with(prefix)), "{what} not reported as `{prefix}...`; got {got:#?}");
    }
    assert_eq!(got.len(), expect.len(), "unexpected problems: {got:#?}");
}

#[test]
fn valid_references_are_not_reported() {
    let md = "# Title\n\
              \n\
              [Config](deploy/ctrbid.toml), [code](src/), [request path](src/README.md#code-map),\n\
              [cargo-fuzz](https://github.com/rust-fuzz/cargo-fuzz), [above](#title), [mail](mailto:a@b.c).\n\
              `src/lib.rs:12`, (`src/scoring/batcher.rs`), `Makefile`, `Cargo.toml`, `loadtest/scenarios/*/scenario.toml`,\n\
              `target/release/ctrbid`, `fuzz/corpus/parse_request/`, `fuzz/artifacts/<target>/crash-<sha1>`,\n\
              `loadtest/scenarios/NAME/scenario.toml`, `tests/fixtures/openrtb/NOTICE`, a span over two lines: `ctrbid\n\
              serve --help`.\n\
              \n\
              ```sh\n\
              make run    # the bidder (`make test` runs every test)\n\
              CTRBID_LISTEN=0.0.0.0:9000 make run\n\
              cargo bench --bench parse --bench handler -- --test\n\
              cargo test --release --test docs\n\
              target/release/ctrbid simulate --out data/sim\n\
              PYTHONPATH=models .venv/bin/python -m ctrbid_train zoo --export models/default\n\
              BODY=tests/fixtures/openrtb/prebid/appnexus-02e2f89eb2b8fcdd.json loadtest/ab_single.sh\n\
              BIN=../base/target/release/ctrbid PHASES=p70 loadtest/overload.sh   # an environment, not a subcommand\n\
              (cd ../base && make build)\n\
              ```\n";
    assert_eq!(problems("", md), Vec::<String>::new());
    // From a folder's README: links from that folder, paths from either place.
    let md = "[config](../deploy/ctrbid.toml), [report](default/report.md); `tests/test_export.py`, `models/feature_spec.json`.\n";
    assert_eq!(problems("models", md), Vec::<String>::new());
}

#[test]
fn headings_become_github_ids() {
    let ids = anchors("# ctrbid\n## The model zoo at 5M (`make models`, 2026-12-03)\n### Latest sitting: 2026-12-03 20:14\n## Notices\n## Notices\n```\n# not a heading\n```\n");
    let want = [
        "ctrbid",
        "the-model-zoo-at-5m-make-models-2026-12-03",
        "latest-sitting-2026-12-03-2014",
        "notices",
        "notices-1",
    ];
    assert_eq!(ids, want.into_iter().map(String::from).collect());
}
