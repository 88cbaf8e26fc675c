//! Routing: the team's ordered rules that give a new ticket its team, priority and labels.
//!
//! A rule (`[[routing]]` in `franz.toml`) matches a new ticket by where it came from (its origin, Discord server or
//! channel), who sent it (its contact, by a regular expression), and what it says (any of some words, or a regular
//! expression, over its text). Every condition a rule names must hold; a rule that names none matches every ticket.
//! The first rule that matches decides ([`route`]), and akte records what it decided on the ticket's `created`
//! event ([`Routed`], with the rule's name), so a rule changed later never rewrites a ticket's history. No rule
//! matching leaves the ticket in triage: no team, the default priority, no labels.

use regex::Regex;

use crate::schema::Ticket;
use crate::schema::lifecycle::{Priority, Routed};

/// The most rules a configuration may hold, and the most words one rule may list.
pub const RULES_MAX: usize = 200;
pub const WORDS_MAX: usize = 100;
/// The most bytes of a regular expression's compiled program: a rule cannot make akte slow or large. The time to
/// decide a ticket grows with the program (times the ticket's length): 1 MiB let one rule take most of a second.
const REGEX_SIZE_MAX: usize = 1 << 20;
/// The most copies of a part a regular expression's counted repetitions make (`(a|b){100}` makes 100, nested ones
/// multiply): the states a match keeps alive at once, and so its time, grow with them; the size limit alone let
/// `(?:a|b|c| ){3000}z` take most of a second on a ticket.
const REGEX_COPIES_MAX: u64 = 100;

/// How many copies of its most repeated part `hir` makes.
fn copies(hir: &regex_syntax::hir::Hir) -> u64 {
    use regex_syntax::hir::HirKind;
    match hir.kind() {
        HirKind::Repetition(repetition) => {
            let count = u64::from(repetition.max.unwrap_or(repetition.min).max(repetition.min).max(1));
            count.saturating_mul(copies(&repetition.sub))
        }
        HirKind::Capture(capture) => copies(&capture.sub),
        HirKind::Concat(parts) | HirKind::Alternation(parts) => parts.iter().map(copies).max().unwrap_or(1),
        _ => 1,
    }
}

/// One compiled rule.
#[derive(Debug, Clone)]
pub struct Rule {
    pub name: String,
    /// The ticket's origin (`Discord` or `Email`; the command line submits as Discord does), compared without case.
    pub origin: Option<String>,
    pub guild: Option<String>,
    pub channel: Option<String>,
    pub contact: Option<Regex>,
    /// Lower-case words, any of which must stand in the ticket's text as a word of its own.
    pub words: Vec<String>,
    pub pattern: Option<Regex>,
    pub team: Option<String>,
    pub priority: Option<Priority>,
    pub labels: Vec<String>,
}

/// A rule as the configuration writes it, before it is compiled.
#[derive(Debug, Clone, Default, PartialEq, Eq, serde::Deserialize, serde::Serialize)]
#[serde(default, deny_unknown_fields)]
pub struct RuleText {
    pub name: String,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub origin: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub guild: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub channel: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub contact: Option<String>,
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub words: Vec<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub pattern: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub team: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub priority: Option<String>,
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub labels: Vec<String>,
}

/// Where a ticket of no team is: not a team's name (`team=triage` lists those tickets).
pub const TRIAGE: &str = "triage";

/// A team's name: 1 to 32 lower-case letters, digits, `-` and `_`, starting with a letter or digit; not `triage`.
pub fn team_name(name: &str) -> Result<(), String> {
    let ok = (1..=32).contains(&name.len())
        && name.bytes().all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'-' || b == b'_')
        && name.bytes().next().is_some_and(|b| b.is_ascii_alphanumeric())
        && name != TRIAGE;
    if ok {
        Ok(())
    } else {
        Err(format!(
            "{name:?} is no team name: 1 to 32 lower-case letters, digits, - and _, starting with a letter or digit, \
             and not {TRIAGE} (where tickets of no team are)"
        ))
    }
}

impl RuleText {
    /// The rule compiled, or what is wrong with it (without where: the caller knows the rule's place).
    pub fn compile(&self) -> Result<Rule, String> {
        if self.name.trim().is_empty() || self.name.trim().chars().count() > 64 {
            return Err("a rule needs a name of 1 to 64 characters (`name = \"invoices\"`)".into());
        }
        if self.name.trim().starts_with('/') {
            return Err(format!(
                "its name {:?} starts with /, which franz keeps for its own (`{CATEGORY_RULE}`)",
                self.name
            ));
        }
        let regex = |what: &str, text: &Option<String>| -> Result<Option<Regex>, String> {
            text.as_deref()
                .map(|text| {
                    if let Ok(hir) = regex_syntax::parse(text)
                        && copies(&hir) > REGEX_COPIES_MAX
                    {
                        return Err(format!(
                            "its {what} {text:?} is no regular expression franz takes: it repeats a part {} times, \
                             at most {REGEX_COPIES_MAX} (more would make every new ticket wait)",
                            copies(&hir)
                        ));
                    }
                    regex::RegexBuilder::new(text)
                        .size_limit(REGEX_SIZE_MAX)
                        .build()
                        .map_err(|error| format!("its {what} {text:?} is no regular expression: {error}"))
                })
                .transpose()
        };
        if self.words.len() > WORDS_MAX {
            return Err(format!("it lists {} words; at most {WORDS_MAX}", self.words.len()));
        }
        let words: Vec<String> = self.words.iter().map(|word| fold(word.trim())).collect();
        if let Some(empty) = words.iter().find(|word| word.is_empty() || word.contains(char::is_whitespace)) {
            return Err(format!("its words are single words; {empty:?} is not"));
        }
        // A word the text is never split into (`node.js`, `c++`) would never match: refused, with why.
        if let Some(word) = self.words.iter().find(|word| !words_of(word.trim()).eq([word.trim()])) {
            return Err(format!(
                "its word {word:?} never stands in a text as a word of its own (words are letters, digits, marks, - \
                 and _); use a pattern for it"
            ));
        }
        let origin = match &self.origin {
            None => None,
            Some(origin) => Some(
                crate::schema::ORIGINS
                    .into_iter()
                    .find(|known| known.eq_ignore_ascii_case(origin.trim()))
                    .ok_or_else(|| format!("its origin {origin:?} is none of {}", crate::schema::ORIGINS.join(", ")))?
                    .to_owned(),
            ),
        };
        if self.labels.len() > super::LABELS_MAX {
            return Err(format!(
                "it gives {} labels; a ticket carries at most {}",
                self.labels.len(),
                super::LABELS_MAX
            ));
        }
        if let Some(team) = &self.team {
            team_name(team)?;
        }
        let priority = match &self.priority {
            None => None,
            Some(name) => Some(
                Priority::parse(name)
                    .ok_or_else(|| format!("its priority {name:?} is none of low, normal, high, urgent"))?,
            ),
        };
        let labels = self
            .labels
            .iter()
            .map(|label| super::label(label).map_err(|why| format!("its label {label:?}: {why}")))
            .collect::<Result<Vec<String>, String>>()?;
        if self.team.is_none() && priority.is_none() && self.labels.is_empty() {
            return Err("it sets nothing: give it a team, a priority or labels".into());
        }
        Ok(Rule {
            name: self.name.trim().to_owned(),
            origin,
            guild: self.guild.clone(),
            channel: self.channel.clone(),
            contact: regex("contact", &self.contact)?,
            words,
            pattern: regex("pattern", &self.pattern)?,
            team: self.team.clone(),
            priority,
            labels,
        })
    }
}

impl Rule {
    /// Whether every condition of the rule holds for `ticket`.
    pub fn matches(&self, ticket: &Ticket) -> bool {
        let same = |wanted: &Option<String>, has: Option<&str>| wanted.as_deref().is_none_or(|w| Some(w) == has);
        self.origin.as_deref().is_none_or(|origin| origin.eq_ignore_ascii_case(&ticket.origin))
            && same(&self.guild, ticket.guild_id.as_deref())
            && same(&self.channel, ticket.channel_id.as_deref())
            && self.contact.as_ref().is_none_or(|contact| contact.is_match(&ticket.contact))
            && (self.words.is_empty() || has_word(&ticket.body, &self.words))
            && self.pattern.as_ref().is_none_or(|pattern| pattern.is_match(&ticket.body))
    }
}

/// The words of `text`: runs of letters, digits, combining marks (a Devanagari virama, an accent written apart),
/// `-` and `_`.
fn words_of(text: &str) -> impl Iterator<Item = &str> {
    static WORD: std::sync::LazyLock<Regex> =
        std::sync::LazyLock::new(|| Regex::new(r"[\p{Alphabetic}\p{N}\p{M}_-]+").expect("the word pattern parses"));
    WORD.find_iter(text).map(|found| found.as_str())
}

/// `word` without case: lower case, and the folds of full case folding that lower case misses (`ß` and `ss`, a
/// final `ς` and `σ`), and the dot an upper-case `İ` leaves on its `i`.
fn fold(word: &str) -> String {
    word.to_lowercase().replace('ß', "ss").replace('ς', "σ").replace("i\u{307}", "i")
}

/// Whether any of `words` (folded) stands in `text` as a word of its own.
fn has_word(text: &str, words: &[String]) -> bool {
    words_of(text).any(|word| {
        let word = fold(word);
        words.contains(&word)
    })
}

/// What the first rule that matches `ticket` sets, naming it; `None` when no rule matches (triage).
pub fn route(rules: &[Rule], ticket: &Ticket) -> Option<Routed> {
    // The submitter's own choice in `/ticket`'s category menu comes first, and decides the team alone.
    if let Some(team) = ticket.category.as_ref().filter(|team| team_name(team).is_ok()) {
        return Some(Routed {
            rule: CATEGORY_RULE.into(),
            team: Some(team.clone()),
            priority: None,
            labels: Vec::new(),
        });
    }
    rules.iter().find(|rule| rule.matches(ticket)).map(|rule| Routed {
        rule: rule.name.clone(),
        team: rule.team.clone(),
        priority: rule.priority,
        labels: rule.labels.clone(),
    })
}

/// The rule name a routing by the submitter's choice in `/ticket` is recorded under; no configured rule may take a
/// name that starts with `/`.
pub const CATEGORY_RULE: &str = "/ticket category";

/// What routed a ticket, as the end of a sentence: "by rule `invoices`", or "by the submitter's choice in /ticket".
pub fn by(rule: &str) -> String {
    if rule == CATEGORY_RULE { "by the submitter's choice in /ticket".to_owned() } else { format!("by rule `{rule}`") }
}

/// How many similar closed tickets are shown, and how many of them must agree for a suggestion.
pub const SIMILAR_SHOWN: usize = 5;
pub const SIMILAR_AGREE: usize = 3;

/// What the closed tickets most like one suggest for it: labels and a team that at least [`SIMILAR_AGREE`] of
/// them share and it lacks. Only ever shown, for a person to apply with one press; never applied by franz.
#[derive(Debug, Clone, Default, PartialEq, Eq, serde::Serialize)]
pub struct Suggested {
    pub labels: Vec<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub team: Option<String>,
}

/// The suggestions of the nearest [`SIMILAR_SHOWN`] of `similar` (best first) for `ticket`.
pub fn suggest(ticket: &crate::lifecycle::TicketState, similar: &[crate::lifecycle::TicketState]) -> Suggested {
    let nearest = &similar[..similar.len().min(SIMILAR_SHOWN)];
    let mut labels: std::collections::BTreeMap<&str, usize> = std::collections::BTreeMap::new();
    let mut teams: std::collections::BTreeMap<&str, usize> = std::collections::BTreeMap::new();
    for other in nearest {
        for label in &other.labels {
            *labels.entry(label).or_default() += 1;
        }
        if let Some(team) = &other.team {
            *teams.entry(team).or_default() += 1;
        }
    }
    Suggested {
        labels: labels
            .into_iter()
            .filter(|(label, count)| *count >= SIMILAR_AGREE && !ticket.labels.contains(*label))
            .map(|(label, _)| label.to_owned())
            .collect(),
        team: teams
            .into_iter()
            .find(|(team, count)| *count >= SIMILAR_AGREE && ticket.team.as_deref() != Some(*team))
            .map(|(team, _)| team.to_owned()),
    }
}

#[cfg(test)]
mod tests;
