package main

import (
	"encoding/json"
	"fmt"
	"io"
	"sort"
	"strings"
	"text/tabwriter"
	"time"

	"github.com/sietch-vm/sietch/api/model"
)

// printJSON writes v indented, as the API would send it.
func printJSON(w io.Writer, v any) error {
	enc := json.NewEncoder(w)
	enc.SetIndent("", "  ")
	return enc.Encode(v)
}

// table writes rows aligned in columns under header.
func table(w io.Writer, header []string, rows [][]string) error {
	tw := tabwriter.NewWriter(w, 0, 0, 2, ' ', 0)
	fmt.Fprintln(tw, strings.Join(header, "\t"))
	for _, r := range rows {
		fmt.Fprintln(tw, strings.Join(r, "\t"))
	}
	return tw.Flush()
}

func sandboxTable(w io.Writer, sbs []model.Sandbox, now time.Time) error {
	rows := make([][]string, 0, len(sbs))
	for _, sb := range sbs {
		from := sb.Image
		switch {
		case sb.Template != "":
			from = "template " + sb.Template
		case sb.Snapshot != "":
			from = "snapshot " + sb.Snapshot
		}
		state := string(sb.State)
		if sb.Reason != "" {
			state += " (" + sb.Reason + ")"
		}
		agent := "-"
		if sb.Agent {
			agent = "yes"
		}
		rows = append(rows, []string{sb.ID, state, from, fmt.Sprint(sb.Limits.CPUs), mib(sb.Limits.MemoryMiB),
			agent, portList(sb.Ports), age(now, sb.CreatedAt)})
	}
	return table(w, []string{"ID", "STATE", "FROM", "CPUS", "MEMORY", "AGENT", "PORTS", "CREATED"}, rows)
}

func snapshotTable(w io.Writer, snaps []model.Snapshot, now time.Time) error {
	rows := make([][]string, 0, len(snaps))
	for _, s := range snaps {
		base := s.Base
		if base == "" {
			base = "-"
		}
		role := s.Role
		switch {
		case role == "":
			role = "-"
		case s.Template != "":
			role += " " + s.Template
		}
		deps := "-"
		if len(s.Dependents) > 0 {
			deps = strings.Join(s.Dependents, ", ")
		}
		rows = append(rows, []string{s.ID, s.SandboxID, s.Kind, base, role, humanBytes(s.SizeBytes), age(now, s.CreatedAt), deps})
	}
	return table(w, []string{"ID", "SANDBOX", "KIND", "BASE", "ROLE", "SIZE", "CREATED", "NEEDED BY"}, rows)
}

func templateTable(w io.Writer, ts []model.Template, now time.Time) error {
	rows := make([][]string, 0, len(ts))
	for _, t := range ts {
		state := string(t.State)
		switch {
		case t.Step != "":
			state += " (" + t.Step + ")"
		case t.Reason != "":
			state += " (" + t.Reason + ")"
		}
		start := t.StartCmd
		if start == "" {
			start = "-"
		}
		warm := strings.Join(t.Contexts, ",")
		if warm == "" {
			warm = "-"
		}
		rows = append(rows, []string{t.Name, state, t.Image, fmt.Sprint(t.Limits.CPUs), mib(t.Limits.MemoryMiB),
			start, warm, humanBytes(t.SizeBytes), fmt.Sprint(t.Sandboxes), age(now, t.CreatedAt)})
	}
	return table(w, []string{"NAME", "STATE", "IMAGE", "CPUS", "MEMORY", "START", "CONTEXTS", "SIZE", "SANDBOXES", "CREATED"}, rows)
}

func portTable(w io.Writer, ports []model.Port) error {
	rows := make([][]string, 0, len(ports))
	for _, p := range ports {
		rows = append(rows, []string{fmt.Sprintf("%s:%d", p.HostAddr, p.HostPort), fmt.Sprint(p.GuestPort)})
	}
	return table(w, []string{"HOST", "GUEST PORT"}, rows)
}

func imageTable(w io.Writer, imgs []model.Image, now time.Time) error {
	sort.Slice(imgs, func(i, j int) bool { return imgs[i].Name < imgs[j].Name })
	rows := make([][]string, 0, len(imgs))
	for _, im := range imgs {
		rows = append(rows, []string{im.Name, im.Kind, humanBytes(im.SizeBytes), age(now, im.CreatedAt)})
	}
	return table(w, []string{"NAME", "KIND", "SIZE", "CREATED"}, rows)
}

func portList(ports []model.Port) string {
	if len(ports) == 0 {
		return "-"
	}
	s := make([]string, len(ports))
	for i, p := range ports {
		s[i] = fmt.Sprintf("%d->%d", p.HostPort, p.GuestPort)
	}
	return strings.Join(s, ",")
}

func mib(n int) string {
	if n == 0 {
		return "-"
	}
	return humanBytes(int64(n) << 20)
}

// humanBytes prints n in binary units: 512B, 1.5KiB, 256MiB, 2.0GiB.
func humanBytes(n int64) string {
	if n < 1024 {
		return fmt.Sprintf("%dB", n)
	}
	f, unit := float64(n), ""
	for _, u := range []string{"KiB", "MiB", "GiB", "TiB"} {
		f /= 1024
		unit = u
		if f < 1024 {
			break
		}
	}
	if f == float64(int64(f)) {
		return fmt.Sprintf("%d%s", int64(f), unit)
	}
	return fmt.Sprintf("%.1f%s", f, unit)
}

// age prints how long ago t was, coarsely: 12s, 5m, 3h, 2d.
func age(now, t time.Time) string {
	if t.IsZero() {
		return "-"
	}
	d := now.Sub(t)
	switch {
	case d < 0:
		return "now"
	case d < time.Minute:
		return fmt.Sprintf("%ds ago", int(d.Seconds()))
	case d < time.Hour:
		return fmt.Sprintf("%dm ago", int(d.Minutes()))
	case d < 48*time.Hour:
		return fmt.Sprintf("%dh ago", int(d.Hours()))
	}
	return fmt.Sprintf("%dd ago", int(d.Hours()/24))
}
