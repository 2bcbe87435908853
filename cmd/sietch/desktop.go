package main

import (
	"context"
	"errors"
	"fmt"
	"image"
	"net"
	"os"
	"path/filepath"
	"strconv"
	"strings"

	"github.com/spf13/pflag"

	"github.com/sietch-vm/sietch/api/model"
)

var cmdScreenshot = &command{
	synopsis: "screenshot ID -o FILE.png [--region X,Y,W,H] [--scale F] [--display :1]",
	summary: "Save a PNG of a desktop sandbox's screen (or of a region of it). The guest agent reads it over the X connection it keeps; " +
		"nothing is started in the guest.",
	example: "  sietch screenshot sb-1 -o screen.png\n  sietch screenshot sb-1 --region 0,0,640,400 -o top.png\n",
	run: func(c *cli, ctx context.Context, fs *pflag.FlagSet, args []string) int {
		id, out, display, region, scale, err := parseScreenshot(fs, args)
		if rc, done := c.parsed("screenshot", fs, err); done {
			return rc
		}
		api, err := c.connect(true)
		if err != nil {
			return c.fail("screenshot", err)
		}
		tmp, err := os.CreateTemp(filepath.Dir(out), ".screenshot-*.png")
		if err != nil {
			return c.fail("screenshot", err)
		}
		defer os.Remove(tmp.Name())
		err = api.Screenshot(ctx, id, display, region, scale, tmp)
		if cerr := tmp.Close(); err == nil {
			err = cerr
		}
		if err == nil {
			err = os.Rename(tmp.Name(), out)
		}
		if err != nil {
			return c.fail("screenshot", err)
		}
		fmt.Fprintln(c.stdout, out)
		return exitOK
	},
}

func parseScreenshot(fs *pflag.FlagSet, args []string) (id, out, display string, region image.Rectangle, scale float64, err error) {
	var reg string
	fs.Float64Var(&scale, "scale", 1, "shrink the picture by this factor, 0.05 to 1 (0.5 halves each side)")
	fs.StringVarP(&out, "output", "o", "", "the PNG file to write")
	fs.StringVar(&reg, "region", "", "X,Y,W,H: only this part of the screen")
	fs.StringVar(&display, "display", "", "the X display (default :1)")
	if err = fs.Parse(args); err != nil {
		return
	}
	if fs.NArg() != 1 {
		err = errors.New("want one sandbox ID")
		return
	}
	if out == "" {
		err = errors.New("-o FILE.png is required")
		return
	}
	if reg != "" {
		var v []int
		if v, err = ints(reg, 4); err != nil {
			err = fmt.Errorf("--region %q: want X,Y,W,H in pixels: %w", reg, err)
			return
		}
		if v[2] == 0 || v[3] == 0 {
			err = fmt.Errorf("--region %q is empty", reg)
			return
		}
		region = image.Rect(v[0], v[1], v[0]+v[2], v[1]+v[3])
	}
	if scale < 0.05 || scale > 1 {
		err = fmt.Errorf("--scale %g: want 0.05 to 1", scale)
		return
	}
	return fs.Arg(0), out, display, region, scale, nil
}

// ints parses n comma-separated whole numbers ≥ 0.
func ints(s string, n int) ([]int, error) {
	parts := strings.Split(s, ",")
	if len(parts) != n {
		return nil, fmt.Errorf("%d numbers, want %d", len(parts), n)
	}
	out := make([]int, n)
	for i, p := range parts {
		v, err := strconv.Atoi(strings.TrimSpace(p))
		if err != nil || v < 0 {
			return nil, fmt.Errorf("%q is not a whole number ≥ 0", p)
		}
		out[i] = v
	}
	return out, nil
}

var cmdInput = &command{
	synopsis: "input ID ACTION [ARGS]... [-- ACTION [ARGS]...]... [--display :1]",
	summary: "Send mouse and keyboard input to a desktop sandbox, applied in order: click X Y [BUTTON [COUNT]], move X Y, " +
		"drag X1 Y1 X2 Y2, scroll DY (negative is up), type TEXT (any Unicode), key COMBO (such as ctrl+l). " +
		"Separate several actions with --; prints the pointer position after them.",
	example: "  sietch input sb-1 click 640 400\n  sietch input sb-1 key ctrl+l -- type 'https://example.com' -- key Return\n",
	run: func(c *cli, ctx context.Context, fs *pflag.FlagSet, args []string) int {
		id, in, err := parseInput(fs, args)
		if rc, done := c.parsed("input", fs, err); done {
			return rc
		}
		api, err := c.connect(true)
		if err != nil {
			return c.fail("input", err)
		}
		st, err := api.Input(ctx, id, in)
		if err != nil {
			return c.fail("input", err)
		}
		if c.g.json {
			printJSON(c.stdout, st)
			return exitOK
		}
		fmt.Fprintf(c.stdout, "pointer at %d,%d on a %dx%d screen\n", st.CursorX, st.CursorY, st.Width, st.Height)
		return exitOK
	},
}

func parseInput(fs *pflag.FlagSet, args []string) (string, model.DesktopInput, error) {
	var in model.DesktopInput
	fs.StringVar(&in.Display, "display", "", "the X display (default :1)")
	fs.SetInterspersed(false)
	if err := fs.Parse(args); err != nil {
		return "", in, err
	}
	rest := fs.Args()
	if len(rest) < 2 {
		return "", in, errors.New("want a sandbox ID and an action (click, move, drag, scroll, type, key)")
	}
	id := rest[0]
	var groups [][]string
	cur := []string{}
	for _, a := range rest[1:] {
		if a == "--" {
			groups, cur = append(groups, cur), []string{}
			continue
		}
		cur = append(cur, a)
	}
	groups = append(groups, cur)
	for _, g := range groups {
		act, err := parseAction(g)
		if err != nil {
			return "", in, err
		}
		in.Actions = append(in.Actions, act)
	}
	return id, in, nil
}

func parseAction(g []string) (model.DesktopAction, error) {
	if len(g) == 0 {
		return model.DesktopAction{}, errors.New("an empty action between --")
	}
	nums := func(min, max int) ([]int, error) {
		if len(g)-1 < min || len(g)-1 > max {
			return nil, fmt.Errorf("%s takes %d to %d numbers, not %d", g[0], min, max, len(g)-1)
		}
		v := make([]int, len(g)-1)
		for i, s := range g[1:] {
			n, err := strconv.Atoi(s)
			if err != nil {
				return nil, fmt.Errorf("%s: %q is not a whole number", g[0], s)
			}
			v[i] = n
		}
		return v, nil
	}
	a := model.DesktopAction{Type: g[0]}
	switch g[0] {
	case "click":
		v, err := nums(2, 4)
		if err != nil {
			return a, err
		}
		a.X, a.Y, a.Button, a.Count = v[0], v[1], 1, 1
		if len(v) > 2 {
			a.Button = v[2]
		}
		if len(v) > 3 {
			a.Count = v[3]
		}
	case "move":
		v, err := nums(2, 2)
		if err != nil {
			return a, err
		}
		a.X, a.Y = v[0], v[1]
	case "drag":
		v, err := nums(4, 4)
		if err != nil {
			return a, err
		}
		a.X, a.Y, a.X2, a.Y2 = v[0], v[1], v[2], v[3]
	case "scroll":
		v, err := nums(1, 1)
		if err != nil {
			return a, err
		}
		a.DY = v[0]
	case "type":
		if len(g) < 2 {
			return a, errors.New("type takes the text to type")
		}
		a.Text = strings.Join(g[1:], " ")
	case "key":
		if len(g) != 2 {
			return a, errors.New("key takes one combination, such as ctrl+l")
		}
		a.Keys = g[1]
	default:
		return a, fmt.Errorf("unknown action %q: want click, move, drag, scroll, type or key", g[0])
	}
	return a, nil
}

var cmdVNC = &command{
	synopsis: "vnc ID [--display :1] [--host-port P] [--host-addr A]",
	summary: "Serve a desktop sandbox's screen over VNC and print where to connect: a host port forwarded to the guest agent's " +
		"VNC server, a password made now (the one before stops working) and noVNC's page for a web browser. " +
		"Any VNC client works; the forward ends with the sandbox (or sietch port ID --close P).",
	example: "  sietch vnc sb-1\n  vncviewer 127.0.0.1::$(sietch vnc sb-1 --json | jq .host_port)\n",
	run: func(c *cli, ctx context.Context, fs *pflag.FlagSet, args []string) int {
		var req model.VNCRequest
		fs.StringVar(&req.Display, "display", "", "the X display (default :1)")
		fs.IntVar(&req.HostPort, "host-port", 0, "host TCP port for VNC (default: any free port, or the one an earlier call forwarded)")
		fs.StringVar(&req.HostAddr, "host-addr", "", "host address to listen on (default 127.0.0.1)")
		err := fs.Parse(args)
		if err == nil && fs.NArg() != 1 {
			err = errors.New("want one sandbox ID")
		}
		if err == nil && (req.HostPort < 0 || req.HostPort > 65535) {
			err = errors.New("--host-port: want 1..65535")
		}
		if rc, done := c.parsed("vnc", fs, err); done {
			return rc
		}
		api, err := c.connect(true)
		if err != nil {
			return c.fail("vnc", err)
		}
		v, err := api.VNC(ctx, fs.Arg(0), req)
		if err != nil {
			return c.fail("vnc", err)
		}
		if c.g.json {
			printJSON(c.stdout, v)
			return exitOK
		}
		fmt.Fprintf(c.stdout, "VNC:      %s  (vncviewer %s::%d)\n", net.JoinHostPort(v.HostAddr, strconv.Itoa(v.HostPort)), v.HostAddr, v.HostPort)
		fmt.Fprintf(c.stdout, "password: %s\n", v.Password)
		if v.WebURL != "" {
			fmt.Fprintf(c.stdout, "browser:  %s\n", v.WebURL)
		}
		return exitOK
	},
}

var cmdBrowser = &command{
	synopsis: "browser ID URL [--display :1]",
	summary: "Open URL in a desktop sandbox's browser (Chromium), starting it if it is not running; the first start takes long " +
		"where guest kernel mode is emulated, and a second call while it comes up says to retry. Drive the page with screenshot " +
		"and input; CDP tools reach its DevTools port with sietch port ID 9222.",
	example: "  sietch browser sb-1 https://example.com\n  sietch port sb-1 9222   # then point Playwright/Puppeteer's connectOverCDP at it\n",
	run: func(c *cli, ctx context.Context, fs *pflag.FlagSet, args []string) int {
		var req model.BrowserRequest
		fs.StringVar(&req.Display, "display", "", "the X display (default :1)")
		err := fs.Parse(args)
		if err == nil && fs.NArg() != 2 {
			err = errors.New("want a sandbox ID and a URL")
		}
		if rc, done := c.parsed("browser", fs, err); done {
			return rc
		}
		req.URL = fs.Arg(1)
		api, err := c.connect(true)
		if err != nil {
			return c.fail("browser", err)
		}
		b, err := api.OpenURL(ctx, fs.Arg(0), req)
		if err != nil {
			return c.fail("browser", err)
		}
		if c.g.json {
			printJSON(c.stdout, b)
			return exitOK
		}
		if b.Started {
			fmt.Fprintf(c.stdout, "started the browser (pid %d) with %s; it shows the page once it is up\n", b.PID, req.URL)
		} else {
			fmt.Fprintf(c.stdout, "opened %s in a new tab\n", req.URL)
		}
		fmt.Fprintf(c.stdout, "DevTools: guest port %d (sietch port %s %d)\n", b.DevToolsPort, fs.Arg(0), b.DevToolsPort)
		return exitOK
	},
}
