use cb_runtime::circuit_breaker;

#[derive(Debug)]
pub struct ApiError;

#[circuit_breaker(name = "fail")]
async fn fetch() -> Result<u8, ApiError> {
    Ok(1)
}

fn main() {}
