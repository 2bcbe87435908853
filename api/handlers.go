package api

import (
	_ "embed"
	"fmt"
	"net/http"
	"strconv"

	"github.com/sietch-vm/sietch/api/model"
	"github.com/sietch-vm/sietch/sandbox"
)

// openapiDoc is the API's OpenAPI 3 document, served as is.
//
//go:embed openapi.yaml
var openapiDoc []byte

func (s *Server) health(w http.ResponseWriter, r *http.Request) {
	writeJSON(w, http.StatusOK, model.Health{Status: "ok", Version: s.version, Sandboxes: len(s.m.List()), KVM: s.kvm()})
}

func (s *Server) openapi(w http.ResponseWriter, r *http.Request) {
	w.Header().Set("Content-Type", "application/yaml")
	w.Write(openapiDoc)
}

func (s *Server) create(w http.ResponseWriter, r *http.Request) {
	var req model.CreateRequest
	if !decode(w, r, &req, false) {
		return
	}
	sb, err := s.m.Create(r.Context(), createIn(req))
	if err != nil {
		s.fail(w, err)
		return
	}
	writeJSON(w, http.StatusCreated, sandboxOut(sb))
}

func (s *Server) list(w http.ResponseWriter, r *http.Request) {
	writeJSON(w, http.StatusOK, map[string][]model.Sandbox{"sandboxes": mapOut(s.m.List(), sandboxOut)})
}

func (s *Server) get(w http.ResponseWriter, r *http.Request) {
	sb, err := s.m.Get(r.PathValue("id"))
	if err != nil {
		s.fail(w, err)
		return
	}
	writeJSON(w, http.StatusOK, sandboxOut(sb))
}

func (s *Server) delete(w http.ResponseWriter, r *http.Request) {
	if err := s.m.Delete(r.Context(), r.PathValue("id")); err != nil {
		s.fail(w, err)
		return
	}
	w.WriteHeader(http.StatusNoContent)
}

func (s *Server) stats(w http.ResponseWriter, r *http.Request) {
	st, err := s.m.Stats(r.PathValue("id"))
	if err != nil {
		s.fail(w, err)
		return
	}
	writeJSON(w, http.StatusOK, statsOut(st))
}

func (s *Server) network(w http.ResponseWriter, r *http.Request) {
	n, err := s.m.GetNetwork(r.PathValue("id"))
	if err != nil {
		s.fail(w, err)
		return
	}
	writeJSON(w, http.StatusOK, networkOut(n))
}

func (s *Server) setNetwork(w http.ResponseWriter, r *http.Request) {
	var req model.NetworkSpec
	if !decode(w, r, &req, false) {
		return
	}
	n, err := s.m.SetNetwork(r.Context(), r.PathValue("id"), networkIn(req))
	if err != nil {
		s.fail(w, err)
		return
	}
	writeJSON(w, http.StatusOK, networkOut(n))
}

func (s *Server) pause(w http.ResponseWriter, r *http.Request) {
	var req model.PauseRequest
	if !decode(w, r, &req, true) {
		return
	}
	pause := s.m.Pause
	if req.ToDisk {
		pause = s.m.Suspend
	}
	sb, err := pause(r.Context(), r.PathValue("id"))
	if err != nil {
		s.fail(w, err)
		return
	}
	writeJSON(w, http.StatusOK, sandboxOut(sb))
}

func (s *Server) resume(w http.ResponseWriter, r *http.Request) {
	sb, err := s.m.Resume(r.Context(), r.PathValue("id"))
	if err != nil {
		s.fail(w, err)
		return
	}
	writeJSON(w, http.StatusOK, sandboxOut(sb))
}

func (s *Server) snapshot(w http.ResponseWriter, r *http.Request) {
	var req model.SnapshotRequest
	if !decode(w, r, &req, true) {
		return
	}
	snap, err := s.m.Snapshot(r.Context(), r.PathValue("id"), req.Kind)
	if err != nil {
		s.fail(w, err)
		return
	}
	writeJSON(w, http.StatusCreated, snapshotOut(snap))
}

func (s *Server) snapshots(w http.ResponseWriter, r *http.Request) {
	snaps, err := s.m.Snapshots(r.PathValue("id"))
	if err != nil {
		s.fail(w, err)
		return
	}
	writeJSON(w, http.StatusOK, map[string][]model.Snapshot{"snapshots": mapOut(snaps, snapshotOut)})
}

func (s *Server) fork(w http.ResponseWriter, r *http.Request) {
	var req model.ForkRequest
	if !decode(w, r, &req, false) {
		return
	}
	sbs, err := s.m.Fork(r.Context(), r.PathValue("id"), req.Snapshot, req.Count)
	if err != nil {
		s.fail(w, err)
		return
	}
	writeJSON(w, http.StatusCreated, map[string][]model.Sandbox{"sandboxes": mapOut(sbs, sandboxOut)})
}

func (s *Server) addPort(w http.ResponseWriter, r *http.Request) {
	var req model.PortRequest
	if !decode(w, r, &req, false) {
		return
	}
	p, err := s.m.AddPort(r.Context(), r.PathValue("id"), sandbox.PortSpec{GuestPort: req.GuestPort, HostPort: req.HostPort, HostAddr: req.HostAddr})
	if err != nil {
		s.fail(w, err)
		return
	}
	writeJSON(w, http.StatusCreated, portOut(p))
}

func (s *Server) ports(w http.ResponseWriter, r *http.Request) {
	ps, err := s.m.Ports(r.PathValue("id"))
	if err != nil {
		s.fail(w, err)
		return
	}
	writeJSON(w, http.StatusOK, map[string][]model.Port{"ports": mapOut(ps, portOut)})
}

func (s *Server) removePort(w http.ResponseWriter, r *http.Request) {
	hp, err := strconv.Atoi(r.PathValue("host_port"))
	if err != nil || hp < 1 || hp > 65535 {
		writeError(w, http.StatusBadRequest, model.CodeBadRequest, "%s", fmt.Sprintf("host port %q is not a port number (1-65535)", r.PathValue("host_port")))
		return
	}
	if err := s.m.RemovePort(r.PathValue("id"), hp); err != nil {
		s.fail(w, err)
		return
	}
	w.WriteHeader(http.StatusNoContent)
}

func (s *Server) images(w http.ResponseWriter, r *http.Request) {
	writeJSON(w, http.StatusOK, map[string][]model.Image{"images": mapOut(s.m.Images(), imageOut)})
}

// buildTemplate starts a build and answers 202 with the template
// building; GET /v1/templates/{name} follows it (?wait=true blocks until
// the build ends).
func (s *Server) buildTemplate(w http.ResponseWriter, r *http.Request) {
	var req model.TemplateRequest
	if !decode(w, r, &req, false) {
		return
	}
	t, err := s.m.BuildTemplate(templateIn(req))
	if err != nil {
		s.fail(w, err)
		return
	}
	writeJSON(w, http.StatusAccepted, templateOut(t))
}

func (s *Server) templates(w http.ResponseWriter, r *http.Request) {
	writeJSON(w, http.StatusOK, map[string][]model.Template{"templates": mapOut(s.m.Templates(), templateOut)})
}

func (s *Server) template(w http.ResponseWriter, r *http.Request) {
	name := r.PathValue("name")
	var t sandbox.Template
	var err error
	if r.URL.Query().Get("wait") == "true" {
		t, err = s.m.WaitTemplate(r.Context(), name)
	} else {
		t, err = s.m.Template(name)
	}
	if err != nil {
		s.fail(w, err)
		return
	}
	writeJSON(w, http.StatusOK, templateOut(t))
}

func (s *Server) deleteTemplate(w http.ResponseWriter, r *http.Request) {
	if err := s.m.DeleteTemplate(r.Context(), r.PathValue("name")); err != nil {
		s.fail(w, err)
		return
	}
	w.WriteHeader(http.StatusNoContent)
}

func (s *Server) allSnapshots(w http.ResponseWriter, r *http.Request) {
	writeJSON(w, http.StatusOK, map[string][]model.Snapshot{"snapshots": mapOut(s.m.AllSnapshots(), snapshotOut)})
}

func (s *Server) getSnapshot(w http.ResponseWriter, r *http.Request) {
	snap, err := s.m.GetSnapshot(r.PathValue("id"))
	if err != nil {
		s.fail(w, err)
		return
	}
	writeJSON(w, http.StatusOK, snapshotOut(snap))
}

func (s *Server) deleteSnapshot(w http.ResponseWriter, r *http.Request) {
	if err := s.m.DeleteSnapshot(r.PathValue("id")); err != nil {
		s.fail(w, err)
		return
	}
	w.WriteHeader(http.StatusNoContent)
}
