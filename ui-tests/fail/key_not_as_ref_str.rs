use cb_runtime::{circuit_breaker, BreakerError};

#[derive(Debug)]
pub struct ApiError;

impl From<BreakerError> for ApiError {
    fn from(_: BreakerError) -> Self {
        ApiError
    }
}

// A key must be text: each distinct key has its own breaker.
#[circuit_breaker(name = "fail-key", key = tenant_id)]
async fn fetch(tenant_id: u64) -> Result<u8, ApiError> {
    Ok(tenant_id as u8)
}

fn main() {}
