#[test]
fn ui_one() {
    let cases = trybuild::TestCases::new();
    if let Ok(p) = std::env::var("UI_PASS") {
        cases.pass(p);
    }
    if let Ok(f) = std::env::var("UI_FAIL") {
        cases.compile_fail(f);
    }
}
