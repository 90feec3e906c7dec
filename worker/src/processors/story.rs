//! The local story generator: a Tracery-style grammar (rules of alternatives, `#symbol#`
//! expansion with `.capitalize`/`.a` modifiers, and `[name:#rule#]` actions that bind a
//! character or place for the rest of the story), seeded by the prompt, so the same prompt tells
//! the same story and another prompt another one. The prompt's own words become the story's
//! theme, its title and the thing the hero seeks.

use std::collections::HashMap;

use super::requests::StoryRequest;
use super::seeded::{fnv1a, Rng};

/// A generated story.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Story {
    pub title: String,
    pub text: String,
}

impl Story {
    pub fn words(&self) -> usize {
        self.text.split_whitespace().count()
    }
}

/// A Tracery grammar: each symbol has alternatives; a bound symbol (from an action) has one.
pub(crate) struct Grammar {
    rules: HashMap<String, Vec<String>>,
    bound: HashMap<String, String>,
}

impl Grammar {
    pub fn new(rules: &[(&str, &[&str])]) -> Self {
        Grammar {
            rules: rules
                .iter()
                .map(|(k, v)| (k.to_string(), v.iter().map(|s| s.to_string()).collect()))
                .collect(),
            bound: HashMap::new(),
        }
    }

    pub fn set(&mut self, symbol: &str, alternatives: Vec<String>) {
        self.rules.insert(symbol.to_string(), alternatives);
    }

    pub fn bind(&mut self, symbol: &str, value: String) {
        self.bound.insert(symbol.to_string(), value);
    }

    /// Expands `text`: `[name:rule text]` actions first bind `name`, then every `#symbol#` or
    /// `#symbol.modifier#` is replaced by an expansion of one of its alternatives.
    pub fn expand(&mut self, text: &str, rng: &mut Rng, depth: usize) -> String {
        if depth > 12 {
            return String::new();
        }
        let mut out = String::new();
        let mut rest = text;
        while let Some(i) = rest.find(['#', '[']) {
            out.push_str(&rest[..i]);
            let open = rest.as_bytes()[i];
            let close = if open == b'#' { '#' } else { ']' };
            let Some(j) = rest[i + 1..].find(close) else {
                out.push_str(&rest[i..]);
                return out;
            };
            let inner = &rest[i + 1..i + 1 + j];
            rest = &rest[i + 2 + j..];
            if open == b'[' {
                if let Some((name, rule)) = inner.split_once(':') {
                    let value = self.expand(rule, rng, depth + 1);
                    self.bind(name, value);
                }
                continue;
            }
            let mut parts = inner.split('.');
            let symbol = parts.next().unwrap_or("");
            let mut value = if let Some(v) = self.bound.get(symbol) {
                v.clone()
            } else if let Some(alts) = self.rules.get(symbol) {
                let pick = alts[rng.below(alts.len())].clone();
                self.expand(&pick, rng, depth + 1)
            } else {
                format!("#{symbol}#")
            };
            for m in parts {
                value = match m {
                    "capitalize" => capitalize(&value),
                    "a" => with_article(&value),
                    _ => value,
                };
            }
            out.push_str(&value);
        }
        out.push_str(rest);
        out
    }
}

pub(crate) fn capitalize(s: &str) -> String {
    let mut c = s.chars();
    match c.next() {
        Some(f) => f.to_uppercase().collect::<String>() + c.as_str(),
        None => String::new(),
    }
}

fn with_article(s: &str) -> String {
    let vowel = s.chars().next().is_some_and(|c| "aeiouAEIOU".contains(c));
    format!("{} {s}", if vowel { "an" } else { "a" })
}

const STOP: &[&str] = &[
    "a", "an", "the", "of", "and", "or", "to", "in", "on", "at", "for", "with", "about", "who",
    "that", "which", "is", "are", "was", "be", "story", "tale", "write", "tell", "me", "please",
    "some", "very", "into", "from", "by", "his", "her", "their", "its", "it", "this", "as",
];

/// The content words of a prompt, in order.
pub(crate) fn keywords(prompt: &str) -> Vec<String> {
    prompt
        .split(|c: char| !c.is_alphanumeric() && c != '\'' && c != '-')
        .map(|w| {
            w.trim_matches(|c: char| c == '\'' || c == '-')
                .to_lowercase()
        })
        .filter(|w| w.len() > 2 && !STOP.contains(&w.as_str()))
        .collect()
}

fn title_case(s: &str) -> String {
    s.split_whitespace()
        .enumerate()
        .map(|(i, w)| {
            if i > 0 && STOP.contains(&w.to_lowercase().as_str()) {
                w.to_lowercase()
            } else {
                capitalize(w)
            }
        })
        .collect::<Vec<_>>()
        .join(" ")
}

const RULES: &[(&str, &[&str])] = &[
    ("name", &["Mira", "Tomas", "Ada", "Jun", "Lena", "Oskar", "Nadia", "Felix", "Ines", "Kofi", "Rosa", "Emil", "Yara", "Arlo"]),
    ("friendname", &["Pip", "Bram", "Odessa", "Quill", "Hazel", "Tobin", "Wren", "Juniper", "Caspian", "Marlo"]),
    ("creature", &["fox", "old heron", "clockwork owl", "grey cat", "talking crow", "patient tortoise", "small dragon", "lantern moth"]),
    ("place", &["a village at the edge of the hills", "a harbour town of blue roofs", "a city of narrow stairways", "a valley where the river bends twice", "a village on an island of windmills", "a quiet street above the old market"]),
    ("land", &["the Whispering Woods", "the Glass Mountains", "the Salt Marshes", "the Northern Library", "the Sunken Garden", "the Tower of Bells", "the Copper Desert", "the Lake of Echoes"]),
    ("trait", &["curious", "stubborn", "gentle", "restless", "clever", "brave but careful", "quietly determined", "kind"]),
    ("habit", &["collected odd stones", "asked too many questions", "drew maps of places nobody had visited", "fixed broken things for the neighbours", "read by candlelight long after bedtime", "listened to the wind as if it were talking"]),
    ("weather", &["a cold wind came down from the hills", "rain drummed on the roofs for three days", "the sky turned the colour of old brass", "fog rolled in from the water", "the first snow fell without a sound", "the summer heat made the air shimmer"]),
    ("feeling", &["a flutter of hope", "a knot of worry", "a strange calm", "a spark of excitement", "a quiet certainty", "a prickle of fear"]),
    ("obstacle", &["a bridge that had fallen into the gorge", "a locked gate with no keyhole", "a storm that would not pass", "a riddle carved into a stone door", "a river too wide to swim", "a maze of hedges that changed at night", "a guard who would not listen"]),
    ("solution", &["remembered something #friend# had said", "noticed a pattern nobody else had seen", "shared the last of the bread", "asked for help instead of pushing on alone", "waited, and watched, and tried again", "turned the problem upside down"]),
    ("helper", &["an old woman selling maps", "a boy with a kite", "a tired soldier", "a shy librarian", "a travelling musician", "a fisherman mending nets", "a girl who spoke to birds"]),
    ("gift", &["a brass compass", "a jar of light", "a folded letter", "a silver key", "a handful of seeds", "a song to remember"]),
    ("moral", &["Some journeys are measured not in miles but in what we learn to see.", "Courage, it turned out, was only kindness that refused to give up.", "What we search for far away is often waiting in the people beside us.", "Every ending, #hero# thought, is also a door.", "The best discoveries are the ones we share."]),
    ("opening", &[
        "Once, in #place#, there lived #trait.a# #heroKind# named #hero#. #hero# #habit#, and everyone agreed that one day this would lead to trouble, or to something wonderful.",
        "In #place#, where the mornings smelled of bread and rain, lived #hero#, #trait.a# #heroKind#. Of all the things in the world, #hero# cared most about #theme#.",
        "Nobody in #place# was quite like #hero#. #hero# was #trait#, #habit#, and thought about #theme# more than anyone thought was sensible.",
    ]),
    ("inciting", &[
        "Then one evening #weather#, and with it came news: #theme# was in danger, and the only one who might help was far away in #far#. #hero# felt #feeling# and began to pack.",
        "It started with a letter that had no sender. It spoke of #theme#, and of a secret kept in #far#. #hero# read it three times, felt #feeling#, and knew there was no choice but to go.",
        "The day #weather#, #hero# found a note on the doorstep, tied with string and written in a hand nobody knew. It was about #theme#, and it said only: come to #far#. #hero# set out before the sun was high.",
    ]),
    ("companion", &[
        "#hero# did not go alone. #friend#, #friendKind.a# who had shared every adventure since they were small, packed bread and a lantern and fell into step without a word.",
        "On the first morning #friend#, #friendKind.a# with sharp eyes and a stubborn heart, was waiting at the gate. \"You were not going to leave without me,\" #friend# said. It was not a question.",
    ]),
    ("meeting", &[
        "On the road #hero# met #helper#, who listened to the whole story and then said, \"#theme.capitalize# is worth the trouble, but you will need more than hope.\" Before they parted, the stranger gave #hero# #gift#. #hero# walked on with #feeling# and the gift held tight.",
        "At an inn by the river they shared a table with #helper#. When #hero# spoke of #far#, the stranger grew quiet, then pressed #gift# into #hero#'s hand. \"You will know when you need it,\" was all the stranger would say.",
    ]),
    ("episode", &[
        "Soon the way was blocked by #obstacle#. #hero# tried to force a way through and failed, tried again and failed again. At last #hero# sat down, #friend# beside #heroObj#, and #solution#. The way opened, and they went on.",
        "That night they sheltered in a barn while #weather#. #friend# told stories about #far#, some of them true. #hero# lay awake, thinking about #theme# and about how far they still had to go.",
        "In a market town they found that everyone had heard of #theme#, and everyone had a different story about it. #hero# listened to each one, and from the pieces a map began to form.",
        "At a crossroads #friend# wanted to turn back. \"We could go home,\" #friend# said, \"and nobody would blame us.\" #hero# looked down the long road and said, \"I would.\" So they went on together.",
        "They reached #obstacle2.a#, which nobody had warned them about. It was #friend# who found the answer this time, and #hero# laughed for the first time in days.",
        "The road climbed into #heights#, where the air was thin and the nights were long. #friend# kept the fire going while #hero# studied the map by its light and turned #gift# over and over in the dark.",
        "One morning they woke to find the path gone, swallowed by #weather2#. They waited a day, then another. On the third day #hero# #solution#, and they found the path again.",
        "In a village of weavers an old man told them about the last traveller who had gone to #far#. \"She came back,\" he said, \"but she never said what she found.\" #hero# thought about that for many miles.",
        "They ran short of food and had to trade. #friend# traded a good knife for bread and cheese; #hero# traded a song. The baker said the song was the better bargain.",
        "A storm drove them into a cave, and on its walls were drawings older than any town: people, animals and, unmistakably, #theme#. #hero# copied them carefully into a notebook.",
        "#hero# fell ill with a fever for three days. #friend# sat by the bed, told every story #friend# knew twice, and would not let #hero# give up. On the fourth day #hero# stood again, thinner but certain.",
        "They met a family whose cart had lost a wheel. Mending it cost them a whole afternoon, and #friend# grumbled the entire time, but that night the family shared their fire and news of the road ahead.",
    ]),
    ("heights", &["the Glass Mountains", "the high moors", "the Copper Hills", "the Cloud Pass", "the Pine Ridges"]),
    ("weather2", &["a fog so thick they could not see their own hands", "a snowstorm that buried every landmark", "a flood that came down from the hills overnight", "a sandstorm that turned the day brown"]),
    ("obstacle2", &["river crossing guarded by a ferryman who wanted a riddle for payment", "wall of thorns as high as a house", "hall of mirrors where every path looked the same", "cliff path worn away by the sea"]),
    ("climax", &[
        "At last they came to #far#. It was stranger and quieter than #hero# had imagined. In its heart lay the answer to everything about #theme#, and in front of it stood #obstacle#. #hero# felt #feeling#, took a breath, and #solution#. For a long moment nothing happened. Then, slowly, the way opened.",
        "#far# rose before them in the evening light. Everything #hero# had learned on the journey came back at once: the words of #helper#, the weight of #gift#, the patience of #friend#. When #obstacle# stood in the way, #hero# did not push. #hero# #solution#, and that was enough.",
    ]),
    ("resolution", &[
        "When #hero# came home to #place#, #theme# was safe, and things were a little different than before. #hero# still #habit#, but now with #friend# for company. #moral#",
        "The journey home was shorter, as journeys home always are. #hero# told the story many times, and each time #theme# sounded less like a mystery and more like a promise. #moral#",
    ]),
];

/// Tells a story from the request, deterministically: the same request gives the same story.
pub fn generate(r: &StoryRequest) -> Story {
    let prompt = r.prompt.split_whitespace().collect::<Vec<_>>().join(" ");
    let mut rng = Rng::new(fnv1a(&format!(
        "{}|{}",
        prompt.to_lowercase(),
        r.length.as_str()
    )));
    let mut g = Grammar::new(RULES);
    let keys = keywords(&prompt);
    let theme = theme_of(&prompt, &keys);
    g.bind("theme", theme.clone());
    let young = r.audience.as_deref().is_some_and(|a| {
        ["child", "kid", "young", "school"]
            .iter()
            .any(|k| a.to_lowercase().contains(k))
    });
    g.set(
        "heroKind",
        if young {
            vec!["child".into(), "young #creature#".into()]
        } else {
            vec![
                "young woman".into(),
                "young man".into(),
                "#creature#".into(),
                "traveller".into(),
                "apprentice".into(),
            ]
        },
    );
    // Bind the cast, the places and the gift once, so they carry the whole story.
    let _ = g.expand(
        "[hero:#name#][friend:#friendname#][friendKind:#creature#][heroObj:them]\
         [place:#place#][far:#land#][helper:#helper#][gift:#gift#]",
        &mut rng,
        0,
    );
    let title = title_of(&prompt, &keys, &g.bound["hero"], &mut rng);

    let words = r.length.words();
    let target = (words.start() + words.end()) / 2;
    // Opening, the call, the companion, the meeting with the helper (the climax remembers
    // them), then episodes on the road until the story has its length, then the ending.
    let mut paragraphs: Vec<String> = ["#opening#", "#inciting#", "#companion#", "#meeting#"]
        .iter()
        .map(|p| g.expand(p, &mut rng, 0))
        .collect();
    let fixed = paragraphs.len();
    let climax = g.expand("#climax#", &mut rng, 0);
    let resolution = g.expand("#resolution#", &mut rng, 0);
    let count = |ps: &[String]| {
        ps.iter()
            .map(|p| p.split_whitespace().count())
            .sum::<usize>()
    };
    let ending = count(&[climax.clone(), resolution.clone()]);
    let episodes: &[&str] = RULES
        .iter()
        .find(|(k, _)| *k == "episode")
        .map(|(_, v)| *v)
        .unwrap_or(&[]);
    let mut used: Vec<usize> = Vec::new();
    while !episodes.is_empty() && count(&paragraphs) + ending < target {
        // Each episode once before any repeats, in an order the prompt decides.
        if used.len() == episodes.len() {
            used.clear();
        }
        let mut i = rng.below(episodes.len());
        while used.contains(&i) {
            i = (i + 1) % episodes.len();
        }
        used.push(i);
        let p = g.expand(episodes[i], &mut rng, 0);
        paragraphs.push(p);
    }
    paragraphs.push(climax);
    paragraphs.push(resolution);
    // Too long (a long episode at the end): drop middle episodes while above the range.
    while count(&paragraphs) > *words.end() && paragraphs.len() > fixed + 2 {
        paragraphs.remove(fixed);
    }
    Story {
        title,
        text: paragraphs.join("\n\n"),
    }
}

/// The prompt as a phrase the story can say: "a robot who learns to paint" stays as it is;
/// an instruction like "Write a story about X" becomes "X".
fn theme_of(prompt: &str, keys: &[String]) -> String {
    let lower = prompt
        .trim()
        .trim_end_matches(['.', '!', '?'])
        .to_lowercase();
    for lead in [
        "write a story about ",
        "tell me a story about ",
        "a story about ",
        "story about ",
        "about ",
    ] {
        if let Some(rest) = lower.strip_prefix(lead) {
            return rest.to_string();
        }
    }
    if lower.split_whitespace().count() <= 10 {
        lower
    } else {
        let first: Vec<&str> = keys.iter().take(3).map(String::as_str).collect();
        format!("the {}", first.join(" and "))
    }
}

fn title_of(prompt: &str, keys: &[String], hero: &str, rng: &mut Rng) -> String {
    let short = prompt.trim().trim_end_matches(['.', '!', '?']);
    if short.split_whitespace().count() <= 7 && !short.is_empty() {
        return title_case(short);
    }
    let key = keys
        .first()
        .map(|k| capitalize(k))
        .unwrap_or_else(|| "Journey".into());
    match rng.below(3) {
        0 => format!("The {key} of {hero}"),
        1 => format!("{hero} and the {key}"),
        _ => format!("The Long Road to the {key}"),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::processors::requests::StoryLength;

    fn req(prompt: &str, length: StoryLength) -> StoryRequest {
        StoryRequest {
            prompt: prompt.into(),
            length,
            audience: None,
        }
    }

    #[test]
    fn stories_have_their_length_and_differ_by_prompt() {
        for len in [StoryLength::Short, StoryLength::Medium, StoryLength::Long] {
            for p in [
                "a lighthouse keeper who collects storms",
                "Write a story about a robot learning to paint",
                "x",
            ] {
                let s = generate(&req(p, len));
                assert!(
                    len.words().contains(&s.words()),
                    "{len:?} {p}: {} words",
                    s.words()
                );
                assert!(!s.text.contains('#'), "unexpanded rule in {}", s.text);
                assert!(!s.title.is_empty());
            }
        }
        let a = generate(&req("a fox who wants to fly", StoryLength::Short));
        let b = generate(&req("the last tree on the moon", StoryLength::Short));
        assert_ne!(a, b);
        assert_eq!(
            a,
            generate(&req("a fox who wants to fly", StoryLength::Short))
        );
        assert!(a.text.contains("a fox who wants to fly"));
    }

    #[test]
    fn grammar_expands_symbols_modifiers_and_actions() {
        let mut g = Grammar::new(&[
            ("animal", &["owl"]),
            ("origin", &["[pet:#animal#]#pet.a# and #pet.capitalize#"]),
        ]);
        let mut rng = Rng::new(1);
        assert_eq!(g.expand("#origin#", &mut rng, 0), "an owl and Owl");
    }
}
