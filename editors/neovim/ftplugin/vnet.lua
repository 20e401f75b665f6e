-- VNET overlay descriptions: comments, word characters, and the vnet-lsp language server.
if vim.b.did_ftplugin then
  return
end
vim.b.did_ftplugin = true

vim.bo.commentstring = "# %s"
vim.bo.comments = ":#"
vim.opt_local.iskeyword:append({ "-", ".", ":" })
vim.b.undo_ftplugin = "setlocal commentstring< comments< iskeyword<"

-- Start vnet-lsp for this buffer unless the user wires it up themselves
-- (`vim.g.vnet_lsp_autostart = false`, then e.g. `vim.lsp.enable("vnet")` on 0.11+).
local cmd = vim.g.vnet_lsp_cmd or { "vnet-lsp" }
if vim.g.vnet_lsp_autostart == false or vim.fn.executable(cmd[1]) ~= 1 then
  return
end
if vim.lsp.start then
  -- Neovim 0.8+: one client per root, reused by every .vnet buffer under it.
  local file = vim.api.nvim_buf_get_name(0)
  local marker = vim.fs.find({ ".git" }, { upward = true, path = vim.fs.dirname(file) })[1]
  vim.lsp.start({ name = "vnet-lsp", cmd = cmd, root_dir = vim.fs.dirname(marker or file) })
else
  -- Neovim 0.7: one client for the session, attached to each .vnet buffer.
  local id = _G.vnet_lsp_client_id
  if not (id and vim.lsp.get_client_by_id(id)) then
    id = vim.lsp.start_client({ name = "vnet-lsp", cmd = cmd, root_dir = vim.fn.getcwd() })
    _G.vnet_lsp_client_id = id
  end
  if id then
    vim.lsp.buf_attach_client(0, id)
  end
end
