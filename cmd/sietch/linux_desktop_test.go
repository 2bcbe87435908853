package main

import (
	"image"
	"image/color"
	"image/png"
	"os"
	"path/filepath"
	"strings"
	"time"
)

// desktop builds the template desktop from the image desktop (its start
// command and ready check are the image's: Xvfb on :1), creates a sandbox
// from it, paints the screen with one X client and checks screenshots
// (whole and a region) and input (the pointer moves, text types, a click
// outside the screen is refused).
func (e *e2eCLI) desktop() {
	t := e.t
	t0 := time.Now()
	if _, log, code := e.sietch(nil, "template", "build", "desktop", "--image", "desktop", "--ready-timeout", "10m"); code != 0 {
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
	e.must("rm", id)
	e.must("template", "rm", "desktop")
}
