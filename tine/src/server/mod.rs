//! The server: listening sockets, the per-process event loop, and (with
//! several workers) the supervising master. Only this module touches file
//! descriptors.

mod conn;
mod event_loop;
mod listener;
mod timer;

use std::fmt;
use std::io;
use std::net::SocketAddr;

use crate::app::App;
use crate::handler;

/// A bound server, ready to [`run`](Server::run). Made by [`App::bind`].
///
/// ```no_run
/// let server = tine::App::new().bind("127.0.0.1:0").unwrap();
/// println!("listening on http://{}", server.local_addr());
/// server.run().unwrap();
/// ```
pub struct Server {
    app: App,
    listener: std::net::TcpListener,
    addr: SocketAddr,
}

impl fmt::Debug for Server {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Server").field("addr", &self.addr).finish()
    }
}

impl Server {
    pub(crate) fn bind(app: App, addr: SocketAddr) -> io::Result<Server> {
        let listener =
            listener::bind(addr, false).map_err(|e| listener::describe_bind_error(addr, e))?;
        let addr = listener.local_addr()?;
        Ok(Server {
            app,
            listener,
            addr,
        })
    }

    /// The bound address (with the real port when bound to port 0).
    pub fn local_addr(&self) -> SocketAddr {
        self.addr
    }

    /// Serves until SIGINT or SIGTERM, then stops accepting, finishes
    /// in-flight requests (up to [`Limits::drain_timeout`](crate::Limits))
    /// and returns.
    pub fn run(self) -> io::Result<()> {
        handler::install_panic_hook();
        let listener = mio::net::TcpListener::from_std(self.listener);
        log::info!("listening on http://{}", self.addr);
        event_loop::EventLoop::new(self.app, vec![listener])?.run()
    }
}
