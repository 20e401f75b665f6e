fn main() {
    let path = std::env::args().nth(1).expect("path");
    let bytes = std::fs::read(path).expect("read");
    let (text, _) = vnet_grammar::decode(&bytes);
    let parsed = vnet_grammar::parse(&text);
    let index = vnet_grammar::LineIndex::new(&text);
    for d in &parsed.diagnostics {
        let lc = index.line_col(&text, d.span.start);
        println!("{}:{} {} {}", lc.line, lc.column, d.code, d.message);
    }
    println!("hosts={} blocks={}", parsed.file.hosts.len(), parsed.file.blocks.len());
}
