//! The local quiz maker: scores the text's key terms (names, numbers, words the text repeats),
//! picks the sentences that carry most of them, and turns each chosen (sentence, term) pair
//! into a question: a cloze (fill in the blank) or a multiple choice whose distractors are other
//! key terms of the same kind from the same text. Every answer is a phrase of the source.

use std::collections::HashMap;

use serde::{Deserialize, Serialize};

use super::render::{fnv1a, Rng};

/// One question with its answer.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Question {
    /// `cloze` or `multiple_choice`.
    #[serde(rename = "type")]
    pub kind: String,
    pub question: String,
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub options: Vec<String>,
    pub answer: String,
    /// The sentence of the source the question was made from.
    #[serde(default, skip_serializing_if = "String::is_empty")]
    pub source_sentence: String,
}

const STOP: &[&str] = &[
    "the", "a", "an", "and", "or", "but", "if", "then", "than", "of", "to", "in", "on", "at",
    "for", "with", "by", "from", "as", "is", "are", "was", "were", "be", "been", "being", "it",
    "its", "this", "that", "these", "those", "which", "who", "whom", "whose", "what", "when",
    "where", "why", "how", "has", "have", "had", "do", "does", "did", "not", "no", "can", "could",
    "would", "should", "will", "shall", "may", "might", "must", "also", "into", "over", "under",
    "about", "after", "before", "between", "during", "such", "some", "many", "much", "more",
    "most", "other", "each", "every", "all", "both", "there", "their", "they", "them", "he", "she",
    "his", "her", "we", "our", "you", "your", "i", "my", "one", "only", "very", "so", "because",
    "while", "although", "however", "often", "usually", "called", "known", "made", "make", "used",
    "uses", "use", "like", "well", "just", "any", "same",
];

#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
enum Class {
    Number,
    Name,
    Word,
}

#[derive(Debug, Clone)]
struct Term {
    text: String,
    class: Class,
    score: f64,
}

/// Sentences of a text (at `.`, `!`, `?` before whitespace, and at blank lines).
pub(crate) fn sentences(text: &str) -> Vec<String> {
    let mut out = Vec::new();
    for block in text.split("\n\n") {
        let block = block.split_whitespace().collect::<Vec<_>>().join(" ");
        let mut start = 0;
        let b = block.as_bytes();
        for (i, c) in block.char_indices() {
            if matches!(c, '.' | '!' | '?') && b.get(i + 1).is_none_or(|x| *x == b' ') {
                // Not after a single capital ("J. Smith") or a common abbreviation.
                let before = &block[start..i];
                let last = before.rsplit(' ').next().unwrap_or("");
                if (last.len() == 1 && last.chars().all(|c| c.is_uppercase()))
                    || ["e.g", "i.e", "etc", "Dr", "Mr", "Mrs", "Ms", "St", "vs"].contains(&last)
                {
                    continue;
                }
                let s = block[start..=i].trim();
                if !s.is_empty() {
                    out.push(s.to_string());
                }
                start = i + 1;
            }
        }
        let rest = block[start..].trim();
        if !rest.is_empty() {
            out.push(rest.to_string());
        }
    }
    out
}

fn words(s: &str) -> Vec<&str> {
    s.split(|c: char| !(c.is_alphanumeric() || c == '\'' || c == '-'))
        .map(|w| w.trim_matches(|c| c == '\'' || c == '-'))
        .filter(|w| !w.is_empty())
        .collect()
}

/// Lower-case words inside names ("Francisco de Orellana", "Ludwig van Beethoven").
const PARTICLES: &[&str] = &[
    "de", "da", "del", "della", "di", "van", "von", "der", "den", "la", "le", "du", "bin", "al",
];

fn capitalised(w: &str) -> bool {
    w.chars().next().is_some_and(char::is_uppercase) && !is_stop(w)
}

fn is_stop(w: &str) -> bool {
    STOP.contains(&w.to_lowercase().as_str())
}

/// The key terms of the text with their scores.
fn key_terms(sents: &[String]) -> Vec<Term> {
    let mut freq: HashMap<String, usize> = HashMap::new();
    let mut forms: HashMap<String, (String, Class)> = HashMap::new();
    for s in sents {
        let ws = words(s);
        let mut i = 0;
        while i < ws.len() {
            let w = ws[i];
            // A run of capitalised words, joined by particles like "de" or "van": a name. A
            // capitalised first word alone is only a sentence start, not a name.
            if w.chars().next().is_some_and(char::is_uppercase) && !is_stop(w) {
                let mut j = i;
                loop {
                    let next = ws.get(j + 1).copied().unwrap_or("");
                    let after = ws.get(j + 2).copied().unwrap_or("");
                    if capitalised(next) {
                        j += 1;
                    } else if PARTICLES.contains(&next) && capitalised(after) {
                        j += 2;
                    } else {
                        break;
                    }
                }
                let phrase = ws[i..=j].join(" ");
                if i == 0 && j == 0 {
                    i += 1;
                    continue;
                }
                if s.contains(&phrase) {
                    *freq.entry(phrase.to_lowercase()).or_default() += 1;
                    forms
                        .entry(phrase.to_lowercase())
                        .or_insert((phrase, Class::Name));
                    i = j + 1;
                    continue;
                }
            }
            if w.chars().all(|c| c.is_ascii_digit()) && !w.is_empty() {
                *freq.entry(w.to_string()).or_default() += 1;
                forms
                    .entry(w.to_string())
                    .or_insert((w.to_string(), Class::Number));
            } else if w.chars().count() >= 4 && !is_stop(w) && w.chars().all(char::is_alphabetic) {
                let lower = w.to_lowercase();
                *freq.entry(lower.clone()).or_default() += 1;
                forms.entry(lower.clone()).or_insert((lower, Class::Word));
            }
            i += 1;
        }
    }
    let mut terms: Vec<Term> = forms
        .into_iter()
        .filter_map(|(k, (text, class))| {
            let f = freq[&k] as f64;
            let weight = match class {
                Class::Name => 4.0,
                Class::Number => 3.5,
                // A common word is a key term only if the text repeats it or it is long and
                // specific ("photosynthesis"), not a passing verb.
                Class::Word if f < 2.0 && text.chars().count() < 9 => return None,
                Class::Word => 1.0 + (text.chars().count() as f64 / 12.0),
            };
            Some(Term {
                score: f * weight,
                text,
                class,
            })
        })
        .collect();
    terms.sort_by(|a, b| b.score.total_cmp(&a.score).then(a.text.cmp(&b.text)));
    terms
}

/// Where `term` occurs in `sentence` as whole words (case-insensitive): the byte range.
fn find_term(sentence: &str, term: &str) -> Option<(usize, usize)> {
    let ls = sentence.to_lowercase();
    let lt = term.to_lowercase();
    if ls.len() != sentence.len() {
        // Lowercasing changed byte lengths (rare scripts): search case-sensitively.
        return sentence.find(term).map(|i| (i, i + term.len()));
    }
    let mut from = 0;
    while let Some(p) = ls[from..].find(&lt) {
        let start = from + p;
        let end = start + lt.len();
        let before_ok = ls[..start]
            .chars()
            .next_back()
            .is_none_or(|c| !c.is_alphanumeric());
        let after_ok = ls[end..]
            .chars()
            .next()
            .is_none_or(|c| !c.is_alphanumeric());
        if before_ok && after_ok {
            return Some((start, end));
        }
        from = end;
    }
    None
}

/// Makes `n` questions from `text`; `Err` with how many it could make if the text is too thin.
pub fn generate(text: &str, n: usize) -> Result<Vec<Question>, usize> {
    let sents: Vec<String> = sentences(text)
        .into_iter()
        .filter(|s| (4..=80).contains(&words(s).len()))
        .collect();
    let terms = key_terms(&sents);
    let rank: HashMap<&str, usize> = terms
        .iter()
        .enumerate()
        .map(|(i, t)| (t.text.as_str(), i))
        .collect();
    // Terms by their first word, so each sentence looks up only the terms its words could
    // start (a long text has thousands of terms and sentences).
    let mut by_first: HashMap<String, Vec<usize>> = HashMap::new();
    for (i, t) in terms.iter().enumerate() {
        if let Some(w) = words(&t.text).first() {
            by_first.entry(w.to_lowercase()).or_default().push(i);
        }
    }
    // Each sentence's key terms, best first, and the sentence's score.
    let mut per_sentence: Vec<(usize, f64, Vec<&Term>)> = sents
        .iter()
        .enumerate()
        .map(|(i, s)| {
            let mut candidates: Vec<usize> = words(s)
                .iter()
                .filter_map(|w| by_first.get(&w.to_lowercase()))
                .flatten()
                .copied()
                .collect();
            candidates.sort_unstable();
            candidates.dedup();
            let mut ts: Vec<&Term> = candidates
                .into_iter()
                .map(|k| &terms[k])
                .filter(|t| find_term(s, &t.text).is_some())
                .collect();
            ts.sort_by_key(|t| rank[t.text.as_str()]);
            let score =
                ts.iter().take(3).map(|t| t.score).sum::<f64>() / (words(s).len() as f64).sqrt();
            (i, score, ts)
        })
        .filter(|(_, _, ts)| !ts.is_empty())
        .collect();
    per_sentence.sort_by(|a, b| b.1.total_cmp(&a.1).then(a.0.cmp(&b.0)));
    // Rounds: the best term of every sentence first, then second-best terms, and so on, never
    // asking for the same answer twice.
    let mut picked: Vec<(usize, &Term)> = Vec::new();
    let mut answers: Vec<String> = Vec::new();
    let max_round = per_sentence.iter().map(|p| p.2.len()).max().unwrap_or(0);
    'rounds: for round in 0..max_round {
        for (si, _, ts) in &per_sentence {
            if picked.len() == n {
                break 'rounds;
            }
            let fresh = ts
                .iter()
                .find(|t| !answers.contains(&t.text.to_lowercase()));
            if let Some(t) = fresh {
                if picked.iter().filter(|(s, _)| s == si).count() <= round {
                    answers.push(t.text.to_lowercase());
                    picked.push((*si, t));
                }
            }
        }
    }
    if picked.len() < n {
        return Err(picked.len());
    }
    picked.sort_by_key(|(si, t)| (*si, rank[t.text.as_str()]));
    let mut rng = Rng::new(fnv1a(text));
    let questions = picked
        .iter()
        .enumerate()
        .map(|(qi, (si, term))| {
            let s = &sents[*si];
            let (a, b) = find_term(s, &term.text).expect("the term is in its sentence");
            let answer = s[a..b].to_string();
            let blanked = format!("{}_____{}", &s[..a], &s[b..]);
            let distractors: Vec<String> = terms
                .iter()
                .filter(|t| {
                    t.class == term.class
                        && find_term(s, &t.text).is_none()
                        && !t.text.eq_ignore_ascii_case(&answer)
                })
                .take(3)
                .map(|t| t.text.clone())
                .collect();
            if qi % 2 == 0 && distractors.len() >= 2 {
                let mut options = distractors;
                options.push(answer.clone());
                // A deterministic shuffle, so the answer is not always last.
                for i in (1..options.len()).rev() {
                    options.swap(i, rng.below(i + 1));
                }
                Question {
                    kind: "multiple_choice".into(),
                    question: format!("Which completes the sentence? {blanked}"),
                    options,
                    answer,
                    source_sentence: s.clone(),
                }
            } else {
                Question {
                    kind: "cloze".into(),
                    question: format!("Fill in the blank: {blanked}"),
                    options: Vec::new(),
                    answer,
                    source_sentence: s.clone(),
                }
            }
        })
        .collect();
    Ok(questions)
}

#[cfg(test)]
mod tests {
    use super::*;

    const TEXT: &str = "Marie Curie was a physicist and chemist who conducted pioneering research on radioactivity. \
        She was born in Warsaw in 1867. Curie was the first woman to win a Nobel Prize. \
        She won the Nobel Prize in Physics in 1903 together with Pierre Curie and Henri Becquerel. \
        In 1911 she won a second Nobel Prize, in Chemistry, for the discovery of polonium and radium. \
        Radioactivity was a new field, and her work on radioactivity changed physics. \
        Polonium was named after Poland, her native country.";

    #[test]
    fn questions_have_answers_from_the_source() {
        for n in [1, 3, 6] {
            let qs = generate(TEXT, n).unwrap();
            assert_eq!(qs.len(), n);
            for q in &qs {
                assert!(TEXT.contains(&q.answer), "{} not in the text", q.answer);
                assert!(q.question.contains("_____"));
                assert!(
                    !q.question.contains(&format!(" {} ", q.answer)) || q.kind == "multiple_choice"
                );
                if q.kind == "multiple_choice" {
                    assert!(q.options.contains(&q.answer));
                    assert!(q.options.len() >= 3);
                }
            }
        }
        let qs = generate(TEXT, 4).unwrap();
        assert!(qs.iter().any(|q| q.kind == "multiple_choice"));
        assert!(qs.iter().any(|q| q.kind == "cloze"));
    }

    #[test]
    fn a_thin_text_says_how_many_it_can_make() {
        assert_eq!(generate("Too short.", 3), Err(0));
        let n = generate(TEXT, 50).unwrap_err();
        assert!(n > 5 && n < 50);
    }
}
