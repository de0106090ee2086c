//! The manifests under examples/ stay valid as the rules evolve.

#[test]
fn every_example_manifest_is_valid() {
    let dir = concat!(env!("CARGO_MANIFEST_DIR"), "/examples");
    let manifests = everynode::spec::load(dir).expect("examples/ holds manifests");
    assert!(
        manifests.len() >= 4,
        "expected the example set, found {}",
        manifests.len()
    );
    for m in manifests {
        let name = m.name().unwrap_or("?").to_string();
        let warnings: Vec<String> = m.warnings().map(|w| w.to_string()).collect();
        assert!(warnings.is_empty(), "{name}: {warnings:?}");
        if let Err(e) = m.into_valid() {
            panic!("{name}: {e}");
        }
    }
}
