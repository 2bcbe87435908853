package main

import (
	"encoding/json"
	"fmt"
	"net"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"runtime"
	"strconv"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/miekg/dns"
	"github.com/vishvananda/netns"

	"github.com/sietch-vm/sietch/api/model"
)

// network drives sandbox networking from inside Linux guests made from the
// template (whose snapshot has a virtio-net device: the build sandbox had
// an isolated one): a sandbox allowed one address of an "internet"
// namespace this test makes reaches it and not its neighbour, a policy
// change lets the neighbour in, and it cannot reach another sandbox that
// the host can. No sandbox here may reach the real internet: one denies
// 0.0.0.0/0, the other has internet off.
func (e *e2eCLI) network() {
	t, must, sietch := e.t, e.must, e.sietch
	if _, err := exec.LookPath("nsenter"); err != nil {
		t.Log("network: skipped, no nsenter (util-linux)")
		return
	}
	// The "internet": a namespace holding 198.51.100.2 and .3 (TEST-NET-2)
	// behind a veth from this host, each serving HTTP. sietchd's pool has
	// a route back through the host (its default uplink is elsewhere, so
	// nothing is masqueraded on this path).
	// Some build hosts use documentation ranges for their own network:
	// leave a host that has this one alone.
	if out, _ := exec.Command("ip", "-4", "addr").Output(); strings.Contains(string(out), "198.51.100.") {
		t.Log("network: skipped, this host has an address in 198.51.100.0/24, which the test's namespace would take")
		return
	}
	if out, _ := exec.Command("ip", "-4", "route").Output(); strings.Contains(string(out), "198.51.100.") {
		t.Log("network: skipped, this host routes 198.51.100.0/24, which the test's namespace would take")
		return
	}
	// The holder is cloned into its new namespace (not unshare(1), which
	// moves itself there some time after it starts: a link moved to its
	// namespace before then lands in the host's).
	holder := exec.Command("sleep", "3600")
	holder.SysProcAttr = &syscall.SysProcAttr{Cloneflags: syscall.CLONE_NEWNET}
	if err := holder.Start(); err != nil {
		t.Fatalf("network namespace: %v", err)
	}
	t.Cleanup(func() { holder.Process.Kill(); holder.Wait() })
	pid := strconv.Itoa(holder.Process.Pid)
	run := func(args ...string) {
		t.Helper()
		if out, err := exec.Command(args[0], args[1:]...).CombinedOutput(); err != nil {
			t.Fatalf("%s: %v\n%s", strings.Join(args, " "), err, out)
		}
	}
	inNS := func(args ...string) { run(append([]string{"nsenter", "-t", pid, "-n"}, args...)...) }
	t.Cleanup(func() { exec.Command("ip", "link", "del", "e2enet0").Run() })
	run("ip", "link", "add", "e2enet0", "type", "veth", "peer", "name", "e2enet1")
	run("ip", "link", "set", "e2enet1", "netns", pid)
	run("ip", "addr", "add", "198.51.100.1/24", "dev", "e2enet0")
	run("ip", "link", "set", "e2enet0", "up")
	inNS("ip", "link", "set", "lo", "up")
	inNS("ip", "addr", "add", "198.51.100.2/24", "dev", "e2enet1")
	inNS("ip", "addr", "add", "198.51.100.3/24", "dev", "e2enet1")
	inNS("ip", "addr", "add", e2eResolver+"/24", "dev", "e2enet1")
	inNS("ip", "link", "set", "e2enet1", "up")
	inNS("ip", "route", "add", "default", "via", "198.51.100.1")
	www := filepath.Join(e.dir, "www")
	os.MkdirAll(www, 0o755)
	os.WriteFile(filepath.Join(www, "hello.txt"), []byte("hello from the internet\n"), 0o644)
	for _, addr := range []string{"198.51.100.2", "198.51.100.3"} {
		srv := exec.Command("nsenter", "-t", pid, "-n", "python3", "-m", "http.server", "80", "--bind", addr)
		srv.Dir = www
		if err := srv.Start(); err != nil {
			t.Fatal(err)
		}
		t.Cleanup(func() { srv.Process.Kill(); srv.Wait() })
	}
	serveDNS(t, holder.Process.Pid, map[string]string{"web.test.": "198.51.100.3", "other.test.": "198.51.100.2"})
	curl := func(id, url string) (string, int) {
		out, _, code := sietch(nil, "exec", id, "--", "curl", "-sS", "-m", "10", url)
		return out, code
	}

	n1 := must("create", "--deny", "0.0.0.0/0", "--allow", "198.51.100.2")
	var nw model.Network
	if err := json.Unmarshal([]byte(must("net", "--json", n1)), &nw); err != nil || !nw.Enabled || nw.Address == "" {
		t.Fatalf("sietch net %s: %+v %v", n1, nw, err)
	}
	t.Logf("%s: network %+v", n1, nw)
	// The server may still be starting in its namespace: a few tries.
	var out string
	var code int
	for range 5 {
		if out, code = curl(n1, "http://198.51.100.2/hello.txt"); code == 0 {
			break
		}
		time.Sleep(time.Second)
	}
	if code != 0 || out != "hello from the internet\n" {
		t.Errorf("%s → an allowed address: exit %d, %q", n1, code, out)
	}
	if out, code := curl(n1, "http://198.51.100.3/hello.txt"); code == 0 {
		t.Errorf("%s → a denied address connected: %q", n1, out)
	}
	must("net", n1, "--clear", "--deny", "203.0.113.0/24", "--internet", "off", "--allow", "198.51.100.0/24")
	if out, code := curl(n1, "http://198.51.100.3/hello.txt"); code != 0 {
		t.Errorf("%s → 198.51.100.3 after the policy allowed it: exit %d, %q", n1, code, out)
	}

	// Names: only what web.test resolves to, once it has been resolved.
	must("net", n1, "--clear", "--internet", "off", "--allow", "web.test")
	if out, code := curl(n1, "http://198.51.100.3/hello.txt"); code == 0 {
		t.Errorf("%s → web.test's address before any lookup connected: %q", n1, out)
	}
	if out, code := curl(n1, "http://web.test/hello.txt"); code != 0 || out != "hello from the internet\n" {
		t.Errorf("%s → http://web.test (allowed by name): exit %d, %q", n1, code, out)
	}
	if out, code := curl(n1, "http://other.test/hello.txt"); code != 6 {
		t.Errorf("%s → http://other.test (not allowed, internet off): exit %d, %q; want 6 (not resolved)", n1, code, out)
	}

	// Its TAP's counters are in its stats: what it sent and what came back.
	var st model.SandboxStats
	if err := json.Unmarshal([]byte(must("stats", "--json", n1)), &st); err != nil ||
		st.NetRxBytes == nil || *st.NetRxBytes == 0 || st.NetTxBytes == nil || *st.NetTxBytes == 0 {
		t.Errorf("%s's stats after its downloads: net rx %v tx %v (%v); want bytes both ways", n1, st.NetRxBytes, st.NetTxBytes, err)
	}

	// Another sandbox serves on its address: the host reaches it, n1 not.
	n2 := must("create", "--net", "--internet", "off")
	var nw2 model.Network
	json.Unmarshal([]byte(must("net", "--json", n2)), &nw2)
	addr, _, _ := strings.Cut(nw2.Address, "/")
	if addr == "" || addr == strings.Split(nw.Address, "/")[0] {
		t.Fatalf("%s's address %q (n1's %q): want its own", n2, nw2.Address, nw.Address)
	}
	must("exec", "-d", n2, "--", "python3", "-m", "http.server", "8001")
	url := fmt.Sprintf("http://%s:8001/", addr)
	client := http.Client{Timeout: 5 * time.Second}
	served := false
	for deadline := time.Now().Add(2 * time.Minute); time.Now().Before(deadline); time.Sleep(time.Second) {
		if r, err := client.Get(url); err == nil {
			r.Body.Close()
			served = true
			break
		}
	}
	if !served {
		t.Fatalf("the host cannot reach %s's server at %s (the control)", n2, url)
	}
	if out, code := curl(n1, url); code == 0 {
		t.Errorf("%s reached another sandbox at %s: %q", n1, url, out)
	}
	must("rm", n1, n2)
}

// e2eResolver is the DNS server of the test's internet namespace.
const e2eResolver = "198.51.100.53"

// serveDNS answers A queries for zone's names on e2eResolver:53 (UDP) in
// the network namespace of process pid, and NXDOMAIN for the rest, until
// the test ends.
func serveDNS(t *testing.T, pid int, zone map[string]string) {
	t.Helper()
	ns, err := netns.GetFromPid(pid)
	if err != nil {
		t.Fatalf("netns of %d: %v", pid, err)
	}
	defer ns.Close()
	done := make(chan error, 1)
	var pc net.PacketConn
	go func() {
		runtime.LockOSThread() // never unlocked: the thread ends in that namespace
		if err := netns.Set(ns); err != nil {
			done <- err
			return
		}
		var err error
		pc, err = net.ListenPacket("udp4", e2eResolver+":53")
		done <- err
	}()
	if err := <-done; err != nil {
		t.Fatalf("DNS server in the test namespace: %v", err)
	}
	srv := &dns.Server{PacketConn: pc, Handler: dns.HandlerFunc(func(w dns.ResponseWriter, r *dns.Msg) {
		m := new(dns.Msg)
		m.SetReply(r)
		q := r.Question[0]
		if a, ok := zone[strings.ToLower(q.Name)]; ok && q.Qtype == dns.TypeA {
			rr, _ := dns.NewRR(q.Name + " 60 IN A " + a)
			m.Answer = append(m.Answer, rr)
		} else if !ok {
			m.Rcode = dns.RcodeNameError
		}
		w.WriteMsg(m)
	})}
	go srv.ActivateAndServe()
	t.Cleanup(func() { srv.Shutdown() })
}
