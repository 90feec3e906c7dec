//! Writing a [`Reference`] as Markdown or as a standalone HTML page.

use super::{Item, Language, Reference};

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
