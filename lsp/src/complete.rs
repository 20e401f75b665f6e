//! Completion by position: what the grammar allows at the cursor (keywords), and the names
//! that fit there: declared machines, the interface of the daemon in question, MAC addresses
//! already in the file.
//!
//! Where the cursor stands in the grammar is read from the grammar's own tokens: the last
//! statement keyword before the cursor and the fields after it. (The grammar crate could offer
//! this as "expected tokens at an offset" from its LR parser; see the README.)

use crate::convert;
use crate::document::Document;
use crate::keywords;
use crate::lookup::{self, Role};
use std::collections::{HashMap, HashSet};
use tower_lsp_server::ls_types::{
    CompletionItem, CompletionItemKind, CompletionTextEdit, TextEdit,
};
use vnet_grammar::lexer::{self, Tok};
use vnet_grammar::model::HostDef;
use vnet_grammar::{Mac, Span};

/// What the position calls for.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Expect {
    /// The start of a statement (which ones depends on where in the program we are).
    Statement(&'static [&'static str]),
    /// One of these keywords.
    Keywords(&'static [&'static str]),
    /// The machine a HOST line declares: machines used but not declared yet are offered.
    NewMachine,
    /// The interface a HOST line serves: interfaces its INTERFACE rules already name.
    HostInterface { machine: String },
    /// A declared machine (LINK ends, a rule's daemon); `except` is left out.
    Machine { except: Option<String> },
    /// The first machine of an EDGE rule's hop, which must be the rule's daemon.
    EdgeHop { daemon: String },
    /// The second machine of an EDGE rule's hop: the daemon's linked peers first.
    EdgePeer { daemon: String },
    /// A match field: MACs in the file and the keywords (`NONE` only as a destination).
    Match { source: bool },
    /// A MAC after `NOT`.
    Mac,
    /// The interface of an INTERFACE rule's daemon.
    Interface { daemon: String },
    /// A user name, a port, or nothing at all (after END, inside a comment).
    Nothing,
}

const PROGRAM_START: &[&str] = &["BEGIN"];
const IN_HOSTS: &[&str] = &["HOST", "ADD", "DELETE", "END"];
const IN_BLOCK: &[&str] = &["LINK", "FORWARD", "ADD", "DELETE", "END"];
const AFTER_RULES: &[&str] = &["FORWARD", "ADD", "DELETE", "END"];

fn starts_statement(tok: &Tok<'_>) -> bool {
    matches!(
        tok,
        Tok::Begin | Tok::End | Tok::Host | Tok::Add | Tok::Delete | Tok::Link | Tok::Forward
    )
}

fn name(tok: Option<&Tok<'_>>) -> Option<String> {
    match tok {
        Some(Tok::Name(name)) => Some((*name).to_string()),
        _ => None,
    }
}

/// What is expected after `before`, the tokens ahead of the cursor.
pub fn expect(before: &[Tok<'_>]) -> Expect {
    let mut in_block = false;
    let mut block_has_rules = false;
    let mut ended = false;
    let mut statement: &[Tok<'_>] = &[];
    for (i, tok) in before.iter().enumerate() {
        if !starts_statement(tok) {
            continue;
        }
        match tok {
            Tok::End => ended = true,
            Tok::Add | Tok::Delete => {
                in_block = true;
                block_has_rules = false;
            }
            Tok::Forward => block_has_rules = true,
            _ => {}
        }
        statement = &before[i..];
    }
    let next_statement = if ended {
        Expect::Nothing
    } else if !in_block {
        Expect::Statement(IN_HOSTS)
    } else if block_has_rules {
        Expect::Statement(AFTER_RULES)
    } else {
        Expect::Statement(IN_BLOCK)
    };
    if before.is_empty() {
        return Expect::Statement(PROGRAM_START);
    }
    let n = statement.len();
    match statement.first() {
        Some(Tok::Host) => match n {
            1 | 4 => Expect::Nothing,
            2 => Expect::Keywords(&["AT"]),
            3 => Expect::NewMachine,
            5 => name(statement.get(3))
                .map_or(Expect::Nothing, |machine| Expect::HostInterface { machine }),
            _ => next_statement,
        },
        Some(Tok::Link) => match n {
            1 => Expect::Keywords(&["TCP", "UDP"]),
            2 | 3 => Expect::Machine { except: None },
            4 => Expect::Machine {
                except: name(statement.get(3)),
            },
            _ => next_statement,
        },
        Some(Tok::Forward) => forward(statement).unwrap_or(next_statement),
        _ => next_statement,
    }
}

/// Inside a FORWARD statement; `None` once it is complete (or too broken to say).
fn forward(statement: &[Tok<'_>]) -> Option<Expect> {
    let n = statement.len();
    match n {
        1 => return Some(Expect::Keywords(&["EDGE", "INTERFACE"])),
        2 => return Some(Expect::Machine { except: None }),
        _ => {}
    }
    let daemon = name(statement.get(2))?;
    let mut at = 3;
    for source in [true, false] {
        match statement.get(at) {
            None => return Some(Expect::Match { source }),
            Some(Tok::Not) => {
                if at + 1 >= n {
                    return Some(Expect::Mac);
                }
                at += 2;
            }
            Some(Tok::Any | Tok::None | Tok::Mac(_)) => at += 1,
            Some(_) => return None,
        }
    }
    let given = n.saturating_sub(at);
    match (statement.get(1)?, given) {
        (Tok::Edge, 0) => Some(Expect::EdgeHop { daemon }),
        (Tok::Edge, 1) => Some(Expect::EdgePeer { daemon }),
        (Tok::Interface, 0) => Some(Expect::Interface { daemon }),
        _ => None,
    }
}

/// The most items one answer carries besides keywords. A file names thousands of MACs, and
/// the whole list costs the client and the wire more than the server: past this many, the
/// answer is narrowed by what is typed and marked incomplete, so that the client asks again as
/// the word grows (as rust-analyzer does).
pub const MOST_ITEMS: usize = 100;

/// A completion answer: the items, and whether more would match than it carries.
pub struct Completions {
    pub items: Vec<CompletionItem>,
    pub incomplete: bool,
}

/// The completions at `offset`.
pub fn complete(doc: &Document, offset: usize) -> Completions {
    let lexed = lexer::lex(&doc.text);
    let nothing = Completions {
        items: Vec::new(),
        incomplete: false,
    };
    if lexed
        .comments
        .iter()
        .any(|c| c.span.start() < offset && offset <= c.span.end())
    {
        return nothing;
    }
    // The word being typed, replaced as a whole by the chosen item.
    let word = lexed
        .tokens
        .iter()
        .find(|(start, _, end)| *start < offset && offset <= *end)
        .map_or(Span::new(offset, offset), |(start, _, end)| {
            Span::new(*start, *end)
        });
    let before: Vec<Tok<'_>> = lexed
        .tokens
        .iter()
        .take_while(|(_, _, end)| *end <= word.start())
        .map(|(_, tok, _)| *tok)
        .collect();
    let macs: Vec<Mac> = {
        let mut seen = HashSet::new();
        lexed
            .tokens
            .iter()
            .filter_map(|(start, tok, _)| match tok {
                Tok::Mac(Some(mac)) if *start != word.start() => Some(*mac),
                _ => None,
            })
            .filter(|mac| seen.insert(*mac))
            .collect()
    };
    let typed = doc.text.get(word.start()..offset).unwrap_or_default();
    let (candidates, incomplete) = narrow(candidates(doc, &expect(&before), &macs), typed);
    let range = convert::range(doc, word);
    let items = candidates
        .into_iter()
        .enumerate()
        .map(|(i, (label, kind, detail))| CompletionItem {
            label: label.clone(),
            kind: Some(kind),
            detail,
            sort_text: Some(format!("{i:04}")),
            text_edit: Some(CompletionTextEdit::Edit(TextEdit::new(range, label))),
            ..CompletionItem::default()
        })
        .collect();
    Completions { items, incomplete }
}

/// The candidates an answer carries, and whether it is incomplete: all of them when there are
/// at most [`MOST_ITEMS`] besides keywords; otherwise the keywords and the first [`MOST_ITEMS`]
/// that match what is typed (as the client would filter: its characters in order, any case),
/// those starting with it first.
fn narrow(candidates: Vec<Candidate>, typed: &str) -> (Vec<Candidate>, bool) {
    let is_keyword = |c: &Candidate| c.1 == CompletionItemKind::KEYWORD;
    if candidates.iter().filter(|c| !is_keyword(c)).count() <= MOST_ITEMS {
        return (candidates, false);
    }
    let typed = typed.to_ascii_lowercase();
    let (mut starting, mut containing, mut keywords) = (Vec::new(), Vec::new(), Vec::new());
    for candidate in candidates {
        let label = candidate.0.to_ascii_lowercase();
        if is_keyword(&candidate) {
            keywords.push(candidate);
        } else if label.starts_with(&typed) {
            starting.push(candidate);
        } else if containing.len() < MOST_ITEMS && in_order(&label, &typed) {
            containing.push(candidate);
        }
    }
    starting.extend(containing);
    starting.truncate(MOST_ITEMS);
    starting.extend(keywords);
    (starting, true)
}

/// Whether the characters of `typed` appear in `label` in order.
fn in_order(label: &str, typed: &str) -> bool {
    let mut rest = label.chars();
    typed.chars().all(|t| rest.any(|c| c == t))
}

type Candidate = (String, CompletionItemKind, Option<String>);

fn keyword(k: &str) -> Candidate {
    let detail = keywords::doc(k).map(|(syntax, _)| syntax.to_string());
    (k.to_string(), CompletionItemKind::KEYWORD, detail)
}

/// The candidates for what is expected. Each list is made in one pass over the file's names
/// or rules, never a pass per candidate: a large file has thousands of each.
fn candidates(doc: &Document, expect: &Expect, macs: &[Mac]) -> Vec<Candidate> {
    let state = &doc.analysis.state;
    let mut hosts: HashMap<&str, &HostDef> = HashMap::new();
    for h in &state.hosts {
        hosts.entry(h.machine.as_str()).or_insert(h);
    }
    let machine = |name: &str| -> Candidate {
        let detail = hosts.get(name).map(|h| h.to_string());
        (name.to_string(), CompletionItemKind::MODULE, detail)
    };
    let mac_items = || -> Vec<Candidate> {
        let mut naming: HashMap<Mac, usize> = HashMap::new();
        for rule in &state.rules {
            let (src, dst) = (rule.src.mac(), rule.dst.mac());
            for mac in src.into_iter().chain(dst.filter(|d| Some(*d) != src)) {
                *naming.entry(mac).or_default() += 1;
            }
        }
        macs.iter()
            .map(|mac| {
                let rules = naming.get(mac).copied().unwrap_or(0);
                let detail = format!(
                    "MAC address named by {rules} rule{}",
                    if rules == 1 { "" } else { "s" }
                );
                (mac.to_string(), CompletionItemKind::VALUE, Some(detail))
            })
            .collect()
    };
    match expect {
        Expect::Statement(words) | Expect::Keywords(words) => {
            words.iter().map(|k| keyword(k)).collect()
        }
        Expect::Nothing => Vec::new(),
        Expect::NewMachine => {
            let items = lookup::items(&doc.analysis.file);
            let mut seen = HashSet::new();
            let mut undeclared: Vec<String> = Vec::new();
            for item in &items {
                if matches!(item.role, Role::Machine { declaration: false })
                    && !hosts.contains_key(item.text.as_str())
                    && seen.insert(item.text.as_str())
                {
                    undeclared.push(item.text.clone());
                }
            }
            undeclared
                .into_iter()
                .map(|m| {
                    (
                        m,
                        CompletionItemKind::MODULE,
                        Some("used but not declared yet".to_string()),
                    )
                })
                .collect()
        }
        Expect::HostInterface { machine } => {
            let items = lookup::items(&doc.analysis.file);
            let mut seen = HashSet::new();
            let mut named: Vec<String> = Vec::new();
            for item in &items {
                if matches!(&item.role, Role::Interface { daemon, declaration: false } if daemon == machine)
                    && seen.insert(item.text.as_str())
                {
                    named.push(item.text.clone());
                }
            }
            named
                .into_iter()
                .map(|i| {
                    (
                        i,
                        CompletionItemKind::INTERFACE,
                        Some(format!("named by INTERFACE rules of `{machine}`")),
                    )
                })
                .collect()
        }
        Expect::Machine { except } => state
            .hosts
            .iter()
            .filter(|h| Some(h.machine.as_str()) != except.as_deref())
            .map(|h| machine(&h.machine))
            .collect(),
        Expect::EdgeHop { daemon } => vec![machine(daemon)],
        Expect::EdgePeer { daemon } => {
            let mut peers: Vec<String> = state
                .links_of(daemon)
                .filter_map(|l| l.key().peer_of(daemon).map(str::to_string))
                .collect();
            let linked: HashSet<String> = peers.iter().cloned().collect();
            for host in &state.hosts {
                if host.machine != *daemon && !linked.contains(host.machine.as_str()) {
                    peers.push(host.machine.to_string());
                }
            }
            peers.iter().map(|p| machine(p)).collect()
        }
        Expect::Match { source } => {
            let mut out = mac_items();
            out.push(keyword("NOT"));
            out.push(keyword("ANY"));
            if !source {
                out.push(keyword("NONE"));
            }
            out
        }
        Expect::Mac => mac_items(),
        Expect::Interface { daemon } => state
            .host(daemon)
            .map(|h| {
                vec![(
                    h.iface.to_string(),
                    CompletionItemKind::INTERFACE,
                    Some(format!("the interface `{daemon}` serves")),
                )]
            })
            .into_iter()
            .flatten()
            .collect(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn at(text: &str) -> Expect {
        let lexed = lexer::lex(text);
        let toks: Vec<Tok<'_>> = lexed.tokens.iter().map(|t| t.1).collect();
        expect(&toks)
    }

    #[test]
    fn positions_in_the_grammar() {
        assert_eq!(at(""), Expect::Statement(PROGRAM_START));
        assert_eq!(at("BEGIN"), Expect::Statement(IN_HOSTS));
        assert_eq!(at("BEGIN HOST u"), Expect::Keywords(&["AT"]));
        assert_eq!(at("BEGIN HOST u AT"), Expect::NewMachine);
        assert_eq!(
            at("BEGIN HOST u AT m 5000"),
            Expect::HostInterface {
                machine: "m".into()
            }
        );
        assert_eq!(
            at("BEGIN HOST u AT m 5000 eth0"),
            Expect::Statement(IN_HOSTS)
        );
        assert_eq!(at("BEGIN ADD"), Expect::Statement(IN_BLOCK));
        assert_eq!(at("BEGIN ADD LINK"), Expect::Keywords(&["TCP", "UDP"]));
        assert_eq!(
            at("BEGIN ADD LINK TCP a a"),
            Expect::Machine {
                except: Some("a".into())
            }
        );
        assert_eq!(
            at("BEGIN ADD FORWARD EDGE a"),
            Expect::Match { source: true }
        );
        assert_eq!(at("BEGIN ADD FORWARD EDGE a ANY NOT"), Expect::Mac);
        assert_eq!(
            at("BEGIN ADD FORWARD EDGE a ANY NOT 00:00:00:00:00:01"),
            Expect::EdgeHop { daemon: "a".into() }
        );
        assert_eq!(
            at("BEGIN ADD FORWARD EDGE a ANY NONE a"),
            Expect::EdgePeer { daemon: "a".into() }
        );
        assert_eq!(
            at("BEGIN ADD FORWARD INTERFACE a ANY ANY"),
            Expect::Interface { daemon: "a".into() }
        );
        assert_eq!(
            at("BEGIN ADD FORWARD INTERFACE a ANY ANY eth0"),
            Expect::Statement(AFTER_RULES)
        );
        assert_eq!(at("BEGIN END"), Expect::Nothing);
    }
}
