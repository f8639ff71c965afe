use cb_runtime::{circuit_breaker, BreakerError};

#[derive(Debug)]
pub struct Error;

impl From<BreakerError> for Error {
    fn from(_: BreakerError) -> Self {
        Error
    }
}

#[circuit_breaker(name = "fail", fallback = cached)]
async fn fetch(id: u32) -> Result<u8, Error> {
    Ok(id as u8)
}

async fn cached(_id: u32) -> Result<String, Error> {
    Ok(String::new())
}

fn main() {}
