-- The vnet-lsp configuration for Neovim 0.11+'s `vim.lsp.config`/`vim.lsp.enable("vnet")`.
return {
  cmd = { "vnet-lsp" },
  filetypes = { "vnet" },
  root_markers = { ".git" },
}
