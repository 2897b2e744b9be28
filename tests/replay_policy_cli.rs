//! `netnat replay --filter-policy FILE` as a user meets it: the flag in --help, the example
//! policy, errors that name the file, line and rule (and leave no output behind), and the
//! policy given by a `--config` file. What a policy does to packets is in
//! `scenarios_policy.rs`.

mod common;

use std::fs;
use std::path::{Path, PathBuf};
use std::process::{Command, Output};

use common::*;

fn sample_input() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("samples/kernel-nat/input.pcap")
}

fn example_policy() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("examples/filter-policy.toml")
}

/// `netnat replay` on the sample with the sample's NAT and `extra`, run in `dir`.
fn replay(dir: &Path, extra: &[&str]) -> Output {
    Command::new(env!("CARGO_BIN_EXE_netnat"))
        .current_dir(dir)
        .arg("replay")
        .arg(sample_input())
        .args(["-o", "out.pcap", "--internal-prefix", "10.100.0.0/16", "--external-address", "203.0.113.1"])
        .args(extra)
        .output()
        .expect("run netnat")
}

/// The error line netnat printed, after asserting it failed cleanly and wrote nothing.
fn error_of(dir: &Path, o: &Output) -> String {
    let err = String::from_utf8_lossy(&o.stderr).into_owned();
    assert!(!o.status.success(), "expected failure; stderr:\n{err}");
    assert!(!err.contains("panicked"), "must not panic:\n{err}");
    assert!(!dir.join("out.pcap").exists(), "a refused run writes no output");
    err.trim_end()
        .strip_prefix("netnat: error: ")
        .unwrap_or_else(|| panic!("not netnat's error line: {err}"))
        .to_owned()
}

const GOOD: &str = "\
fallback = \"AddressDependentFiltering\"

[[rule]]
action = \"deny\"
remote = \"198.51.100.0/24\"

[[rule]]
action = \"allow\"
remote = \"203.0.113.10\"
protocol = \"udp\"
";

#[test]
fn help_lists_the_flag_and_the_example_policy_runs() {
    let o = Command::new(env!("CARGO_BIN_EXE_netnat")).args(["replay", "--help"]).output().unwrap();
    assert!(String::from_utf8_lossy(&o.stdout).contains("--filter-policy <FILE>"));
    let dir = tempfile::tempdir().unwrap();
    let o = replay(dir.path(), &["--filter-policy", example_policy().to_str().unwrap()]);
    assert!(o.status.success(), "{}", String::from_utf8_lossy(&o.stderr));
}

#[test]
fn errors_name_the_file_the_line_and_the_rule() {
    let dir = tempfile::tempdir().unwrap();
    let write = |text: &str| fs::write(dir.path().join("policy.toml"), text).unwrap();
    let run = || replay(dir.path(), &["--filter-policy", "policy.toml"]);

    write(&GOOD.replace("\"203.0.113.10\"", "\"198.51.100.0/33\""));
    assert_eq!(
        error_of(dir.path(), &run()),
        "policy.toml:9: rule 2: \"remote\" is not an IPv4 prefix: \"198.51.100.0/33\"; \
         give ADDRESS/LENGTH with LENGTH 0-32 (e.g. 198.51.100.0/24) or one address"
    );

    // An unknown key: the TOML parser's line and column.
    write(&GOOD.replace("protocol", "proto"));
    let e = error_of(dir.path(), &run());
    assert!(e.starts_with("policy.toml:10:1: rule 2: unknown field `proto`"), "{e}");

    // A rule that can never match this NAT (its internal prefix is 10.100.0.0/16).
    write(&format!("{GOOD}internal = \"10.200.0.0/16\"\n"));
    let e = error_of(dir.path(), &run());
    assert!(e.starts_with("policy.toml:11: rule 2: \"internal\" 10.200.0.0/16 lies outside"), "{e}");

    write("[[limit]]\nnew_inbound_per_second = 0\n");
    let e = error_of(dir.path(), &run());
    assert!(e.starts_with("policy.toml:2: limit 1: \"new_inbound_per_second\" is 0"), "{e}");

    write("[[rule]]\naction = \"deny\"\nprotocol = \"icmp\"\n");
    let e = error_of(dir.path(), &run());
    assert!(e.starts_with("policy.toml:3: rule 1: \"protocol\" = \"icmp\" would never match"), "{e}");

    let e = error_of(dir.path(), &replay(dir.path(), &["--filter-policy", "missing.toml"]));
    assert!(e.starts_with("missing.toml: cannot read the filter policy file"), "{e}");
}

#[test]
fn a_config_file_names_the_policy_relative_to_itself() {
    let dir = tempfile::tempdir().unwrap();
    fs::create_dir(dir.path().join("conf")).unwrap();
    fs::write(dir.path().join("conf/policy.toml"), "[[rule]]\naction = \"deny\"\nremote = \"198.51.100.0/24\"\n")
        .unwrap();
    let config = dir.path().join("conf/nat.toml");
    fs::write(&config, "udp_filtering = \"EndpointIndependentFiltering\"\nfilter_policy = \"policy.toml\"\n").unwrap();

    let mut s = Scenario::new();
    s.args(&["--config", config.to_str().unwrap()]);
    s.at(0, udp(ep("10.100.10.11", 5000), ep("203.0.113.10", 3478), b"x"));
    let p = s.learn_port(0);
    s.at(10, udp(ep("198.51.100.7", 9), ep(EXT, p), b"denied"));
    s.at(20, udp(ep("203.0.113.11", 9), ep(EXT, p), b"EIF from the config file"));
    let o = s.run();
    o.assert_drops(&[("policy_denied", 1)]);
    assert!(o.is_forwarded(20));

    // A bad policy named by the config file: the error names the policy file's path.
    fs::write(dir.path().join("conf/policy.toml"), "[[rule]]\naction = \"permit\"\n").unwrap();
    let o = s.run_unchecked();
    assert!(!o.success);
    // Joined part by part: on Windows the daemon's path has `\` between all parts.
    let path = dir.path().join("conf").join("policy.toml").display().to_string();
    assert!(o.stderr.contains(&format!("{path}:2: rule 1: \"action\" must be allow or deny")), "{}", o.stderr);
}

#[test]
fn a_policy_module_that_cannot_run_is_refused_before_any_output() {
    let dir = tempfile::tempdir().unwrap();
    let write = |name: &str, text: &str| fs::write(dir.path().join(name), text).unwrap();
    write(
        "io.wat",
        r#"(module (import "env" "log" (func)) (func (export "netnat_abi_version") (result i32) (i32.const 1)))"#,
    );
    assert_eq!(
        error_of(dir.path(), &replay(dir.path(), &["--filter-policy", "io.wat"])),
        "io.wat: the module imports env.log; a policy module runs without I/O and may import nothing"
    );
    write("mixed.toml", "[[rule]]\naction = \"deny\"\n\n[module]\npath = \"io.wat\"\n");
    assert_eq!(
        error_of(dir.path(), &replay(dir.path(), &["--filter-policy", "mixed.toml"])),
        "mixed.toml:4: [module] and rules, limits or fallback in one file: the module decides alone (its answer 0 \
         falls back to the NAT's filtering behaviour); keep one of them"
    );
    write("missing.toml", "[module]\npath = \"nowhere.wasm\"\n");
    // The OS's wording of "not found" differs (Windows runs this under Wine).
    let e = error_of(dir.path(), &replay(dir.path(), &["--filter-policy", "missing.toml"]));
    assert!(
        e.starts_with("nowhere.wasm: cannot read the policy module: ") && e.ends_with("(os error 2); check the path"),
        "{e}"
    );
    write("fuel.toml", "[module]\npath = \"io.wat\"\nfuel_per_call = 0\n");
    assert_eq!(
        error_of(dir.path(), &replay(dir.path(), &["--filter-policy", "fuel.toml"])),
        "fuel.toml:3: \"fuel_per_call\" is 0; give a positive budget, e.g. 100000"
    );
}

#[test]
fn the_example_modules_run_on_the_sample() {
    let dir = tempfile::tempdir().unwrap();
    for name in ["allowlist-rate.wat", "full-cone-3478.wat"] {
        let module = Path::new(env!("CARGO_MANIFEST_DIR")).join("examples/policy-modules").join(name);
        let o = replay(dir.path(), &["--filter-policy", module.to_str().unwrap()]);
        assert!(o.status.success(), "{name}: {}", String::from_utf8_lossy(&o.stderr));
    }
}
