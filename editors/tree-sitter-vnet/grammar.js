/**
 * Tree-sitter grammar for VNET overlay descriptions (.vnet), after SPEC 2.1-2.2.
 *
 * A file is read as a sequence of statements, as the grammar crate's LALRPOP grammar does;
 * LINK and FORWARD statements after an ADD or DELETE belong to its block. Keywords are
 * case-insensitive. This grammar is for highlighting, folding and navigation in editors
 * (Neovim, Helix, Zed); the language itself is defined by the grammar crate, and the
 * diagnostics come from vnet-lsp.
 */

/** A case-insensitive keyword, named by its upper-case spelling. */
function kw(word) {
  const pattern = word
    .split("")
    .map((c) => `[${c.toUpperCase()}${c.toLowerCase()}]`)
    .join("");
  return alias(token(new RegExp(pattern)), word);
}

module.exports = grammar({
  name: "vnet",

  extras: ($) => [/\s/, $.comment],

  rules: {
    source_file: ($) => repeat($._statement),

    _statement: ($) => choice($.begin, $.end, $.host, $.block, $.link, $.rule),

    begin: (_) => kw("BEGIN"),
    end: (_) => kw("END"),

    // HOST user AT machine port interface
    host: ($) =>
      seq(
        kw("HOST"),
        field("user", $.name),
        kw("AT"),
        field("machine", $.name),
        field("port", $.port),
        field("interface", $.name),
      ),

    // (ADD | DELETE) link* rule*
    block: ($) =>
      prec.right(
        seq(field("kind", choice(kw("ADD"), kw("DELETE"))), repeat(choice($.link, $.rule))),
      ),

    // LINK (TCP | UDP) dialer a b
    link: ($) =>
      seq(
        kw("LINK"),
        field("transport", choice(kw("TCP"), kw("UDP"))),
        field("dialer", $.name),
        field("a", $.name),
        field("b", $.name),
      ),

    // FORWARD (EDGE | INTERFACE) daemon source destination target [peer]
    rule: ($) =>
      prec.right(
        seq(
          kw("FORWARD"),
          field("kind", choice(kw("EDGE"), kw("INTERFACE"))),
          field("daemon", $.name),
          field("source", $._match),
          field("destination", $._match),
          field("target", $.name),
          optional(field("peer", $.name)),
        ),
      ),

    _match: ($) => choice($.not, $.any, $.none, $.mac),
    not: ($) => seq(kw("NOT"), $.mac),
    any: (_) => kw("ANY"),
    none: (_) => kw("NONE"),

    mac: (_) => token(prec(1, /[0-9A-Fa-f]{2}(:[0-9A-Fa-f]{2}){5}/)),
    port: (_) => /[0-9]+/,
    comment: (_) => token(seq("#", /.*/)),
    name: (_) => /[A-Za-z0-9_.\-]+/,
  },
});
