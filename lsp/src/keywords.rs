//! What each keyword means (SPEC 2.2–2.4), for hover and completion.

/// The syntax of the statement or field a keyword starts, and a sentence on its meaning.
pub fn doc(keyword: &str) -> Option<(&'static str, &'static str)> {
    let upper = keyword.to_ascii_uppercase();
    Some(match upper.as_str() {
        "BEGIN" => ("BEGIN host* block* END", "Starts the program. A file is one program: HOST lines, then ADD and DELETE blocks, then END."),
        "END" => ("END", "Ends the program; nothing may follow it."),
        "HOST" => (
            "HOST user AT machine port interface",
            "Declares the VNET daemon `machine`, reached at address `machine` on `port` (control and overlay traffic share it), serving the local `interface`. `vnetc up` starts it over ssh as `user` when it is remote. The first HOST line is the Proxy.",
        ),
        "AT" => ("HOST user AT machine port interface", "Separates the user from the machine in a HOST line."),
        "ADD" => (
            "ADD link* rule*",
            "Opens a block that inserts its links, then its rules, into the state. Blocks apply in order; within a block LINKs come before FORWARDs.",
        ),
        "DELETE" => (
            "DELETE link* rule*",
            "Opens a block that removes its rules, then its links, from the state. A link still used by a rule after the block is V110.",
        ),
        "LINK" => (
            "LINK (TCP | UDP) dialer a b",
            "An overlay link between daemons `a` and `b`; `dialer`, one of the two, opens it. A link is its unordered pair {a, b} and carries frames both ways.",
        ),
        "TCP" => ("LINK TCP dialer a b", "The link is a framed TCP connection."),
        "UDP" => ("LINK UDP dialer a b", "The link carries one Ethernet frame per UDP datagram."),
        "FORWARD" => (
            "FORWARD (EDGE | INTERFACE) daemon source destination target",
            "A forwarding rule installed on `daemon`: frames whose source and destination MACs match go over a link (EDGE) or into the daemon's local interface (INTERFACE). Among matching rules the highest priority (destination score, then source score) fires.",
        ),
        "EDGE" => (
            "FORWARD EDGE daemon source destination daemon peer",
            "The rule sends matching frames over the link from `daemon` to `peer`; the hop starts at the rule's own daemon.",
        ),
        "INTERFACE" => (
            "FORWARD INTERFACE daemon source destination interface",
            "The rule delivers matching frames into the daemon's local interface, the one its HOST line serves.",
        ),
        "NOT" => ("NOT mac", "Matches every MAC address but this one (score 1)."),
        "ANY" => ("ANY", "Matches every MAC address (score 0)."),
        "NONE" => (
            "NONE",
            "As a destination, marks the default rule: it matches every destination at the lowest score (−1). As a source it is V108.",
        ),
        _ => return None,
    })
}
