//! Fuzzes what the API decodes from request bodies: any bytes give a clear refusal or valid requests, never a panic, and accepted DaemonSets stay valid through JSON.
#![no_main]

use everynode::api::control::{ApplyRequest, DrainRequest, LabelRequest, TaintRequest};
use everynode::spec::DaemonSet;
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    if let Ok(req) = serde_json::from_slice::<ApplyRequest>(data) {
        for obj in &req.objects {
            let bytes = serde_json::to_vec(obj).expect("JSON values serialize");
            if let Ok(valid) = DaemonSet::from_json(&bytes) {
                let again = serde_json::to_vec(&valid.daemonset).expect("a DaemonSet serializes");
                DaemonSet::from_json(&again).expect("an accepted DaemonSet stays valid");
            }
        }
    }
    if let Ok(req) = serde_json::from_slice::<LabelRequest>(data) {
        for (k, v) in &req.set {
            let _ = everynode::scheduling::labels::validate_label_key(k)
                .and_then(|_| everynode::scheduling::labels::validate_label_value(v));
        }
    }
    let _ = serde_json::from_slice::<TaintRequest>(data);
    let _ = serde_json::from_slice::<DrainRequest>(data);
});
