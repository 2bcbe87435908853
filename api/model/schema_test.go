package model

import (
	"os"
	"reflect"
	"slices"
	"sort"
	"strings"
	"testing"

	"gopkg.in/yaml.v3"
)

// types are the model's types by the name of their schema in
// api/openapi.yaml.
var types = map[string]any{
	"Limits": Limits{}, "CreateRequest": CreateRequest{}, "Sandbox": Sandbox{},
	"SnapshotRequest": SnapshotRequest{}, "PauseRequest": PauseRequest{}, "Snapshot": Snapshot{},
	"TemplateRequest": TemplateRequest{}, "Template": Template{}, "ForkRequest": ForkRequest{},
	"ExecRequest": ExecRequest{}, "TTYSize": TTYSize{}, "Started": Started{}, "Process": Process{},
	"SignalRequest": SignalRequest{}, "ExecEvent": ExecEvent{}, "ExecExit": ExecExit{},
	"ContextRequest": ContextRequest{}, "Context": Context{}, "RunRequest": RunRequest{},
	"RunEvent": RunEvent{}, "RunError": RunError{}, "RunEnd": RunEnd{}, "PortRequest": PortRequest{},
	"Port": Port{}, "Image": Image{}, "ImageConfig": ImageConfig{}, "ImageBuildEvent": ImageBuildEvent{}, "DesktopAction": DesktopAction{}, "DesktopInput": DesktopInput{}, "DesktopState": DesktopState{}, "VNCRequest": VNCRequest{}, "VNC": VNC{}, "BrowserRequest": BrowserRequest{}, "Browser": Browser{}, "Health": Health{}, "Error": Error{}, "ErrorBody": ErrorBody{},
	"FileInfo": FileInfo{}, "FileList": FileList{}, "MkdirRequest": MkdirRequest{},
	"RenameRequest": RenameRequest{}, "TarResult": TarResult{}, "WatchEvent": WatchEvent{},
	"SandboxStats": SandboxStats{}, "NetworkSpec": NetworkSpec{}, "Network": Network{},
}

type schema struct {
	Type       string               `yaml:"type"`
	Properties map[string]yaml.Node `yaml:"properties"`
	Required   []string             `yaml:"required"`
}

// Every object schema of the API document has the fields of its Go type,
// no more and no fewer, and its required fields are ones Go always sends.
func TestModelMatchesOpenAPI(t *testing.T) {
	b, err := os.ReadFile("../openapi.yaml")
	if err != nil {
		t.Fatal(err)
	}
	var doc struct {
		Components struct {
			Schemas map[string]schema `yaml:"schemas"`
		} `yaml:"components"`
	}
	if err := yaml.Unmarshal(b, &doc); err != nil {
		t.Fatalf("api/openapi.yaml: %v", err)
	}
	for name, s := range doc.Components.Schemas {
		if s.Type != "object" || len(s.Properties) == 0 {
			continue
		}
		v, ok := types[name]
		if !ok {
			t.Errorf("schema %s has no model type: add it to types", name)
			continue
		}
		fields := jsonFields(reflect.TypeOf(v))
		var inDoc []string
		for p := range s.Properties {
			inDoc = append(inDoc, p)
		}
		sort.Strings(inDoc)
		var inGo []string
		for f := range fields {
			inGo = append(inGo, f)
		}
		sort.Strings(inGo)
		if !slices.Equal(inDoc, inGo) {
			t.Errorf("schema %s has properties %v; model.%s has %v", name, inDoc, name, inGo)
		}
		for _, r := range s.Required {
			if omit, ok := fields[r]; ok && omit {
				t.Errorf("schema %s requires %s, which model.%s omits when empty", name, r, name)
			}
		}
	}
	for name := range types {
		if _, ok := doc.Components.Schemas[name]; !ok {
			t.Errorf("types names %s, which api/openapi.yaml has no schema for", name)
		}
	}
}

// jsonFields maps the JSON names of t's fields to whether they are
// omitted when empty, through embedded structs.
func jsonFields(t reflect.Type) map[string]bool {
	out := map[string]bool{}
	for i := range t.NumField() {
		f := t.Field(i)
		tag := f.Tag.Get("json")
		if tag == "-" || !f.IsExported() {
			continue
		}
		name, opts, _ := strings.Cut(tag, ",")
		if f.Anonymous && name == "" {
			for k, v := range jsonFields(f.Type) {
				out[k] = v
			}
			continue
		}
		if name == "" {
			name = f.Name
		}
		out[name] = strings.Contains(opts, "omitempty") || strings.Contains(opts, "omitzero")
	}
	return out
}
