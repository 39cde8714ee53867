//! The built-in task: short factual questions, a hidden programmatic gold judge, and demonstrations
//! of mixed quality. It mirrors the paper at miniature scale: the gold judge plays the humans, the
//! policy never sees it, and a proxy reward model is trained on noisy gold-labelled pairs.
//!
//! Question kinds: the colour of a thing, the sound of an animal, the sum of two numbers, the
//! opposite of a word. The gold judge scores a response on several features:
//!
//! | feature | score |
//! |---|---|
//! | contains the right answer | +2.0 |
//! | each wrong answer of the same kind | -1.0 |
//! | mentions the subject (on topic) | +0.5 |
//! | starts with a capital letter, ends with `.` | +0.25 each |
//! | ended by the stop token (not truncated) | +0.5, truncated -1.0 |
//! | each repeated word | -0.5 |
//! | length: +0.1 per word up to 8 words, -0.2 per word beyond 12 | |
//!
//! The length term is the effect a policy can exploit: good answers are a few words longer than bad
//! ones in the demonstrations, so a reward model can learn "longer is better" past the point where
//! the judge agrees.

use kiln::data::Rng;
use std::collections::HashMap;

/// A question kind.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Kind {
    /// "What colour is a banana?"
    Colour,
    /// "What sound does a cow make?"
    Sound,
    /// "What is 3 plus 4?"
    Sum,
    /// "What is the opposite of hot?"
    Opposite,
}

/// `thing colour` pairs.
const COLOURS: &str = "banana yellow,lemon yellow,grass green,leaf green,frog green,sky blue,\
sea blue,snow white,cloud white,milk white,coal black,crow black,tomato red,cherry red,\
strawberry red,carrot orange,pumpkin orange,plum purple,grape purple,chocolate brown";
const COLOUR_WORDS: &str = "yellow green blue white black red orange purple brown";
/// `animal sound` pairs.
const SOUNDS: &str = "cow moo,dog woof,cat meow,duck quack,sheep baa,lion roar,owl hoot,pig oink,\
horse neigh,bee buzz,snake hiss,mouse squeak";
/// `word opposite` pairs.
const OPPOSITES: &str = "hot cold,big small,up down,day night,fast slow,happy sad,old new,wet dry,\
light dark,open closed,full empty,hard soft,early late,high low";
const NUMBER_WORDS: &str = "zero one two three four five six seven eight nine ten eleven twelve \
thirteen fourteen fifteen sixteen seventeen eighteen";

/// The pairs of a table.
fn pairs(table: &str) -> Vec<(&str, &str)> {
    table
        .split(',')
        .filter_map(|p| p.trim().split_once(' '))
        .collect()
}

/// One question with everything the judge needs.
#[derive(Debug, Clone, PartialEq)]
pub struct Question {
    /// The prompt text the policy sees.
    pub text: String,
    /// The kind of question.
    pub kind: Kind,
    /// What the question is about ("banana", "cow", "3 plus 4", "hot").
    pub subject: String,
    /// The right answer ("yellow", "moo", "seven", "cold").
    pub answer: String,
    /// Wrong answers of the same kind.
    pub wrong: Vec<String>,
}

/// A uniformly random element of a non-empty slice.
pub fn pick<'a, T>(rng: &mut Rng, xs: &'a [T]) -> &'a T {
    &xs[rng.index(xs.len())]
}

fn article(noun: &str) -> &'static str {
    match noun {
        "grass" | "snow" | "milk" | "coal" | "chocolate" | "sky" | "sea" => "",
        n if n.starts_with(['a', 'e', 'i', 'o', 'u']) => "an ",
        _ => "a ",
    }
}

fn the_noun(noun: &str) -> String {
    let a = article(noun);
    if a.is_empty() {
        noun.to_string()
    } else {
        format!("{a}{noun}")
    }
}

/// How many phrasings of each question the training pool can use (`--train-phrasings`).
pub const MAX_TRAIN_PHRASINGS: usize = 6;

/// Every question the task can ask (about two thousand), in a fixed order, each with the index of
/// its phrasing: phrasings 0 to 5 are the training prompts (`--train-phrasings` uses the first
/// few), phrasing [`MAX_TRAIN_PHRASINGS`] (the same facts, asked in words the policy never trains
/// on) the held-out evaluation prompts.
pub fn all_questions() -> Vec<(Question, usize)> {
    let mut out = Vec::new();
    let mut ask = |kind, subject: &str, answer: &str, wrong: Vec<String>, texts: [String; 7]| {
        for (i, text) in texts.into_iter().enumerate() {
            let (subject, answer, wrong) = (subject.into(), answer.into(), wrong.clone());
            out.push((
                Question {
                    text,
                    kind,
                    subject,
                    answer,
                    wrong,
                },
                i,
            ));
        }
    };
    let others = |table: &[(&str, &str)], answer: &str| -> Vec<String> {
        table
            .iter()
            .filter(|p| p.1 != answer)
            .map(|p| p.1.to_string())
            .collect()
    };
    for (thing, colour) in pairs(COLOURS) {
        let wrong = COLOUR_WORDS
            .split(' ')
            .filter(|c| *c != colour)
            .map(String::from)
            .collect();
        let t = the_noun(thing);
        let texts = [
            format!("What colour is {t}?"),
            format!("Tell me the colour of {t}."),
            format!("What is the colour of {t}?"),
            format!("Name the colour of {t}."),
            format!("Do you know what colour {t} is?"),
            format!("Say what colour {t} is."),
            format!("Which colour is {t}?"),
        ];
        ask(Kind::Colour, thing, colour, wrong, texts);
    }
    let sounds = pairs(SOUNDS);
    for &(animal, sound) in &sounds {
        let texts = [
            format!("What sound does a {animal} make?"),
            format!("What does a {animal} say?"),
            format!("Tell me the sound a {animal} makes."),
            format!("What noise does a {animal} make?"),
            format!("Name the sound of a {animal}."),
            format!("How does a {animal} sound?"),
            format!("Which sound does a {animal} make?"),
        ];
        ask(Kind::Sound, animal, sound, others(&sounds, sound), texts);
    }
    let numbers: Vec<&str> = NUMBER_WORDS.split(' ').collect();
    for a in 1..=9usize {
        for b in 1..=9usize {
            let (x, y, answer) = (numbers[a], numbers[b], numbers[a + b]);
            // Operands are not wrong answers: "Two plus eight is ten." mentions them.
            let wrong = (numbers.iter())
                .filter(|w| **w != answer && **w != x && **w != y)
                .map(|w| w.to_string())
                .collect();
            let texts = [
                format!("What is {x} plus {y}?"),
                format!("Tell me {x} plus {y}."),
                format!("What do {x} plus {y} make?"),
                format!("Compute {x} plus {y}."),
                format!("Say what {x} plus {y} is."),
                format!("What is the sum of {x} plus {y}?"),
                format!("How much is {x} plus {y}?"),
            ];
            ask(Kind::Sum, &format!("{x} plus {y}"), answer, wrong, texts);
        }
    }
    let opposites = pairs(OPPOSITES);
    for &(word, opposite) in &opposites {
        let texts = [
            format!("What is the opposite of {word}?"),
            format!("Give the opposite of {word}."),
            format!("Tell me the opposite of {word}."),
            format!("Name the opposite of {word}."),
            format!("Say the opposite of {word}."),
            format!("What word means the opposite of {word}?"),
            format!("Which word is the opposite of {word}?"),
        ];
        ask(
            Kind::Opposite,
            word,
            opposite,
            others(&opposites, opposite),
            texts,
        );
    }
    out
}

/// The hidden judge: looks questions up by their prompt text.
#[derive(Debug, Clone)]
pub struct GoldJudge {
    by_text: HashMap<String, Question>,
}

impl Default for GoldJudge {
    fn default() -> Self {
        GoldJudge {
            by_text: all_questions()
                .into_iter()
                .map(|(q, _)| (q.text.clone(), q))
                .collect(),
        }
    }
}

fn words(text: &str) -> Vec<String> {
    text.split(|c: char| !c.is_alphanumeric())
        .filter(|w| !w.is_empty())
        .map(|w| w.to_lowercase())
        .collect()
}

impl kiln::online::Judge for GoldJudge {
    fn score(&self, prompt: &str, response: &str, finished: bool) -> f32 {
        GoldJudge::score(self, prompt, response, finished)
    }
}

impl GoldJudge {
    /// The question behind a prompt text, if it is one of the task's.
    pub fn question(&self, prompt: &str) -> Option<&Question> {
        self.by_text.get(prompt.trim())
    }

    /// Gold reward of `response` to `prompt`; `finished` is whether generation ended with the stop
    /// token (false = truncated at the length limit). Unknown prompts score 0.
    pub fn score(&self, prompt: &str, response: &str, finished: bool) -> f32 {
        let Some(q) = self.question(prompt) else {
            return 0.0;
        };
        let ws = words(response);
        let mut score = 0.0f32;
        let answer = words(&q.answer);
        if ws.iter().any(|w| answer.contains(w)) {
            score += 2.0;
        }
        let mut seen_wrong = Vec::new();
        for w in &ws {
            if q.wrong.iter().any(|x| x == w) && !answer.contains(w) && !seen_wrong.contains(w) {
                seen_wrong.push(w.clone());
                score -= 1.0;
            }
        }
        let subject = words(&q.subject);
        if subject.iter().all(|s| ws.contains(s)) {
            score += 0.5;
        }
        let trimmed = response.trim();
        if trimmed.chars().next().is_some_and(char::is_uppercase) {
            score += 0.25;
        }
        if trimmed.ends_with('.') {
            score += 0.25;
        }
        score += if finished { 0.5 } else { -1.0 };
        let mut seen = Vec::new();
        for w in &ws {
            if seen.contains(w) {
                score -= 0.5;
            } else {
                seen.push(w.clone());
            }
        }
        let n = ws.len() as f32;
        score += 0.1 * n.min(8.0);
        if n > 12.0 {
            score -= 0.2 * (n - 12.0);
        }
        score
    }
}

/// Demonstration quality, drawn with the given probabilities for SFT data.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Quality {
    /// A correct, complete sentence.
    Good,
    /// The bare answer word.
    Terse,
    /// A complete sentence with a wrong answer.
    Wrong,
    /// The right answer with words repeated.
    Repetitive,
    /// Something unrelated.
    OffTopic,
}

/// Off-topic answers, `|`-separated.
const OFF_TOPIC: &str = "I like to sing songs.|The weather is nice today.|Let us play a game.|\
I do not know.|My favourite food is bread.|That is a good question";

/// A response to `q` of the given quality.
pub fn demonstration(q: &Question, quality: Quality, rng: &mut Rng) -> String {
    let subj = &q.subject;
    let sentence = |ans: &str, rng: &mut Rng| -> String {
        let s = match q.kind {
            Kind::Colour => match rng.index(3) {
                0 => format!("{} is {ans}.", the_noun(subj)),
                1 => format!("The colour of {} is {ans}.", the_noun(subj)),
                _ => format!("{} is usually {ans}.", the_noun(subj)),
            },
            Kind::Sound => match rng.index(3) {
                0 => format!("A {subj} says {ans}."),
                1 => format!("The {subj} makes the sound {ans}."),
                _ => format!("A {subj} goes {ans}."),
            },
            Kind::Sum => match rng.index(2) {
                0 => format!("{subj} is {ans}."),
                _ => format!("The sum of {subj} is {ans}."),
            },
            Kind::Opposite => match rng.index(2) {
                0 => format!("The opposite of {subj} is {ans}."),
                _ => format!("{ans} is the opposite of {subj}."),
            },
        };
        let mut c = s.chars();
        match c.next() {
            Some(f) => f.to_uppercase().collect::<String>() + c.as_str(),
            None => s,
        }
    };
    match quality {
        Quality::Good => sentence(&q.answer, rng),
        Quality::Terse => q.answer.clone(),
        Quality::Wrong => {
            let w = pick(rng, &q.wrong).clone();
            sentence(&w, rng)
        }
        Quality::Repetitive => format!("{} {} {} {}", subj, subj, q.answer, q.answer),
        Quality::OffTopic => pick(rng, &OFF_TOPIC.split('|').collect::<Vec<_>>()).to_string(),
    }
}

/// Draws a quality for SFT demonstrations: good 30 %, terse 20 %, wrong 25 %, repetitive 15 %,
/// off-topic 10 %.
pub fn draw_quality(rng: &mut Rng) -> Quality {
    let u = rng.next_f64();
    match u {
        u if u < 0.30 => Quality::Good,
        u if u < 0.50 => Quality::Terse,
        u if u < 0.75 => Quality::Wrong,
        u if u < 0.90 => Quality::Repetitive,
        _ => Quality::OffTopic,
    }
}

/// `n` questions drawn with replacement from `pool` (deterministic given `rng`).
pub fn sample_questions(pool: &[Question], n: usize, rng: &mut Rng) -> Vec<Question> {
    (0..n).map(|_| pick(rng, pool).clone()).collect()
}

/// Splits all questions into (training pool, held-out evaluation pool): the evaluation pool is
/// every question's held-out phrasing (the last), so evaluation prompts are never trained
/// on (nor seen by the reward model), while the facts they ask about are the ones the
/// demonstrations teach. The training pool has each question in its first `train_phrasings`
/// training phrasings (1 to [`MAX_TRAIN_PHRASINGS`]).
pub fn split_pools(train_phrasings: usize) -> (Vec<Question>, Vec<Question>) {
    let (mut train, mut eval) = (Vec::new(), Vec::new());
    for (q, phrasing) in all_questions() {
        if phrasing == MAX_TRAIN_PHRASINGS {
            eval.push(q);
        } else if phrasing < train_phrasings {
            train.push(q);
        }
    }
    (train, eval)
}
