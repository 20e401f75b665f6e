//! Prints the diagnostics of a file as `line:column code message`: a debugging aid.
fn main() {
    let Some(path) = std::env::args().nth(1) else {
        eprintln!("usage: dump FILE");
        std::process::exit(2);
    };
    let bytes = match std::fs::read(&path) {
        Ok(bytes) => bytes,
        Err(error) => {
            eprintln!("{path}: {error}");
            std::process::exit(2);
        }
    };
    let (text, _) = vnet_grammar::decode(&bytes);
    let analysis = vnet_grammar::analyze(&text);
    let index = vnet_grammar::LineIndex::new(&text);
    for d in &analysis.diagnostics {
        let lc = index.line_col(&text, d.span.start());
        println!("{}:{} {} {}", lc.line, lc.column, d.code, d.message);
    }
}
