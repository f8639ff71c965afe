use cb_runtime::{circuit_breaker, BreakerError};
use futures::stream::{self, Stream};

#[derive(Debug)]
pub struct Error;

impl From<BreakerError> for Error {
    fn from(_: BreakerError) -> Self {
        Error
    }
}

#[derive(Debug)]
pub struct ParseError;

#[circuit_breaker(name = "fail")]
async fn tokens() -> Result<impl Stream<Item = Result<String, ParseError>>, Error> {
    Ok(stream::iter(vec![Err(ParseError)]))
}

fn main() {}
