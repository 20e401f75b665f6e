//! What stands where: a walk over the grammar's public AST that names the role of every
//! identifier, MAC address and port, and finds the one under the cursor.
//!
//! This is the lookup the grammar crate does not offer yet ("the node at an offset"); it reads
//! the tree only and decides nothing about the language, so it could move to `vnet_grammar`
//! as is.

use vnet_grammar::ast::{MatchExpr, MatchKind, RuleKind, SourceFile};
use vnet_grammar::lexer;
use vnet_grammar::{Mac, Span};

/// The role a word plays in the program.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Role {
    /// A machine: declared by a HOST line (`declaration`) or used by a LINK or FORWARD.
    Machine { declaration: bool },
    /// A local interface of `daemon`: served by its HOST line or named by an INTERFACE rule.
    Interface { daemon: String, declaration: bool },
    /// The user of a HOST line declaring `machine`.
    User { machine: String },
    /// The port of a HOST line declaring `machine`.
    Port { machine: String },
    /// A MAC address in a rule (exact or after NOT).
    Mac(Mac),
}

/// One word of the program with its role.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Item {
    pub span: Span,
    pub text: String,
    pub role: Role,
}

impl Item {
    pub fn is_machine(&self) -> bool {
        matches!(self.role, Role::Machine { .. })
    }
}

fn item(span: Span, text: &str, role: Role) -> Item {
    Item {
        span,
        text: text.to_string(),
        role,
    }
}

/// Every identifier, port and MAC of the tree, in file order.
pub fn items(file: &SourceFile) -> Vec<Item> {
    let mut out = Vec::new();
    for host in &file.hosts {
        let machine = host.machine.as_str().to_string();
        out.push(item(
            host.user.span,
            host.user.as_str(),
            Role::User {
                machine: machine.clone(),
            },
        ));
        out.push(item(
            host.machine.span,
            &machine,
            Role::Machine { declaration: true },
        ));
        out.push(item(
            host.port.span,
            &host.port.value.to_string(),
            Role::Port {
                machine: machine.clone(),
            },
        ));
        out.push(item(
            host.iface.span,
            host.iface.as_str(),
            Role::Interface {
                daemon: machine,
                declaration: true,
            },
        ));
    }
    for block in &file.blocks {
        for link in &block.links {
            for name in [&link.dialer, &link.a, &link.b] {
                out.push(item(
                    name.span,
                    name.as_str(),
                    Role::Machine { declaration: false },
                ));
            }
        }
        for rule in &block.rules {
            out.push(item(
                rule.daemon.span,
                rule.daemon.as_str(),
                Role::Machine { declaration: false },
            ));
            for expr in [rule.src, rule.dst] {
                if let Some((span, mac)) = mac_of(expr) {
                    out.push(item(span, &mac.to_string(), Role::Mac(mac)));
                }
            }
            for name in &rule.dest {
                let role = match rule.kind {
                    RuleKind::Edge => Role::Machine { declaration: false },
                    RuleKind::Interface => Role::Interface {
                        daemon: rule.daemon.as_str().to_string(),
                        declaration: false,
                    },
                };
                out.push(item(name.span, name.as_str(), role));
            }
        }
    }
    out.sort_by_key(|i| i.span);
    out
}

/// The MAC of a match field and the span of the address itself (after any `NOT`).
pub fn mac_of(expr: MatchExpr) -> Option<(Span, Mac)> {
    let mac = match expr.kind {
        MatchKind::Exact(mac) | MatchKind::Not(mac) => mac,
        MatchKind::Any | MatchKind::None | MatchKind::Malformed => return None,
    };
    // A well-formed MAC is exactly 17 bytes and ends the field.
    let start = expr.span.end().saturating_sub(17).max(expr.span.start());
    Some((Span::new(start, expr.span.end()), mac))
}

/// Whether `offset` touches `span`: inside it or right after its last character, as a cursor
/// at the end of a word still means that word.
pub fn touches(span: Span, offset: usize) -> bool {
    span.start() <= offset && offset <= span.end()
}

/// The item under the cursor; a word the cursor is inside wins over one it just follows.
pub fn item_at(items: &[Item], offset: usize) -> Option<&Item> {
    let mut touching = items.iter().filter(|i| touches(i.span, offset));
    let first = touching.next()?;
    match touching.next() {
        Some(second) if second.span.start() == offset => Some(second),
        _ => Some(first),
    }
}

/// Every occurrence of a machine name, the HOST declarations included.
pub fn machine_occurrences<'a>(
    items: &'a [Item],
    name: &'a str,
) -> impl Iterator<Item = &'a Item> + 'a {
    items
        .iter()
        .filter(move |i| i.is_machine() && i.text == name)
}

/// Every occurrence of interface `name` of `daemon`, the HOST line's included.
pub fn interface_occurrences<'a>(
    items: &'a [Item],
    daemon: &'a str,
    name: &'a str,
) -> impl Iterator<Item = &'a Item> + 'a {
    items.iter().filter(move |i| {
        matches!(&i.role, Role::Interface { daemon: d, .. } if d == daemon) && i.text == name
    })
}

/// The first HOST line declaring `machine`.
pub fn declaration<'f>(file: &'f SourceFile, machine: &str) -> Option<&'f vnet_grammar::ast::Host> {
    file.hosts.iter().find(|h| h.machine.as_str() == machine)
}

/// A keyword under the cursor (from the grammar's lexer), in upper case.
pub fn keyword_at(text: &str, offset: usize) -> Option<(Span, &'static str)> {
    lexer::lex(text)
        .tokens
        .into_iter()
        .find_map(|(start, tok, end)| {
            let span = Span::new(start, end);
            if !touches(span, offset) {
                return None;
            }
            keyword_text(&tok).map(|k| (span, k))
        })
}

pub use vnet_grammar::lexer::keyword_text;
