use cb_runtime::{circuit_breaker, BreakerError};

#[derive(Debug)]
pub struct ApiError;

impl From<BreakerError> for ApiError {
    fn from(_: BreakerError) -> Self {
        ApiError
    }
}

// A key parameter of a reference type is read through a copy of the
// reference: the error still points at the key and names the type.
#[circuit_breaker(name = "fail-key-ref", key = tenant_id)]
async fn fetch(tenant_id: &u64) -> Result<u8, ApiError> {
    Ok(*tenant_id as u8)
}

fn main() {}
