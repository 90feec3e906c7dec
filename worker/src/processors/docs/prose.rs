//! Reading prose: Markdown or underlined headings, or short lines without a full stop, start sections.

use super::{Item, Language, Reference};

/// Reads prose: headings become sections, text before the first one the summary.
pub(super) fn parse(source: &str) -> Reference {
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
