//! What a fixture's `command` answers.

/// A reply to a fixture's `command`, in RESP2's shapes.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Reply {
    /// `+OK`-style status.
    Status(String),
    /// `-ERR ...` error.
    Error(String),
    /// `:n` integer.
    Integer(i64),
    /// `$n` bulk string.
    Bulk(Vec<u8>),
    /// `$-1` / `*-1`.
    Nil,
    /// `*n` array.
    Array(Vec<Reply>),
}

impl From<redis::Value> for Reply {
    fn from(value: redis::Value) -> Self {
        match value {
            redis::Value::Nil => Self::Nil,
            redis::Value::Int(n) => Self::Integer(n),
            redis::Value::BulkString(bytes) => Self::Bulk(bytes),
            redis::Value::Array(items) | redis::Value::Set(items) => {
                Self::Array(items.into_iter().map(Self::from).collect())
            }
            redis::Value::SimpleString(status) => Self::Status(status),
            redis::Value::Okay => Self::Status("OK".into()),
            redis::Value::ServerError(error) => Self::Error(format!("{error:?}")),
            // RESP3 shapes this fixture's RESP2 connection never receives.
            other => Self::Status(format!("{other:?}")),
        }
    }
}
