//! The local documentation generator: reads Rust, Python or prose and writes a reference of
//! its public items with their signatures and doc comments, as Markdown or HTML.
//!
//! A line-based reader, not a compiler: it tracks braces (Rust) or indentation (Python) to know
//! which items are inside which, and takes doc comments (`///`, `//!`, docstrings) as written.

use super::requests::DocFormat;

/// The language a source is read as.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Language {
    Rust,
    Python,
    Prose,
}

impl Language {
    pub fn as_str(self) -> &'static str {
        match self {
            Language::Rust => "rust",
            Language::Python => "python",
            Language::Prose => "prose",
        }
    }
}

/// One documented item.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Item {
    /// `fn`, `struct`, `enum`, `trait`, `const`, `static`, `type`, `mod`, `impl`, `macro`,
    /// `class`, `def`, `field`, `variant`, `method`, `section`.
    pub kind: &'static str,
    pub name: String,
    pub signature: String,
    pub docs: String,
    pub members: Vec<Item>,
}

/// A parsed source: its own docs and its items.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Reference {
    pub language: Language,
    pub summary: String,
    pub items: Vec<Item>,
}

impl Reference {
    /// Every item name, members included.
    pub fn names(&self) -> Vec<&str> {
        fn walk<'a>(items: &'a [Item], out: &mut Vec<&'a str>) {
            for i in items {
                out.push(&i.name);
                walk(&i.members, out);
            }
        }
        let mut out = Vec::new();
        walk(&self.items, &mut out);
        out
    }
}

/// Guesses the language of `source`.
pub fn detect(source: &str) -> Language {
    let mut rust = 0;
    let mut python = 0;
    for l in source.lines() {
        let t = l.trim_start();
        if t.starts_with("///") || t.starts_with("//!") || t.starts_with("#[") {
            rust += 3;
        }
        for p in [
            "pub fn ",
            "fn ",
            "pub struct ",
            "struct ",
            "impl ",
            "pub enum ",
            "use ",
            "pub trait ",
            "mod ",
            "let ",
        ] {
            if t.starts_with(p) {
                rust += 2;
            }
        }
        if t.ends_with(';') || t.ends_with('{') {
            rust += 1;
        }
        for p in ["def ", "async def ", "class ", "import ", "from "] {
            if t.starts_with(p) {
                python += 2;
            }
        }
        if (t.starts_with("def ") || t.starts_with("class ") || t.starts_with("async def "))
            && t.ends_with(':')
        {
            python += 3;
        }
        if t.starts_with("\"\"\"") || t.starts_with("'''") || t.starts_with("@") {
            python += 1;
        }
    }
    if rust >= 4 && rust >= python {
        Language::Rust
    } else if python >= 4 {
        Language::Python
    } else {
        Language::Prose
    }
}

/// Reads `source` in the language it looks like.
pub fn parse(source: &str) -> Reference {
    let language = detect(source);
    match language {
        Language::Rust => parse_rust(source),
        Language::Python => parse_python(source),
        Language::Prose => parse_prose(source),
    }
}

/// Removes string literals and a trailing `//` comment, so braces inside them are not counted.
fn code_only(line: &str) -> String {
    let mut out = String::new();
    let mut chars = line.chars().peekable();
    let mut in_str = false;
    while let Some(c) = chars.next() {
        if in_str {
            if c == '\\' {
                chars.next();
            } else if c == '"' {
                in_str = false;
            }
            continue;
        }
        match c {
            '"' => in_str = true,
            '/' if chars.peek() == Some(&'/') => break,
            '\'' => {
                // A char literal like '{' (but not a lifetime like 'a): skip it whole.
                let rest: String = chars.clone().take(3).collect();
                if rest.len() >= 2 && rest.chars().nth(1) == Some('\'') {
                    chars.next();
                    chars.next();
                } else if rest.starts_with('\\') {
                    for x in chars.by_ref() {
                        if x == '\'' {
                            break;
                        }
                    }
                } else {
                    out.push(c);
                }
            }
            _ => out.push(c),
        }
    }
    out
}

const RUST_KINDS: &[&str] = &[
    "fn",
    "struct",
    "enum",
    "trait",
    "const",
    "static",
    "type",
    "mod",
    "union",
    "macro_rules!",
];

/// `pub [async|const|unsafe|extern "C"] KIND NAME…` → (kind, name), for a public item line.
fn rust_item(t: &str, in_trait: bool) -> Option<(&'static str, String)> {
    let rest = if let Some(r) = t.strip_prefix("pub ") {
        r
    } else if in_trait {
        t
    } else if let Some(r) = t.strip_prefix("macro_rules!") {
        // #[macro_export] macros are public; plain ones are kept too: they are part of the API
        // a reader of this source sees.
        let name: String = r
            .trim()
            .chars()
            .take_while(|c| c.is_alphanumeric() || *c == '_')
            .collect();
        return (!name.is_empty()).then_some(("macro", name));
    } else {
        return None;
    };
    let mut words = rest.split_whitespace().peekable();
    // Qualifiers before the kind; `const NAME` is an item, `const fn` a qualifier.
    loop {
        match words.peek().copied() {
            Some("async" | "unsafe" | "extern" | "\"C\"" | "default") => {
                words.next();
            }
            Some("const") => {
                let next = words.clone().nth(1).unwrap_or("");
                if ["fn", "unsafe", "async", "extern"].contains(&next) {
                    words.next();
                } else {
                    break;
                }
            }
            _ => break,
        }
    }
    let kind_word = words.next()?;
    let kind = RUST_KINDS.iter().find(|k| **k == kind_word)?;
    let name: String = words
        .next()?
        .chars()
        .take_while(|c| c.is_alphanumeric() || *c == '_')
        .collect();
    if name.is_empty() {
        return None;
    }
    let kind: &'static str = if *kind == "macro_rules!" {
        "macro"
    } else {
        kind
    };
    Some((kind, name))
}

fn parse_rust(source: &str) -> Reference {
    let lines: Vec<&str> = source.lines().collect();
    let mut summary = Vec::new();
    let mut docs: Vec<String> = Vec::new();
    let mut items: Vec<Item> = Vec::new();
    // Open containers: (index path into items, brace depth inside it, kind).
    let mut stack: Vec<(Vec<usize>, i64, &'static str)> = Vec::new();
    let mut depth: i64 = 0;
    let mut i = 0;
    while i < lines.len() {
        let raw = lines[i];
        let t = raw.trim();
        i += 1;
        if let Some(d) = t.strip_prefix("//!") {
            summary.push(d.strip_prefix(' ').unwrap_or(d).to_string());
            continue;
        }
        if let Some(d) = t.strip_prefix("///") {
            docs.push(d.strip_prefix(' ').unwrap_or(d).to_string());
            continue;
        }
        if t.starts_with("#[") || t.starts_with("#![") || t.is_empty() || t.starts_with("//") {
            if t.starts_with("//") && !t.starts_with("///") {
                docs.clear();
            }
            continue;
        }
        let top = stack.last().map(|(_, d, k)| (*d, *k));
        // Only items directly in the file or in an open container (not inside fn bodies).
        let direct = match top {
            None => depth == 0,
            Some((d, _)) => d == depth,
        };
        let container = top.map(|(_, k)| k);
        let mut new_item: Option<Item> = None;
        if direct {
            if t.starts_with("impl")
                && (t[4..].starts_with(' ') || t[4..].starts_with('<'))
                && container.is_none_or(|k| k == "mod")
            {
                let sig = collect_signature(&lines, i - 1, true).0;
                let name = sig
                    .trim_start_matches("impl")
                    .trim()
                    .trim_end_matches('{')
                    .trim()
                    .to_string();
                let name = strip_generics_prefix(&name);
                new_item = Some(Item {
                    kind: "impl",
                    name,
                    signature: sig,
                    docs: docs.join("\n"),
                    members: vec![],
                });
            } else if let Some((kind, name)) = rust_item(t, container == Some("trait")) {
                let (sig, _) =
                    collect_signature(&lines, i - 1, !matches!(kind, "const" | "static" | "type"));
                let kind = match (container, kind) {
                    (Some("impl") | Some("trait"), "fn") => "method",
                    _ => kind,
                };
                new_item = Some(Item {
                    kind,
                    name,
                    signature: sig,
                    docs: docs.join("\n"),
                    members: vec![],
                });
            } else if container == Some("struct") {
                if let Some(f) = t.strip_prefix("pub ") {
                    if let Some((name, ty)) = f.split_once(':') {
                        let name = name.trim().to_string();
                        if name.chars().all(|c| c.is_alphanumeric() || c == '_') {
                            new_item = Some(Item {
                                kind: "field",
                                name,
                                signature: format!(
                                    "{}: {}",
                                    f.split(':').next().unwrap_or("").trim(),
                                    ty.trim().trim_end_matches(',')
                                ),
                                docs: docs.join("\n"),
                                members: vec![],
                            });
                        }
                    }
                }
            } else if container == Some("enum") {
                let name: String = t
                    .chars()
                    .take_while(|c| c.is_alphanumeric() || *c == '_')
                    .collect();
                if !name.is_empty() && name.starts_with(|c: char| c.is_uppercase()) {
                    new_item = Some(Item {
                        kind: "variant",
                        name,
                        signature: t.trim_end_matches(',').to_string(),
                        docs: docs.join("\n"),
                        members: vec![],
                    });
                }
            }
        }
        docs.clear();
        let code = code_only(raw);
        let opens = code.matches('{').count() as i64;
        let closes = code.matches('}').count() as i64;
        if let Some(item) = new_item {
            // Attach to its container (or the top level) and open it if its body starts here or
            // on a following signature line.
            let stops = !matches!(item.kind, "const" | "static" | "type");
            let (_, last) = collect_signature(&lines, i - 1, stops);
            let path = attach(&mut items, &stack, item);
            let opens_body = code_only(lines[last]).contains('{');
            let kind = item_kind(&items, &path);
            if opens_body && ["impl", "trait", "struct", "enum", "mod"].contains(&kind) {
                stack.push((path.clone(), depth + 1, kind));
            }
            // Count the braces of the whole signature at once.
            let mut d_open = 0;
            let mut d_close = 0;
            for l in &lines[i - 1..=last] {
                let c = code_only(l);
                d_open += c.matches('{').count() as i64;
                d_close += c.matches('}').count() as i64;
            }
            depth += d_open - d_close;
            // A body that opens and closes on its own line: `pub enum E { A, B(u8) }`.
            if d_open > 0 && d_open == d_close && (kind == "enum" || kind == "struct") {
                let code = code_only(lines[last]);
                if let (Some(a), Some(b)) = (code.find('{'), code.rfind('}')) {
                    let members = inline_members(kind, &code[a + 1..b]);
                    item_at(&mut items, &path).members.extend(members);
                }
            }
            i = last + 1;
        } else {
            depth += opens - closes;
        }
        while stack.last().is_some_and(|(_, d, _)| depth < *d) {
            stack.pop();
        }
    }
    // An impl block with no public methods (a trait impl) adds nothing to a reference.
    items.retain(|i| i.kind != "impl" || !i.members.is_empty());
    Reference {
        language: Language::Rust,
        summary: summary.join("\n").trim().to_string(),
        items,
    }
}

fn strip_generics_prefix(s: &str) -> String {
    let s = s.trim();
    if let Some(rest) = s.strip_prefix('<') {
        let mut depth = 1;
        for (i, c) in rest.char_indices() {
            match c {
                '<' => depth += 1,
                '>' => {
                    depth -= 1;
                    if depth == 0 {
                        return rest[i + 1..].trim().to_string();
                    }
                }
                _ => {}
            }
        }
    }
    s.split(" where").next().unwrap_or(s).trim().to_string()
}

fn item_at<'a>(items: &'a mut [Item], path: &[usize]) -> &'a mut Item {
    let mut cur = &mut items[path[0]];
    for &p in &path[1..] {
        cur = &mut cur.members[p];
    }
    cur
}

/// The variants or public fields of a body written on one line.
fn inline_members(kind: &str, body: &str) -> Vec<Item> {
    let mut parts = Vec::new();
    let mut depth = 0;
    let mut cur = String::new();
    for c in body.chars() {
        match c {
            '(' | '{' | '<' | '[' => depth += 1,
            ')' | '}' | '>' | ']' => depth -= 1,
            ',' if depth == 0 => {
                parts.push(std::mem::take(&mut cur));
                continue;
            }
            _ => {}
        }
        cur.push(c);
    }
    parts.push(cur);
    parts
        .iter()
        .map(|p| p.trim())
        .filter_map(|p| {
            let (k, decl) = if kind == "enum" {
                ("variant", p)
            } else {
                ("field", p.strip_prefix("pub ")?)
            };
            let name: String = decl
                .chars()
                .take_while(|c| c.is_alphanumeric() || *c == '_')
                .collect();
            (!name.is_empty()).then(|| Item {
                kind: k,
                name,
                signature: decl.to_string(),
                docs: String::new(),
                members: vec![],
            })
        })
        .collect()
}

fn item_kind(items: &[Item], path: &[usize]) -> &'static str {
    let mut cur = &items[path[0]];
    for &p in &path[1..] {
        cur = &cur.members[p];
    }
    cur.kind
}

fn attach(
    items: &mut Vec<Item>,
    stack: &[(Vec<usize>, i64, &'static str)],
    item: Item,
) -> Vec<usize> {
    let Some((path, _, _)) = stack.last() else {
        items.push(item);
        return vec![items.len() - 1];
    };
    let mut cur = &mut items[path[0]];
    for &p in &path[1..] {
        cur = &mut cur.members[p];
    }
    cur.members.push(item);
    let mut p = path.clone();
    p.push(cur.members.len() - 1);
    p
}

/// The signature starting at line `start`: up to the body's `{` or the closing `;` (or the
/// end of a tuple struct or variant); returns it on one line and the index of its last line.
fn collect_signature(lines: &[&str], start: usize, stop_at_brace: bool) -> (String, usize) {
    let mut sig = String::new();
    let mut parens = 0i64;
    for (k, l) in lines.iter().enumerate().skip(start) {
        let code = code_only(l);
        let code = code.trim();
        for c in code.chars() {
            match c {
                '(' | '[' => parens += 1,
                ')' | ']' => parens -= 1,
                _ => {}
            }
        }
        if !sig.is_empty() {
            sig.push(' ');
        }
        if let Some(pos) = code.find('{').filter(|_| parens <= 0 && stop_at_brace) {
            sig.push_str(code[..pos].trim());
            return (sig.trim().to_string(), k);
        }
        sig.push_str(code);
        if parens <= 0 && (code.ends_with(';') || code.ends_with(',')) {
            return (sig.trim_end_matches([';', ',']).trim().to_string(), k);
        }
        if k - start > 30 {
            break;
        }
    }
    (sig.trim().to_string(), start)
}

fn indent(l: &str) -> usize {
    l.chars()
        .take_while(|c| *c == ' ' || *c == '\t')
        .map(|c| if c == '\t' { 4 } else { 1 })
        .sum()
}

/// A docstring starting at line `at` (`"""` or `'''`): its text and the line after it.
fn docstring(lines: &[&str], at: usize) -> Option<(String, usize)> {
    let t = lines.get(at)?.trim();
    let quote = ["\"\"\"", "'''"].into_iter().find(|q| {
        t.starts_with(q) || t.strip_prefix(['r', 'u']).is_some_and(|r| r.starts_with(q))
    })?;
    let body = &t[t.find(quote)? + 3..];
    if let Some(end) = body.find(quote) {
        return Some((body[..end].trim().to_string(), at + 1));
    }
    let mut text = vec![body.to_string()];
    let base = lines[at].len() - lines[at].trim_start().len();
    for (k, l) in lines.iter().enumerate().skip(at + 1) {
        if let Some(end) = l.find(quote) {
            text.push(l[..end].to_string());
            let lines: Vec<String> = text
                .iter()
                .map(|s| {
                    if s.len() >= base && s[..base].trim().is_empty() {
                        s[base..].to_string()
                    } else {
                        s.trim().to_string()
                    }
                })
                .collect();
            return Some((lines.join("\n").trim().to_string(), k + 1));
        }
        text.push(l.to_string());
    }
    Some((text.join("\n").trim().to_string(), lines.len()))
}

fn parse_python(source: &str) -> Reference {
    let lines: Vec<&str> = source.lines().collect();
    let mut i = 0;
    while i < lines.len() && (lines[i].trim().is_empty() || lines[i].trim_start().starts_with('#'))
    {
        i += 1;
    }
    let mut summary = String::new();
    if let Some((d, next)) = docstring(&lines, i) {
        summary = d;
        i = next;
    }
    let mut items: Vec<Item> = Vec::new();
    // Open classes: (index in items, indentation of the class line).
    let mut class: Option<(usize, usize)> = None;
    let mut comments: Vec<String> = Vec::new();
    while i < lines.len() {
        let l = lines[i];
        let t = l.trim();
        if t.is_empty() {
            i += 1;
            continue;
        }
        let ind = indent(l);
        if class.is_some_and(|(_, ci)| ind <= ci) {
            class = None;
        }
        if let Some(c) = t.strip_prefix('#') {
            comments.push(c.trim().to_string());
            i += 1;
            continue;
        }
        let def = t
            .strip_prefix("async def ")
            .map(|r| ("def", r))
            .or_else(|| t.strip_prefix("def ").map(|r| ("def", r)))
            .or_else(|| t.strip_prefix("class ").map(|r| ("class", r)));
        let Some((kind, rest)) = def else {
            comments.clear();
            i += 1;
            continue;
        };
        let name: String = rest
            .chars()
            .take_while(|c| c.is_alphanumeric() || *c == '_')
            .collect();
        // The signature may span lines: up to the ':' that closes it.
        let mut sig = t.to_string();
        let mut j = i;
        let mut parens = t.matches('(').count() as i64 - t.matches(')').count() as i64;
        while (parens > 0 || !sig.trim_end().ends_with(':')) && j + 1 < lines.len() && j - i < 30 {
            j += 1;
            let n = lines[j].trim();
            parens += n.matches('(').count() as i64 - n.matches(')').count() as i64;
            sig.push(' ');
            sig.push_str(n);
        }
        let sig = sig.trim_end().trim_end_matches(':').to_string();
        let (docs, next) = match docstring(&lines, j + 1) {
            Some((d, n)) => (d, n),
            None => (comments.join("\n"), j + 1),
        };
        comments.clear();
        let public = !name.starts_with('_') || name == "__init__";
        let inside = class.filter(|(_, ci)| ind > *ci);
        // Nested functions (inside a def) are not part of the API: skip bodies of defs.
        let nested_in_def = inside.is_none() && ind > 0;
        if public && !nested_in_def {
            let item = Item {
                kind: if inside.is_some() && kind == "def" {
                    "method"
                } else {
                    kind
                },
                name,
                signature: sig,
                docs,
                members: vec![],
            };
            match inside {
                Some((ci, _)) => items[ci].members.push(item),
                None => {
                    items.push(item);
                    if kind == "class" {
                        class = Some((items.len() - 1, ind));
                    }
                }
            }
        }
        // Skip the body of a def so its inner defs and locals are not read as items.
        i = next;
        if kind == "def" {
            while i < lines.len() && (lines[i].trim().is_empty() || indent(lines[i]) > ind) {
                i += 1;
            }
        }
    }
    Reference {
        language: Language::Python,
        summary,
        items,
    }
}

fn parse_prose(source: &str) -> Reference {
    let mut items: Vec<Item> = Vec::new();
    let mut summary = Vec::new();
    let mut current: Option<Item> = None;
    let blocks: Vec<&str> = source
        .split("\n\n")
        .map(str::trim)
        .filter(|b| !b.is_empty())
        .collect();
    for b in blocks {
        let first = b.lines().next().unwrap_or("").trim();
        let rest = b.lines().skip(1).collect::<Vec<_>>().join("\n");
        let heading = if let Some(h) = first.strip_prefix('#') {
            Some(h.trim_start_matches('#').trim().to_string())
        } else if b.lines().nth(1).is_some_and(|l| {
            let l = l.trim();
            !l.is_empty() && l.chars().all(|c| c == '=' || c == '-')
        }) || (b.lines().count() == 1
            && first.len() <= 80
            && !first.ends_with(['.', '!', '?', ':', ';', ',']))
        {
            Some(first.to_string())
        } else {
            None
        };
        match heading {
            Some(h) => {
                if let Some(c) = current.take() {
                    items.push(c);
                }
                let body = if b
                    .lines()
                    .nth(1)
                    .is_some_and(|l| l.trim().chars().all(|c| c == '=' || c == '-'))
                {
                    b.lines().skip(2).collect::<Vec<_>>().join("\n")
                } else {
                    rest
                };
                current = Some(Item {
                    kind: "section",
                    name: h,
                    signature: String::new(),
                    docs: body.trim().to_string(),
                    members: vec![],
                });
            }
            None => match &mut current {
                Some(c) => {
                    if !c.docs.is_empty() {
                        c.docs.push_str("\n\n");
                    }
                    c.docs.push_str(b);
                }
                None => summary.push(b.to_string()),
            },
        }
    }
    if let Some(c) = current {
        items.push(c);
    }
    Reference {
        language: Language::Prose,
        summary: summary.join("\n\n"),
        items,
    }
}

fn anchor(s: &str) -> String {
    s.to_lowercase()
        .chars()
        .map(|c| if c.is_alphanumeric() { c } else { '-' })
        .collect::<String>()
        .trim_matches('-')
        .to_string()
}

fn kind_heading(kind: &str) -> &'static str {
    match kind {
        "fn" | "def" => "Functions",
        "struct" => "Structs",
        "enum" => "Enums",
        "trait" => "Traits",
        "const" | "static" => "Constants and statics",
        "type" => "Type aliases",
        "mod" => "Modules",
        "impl" => "Implementations",
        "macro" => "Macros",
        "class" => "Classes",
        "union" => "Unions",
        _ => "Sections",
    }
}

const ORDER: &[&str] = &[
    "Modules",
    "Classes",
    "Structs",
    "Enums",
    "Unions",
    "Traits",
    "Type aliases",
    "Constants and statics",
    "Functions",
    "Macros",
    "Implementations",
    "Sections",
];

fn first_sentence(s: &str) -> String {
    let first = s.split("\n\n").next().unwrap_or("").replace('\n', " ");
    match first.find(". ") {
        Some(i) => first[..=i].to_string(),
        None => first,
    }
}

fn member_heading(kind: &str) -> &'static str {
    match kind {
        "field" => "Fields",
        "variant" => "Variants",
        "method" => "Methods",
        _ => "Items",
    }
}

/// The reference as Markdown.
pub fn markdown(title: &str, r: &Reference) -> String {
    let mut out = format!("# {title}\n\n");
    if !r.summary.is_empty() {
        out.push_str(&r.summary);
        out.push_str("\n\n");
    }
    out.push_str(&format!(
        "*Read as {}; {} items.*\n\n",
        r.language.as_str(),
        r.names().len()
    ));
    if r.items.is_empty() {
        out.push_str("No public items were found.\n");
        return out;
    }
    out.push_str("## Contents\n\n");
    for i in &r.items {
        out.push_str(&format!(
            "- [`{}`](#{}) ({})\n",
            i.name,
            anchor(&format!("{} {}", i.kind, i.name)),
            i.kind
        ));
    }
    out.push('\n');
    let code_lang = match r.language {
        Language::Rust => "rust",
        Language::Python => "python",
        Language::Prose => "",
    };
    for group in ORDER {
        let in_group: Vec<&Item> = r
            .items
            .iter()
            .filter(|i| kind_heading(i.kind) == *group)
            .collect();
        if in_group.is_empty() {
            continue;
        }
        if r.language != Language::Prose {
            out.push_str(&format!("## {group}\n\n"));
        }
        for item in in_group {
            if r.language == Language::Prose {
                out.push_str(&format!("## {}\n\n", item.name));
                if !item.docs.is_empty() {
                    out.push_str(&format!(
                        "> {}\n\n{}\n\n",
                        first_sentence(&item.docs),
                        item.docs
                    ));
                }
                continue;
            }
            out.push_str(&format!("### {} `{}`\n\n", item.kind, item.name));
            if !item.signature.is_empty() {
                out.push_str(&format!("```{code_lang}\n{}\n```\n\n", item.signature));
            }
            if item.docs.is_empty() {
                out.push_str("*Undocumented.*\n\n");
            } else {
                out.push_str(&item.docs);
                out.push_str("\n\n");
            }
            let mut kinds: Vec<&str> = item.members.iter().map(|m| m.kind).collect();
            kinds.dedup();
            for k in kinds {
                out.push_str(&format!("**{}**\n\n", member_heading(k)));
                for m in item.members.iter().filter(|m| m.kind == k) {
                    let doc = first_sentence(&m.docs);
                    let shown = if m.signature.is_empty() {
                        m.name.clone()
                    } else {
                        m.signature.clone()
                    };
                    if doc.is_empty() {
                        out.push_str(&format!("- `{}`: `{shown}`\n", m.name));
                    } else {
                        out.push_str(&format!("- `{}`: `{shown}` — {doc}\n", m.name));
                    }
                }
                out.push('\n');
            }
        }
    }
    out
}

fn esc(s: &str) -> String {
    s.replace('&', "&amp;")
        .replace('<', "&lt;")
        .replace('>', "&gt;")
        .replace('"', "&quot;")
}

fn html_paragraphs(s: &str) -> String {
    s.split("\n\n")
        .filter(|p| !p.trim().is_empty())
        .map(|p| format!("<p>{}</p>\n", esc(p.trim())))
        .collect()
}

/// The reference as a standalone HTML page.
pub fn html(title: &str, r: &Reference) -> String {
    let mut body = format!("<h1>{}</h1>\n{}", esc(title), html_paragraphs(&r.summary));
    body.push_str(&format!(
        "<p class=\"meta\">Read as {}; {} items.</p>\n",
        r.language.as_str(),
        r.names().len()
    ));
    body.push_str("<nav><h2>Contents</h2><ul>\n");
    for i in &r.items {
        body.push_str(&format!(
            "<li><a href=\"#{}\"><code>{}</code></a> ({})</li>\n",
            anchor(&format!("{} {}", i.kind, i.name)),
            esc(&i.name),
            i.kind
        ));
    }
    body.push_str("</ul></nav>\n");
    for group in ORDER {
        let in_group: Vec<&Item> = r
            .items
            .iter()
            .filter(|i| kind_heading(i.kind) == *group)
            .collect();
        if in_group.is_empty() {
            continue;
        }
        body.push_str(&format!("<h2>{}</h2>\n", esc(group)));
        for item in in_group {
            body.push_str(&format!(
                "<section id=\"{}\"><h3>{} <code>{}</code></h3>\n",
                anchor(&format!("{} {}", item.kind, item.name)),
                item.kind,
                esc(&item.name)
            ));
            if !item.signature.is_empty() {
                body.push_str(&format!(
                    "<pre><code>{}</code></pre>\n",
                    esc(&item.signature)
                ));
            }
            body.push_str(&html_paragraphs(&item.docs));
            if !item.members.is_empty() {
                body.push_str("<ul>\n");
                for m in &item.members {
                    body.push_str(&format!(
                        "<li>{} <code>{}</code>{}</li>\n",
                        m.kind,
                        esc(&m.name),
                        if m.docs.is_empty() {
                            String::new()
                        } else {
                            format!(": {}", esc(&first_sentence(&m.docs)))
                        }
                    ));
                }
                body.push_str("</ul>\n");
            }
            body.push_str("</section>\n");
        }
    }
    format!(
        "<!DOCTYPE html>\n<html lang=\"en\"><head><meta charset=\"utf-8\"><title>{}</title>\n<style>body{{font-family:system-ui,sans-serif;max-width:52rem;margin:2rem auto;padding:0 1rem;line-height:1.5}}pre{{background:#f4f4f4;padding:.6rem;overflow:auto}}code{{font-family:ui-monospace,monospace}}.meta{{color:#666}}section{{border-top:1px solid #ddd;margin-top:1rem}}</style>\n</head><body>\n{body}</body></html>\n",
        esc(title)
    )
}

/// Documents `source` in `format`; returns the text and what was read.
pub fn generate(title: Option<&str>, source: &str, format: DocFormat) -> (String, Reference) {
    let r = parse(source);
    let title = title
        .map(str::to_string)
        .unwrap_or_else(|| match r.language {
            Language::Prose => r
                .items
                .first()
                .map(|i| i.name.clone())
                .unwrap_or_else(|| "Reference".into()),
            _ => "API reference".into(),
        });
    let text = match format {
        DocFormat::Markdown => markdown(&title, &r),
        DocFormat::Html => html(&title, &r),
    };
    (text, r)
}

#[cfg(test)]
mod tests {
    use super::*;

    const RUST: &str = r#"//! A tiny geometry crate.

use std::fmt;

/// A point in the plane.
#[derive(Debug)]
pub struct Point {
    /// Horizontal.
    pub x: f64,
    pub y: f64,
    hidden: u8,
}

/// Shapes we know.
pub enum Shape {
    /// A round one.
    Circle { r: f64 },
    Square(f64),
}

impl Point {
    /// Makes a point.
    pub fn new(x: f64, y: f64) -> Self {
        let s = "{ not a brace";
        Point { x, y, hidden: 0 }
    }
    fn private(&self) {}
}

/// Things with an area.
pub trait Area {
    /// The area.
    fn area(&self) -> f64;
}

pub const ORIGIN: Point = Point { x: 0.0, y: 0.0, hidden: 0 };

/// Distance between
/// two points.
pub fn distance(
    a: &Point,
    b: &Point,
) -> f64 {
    ((a.x - b.x).powi(2) + (a.y - b.y).powi(2)).sqrt()
}

fn helper() {}
pub async fn fetch() {}
"#;

    #[test]
    fn rust_items_and_docs_are_found() {
        let r = parse(RUST);
        assert_eq!(r.language, Language::Rust);
        assert_eq!(r.summary, "A tiny geometry crate.");
        let names = r.names();
        for n in [
            "Point", "x", "y", "Shape", "Circle", "Square", "new", "Area", "area", "ORIGIN",
            "distance", "fetch",
        ] {
            assert!(names.contains(&n), "{n} missing from {names:?}");
        }
        for n in ["hidden", "private", "helper"] {
            assert!(!names.contains(&n), "{n} is private");
        }
        let d = r.items.iter().find(|i| i.name == "distance").unwrap();
        assert_eq!(d.docs, "Distance between\ntwo points.");
        assert_eq!(
            d.signature,
            "pub fn distance( a: &Point, b: &Point, ) -> f64"
        );
        let md = markdown("Geo", &r);
        assert!(md.contains("### fn `distance`"));
        assert!(md.contains("Makes a point."));
    }

    #[test]
    fn python_items_and_docstrings_are_found() {
        let src = "\"\"\"Shapes module.\"\"\"\nimport math\n\nclass Circle(Shape):\n    \"\"\"A circle.\"\"\"\n\n    def __init__(self, r):\n        self.r = r\n\n    def area(self):\n        '''The area.\n\n        In square units.\n        '''\n        def inner():\n            pass\n        return math.pi * self.r ** 2\n\n    def _private(self):\n        pass\n\n# Adds two numbers.\ndef add(a,\n        b):\n    return a + b\n\nasync def fetch(url):\n    pass\n";
        let r = parse(src);
        assert_eq!(r.language, Language::Python);
        assert_eq!(r.summary, "Shapes module.");
        let names = r.names();
        for n in ["Circle", "__init__", "area", "add", "fetch"] {
            assert!(names.contains(&n), "{n} missing from {names:?}");
        }
        assert!(!names.contains(&"_private") && !names.contains(&"inner"));
        let add = r.items.iter().find(|i| i.name == "add").unwrap();
        assert_eq!(add.docs, "Adds two numbers.");
        let circle = &r.items[0];
        assert_eq!(circle.members[1].docs, "The area.\n\nIn square units.");
        let page = html("Shapes", &r);
        assert!(page.starts_with("<!DOCTYPE html>") && page.contains("<code>add</code>"));
    }

    #[test]
    fn prose_sections_become_the_reference() {
        let src = "An introduction.\n\n# Install\n\nRun the installer. Then restart.\n\nUsage\n\nCall it.";
        let r = parse(src);
        assert_eq!(r.language, Language::Prose);
        assert_eq!(r.names(), vec!["Install", "Usage"]);
        assert_eq!(r.summary, "An introduction.");
    }
}
