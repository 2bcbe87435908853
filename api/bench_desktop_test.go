package api

import (
	"bufio"
	"bytes"
	"encoding/binary"
	"fmt"
	"image/png"
	"io"
	"net"
	"net/http"
	"os"
	"path/filepath"
	"slices"
	"strconv"
	"testing"
	"time"

	"github.com/sietch-vm/sietch/api/model"
	"github.com/sietch-vm/sietch/guest-init/agent/desktop/rfb"
	"github.com/sietch-vm/sietch/sandbox"
)

// desktopImage is the desktop image for benchmarks: linuxImage's kernel
// and initramfs with the desktop root (SIETCH_DESKTOP_ROOTFS, else
// build/desktop-lite.ext4, else build/desktop.ext4) and its config.
func desktopImage(b *testing.B) sandbox.ImageSpec {
	img := linuxImage(b)
	root := os.Getenv("SIETCH_DESKTOP_ROOTFS")
	for _, p := range []string{"../build/desktop-lite.ext4", "../build/desktop.ext4"} {
		if root == "" {
			if _, err := os.Stat(p); err == nil {
				root = p
			}
		}
	}
	if root == "" {
		b.Skip("no desktop image: run `make image-desktop-lite`")
	}
	abs, _ := filepath.Abs(root)
	img.Name, img.RootFS, img.MemMiB, img.Config = "desktop", abs, 512, sandbox.DesktopConfig()
	return img
}

// BenchmarkDesktop measures computer use on a sandbox from the desktop
// template (1280x800), over real HTTP with real vmm processes, in one run
// against the way it is done without an agent that holds the display:
// a program started in the guest per action.
//
//   - create-to-screenshot-s: POST /v1/sandboxes from the template until
//     the first whole-screen screenshot has arrived;
//   - shot-ms (p50 of 10), shot-KiB: a whole-screen PNG through the API,
//     with the root painted by xsetroot -mod 16 16 (a plaid, so the PNG is
//     not trivially small), and xwd-ms: `xwd -root` to a file, started per
//     shot through exec (no PNG: the peer is spared the encoding);
//     xwd-over-shot-x is their ratio;
//   - input-ms (p50 of 20): one pointer move through POST …/input, answered
//     once applied, and xdotool-ms: `xdotool mousemove` per move through
//     exec; xdotool-over-input-x their ratio;
//   - vnc-first-frame-s: POST …/vnc, then a VNC client through the
//     forward until the first whole frame (Zlib) has arrived.
func BenchmarkDesktop(b *testing.B) {
	img := desktopImage(b)
	e := newEnv(b, func(c *sandbox.Config) { c.Images = []sandbox.ImageSpec{img} })
	t0 := time.Now()
	tp := e.buildTemplate(model.TemplateRequest{Name: "desktop", Image: "desktop", ReadyTimeoutS: 900})
	if tp.State != model.TemplateReady {
		b.Fatalf("template: %+v", tp)
	}
	b.Logf("desktop template built in %v", time.Since(t0).Round(time.Second))
	shot := func(id string) []byte {
		code, body := e.do("GET", "/v1/sandboxes/"+id+"/screenshot", nil)
		if code != http.StatusOK {
			b.Fatalf("screenshot of %s: %d %s", id, code, body)
		}
		return body
	}
	run := func(id string, cmd string, args ...string) {
		st, r, body := e.exec(id, model.ExecRequest{Cmd: cmd, Args: args})
		if st != http.StatusOK || r.exit == nil || r.exit.Code != 0 {
			b.Fatalf("exec %s %v in %s: %d %+v %s", cmd, args, id, st, r.exit, body)
		}
	}
	p50 := func(d []time.Duration) float64 { slices.Sort(d); return ms(d[len(d)/2]) }
	for i := 0; i < b.N; i++ {
		t0 := time.Now()
		sb := e.create(model.CreateRequest{Template: "desktop"})
		first := shot(sb.ID)
		toShot := time.Since(t0).Seconds()
		if cfg, err := png.DecodeConfig(bytes.NewReader(first)); err != nil || cfg.Width != 1280 || cfg.Height != 800 {
			b.Fatalf("first screenshot: %+v %v", cfg, err)
		}
		run(sb.ID, "xsetroot", "-mod", "16", "16", "-fg", "#3060c0", "-bg", "#f0f0e0")

		var shots, xwds, inputs, xdos []time.Duration
		var size int
		for range 10 {
			t := time.Now()
			size = len(shot(sb.ID))
			shots = append(shots, time.Since(t))
		}
		for range 3 {
			t := time.Now()
			run(sb.ID, "xwd", "-root", "-silent", "-out", "/tmp/shot.xwd")
			xwds = append(xwds, time.Since(t))
		}
		for j := range 20 {
			t := time.Now()
			e.call("POST", "/v1/sandboxes/"+sb.ID+"/input", model.DesktopInput{Actions: []model.DesktopAction{{Type: "move", X: 100 + j, Y: 100}}}, http.StatusOK, nil)
			inputs = append(inputs, time.Since(t))
		}
		for j := range 3 {
			t := time.Now()
			run(sb.ID, "xdotool", "mousemove", strconv.Itoa(200+j), "200")
			xdos = append(xdos, time.Since(t))
		}

		t0 = time.Now()
		var v model.VNC
		e.call("POST", "/v1/sandboxes/"+sb.ID+"/vnc", model.VNCRequest{}, http.StatusOK, &v)
		if err := vncFirstFrame(v); err != nil {
			b.Fatalf("VNC: %v", err)
		}
		vncS := time.Since(t0).Seconds()
		e.call("DELETE", "/v1/sandboxes/"+sb.ID, nil, http.StatusNoContent, nil)

		b.ReportMetric(toShot, "create-to-screenshot-s")
		b.ReportMetric(p50(shots), "shot-ms")
		b.ReportMetric(float64(size)/1024, "shot-KiB")
		b.ReportMetric(p50(xwds), "xwd-ms")
		b.ReportMetric(p50(xwds)/p50(shots), "xwd-over-shot-x")
		b.ReportMetric(p50(inputs), "input-ms")
		b.ReportMetric(p50(xdos), "xdotool-ms")
		b.ReportMetric(p50(xdos)/p50(inputs), "xdotool-over-input-x")
		b.ReportMetric(vncS, "vnc-first-frame-s")
	}
	e.call("DELETE", "/v1/templates/desktop", nil, http.StatusNoContent, nil)
}

// vncFirstFrame logs in to v and reads one whole-screen update, Zlib
// encoded.
func vncFirstFrame(v model.VNC) error {
	conn, err := net.Dial("tcp", net.JoinHostPort(v.HostAddr, strconv.Itoa(v.HostPort)))
	if err != nil {
		return err
	}
	defer conn.Close()
	si, err := rfb.Login(conn, v.Password, time.Minute)
	if err != nil {
		return err
	}
	conn.SetDeadline(time.Now().Add(5 * time.Minute))
	msg := []byte{2, 0, 0, 1, 0, 0, 0, 6} // SetEncodings: Zlib
	msg = append(msg, 3, 0, 0, 0, 0, 0)   // FramebufferUpdateRequest, full
	msg = binary.BigEndian.AppendUint16(msg, uint16(si.Width))
	msg = binary.BigEndian.AppendUint16(msg, uint16(si.Height))
	conn.Write(msg)
	r := bufio.NewReader(conn)
	var hdr [12]byte
	if _, err := io.ReadFull(r, hdr[:4]); err != nil {
		return err
	}
	covered := 0
	for range binary.BigEndian.Uint16(hdr[2:]) {
		if _, err := io.ReadFull(r, hdr[:]); err != nil {
			return err
		}
		w, h := int(binary.BigEndian.Uint16(hdr[4:])), int(binary.BigEndian.Uint16(hdr[6:]))
		if enc := binary.BigEndian.Uint32(hdr[8:]); enc != 6 {
			return fmt.Errorf("encoding %d; asked for Zlib", enc)
		}
		var n [4]byte
		io.ReadFull(r, n[:])
		if _, err := r.Discard(int(binary.BigEndian.Uint32(n[:]))); err != nil {
			return err
		}
		covered += w * h
	}
	if covered != si.Width*si.Height {
		return fmt.Errorf("the first update covered %d of %d pixels", covered, si.Width*si.Height)
	}
	return nil
}
