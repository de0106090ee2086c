//! Fuzzes manifest parsing: any bytes must give manifests with issues, never a panic, and
//! whatever is accepted must survive a JSON round trip with the same revision.
#![no_main]

use everynode::spec::{self, DaemonSet};
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    for manifest in spec::parse(data, "fuzz") {
        let Ok(valid) = manifest.into_valid() else {
            continue;
        };
        let json = serde_json::to_vec(&valid.daemonset).expect("a DaemonSet serializes");
        let again = DaemonSet::from_json(&json).expect("an accepted DaemonSet stays valid");
        assert_eq!(again.daemonset, valid.daemonset);
        assert_eq!(again.daemonset.revision(), valid.daemonset.revision());
    }
});
