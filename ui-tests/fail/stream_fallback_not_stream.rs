use cb_runtime::{circuit_breaker, BreakerError};
use futures::stream::{self, Stream};

#[derive(Debug)]
pub struct Error;

impl From<BreakerError> for Error {
    fn from(_: BreakerError) -> Self {
        Error
    }
}

#[circuit_breaker(name = "fail", fallback = cached)]
async fn tokens() -> Result<impl Stream<Item = Result<String, Error>>, Error> {
    Ok(stream::iter(vec![Ok(String::new())]))
}

async fn cached() -> Result<String, Error> {
    Ok("cached".to_string())
}

fn main() {}
