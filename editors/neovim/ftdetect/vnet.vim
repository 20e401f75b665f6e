" VNET overlay descriptions.
autocmd BufRead,BufNewFile *.vnet setfiletype vnet
