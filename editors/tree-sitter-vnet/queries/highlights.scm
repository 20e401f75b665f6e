; VNET highlights. Capture names that both Neovim and Helix know (Neovim falls back along
; the dots: @constant.numeric shows as @constant where there is no more specific group).

(comment) @comment

["BEGIN" "END" "ADD" "DELETE"] @keyword
["HOST" "AT" "LINK" "FORWARD"] @keyword
["TCP" "UDP" "EDGE" "INTERFACE"] @type.builtin
["NOT" "ANY" "NONE"] @keyword.operator

(mac) @constant
(port) @constant.numeric

(host user: (name) @variable.parameter)
(host machine: (name) @type)
(host interface: (name) @variable.other.member)
(link [(name)] @variable)
(rule daemon: (name) @variable)
(rule kind: "EDGE" target: (name) @variable)
(rule peer: (name) @variable)
(rule kind: "INTERFACE" target: (name) @variable.other.member)
