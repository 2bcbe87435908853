package api

import (
	"encoding/json"
	"net/http"
	"strconv"
	"strings"

	"github.com/sietch-vm/sietch/api/model"
	"github.com/sietch-vm/sietch/sandbox"
)

// Bounds of POST /v1/images' query.
const maxBuildArgs = 256

// buildImage builds an image from a Dockerfile: POST
// /v1/images?name=&dockerfile=&target=&build_arg=K=V&no_cache=, the body
// the build context as a tar archive. A refusal before the build starts
// (bad query, context, Dockerfile) is a JSON error; once it runs the reply
// is an NDJSON stream of build output ending in the image or the error.
func (s *Server) buildImage(w http.ResponseWriter, r *http.Request) {
	q := r.URL.Query()
	for k, v := range q {
		switch k {
		case "name", "dockerfile", "target", "no_cache":
			if len(v) != 1 {
				writeError(w, http.StatusBadRequest, model.CodeBadRequest, "query parameter %q given %d times; give it once", k, len(v))
				return
			}
		case "build_arg":
		default:
			writeError(w, http.StatusBadRequest, model.CodeBadRequest, "unknown query parameter %q; known: name, dockerfile, target, build_arg, no_cache", k)
			return
		}
	}
	spec := sandbox.ImageBuildSpec{Name: q.Get("name"), DockerfilePath: q.Get("dockerfile"), Target: q.Get("target")}
	if spec.Name == "" {
		writeError(w, http.StatusBadRequest, model.CodeBadRequest, "%s", "name is required: the image's name, such as ?name=myapp")
		return
	}
	if v := q.Get("no_cache"); v != "" {
		b, err := strconv.ParseBool(v)
		if err != nil {
			writeError(w, http.StatusBadRequest, model.CodeBadRequest, "no_cache=%q: want true or false", v)
			return
		}
		spec.NoCache = b
	}
	if args := q["build_arg"]; len(args) > 0 {
		if len(args) > maxBuildArgs {
			writeError(w, http.StatusBadRequest, model.CodeBadRequest, "%d build args; at most %d", len(args), maxBuildArgs)
			return
		}
		spec.BuildArgs = map[string]string{}
		for _, kv := range args {
			k, v, ok := strings.Cut(kv, "=")
			if !ok || k == "" {
				writeError(w, http.StatusBadRequest, model.CodeBadRequest, "build_arg %q: want NAME=VALUE", kv)
				return
			}
			spec.BuildArgs[k] = v
		}
	}
	l := newLazyWriter(w, "application/x-ndjson")
	im, err := s.m.BuildImageTar(r.Context(), spec, r.Body, buildLog{l})
	if err != nil && !l.started {
		s.fail(w, err)
		return
	}
	ev := model.ImageBuildEvent{}
	if err != nil {
		e := errorOf(err)
		ev.Error = &model.Error{Code: e.Code, Message: e.Message}
	} else {
		out := imageOut(im)
		ev.Image = &out
	}
	s.end(l, writeBuildEvent(l, ev))
}

// buildLog turns build output into ImageBuildEvent lines.
type buildLog struct{ l *lazyWriter }

func (b buildLog) Write(p []byte) (int, error) {
	if err := writeBuildEvent(b.l, model.ImageBuildEvent{Log: string(p)}); err != nil {
		return 0, err
	}
	return len(p), nil
}

func writeBuildEvent(l *lazyWriter, ev model.ImageBuildEvent) error {
	line, err := json.Marshal(ev)
	if err != nil {
		return err
	}
	_, err = l.Write(append(line, '\n'))
	return err
}
