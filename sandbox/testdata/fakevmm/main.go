// Command fakevmm stands in for the vmm binary in package sandbox's tests:
// it serves the control protocol (package wire/control) on --api-sock as a
// vmm does, without a VM. `run` and `restore` run until PUT /stop (exit 5)
// or a signal; PUT /snapshot writes a state file into the directory asked;
// `check --json` prints a host check.
package main

import (
	"encoding/json"
	"fmt"
	"net"
	"net/http"
	"os"
	"os/signal"
	"path/filepath"
	"strings"
	"sync"
	"syscall"

	"github.com/sietch-vm/sietch/internal/httpjson"
	"github.com/sietch-vm/sietch/wire/control"
)

func main() {
	if len(os.Args) < 2 {
		os.Exit(2)
	}
	switch os.Args[1] {
	case "check":
		json.NewEncoder(os.Stdout).Encode(control.HostCheck{OK: true, Device: "/dev/kvm (fake)"})
		return
	case "run", "restore":
	default:
		fmt.Fprintf(os.Stderr, "fakevmm: unknown command %q\n", os.Args[1])
		os.Exit(2)
	}
	// The command line, for tests to read (sietchd starts the vmm in the
	// sandbox's directory).
	os.WriteFile("fakevmm.args", []byte(strings.Join(os.Args[1:], "\n")), 0o600)
	var sock, from string
	for i, a := range os.Args {
		if i+1 < len(os.Args) {
			switch a {
			case "--api-sock":
				sock = os.Args[i+1]
			case "--from":
				from = os.Args[i+1]
			}
		}
	}
	if from != "" {
		if _, err := os.Stat(filepath.Join(from, "state")); err != nil {
			fmt.Fprintf(os.Stderr, "vmm restore: %v\n", err)
			os.Exit(1)
		}
	}
	os.Remove(sock)
	ln, err := net.Listen("unix", sock)
	if err != nil {
		fmt.Fprintf(os.Stderr, "vmm run: %v\n", err)
		os.Exit(1)
	}
	var mu sync.Mutex
	state := control.StateRunning
	exit := make(chan int, 1)
	mux := httpjson.NewMux()
	mux.Handle("GET", "/info", func(w http.ResponseWriter, r *http.Request) {
		mu.Lock()
		defer mu.Unlock()
		httpjson.Write(w, 200, control.Info{State: state, VMMPID: os.Getpid(), VCPUs: 1})
	})
	set := func(from, to string) http.HandlerFunc {
		return func(w http.ResponseWriter, r *http.Request) {
			mu.Lock()
			defer mu.Unlock()
			if state != from {
				httpjson.WriteError(w, httpjson.Errorf(409, control.CodeNotPaused, "the VM is %s", state))
				return
			}
			state = to
			w.WriteHeader(204)
		}
	}
	mux.Handle("PUT", "/pause", set(control.StateRunning, control.StatePaused))
	mux.Handle("PUT", "/resume", set(control.StatePaused, control.StateRunning))
	mux.Handle("PUT", "/stop", func(w http.ResponseWriter, r *http.Request) {
		w.WriteHeader(204)
		http.NewResponseController(w).Flush()
		exit <- 5
	})
	mux.Handle("PUT", "/snapshot", func(w http.ResponseWriter, r *http.Request) {
		var req control.SnapshotRequest
		if e := httpjson.Decode(r.Body, control.MaxBody, &req, false); e != nil {
			httpjson.WriteError(w, e)
			return
		}
		if err := os.MkdirAll(req.Dir, 0o700); err == nil {
			err = os.WriteFile(filepath.Join(req.Dir, "state"), []byte(req.Kind), 0o600)
		}
		w.WriteHeader(204)
	})
	go http.Serve(ln, mux.Handler(""))
	sig := make(chan os.Signal, 1)
	signal.Notify(sig, syscall.SIGTERM, syscall.SIGINT)
	select {
	case code := <-exit:
		fmt.Fprintln(os.Stderr, "VM stopped")
		os.Exit(code)
	case <-sig:
		os.Exit(5)
	}
}
