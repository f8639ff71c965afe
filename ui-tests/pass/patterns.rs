//! Parameters written as patterns still reach the fallback, and the body sees its bindings.

use cb_runtime::{circuit_breaker, BreakerError};

#[derive(Debug)]
pub struct Error;

impl From<BreakerError> for Error {
    fn from(_: BreakerError) -> Self {
        Error
    }
}

pub struct Point {
    x: i32,
    y: i32,
}

#[circuit_breaker(name = "pass-patterns", fallback = origin)]
async fn add((a, b): (i32, i32), Point { x, y }: Point, _: u8, mut scale: i32) -> Result<i32, Error> {
    scale += 1;
    Ok((a + b + x + y) * scale)
}

async fn origin(_pair: (i32, i32), _point: Point, _flag: u8, _scale: i32) -> Result<i32, Error> {
    Ok(0)
}

#[tokio::main(flavor = "current_thread")]
async fn main() {
    assert_eq!(add((1, 2), Point { x: 3, y: 4 }, 0, 1).await.unwrap(), 20);
}
