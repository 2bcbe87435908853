package agent

import (
	"encoding/json"
	"net/http"
	"net/netip"
	"os"
	"path/filepath"
	"strings"
	"time"

	"github.com/sietch-vm/sietch/wire/agentproto"
)

// Bounds on an identity request.
const (
	maxHostname   = 64  // HOST_NAME_MAX
	minEntropy    = 32  // bytes: a full reseed of the CRNG's 256-bit key
	maxEntropy    = 512 // bytes
	maxIdentityKV = 128 // env and labels entries each
)

// Machine is what the identity endpoint asks of the machine's owner
// (guest-init): set the hostname, the wall clock and reseed the kernel's
// random pool. Empty arguments are left alone.
type Machine interface {
	SetIdentity(hostname string, now time.Time, entropy []byte) error
}

// NetworkMachine is a Machine that can also give eth0 a new address,
// default route and name servers (guest-init's can).
type NetworkMachine interface {
	SetNetwork(addr netip.Prefix, gw netip.Addr, dns []netip.Addr) error
}

// handleIdentity applies a new identity: POST /v1/identity.
func (a *Agent) handleIdentity(w http.ResponseWriter, r *http.Request) {
	var id agentproto.Identity
	if e := decodeJSON(r.Body, maxJSONBody, &id); e != nil {
		writeError(w, e)
		return
	}
	if e := validateIdentity(&id); e != nil {
		writeError(w, e)
		return
	}
	var netCfg *netConfig
	if id.Network != nil {
		var e *Error
		if netCfg, e = parseNetIdentity(id.Network); e != nil {
			writeError(w, e)
			return
		}
	}
	nm, _ := a.cfg.Machine.(NetworkMachine)
	if netCfg != nil && nm == nil {
		writeError(w, apiErr(codeNotImplemented, "this agent cannot configure the network (not running as guest-init)"))
		return
	}
	machine := id.Hostname != "" || !id.Time.IsZero() || len(id.Entropy) > 0
	if machine && a.cfg.Machine == nil {
		writeError(w, apiErr(codeNotImplemented, "this agent cannot set the hostname, clock or entropy (not running as guest-init); send only env, labels and sandbox_id"))
		return
	}
	// A host that timed out waiting may send the next request while this
	// one still runs: apply one identity at a time.
	a.identityMu.Lock()
	defer a.identityMu.Unlock()
	// A new identity is a new machine: the VNC password of the one it was
	// restored from must not open its desktop.
	a.forgetVNCPasswords()
	var res agentproto.IdentityResult
	if machine {
		before := time.Now()
		if err := a.cfg.Machine.SetIdentity(id.Hostname, id.Time, id.Entropy); err != nil {
			writeError(w, apiErr(codeInternal, "set identity: %v", err))
			return
		}
		if !id.Time.IsZero() {
			res.ClockStepNS = id.Time.Sub(before).Nanoseconds()
		}
	}
	if netCfg != nil {
		if err := nm.SetNetwork(netCfg.addr, netCfg.gw, netCfg.dns); err != nil {
			writeError(w, apiErr(codeInternal, "set network: %v", err))
			return
		}
	}
	if id.Labels != nil {
		if e := writeLabels(a.labelsFile(), id.Labels); e != nil {
			writeError(w, e)
			return
		}
	}
	env := map[string]string{}
	for k, v := range id.Env {
		env[k] = v
	}
	if id.SandboxID != "" {
		env["SIETCH_SANDBOX_ID"] = id.SandboxID
	}
	a.mu.Lock()
	a.extraEnv = mergeEnv(a.extraEnv, env)
	if id.Workdir != "" {
		a.defaultCwd = id.Workdir
	}
	if id.User != "" {
		a.defaultUsr = id.User
	}
	a.mu.Unlock()
	a.log.Info("agent: identity applied", "sandbox", id.SandboxID, "hostname", id.Hostname, "clock_step", time.Duration(res.ClockStepNS), "env", len(id.Env), "labels", len(id.Labels))
	writeJSON(w, http.StatusOK, res)
}

func validateIdentity(id *agentproto.Identity) *Error {
	if len(id.Hostname) > maxHostname || strings.ContainsAny(id.Hostname, "\x00/ ") {
		return badRequest("hostname %.80q: at most %d bytes, no NUL, '/' or space", id.Hostname, maxHostname)
	}
	if n := len(id.Entropy); n > 0 && (n < minEntropy || n > maxEntropy) {
		return badRequest("entropy: %d bytes; send %d to %d", n, minEntropy, maxEntropy)
	}
	if len(id.Env) > maxIdentityKV || len(id.Labels) > maxIdentityKV {
		return badRequest("at most %d env entries and %d labels", maxIdentityKV, maxIdentityKV)
	}
	for k, v := range id.Env {
		if k == "" || strings.ContainsAny(k, "=\x00") || strings.IndexByte(v, 0) >= 0 {
			return badRequest("env %.40q: names are non-empty without '=' or NUL; values have no NUL", k)
		}
	}
	if w := id.Workdir; w != "" && (!strings.HasPrefix(w, "/") || len(w) > maxPathLen || strings.IndexByte(w, 0) >= 0) {
		return badRequest("workdir %.80q: an absolute path without NUL, at most %d bytes", w, maxPathLen)
	}
	if u := id.User; len(u) > maxHostname || strings.ContainsAny(u, "\x00:/ ") {
		return badRequest("user %.80q: a user name or decimal uid (no group), at most %d bytes", u, maxHostname)
	}
	if !id.Time.IsZero() && (id.Time.Year() < 2000 || id.Time.Year() > 9999) {
		return badRequest("time %v is not a plausible wall clock", id.Time)
	}
	return nil
}

// netConfig is a checked NetIdentity.
type netConfig struct {
	addr netip.Prefix
	gw   netip.Addr
	dns  []netip.Addr
}

func parseNetIdentity(n *agentproto.NetIdentity) (*netConfig, *Error) {
	var c netConfig
	var err error
	if c.addr, err = netip.ParsePrefix(n.Address); err != nil || !c.addr.Addr().Is4() || c.addr.Bits() < 8 || c.addr.Bits() > 30 {
		return nil, badRequest("network address %.40q: want IPv4 with a prefix length of 8 to 30 (10.99.0.6/30)", n.Address)
	}
	if c.gw, err = netip.ParseAddr(n.Gateway); err != nil || !c.gw.Is4() || !c.addr.Masked().Contains(c.gw) || c.gw == c.addr.Addr() {
		return nil, badRequest("network gateway %.40q: want an IPv4 address in %s other than eth0's", n.Gateway, c.addr.Masked())
	}
	if len(n.DNS) > 3 {
		return nil, badRequest("network: %d name servers; resolv.conf takes at most 3", len(n.DNS))
	}
	for _, s := range n.DNS {
		a, err := netip.ParseAddr(s)
		if err != nil || !a.Is4() {
			return nil, badRequest("network name server %.40q: want an IPv4 address", s)
		}
		c.dns = append(c.dns, a)
	}
	return &c, nil
}

func (a *Agent) labelsFile() string {
	if a.cfg.LabelsFile != "" {
		return a.cfg.LabelsFile
	}
	return agentproto.LabelsFile
}

// writeLabels replaces the labels file atomically.
func writeLabels(path string, labels map[string]string) *Error {
	b, err := json.Marshal(labels)
	if err != nil {
		return apiErr(codeInternal, "encode labels: %v", err)
	}
	dir := filepath.Dir(path)
	if err := os.MkdirAll(dir, 0o755); err != nil {
		return fsError("create", dir, err)
	}
	f, err := os.CreateTemp(dir, ".labels-*.json")
	if err != nil {
		return fsError("create", dir, err)
	}
	tmp := f.Name()
	_, err = f.Write(append(b, '\n'))
	if err == nil {
		err = f.Chmod(0o644)
	}
	if cerr := f.Close(); err == nil {
		err = cerr
	}
	if err == nil {
		err = os.Rename(tmp, path)
	}
	if err != nil {
		os.Remove(tmp)
		return fsError("write", path, err)
	}
	return nil
}

// maxClockStep bounds POST /v1/clock: a century either way is far more
// than any snapshot's age, and keeps the sum with the current time from
// overflowing.
const maxClockStep = 100 * 365 * 24 * time.Hour

// handleClock reads the wall clock first thing: GET /v1/clock. The host
// brackets this request with two readings of its own clock.
func (a *Agent) handleClock(w http.ResponseWriter, r *http.Request) {
	now := time.Now()
	writeJSON(w, http.StatusOK, agentproto.Clock{TimeNS: now.UnixNano()})
}

// handleStepClock moves the wall clock by a relative step: POST /v1/clock.
func (a *Agent) handleStepClock(w http.ResponseWriter, r *http.Request) {
	var st agentproto.ClockStep
	if e := decodeJSON(r.Body, maxJSONBody, &st); e != nil {
		writeError(w, e)
		return
	}
	step := time.Duration(st.StepNS)
	if step.Abs() > maxClockStep {
		writeError(w, badRequest("step_ns %d: at most %v either way", st.StepNS, maxClockStep))
		return
	}
	if a.cfg.Machine == nil {
		writeError(w, apiErr(codeNotImplemented, "this agent cannot set the clock (not running as guest-init)"))
		return
	}
	a.identityMu.Lock()
	defer a.identityMu.Unlock()
	if err := a.cfg.Machine.SetIdentity("", time.Now().Add(step), nil); err != nil {
		writeError(w, apiErr(codeInternal, "step the clock by %v: %v", step, err))
		return
	}
	a.log.Info("agent: clock stepped", "step", step)
	writeJSON(w, http.StatusOK, agentproto.Clock{TimeNS: time.Now().UnixNano()})
}
