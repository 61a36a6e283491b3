//! Sans-I/O venue sessions: what to send on a new connection, what a server message means.

pub mod coinapi;
