//! The local documentation generator: reads Rust, Python or prose and writes a reference of
//! its public items with their signatures and doc comments, as Markdown or HTML.
//!
//! A line-based reader, not a compiler: it tracks braces (Rust) or indentation (Python) to know
//! which items are inside which, and takes doc comments (`///`, `//!`, docstrings) as written.
//! `rust`, `python` and `prose` read a source into a [`Reference`]; `output` writes it.

use super::requests::DocFormat;

mod output;
mod prose;
mod python;
mod rust;

pub use output::{html, markdown};

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
        Language::Rust => rust::parse(source),
        Language::Python => python::parse(source),
        Language::Prose => prose::parse(source),
    }
}

/// Removes string literals and a trailing `//` comment, so braces inside them are not counted.
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
