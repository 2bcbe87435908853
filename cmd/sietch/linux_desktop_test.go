package main

import (
	"encoding/json"
	"fmt"
	"image"
	"image/color"
	"image/jpeg"
	"image/png"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"time"

	"github.com/sietch-vm/sietch/api/model"
	"github.com/sietch-vm/sietch/guest-init/agent/desktop/rfb"
)

// desktop builds the template desktop from the image desktop (its start
// command and ready check are the image's: Xvfb on :1), creates a sandbox
// from it, paints the screen with one X client and checks screenshots
// (whole and a region) and input (the pointer moves, text types, a click
// outside the screen is refused).
func (e *e2eCLI) desktop() {
	t := e.t
	t0 := time.Now()
	args := []string{"template", "build", "desktop", "--image", "desktop", "--ready-timeout", "20m"}
	if os.Getenv("SIETCH_TEST_BROWSER") == "1" {
		args = append(args, "--memory", "1G") // Chromium
	}
	if _, log, code := e.sietch(nil, args...); code != 0 {
		t.Fatalf("template build desktop: exit %d\n%s", code, log)
	}
	t.Logf("desktop template built in %v", time.Since(t0).Round(time.Millisecond))
	t0 = time.Now()
	id := e.must("create", "--template", "desktop")
	t.Logf("%s: created from the desktop template in %v", id, time.Since(t0).Round(time.Millisecond))
	// One X client paints the root; DISPLAY comes from the image.
	if out, errOut, code := e.sietch(nil, "exec", id, "--", "xsetroot", "-solid", "#ff8000"); code != 0 {
		t.Fatalf("xsetroot: exit %d %s %s", code, out, errOut)
	}
	shot := func(args ...string) image.Image {
		t.Helper()
		out := filepath.Join(e.dir, "screen.png")
		t0 := time.Now()
		e.must(append([]string{"screenshot", id, "-o", out}, args...)...)
		t.Logf("screenshot %v took %v", args, time.Since(t0).Round(time.Millisecond))
		f, err := os.Open(out)
		if err != nil {
			t.Fatal(err)
		}
		defer f.Close()
		img, err := png.Decode(f)
		if err != nil {
			t.Fatalf("screenshot is not a PNG: %v", err)
		}
		return img
	}
	orange := color.RGBA{0xff, 0x80, 0x00, 0xff}
	img := shot()
	if b := img.Bounds(); b.Dx() != 1280 || b.Dy() != 800 {
		t.Errorf("screenshot is %v; want 1280x800", b)
	}
	for _, p := range []image.Point{{0, 0}, {640, 400}, {1279, 799}} {
		if got := color.RGBAModel.Convert(img.At(p.X, p.Y)); got != orange {
			t.Errorf("pixel %v is %v; want the orange xsetroot painted", p, got)
		}
	}
	if b := shot("--region", "100,50,64,32").Bounds(); b.Dx() != 64 || b.Dy() != 32 {
		t.Errorf("region screenshot is %v; want 64x32", b)
	}
	out := e.must("input", id, "move", "300", "200", "--", "type", "héllo", "--", "key", "ctrl+a", "--", "click", "310", "210")
	if !strings.Contains(out, "pointer at 310,210 on a 1280x800 screen") {
		t.Errorf("input: %q", out)
	}
	if _, errOut, code := e.sietch(nil, "input", id, "click", "1280", "10"); code != exitUsage || !strings.Contains(errOut, "outside the") {
		t.Errorf("a click outside the screen: exit %d, %q; want 2 and a reason", code, errOut)
	}
	e.vnc(id)
	e.browser(id)
	e.must("rm", id)
	e.must("template", "rm", "desktop")
}

// vnc gets a frame through `sietch vnc`'s forward with a real VNC client
// (vncsnapshot) and the password it printed, checks the last password
// stops working, and that a fork has no password until it asks for one.
func (e *e2eCLI) vnc(id string) {
	t := e.t
	bin, err := exec.LookPath("vncsnapshot")
	if err != nil {
		t.Log("vnc: skipped, no vncsnapshot (make deps installs it)")
		return
	}
	var v model.VNC
	t0 := time.Now()
	if err := json.Unmarshal([]byte(e.must("vnc", id, "--json")), &v); err != nil || len(v.Password) != 8 || v.HostPort == 0 {
		t.Fatalf("sietch vnc --json: %+v %v", v, err)
	}
	t.Logf("sietch vnc took %v: %s:%d", time.Since(t0).Round(time.Millisecond), v.HostAddr, v.HostPort)
	snapshot := func(password string) (image.Image, string) {
		t.Helper()
		pwFile := filepath.Join(e.dir, "vncpasswd")
		os.WriteFile(pwFile, rfb.PasswdFile(password), 0o600)
		out := filepath.Join(e.dir, "vnc.jpg")
		os.Remove(out)
		t0 := time.Now()
		b, err := exec.CommandContext(e.ctx, bin, "-passwd", pwFile, fmt.Sprintf("%s:%d", v.HostAddr, v.HostPort-5900), out).CombinedOutput()
		if err != nil {
			return nil, fmt.Sprintf("%v after %v\n%s", err, time.Since(t0).Round(time.Millisecond), b)
		}
		t.Logf("vncsnapshot took %v", time.Since(t0).Round(time.Millisecond))
		f, err := os.Open(out)
		if err != nil {
			t.Fatal(err)
		}
		defer f.Close()
		img, err := jpeg.Decode(f)
		if err != nil {
			t.Fatalf("vncsnapshot's frame: %v", err)
		}
		return img, ""
	}
	img, msg := snapshot(v.Password)
	if img == nil {
		t.Fatalf("vncsnapshot with sietch vnc's password: %s", msg)
	}
	if b := img.Bounds(); b.Dx() != 1280 || b.Dy() != 800 {
		t.Errorf("VNC frame is %v; want 1280x800", b)
	}
	if r, g, b, _ := img.At(640, 400).RGBA(); r>>8 < 0xe0 || g>>8 < 0x60 || g>>8 > 0xa0 || b>>8 > 0x30 {
		t.Errorf("VNC frame's centre is %v; want the orange xsetroot painted", img.At(640, 400))
	}
	old := v.Password
	json.Unmarshal([]byte(e.must("vnc", id, "--json")), &v)
	if img, _ := snapshot(old); img != nil || v.Password == old {
		t.Errorf("the password before the last sietch vnc still opens the desktop")
	}
}

// browser opens a page in the desktop's Chromium and waits for it on the
// screen (SIETCH_TEST_BROWSER=1, make test-desktop: Chromium's first
// window takes minutes where guest kernel mode is emulated); otherwise it
// checks that an image without a browser says so.
func (e *e2eCLI) browser(id string) {
	t := e.t
	if os.Getenv("SIETCH_TEST_BROWSER") != "1" {
		if _, errOut, code := e.sietch(nil, "browser", id, "https://example.test/"); code == 0 || !strings.Contains(errOut, "no browser") {
			t.Errorf("sietch browser on an image without one: exit %d, %q; want it said", code, errOut)
		}
		return
	}
	page := filepath.Join(e.dir, "page.html")
	os.WriteFile(page, []byte(`<html><body style="margin:0;background:#00c060"></body></html>`), 0o644)
	e.must("cp", page, id+":/tmp/page.html")
	t0 := time.Now()
	out := e.must("browser", id, "file:///tmp/page.html")
	if !strings.Contains(out, "started the browser") {
		t.Fatalf("sietch browser: %q; want the browser started", out)
	}
	green := func() bool {
		shot := filepath.Join(e.dir, "browser.png")
		if _, _, code := e.sietch(nil, "screenshot", id, "-o", shot, "--region", "600,400,8,8"); code != 0 {
			return false
		}
		f, err := os.Open(shot)
		if err != nil {
			return false
		}
		defer f.Close()
		img, err := png.Decode(f)
		return err == nil && color.RGBAModel.Convert(img.At(4, 4)) == color.RGBA{0x00, 0xc0, 0x60, 0xff}
	}
	for !green() {
		if time.Since(t0) > 45*time.Minute {
			log, _, _ := e.sietch(nil, "exec", id, "--", "sh", "-c", "tail -20 /tmp/sietch-browser.log; free -m; ps -eo pid,stat,time,rss,args | grep -i chrom | head")
			t.Fatalf("the page's colour is not on the screen %v after sietch browser; in the guest:\n%s", time.Since(t0), log)
		}
		time.Sleep(10 * time.Second)
	}
	t.Logf("browser: page on the screen %v after sietch browser (a cold Chromium start)", time.Since(t0).Round(time.Second))
	// Once DevTools answers, another URL opens in a new tab.
	t0 = time.Now()
	for {
		out, errOut, code := e.sietch(nil, "browser", id, "about:blank")
		if code == 0 {
			if !strings.Contains(out, "new tab") {
				t.Errorf("second sietch browser: %q; want a new tab", out)
			}
			break
		}
		if !strings.Contains(errOut, "try again") || time.Since(t0) > 10*time.Minute {
			t.Fatalf("second sietch browser: exit %d, %q", code, errOut)
		}
		time.Sleep(5 * time.Second)
	}
	t.Logf("browser: a new tab through DevTools %v later", time.Since(t0).Round(time.Second))
}
