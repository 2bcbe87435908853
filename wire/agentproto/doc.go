// Package agentproto is the guest agent's wire protocol: its request and reply types, error codes, the vsock handshake and the host-side Client; the agent (package guest-init/agent) serves it, sietchd and tests call it.
//
// Transport. The agent listens on vsock port Port (1024) in the guest.
// The host connects to the vsock device's unix socket, writes
// "CONNECT 1024\n" and reads "OK <host port>\n" (DialUDS); from then on the
// stream is the agent's. Each stream carries HTTP/1.1; the Client sends one
// request per stream. docs/AGENT.md has every endpoint, with curl
// examples.
package agentproto
