mod chain;
mod demo;
mod mcp_direct;
mod mcp_proxy;
mod sse_fidelity;
