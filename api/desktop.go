package api

import (
	"image"
	"net/http"
	"strconv"

	"github.com/sietch-vm/sietch/api/model"
	"github.com/sietch-vm/sietch/sandbox"
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
	var v [4]int
	given := 0
	for i, k := range []string{"x", "y", "w", "h"} {
		if q.Get(k) == "" {
			continue
		}
		n, err := strconv.Atoi(q.Get(k))
		if err != nil || n < 0 || n > 1<<15 {
			writeError(w, http.StatusBadRequest, model.CodeBadRequest, "%s=%q: want a whole number of pixels, 0 to 32768", k, q.Get(k))
			return
		}
		v[i] = n
		given++
	}
	var region image.Rectangle
	switch given {
	case 0:
	case 4:
		if v[2] == 0 || v[3] == 0 {
			writeError(w, http.StatusBadRequest, model.CodeBadRequest, "region %dx%d is empty", v[2], v[3])
			return
		}
		region = image.Rect(v[0], v[1], v[0]+v[2], v[1]+v[3])
	default:
		writeError(w, http.StatusBadRequest, model.CodeBadRequest, "%s", "a region needs all of x, y, w and h")
		return
	}
	l := newLazyWriter(w, "image/png")
	s.end(l, s.m.Screenshot(r.Context(), r.PathValue("id"), q.Get("display"), region, l))
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
