//! Reading Rust source: public items, their members and doc comments, by tracking braces.

use super::{Item, Language, Reference};

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

/// Reads Rust: public items by brace depth, with `///` and `//!` docs.
pub(super) fn parse(source: &str) -> Reference {
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
                    if a < b {
                        let members = inline_members(kind, &code[a + 1..b]);
                        item_at(&mut items, &path).members.extend(members);
                    }
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
