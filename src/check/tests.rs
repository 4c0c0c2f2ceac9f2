//! Unit tests of `check`.

use super::*;

fn panics(_: FileId, _: &str) -> Result<ast::File, Vec<SyntaxError>> {
    panic!("byte index 3 is not a char boundary")
}

#[test]
fn a_panic_in_a_parser_thread_is_an_internal_error() {
    let inputs: Vec<(FileId, std::sync::Arc<str>)> =
        (0..3).map(|i| (FileId(i), "playbook".into())).collect();
    let parsed = parse_all(&inputs, panics);
    assert_eq!(parsed.len(), 3);
    let mut loader = Loader {
        sources: SourceMap::new(),
        problems: Vec::new(),
        files: HashMap::new(),
    };
    for (i, _) in &inputs {
        loader
            .sources
            .add(format!("p{}.ktplay", i.0), "/x", "playbook");
    }
    for (id, p) in parsed {
        assert!(p.is_err());
        loader.store(id, p);
    }
    let checked = finish(
        loader,
        inputs.iter().map(|(i, _)| *i).collect(),
        Digests::Compute,
    );
    assert_eq!(checked.errors(), 3);
    assert!(checked
        .problems
        .iter()
        .all(|p| p.code() == "ktplay::internal::panic"));
    let shown = crate::diag::render(
        &checked.sources,
        &checked.problems,
        crate::diag::RenderOptions::plain(),
    );
    assert!(
        shown.contains("internal error while parsing: byte index 3"),
        "{shown}"
    );
}
