//! Hover: a machine's HOST line, links and rules; the rules naming a MAC; what a keyword means.

use crate::convert;
use crate::document::Document;
use crate::keywords;
use crate::lookup::{self, Item, Role};
use std::fmt::Write;
use tower_lsp_server::ls_types::{Hover, HoverContents, MarkupContent, MarkupKind};
use vnet_grammar::model::{RuleDef, Target};
use vnet_grammar::{Mac, Span};

pub fn hover(doc: &Document, offset: usize) -> Option<Hover> {
    let items = lookup::items(&doc.analysis.file);
    let (span, text) = match lookup::item_at(&items, offset) {
        Some(item) => (item.span, describe(doc, item)),
        None => {
            let (span, keyword) = lookup::keyword_at(&doc.text, offset)?;
            (span, describe_keyword(keyword)?)
        }
    };
    Some(Hover {
        contents: HoverContents::Markup(MarkupContent {
            kind: MarkupKind::Markdown,
            value: text,
        }),
        range: Some(convert::range(doc, span)),
    })
}

fn describe(doc: &Document, item: &Item) -> String {
    match &item.role {
        Role::Machine { .. } => machine(doc, &item.text),
        Role::Interface { daemon, .. } => interface(doc, daemon, &item.text),
        Role::User { machine } => format!(
            "**user** `{}` of daemon `{machine}`\n\n`vnetc up` starts the daemon over ssh as this user when the machine is remote; for a local daemon it is informational.",
            item.text
        ),
        Role::Port { machine } => format!(
            "**port** {} of daemon `{machine}`\n\nThe daemon listens here for both control and overlay traffic.",
            item.text
        ),
        Role::Mac(mac) => mac_address(doc, *mac),
    }
}

fn code_block(out: &mut String, lines: impl IntoIterator<Item = String>) {
    out.push_str("```vnet\n");
    for line in lines {
        out.push_str(&line);
        out.push('\n');
    }
    out.push_str("```\n");
}

fn machine(doc: &Document, name: &str) -> String {
    let state = &doc.analysis.state;
    let mut out = format!("**machine** `{name}`");
    match state.hosts.iter().position(|h| h.machine == name) {
        Some(0) => out.push_str(" — the Proxy (first HOST line)\n\n"),
        Some(_) => out.push_str("\n\n"),
        None => out.push_str(" — not declared by a HOST line (V101)\n\n"),
    }
    if let Some(host) = state.host(name) {
        code_block(&mut out, [host.to_string()]);
    }
    let links: Vec<String> = state.links_of(name).map(|l| l.to_string()).collect();
    let _ = writeln!(out, "\n{}:", count(links.len(), "link"));
    if !links.is_empty() {
        code_block(&mut out, links);
    }
    let rules = state.rules_of(name).count();
    let _ = write!(out, "\n{} installed on `{name}`", count(rules, "rule"));
    out
}

fn interface(doc: &Document, daemon: &str, name: &str) -> String {
    let state = &doc.analysis.state;
    let mut out = format!("**interface** `{name}` of daemon `{daemon}`\n\n");
    match state.host(daemon) {
        Some(host) => {
            code_block(&mut out, [host.to_string()]);
            if host.iface != name {
                let _ = write!(
                    out,
                    "\n`{daemon}` serves `{}`, not `{name}` (V109)\n",
                    host.iface
                );
            }
        }
        None => {
            let _ = writeln!(out, "`{daemon}` is not declared by a HOST line (V101)");
        }
    }
    let delivering = state
        .rules_of(daemon)
        .filter(|r| matches!(&r.target, Target::Interface { name: n } if n == name))
        .count();
    let _ = write!(
        out,
        "\n{} deliver{} into it",
        count(delivering, "rule"),
        if delivering == 1 { "s" } else { "" }
    );
    out
}

fn mac_address(doc: &Document, mac: Mac) -> String {
    let kind = if mac == Mac::BROADCAST {
        "broadcast"
    } else if mac.is_group() {
        "multicast"
    } else {
        "unicast"
    };
    let mut naming: Vec<(Span, &RuleDef)> = doc
        .analysis
        .state
        .rules
        .iter()
        .enumerate()
        .filter(|(_, r)| r.src.mac() == Some(mac) || r.dst.mac() == Some(mac))
        .map(|(i, r)| {
            let span = doc
                .analysis
                .origins
                .rule(i)
                .map_or(Span::default(), |o| o.span);
            (span, r)
        })
        .collect();
    naming.sort_by_key(|(span, _)| *span);
    let mut out = format!(
        "**MAC** `{mac}` ({kind})\n\n{} name{} it",
        count(naming.len(), "rule"),
        if naming.len() == 1 { "s" } else { "" }
    );
    if naming.is_empty() {
        return out;
    }
    out.push_str(":\n\n");
    for (span, rule) in naming {
        let line = doc.index.line_of(span.start()) + 1;
        let _ = writeln!(out, "- line {line}: `{rule}`");
    }
    out
}

fn describe_keyword(keyword: &str) -> Option<String> {
    let (syntax, meaning) = keywords::doc(keyword)?;
    let mut out = format!("**{keyword}**\n\n");
    code_block(&mut out, [syntax.to_string()]);
    out.push('\n');
    out.push_str(meaning);
    Some(out)
}

fn count(n: usize, noun: &str) -> String {
    if n == 1 {
        format!("1 {noun}")
    } else {
        format!("{n} {noun}s")
    }
}
