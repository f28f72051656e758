//! The control socket, tested through real sockets against a server started in-process
//! (so the tests can also reach the direct plugin's endpoints and check that media flows).

mod auth;
mod bad_input;
mod concurrency;
mod fuzz;
mod hardening;
mod lifecycle;
mod python;
mod slow_client;
mod support;
