use cb_runtime::{circuit_breaker, BreakerError};
use futures::stream::{self, Stream};

#[derive(Debug)]
pub struct Error;

impl From<BreakerError> for Error {
    fn from(_: BreakerError) -> Self {
        Error
    }
}

#[circuit_breaker(name = "fail")]
async fn tokens() -> Result<impl Stream<Item = String>, Error> {
    Ok(stream::iter(vec![String::new()]))
}

fn main() {}
