//! [`RedisServer`]: one `redis-server` on a free port.

use std::io;

use crate::{process::Node, reply::Reply};

/// The plain server's settings: no persistence, so a restart starts empty.
const PLAIN: [&str; 4] = ["--save", "", "--appendonly", "no"];

/// A `redis-server` child process on a free loopback port, stopped and cleaned up on drop.
#[derive(Debug)]
pub struct RedisServer {
    node: Node,
}

impl RedisServer {
    /// Starts a server, or returns `None` (after printing why) when `redis-server` is not
    /// installed and `TOLLGATE_REQUIRE_REDIS` is not `1`.
    ///
    /// # Panics
    ///
    /// When `redis-server` is missing and required, or installed but fails to start.
    pub fn start() -> Option<Self> {
        if !crate::process::installed() {
            return None;
        }
        let node = Node::start("redis", &PLAIN).expect("redis-server starts");
        Some(Self { node })
    }

    /// Kills the server as a crash would (SIGKILL), keeping its port for [`restart`](Self::restart).
    pub fn kill(&mut self) {
        self.node.kill();
    }

    /// Starts the server again on the same port, with empty memory, and waits until it answers.
    ///
    /// # Panics
    ///
    /// When it does not start.
    pub fn restart(&mut self) {
        self.node.restart().expect("redis-server restarts");
    }

    /// The port the server listens on (on 127.0.0.1).
    pub fn port(&self) -> u16 {
        self.node.port
    }

    /// A `redis://` URL for clients.
    pub fn url(&self) -> String {
        self.node.url()
    }

    /// Sends one command on a fresh connection (redis-rs's blocking client) and returns its
    /// reply; a reply that is a Redis error is `Ok(Reply::Error)` (for fixtures: seeding,
    /// corrupting or flushing state behind a client's back).
    ///
    /// # Errors
    ///
    /// When the server cannot be reached or the connection fails.
    pub fn command(&self, args: &[&str]) -> io::Result<Reply> {
        self.node.command(args)
    }
}
