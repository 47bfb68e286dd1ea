//! Free TCP ports on the loopback interface.

use std::net::{Ipv4Addr, TcpListener};

use crate::{Error, Result};

/// `count` distinct TCP ports that are free on 127.0.0.1 now: each is found
/// by binding port 0, and all the listeners stay open until every port is
/// chosen so that no port repeats. Another process may still take a port
/// before the ranks bind it; the window is a few milliseconds.
pub fn free_loopback_ports(count: usize) -> Result<Vec<u16>> {
    let mut listeners = Vec::with_capacity(count);
    let mut ports = Vec::with_capacity(count);
    for _ in 0..count {
        let listener = TcpListener::bind((Ipv4Addr::LOCALHOST, 0)).map_err(Error::Ports)?;
        ports.push(listener.local_addr().map_err(Error::Ports)?.port());
        listeners.push(listener);
    }
    Ok(ports)
}
