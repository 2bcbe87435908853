package api

import (
	"encoding/base64"
	"fmt"

	"github.com/sietch-vm/sietch/api/model"
	"github.com/sietch-vm/sietch/internal/unixmode"
	"github.com/sietch-vm/sietch/sandbox"
)

// The API's wire types (package model) and the manager's own (package
// sandbox) are kept apart: a field renamed on one side is a compile error
// here, not a silent change of the other.

func limitsIn(l model.Limits) sandbox.Limits {
	return sandbox.Limits{CPUs: l.CPUs, MemoryMiB: l.MemoryMiB, DiskMiB: l.DiskMiB, TimeoutS: l.TimeoutS, OnTimeout: l.OnTimeout}
}

func limitsOut(l sandbox.Limits) model.Limits {
	return model.Limits{CPUs: l.CPUs, MemoryMiB: l.MemoryMiB, DiskMiB: l.DiskMiB, TimeoutS: l.TimeoutS, OnTimeout: l.OnTimeout}
}

func createIn(r model.CreateRequest) sandbox.CreateSpec {
	s := sandbox.CreateSpec{Template: r.Template, Image: r.Image, Snapshot: r.Snapshot, Limits: limitsIn(r.Limits), Labels: r.Labels, Env: r.Env}
	if r.Network != nil {
		n := networkIn(*r.Network)
		s.Network = &n
	}
	return s
}

func networkIn(r model.NetworkSpec) sandbox.NetworkSpec {
	return sandbox.NetworkSpec{Enabled: r.Enabled, Internet: r.Internet, Allow: r.Allow, Deny: r.Deny}
}

func networkOut(n sandbox.Network) model.Network {
	return model.Network{Enabled: n.Enabled, Internet: n.Internet, Allow: n.Allow, Deny: n.Deny,
		Address: n.Address, Gateway: n.Gateway, Interface: n.Interface}
}

func portOut(p sandbox.Port) model.Port {
	return model.Port{GuestPort: p.GuestPort, HostAddr: p.HostAddr, HostPort: p.HostPort}
}

func sandboxOut(s sandbox.Sandbox) model.Sandbox {
	out := model.Sandbox{ID: s.ID, State: model.State(s.State), Reason: s.Reason, Image: s.Image, Template: s.Template,
		Snapshot: s.Snapshot, Limits: limitsOut(s.Limits), Labels: s.Labels, CreatedAt: s.CreatedAt, VMMPID: s.VMMPID, Agent: s.Agent}
	for _, p := range s.Ports {
		out.Ports = append(out.Ports, portOut(p))
	}
	if s.Network != nil {
		n := networkOut(*s.Network)
		out.Network = &n
	}
	return out
}

func snapshotOut(s sandbox.Snapshot) model.Snapshot {
	return model.Snapshot{ID: s.ID, SandboxID: s.SandboxID, Kind: s.Kind, Base: s.Base, Role: s.Role, Template: s.Template,
		SizeBytes: s.SizeBytes, CreatedAt: s.CreatedAt, Dependents: s.Dependents}
}

func templateIn(r model.TemplateRequest) sandbox.TemplateSpec {
	return sandbox.TemplateSpec{Name: r.Name, Image: r.Image, StartCmd: r.StartCmd, ReadyPort: r.ReadyPort, ReadyCmd: r.ReadyCmd,
		ReadyTimeoutS: r.ReadyTimeoutS, Limits: limitsIn(r.Limits), Contexts: r.Contexts}
}

func templateOut(t sandbox.Template) model.Template {
	return model.Template{Name: t.Name, Image: t.Image, StartCmd: t.StartCmd, ReadyPort: t.ReadyPort, ReadyCmd: t.ReadyCmd, Contexts: t.Contexts,
		Limits: limitsOut(t.Limits), State: model.TemplateState(t.State), Step: t.Step, Reason: t.Reason, Snapshot: t.Snapshot,
		SizeBytes: t.SizeBytes, BuildS: t.BuildS, CreatedAt: t.CreatedAt, Sandboxes: t.Sandboxes, Stale: t.Stale}
}

func imageOut(i sandbox.Image) model.Image {
	out := model.Image{Name: i.Name, Kind: i.Kind, SizeBytes: i.SizeBytes, CreatedAt: i.CreatedAt, Source: i.Source}
	if c := i.Config; c != nil {
		out.Config = &model.ImageConfig{Env: c.Env, Workdir: c.Workdir, User: c.User, Entrypoint: c.Entrypoint, Cmd: c.Cmd, ExposedPorts: c.ExposedPorts, Labels: c.Labels}
	}
	return out
}

// execIn decodes an exec request; stdin travels as base64.
func execIn(r model.ExecRequest) (sandbox.ExecSpec, error) {
	spec := sandbox.ExecSpec{Cmd: r.Cmd, Args: r.Args, Env: r.Env, Cwd: r.Cwd, TimeoutMS: r.TimeoutMS}
	if r.TTY != nil {
		spec.TTY = &sandbox.TTYSize{Rows: r.TTY.Rows, Cols: r.TTY.Cols}
	}
	if r.Stdin != "" {
		b, err := base64.StdEncoding.DecodeString(r.Stdin)
		if err != nil {
			return spec, fmt.Errorf("%w: stdin is not base64: %v", sandbox.ErrInvalid, err)
		}
		spec.Stdin = b
	}
	return spec, nil
}

func exitOut(e sandbox.ExecExit) model.ExecExit {
	return model.ExecExit{Code: e.Code, Signal: e.Signal, TimedOut: e.TimedOut}
}

// mapOut converts a slice with f.
func mapOut[T, U any](in []T, f func(T) U) []U {
	out := make([]U, 0, len(in))
	for _, v := range in {
		out = append(out, f(v))
	}
	return out
}

// fileInfoOut maps the manager's FileInfo to the API's.
func fileInfoOut(fi sandbox.FileInfo) model.FileInfo {
	return model.FileInfo{Name: fi.Name, Type: fi.Type, Size: fi.Size, Mode: unixmode.Format(fi.Mode), ModTime: fi.ModTime, Target: fi.Target}
}

func statsOut(s sandbox.Stats) model.SandboxStats {
	out := model.SandboxStats{Cgroup: s.Cgroup, CPUUserS: s.CPUUserS, CPUSystemS: s.CPUSystemS, CPULimit: s.CPULimit,
		CPUPeriods: int64(s.CPUPeriods), CPUThrottledPeriods: int64(s.CPUThrottled), CPUThrottledS: s.CPUThrottledS,
		MemoryBytes: s.MemoryBytes, MemoryPeakBytes: s.MemoryPeakBytes, MemoryLimitBytes: s.MemoryLimitBytes, MemoryOOMKills: int64(s.OOMKills),
		Pids: s.Pids, PidsLimit: s.PidsLimit, DiskReadBytes: s.DiskReadBytes, DiskWriteBytes: s.DiskWriteBytes}
	if s.Net != nil {
		out.NetRxBytes, out.NetTxBytes = &s.Net.RxBytes, &s.Net.TxBytes
	}
	return out
}
