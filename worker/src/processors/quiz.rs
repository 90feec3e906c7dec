//! The local quiz maker: scores the text's key terms (names, numbers, words the text repeats),
//! picks the sentences that carry most of them, and turns each chosen (sentence, term) pair
//! into a question: a cloze (fill in the blank) or a multiple choice whose distractors are other
//! key terms of the same kind from the same text. Every answer is a phrase of the source.

use std::collections::{HashMap, HashSet};

use serde::{Deserialize, Serialize};

use super::seeded::{fnv1a, Rng};

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
    word_spans(s).into_iter().map(|(a, b)| &s[a..b]).collect()
}

/// Where the words of `s` are (byte ranges): runs of letters, digits, `'` and `-`, without a
/// leading or trailing `'` or `-`.
fn word_spans(s: &str) -> Vec<(usize, usize)> {
    let inner = |c: char| c.is_alphanumeric() || c == '\'' || c == '-';
    let mut out = Vec::new();
    let mut run: Option<usize> = None;
    let mut push = |a: usize, b: usize| {
        let w = &s[a..b];
        let trimmed = w.trim_start_matches(['\'', '-']);
        let a = a + (w.len() - trimmed.len());
        let b = a + trimmed.trim_end_matches(['\'', '-']).len();
        if a < b {
            out.push((a, b));
        }
    };
    for (i, c) in s.char_indices() {
        match (inner(c), run) {
            (true, None) => run = Some(i),
            (false, Some(a)) => {
                push(a, i);
                run = None;
            }
            _ => {}
        }
    }
    if let Some(a) = run {
        push(a, s.len());
    }
    out
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

/// The key terms as a trie over their lower-case words, so that a sentence finds every term
/// it holds in one walk from each of its words. (Searching the sentence once per candidate
/// term was quadratic: a text can hold thousands of names that share a first word.)
struct TermIndex {
    /// Lower-case word → its id.
    words: HashMap<String, u32>,
    /// (node, word id) → the next node; node 0 is the root.
    edges: HashMap<(u32, u32), u32>,
    /// Node → the term that ends there.
    ends: HashMap<u32, usize>,
}

impl TermIndex {
    fn new(terms: &[Term]) -> TermIndex {
        let mut ix = TermIndex {
            words: HashMap::new(),
            edges: HashMap::new(),
            ends: HashMap::new(),
        };
        let mut nodes = 0u32;
        for (k, t) in terms.iter().enumerate() {
            let mut node = 0;
            for w in words(&t.text) {
                let next_id = ix.words.len() as u32;
                let id = *ix.words.entry(w.to_lowercase()).or_insert(next_id);
                node = *ix.edges.entry((node, id)).or_insert_with(|| {
                    nodes += 1;
                    nodes
                });
            }
            ix.ends.entry(node).or_insert(k);
        }
        ix
    }

    /// The terms that occur in `s` as whole words (case-insensitive; the words of a name
    /// separated by one space, as in the term), each with the byte range of its first
    /// occurrence, best term first.
    fn find_in(&self, s: &str) -> Vec<(usize, (usize, usize))> {
        let spans = word_spans(s);
        let ids: Vec<Option<u32>> = spans
            .iter()
            .map(|&(a, b)| self.words.get(&s[a..b].to_lowercase()).copied())
            .collect();
        let mut found: HashMap<usize, (usize, usize)> = HashMap::new();
        for i in 0..spans.len() {
            let mut node = 0;
            for j in i..spans.len() {
                if j > i && &s[spans[j - 1].1..spans[j].0] != " " {
                    break;
                }
                let Some(next) = ids[j].and_then(|id| self.edges.get(&(node, id))) else {
                    break;
                };
                node = *next;
                if let Some(&k) = self.ends.get(&node) {
                    found.entry(k).or_insert((spans[i].0, spans[j].1));
                }
            }
        }
        let mut out: Vec<(usize, (usize, usize))> = found.into_iter().collect();
        out.sort_unstable();
        out
    }
}

/// Makes `n` questions from `text`; `Err` with how many it could make if the text is too thin.
pub fn generate(text: &str, n: usize) -> Result<Vec<Question>, usize> {
    let sents: Vec<String> = sentences(text)
        .into_iter()
        .filter(|s| (4..=80).contains(&words(s).len()))
        .collect();
    // Sorted best first: a term's index is its rank.
    let terms = key_terms(&sents);
    let index = TermIndex::new(&terms);
    // Each sentence's key terms (best first, with where they are), and the sentence's score.
    let found: Vec<Vec<(usize, (usize, usize))>> = sents.iter().map(|s| index.find_in(s)).collect();
    let mut per_sentence: Vec<(usize, f64)> = found
        .iter()
        .enumerate()
        .filter(|(_, ts)| !ts.is_empty())
        .map(|(i, ts)| {
            let best: f64 = ts.iter().take(3).map(|(k, _)| terms[*k].score).sum();
            (i, best / (words(&sents[i]).len() as f64).sqrt())
        })
        .collect();
    per_sentence.sort_by(|a, b| b.1.total_cmp(&a.1).then(a.0.cmp(&b.0)));
    // Rounds: the best term of every sentence first, then second-best terms, and so on, never
    // asking for the same answer twice (terms differ in lower case, so a term is its answer).
    // Answers only accumulate, so each sentence keeps a cursor past its answered terms; a round
    // that picks nothing ends the rounds. Linear in the terms found, whatever the text.
    let mut picked: Vec<(usize, usize)> = Vec::new();
    let mut answered: HashSet<usize> = HashSet::new();
    let mut cursor = vec![0usize; per_sentence.len()];
    'rounds: loop {
        let before = picked.len();
        for (c, (si, _)) in per_sentence.iter().enumerate() {
            if picked.len() == n {
                break 'rounds;
            }
            let ts = &found[*si];
            while cursor[c] < ts.len() && answered.contains(&ts[cursor[c]].0) {
                cursor[c] += 1;
            }
            if let Some(&(k, _)) = ts.get(cursor[c]) {
                answered.insert(k);
                picked.push((*si, k));
                cursor[c] += 1;
            }
        }
        if picked.len() == before {
            break;
        }
    }
    if picked.len() < n {
        return Err(picked.len());
    }
    picked.sort_unstable();
    let mut rng = Rng::new(fnv1a(text));
    let questions = picked
        .iter()
        .enumerate()
        .map(|(qi, &(si, k))| {
            let s = &sents[si];
            let term = &terms[k];
            let (a, b) = found[si]
                .iter()
                .find(|(t, _)| *t == k)
                .map(|(_, span)| *span)
                .expect("a picked term is in its sentence");
            let in_sentence: HashSet<usize> = found[si].iter().map(|(t, _)| *t).collect();
            let answer = s[a..b].to_string();
            let blanked = format!("{}_____{}", &s[..a], &s[b..]);
            let distractors: Vec<String> = terms
                .iter()
                .enumerate()
                .filter(|(j, t)| {
                    t.class == term.class
                        && !in_sentence.contains(j)
                        && !t.text.eq_ignore_ascii_case(&answer)
                })
                .take(3)
                .map(|(_, t)| t.text.clone())
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

    /// Thousands of names sharing a first word, in every sentence: each sentence used to
    /// search itself for every one of them (about 40 million searches here).
    #[test]
    fn names_sharing_a_first_word_in_every_sentence_still_make_a_quiz() {
        let mut text = String::new();
        let mut i = 0;
        while text.len() < 199_000 {
            text.push_str(&format!("Then Alpha Z{i} saw the river. "));
            i += 1;
        }
        let qs = generate(&text, 5).unwrap();
        assert_eq!(qs.len(), 5);
        for q in &qs {
            assert!(text.contains(&q.source_sentence), "{q:?}");
            assert!(q.source_sentence.contains(&q.answer), "{q:?}");
            assert!(q.question.contains("_____"));
        }
        assert!(qs.iter().any(|q| q.answer.starts_with("Alpha Z")), "{qs:?}");
        let answers: HashSet<&str> = qs.iter().map(|q| q.answer.as_str()).collect();
        assert_eq!(answers.len(), 5, "no answer is asked twice");
    }

    /// Hundreds of sentences that each hold the same 39 names, asked for more questions than
    /// there are names: every round used to walk every sentence's terms again, comparing each
    /// with every answer so far.
    #[test]
    fn a_repetitive_text_says_how_many_it_can_make() {
        let names: Vec<String> = (0..39).map(|i| format!("K{i}x")).collect();
        let sentence = format!("Then {}. ", names.join(" and "));
        let text = sentence.repeat(199_000 / sentence.len());
        assert_eq!(generate(&text, 50), Err(39));
    }
}
