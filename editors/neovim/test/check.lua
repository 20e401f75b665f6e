-- Run by test/run.sh inside headless Neovim with this folder on 'runtimepath' and a .vnet
-- file open: checks the filetype, the syntax groups and (with vnet-lsp on PATH) that the
-- language server attaches and publishes diagnostics.
local failures = {}
local function check(ok, what)
  if not ok then
    table.insert(failures, what)
  end
end

check(vim.bo.filetype == "vnet", "filetype is vnet, got " .. vim.bo.filetype)
check(vim.bo.commentstring == "# %s", "commentstring")

local function group(line, word)
  local text = vim.fn.getline(line)
  local col = text:find(word, 1, true)
  if not col then
    return "<" .. word .. " not on line " .. line .. ">"
  end
  return vim.fn.synIDattr(vim.fn.synID(line, col, 1), "name")
end

local expected = {
  { 2, "begin", "vnetBlock" },
  { 3, "HOST", "vnetStatement" },
  { 3, "AT", "vnetAt" },
  { 3, "5000", "vnetNumber" },
  { 3, "# the Proxy", "vnetComment" },
  { 5, "LINK", "vnetStatement" },
  { 5, "tcp", "vnetType" },
  { 6, "NOT", "vnetMatch" },
  { 6, "00:50:56:00:21:01", "vnetMac" },
  { 6, "ff:ff:ff:ff:ff:fX", "vnetBadMac" },
  { 7, "@", "vnetBadChar" },
}
for _, e in ipairs(expected) do
  local got = group(e[1], e[2])
  check(got == e[3], string.format("line %d `%s`: %s, got %s", e[1], e[2], e[3], got))
end

if vim.fn.executable("vnet-lsp") == 1 then
  local published = vim.wait(10000, function()
    return #vim.diagnostic.get(0) > 0
  end, 50)
  check(published, "vnet-lsp published diagnostics")
  if published then
    local codes = {}
    for _, d in ipairs(vim.diagnostic.get(0)) do
      table.insert(codes, tostring(d.code))
    end
    table.sort(codes)
    check(vim.tbl_contains(codes, "V002") and vim.tbl_contains(codes, "V003"), "codes: " .. table.concat(codes, " "))
  end
  print("lsp: checked")
else
  print("lsp: skipped (vnet-lsp not on PATH)")
end

if #failures > 0 then
  io.stderr:write("FAILED:\n  " .. table.concat(failures, "\n  ") .. "\n")
  vim.cmd("cquit 1")
else
  print("neovim: all checks passed")
  vim.cmd("qall!")
end
