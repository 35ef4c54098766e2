//! The redis-server fixture itself.

use tollgate_testkit::{RedisServer, Reply};

#[test]
fn a_real_redis_server_sets_and_gets() {
    let Some(redis) = RedisServer::start() else {
        return;
    };
    assert_eq!(
        redis.command(&["SET", "greeting", "hello"]).unwrap(),
        Reply::Status("OK".into())
    );
    assert_eq!(
        redis.command(&["GET", "greeting"]).unwrap(),
        Reply::Bulk(b"hello".to_vec())
    );
    assert_eq!(redis.command(&["GET", "missing"]).unwrap(), Reply::Nil);
    assert_eq!(
        redis.command(&["INCRBY", "n", "41"]).unwrap(),
        Reply::Integer(41)
    );
    assert!(matches!(
        redis.command(&["NOSUCHCOMMAND"]).unwrap(),
        Reply::Error(_)
    ));
}

#[test]
fn two_servers_are_isolated_and_stop_on_drop() {
    let Some(a) = RedisServer::start() else {
        return;
    };
    let b = RedisServer::start().expect("second server");
    assert_ne!(a.port(), b.port());
    a.command(&["SET", "k", "a"]).unwrap();
    assert_eq!(b.command(&["GET", "k"]).unwrap(), Reply::Nil);
    let port = b.port();
    drop(b);
    assert!(std::net::TcpStream::connect(("127.0.0.1", port)).is_err());
}
