package api

import (
	"net"
	"net/http"
	"net/url"
	"strconv"

	"github.com/sietch-vm/sietch/api/model"
	"github.com/sietch-vm/sietch/sandbox"
	"github.com/sietch-vm/sietch/wire/agentproto"
)

// maxDesktopActions bounds one input request; the agent holds the same.
const maxDesktopActions = 256

func desktopOut(s sandbox.DesktopState) model.DesktopState {
	return model.DesktopState{Width: s.Width, Height: s.Height, CursorX: s.CursorX, CursorY: s.CursorY}
}

// desktop answers a sandbox's screen size and pointer: GET
// /v1/sandboxes/{id}/desktop?display=.
func (s *Server) desktop(w http.ResponseWriter, r *http.Request) {
	st, err := s.m.Desktop(r.Context(), r.PathValue("id"), r.URL.Query().Get("display"))
	if err != nil {
		s.fail(w, err)
		return
	}
	writeJSON(w, http.StatusOK, desktopOut(st))
}

// screenshot answers a PNG of a sandbox's screen or a region of it: GET
// /v1/sandboxes/{id}/screenshot?display=&x=&y=&w=&h=.
func (s *Server) screenshot(w http.ResponseWriter, r *http.Request) {
	q := r.URL.Query()
	region, err := agentproto.ParseRegion(q)
	if err != nil {
		writeError(w, http.StatusBadRequest, model.CodeBadRequest, "%v", err)
		return
	}
	scale, err := agentproto.ParseScale(q)
	if err != nil {
		writeError(w, http.StatusBadRequest, model.CodeBadRequest, "%v", err)
		return
	}
	l := newLazyWriter(w, "image/png")
	s.end(l, s.m.Screenshot(r.Context(), r.PathValue("id"), q.Get("display"), region, scale, l))
}

// input applies input actions in order: POST /v1/sandboxes/{id}/input.
func (s *Server) input(w http.ResponseWriter, r *http.Request) {
	var in model.DesktopInput
	if !decode(w, r, &in, false) {
		return
	}
	if len(in.Actions) == 0 || len(in.Actions) > maxDesktopActions {
		writeError(w, http.StatusBadRequest, model.CodeBadRequest, "%d actions: send 1 to %d", len(in.Actions), maxDesktopActions)
		return
	}
	acts := make([]sandbox.DesktopAction, len(in.Actions))
	for i, a := range in.Actions {
		acts[i] = sandbox.DesktopAction{Type: a.Type, X: a.X, Y: a.Y, X2: a.X2, Y2: a.Y2, Button: a.Button, Count: a.Count, DY: a.DY, Text: a.Text, Keys: a.Keys}
	}
	st, err := s.m.DesktopInput(r.Context(), r.PathValue("id"), in.Display, acts)
	if err != nil {
		s.fail(w, err)
		return
	}
	writeJSON(w, http.StatusOK, desktopOut(st))
}

// vnc serves a sandbox's desktop over VNC with a new password and
// forwards host ports to it: POST /v1/sandboxes/{id}/vnc.
func (s *Server) vnc(w http.ResponseWriter, r *http.Request) {
	var in model.VNCRequest
	if !decode(w, r, &in, true) {
		return
	}
	info, err := s.m.VNC(r.Context(), r.PathValue("id"), sandbox.VNCSpec{Display: in.Display, HostAddr: in.HostAddr, HostPort: in.HostPort})
	if err != nil {
		s.fail(w, err)
		return
	}
	out := model.VNC{Display: info.Display, Password: info.Password, HostAddr: info.HostAddr, HostPort: info.HostPort}
	if info.WebPort != 0 {
		u := url.URL{Scheme: "http", Host: net.JoinHostPort(info.HostAddr, strconv.Itoa(info.WebPort)), Path: "/",
			RawQuery: url.Values{"password": {info.Password}}.Encode()}
		out.WebURL = u.String()
	}
	writeJSON(w, http.StatusOK, out)
}

// browser opens a URL in a sandbox's desktop browser: POST
// /v1/sandboxes/{id}/browser.
func (s *Server) browser(w http.ResponseWriter, r *http.Request) {
	var in model.BrowserRequest
	if !decode(w, r, &in, false) {
		return
	}
	st, err := s.m.OpenURL(r.Context(), r.PathValue("id"), in.Display, in.URL)
	if err != nil {
		s.fail(w, err)
		return
	}
	writeJSON(w, http.StatusOK, model.Browser{Started: st.Started, DevToolsPort: st.DevToolsPort, PID: st.PID})
}
