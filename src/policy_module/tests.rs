//! Loading policy modules: what is refused, and how.

use super::*;

fn spec(wat: &str) -> ModuleSpec {
    ModuleSpec { file: "m.wat".into(), bytes: wat.as_bytes().to_vec(), on_error: OnError::Deny, fuel_per_call: 1000 }
}

fn load_error(wat: &str) -> String {
    let e = ModulePolicy::load(&spec(wat), FilteringBehavior::AddressDependent, FilteringBehavior::AddressDependent)
        .expect_err("must be refused");
    e.to_string()
}

const VERSION_1: &str = r#"(func (export "netnat_abi_version") (result i32) (i32.const 1))"#;
const INBOUND_ALLOW: &str =
    r#"(func (export "netnat_inbound") (param i32 i32 i32 i32 i32 i32 i32 i32 i64) (result i32) (i32.const 1))"#;

#[test]
fn the_examples_load() {
    for name in ["allowlist-rate.wat", "full-cone-3478.wat", "allowlist-rate.wasm", "full-cone-3478.wasm"] {
        let path = Path::new(env!("CARGO_MANIFEST_DIR")).join("examples/policy-modules").join(name);
        let s = ModuleSpec::read(&path, OnError::Deny, DEFAULT_FUEL_PER_CALL).unwrap();
        ModulePolicy::load(&s, FilteringBehavior::AddressDependent, FilteringBehavior::EndpointIndependent)
            .unwrap_or_else(|e| panic!("{name}: {e}"));
    }
}

#[test]
fn a_module_that_imports_anything_is_refused_with_the_imports_named() {
    let e = load_error(&format!(
        r#"(module (import "wasi_snapshot_preview1" "fd_write" (func (param i32 i32 i32 i32) (result i32))) {VERSION_1} {INBOUND_ALLOW})"#
    ));
    assert_eq!(
        e,
        "m.wat: the module imports wasi_snapshot_preview1.fd_write; a policy module runs without I/O and may import nothing"
    );
}

#[test]
fn a_module_without_the_abi_is_refused_with_what_to_export() {
    assert!(load_error(&format!("(module {INBOUND_ALLOW})")).contains("must export `netnat_abi_version: () -> i32`"));
    let e = load_error(&format!("(module {VERSION_1})"));
    assert!(e.contains("must export `netnat_inbound: (i32, i32, i32, i32, i32, i32, i32, i32, i64) -> i32`"), "{e}");
    // The right name with the wrong signature.
    let e = load_error(&format!(
        r#"(module {VERSION_1} (func (export "netnat_inbound") (param i32) (result i32) (i32.const 1)))"#
    ));
    assert!(e.contains("must export `netnat_inbound"), "{e}");
    let e = load_error(&format!(
        r#"(module (func (export "netnat_abi_version") (result i32) (i32.const 2)) {INBOUND_ALLOW})"#
    ));
    assert_eq!(e, "m.wat: the module speaks ABI version 2; this netnat speaks version 1");
}

#[test]
fn an_outbound_hook_with_the_wrong_signature_is_refused() {
    let e = load_error(&format!(
        r#"(module {VERSION_1} {INBOUND_ALLOW} (func (export "netnat_outbound") (param i32) (result i32) (i32.const 1)))"#
    ));
    assert!(e.contains("`netnat_outbound` must be `(i32, i32, i32, i32, i32, i32, i64) -> i32`"), "{e}");
}

#[test]
fn garbage_and_endless_start_functions_are_refused() {
    assert!(load_error("not a module").starts_with("m.wat: not a valid WASM module (binary or text)"));
    let e = load_error(&format!("(module (func $spin (loop br 0)) (start $spin) {VERSION_1} {INBOUND_ALLOW})"));
    assert!(e.starts_with("m.wat: the module's start failed"), "{e}");
}

#[test]
fn memory_beyond_the_bound_is_refused() {
    let pages = MAX_MEMORY_BYTES / 65536 + 1;
    let e = load_error(&format!("(module (memory {pages}) {VERSION_1} {INBOUND_ALLOW})"));
    assert!(e.starts_with("m.wat: the module's start failed"), "{e}");
}

#[test]
fn on_error_parses_both_spellings_and_names_the_choices() {
    assert_eq!("deny".parse::<OnError>(), Ok(OnError::Deny));
    assert_eq!("Fallback".parse::<OnError>(), Ok(OnError::Fallback));
    assert_eq!("allow".parse::<OnError>(), Err("\"on_error\" is \"allow\"; give \"deny\" or \"fallback\"".into()));
}
