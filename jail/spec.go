package jail

import (
	"errors"
	"fmt"
	"io"
	"os"
	"os/exec"
	"strings"
	"syscall"
)

// Spec describes a device process for Command.
type Spec struct {
	// Name names the device in logs and errors ("blk0").
	Name string
	// Args follow /proc/self/exe: the device subcommand and its flags.
	Args []string
	// Env is the child's whole environment; nothing is inherited. Command
	// adds runtimeGODEBUG to GODEBUG.
	Env []string
	// ExtraFiles become fds 3, 4, … in the child (vmm socket, memfd, disk,
	// tap). The child keeps them with ChildConfig.KeepFDs.
	ExtraFiles []*os.File
	// HostNet keeps the host's network namespace. By default the device
	// gets a new, empty one: even the net device needs none, its tap fd is
	// passed in.
	HostNet bool
	// Rlimits are passed to Enter, which applies the stricter of these and
	// ChildConfig.Rlimits.
	Rlimits Rlimits
	// UID is the host uid and gid DeviceID maps to; 0 means NobodyID. A
	// vmm that runs as a uid of its own (jail.DropVMM) gives its devices
	// the same one, so that it can stop them and no other sandbox's
	// processes share it.
	UID int
	// Stderr receives the child's stderr; nil discards it.
	Stderr io.Writer
}

// runtimeGODEBUG stops the Go runtime (1.25+) from keeping a cgroup file
// open and rereading it and the CPU affinity every second to adjust
// GOMAXPROCS: Enter closes that descriptor and the policies do not allow
// the reads.
const runtimeGODEBUG = "containermaxprocs=0,updatemaxprocs=0"

// Command returns an unstarted command that re-executes this binary in new
// user, mount, pid, ipc, uts, cgroup and (unless HostNet) network
// namespaces. Root in the new user namespace is SetupID on the host and
// DeviceID is NobodyID (see ids.go); writing two mappings needs root. The
// child is killed when the thread that starts it exits (Pdeathsig): start
// it from a goroutine that is not locked to a thread that may end. It gets
// its own process group, so terminal signals reach only the vmm, which
// decides about its devices.
func Command(s Spec) (*exec.Cmd, error) {
	if s.Name == "" {
		return nil, errors.New("jail: spec has no name")
	}
	for _, kv := range s.Env {
		if !strings.Contains(kv, "=") || strings.HasPrefix(kv, "SIETCH_JAIL_") {
			return nil, fmt.Errorf("jail %s: bad environment entry %q (want NAME=value, not SIETCH_JAIL_*)", s.Name, kv)
		}
	}
	if os.Geteuid() != 0 {
		return nil, fmt.Errorf("jail %s: device processes need the vmm to run as root (to map uids %d and %d)", s.Name, SetupID, NobodyID)
	}
	flags := syscall.CLONE_NEWUSER | syscall.CLONE_NEWNS | syscall.CLONE_NEWPID |
		syscall.CLONE_NEWIPC | syscall.CLONE_NEWUTS | syscall.CLONE_NEWCGROUP
	if !s.HostNet {
		flags |= syscall.CLONE_NEWNET
	}
	env := make([]string, 0, len(s.Env)+2)
	godebug := runtimeGODEBUG
	for _, kv := range s.Env {
		if v, ok := strings.CutPrefix(kv, "GODEBUG="); ok {
			godebug = v + "," + runtimeGODEBUG // the last setting wins
			continue
		}
		env = append(env, kv)
	}
	env = append(env, "GODEBUG="+godebug, envRlimits+"="+s.Rlimits.String())
	uid := NobodyID
	if s.UID > 0 {
		uid = s.UID
	}
	idMap := []syscall.SysProcIDMap{
		{ContainerID: 0, HostID: SetupID, Size: 1},
		{ContainerID: DeviceID, HostID: uid, Size: 1},
	}
	cmd := &exec.Cmd{
		Path:       "/proc/self/exe",
		Args:       append([]string{os.Args[0]}, s.Args...),
		Env:        env,
		ExtraFiles: s.ExtraFiles,
		Stderr:     s.Stderr,
		SysProcAttr: &syscall.SysProcAttr{
			Cloneflags:  uintptr(flags),
			UidMappings: idMap,
			GidMappings: idMap,
			// Become the namespace's root before exec (an unmapped euid
			// loses every capability at execve) and shed the caller's
			// supplementary groups (host root's group 0 among them).
			Credential:                 &syscall.Credential{Uid: 0, Gid: 0, Groups: []uint32{}},
			GidMappingsEnableSetgroups: true,
			Pdeathsig:                  syscall.SIGKILL,
			Setpgid:                    true,
		},
	}
	return cmd, nil
}
