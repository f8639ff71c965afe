//! Compile-time behaviour of `#[circuit_breaker]`: `ui-tests/pass` must build and run,
//! `ui-tests/fail` must fail with the reviewed `.stderr`.

#[test]
fn ui() {
    let cases = trybuild::TestCases::new();
    cases.pass("ui-tests/pass/*.rs");
    cases.compile_fail("ui-tests/fail/*.rs");
}
