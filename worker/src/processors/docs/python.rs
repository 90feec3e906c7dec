//! Reading Python source: public classes, methods and functions, and their docstrings.

use super::{Item, Language, Reference};

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
                .map(|s| match (s.get(..base), s.get(base..)) {
                    (Some(indent), Some(rest)) if indent.trim().is_empty() => rest.to_string(),
                    _ => s.trim().to_string(),
                })
                .collect();
            return Some((lines.join("\n").trim().to_string(), k + 1));
        }
        text.push(l.to_string());
    }
    Some((text.join("\n").trim().to_string(), lines.len()))
}

/// Reads Python: public classes, methods and functions with their docstrings, by indentation.
pub(super) fn parse(source: &str) -> Reference {
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
