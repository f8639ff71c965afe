use cb_runtime::circuit_breaker;

// `std::fmt::Error` cannot implement `From<BreakerError>` here (the orphan rule): the diagnostic
// suggests `CallError<std::fmt::Error>`, and no `impl` for the foreign type.
#[circuit_breaker(name = "fail")]
async fn render() -> Result<String, std::fmt::Error> {
    Ok(String::new())
}

fn main() {}
