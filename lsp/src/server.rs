//! The language server: LSP requests and notifications dispatched to the feature modules,
//! over the document store.

use crate::document::{Document, Finished, Store};
use crate::worker::Analysed;
use crate::{
    actions, complete, convert, format, hover, navigate, rename, semantic, symbols, worker,
};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use tower_lsp_server::jsonrpc::{self, Result};
use tower_lsp_server::ls_types::*;
use tower_lsp_server::{Client, LanguageServer};

pub struct Backend {
    shared: Arc<Shared>,
}

/// What the server's tasks share: the client, the documents, and the order of publishing.
struct Shared {
    client: Client,
    store: Store,
    /// Held while publishing, so a file's diagnostics never overtake its close (or a newer
    /// version's diagnostics).
    publishing: tokio::sync::Mutex<()>,
    /// Set by `shutdown`; the process exits with 0 only when it was (LSP `exit`).
    shutdown: Arc<AtomicBool>,
}

impl Backend {
    pub fn new(client: Client, shutdown: Arc<AtomicBool>) -> Backend {
        Backend {
            shared: Arc::new(Shared {
                client,
                store: Store::default(),
                publishing: tokio::sync::Mutex::new(()),
                shutdown,
            }),
        }
    }

    async fn document(&self, uri: &Uri) -> Result<Arc<Document>> {
        self.shared
            .store
            .current(uri)
            .await
            .map_err(jsonrpc::Error::invalid_params)
    }

    async fn log_error(&self, message: String) {
        self.shared
            .client
            .log_message(MessageType::ERROR, message)
            .await;
    }

    /// Starts the task that analyses `uri` until its analysis is current, and publishes it.
    fn analyse(&self, uri: Uri) {
        let shared = Arc::clone(&self.shared);
        tokio::spawn(shared.analyse(uri));
    }
}

impl Shared {
    async fn analyse(self: Arc<Self>, uri: Uri) {
        loop {
            let Some(job) = self.store.snapshot(&uri) else {
                return;
            };
            let version = job.version;
            // Asked by the analysis between phases: a newer text makes this one's work moot.
            let cancelled = {
                let shared = Arc::clone(&self);
                let uri = uri.clone();
                Box::new(move || !shared.store.is_current(&uri, version))
            };
            // Off the event loop: requests and notifications go on meanwhile. A panic in the
            // analysis is caught there and reported here; the server goes on.
            let analysed = match worker::analyse(job, cancelled).await {
                Analysed::Done(doc) => Some(doc),
                Analysed::Cancelled => continue,
                Analysed::Failed => None,
            };
            let failed = analysed.is_none();
            match self.store.finish(&uri, version, analysed) {
                Finished::Stale => continue,
                Finished::Gone if failed => {
                    let message = format!(
                        "the analysis of {} (version {version}) failed",
                        uri.as_str()
                    );
                    self.client.log_message(MessageType::ERROR, message).await;
                    return;
                }
                Finished::Gone => return,
                Finished::Current(doc) => {
                    let _order = self.publishing.lock().await;
                    if self.store.is_current(&uri, doc.version) {
                        self.client
                            .publish_diagnostics(
                                doc.uri.clone(),
                                convert::diagnostics(&doc),
                                Some(doc.version),
                            )
                            .await;
                    }
                    return;
                }
            }
        }
    }
}

pub fn capabilities() -> ServerCapabilities {
    ServerCapabilities {
        position_encoding: Some(PositionEncodingKind::UTF16),
        text_document_sync: Some(TextDocumentSyncCapability::Options(
            TextDocumentSyncOptions {
                open_close: Some(true),
                change: Some(TextDocumentSyncKind::INCREMENTAL),
                ..TextDocumentSyncOptions::default()
            },
        )),
        hover_provider: Some(HoverProviderCapability::Simple(true)),
        completion_provider: Some(CompletionOptions::default()),
        definition_provider: Some(OneOf::Left(true)),
        references_provider: Some(OneOf::Left(true)),
        document_highlight_provider: Some(OneOf::Left(true)),
        document_symbol_provider: Some(OneOf::Left(true)),
        code_action_provider: Some(CodeActionProviderCapability::Options(CodeActionOptions {
            code_action_kinds: Some(vec![CodeActionKind::QUICKFIX]),
            ..CodeActionOptions::default()
        })),
        document_formatting_provider: Some(OneOf::Left(true)),
        rename_provider: Some(OneOf::Right(RenameOptions {
            prepare_provider: Some(true),
            work_done_progress_options: WorkDoneProgressOptions::default(),
        })),
        folding_range_provider: Some(FoldingRangeProviderCapability::Simple(true)),
        semantic_tokens_provider: Some(SemanticTokensServerCapabilities::SemanticTokensOptions(
            SemanticTokensOptions {
                legend: semantic::legend(),
                range: Some(true),
                full: Some(SemanticTokensFullOptions::Bool(true)),
                ..SemanticTokensOptions::default()
            },
        )),
        ..ServerCapabilities::default()
    }
}

impl LanguageServer for Backend {
    async fn initialize(&self, _: InitializeParams) -> Result<InitializeResult> {
        Ok(InitializeResult {
            capabilities: capabilities(),
            server_info: Some(ServerInfo {
                name: "vnet-lsp".to_string(),
                version: Some(env!("CARGO_PKG_VERSION").to_string()),
            }),
            ..InitializeResult::default()
        })
    }

    async fn shutdown(&self) -> Result<()> {
        self.shared.shutdown.store(true, Ordering::SeqCst);
        Ok(())
    }

    // Each notification updates the store before its first `.await`, so notifications take
    // effect in the order they arrived even though the server runs several at once.
    async fn did_open(&self, params: DidOpenTextDocumentParams) {
        let item = params.text_document;
        if self
            .shared
            .store
            .open(item.uri.clone(), item.version, item.text)
        {
            self.analyse(item.uri);
        }
    }

    async fn did_change(&self, params: DidChangeTextDocumentParams) {
        let id = params.text_document;
        match self
            .shared
            .store
            .change(&id.uri, id.version, &params.content_changes)
        {
            Ok(true) => self.analyse(id.uri),
            Ok(false) => {} // The running analysis picks the new text up.
            Err(why) => {
                self.log_error(format!("textDocument/didChange ignored: {why}"))
                    .await
            }
        }
    }

    async fn did_close(&self, params: DidCloseTextDocumentParams) {
        let uri = params.text_document.uri;
        if !self.shared.store.close(&uri) {
            self.log_error(format!(
                "textDocument/didClose ignored: document is not open: {}",
                uri.as_str()
            ))
            .await;
            return;
        }
        worker::forget(uri.clone());
        let _order = self.shared.publishing.lock().await;
        self.shared
            .client
            .publish_diagnostics(uri, Vec::new(), None)
            .await;
    }

    async fn hover(&self, params: HoverParams) -> Result<Option<Hover>> {
        let at = params.text_document_position_params;
        let doc = self.document(&at.text_document.uri).await?;
        let offset = convert::offset(&doc, at.position)?;
        Ok(hover::hover(&doc, offset))
    }

    async fn goto_definition(
        &self,
        params: GotoDefinitionParams,
    ) -> Result<Option<GotoDefinitionResponse>> {
        let at = params.text_document_position_params;
        let doc = self.document(&at.text_document.uri).await?;
        let offset = convert::offset(&doc, at.position)?;
        Ok(navigate::definition(&doc, offset).map(GotoDefinitionResponse::Scalar))
    }

    async fn references(&self, params: ReferenceParams) -> Result<Option<Vec<Location>>> {
        let at = params.text_document_position;
        let doc = self.document(&at.text_document.uri).await?;
        let offset = convert::offset(&doc, at.position)?;
        Ok(navigate::references(
            &doc,
            offset,
            params.context.include_declaration,
        ))
    }

    async fn document_highlight(
        &self,
        params: DocumentHighlightParams,
    ) -> Result<Option<Vec<DocumentHighlight>>> {
        let at = params.text_document_position_params;
        let doc = self.document(&at.text_document.uri).await?;
        let offset = convert::offset(&doc, at.position)?;
        Ok(navigate::highlights(&doc, offset))
    }

    async fn prepare_rename(
        &self,
        params: TextDocumentPositionParams,
    ) -> Result<Option<PrepareRenameResponse>> {
        let doc = self.document(&params.text_document.uri).await?;
        let offset = convert::offset(&doc, params.position)?;
        rename::prepare(&doc, offset).map(Some)
    }

    async fn rename(&self, params: RenameParams) -> Result<Option<WorkspaceEdit>> {
        let at = params.text_document_position;
        let doc = self.document(&at.text_document.uri).await?;
        let offset = convert::offset(&doc, at.position)?;
        rename::rename(&doc, offset, &params.new_name).map(Some)
    }

    async fn completion(&self, params: CompletionParams) -> Result<Option<CompletionResponse>> {
        let at = params.text_document_position;
        let doc = self.document(&at.text_document.uri).await?;
        let offset = convert::offset(&doc, at.position)?;
        let answer = complete::complete(&doc, offset);
        Ok(Some(CompletionResponse::List(CompletionList {
            is_incomplete: answer.incomplete,
            items: answer.items,
        })))
    }

    async fn formatting(&self, params: DocumentFormattingParams) -> Result<Option<Vec<TextEdit>>> {
        let doc = self.document(&params.text_document.uri).await?;
        format::format(&doc).map(Some)
    }

    async fn document_symbol(
        &self,
        params: DocumentSymbolParams,
    ) -> Result<Option<DocumentSymbolResponse>> {
        let doc = self.document(&params.text_document.uri).await?;
        Ok(Some(DocumentSymbolResponse::Nested(
            symbols::document_symbols(&doc),
        )))
    }

    async fn folding_range(&self, params: FoldingRangeParams) -> Result<Option<Vec<FoldingRange>>> {
        let doc = self.document(&params.text_document.uri).await?;
        Ok(Some(symbols::folding_ranges(&doc)))
    }

    async fn semantic_tokens_full(
        &self,
        params: SemanticTokensParams,
    ) -> Result<Option<SemanticTokensResult>> {
        let doc = self.document(&params.text_document.uri).await?;
        Ok(Some(SemanticTokensResult::Tokens(SemanticTokens {
            result_id: None,
            data: semantic::tokens(&doc, None),
        })))
    }

    async fn semantic_tokens_range(
        &self,
        params: SemanticTokensRangeParams,
    ) -> Result<Option<SemanticTokensRangeResult>> {
        let doc = self.document(&params.text_document.uri).await?;
        let span = convert::span(&doc, params.range)?;
        Ok(Some(SemanticTokensRangeResult::Tokens(SemanticTokens {
            result_id: None,
            data: semantic::tokens(&doc, Some(span)),
        })))
    }

    async fn code_action(&self, params: CodeActionParams) -> Result<Option<CodeActionResponse>> {
        let doc = self.document(&params.text_document.uri).await?;
        let span = convert::span(&doc, params.range)?;
        let wanted = params.context.only.as_ref().is_none_or(|only| {
            only.iter()
                .any(|kind| CodeActionKind::QUICKFIX.as_str().starts_with(kind.as_str()))
        });
        if !wanted {
            return Ok(Some(Vec::new()));
        }
        let actions = actions::quick_fixes(&doc, span);
        Ok(Some(
            actions
                .into_iter()
                .map(CodeActionOrCommand::CodeAction)
                .collect(),
        ))
    }
}
