//! The VNET language server: LSP over stdio on `tower-lsp-server`, with every piece of
//! language knowledge taken from the `vnet_grammar` crate (lexer, parser, checker, formatter).
//!
//! The modules are named for what they hold: the document store and position conversions,
//! one module per editor feature, and the transport guard that keeps the server alive on
//! garbage input.

pub mod actions;
pub mod complete;
pub mod convert;
pub mod document;
pub mod format;
pub mod hover;
pub mod keywords;
pub mod lookup;
pub mod navigate;
pub mod rename;
pub mod semantic;
pub mod server;
pub mod symbols;
pub mod transport;
pub mod worker;

pub use server::Backend;
