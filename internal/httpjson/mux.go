package httpjson

import (
	"net/http"
	"slices"
	"strings"
)

// Mux is an http.ServeMux whose every route is registered with a method,
// and whose misses are JSON: a path with other methods answers 405 with
// Allow, any other path 404.
type Mux struct {
	mux     *http.ServeMux
	allowed map[string][]string
	order   []string // paths in registration order
	routes  []Route
	sealed  bool
}

// Route is one registered method and path pattern.
type Route struct {
	Method, Path string
}

// NewMux returns an empty Mux.
func NewMux() *Mux {
	return &Mux{mux: http.NewServeMux(), allowed: map[string][]string{}}
}

// Handle registers h for method on path (a net/http pattern path, such as
// "/v1/sandboxes/{id}").
func (m *Mux) Handle(method, path string, h http.HandlerFunc) {
	m.mux.HandleFunc(method+" "+path, h)
	if m.allowed[path] == nil {
		m.order = append(m.order, path)
	}
	m.allowed[path] = append(m.allowed[path], method)
	m.routes = append(m.routes, Route{method, path})
}

// Routes lists the registered routes in registration order.
func (m *Mux) Routes() []Route { return slices.Clone(m.routes) }

// Handler returns the mux with its JSON 404 and 405 answers; call it once,
// after every Handle. notFound adds to the 404's message (where the routes
// are listed, say).
func (m *Mux) Handler(notFound string) http.Handler {
	if !m.sealed {
		m.sealed = true
		for _, p := range m.order {
			methods := slices.Clone(m.allowed[p])
			slices.Sort(methods)
			allow := strings.Join(methods, ", ")
			m.mux.HandleFunc(p, func(w http.ResponseWriter, r *http.Request) {
				w.Header().Set("Allow", allow)
				WriteError(w, Errorf(http.StatusMethodNotAllowed, CodeMethodNotAllowed, "%s is not allowed on %s; use %s", r.Method, r.URL.Path, allow))
			})
		}
		m.mux.HandleFunc("/", func(w http.ResponseWriter, r *http.Request) {
			msg := "no route " + r.Method + " " + r.URL.Path
			if notFound != "" {
				msg += "; " + notFound
			}
			WriteError(w, Errorf(http.StatusNotFound, CodeNotFound, "%s", msg))
		})
	}
	return m.mux
}
