" Vim syntax file
" Language: VNET overlay descriptions (.vnet)
" A token runs to the next whitespace or '#'; keywords are case-insensitive (SPEC 2.1).

if exists("b:current_syntax")
  finish
endif

syntax case ignore
syntax iskeyword @,48-57,_,-,.,:

syntax keyword vnetBlock BEGIN END ADD DELETE
syntax keyword vnetStatement HOST LINK FORWARD
syntax keyword vnetAt AT
syntax keyword vnetType TCP UDP EDGE INTERFACE
syntax keyword vnetMatch NOT ANY NONE

syntax match vnetBadMac /\%(^\|\s\)\zs[^ \t#]*:[^ \t#]*/
syntax match vnetMac /\%(^\|\s\)\zs\x\x\%(:\x\x\)\{5}\ze\%(\s\|#\|$\)/
syntax match vnetNumber /\%(^\|\s\)\zs\d\+\ze\%(\s\|#\|$\)/
syntax match vnetBadChar /[^ \t0-9A-Za-z_.:#-]/
syntax match vnetComment /#.*$/ contains=vnetTodo,@Spell
syntax keyword vnetTodo contained TODO FIXME XXX NOTE

highlight default link vnetBlock Statement
highlight default link vnetStatement Keyword
highlight default link vnetAt Keyword
highlight default link vnetType Type
highlight default link vnetMatch Operator
highlight default link vnetMac Constant
highlight default link vnetNumber Number
highlight default link vnetBadMac Error
highlight default link vnetBadChar Error
highlight default link vnetComment Comment
highlight default link vnetTodo Todo

let b:current_syntax = "vnet"
