package agent

import (
	"encoding/json"
	"net/http"
	"os"
	"path/filepath"
	"strings"
	"time"
)

// Bounds on an identity request.
const (
	maxHostname   = 64  // HOST_NAME_MAX
	minEntropy    = 32  // bytes: a full reseed of the CRNG's 256-bit key
	maxEntropy    = 512 // bytes
	maxIdentityKV = 128 // env and labels entries each
)

// Identity is the body of POST /v1/identity: who this machine is now.
// sietchd sends it after every restore, fork and template create, since a
// snapshot is a moment, not an identity: the restored guest still has the
// source's hostname, a clock stopped at the snapshot, and the same random
// state as every other copy. Zero fields are left as they are.
type Identity struct {
	SandboxID string            `json:"sandbox_id,omitempty"` // SIETCH_SANDBOX_ID in every later exec
	Hostname  string            `json:"hostname,omitempty"`
	Time      time.Time         `json:"time,omitzero"`     // the host's wall clock when sent
	Entropy   []byte            `json:"entropy,omitempty"` // fresh host randomness for the kernel's pool (base64)
	Env       map[string]string `json:"env,omitempty"`     // added to every later exec's environment
	Labels    map[string]string `json:"labels,omitempty"`  // written to LabelsFile for programs to read
}

// LabelsFile is where the sandbox's labels are, as a JSON object, for
// programs in the guest.
const LabelsFile = "/run/sietch/labels.json"

// Machine is what the identity endpoint asks of the machine's owner
// (guest-init): set the hostname, the wall clock and reseed the kernel's
// random pool. Empty arguments are left alone.
type Machine interface {
	SetIdentity(hostname string, now time.Time, entropy []byte) error
}

// IdentityResult is the reply of POST /v1/identity.
type IdentityResult struct {
	// ClockStepNS is how far the guest's wall clock moved to the host's
	// (positive: it was behind).
	ClockStepNS int64 `json:"clock_step_ns"`
}

// handleIdentity applies a new identity: POST /v1/identity.
func (a *Agent) handleIdentity(w http.ResponseWriter, r *http.Request) {
	var id Identity
	if e := decodeJSON(r.Body, maxJSONBody, &id); e != nil {
		writeError(w, e)
		return
	}
	if e := id.validate(); e != nil {
		writeError(w, e)
		return
	}
	machine := id.Hostname != "" || !id.Time.IsZero() || len(id.Entropy) > 0
	if machine && a.cfg.Machine == nil {
		writeError(w, apiErr(codeNotImplemented, "this agent cannot set the hostname, clock or entropy (not running as guest-init); send only env, labels and sandbox_id"))
		return
	}
	var res IdentityResult
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
	if id.Labels != nil {
		if e := writeLabels(id.Labels); e != nil {
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
	a.mu.Unlock()
	a.log.Info("agent: identity applied", "sandbox", id.SandboxID, "hostname", id.Hostname, "clock_step", time.Duration(res.ClockStepNS), "env", len(id.Env), "labels", len(id.Labels))
	writeJSON(w, http.StatusOK, res)
}

func (id *Identity) validate() *Error {
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
	if !id.Time.IsZero() && (id.Time.Year() < 2000 || id.Time.Year() > 9999) {
		return badRequest("time %v is not a plausible wall clock", id.Time)
	}
	return nil
}

// writeLabels replaces LabelsFile atomically.
func writeLabels(labels map[string]string) *Error {
	b, err := json.Marshal(labels)
	if err != nil {
		return apiErr(codeInternal, "encode labels: %v", err)
	}
	dir := filepath.Dir(LabelsFile)
	if err := os.MkdirAll(dir, 0o755); err != nil {
		return fsError("create", dir, err)
	}
	tmp := LabelsFile + ".tmp"
	if err := os.WriteFile(tmp, append(b, '\n'), 0o644); err != nil {
		return fsError("write", tmp, err)
	}
	if err := os.Rename(tmp, LabelsFile); err != nil {
		return fsError("rename", tmp, err)
	}
	return nil
}
